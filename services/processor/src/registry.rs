//! The fence and analytic registries the processor runs: the compacted topics `<tenant>.fences`
//! and `<tenant>.analytics` folded into the latest valid spec per id. Pure.
//!
//! Rules (the same as the feed registry's): key = id, value = the spec as JSON, a tombstone
//! deletes; a record whose version is lower than the one held, or that is identical, changes
//! nothing; an invalid record is refused with the reason and the previous spec stays, so one bad
//! write never stops analytics that were running.

use std::collections::BTreeMap;

use geostream_analytics::spec::AnalyticSpec;
use geostream_model::FenceSpec;
use serde::de::DeserializeOwned;

/// A spec kept in a registry.
pub trait RegistrySpec: Clone + PartialEq + DeserializeOwned + serde::Serialize {
    /// What the registry holds, for messages.
    const WHAT: &'static str;
    /// The id (the record key).
    fn id(&self) -> &str;
    /// The version; only increases.
    fn version(&self) -> u64;
    /// Sets the version (the CLI raises it on every change).
    fn set_version(&mut self, version: u64);
    /// Checks the spec on its own.
    fn check(&self) -> Result<(), String>;
    /// Most specs of this kind one tenant may register.
    const MAX_PER_TENANT: usize = usize::MAX;
}

/// Refuses a change after which a tenant's registry would hold `after` specs, more than it may.
/// Shrinking a registry that is already over the limit (written by another producer) is allowed.
pub fn check_room<T: RegistrySpec>(before: usize, after: usize) -> Result<(), String> {
    if after > T::MAX_PER_TENANT && after > before {
        Err(format!(
            "the tenant would have {after} {what}s; the limit is {limit} per tenant: delete {what}s it no longer \
             uses, or merge them (a MultiPolygon is one fence)",
            what = T::WHAT,
            limit = T::MAX_PER_TENANT
        ))
    } else {
        Ok(())
    }
}

impl RegistrySpec for FenceSpec {
    const WHAT: &'static str = "fence";
    const MAX_PER_TENANT: usize = geostream_model::MAX_FENCES_PER_TENANT;
    fn id(&self) -> &str {
        self.id.as_str()
    }
    fn version(&self) -> u64 {
        self.version
    }
    fn set_version(&mut self, version: u64) {
        self.version = version;
    }
    fn check(&self) -> Result<(), String> {
        self.validate().map_err(|e| e.to_string())?;
        geostream_analytics::FenceIndex::check(self).map_err(|e| e.to_string())
    }
}

impl RegistrySpec for AnalyticSpec {
    const WHAT: &'static str = "analytic";
    fn id(&self) -> &str {
        self.id.as_str()
    }
    fn version(&self) -> u64 {
        self.version
    }
    fn set_version(&mut self, version: u64) {
        self.version = version;
    }
    fn check(&self) -> Result<(), String> {
        self.validate().map_err(|e| e.to_string())
    }
}

/// What one record did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// A new or changed spec.
    Upserted(String),
    /// A tombstone removed one.
    Deleted(String),
    /// Older or identical: nothing changed.
    Unchanged,
    /// Refused; the previous spec (if any) stays.
    Invalid {
        /// The record key as text.
        key: String,
        /// Why.
        problem: String,
    },
}

impl Change {
    /// Whether the state changed.
    pub fn changed(&self) -> bool {
        matches!(self, Change::Upserted(_) | Change::Deleted(_))
    }
}

/// The latest valid spec per id.
#[derive(Debug, Clone, PartialEq)]
pub struct Registry<T> {
    specs: BTreeMap<String, T>,
}

impl<T> Default for Registry<T> {
    fn default() -> Self {
        Self { specs: BTreeMap::new() }
    }
}

