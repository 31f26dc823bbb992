//! The `tcp` source: line-oriented streams such as AIS dispatchers and NMEA multiplexers.
//!
//! Client mode connects to `address` and reconnects with jittered backoff (capped by
//! `reconnect_max_s`) whenever the connection fails or the peer closes it. Server mode listens on
//! `address`; every accepted connection is a stream of its own with its own decoder, because
//! multi-part AIS messages are reassembled per stream and two senders' fragments must not mix.
//!
//! TCP has no acknowledgement to hold back, so "acknowledge after commit" means: the next bytes are
//! read only once the batch decoded from the previous ones is durable. A slow spool therefore slows
//! the reader, and TCP flow control pushes back on the sender instead of ingest buffering without
//! bound. Every read takes what the socket already holds (up to [`BATCH_MAX_UNITS`] lines) into one
//! batch. When a connection ends, the codec's pending state (an incomplete multi-part message, an
//! NMEA epoch) is flushed and committed.

use std::time::Duration;

use geostream_model::{Source, TcpMode};
use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::lines::{LineSplitter, MAX_LINE_BYTES, decode_line};
use super::{BATCH_MAX_UNITS, commit, sleep_or_cancel};
use crate::feed::{FeedHandle, SourceError, now};
use crate::metrics::FeedLabel;
use crate::pipeline::{Batch, FeedPipeline};
use geostream_model::backoff::Backoff;

/// How long a connection attempt may take before it counts as failed.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Most simultaneous connections in server mode; more are refused (closed at once, logged) so a
/// misbehaving sender cannot exhaust file descriptors or memory.
const MAX_CONNECTIONS: usize = 1024;

/// Bytes read from a socket at a time.
const READ_CHUNK: usize = 64 * 1024;

/// Runs the source until `cancel`.
pub async fn run(handle: FeedHandle, cancel: CancellationToken) -> Result<(), SourceError> {
    let Source::Tcp { address, mode, reconnect_max_s } = &handle.spec.source else {
        return Err(handle.config_error("not a tcp source"));
    };
    // A decoder that cannot be built is a spec problem: report it before touching the network.
    handle.pipeline()?;
    let address = address.clone();
    let result = match mode {
        TcpMode::Client => client(&handle, &address, Duration::from_secs((*reconnect_max_s).max(1)), &cancel).await,
        TcpMode::Server => server(&handle, &address, &cancel).await,
    };
    handle.metrics.set_up(handle.id(), false);
    result
}

async fn client(
    handle: &FeedHandle,
    address: &str,
    reconnect_max: Duration,
    cancel: &CancellationToken,
) -> Result<(), SourceError> {
    let id = handle.id();
    let mut backoff = Backoff::new(Duration::from_millis(500).min(reconnect_max), reconnect_max);
    loop {
        let attempt = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(address));
        let connected = tokio::select! {
            () = cancel.cancelled() => return Ok(()),
            r = attempt => r,
        };
        match connected {
            Ok(Ok(stream)) => {
                let peer = stream.peer_addr().map_or_else(|_| address.to_owned(), |a| a.to_string());
                tracing::info!(feed = %id, %peer, "tcp: connected");
                handle.metrics.set_up(id, true);
                let end = read_stream(handle, stream, &peer, cancel).await?;
                if end.bytes > 0 {
                    // A connection that delivered data was healthy: the next reconnect starts
                    // quickly. One that dies at once keeps backing off.
                    backoff.reset();
                }
                match end.error {
                    _ if end.cancelled => return Ok(()),
                    Some(e) => {
                        handle.metrics.source_error(id);
                        tracing::warn!(feed = %id, %peer, error = %e, bytes = end.bytes, "tcp: connection failed");
                    }
                    None => {
                        handle.metrics.set_up(id, false);
                        tracing::warn!(feed = %id, %peer, bytes = end.bytes, "tcp: the peer closed the connection");
                    }
                }
            }
            Ok(Err(e)) => {
                handle.metrics.source_error(id);
                tracing::warn!(feed = %id, %address, error = %e, failures = backoff.failures(), "tcp: connect failed");
            }
            Err(_) => {
                handle.metrics.source_error(id);
                tracing::warn!(
                    feed = %id, %address, timeout_s = CONNECT_TIMEOUT.as_secs(), failures = backoff.failures(),
                    "tcp: connect timed out"
                );
            }
        }
        let delay = backoff.next_delay();
        tracing::debug!(feed = %id, %address, retry_in_ms = delay.as_millis() as u64, "tcp: reconnecting");
        if !sleep_or_cancel(delay, cancel).await {
            return Ok(());
        }
    }
}

