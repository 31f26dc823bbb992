//! Feeds, fences and analytics over the compacted registry topics the CLI writes. The API holds
//! no registry state: every request reads the topic to its end, and a write is one record (or a
//! tombstone) acknowledged by Kafka. The rules are the CLI's: a spec is validated before it is
//! written, and its version is raised only when its content changes.

use geostream_analytics::spec::AnalyticSpec;
use geostream_ingest::registry::RegistryClient;
use geostream_model::{FeedSpec, FenceSpec};
use geostream_processor::registry::{RegistryTopic, check_room};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::problem::ApiError;

/// A spec held by a registry (local so feeds, fences and analytics share one set of handlers).
pub trait Spec: Clone + PartialEq + Serialize + DeserializeOwned {
    /// What it is, for messages.
    const WHAT: &'static str;
    /// The id.
    fn id(&self) -> &str;
    /// The version.
    fn version(&self) -> u64;
    /// Sets the version.
    fn set_version(&mut self, v: u64);
    /// Validates the spec on its own.
    fn check(&self) -> Result<(), String>;
}

impl Spec for FeedSpec {
    const WHAT: &'static str = "feed";
    fn id(&self) -> &str {
        self.id.as_str()
    }
    fn version(&self) -> u64 {
        self.version
    }
    fn set_version(&mut self, v: u64) {
        self.version = v;
    }
    fn check(&self) -> Result<(), String> {
        geostream_ingest::pipeline::check_feed(self)
    }
}

macro_rules! via_registry_spec {
    ($t:ty) => {
        impl Spec for $t {
            const WHAT: &'static str = <$t as geostream_processor::registry::RegistrySpec>::WHAT;
            fn id(&self) -> &str {
                geostream_processor::registry::RegistrySpec::id(self)
            }
            fn version(&self) -> u64 {
                geostream_processor::registry::RegistrySpec::version(self)
            }
            fn set_version(&mut self, v: u64) {
                geostream_processor::registry::RegistrySpec::set_version(self, v)
            }
            fn check(&self) -> Result<(), String> {
                geostream_processor::registry::RegistrySpec::check(self)
            }
        }
    };
}
via_registry_spec!(FenceSpec);
via_registry_spec!(AnalyticSpec);

/// What a PUT does.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome<T> {
    /// Not registered before: written at version 1 (or the body's, if higher). 201.
    Created(T),
    /// Registered with other content: written at the next version. 200.
    Updated(T),
    /// Registered with the same content: nothing written. 200.
    Unchanged(T),
}

/// Decides a PUT of `body` to `path_id` against what is registered. Pure.
///
/// The body may leave out `id` (the path names it) and `version` (the registry sets it); an `id`
/// that differs from the path is refused rather than guessed.
pub fn decide<T: Spec>(path_id: &str, body: &[u8], registered: Option<&T>) -> Result<Outcome<T>, ApiError> {
    let bad = |problem: String| {
        ApiError::param("body", problem, format!("send the {} spec as a JSON object (see docs/api.md)", T::WHAT))
    };
    let mut v: Value = serde_json::from_slice(body).map_err(|e| bad(format!("is not JSON: {e}")))?;
    let obj = v.as_object_mut().ok_or_else(|| bad("is not a JSON object".into()))?;
    match obj.get("id") {
        None => {
            obj.insert("id".into(), Value::String(path_id.to_owned()));
        }
        Some(Value::String(id)) if id == path_id => {}
        Some(other) => {
            return Err(ApiError::param(
                "id",
                format!("the body's id {other} differs from the path's {path_id:?}"),
                "leave id out of the body or make it equal to the path",
            ));
        }
    }
    let mut spec: T = serde_json::from_value(v).map_err(|e| bad(format!("is not a valid {} spec: {e}", T::WHAT)))?;
    spec.check().map_err(|e| bad(format!("does not validate: {e}")))?;
    Ok(match registered {
        None => {
            spec.set_version(spec.version().max(1));
            Outcome::Created(spec)
        }
        Some(old) => {
            let mut same = spec.clone();
            same.set_version(old.version());
            if same == *old {
                Outcome::Unchanged(old.clone())
            } else {
                spec.set_version(spec.version().max(old.version() + 1));
                Outcome::Updated(spec)
            }
        }
    })
}

/// Which registry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `<tenant>.feeds`.
    Feeds,
    /// `<tenant>.fences`.
    Fences,
    /// `<tenant>.analytics`.
    Analytics,
}