impl<T: RegistrySpec> Registry<T> {
    /// Folds one record.
    pub fn apply(&mut self, key: &[u8], value: Option<&[u8]>) -> Change {
        let key_text = String::from_utf8_lossy(key).into_owned();
        let invalid = |problem: String| Change::Invalid { key: key_text.clone(), problem };
        let Ok(id) = std::str::from_utf8(key) else {
            return invalid("the key is not UTF-8".into());
        };
        let Some(value) = value else {
            return match self.specs.remove(id) {
                Some(_) => Change::Deleted(id.to_owned()),
                None => Change::Unchanged,
            };
        };
        let spec: T = match serde_json::from_slice(value) {
            Ok(s) => s,
            Err(e) => return invalid(format!("not a {} spec: {e}", T::WHAT)),
        };
        if spec.id() != id {
            return invalid(format!("the key names {} {id} but the spec is {:?}", T::WHAT, spec.id()));
        }
        if let Err(problem) = spec.check() {
            return invalid(problem);
        }
        match self.specs.get(id) {
            Some(old) if old.version() > spec.version() || *old == spec => Change::Unchanged,
            _ => {
                self.specs.insert(id.to_owned(), spec);
                Change::Upserted(id.to_owned())
            }
        }
    }

    /// The specs, by id.
    pub fn specs(&self) -> impl Iterator<Item = &T> {
        self.specs.values()
    }

    /// How many.
    pub fn len(&self) -> usize {
        self.specs.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.specs.is_empty()
    }
}

/// Reads and writes a registry topic from the command line (`geostream fences`, `geostream
/// analytics`); the stage follows it with its own reader instead.
#[derive(Debug, Clone)]
pub struct RegistryTopic {
    properties: std::collections::BTreeMap<String, String>,
    topic: String,
}

impl RegistryTopic {
    /// A client for `topic` with librdkafka `properties` (at least `bootstrap.servers`).
    pub fn new(properties: std::collections::BTreeMap<String, String>, topic: impl Into<String>) -> Self {
        Self { properties, topic: topic.into() }
    }

    /// The topic.
    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// Creates the compacted topic if it does not exist.
    pub async fn ensure(&self) -> Result<(), geostream_kafka::KafkaOpError> {
        let spec = geostream_kafka::TopicSpec::new(&self.topic, 1, true);
        geostream_kafka::ensure_topics(&self.properties, &[spec], None).await
    }

    /// The whole topic folded, with the records that were refused.
    pub async fn read<T: RegistrySpec + Send + 'static>(
        &self,
    ) -> Result<(Registry<T>, Vec<Change>), geostream_kafka::KafkaOpError> {
        let (props, topic) = (self.properties.clone(), self.topic.clone());
        let joined = tokio::task::spawn_blocking(move || {
            let mut reader = geostream_kafka::CompactedReader::new(&props, &topic)?;
            let mut reg = Registry::<T>::default();
            let mut refused = Vec::new();
            reader.catch_up(
                &mut |k, v| {
                    let c = reg.apply(k, v);
                    if matches!(c, Change::Invalid { .. }) {
                        refused.push(c);
                    }
                },
                std::time::Duration::from_secs(30),
            )?;
            Ok((reg, refused))
        })
        .await;
        match joined {
            Ok(result) => result,
            Err(e) => {
                tracing::error!(error = %e, "registry reader task failed");
                Err(geostream_kafka::KafkaOpError::new(
                    &self.topic,
                    "reader task",
                    rdkafka::error::KafkaError::Canceled,
                ))
            }
        }
    }

    /// Writes a spec (JSON) or, with `None`, a tombstone, and waits for Kafka's acknowledgement.
    pub async fn put(&self, id: &str, value: Option<&[u8]>) -> Result<(), geostream_kafka::KafkaOpError> {
        self.put_all(&[(id, value)]).await
    }

    /// Writes specs and tombstones through one producer, all in flight at once, and waits for
    /// every acknowledgement: a file of hundreds of fences is one round of writes, not one
    /// producer start-up per fence. The first failure is returned once all have settled.
    pub async fn put_all(&self, records: &[(&str, Option<&[u8]>)]) -> Result<(), geostream_kafka::KafkaOpError> {
        use rdkafka::producer::{FutureProducer, FutureRecord};
        let mut cfg = geostream_kafka::client_config(&self.properties);
        cfg.set("enable.idempotence", "true").set("message.timeout.ms", "30000");
        let producer: FutureProducer =
            cfg.create().map_err(|e| geostream_kafka::KafkaOpError::new(&self.topic, "producer", e))?;
        let sends = records.iter().map(|(id, value)| {
            let mut record = FutureRecord::<str, [u8]>::to(&self.topic).key(*id);
            if let Some(v) = value {
                record = record.payload(*v);
            }
            producer.send(record, std::time::Duration::from_secs(30))
        });
        let results = futures::future::join_all(sends).await;
        for r in results {
            r.map_err(|(e, _)| geostream_kafka::KafkaOpError::new(&self.topic, "write", e))?;
        }
        Ok(())
    }
}

