//! The feed registry: the compacted topic `<tenant>.feeds` is the source of truth (key = feed id,
//! value = the [`FeedSpec`] as JSON, a tombstone deletes). [`RegistryState`] folds its records and
//! [`plan`] turns the folded state and what is running into start/stop actions; both are pure.
//! [`RegistryClient`] is the thin Kafka shell used by `geostream feeds` and by the ingest stage.

use std::collections::BTreeMap;
use std::time::Duration;

use geostream_kafka::{CompactedReader, TopicSpec, client_config};
use geostream_model::{FeedId, FeedSpec};
use rdkafka::error::KafkaError;
use rdkafka::producer::{FutureProducer, FutureRecord};

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

impl From<geostream_kafka::KafkaOpError> for RegistryError {
    fn from(e: geostream_kafka::KafkaOpError) -> Self {
        RegistryError::Kafka { topic: e.topic, what: e.what, source: e.source }
    }
}

/// Creates `topics` (name, partitions, compacted) unless they exist (see
/// [`geostream_kafka::ensure_topics`]).
pub async fn ensure_topics(
    properties: &BTreeMap<String, String>,
    topics: &[(String, i32, bool)],
    replication: Option<i32>,
) -> Result<(), RegistryError> {
    let specs: Vec<TopicSpec> = topics.iter().map(|(n, p, c)| TopicSpec::new(n.clone(), *p, *c)).collect();
    Ok(geostream_kafka::ensure_topics(properties, &specs, replication).await?)
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
        let mut cfg = client_config(&self.properties);
        cfg.set("enable.idempotence", "true").set("message.timeout.ms", "30000");
        let producer: FutureProducer<geostream_kafka::Kept> =
            geostream_kafka::create(&cfg, ()).map_err(self.kafka_err("producer"))?;
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
    reader: CompactedReader,
}

impl RegistryWatcher {
    /// Assigns every partition of `topic` from the beginning.
    pub fn new(properties: &BTreeMap<String, String>, topic: &str) -> Result<Self, RegistryError> {
        Ok(Self { reader: CompactedReader::new(properties, topic)? })
    }

    /// Applies records until every partition reached its end (or `timeout` passed without one).
    /// Blocking; run it on a blocking thread.
    pub fn catch_up(
        &mut self,
        state: &mut RegistryState,
        notes: &mut Vec<Applied>,
        timeout: Duration,
    ) -> Result<(), RegistryError> {
        Ok(self.reader.catch_up(&mut |k, v| notes.push(state.apply(k, v)), timeout)?)
    }

    /// Waits up to `timeout` for the next records and applies what arrived. Blocking.
    pub fn poll(
        &mut self,
        state: &mut RegistryState,
        notes: &mut Vec<Applied>,
        timeout: Duration,
    ) -> Result<(), RegistryError> {
        Ok(self.reader.poll(&mut |k, v| notes.push(state.apply(k, v)), timeout)?)
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
