//! The sources: one async task per running feed, chosen by the spec's `source.kind`. Each decodes
//! into a batch, commits it durably, and only then acknowledges its input.

pub mod file;
pub mod http_poll;
pub mod http_push;
pub mod kafka;
pub mod mqtt;
pub mod tcp;
pub mod udp;

use geostream_model::Source;
use tokio_util::sync::CancellationToken;

use crate::feed::{FeedHandle, SourceError};

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
