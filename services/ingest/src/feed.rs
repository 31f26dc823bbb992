//! What a running source gets: its spec, a way to build decoders, and the durable writer. Every
//! source follows the same rule: decode into a [`Batch`], [`FeedHandle::commit`] it, and only then
//! acknowledge the input to whoever sent it (MQTT PUBACK, HTTP 202, Kafka offset, file offset).

use std::path::PathBuf;
use std::sync::Arc;

use geostream_model::time::OffsetDateTime;
use geostream_model::{Classify, ErrorClass, FeedSpec, TenantId};

use crate::durable::{Durable, DurableError};
use crate::metrics::IngestMetrics;
use crate::pipeline::{Batch, FeedPipeline};

/// Why a source stopped or could not start.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// The spec cannot work as written (bad mapping, unreadable CA file, missing secret).
    /// Restarting will not help; the feed needs fixing.
    #[error("feed {feed}: {problem}")]
    Config {
        /// The feed.
        feed: String,
        /// What to fix.
        problem: String,
    },
    /// The source's peer or medium failed (connection refused, HTTP error, read error).
    #[error("feed {feed}: {what}: {detail}")]
    Io {
        /// The feed.
        feed: String,
        /// What was being done.
        what: &'static str,
        /// The error.
        detail: String,
    },
    /// The durable writer failed; nothing was acknowledged to the source.
    #[error("feed {feed}: records could not be made durable: {source}")]
    Durable {
        /// The feed.
        feed: String,
        /// The spool's error.
        #[source]
        source: DurableError,
    },
}

impl Classify for SourceError {
    fn class(&self) -> ErrorClass {
        match self {
            SourceError::Config { .. } => ErrorClass::User,
            SourceError::Io { .. } => ErrorClass::External,
            SourceError::Durable { source, .. } => source.class(),
        }
    }

    fn retryable(&self) -> bool {
        match self {
            SourceError::Config { .. } => false,
            SourceError::Io { .. } => true,
            SourceError::Durable { source, .. } => source.retryable(),
        }
    }
}

/// Resolves secret names from feed specs: a file `<dir>/<name>` (a mounted Kubernetes Secret) or
/// the environment variable `GEOSTREAM_SECRET_<NAME>` (upper case, `-` and `.` as `_`).
#[derive(Debug, Clone, Default)]
pub struct Secrets {
    dir: Option<PathBuf>,
}

impl Secrets {
    /// Secrets from `dir` (if any) and the environment.
    pub fn new(dir: Option<PathBuf>) -> Self {
        Self { dir }
    }

    /// The environment variable that can hold secret `name`.
    pub fn env_var(name: &str) -> String {
        let mut v = String::from("GEOSTREAM_SECRET_");
        v.extend(name.chars().map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_uppercase() } else { '_' }));
        v
    }

    /// The secret's value, without a trailing newline.
    pub fn get(&self, name: &str) -> Result<String, String> {
        let safe = !name.is_empty() && !name.contains(['/', '\\']) && name != "." && name != "..";
        if !safe {
            return Err(format!("secret name {name:?} must be a plain file name"));
        }
        if let Some(dir) = &self.dir {
            let path = dir.join(name);
            match std::fs::read_to_string(&path) {
                Ok(v) => return Ok(v.trim_end_matches(['\n', '\r']).to_owned()),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(format!("secret {name:?}: {} could not be read: {e}", path.display())),
            }
        }
        let var = Self::env_var(name);
        match std::env::var(&var) {
            Ok(v) => Ok(v),
            Err(_) => Err(format!(
                "secret {name:?} is not available: create {} or set {var}",
                self.dir
                    .as_ref()
                    .map_or_else(|| "a secrets_dir file".to_owned(), |d| d.join(name).display().to_string())
            )),
        }
    }
}

/// Everything a source needs; cheap to clone.
#[derive(Debug, Clone)]
pub struct FeedHandle {
    /// The feed's spec.
    pub spec: Arc<FeedSpec>,
    /// The tenant.
    pub tenant: TenantId,
    /// Where batches go.
    pub durable: Durable,
    /// Metrics.
    pub metrics: IngestMetrics,
    /// A directory of this feed's own on the stage volume (file offsets and the like).
    pub state_dir: PathBuf,
    /// Secret resolution.
    pub secrets: Secrets,
}

impl FeedHandle {
    /// The feed id as text, for logs and labels.
    pub fn id(&self) -> &str {
        self.spec.id.as_str()
    }

    /// A fresh decoder for this feed (one per connection for stateful line formats).
    pub fn pipeline(&self) -> Result<FeedPipeline, SourceError> {
        FeedPipeline::new(&self.spec).map_err(|e| self.config_error(e.to_string()))
    }

    /// A [`SourceError::Config`] for this feed.
    pub fn config_error(&self, problem: impl Into<String>) -> SourceError {
        SourceError::Config { feed: self.id().to_owned(), problem: problem.into() }
    }

    /// A [`SourceError::Io`] for this feed.
    pub fn io_error(&self, what: &'static str, detail: impl ToString) -> SourceError {
        SourceError::Io { feed: self.id().to_owned(), what, detail: detail.to_string() }
    }

    /// A secret named by the spec.
    pub fn secret(&self, name: &str) -> Result<String, SourceError> {
        self.secrets.get(name).map_err(|p| self.config_error(p))
    }

    /// Counts the batch and writes its records durably. When this returns `Ok` the source may
    /// acknowledge the input the batch was decoded from.
    pub async fn commit(&self, batch: &Batch) -> Result<(), SourceError> {
        self.metrics.record_batch(self.id(), batch, now().unix_timestamp());
        self.durable
            .write(&batch.envelopes)
            .await
            .map(|_| ())
            .map_err(|source| SourceError::Durable { feed: self.id().to_owned(), source })
    }
}

/// The current time, as the receive time of input.
pub fn now() -> OffsetDateTime {
    OffsetDateTime::now_utc()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn secrets_come_from_files_first_then_the_environment() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("mqtt-pass"), "s3cret\n").unwrap();
        let s = Secrets::new(Some(dir.path().to_path_buf()));
        assert_eq!(s.get("mqtt-pass").unwrap(), "s3cret");
        assert_eq!(Secrets::env_var("push.token-a"), "GEOSTREAM_SECRET_PUSH_TOKEN_A");
        let missing = s.get("nope-not-set-anywhere").unwrap_err();
        assert!(missing.contains("GEOSTREAM_SECRET_NOPE_NOT_SET_ANYWHERE"), "{missing}");
        assert!(s.get("../etc/passwd").unwrap_err().contains("plain file name"));
    }
}