impl<T: RegistrySpec> Registry<T> {
    /// The spec of `id`.
    pub fn get(&self, id: &str) -> Option<&T> {
        self.specs.get(id)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn fence(id: &str, version: u64, radius: f64) -> Vec<u8> {
        serde_json::to_vec(&serde_json::json!({
            "id": id, "version": version, "name": format!("fence {id}"),
            "geometry": {"type": "Circle", "center": [10.0, 50.0], "radius_m": radius}
        }))
        .unwrap()
    }

    #[test]
    fn a_tenant_cannot_grow_its_fences_past_the_limit_but_may_shrink_an_oversized_set() {
        let max = geostream_model::MAX_FENCES_PER_TENANT;
        assert_eq!(check_room::<FenceSpec>(0, max), Ok(()));
        assert_eq!(check_room::<FenceSpec>(max - 1, max), Ok(()));
        assert_eq!(check_room::<FenceSpec>(max, max), Ok(()), "an update at the limit");
        let e = check_room::<FenceSpec>(max, max + 1).unwrap_err();
        assert!(e.contains(&format!("{} fences", max + 1)) && e.contains(&format!("limit is {max}")), "{e}");
        assert!(check_room::<FenceSpec>(0, max + 1).is_err());
        assert_eq!(check_room::<FenceSpec>(max + 5, max + 2), Ok(()), "shrinking an oversized set");
        assert!(check_room::<FenceSpec>(max + 5, max + 6).is_err());
        assert_eq!(check_room::<AnalyticSpec>(usize::MAX - 1, usize::MAX - 1), Ok(()), "analytics have no limit");
    }

    #[test]
    fn versions_move_forward_and_bad_records_keep_the_old_spec() {
        let mut r = Registry::<FenceSpec>::default();
        let probe: Result<FenceSpec, _> = serde_json::from_slice(&fence("a", 1, 100.0));
        assert!(probe.is_ok(), "test fence shape: {probe:?}");
        assert_eq!(r.apply(b"a", Some(&fence("a", 2, 100.0))), Change::Upserted("a".into()));
        assert_eq!(r.apply(b"a", Some(&fence("a", 1, 300.0))), Change::Unchanged, "older");
        assert_eq!(r.apply(b"a", Some(&fence("a", 2, 100.0))), Change::Unchanged, "identical");
        let Change::Invalid { problem, .. } = r.apply(b"a", Some(&fence("a", 3, -5.0))) else { panic!() };
        assert!(problem.contains("radius"), "{problem}");
        let Change::Invalid { problem, .. } = r.apply(b"b", Some(&fence("a", 9, 5.0))) else { panic!() };
        assert!(problem.contains("key names fence b"), "{problem}");
        let Change::Invalid { problem, .. } = r.apply(b"a", Some(b"{")) else { panic!() };
        assert!(problem.contains("not a fence spec"), "{problem}");
        assert_eq!(r.specs().next().unwrap().version, 2);
        assert_eq!(r.apply(b"a", None), Change::Deleted("a".into()));
        assert_eq!(r.apply(b"a", None), Change::Unchanged);
        assert!(r.is_empty());
    }

    #[test]
    fn analytics_are_validated() {
        let mut r = Registry::<AnalyticSpec>::default();
        let bad = br#"{"id": "g", "analytic": {"kind": "gaps", "threshold_s": 0}}"#;
        let Change::Invalid { problem, .. } = r.apply(b"g", Some(bad)) else { panic!() };
        assert!(problem.contains("threshold_s"), "{problem}");
        let good = br#"{"id": "g", "analytic": {"kind": "gaps", "threshold_s": 60}}"#;
        assert!(r.apply(b"g", Some(good)).changed());
        assert_eq!(r.len(), 1);
    }
}
