//! SensorFeed and GeofenceSet reconciliation, pure: the registry records a resource asks for, what
//! to write given what the topic holds, and the status conditions that say how it went.
//!
//! The registry rules are the topic's own (a record with a version not above the held one is
//! ignored), so a write always carries the held version + 1; an unchanged spec is not written again
//! (reconciles repeat, and every write would otherwise wake every ingest replica).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use geostream_model::{FeedId, FeedSpec, FenceSpec, TenantId};
use geostream_processor::registry::RegistrySpec;
use serde_json::Value;

use crate::crd::{Condition, GeofenceSetSpec, SensorFeedSpec};

/// Catalog type name to the feed spec its file starts from (the entry's `feed`).
pub type Catalog = BTreeMap<String, Value>;

/// Reads `dir/*.yaml` (the feed catalog, `feeds/` in the repository, `/usr/share/geostream/feeds`
/// in the image).
pub fn load_catalog(dir: &Path) -> Result<Catalog, String> {
    let rd = std::fs::read_dir(dir).map_err(|e| format!("feed catalog {}: {e}", dir.display()))?;
    let mut catalog = Catalog::new();
    for entry in rd.filter_map(Result::ok) {
        let path = entry.path();
        let Some(stem) = path.file_name().and_then(|n| n.to_str()).and_then(|n| n.strip_suffix(".yaml")) else {
            continue;
        };
        let text = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        let value: Value = serde_yaml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
        if let Some(feed) = value.get("feed") {
            catalog.insert(stem.to_owned(), feed.clone());
        }
    }
    Ok(catalog)
}

/// The tenant of a resource, checked.
pub fn tenant(raw: &str) -> Result<TenantId, String> {
    TenantId::new(raw).map_err(|e| format!("spec.tenant: {e}"))
}

/// Merges `over` into `base`: objects key by key, anything else replaced.
pub fn deep_merge(base: &mut Value, over: &Value) {
    match (base, over) {
        (Value::Object(b), Value::Object(o)) => {
            for (k, v) in o {
                deep_merge(b.entry(k.clone()).or_insert(Value::Null), v);
            }
        }
        (b, o) => *b = o.clone(),
    }
}

/// The feed spec a SensorFeed named `name` asks for (version 0: [`decide_feed`] sets it).
pub fn desired_feed(name: &str, spec: &SensorFeedSpec, catalog: &Catalog) -> Result<FeedSpec, String> {
    tenant(&spec.tenant)?;
    let Some(base) = catalog.get(&spec.type_) else {
        let known: Vec<&str> = catalog.keys().map(String::as_str).collect();
        return Err(format!("spec.type: {:?} is not a catalog type (known: {})", spec.type_, known.join(", ")));
    };
    let mut value = base.clone();
    if let Some(over) = &spec.overrides {
        if !over.is_object() {
            return Err("spec.overrides: must be a mapping of spec fields".into());
        }
        deep_merge(&mut value, over);
    }
    let id = spec.feed_id.clone().unwrap_or_else(|| name.to_owned());
    FeedId::new(id.as_str()).map_err(|e| format!("spec.feedId: {e}"))?;
    let Value::Object(obj) = &mut value else { return Err("the catalog entry is not a mapping".into()) };
    obj.insert("id".into(), Value::String(id));
    obj.insert("type".into(), Value::String(spec.type_.clone()));
    obj.insert("enabled".into(), Value::Bool(spec.enabled));
    obj.insert("version".into(), Value::from(0));
    let feed: FeedSpec = serde_json::from_value(value).map_err(|e| format!("spec.overrides: {e}"))?;
    geostream_ingest::pipeline::check_feed(&feed)?;
    Ok(feed)
}

/// What to write for one registry entry.
#[derive(Debug, Clone, PartialEq)]
pub enum Write<T> {
    /// The topic already holds it at this version.
    Nothing(u64),
    /// Write this (its version raised above the held one).
    Put(T),
}

/// Whether `desired` must be written given what the registry holds.
pub fn decide_feed(mut desired: FeedSpec, held: Option<&FeedSpec>) -> Write<FeedSpec> {
    match held {
        Some(h) => {
            desired.version = h.version;
            if *h == desired {
                Write::Nothing(h.version)
            } else {
                desired.version = h.version + 1;
                Write::Put(desired)
            }
        }
        None => {
            desired.version = 1;
            Write::Put(desired)
        }
    }
}

/// The fences a GeofenceSet asks for (versions 0), each checked like the processor checks it.
pub fn desired_fences(spec: &GeofenceSetSpec) -> Result<Vec<FenceSpec>, String> {
    tenant(&spec.tenant)?;
    let mut seen = BTreeSet::new();
    let mut out = Vec::new();
    for (i, raw) in spec.fences.iter().enumerate() {
        let mut v = raw.clone();
        if let Value::Object(o) = &mut v {
            o.insert("version".into(), Value::from(0));
        }
        let fence: FenceSpec = serde_json::from_value(v).map_err(|e| format!("spec.fences[{i}]: {e}"))?;
        fence.check().map_err(|e| format!("spec.fences[{i}] ({}): {e}", fence.id.as_str()))?;
        if !seen.insert(fence.id.as_str().to_owned()) {
            return Err(format!("spec.fences[{i}]: fence id {:?} appears twice", fence.id.as_str()));
        }
        out.push(fence);
    }
    Ok(out)
}

