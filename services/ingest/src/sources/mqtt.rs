//! The `mqtt` source.

use tokio_util::sync::CancellationToken;

use crate::feed::{FeedHandle, SourceError};

/// Runs the source until `cancel`.
pub async fn run(handle: FeedHandle, cancel: CancellationToken) -> Result<(), SourceError> {
    let _ = cancel;
    Err(handle.config_error("the mqtt source is not built yet"))
}
