//! The feed registry: the compacted topic `<tenant>.feeds` is the source of truth (key = feed id,
//! value = the [`FeedSpec`] as JSON, a tombstone deletes). [`RegistryState`] folds its records and
//! [`plan`] turns the folded state and what is running into start/stop actions; both are pure.
//! [`RegistryClient`] is the thin Kafka shell used by `geostream feeds` and by the ingest stage.

use std::collections::BTreeMap;
use std::time::Duration;

use geostream_model::{FeedId, FeedSpec};
use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};

/// What one registry record did to the state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Applied {
    /// A new or changed spec.
    Upserted(FeedId),
    /// A tombstone removed a feed.
    Deleted(FeedId),
    /// The record was older than what is known, or identical; nothing changed.
    Unchanged,
    /// The record could not be used; the previous spec (if any) stays.
    Invalid {
        /// The record's key as text.
        key: String,
        /// What is wrong.
        problem: String,
    },
}

/// The registry folded from its topic.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RegistryState {
    feeds: BTreeMap<FeedId, FeedSpec>,
}

impl RegistryState {
    /// Applies one record of the topic. A spec with a lower version than the known one is ignored
    /// (a late writer must not roll a feed back); a spec whose key differs from its id, or that
    /// does not validate, is refused with the reason.
    pub fn apply(&mut self, key: &[u8], value: Option<&[u8]>) -> Applied {
        let key_text = String::from_utf8_lossy(key).into_owned();
        let id = match FeedId::new(key_text.as_str()) {
            Ok(id) => id,
            Err(e) => return Applied::Invalid { key: key_text, problem: e.to_string() },
        };
        let Some(value) = value else {
            return if self.feeds.remove(&id).is_some() { Applied::Deleted(id) } else { Applied::Unchanged };
        };
        let spec: FeedSpec = match serde_json::from_slice(value) {
            Ok(s) => s,
            Err(e) => return Applied::Invalid { key: key_text, problem: format!("not a feed spec: {e}") },
        };
        if spec.id != id {
            return Applied::Invalid {
                key: key_text,
                problem: format!("the record's key names feed {id} but its spec is for feed {}", spec.id),
            };
        }
        if let Err(e) = spec.validate() {
            return Applied::Invalid { key: key_text, problem: e.to_string() };
        }
        match self.feeds.get(&id) {
            Some(known) if known.version > spec.version || *known == spec => Applied::Unchanged,
            _ => {
                self.feeds.insert(id.clone(), spec);
                Applied::Upserted(id)
            }
        }
    }

    /// A feed's spec.
    pub fn get(&self, id: &FeedId) -> Option<&FeedSpec> {
        self.feeds.get(id)
    }

    /// All feeds by id.
    pub fn feeds(&self) -> impl Iterator<Item = &FeedSpec> {
        self.feeds.values()
    }

    /// Number of feeds.
    pub fn len(&self) -> usize {
        self.feeds.len()
    }

    /// Whether no feed is registered.
    pub fn is_empty(&self) -> bool {
        self.feeds.is_empty()
    }
}

/// One step to bring the running feeds in line with the registry.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Start a feed that is not running.
    Start(FeedSpec),
    /// Stop a running feed and start it again with a changed spec.
    Restart(FeedSpec),
    /// Stop a feed that was deleted or disabled.
    Stop(FeedId),
}

/// The actions that make `running` match the enabled feeds of `state`. Stops come first so a
/// restarted or replaced feed releases its port or client id before its successor takes it.
pub fn plan(state: &RegistryState, running: &BTreeMap<FeedId, FeedSpec>) -> Vec<Action> {
    let mut stops = Vec::new();
    let mut starts = Vec::new();
    for (id, spec) in running {
        match state.get(id) {
            Some(want) if want.enabled => {
                if want != spec {
                    starts.push(Action::Restart(want.clone()));
                }
            }
            _ => stops.push(Action::Stop(id.clone())),
        }
    }
    for spec in state.feeds() {
        if spec.enabled && !running.contains_key(&spec.id) {
            starts.push(Action::Start(spec.clone()));
        }
    }
    stops.extend(starts);
    stops
}

