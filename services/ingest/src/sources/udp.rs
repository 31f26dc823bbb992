//! The `udp` source: datagrams on a listening socket, each one payload (an AIS or NMEA datagram
//! often carries several sentences, which line codecs get as separate lines).
//!
//! UDP has no acknowledgement and no flow control: a datagram the kernel drops while ingest is
//! busy is gone, which is the contract of UDP feeds. What the socket has already queued when a
//! datagram arrives is taken into the same batch (up to [`BATCH_MAX_UNITS`] datagrams), so a
//! burst costs one commit rather than one per datagram.
//!
//! Each sender gets its own decoder, as a TCP connection does: multi-part AIS messages from two
//! receivers must not be stitched together. Decoders of the least recently heard senders are
//! flushed and dropped beyond [`MAX_SENDERS`], so spoofed source addresses cannot grow memory.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use geostream_model::Source;
use tokio::net::UdpSocket;
use tokio_util::sync::CancellationToken;

use super::{BATCH_MAX_UNITS, commit, sleep_or_cancel};
use crate::feed::{FeedHandle, SourceError, now};
use crate::pipeline::{Batch, FeedPipeline};
use geostream_model::backoff::Backoff;

/// Largest UDP payload (IPv4: 65,535 minus the IP and UDP headers).
const MAX_DATAGRAM: usize = 65_507;

/// Senders with a decoder of their own at once.
pub const MAX_SENDERS: usize = 256;

/// Runs the source until `cancel`.
pub async fn run(handle: FeedHandle, cancel: CancellationToken) -> Result<(), SourceError> {
    let Source::Udp { address } = &handle.spec.source else {
        return Err(handle.config_error("not a udp source"));
    };
    handle.pipeline()?;
    let id = handle.id().to_owned();
    let mut backoff = Backoff::new(Duration::from_millis(500), Duration::from_secs(30));
    let socket = loop {
        let bound = tokio::select! {
            () = cancel.cancelled() => return Ok(()),
            r = UdpSocket::bind(address.as_str()) => r,
        };
        match bound {
            Ok(s) => break s,
            Err(e) => {
                handle.metrics.source_error(&id);
                tracing::error!(feed = %id, %address, error = %e, failures = backoff.failures(), "udp: cannot listen");
                if !sleep_or_cancel(backoff.next_delay(), &cancel).await {
                    return Ok(());
                }
            }
        }
    };
    let local = socket.local_addr().map_or_else(|_| address.clone(), |a| a.to_string());
    tracing::info!(feed = %id, address = %local, "udp: listening");
    handle.metrics.set_up(&id, true);
    let result = receive(&handle, &socket, &cancel).await;
    handle.metrics.set_up(&id, false);
    result
}

async fn receive(handle: &FeedHandle, socket: &UdpSocket, cancel: &CancellationToken) -> Result<(), SourceError> {
    let id = handle.id();
    let mut senders = Senders::default();
    let mut buf = vec![0u8; MAX_DATAGRAM];
    loop {
        let first = tokio::select! {
            () = cancel.cancelled() => break,
            r = socket.recv_from(&mut buf) => r,
        };
        let mut batch = Batch::default();
        match first {
            Ok((n, peer)) => senders.decode(handle, peer, buf.get(..n).unwrap_or_default(), &mut batch)?,
            Err(e) => {
                // Rare on an unconnected socket (an ICMP error surfacing); pause so it cannot spin.
                handle.metrics.source_error(id);
                tracing::warn!(feed = %id, error = %e, "udp: receive failed");
                if !sleep_or_cancel(Duration::from_millis(100), cancel).await {
                    break;
                }
                handle.metrics.set_up(id, true);
                continue;
            }
        }
        let mut datagrams = 1;
        while datagrams < BATCH_MAX_UNITS {
            match socket.try_recv_from(&mut buf) {
                Ok((n, peer)) => {
                    senders.decode(handle, peer, buf.get(..n).unwrap_or_default(), &mut batch)?;
                    datagrams += 1;
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(e) => {
                    tracing::warn!(feed = %id, error = %e, "udp: receive failed");
                    break;
                }
            }
        }
        if !commit(handle, &batch, cancel).await? {
            return Ok(());
        }
    }
    // Pending multi-part fragments and NMEA epochs of every sender are flushed.
    let batch = senders.flush_all();
    commit(handle, &batch, cancel).await?;
    Ok(())
}

/// Per-sender decoders, least recently used dropped first.
#[derive(Default)]
struct Senders {
    decoders: HashMap<SocketAddr, (FeedPipeline, u64)>,
    clock: u64,
}

impl Senders {
    fn decode(
        &mut self,
        handle: &FeedHandle,
        peer: SocketAddr,
        payload: &[u8],
        batch: &mut Batch,
    ) -> Result<(), SourceError> {
        self.clock += 1;
        if !self.decoders.contains_key(&peer) && self.decoders.len() >= MAX_SENDERS {
            self.evict_oldest(batch);
        }
        let (pipeline, used) = match self.decoders.entry(peer) {
            std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::hash_map::Entry::Vacant(v) => v.insert((handle.pipeline()?, 0)),
        };
        *used = self.clock;
        let ctx = pipeline.context(now(), format!("udp {peer}"));
        pipeline.decode_payload(payload, &ctx, batch);
        Ok(())
    }

    fn evict_oldest(&mut self, batch: &mut Batch) {
        let oldest = self.decoders.iter().min_by_key(|(_, (_, used))| *used).map(|(peer, _)| *peer);
        if let Some((peer, (mut pipeline, _))) = oldest.and_then(|p| self.decoders.remove_entry(&p)) {
            let ctx = pipeline.context(now(), format!("udp {peer}"));
            pipeline.finish(&ctx, batch);
        }
    }

    fn flush_all(&mut self) -> Batch {
        let mut batch = Batch::default();
        for (peer, (mut pipeline, _)) in self.decoders.drain() {
            let ctx = pipeline.context(now(), format!("udp {peer}"));
            pipeline.finish(&ctx, &mut batch);
        }
        batch
    }
}