impl Kind {
    /// From the URL segment.
    pub fn from_segment(s: &str) -> Option<Kind> {
        match s {
            "feeds" => Some(Kind::Feeds),
            "fences" => Some(Kind::Fences),
            "analytics" => Some(Kind::Analytics),
            _ => None,
        }
    }
}

fn kafka(e: impl std::fmt::Display) -> ApiError {
    ApiError::Kafka(e.to_string())
}

/// The three registries of the tenant.
#[derive(Debug, Clone)]
pub struct Registries {
    /// Feeds.
    pub feeds: RegistryClient,
    /// Fences.
    pub fences: RegistryTopic,
    /// Analytics.
    pub analytics: RegistryTopic,
}

impl Registries {
    async fn ensure(&self, kind: Kind) -> Result<(), ApiError> {
        match kind {
            Kind::Feeds => self.feeds.ensure_topic().await.map_err(kafka),
            Kind::Fences => self.fences.ensure().await.map_err(kafka),
            Kind::Analytics => self.analytics.ensure().await.map_err(kafka),
        }
    }

    async fn all_feeds(&self) -> Result<Vec<FeedSpec>, ApiError> {
        let (state, _) = self.feeds.snapshot().await.map_err(kafka)?;
        Ok(state.feeds().cloned().collect())
    }

    async fn all<T: Spec + geostream_processor::registry::RegistrySpec + Send + 'static>(
        topic: &RegistryTopic,
    ) -> Result<Vec<T>, ApiError> {
        let (reg, _) = topic.read::<T>().await.map_err(kafka)?;
        Ok(reg.specs().cloned().collect())
    }

    /// Every spec of `kind`, as JSON.
    pub async fn list(&self, kind: Kind) -> Result<Vec<Value>, ApiError> {
        self.ensure(kind).await?;
        let values = match kind {
            Kind::Feeds => to_values(&self.all_feeds().await?),
            Kind::Fences => to_values(&Self::all::<FenceSpec>(&self.fences).await?),
            Kind::Analytics => to_values(&Self::all::<AnalyticSpec>(&self.analytics).await?),
        };
        Ok(values)
    }

    /// One spec, or 404.
    pub async fn get(&self, kind: Kind, id: &str) -> Result<Value, ApiError> {
        self.list(kind)
            .await?
            .into_iter()
            .find(|v| v.get("id").and_then(Value::as_str) == Some(id))
            .ok_or_else(|| ApiError::NotFound(format!("no {} {id:?} is registered", what(kind))))
    }

    /// Applies a PUT; returns whether it created the spec, and the spec as registered.
    pub async fn put(&self, kind: Kind, id: &str, body: &[u8]) -> Result<(bool, Value), ApiError> {
        self.ensure(kind).await?;
        match kind {
            Kind::Feeds => {
                let all = self.all_feeds().await?;
                let outcome = decide::<FeedSpec>(id, body, all.iter().find(|f| f.id.as_str() == id))?;
                let (created, spec, write) = split(outcome);
                if write {
                    self.feeds.put(&spec.id, Some(&spec)).await.map_err(kafka)?;
                }
                Ok((created, to_value(&spec)))
            }
            Kind::Fences => put_topic::<FenceSpec>(&self.fences, id, body).await,
            Kind::Analytics => put_topic::<AnalyticSpec>(&self.analytics, id, body).await,
        }
    }

    /// Deletes a spec (a tombstone); 404 when it is not registered.
    pub async fn delete(&self, kind: Kind, id: &str) -> Result<(), ApiError> {
        self.get(kind, id).await?;
        match kind {
            Kind::Feeds => {
                let feed = geostream_model::FeedId::new(id)
                    .map_err(|e| ApiError::param("id", e.to_string(), "use the id of a registered feed"))?;
                self.feeds.put(&feed, None).await.map_err(kafka)
            }
            Kind::Fences => self.fences.put(id, None).await.map_err(kafka),
            Kind::Analytics => self.analytics.put(id, None).await.map_err(kafka),
        }
    }
}

fn what(kind: Kind) -> &'static str {
    match kind {
        Kind::Feeds => "feed",
        Kind::Fences => "fence",
        Kind::Analytics => "analytic",
    }
}

fn split<T: Spec>(o: Outcome<T>) -> (bool, T, bool) {
    match o {
        Outcome::Created(s) => (true, s, true),
        Outcome::Updated(s) => (false, s, true),
        Outcome::Unchanged(s) => (false, s, false),
    }
}

