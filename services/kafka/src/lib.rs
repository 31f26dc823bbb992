//! Kafka plumbing shared by the stages: librdkafka settings from a property map, idempotent topic
//! creation, and a reader that folds a compacted registry topic (`<tenant>.feeds`, `.fences`,
//! `.analytics`) from the beginning and then follows it.
//!
//! Also the ACLs a tenant's principal needs ([`acls`]).
//!
//! Must not: know any record format; callers fold the raw keys and values themselves.

pub mod acls;
pub mod keeper;

pub use keeper::{Hooks, Kept, create};

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};

/// A Kafka call that failed.
#[derive(Debug, thiserror::Error)]
#[error("{topic}: {what}: {source}")]
pub struct KafkaOpError {
    /// The topic concerned.
    pub topic: String,
    /// What was being done.
    pub what: &'static str,
    /// The client's error.
    #[source]
    pub source: KafkaError,
}

impl KafkaOpError {
    /// An error about `topic` while doing `what`.
    pub fn new(topic: impl Into<String>, what: &'static str, source: KafkaError) -> Self {
        Self { topic: topic.into(), what, source }
    }

    /// Whether the topic does not exist (yet).
    pub fn is_unknown_topic(&self) -> bool {
        matches!(self.source, KafkaError::MetadataFetch(RDKafkaErrorCode::UnknownTopicOrPartition))
    }
}

impl geostream_model::Classify for KafkaOpError {
    fn class(&self) -> geostream_model::ErrorClass {
        geostream_model::ErrorClass::External
    }

    fn retryable(&self) -> bool {
        true
    }
}

/// A librdkafka configuration holding `properties` (at least `bootstrap.servers`).
pub fn client_config(properties: &BTreeMap<String, String>) -> ClientConfig {
    let mut cfg = ClientConfig::new();
    for (k, v) in properties {
        cfg.set(k, v);
    }
    cfg
}

/// A topic to create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicSpec {
    /// Its name.
    pub name: String,
    /// Partition count.
    pub partitions: i32,
    /// `cleanup.policy=compact` (registries, state changelogs) rather than time retention.
    pub compacted: bool,
    /// Further topic settings, e.g. `max.message.bytes`.
    pub settings: Vec<(String, String)>,
}

impl TopicSpec {
    /// A topic without extra settings.
    pub fn new(name: impl Into<String>, partitions: i32, compacted: bool) -> Self {
        Self { name: name.into(), partitions, compacted, settings: Vec::new() }
    }
}

/// Creates `topics` unless they exist. Safe to call from every replica at every start:
/// "already exists" counts as success. `replication` None uses the broker default.
pub async fn ensure_topics(
    properties: &BTreeMap<String, String>,
    topics: &[TopicSpec],
    replication: Option<i32>,
) -> Result<(), KafkaOpError> {
    let first = topics.first().map(|t| t.name.clone()).unwrap_or_default();
    let admin: AdminClient<DefaultClientContext> =
        client_config(properties).create().map_err(|e| KafkaOpError::new(first.clone(), "admin client", e))?;
    let replication = replication.unwrap_or(-1);
    let new: Vec<NewTopic<'_>> = topics
        .iter()
        .map(|t| {
            let mut n = NewTopic::new(&t.name, t.partitions, TopicReplication::Fixed(replication));
            if t.compacted {
                n = n.set("cleanup.policy", "compact");
            }
            for (k, v) in &t.settings {
                n = n.set(k, v);
            }
            n
        })
        .collect();
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    let results =
        admin.create_topics(&new, &opts).await.map_err(|e| KafkaOpError::new(first.clone(), "create topics", e))?;
    for r in results {
        match r {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((topic, code)) => return Err(KafkaOpError::new(topic, "create topic", KafkaError::AdminOp(code))),
        }
    }
    Ok(())
}

/// The partition ids of `topic`, from the cluster's metadata.
pub fn partitions_of<C: ConsumerContext>(
    consumer: &BaseConsumer<C>,
    topic: &str,
    timeout: Duration,
) -> Result<Vec<i32>, KafkaOpError> {
    let md = consumer.fetch_metadata(Some(topic), timeout).map_err(|e| KafkaOpError::new(topic, "metadata", e))?;
    let mut partitions = Vec::new();
    for t in md.topics().iter().filter(|t| t.name() == topic) {
        if let Some(e) = t.error() {
            return Err(KafkaOpError::new(topic, "metadata", KafkaError::MetadataFetch(e.into())));
        }
        partitions.extend(t.partitions().iter().map(|p| p.id()));
    }
    if partitions.is_empty() {
        return Err(KafkaOpError::new(
            topic,
            "metadata",
            KafkaError::MetadataFetch(RDKafkaErrorCode::UnknownTopicOrPartition),
        ));
    }
    partitions.sort_unstable();
    Ok(partitions)
}