/// How many fences the topic holds once `writes` (from [`decide_fences`]) are applied to `held`.
pub fn count_after(held: &BTreeMap<String, FenceSpec>, writes: &[(String, Option<FenceSpec>)]) -> usize {
    let added = writes.iter().filter(|(id, spec)| spec.is_some() && !held.contains_key(id)).count();
    let deleted = writes.iter().filter(|(id, spec)| spec.is_none() && held.contains_key(id)).count();
    held.len() + added - deleted
}

/// The records that bring the fences topic to `desired`: changed or new fences with raised versions,
/// and tombstones for fences this set wrote before (`owned`) that it no longer holds.
pub fn decide_fences(
    desired: &[FenceSpec],
    held: &BTreeMap<String, FenceSpec>,
    owned: &[String],
) -> Vec<(String, Option<FenceSpec>)> {
    let mut out = Vec::new();
    let want: BTreeSet<&str> = desired.iter().map(|f| f.id.as_str()).collect();
    for id in owned {
        if !want.contains(id.as_str()) && held.contains_key(id) {
            out.push((id.clone(), None));
        }
    }
    for f in desired {
        let mut f = f.clone();
        match held.get(f.id.as_str()) {
            Some(h) => {
                f.version = h.version;
                if *h != f {
                    f.version = h.version + 1;
                    out.push((f.id.as_str().to_owned(), Some(f)));
                }
            }
            None => {
                f.version = 1;
                out.push((f.id.as_str().to_owned(), Some(f)));
            }
        }
    }
    out
}

/// Sets condition `type_`, keeping its transition time when the status did not change.
pub fn set_condition(conds: &mut Vec<Condition>, type_: &str, status: bool, reason: &str, message: &str, now: &str) {
    let status = if status { "True" } else { "False" }.to_owned();
    if let Some(c) = conds.iter_mut().find(|c| c.type_ == type_) {
        if c.status != status {
            c.last_transition_time = now.to_owned();
        }
        c.status = status;
        c.reason = reason.to_owned();
        c.message = message.to_owned();
    } else {
        conds.push(Condition {
            type_: type_.to_owned(),
            status,
            reason: reason.to_owned(),
            message: message.to_owned(),
            last_transition_time: now.to_owned(),
        });
    }
}