async fn put_topic<T: Spec + geostream_processor::registry::RegistrySpec + Send + 'static>(
    topic: &RegistryTopic,
    id: &str,
    body: &[u8],
) -> Result<(bool, Value), ApiError> {
    let all = Registries::all::<T>(topic).await?;
    let outcome = decide::<T>(id, body, all.iter().find(|s| Spec::id(*s) == id))?;
    let (created, spec, write) = split(outcome);
    if created {
        check_room::<T>(all.len(), all.len() + 1).map_err(|problem| {
            ApiError::param("id", problem, format!("delete {}s the tenant no longer uses first", <T as Spec>::WHAT))
        })?;
    }
    if write {
        let bytes = serde_json::to_vec(&spec).map_err(|e| ApiError::Kafka(e.to_string()))?;
        topic.put(Spec::id(&spec), Some(&bytes)).await.map_err(kafka)?;
    }
    Ok((created, to_value(&spec)))
}

fn to_value<T: Serialize>(s: &T) -> Value {
    serde_json::to_value(s).unwrap_or(Value::Null)
}

fn to_values<T: Serialize>(specs: &[T]) -> Vec<Value> {
    specs.iter().map(to_value).collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::json;

    fn gaps(threshold: u64) -> Vec<u8> {
        serde_json::to_vec(&json!({"analytic": {"kind": "gaps", "threshold_s": threshold}})).unwrap()
    }

    fn param_of(e: ApiError) -> String {
        match e {
            ApiError::InvalidParameter { parameter, .. } => parameter,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn versions_rise_only_on_change() {
        let Outcome::Created(first) = decide::<AnalyticSpec>("g", &gaps(60), None).unwrap() else { panic!() };
        assert_eq!((first.id.as_str(), first.version), ("g", 1));
        let again = decide::<AnalyticSpec>("g", &gaps(60), Some(&first)).unwrap();
        assert_eq!(again, Outcome::Unchanged(first.clone()));
        let Outcome::Updated(second) = decide::<AnalyticSpec>("g", &gaps(90), Some(&first)).unwrap() else { panic!() };
        assert_eq!(second.version, 2);
        // A body version above the registered one is kept (the CLI does the same).
        let body = serde_json::to_vec(&json!({"version": 7, "analytic": {"kind": "gaps", "threshold_s": 30}})).unwrap();
        let Outcome::Updated(s) = decide::<AnalyticSpec>("g", &body, Some(&second)).unwrap() else { panic!() };
        assert_eq!(s.version, 7);
    }

    #[test]
    fn bad_bodies_are_refused_with_the_reason() {
        assert_eq!(param_of(decide::<AnalyticSpec>("g", b"not json", None).unwrap_err()), "body");
        assert_eq!(param_of(decide::<AnalyticSpec>("g", b"[1]", None).unwrap_err()), "body");
        let other_id = serde_json::to_vec(&json!({"id": "h", "analytic": {"kind": "gaps", "threshold_s": 5}})).unwrap();
        assert_eq!(param_of(decide::<AnalyticSpec>("g", &other_id, None).unwrap_err()), "id");
        let e = decide::<AnalyticSpec>("g", &gaps(0), None).unwrap_err();
        assert!(e.to_string().contains("threshold_s"), "{e}");
        let unknown = serde_json::to_vec(&json!({"analytic": {"kind": "teleport"}})).unwrap();
        assert_eq!(param_of(decide::<AnalyticSpec>("g", &unknown, None).unwrap_err()), "body");
    }

    #[test]
    fn fences_validate_their_geometry() {
        let ok = json!({"name": "harbour", "geometry": {"type": "Polygon", "coordinates": [[[0.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 0.0]]]}});
        let Outcome::Created(f) = decide::<FenceSpec>("h", &serde_json::to_vec(&ok).unwrap(), None).unwrap() else {
            panic!()
        };
        assert_eq!(f.version, 1);
        let bad =
            json!({"name": "harbour", "geometry": {"type": "Polygon", "coordinates": [[[0.0, 0.0], [1.0, 0.0]]]}});
        assert_eq!(param_of(decide::<FenceSpec>("h", &serde_json::to_vec(&bad).unwrap(), None).unwrap_err()), "body");
        assert_eq!(Kind::from_segment("fences"), Some(Kind::Fences));
        assert_eq!(Kind::from_segment("latest"), None);
    }
}
