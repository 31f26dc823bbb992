//! The sources: one async task per running feed, chosen by the spec's `source.kind`. Each decodes
//! into a batch, commits it durably, and only then acknowledges its input.
//!
//! Shared here: [`commit`] (the durable write with retries every source uses), the batch limits and
//! a cancellable sleep. [`lines`] cuts byte streams into lines for the stream sources.

pub mod file;
pub mod http_poll;
pub mod http_push;
pub mod kafka;
pub mod lines;
pub mod mqtt;
pub mod tcp;
pub mod udp;

use std::time::Duration;

use geostream_model::{Classify, Source};
use tokio_util::sync::CancellationToken;

use crate::durable::DurableError;
use crate::feed::{FeedHandle, SourceError};
use crate::pipeline::{Batch, Envelope};
use crate::spool::SpoolError;
use geostream_model::backoff::Backoff;

/// Most input units (lines, messages, datagrams) decoded into one batch. Sources take what is
/// already available up to this many and commit at once: one fsync per batch instead of per
/// record, without waiting for a batch to fill (latency matters more than full batches).
pub const BATCH_MAX_UNITS: usize = 1000;

/// How long a commit already handed to the spool may still take after the feed was cancelled.
/// Normally an fsync lands in milliseconds; only a full spool (Kafka down) makes it wait longer,
/// and then the source gives up on the batch without acknowledging it.
const COMMIT_GRACE: Duration = Duration::from_secs(10);

/// Runs the feed's source until `cancel` or until it is done (a file read to its end). Sources
/// retry their own transient failures; an `Err` means the feed cannot run as specified.
pub async fn run(handle: FeedHandle, push: http_push::PushFeeds, cancel: CancellationToken) -> Result<(), SourceError> {
    match &handle.spec.source {
        Source::Mqtt { .. } => mqtt::run(handle, cancel).await,
        Source::HttpPoll { .. } => http_poll::run(handle, cancel).await,
        Source::HttpPush { .. } => http_push::serve_feed(handle, push, cancel).await,
        Source::Tcp { .. } => tcp::run(handle, cancel).await,
        Source::Udp { .. } => udp::run(handle, cancel).await,
        Source::File { .. } => file::run(handle, cancel).await,
        Source::Kafka { .. } => kafka::run(handle, cancel).await,
    }
}

/// Sleeps for `d`; `false` when `cancel` fired first.
pub(crate) async fn sleep_or_cancel(d: Duration, cancel: &CancellationToken) -> bool {
    tokio::select! {
        () = cancel.cancelled() => false,
        () = tokio::time::sleep(d) => true,
    }
}

/// Commits `batch` with [`FeedHandle::commit`], retrying what the spool calls transient (I/O
/// errors such as a full disk) with backoff, and splitting a batch larger than the whole spool.
///
/// `Ok(true)`: the batch is durable and its input may be acknowledged. `Ok(false)`: the feed was
/// cancelled before that was known; acknowledge nothing (the input is delivered again, or read
/// again from the last checkpoint). `Err`: the spool cannot take records any more (shutdown,
/// corruption); the caller stops.
pub(crate) async fn commit(
    handle: &FeedHandle,
    batch: &Batch,
    cancel: &CancellationToken,
) -> Result<bool, SourceError> {
    let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(30));
    let mut result = match with_grace(handle.commit(batch), cancel).await {
        None => return Ok(false),
        Some(r) => r.map_err(|e| match e {
            SourceError::Durable { source, .. } => source,
            // `commit` only fails with Durable; keep anything else as a closed writer.
            _ => DurableError::Closed,
        }),
    };
    loop {
        let error = match result {
            Ok(()) => return Ok(true),
            Err(e) => e,
        };
        if !error.retryable() && !matches!(error, DurableError::Spool(SpoolError::TooLarge { .. })) {
            return Err(SourceError::Durable { feed: handle.id().to_owned(), source: error });
        }
        if !matches!(error, DurableError::Spool(SpoolError::TooLarge { .. })) {
            let delay = backoff.next_delay();
            tracing::warn!(
                feed = %handle.id(), error = %error, retry_in_ms = delay.as_millis() as u64, failures = backoff.failures(),
                "batch is not durable yet; nothing was acknowledged; retrying"
            );
            if !sleep_or_cancel(delay, cancel).await {
                return Ok(false);
            }
        }
        // Metrics were counted by the first attempt; retries only write.
        result = match with_grace(write_split(handle, &batch.envelopes), cancel).await {
            None => return Ok(false),
            Some(r) => r,
        };
    }
}

/// Writes `envelopes` in order, halving any part the spool says can never fit as a whole.
async fn write_split(handle: &FeedHandle, envelopes: &[Envelope]) -> Result<(), DurableError> {
    // A stack of index ranges still to write (a Vec of ranges, not a range of indexes).
    let mut parts: Vec<std::ops::Range<usize>> = Vec::new();
    parts.push(0..envelopes.len());
    while let Some(part) = parts.pop() {
        let Some(slice) = envelopes.get(part.clone()) else { continue };
        match handle.durable.write(slice).await {
            Ok(_) => {}
            Err(DurableError::Spool(SpoolError::TooLarge { .. })) if part.len() > 1 => {
                let mid = part.start + part.len() / 2;
                // Pushed in reverse so the first half is written first: order is kept.
                parts.push(mid..part.end);
                parts.push(part.start..mid);
            }
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Awaits `fut`; once `cancel` fires, waits at most [`COMMIT_GRACE`] more (`None` then).
async fn with_grace<T>(fut: impl Future<Output = T>, cancel: &CancellationToken) -> Option<T> {
    tokio::pin!(fut);
    tokio::select! {
        biased;
        r = &mut fut => Some(r),
        () = cancel.cancelled() => tokio::time::timeout(COMMIT_GRACE, fut).await.ok(),
    }
}
