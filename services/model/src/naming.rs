//! Names derived from a tenant: Kafka topics, search indices, consumer groups, and the stages.
//!
//! These names are a data contract: every stage, the operator, the Helm chart and external tools
//! must agree on them, so they are built here and nowhere else.

use serde::{Deserialize, Serialize};

use crate::error::{ModelError, quote_input};
use crate::ids::TenantId;

named_enum! {
    /// The Kafka topics of a tenant.
    TopicKind, "topic kind",
    "observations, events, aggregates, enriched, deadletter, feeds, fences, analytics, process-state" {
        /// Normalised observations from ingest, keyed by track id.
        Observations => "observations",
        /// Events from the processor (geofence, motion, gaps).
        Events => "events",
        /// Windowed aggregates from the processor (bins, SQL).
        Aggregates => "aggregates",
        /// Observations enriched by `join` analytics with the fences containing them, keyed by track.
        Enriched => "enriched",
        /// Records any stage could not handle, with a reason code.
        Deadletter => "deadletter",
        /// Registry of feed specs, keyed by feed id (compacted).
        Feeds => "feeds",
        /// Registry of fence specs, keyed by fence id (compacted).
        Fences => "fences",
        /// Registry of analytic specs, keyed by analytic id (compacted).
        Analytics => "analytics",
        /// The processor's operator state per input partition, written in the same transaction as
        /// its outputs and input offsets (compacted, keyed by partition), so another instance can
        /// take a partition over with exactly the state its committed offsets reflect.
        ProcessState => "process-state",
    }
}

impl TopicKind {
    /// Registry topics hold the latest spec per key and must be created with
    /// `cleanup.policy=compact`; data topics are time-retained.
    pub const fn is_compacted(self) -> bool {
        matches!(self, TopicKind::Feeds | TopicKind::Fences | TopicKind::Analytics | TopicKind::ProcessState)
    }
}

named_enum! {
    /// The search indices of a tenant.
    IndexKind, "index kind", "observations, events, aggregates, latest" {
        /// All observations (time-based indices or a data stream behind this name).
        Observations => "observations",
        /// All events.
        Events => "events",
        /// All aggregates; corrections overwrite by id with a higher version.
        Aggregates => "aggregates",
        /// One document per track: its newest position by event time (external versioning).
        Latest => "latest",
    }
}

named_enum! {
    /// A stage of the pipeline; `geostream <stage>` runs it.
    Stage, "stage", "ingest, process, sink, api, operator" {
        /// Receives from sources, decodes, normalises and validates, writes observations.
        Ingest => "ingest",
        /// Runs analytics over observations, writes events and aggregates.
        Process => "process",
        /// Writes observations, events and aggregates to the search engine and the archive.
        Sink => "sink",
        /// Serves queries, live push, the dashboard and the registry.
        Api => "api",
        /// Kubernetes controller: custom resources to registry topics, volumes, snapshots.
        Operator => "operator",
    }
}

/// Prefix of every index name; fixed, so index templates and ILM policies can match `geostream-*`.
pub const INDEX_PREFIX: &str = "geostream-";

/// Kafka's limit on topic name length.
pub const KAFKA_TOPIC_MAX_LEN: usize = 249;

/// Longest [`TopicKind`] name; with the longest tenant it bounds the topic prefix.
const LONGEST_TOPIC_KIND: usize = "process-state".len();

/// Builds the names of a tenant's topics, indices and consumer groups.
///
/// The topic prefix lets several installations share one Kafka cluster (e.g. `staging.`). It may
/// be empty; it is validated for Kafka's legal characters and for a length that leaves room for
/// the longest tenant and topic kind. Indices are always `geostream-<tenant>-<name>`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "NamingRaw")]
pub struct Naming {
    topic_prefix: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NamingRaw {
    #[serde(default)]
    topic_prefix: String,
}

impl TryFrom<NamingRaw> for Naming {
    type Error = ModelError;
    fn try_from(raw: NamingRaw) -> Result<Self, ModelError> {
        Naming::new(raw.topic_prefix)
    }
}

impl Naming {
    /// Longest topic prefix: the longest tenant, a dot and the longest kind must still fit.
    pub const MAX_TOPIC_PREFIX_LEN: usize = KAFKA_TOPIC_MAX_LEN - TenantId::MAX_LEN - 1 - LONGEST_TOPIC_KIND;