async fn server(handle: &FeedHandle, address: &str, cancel: &CancellationToken) -> Result<(), SourceError> {
    let id = handle.id();
    // Binding can fail for a while during a live reconfiguration (the old listener is still
    // closing) or until an address is configured on the host: retry rather than give up.
    let mut backoff = Backoff::new(Duration::from_millis(500), Duration::from_secs(30));
    let listener = loop {
        let bound = tokio::select! {
            () = cancel.cancelled() => return Ok(()),
            r = TcpListener::bind(address) => r,
        };
        match bound {
            Ok(l) => break l,
            Err(e) => {
                handle.metrics.source_error(id);
                tracing::error!(feed = %id, %address, error = %e, failures = backoff.failures(), "tcp: cannot listen");
                if !sleep_or_cancel(backoff.next_delay(), cancel).await {
                    return Ok(());
                }
            }
        }
    };
    let local = listener.local_addr().map_or_else(|_| address.to_owned(), |a| a.to_string());
    tracing::info!(feed = %id, address = %local, "tcp: listening");
    handle.metrics.set_up(id, true);
    let mut connections: JoinSet<Result<(), SourceError>> = JoinSet::new();
    let mut failure = None;
    loop {
        tokio::select! {
            () = cancel.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) if connections.len() >= MAX_CONNECTIONS => {
                    tracing::warn!(feed = %id, %peer, limit = MAX_CONNECTIONS, "tcp: connection refused, too many open");
                    drop(stream);
                }
                Ok((stream, peer)) => {
                    let (handle, cancel) = (handle.clone(), cancel.clone());
                    connections.spawn(async move {
                        let peer = peer.to_string();
                        tracing::info!(feed = %handle.id(), %peer, "tcp: sender connected");
                        let end = read_stream(&handle, stream, &peer, &cancel).await?;
                        match end.error {
                            Some(e) if !end.cancelled => {
                                // One sender failing does not take the listener down: counted, not marked down.
                                let label = FeedLabel { feed: handle.id().to_owned() };
                                handle.metrics.source_errors.get_or_create(&label).inc();
                                tracing::warn!(feed = %handle.id(), %peer, error = %e, bytes = end.bytes, "tcp: sender connection failed");
                            }
                            _ => tracing::info!(feed = %handle.id(), %peer, bytes = end.bytes, "tcp: sender disconnected"),
                        }
                        Ok(())
                    });
                }
                Err(e) => {
                    // Usually out of file descriptors; accepting again at once would spin.
                    handle.metrics.source_error(id);
                    tracing::error!(feed = %id, error = %e, "tcp: accept failed");
                    if !sleep_or_cancel(Duration::from_millis(500), cancel).await {
                        break;
                    }
                    handle.metrics.set_up(id, true);
                }
            },
            Some(done) = connections.join_next(), if !connections.is_empty() => match done {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    // Only the spool fails a connection task: every other sender would fail too.
                    failure = Some(e);
                    break;
                }
                Err(e) => tracing::error!(feed = %id, error = %e, "tcp: connection task failed"),
            },
        }
    }
    drop(listener);
    if failure.is_some() {
        connections.abort_all();
    }
    // Connections stop on the same token; each flushes and commits what it holds.
    while let Some(done) = connections.join_next().await {
        if let Ok(Err(e)) = done {
            failure.get_or_insert(e);
        }
    }
    failure.map_or(Ok(()), Err)
}