/// Errors talking to the registry topic.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// Kafka refused or could not be reached.
    #[error("feed registry {topic}: {what}: {source}")]
    Kafka {
        /// The registry topic.
        topic: String,
        /// What was being done.
        what: &'static str,
        /// The client's error.
        #[source]
        source: KafkaError,
    },
    /// A spec could not be written as JSON.
    #[error("feed registry: spec of feed {0} could not be serialised")]
    Encode(String),
    /// The blocking reader task failed.
    #[error("feed registry: reader task failed: {0}")]
    Task(String),
}

impl geostream_model::Classify for RegistryError {
    fn class(&self) -> geostream_model::ErrorClass {
        match self {
            RegistryError::Kafka { .. } => geostream_model::ErrorClass::External,
            RegistryError::Encode(_) | RegistryError::Task(_) => geostream_model::ErrorClass::Internal,
        }
    }

    fn retryable(&self) -> bool {
        matches!(self, RegistryError::Kafka { .. })
    }
}

/// Creates `topics` (name, partitions, compacted) unless they exist. Safe to call from every
/// replica at every start: "already exists" counts as success.
pub async fn ensure_topics(
    properties: &BTreeMap<String, String>,
    topics: &[(String, i32, bool)],
    replication: Option<i32>,
) -> Result<(), RegistryError> {
    let mut cfg = ClientConfig::new();
    for (k, v) in properties {
        cfg.set(k, v);
    }
    let first = topics.first().map(|t| t.0.clone()).unwrap_or_default();
    let admin: AdminClient<DefaultClientContext> =
        cfg.create().map_err(|source| RegistryError::Kafka { topic: first.clone(), what: "admin client", source })?;
    let replication = replication.unwrap_or(-1);
    let new: Vec<NewTopic<'_>> = topics
        .iter()
        .map(|(name, partitions, compacted)| {
            let t = NewTopic::new(name, *partitions, TopicReplication::Fixed(replication));
            if *compacted { t.set("cleanup.policy", "compact") } else { t }
        })
        .collect();
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    let results = admin.create_topics(&new, &opts).await.map_err(|source| RegistryError::Kafka {
        topic: first.clone(),
        what: "create topics",
        source,
    })?;
    for r in results {
        match r {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((topic, code)) => {
                return Err(RegistryError::Kafka { topic, what: "create topic", source: KafkaError::AdminOp(code) });
            }
        }
    }
    Ok(())
}

/// Reads and writes `<tenant>.feeds`.
#[derive(Debug, Clone)]
pub struct RegistryClient {
    properties: BTreeMap<String, String>,
    topic: String,
}

impl RegistryClient {
    /// A client for `topic` with librdkafka `properties` (at least `bootstrap.servers`).
    pub fn new(properties: BTreeMap<String, String>, topic: impl Into<String>) -> Self {
        Self { properties, topic: topic.into() }
    }

    /// The registry topic.
    pub fn topic(&self) -> &str {
        &self.topic
    }