    /// Validates the topic prefix.
    pub fn new(topic_prefix: impl Into<String>) -> Result<Self, ModelError> {
        let topic_prefix = topic_prefix.into();
        let fail = |problem: String| ModelError::InvalidTopicPrefix { prefix: quote_input(&topic_prefix), problem };
        if let Some((pos, ch)) =
            topic_prefix.chars().enumerate().find(|(_, c)| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
        {
            return Err(fail(format!("character {ch:?} at position {pos} is not allowed")));
        }
        if topic_prefix.len() > Self::MAX_TOPIC_PREFIX_LEN {
            return Err(fail(format!(
                "it is {} characters long, the limit is {} so topic names stay within Kafka's {}",
                topic_prefix.len(),
                Self::MAX_TOPIC_PREFIX_LEN,
                KAFKA_TOPIC_MAX_LEN
            )));
        }
        Ok(Naming { topic_prefix })
    }

    /// The topic prefix (possibly empty).
    pub fn topic_prefix(&self) -> &str {
        &self.topic_prefix
    }

    /// `<prefix><tenant>.<kind>`, e.g. `acme.observations`.
    pub fn topic(&self, tenant: &TenantId, kind: TopicKind) -> String {
        format!("{}{}.{}", self.topic_prefix, tenant, kind.as_str())
    }

    /// `geostream-<tenant>-<kind>`, e.g. `geostream-acme-latest`. Time-based observation indices
    /// and data stream backing indices add suffixes to this name.
    pub fn index(&self, tenant: &TenantId, kind: IndexKind) -> String {
        format!("{INDEX_PREFIX}{}-{}", tenant, kind.as_str())
    }

    /// `geostream-<tenant>-<stage>`: the Kafka consumer group of a stage, shared by its replicas so
    /// partitions are split between them.
    pub fn consumer_group(&self, tenant: &TenantId, stage: Stage) -> String {
        format!("{INDEX_PREFIX}{}-{}", tenant, stage.as_str())
    }

    /// `<prefix><tenant>.<stage>.`: how every transactional id of a tenant's stage starts. It lies
    /// under the tenant's topic prefix, which no other tenant's names start with (tenant ids
    /// contain no '.'), so one prefixed ACL covers exactly this tenant's ids; a prefix built like
    /// the groups, `geostream-acme-process-`, would also cover tenant `acme-process-x`'s.
    pub fn transactional_id_prefix(&self, tenant: &TenantId, stage: Stage) -> String {
        format!("{}{}.{}.", self.topic_prefix, tenant, stage.as_str())
    }

    /// The transactional id of one instance of a stage (the processor's pod name), stable across
    /// its restarts so Kafka fences the previous incarnation.
    pub fn transactional_id(&self, tenant: &TenantId, stage: Stage, instance: &str) -> String {
        format!("{}{instance}", self.transactional_id_prefix(tenant, stage))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn acme() -> TenantId {
        TenantId::new("acme-ports").unwrap()
    }

    #[test]
    fn names() {
        let n = Naming::default();
        assert_eq!(n.topic(&acme(), TopicKind::Observations), "acme-ports.observations");
        assert_eq!(n.index(&acme(), IndexKind::Latest), "geostream-acme-ports-latest");
        assert_eq!(n.consumer_group(&acme(), Stage::Process), "geostream-acme-ports-process");
        assert_eq!(n.transactional_id(&acme(), Stage::Process, "process-0"), "acme-ports.process.process-0");
        let n = Naming::new("staging.").unwrap();
        assert_eq!(n.topic(&acme(), TopicKind::Deadletter), "staging.acme-ports.deadletter");
        assert_eq!(n.transactional_id_prefix(&acme(), Stage::Process), "staging.acme-ports.process.");
        // No tenant's transactional ids start another tenant's prefix.
        let other = TenantId::new("acme").unwrap();
        let theirs = n.transactional_id(&acme(), Stage::Process, "x");
        assert!(!theirs.starts_with(&n.transactional_id_prefix(&other, Stage::Process)), "{theirs}");
    }

    #[test]
    fn compaction() {
        let compacted: Vec<_> = TopicKind::ALL.iter().filter(|k| k.is_compacted()).collect();
        assert_eq!(compacted, [&TopicKind::Feeds, &TopicKind::Fences, &TopicKind::Analytics, &TopicKind::ProcessState]);
    }

    #[test]
    fn longest_kind_is_longest() {
        let longest = TopicKind::ALL.iter().map(|k| k.as_str().len()).max().unwrap();
        assert_eq!(longest, LONGEST_TOPIC_KIND);
    }

    #[test]
    fn prefix_validation() {
        let e = Naming::new("a/b").unwrap_err().to_string();
        assert!(e.contains("'/' at position 1"), "{e}");
        let max = "p".repeat(Naming::MAX_TOPIC_PREFIX_LEN);
        let n = Naming::new(max).unwrap();
        let longest_tenant = TenantId::new("t".repeat(TenantId::MAX_LEN)).unwrap();
        for k in TopicKind::ALL {
            assert!(n.topic(&longest_tenant, *k).len() <= KAFKA_TOPIC_MAX_LEN);
        }
        assert!(Naming::new("p".repeat(Naming::MAX_TOPIC_PREFIX_LEN + 1)).is_err());
        let n: Naming = serde_json::from_str(r#"{"topic_prefix":"x."}"#).unwrap();
        assert_eq!(n.topic_prefix(), "x.");
        assert!(serde_json::from_str::<Naming>(r#"{"topic_prefix":"x y"}"#).is_err());
        assert_eq!(serde_json::from_str::<Naming>("{}").unwrap(), Naming::default());
    }

    #[test]
    fn enums_parse_and_display() {
        for s in Stage::ALL {
            assert_eq!(s.to_string().parse::<Stage>().unwrap(), *s);
            assert_eq!(serde_json::to_string(s).unwrap(), format!("\"{s}\""));
        }
        for k in TopicKind::ALL {
            assert_eq!(k.as_str().parse::<TopicKind>().unwrap(), *k);
        }
        for k in IndexKind::ALL {
            assert_eq!(k.as_str().parse::<IndexKind>().unwrap(), *k);
        }
        let e = "Ingest".parse::<Stage>().unwrap_err().to_string();
        assert_eq!(e, "unknown stage \"Ingest\"; expected one of: ingest, process, sink, api, operator");
    }
}