/// A client context for readers that ask for end-of-partition events: librdkafka also reports
/// those as client errors, which the default context would log at error level on every read.
#[derive(Debug, Clone, Copy, Default)]
pub struct ReaderContext;

impl Hooks for ReaderContext {
    fn error(&self, error: KafkaError, reason: &str) {
        if !matches!(error, KafkaError::PartitionEOF(_) | KafkaError::Global(RDKafkaErrorCode::PartitionEOF)) {
            tracing::error!(error = %error, reason, "kafka client error");
        }
    }
}

/// A consumer for reading to the end of partitions (no group membership).
pub type ReaderConsumer = BaseConsumer<Kept<ReaderContext>>;

/// Receives each record's key and value (`None`: a tombstone).
pub type Apply<'a> = dyn FnMut(&[u8], Option<&[u8]>) + 'a;

/// Follows a compacted topic from the beginning (no consumer group, nothing committed: every
/// reader folds the whole topic itself, as a registry needs).
pub struct CompactedReader {
    consumer: ReaderConsumer,
    topic: String,
}

impl CompactedReader {
    /// Assigns every partition of `topic` from the beginning.
    pub fn new(properties: &BTreeMap<String, String>, topic: &str) -> Result<Self, KafkaOpError> {
        let mut cfg = client_config(properties);
        cfg.set("group.id", format!("{topic}.reader"))
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("enable.partition.eof", "true")
            .set("auto.offset.reset", "earliest");
        let consumer: ReaderConsumer =
            create(&cfg, ReaderContext).map_err(|e| KafkaOpError::new(topic, "consumer", e))?;
        let mut tpl = TopicPartitionList::new();
        for p in partitions_of(&consumer, topic, Duration::from_secs(30))? {
            tpl.add_partition_offset(topic, p, Offset::Beginning).map_err(|e| KafkaOpError::new(topic, "assign", e))?;
        }
        consumer.assign(&tpl).map_err(|e| KafkaOpError::new(topic, "assign", e))?;
        Ok(Self { consumer, topic: topic.to_owned() })
    }

    /// The topic read.
    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// Hands `apply` every record (key, value; `None` is a tombstone) until each partition reached
    /// its end, or fails after `timeout` without getting there. Blocking.
    pub fn catch_up(&mut self, apply: &mut Apply<'_>, timeout: Duration) -> Result<(), KafkaOpError> {
        let partitions = self.consumer.assignment().map(|a| a.count()).unwrap_or(1).max(1);
        let mut at_end = BTreeSet::new();
        let deadline = Instant::now() + timeout;
        while at_end.len() < partitions {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(KafkaOpError::new(
                    &self.topic,
                    "read to the end",
                    KafkaError::MessageConsumption(RDKafkaErrorCode::RequestTimedOut),
                ));
            }
            match self.consumer.poll(left.min(Duration::from_millis(500))) {
                None => {}
                Some(Err(KafkaError::PartitionEOF(p))) => {
                    at_end.insert(p);
                }
                Some(Err(e)) => return Err(KafkaOpError::new(&self.topic, "read", e)),
                Some(Ok(m)) => {
                    at_end.remove(&m.partition());
                    apply(m.key().unwrap_or_default(), m.payload());
                }
            }
        }
        Ok(())
    }

    /// Waits up to `timeout` for the next records and hands over what arrived. Blocking.
    pub fn poll(&mut self, apply: &mut Apply<'_>, timeout: Duration) -> Result<(), KafkaOpError> {
        let mut wait = timeout;
        loop {
            match self.consumer.poll(wait) {
                None => return Ok(()),
                Some(Err(KafkaError::PartitionEOF(_))) => {}
                Some(Err(e)) => return Err(KafkaOpError::new(&self.topic, "read", e)),
                Some(Ok(m)) => apply(m.key().unwrap_or_default(), m.payload()),
            }
            // Drain what is already buffered without waiting again.
            wait = Duration::ZERO;
        }
    }
}