    fn kafka_err(&self, what: &'static str) -> impl FnOnce(KafkaError) -> RegistryError + '_ {
        move |source| RegistryError::Kafka { topic: self.topic.clone(), what, source }
    }

    /// Creates the compacted registry topic if it does not exist.
    pub async fn ensure_topic(&self) -> Result<(), RegistryError> {
        ensure_topics(&self.properties, &[(self.topic.clone(), 1, true)], None).await
    }

    /// Writes a spec (or, with `None`, a tombstone) and waits for Kafka's acknowledgement.
    pub async fn put(&self, id: &FeedId, spec: Option<&FeedSpec>) -> Result<(), RegistryError> {
        let mut cfg = ClientConfig::new();
        for (k, v) in &self.properties {
            cfg.set(k, v);
        }
        cfg.set("enable.idempotence", "true").set("message.timeout.ms", "30000");
        let producer: FutureProducer = cfg.create().map_err(self.kafka_err("producer"))?;
        let value = match spec {
            Some(s) => Some(serde_json::to_vec(s).map_err(|_| RegistryError::Encode(id.to_string()))?),
            None => None,
        };
        let mut record = FutureRecord::<str, [u8]>::to(&self.topic).key(id.as_str());
        if let Some(v) = &value {
            record = record.payload(v.as_slice());
        }
        producer.send(record, Duration::from_secs(30)).await.map_err(|(e, _)| self.kafka_err("write")(e))?;
        Ok(())
    }

    /// Reads the whole topic from the beginning to its current end and folds it. Used by the CLI;
    /// the ingest stage keeps a [`RegistryWatcher`] instead.
    pub async fn snapshot(&self) -> Result<(RegistryState, Vec<Applied>), RegistryError> {
        let mut watcher = RegistryWatcher::new(&self.properties, &self.topic)?;
        tokio::task::spawn_blocking(move || {
            let mut state = RegistryState::default();
            let mut notes = Vec::new();
            watcher.catch_up(&mut state, &mut notes, Duration::from_secs(30))?;
            Ok((state, notes))
        })
        .await
        .map_err(|e| RegistryError::Task(e.to_string()))?
    }
}

/// Follows the registry topic from the beginning (no consumer group, nothing committed: every
/// replica folds the whole compacted topic itself).
pub struct RegistryWatcher {
    consumer: BaseConsumer,
    topic: String,
}

impl RegistryWatcher {
    /// Assigns every partition of `topic` from the beginning.
    pub fn new(properties: &BTreeMap<String, String>, topic: &str) -> Result<Self, RegistryError> {
        let err = |what| move |source| RegistryError::Kafka { topic: topic.to_owned(), what, source };
        let mut cfg = ClientConfig::new();
        for (k, v) in properties {
            cfg.set(k, v);
        }
        cfg.set("group.id", format!("{topic}.reader"))
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("enable.partition.eof", "true")
            .set("auto.offset.reset", "earliest");
        let consumer: BaseConsumer = cfg.create().map_err(err("consumer"))?;
        let md = consumer.fetch_metadata(Some(topic), Duration::from_secs(30)).map_err(err("metadata"))?;
        let partitions: Vec<i32> = md
            .topics()
            .iter()
            .filter(|t| t.name() == topic)
            .flat_map(|t| t.partitions().iter().map(|p| p.id()))
            .collect();
        if partitions.is_empty() {
            return Err(RegistryError::Kafka {
                topic: topic.to_owned(),
                what: "metadata",
                source: KafkaError::MetadataFetch(RDKafkaErrorCode::UnknownTopicOrPartition),
            });
        }
        let mut tpl = TopicPartitionList::new();
        for p in partitions {
            tpl.add_partition_offset(topic, p, Offset::Beginning).map_err(err("assign"))?;
        }
        consumer.assign(&tpl).map_err(err("assign"))?;
        Ok(Self { consumer, topic: topic.to_owned() })
    }

    /// Applies records until every partition reached its end (or `timeout` passed without one).
    /// Blocking; run it on a blocking thread.
    pub fn catch_up(
        &mut self,
        state: &mut RegistryState,
        notes: &mut Vec<Applied>,
        timeout: Duration,
    ) -> Result<(), RegistryError> {
        let partitions = self.consumer.assignment().map(|a| a.count()).unwrap_or(1).max(1);
        let mut at_end = std::collections::BTreeSet::new();
        let deadline = std::time::Instant::now() + timeout;
        while at_end.len() < partitions {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                return Err(RegistryError::Kafka {
                    topic: self.topic.clone(),
                    what: "read to the end",
                    source: KafkaError::MessageConsumption(RDKafkaErrorCode::RequestTimedOut),
                });
            }
            match self.consumer.poll(left.min(Duration::from_millis(500))) {
                None => {}
                Some(Err(KafkaError::PartitionEOF(p))) => {
                    at_end.insert(p);
                }
                Some(Err(e)) => {
                    return Err(RegistryError::Kafka { topic: self.topic.clone(), what: "read", source: e });
                }
                Some(Ok(m)) => {
                    at_end.remove(&m.partition());
                    notes.push(state.apply(m.key().unwrap_or_default(), m.payload()));
                }
            }
        }
        Ok(())
    }