/// How a stream ended.
struct StreamEnd {
    /// Bytes read from it.
    bytes: u64,
    /// The feed was cancelled.
    cancelled: bool,
    /// The read error, if it did not end with a clean close.
    error: Option<std::io::Error>,
}

/// Reads `stream` to its end: lines into batches, each committed before more is read. `Err` only
/// when the spool cannot take records any more.
async fn read_stream(
    handle: &FeedHandle,
    mut stream: TcpStream,
    peer: &str,
    cancel: &CancellationToken,
) -> Result<StreamEnd, SourceError> {
    let mut reader = StreamDecoder::new(handle.pipeline()?, format!("tcp {peer} line "));
    let mut buf = vec![0u8; READ_CHUNK];
    let mut end = StreamEnd { bytes: 0, cancelled: false, error: None };
    loop {
        let read = tokio::select! {
            () = cancel.cancelled() => {
                end.cancelled = true;
                // The stream goes on without us: only the codec's pending state is flushed; an
                // unterminated line may be cut mid-way and is not decoded.
                let batch = reader.flush(false);
                commit(handle, &batch, cancel).await?;
                return Ok(end);
            }
            r = stream.read(&mut buf) => r,
        };
        let mut batch = Batch::default();
        let mut closed = match read {
            Ok(0) => true,
            Ok(n) => {
                end.bytes += n as u64;
                reader.push(buf.get(..n).unwrap_or_default(), &mut batch);
                false
            }
            Err(e) => {
                end.error = Some(e);
                true
            }
        };
        // Take whatever the socket already holds, without waiting, into the same batch.
        while !closed && batch.inputs < BATCH_MAX_UNITS as u64 {
            match stream.try_read(&mut buf) {
                Ok(0) => closed = true,
                Ok(n) => {
                    end.bytes += n as u64;
                    reader.push(buf.get(..n).unwrap_or_default(), &mut batch);
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(e) => {
                    end.error = Some(e);
                    closed = true;
                }
            }
        }
        if closed {
            batch.extend(reader.flush(true));
        }
        if !commit(handle, &batch, cancel).await? {
            end.cancelled = true;
            return Ok(end);
        }
        if closed {
            return Ok(end);
        }
    }
}

/// One stream's line splitter and decoder; locations are `<prefix><line number>`.
struct StreamDecoder {
    pipeline: FeedPipeline,
    splitter: LineSplitter,
    prefix: String,
}

impl StreamDecoder {
    fn new(pipeline: FeedPipeline, prefix: String) -> Self {
        Self { pipeline, splitter: LineSplitter::new(MAX_LINE_BYTES), prefix }
    }

    fn push(&mut self, data: &[u8], batch: &mut Batch) {
        let Self { pipeline, splitter, prefix } = self;
        let mut ctx = pipeline.context(now(), String::with_capacity(prefix.len() + 8));
        splitter.push(data, |line| {
            ctx.location.clear();
            ctx.location.push_str(prefix);
            ctx.location.push_str(&line.number.to_string());
            decode_line(pipeline, line.kind, &ctx, batch);
        });
    }

    /// End of the stream: the unterminated last line (when the stream really ended, `eof`) and
    /// whatever the codec still holds.
    fn flush(&mut self, eof: bool) -> Batch {
        let mut batch = Batch::default();
        let Self { pipeline, splitter, prefix } = self;
        let mut ctx = pipeline.context(now(), String::new());
        if eof {
            splitter.finish(|line| {
                ctx.location = format!("{prefix}{}", line.number);
                decode_line(pipeline, line.kind, &ctx, &mut batch);
            });
        }
        ctx.location = prefix.trim_end_matches(" line ").to_owned();
        pipeline.finish(&ctx, &mut batch);
        batch
    }
}