/// The Accepted/Invalid pair after a reconcile: `Ok(message)` or `Err(reason why invalid)`.
pub fn outcome_conditions(previous: &[Condition], outcome: &Result<String, String>, now: &str) -> Vec<Condition> {
    let mut conds = previous.to_vec();
    match outcome {
        Ok(msg) => {
            set_condition(&mut conds, "Accepted", true, "Registered", msg, now);
            set_condition(&mut conds, "Invalid", false, "Valid", "", now);
        }
        Err(problem) => {
            set_condition(&mut conds, "Accepted", false, "Invalid", "the spec was not written; see Invalid", now);
            set_condition(&mut conds, "Invalid", true, "SpecInvalid", problem, now);
        }
    }
    conds
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::json;

    fn catalog() -> Catalog {
        let mut c = Catalog::new();
        c.insert(
            "ais-nmea-tcp".into(),
            json!({"id": "ais-nmea-tcp", "type": "ais-nmea-tcp",
                   "source": {"kind": "tcp", "address": "127.0.0.1:10110", "mode": "client"}, "format": "ais"}),
        );
        c
    }

    fn feed(tenant: &str, type_: &str, overrides: Option<Value>) -> SensorFeedSpec {
        SensorFeedSpec { tenant: tenant.into(), type_: type_.into(), feed_id: None, enabled: true, overrides }
    }

    #[test]
    fn a_feed_is_the_catalog_entry_with_overrides_merged() {
        let f = desired_feed(
            "harbour-ais",
            &feed("acme", "ais-nmea-tcp", Some(json!({"source": {"address": "10.0.0.5:10110"}}))),
            &catalog(),
        )
        .unwrap();
        assert_eq!(f.id.as_str(), "harbour-ais");
        assert_eq!(f.type_, "ais-nmea-tcp");
        let source = serde_json::to_value(&f.source).unwrap();
        assert_eq!(source["address"], "10.0.0.5:10110");
        assert_eq!(source["mode"], "client", "untouched fields stay");
    }

    #[test]
    fn invalid_feeds_name_the_field() {
        let c = catalog();
        let e = desired_feed("x", &feed("acme", "nope", None), &c).unwrap_err();
        assert!(e.contains("spec.type") && e.contains("ais-nmea-tcp"), "{e}");
        let e = desired_feed("x", &feed("Acme!", "ais-nmea-tcp", None), &c).unwrap_err();
        assert!(e.contains("spec.tenant"), "{e}");
        let e = desired_feed("x", &feed("acme", "ais-nmea-tcp", Some(json!({"source": {"address": "nohost"}}))), &c)
            .unwrap_err();
        assert!(e.contains("source.address"), "{e}");
        let e = desired_feed("x", &feed("acme", "ais-nmea-tcp", Some(json!([1]))), &c).unwrap_err();
        assert!(e.contains("spec.overrides"), "{e}");
        let mut bad_id = feed("acme", "ais-nmea-tcp", None);
        bad_id.feed_id = Some("Not An Id".into());
        assert!(desired_feed("x", &bad_id, &c).unwrap_err().contains("spec.feedId"));
    }

    #[test]
    fn writes_raise_the_version_and_unchanged_specs_are_not_rewritten() {
        let want = desired_feed("a", &feed("acme", "ais-nmea-tcp", None), &catalog()).unwrap();
        let Write::Put(first) = decide_feed(want.clone(), None) else { panic!() };
        assert_eq!(first.version, 1);
        assert_eq!(decide_feed(want.clone(), Some(&first)), Write::Nothing(1));
        let mut paused = want.clone();
        paused.enabled = false;
        let Write::Put(second) = decide_feed(paused, Some(&first)) else { panic!() };
        assert_eq!(second.version, 2);
        // A spec written by the CLI at a higher version is overtaken, not ignored.
        let mut cli = first.clone();
        cli.version = 7;
        cli.enabled = false;
        let Write::Put(third) = decide_feed(want, Some(&cli)) else { panic!() };
        assert_eq!(third.version, 8);
    }

    fn fences(list: Value) -> GeofenceSetSpec {
        GeofenceSetSpec { tenant: "acme".into(), fences: list.as_array().unwrap().clone() }
    }

    fn circle(id: &str, r: f64) -> Value {
        json!({"id": id, "name": id, "geometry": {"type": "Circle", "center": [10.0, 50.0], "radius_m": r}})
    }

    #[test]
    fn fences_are_checked_and_written_as_changes() {
        let e = desired_fences(&fences(json!([circle("a", 10.0), circle("a", 20.0)]))).unwrap_err();
        assert!(e.contains("twice"), "{e}");
        let e = desired_fences(&fences(json!([circle("a", -1.0)]))).unwrap_err();
        assert!(e.contains("spec.fences[0]") && e.contains("radius"), "{e}");

        let want = desired_fences(&fences(json!([circle("a", 10.0), circle("b", 20.0)]))).unwrap();
        let first = decide_fences(&want, &BTreeMap::new(), &[]);
        assert_eq!(first.len(), 2);
        let held: BTreeMap<String, FenceSpec> = first.iter().map(|(id, f)| (id.clone(), f.clone().unwrap())).collect();
        assert!(decide_fences(&want, &held, &["a".into(), "b".into()]).is_empty());

        // b changes, a is dropped from the set, c is someone else's and stays.
        let mut held = held;
        let c = desired_fences(&fences(json!([circle("c", 5.0)]))).unwrap().remove(0);
        held.insert("c".into(), c);
        let want = desired_fences(&fences(json!([circle("b", 30.0)]))).unwrap();
        let w = decide_fences(&want, &held, &["a".into(), "b".into()]);
        assert_eq!(w.len(), 2);
        assert_eq!(w[0], ("a".into(), None));
        assert_eq!(w[1].1.as_ref().unwrap().version, 2);
        assert_eq!(count_after(&held, &w), 2, "a deleted, b changed, c kept");
        let more = desired_fences(&fences(json!([circle("b", 30.0), circle("d", 1.0), circle("e", 1.0)]))).unwrap();
        let w = decide_fences(&more, &held, &["a".into(), "b".into()]);
        assert_eq!(count_after(&held, &w), 4, "a deleted; b, c, d and e");
        // A tombstone for a fence the topic no longer holds removes nothing.
        assert_eq!(count_after(&held, &[("zz".into(), None)]), held.len());
    }

    #[test]
    fn conditions_keep_their_transition_time() {
        let c = outcome_conditions(&[], &Ok("written".into()), "t1");
        let c = outcome_conditions(&c, &Ok("again".into()), "t2");
        let acc = c.iter().find(|c| c.type_ == "Accepted").unwrap();
        assert_eq!((acc.status.as_str(), acc.last_transition_time.as_str()), ("True", "t1"));
        let c = outcome_conditions(&c, &Err("spec.type: bad".into()), "t3");
        let inv = c.iter().find(|c| c.type_ == "Invalid").unwrap();
        assert_eq!(
            (inv.status.as_str(), inv.message.as_str(), inv.last_transition_time.as_str()),
            ("True", "spec.type: bad", "t3")
        );
        assert_eq!(c.len(), 2);
    }
}