    /// Waits up to `timeout` for the next records and applies what arrived. Blocking.
    pub fn poll(
        &mut self,
        state: &mut RegistryState,
        notes: &mut Vec<Applied>,
        timeout: Duration,
    ) -> Result<(), RegistryError> {
        let mut wait = timeout;
        loop {
            match self.consumer.poll(wait) {
                None => return Ok(()),
                Some(Err(KafkaError::PartitionEOF(_))) => {}
                Some(Err(e)) => {
                    return Err(RegistryError::Kafka { topic: self.topic.clone(), what: "read", source: e });
                }
                Some(Ok(m)) => notes.push(state.apply(m.key().unwrap_or_default(), m.payload())),
            }
            // Drain what is already buffered without waiting again.
            wait = Duration::ZERO;
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn spec(id: &str, version: u64, enabled: bool) -> FeedSpec {
        serde_json::from_value(serde_json::json!({
            "id": id, "type": "http-push-json", "source": {"kind": "http_push"}, "format": "geojson",
            "version": version, "enabled": enabled
        }))
        .unwrap()
    }

    fn bytes(s: &FeedSpec) -> Vec<u8> {
        serde_json::to_vec(s).unwrap()
    }

    #[test]
    fn newer_versions_win_and_older_ones_are_ignored() {
        let mut st = RegistryState::default();
        assert_eq!(st.apply(b"a", Some(&bytes(&spec("a", 2, true)))), Applied::Upserted(FeedId::new("a").unwrap()));
        assert_eq!(st.apply(b"a", Some(&bytes(&spec("a", 1, false)))), Applied::Unchanged);
        assert!(st.get(&FeedId::new("a").unwrap()).unwrap().enabled);
        assert_eq!(st.apply(b"a", Some(&bytes(&spec("a", 2, true)))), Applied::Unchanged, "identical");
        assert_eq!(st.apply(b"a", Some(&bytes(&spec("a", 3, false)))), Applied::Upserted(FeedId::new("a").unwrap()));
        assert_eq!(st.apply(b"a", None), Applied::Deleted(FeedId::new("a").unwrap()));
        assert_eq!(st.apply(b"a", None), Applied::Unchanged);
        assert!(st.is_empty());
    }

    #[test]
    fn bad_records_are_refused_with_the_reason_and_keep_the_old_spec() {
        let mut st = RegistryState::default();
        st.apply(b"a", Some(&bytes(&spec("a", 1, true))));
        let Applied::Invalid { problem, .. } = st.apply(b"a", Some(b"{")) else { panic!() };
        assert!(problem.contains("not a feed spec"), "{problem}");
        let Applied::Invalid { problem, .. } = st.apply(b"b", Some(&bytes(&spec("a", 5, true)))) else { panic!() };
        assert!(problem.contains("key names feed b"), "{problem}");
        let Applied::Invalid { .. } = st.apply(b"Bad Key!", None) else { panic!() };
        let mut invalid = spec("a", 9, true);
        invalid.source = geostream_model::Source::Udp { address: "nohost".into() };
        let Applied::Invalid { problem, .. } = st.apply(b"a", Some(&bytes(&invalid))) else { panic!() };
        assert!(problem.contains("source.address"), "{problem}");
        assert_eq!(st.get(&FeedId::new("a").unwrap()).unwrap().version, 1);
    }

    #[test]
    fn plan_stops_first_then_restarts_and_starts() {
        let mut st = RegistryState::default();
        for s in [spec("keep", 1, true), spec("change", 2, true), spec("new", 1, true), spec("off", 2, false)] {
            st.apply(s.id.as_str().as_bytes(), Some(&bytes(&s)));
        }
        let mut running = BTreeMap::new();
        for s in [spec("keep", 1, true), spec("change", 1, true), spec("off", 1, true), spec("gone", 1, true)] {
            running.insert(s.id.clone(), s);
        }
        let actions = plan(&st, &running);
        let names: Vec<String> = actions
            .iter()
            .map(|a| match a {
                Action::Start(s) => format!("start {}", s.id),
                Action::Restart(s) => format!("restart {} v{}", s.id, s.version),
                Action::Stop(id) => format!("stop {id}"),
            })
            .collect();
        assert_eq!(names, ["stop gone", "stop off", "restart change v2", "start new"]);
        // Applying the plan leaves nothing to do.
        let mut after = BTreeMap::new();
        for s in st.feeds().filter(|s| s.enabled) {
            after.insert(s.id.clone(), s.clone());
        }
        assert!(plan(&st, &after).is_empty());
    }
}
