//! The feed catalog: one declarative file per feed type in `feeds/`, each a feed spec to start a
//! registration from plus a real sample and what decoding that sample must give.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::error::ModelError;
use crate::feed::FeedSpec;
use crate::ids::FeedId;

/// One catalog file, `feeds/<name>.yaml`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CatalogEntry {
    /// The catalog type name; equals the file stem and `feed.type`.
    pub name: String,
    /// One line for listings.
    pub title: String,
    /// What the feed is, where such data comes from, and what to override when registering.
    pub description: String,
    /// The spec a registration starts from (its `id` is the default feed id).
    pub feed: FeedSpec,
    /// A real sample shipped in the repository, when one could be had.
    #[serde(default)]
    pub sample: Option<CatalogSample>,
}

/// A real sample of a catalog feed type, with the decode result it must give.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CatalogSample {
    /// Path relative to the catalog file.
    pub file: String,
    /// Receive time to assume when decoding it (old captures would otherwise fail the
    /// future-time check against the wrong clock, or carry today's date where they have none).
    #[serde(default, with = "crate::rfc3339::option")]
    pub received: Option<OffsetDateTime>,
    /// Where the sample comes from and under which licence.
    pub provenance: String,
    /// What decoding the sample gives; tests hold the catalog to it.
    pub expect: SampleExpectation,
}

/// Counts decoding a sample must produce.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SampleExpectation {
    /// Observations.
    pub accepted: u64,
    /// Rejections (dead letters).
    pub rejected: u64,
    /// Distinct tracks among the observations.
    pub tracks: u64,
}

impl CatalogEntry {
    /// Checks that the entry is consistent: a valid spec whose type is the entry's name.
    pub fn validate(&self) -> Result<(), ModelError> {
        FeedId::new(self.name.as_str())?;
        if self.feed.type_ != self.name {
            return Err(ModelError::InvalidField {
                subject: format!("catalog entry {:?}", self.name),
                field: "feed.type".into(),
                problem: format!("is {:?}; it must equal the entry's name", self.feed.type_),
            });
        }
        self.feed.validate()
    }
}
