//! The query rules of [`crate::query`] applied to Features in memory, for the local backend: which
//! stored Feature matches a [`Filters`], the total order each collection is listed in, and the
//! merge of pages from the archive and the live layer. Pure, so the two backends can be held to
//! the same answers by unit tests.
//!
//! Sort keys are JSON arrays like the engine's `sort` values (so cursors are made the same way),
//! but times are whole nanoseconds since the epoch: the archive keeps full precision, and a
//! millisecond key would tie points the engine's `id` tie-break then orders differently.

use std::cmp::Ordering;
use std::collections::HashMap;

use geostream_model::time::OffsetDateTime;
use geostream_model::time::format_description::well_known::Rfc3339;
use serde_json::{Value, json};

use crate::query::{Collection, Filters};
use crate::shape;

/// A Feature with its sort key in its collection.
#[derive(Debug, Clone, PartialEq)]
pub struct Keyed {
    /// The sort key (the cursor of this item).
    pub key: Vec<Value>,
    /// The stored Feature.
    pub feature: Value,
}

/// Nanoseconds since the epoch of an RFC 3339 string.
pub fn nanos(raw: &str) -> Option<i64> {
    let t = OffsetDateTime::parse(raw, &Rfc3339).ok()?;
    i64::try_from(t.unix_timestamp_nanos()).ok()
}

fn prop_time(feature: &Value, pointer: &str) -> Option<i64> {
    feature.pointer(pointer).and_then(Value::as_str).and_then(nanos)
}

fn id_of(feature: &Value) -> Option<&str> {
    feature.get("id").and_then(Value::as_str)
}

/// The track of a Feature, when it has one.
pub fn track_of(feature: &Value) -> Option<&str> {
    feature.pointer("/properties/track").and_then(Value::as_str)
}

/// The sort key of `feature` in `c`, or `None` when it lacks a field the order needs (such a
/// document could not have been written by the sink either).
pub fn sort_key(c: Collection, feature: &Value) -> Option<Vec<Value>> {
    match c {
        Collection::Observations | Collection::Events => {
            Some(vec![json!(prop_time(feature, "/properties/time")?), json!(id_of(feature)?)])
        }
        Collection::Latest => Some(vec![json!(track_of(feature)?)]),
        Collection::Aggregates => {
            let bin =
                feature.pointer("/properties/bin").map(|b| b.as_str().map_or_else(|| b.to_string(), str::to_owned));
            Some(vec![json!(prop_time(feature, "/properties/window/start")?), json!(bin?), json!(id_of(feature)?)])
        }
    }
}

fn cmp_value(a: &Value, b: &Value) -> Ordering {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => match (x.as_i64(), y.as_i64()) {
            (Some(x), Some(y)) => x.cmp(&y),
            _ => x.as_f64().unwrap_or(0.0).total_cmp(&y.as_f64().unwrap_or(0.0)),
        },
        (Value::String(x), Value::String(y)) => x.cmp(y),
        // Keys of one collection have one shape; a forged mix still gets a total order.
        _ => a.to_string().cmp(&b.to_string()),
    }
}

/// Compares two keys of `c` in the collection's listing order (events are newest first).
pub fn compare(c: Collection, a: &[Value], b: &[Value]) -> Ordering {
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        let o = cmp_value(x, y);
        let o = if c == Collection::Events && i == 0 { o.reverse() } else { o };
        if o != Ordering::Equal {
            return o;
        }
    }
    a.len().cmp(&b.len())
}

/// Whether `feature` is selected by `filters` in `c`: the same rules as the engine query
/// ([`crate::query::query`]).
pub fn matches(c: Collection, filters: &Filters, feature: &Value) -> bool {
    if let Some(b) = filters.bbox {
        match shape::position(feature) {
            Some([lon, lat]) if b.contains(lon, lat) => {}
            _ => return false,
        }
    }
    let (start, end) = (filters.time.start, filters.time.end);
    let ns = |t: OffsetDateTime| i64::try_from(t.unix_timestamp_nanos()).unwrap_or(i64::MAX);
    if c == Collection::Aggregates {
        // A window [ws, we) overlaps [start, end] when it ends after start and starts at or before end.
        if let Some(s) = start
            && prop_time(feature, "/properties/window/end").is_none_or(|we| we <= ns(s))
        {
            return false;
        }
        if let Some(e) = end
            && prop_time(feature, "/properties/window/start").is_none_or(|ws| ws > ns(e))
        {
            return false;
        }
    } else if start.is_some() || end.is_some() {
        let Some(t) = prop_time(feature, "/properties/time") else { return false };
        if start.is_some_and(|s| t < ns(s)) || end.is_some_and(|e| t > ns(e)) {
            return false;
        }
    }
    for (name, want) in &filters.terms {
        if feature.get("properties").and_then(|p| p.get(*name)).and_then(Value::as_str) != Some(want.as_str()) {
            return false;
        }
    }
    if filters.exclude_retracted && feature.pointer("/properties/retracted") == Some(&Value::Bool(true)) {
        return false;
    }
    true
}

/// An aggregate's version (a correction has a higher one).
fn version(feature: &Value) -> u64 {
    feature.pointer("/properties/version").and_then(Value::as_u64).unwrap_or(0)
}

/// Merges candidates from several sources into one listing of `c`: one item per id (per track for
/// `latest`), as the engine would hold it — the first written for `create` documents (they are
/// identical redeliveries), the highest version for aggregates, the newest event time for `latest`
/// (the first of equal times) — then in the collection's order.
///
/// `candidates` must be in write order where it matters (archive before live layer).
pub fn merge(c: Collection, candidates: impl IntoIterator<Item = Keyed>) -> Vec<Keyed> {
    let mut by_id: HashMap<String, usize> = HashMap::new();
    let mut out: Vec<Keyed> = Vec::new();
    for k in candidates {
        let ident = match c {
            Collection::Latest => track_of(&k.feature).map(str::to_owned),
            _ => id_of(&k.feature).map(str::to_owned),
        };
        let Some(ident) = ident else { continue };
        match by_id.get(&ident) {
            None => {
                by_id.insert(ident, out.len());
                out.push(k);
            }
            Some(&i) => {
                let replace = match c {
                    Collection::Aggregates => version(&k.feature) > version(&out[i].feature),
                    Collection::Latest => {
                        prop_time(&k.feature, "/properties/time") > prop_time(&out[i].feature, "/properties/time")
                    }
                    Collection::Observations | Collection::Events => false,
                };
                if replace {
                    out[i] = k;
                }
            }
        }
    }
    out.sort_by(|a, b| compare(c, &a.key, &b.key));
    out
}

/// The items strictly after `after` in the order of `c`.
pub fn after_cursor(c: Collection, items: Vec<Keyed>, after: Option<&[Value]>) -> Vec<Keyed> {
    match after {
        None => items,
        Some(a) => items.into_iter().filter(|k| compare(c, &k.key, a) == Ordering::Greater).collect(),
    }
}

/// Keys `feature` for `c` if it matches `filters` and lies after `after`.
pub fn select(c: Collection, filters: &Filters, after: Option<&[Value]>, feature: &Value) -> Option<Keyed> {
    if !matches(c, filters, feature) {
        return None;
    }
    let key = sort_key(c, feature)?;
    if let Some(a) = after
        && compare(c, &key, a) != Ordering::Greater
    {
        return None;
    }
    Some(Keyed { key, feature: feature.clone() })
}

/// The time a collection is ordered by first: the event time, or an aggregate's window start.
pub fn order_time(c: Collection, feature: &Value) -> Option<i64> {
    match c {
        Collection::Aggregates => prop_time(feature, "/properties/window/start"),
        _ => prop_time(feature, "/properties/time"),
    }
}

/// One ordered read of the archive: up to `limit` rows in the collection's time order (ascending,
/// descending for events), each with its time as the archive stores it (`raw`, in units of
/// `unit_ns` nanoseconds).
#[derive(Debug, Clone, PartialEq)]
pub struct Scan {
    /// `(raw time, Feature)` in order.
    pub rows: Vec<(i64, Value)>,
    /// Nanoseconds per unit of the raw times.
    pub unit_ns: i64,
    /// The `limit` asked for.
    pub limit: usize,
}

/// A page of `c` from one archive scan and the live tail: `Some(items)` (at most `want`, in order)
/// when the scan was long enough to decide them, `None` when a longer scan is needed.
///
/// The scan is complete only up to its last row's raw time when it hit its limit: rows with that
/// same stored time may follow, and the archive's time may be coarser than the Features' own, so
/// only items strictly before that stored time (after it, for events) are certain. Tail items are
/// cut at the same point, since their place among unseen archive rows is unknown.
pub fn assemble(
    c: Collection,
    filters: &Filters,
    after: Option<&[Value]>,
    want: usize,
    scan: &Scan,
    tail: &[Value],
) -> Option<Vec<Keyed>> {
    let unit = scan.unit_ns.max(1);
    let bound = (scan.rows.len() >= scan.limit).then(|| scan.rows.last().map(|(raw, _)| *raw)).flatten();
    let certain = |f: &Value| match bound {
        None => true,
        Some(b) => order_time(c, f).is_some_and(|t| {
            let raw = t.div_euclid(unit);
            if c == Collection::Events { raw > b } else { raw < b }
        }),
    };
    let candidates = scan
        .rows
        .iter()
        .map(|(_, f)| f)
        .chain(tail)
        .filter(|f| certain(f))
        .filter_map(|f| select(c, filters, after, f));
    let mut merged = merge(c, candidates);
    if merged.len() >= want || bound.is_none() {
        merged.truncate(want);
        Some(merged)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::params::{Bbox, TimeRange};
    use geostream_model::time::macros::datetime;

    fn obs(id: &str, track: &str, t: &str, lon: f64) -> Value {
        json!({"type": "Feature", "id": id, "geometry": {"type": "Point", "coordinates": [lon, 50.0]},
            "properties": {"feed": "f", "track": track, "time": t}})
    }

    fn keyed(c: Collection, f: Value) -> Keyed {
        Keyed { key: sort_key(c, &f).unwrap(), feature: f }
    }

    #[test]
    fn keys_follow_each_collections_order() {
        let a = obs("a", "t1", "2024-05-01T00:00:00.000000001Z", 1.0);
        let b = obs("b", "t0", "2024-05-01T00:00:00.000000002Z", 1.0);
        let (ka, kb) =
            (sort_key(Collection::Observations, &a).unwrap(), sort_key(Collection::Observations, &b).unwrap());
        assert_eq!(ka[0].as_i64().unwrap() + 1, kb[0].as_i64().unwrap(), "nanosecond precision");
        assert_eq!(compare(Collection::Observations, &ka, &kb), Ordering::Less);
        assert_eq!(compare(Collection::Events, &ka, &kb), Ordering::Greater, "events newest first");
        let same_time = obs("c", "t1", "2024-05-01T00:00:00.000000001Z", 1.0);
        let kc = sort_key(Collection::Events, &same_time).unwrap();
        assert_eq!(compare(Collection::Events, &ka, &kc), Ordering::Less, "ties broken by id ascending");
        let (la, lb) = (sort_key(Collection::Latest, &a).unwrap(), sort_key(Collection::Latest, &b).unwrap());
        assert_eq!(compare(Collection::Latest, &la, &lb), Ordering::Greater, "latest by track");
        assert!(sort_key(Collection::Observations, &json!({"id": "x", "properties": {}})).is_none());
        assert!(sort_key(Collection::Latest, &json!({"id": "x", "properties": {}})).is_none());
    }

    #[test]
    fn filters_match_like_the_engine_query() {
        let f = obs("a", "t1", "2024-05-01T12:00:00Z", 5.5);
        let all = Filters::default();
        assert!(matches(Collection::Observations, &all, &f));
        let boxed = |w, e| Filters { bbox: Some(Bbox { west: w, south: 49.0, east: e, north: 51.0 }), ..all.clone() };
        assert!(matches(Collection::Observations, &boxed(5.0, 6.0), &f));
        assert!(!matches(Collection::Observations, &boxed(6.0, 7.0), &f));
        assert!(matches(Collection::Observations, &boxed(170.0, 6.0), &f), "across the antimeridian");
        let no_geometry = json!({"id": "n", "geometry": null, "properties": {"time": "2024-05-01T12:00:00Z"}});
        assert!(!matches(Collection::Observations, &boxed(-180.0, 180.0), &no_geometry));
        let timed = |s, e| Filters { time: TimeRange { start: s, end: e }, ..all.clone() };
        let noon = datetime!(2024-05-01 12:00 UTC);
        assert!(matches(Collection::Observations, &timed(Some(noon), Some(noon)), &f), "ends inclusive");
        assert!(!matches(Collection::Observations, &timed(Some(noon + std::time::Duration::from_nanos(1)), None), &f));
        assert!(!matches(Collection::Observations, &timed(None, Some(noon - std::time::Duration::from_nanos(1))), &f));
        let termed = |n: &'static str, v: &str| Filters { terms: vec![(n, v.to_owned())], ..all.clone() };
        assert!(matches(Collection::Observations, &termed("track", "t1"), &f));
        assert!(!matches(Collection::Observations, &termed("track", "t2"), &f));
        assert!(!matches(Collection::Observations, &termed("kind", "enter"), &f), "a missing property never matches");
        let mut retracted = f.clone();
        retracted["properties"]["retracted"] = json!(true);
        let excl = Filters { exclude_retracted: true, ..all.clone() };
        assert!(!matches(Collection::Events, &excl, &retracted));
        assert!(matches(Collection::Events, &all, &retracted));
        assert!(matches(Collection::Events, &excl, &f));
    }

    #[test]
    fn aggregates_match_overlapping_windows() {
        let a = json!({"id": "a", "geometry": {"type": "Point", "coordinates": [1.0, 1.0]},
            "properties": {"bin": "c1", "window": {"start": "2024-05-01T00:00:00Z", "end": "2024-05-01T00:05:00Z"}}});
        let t = |s| Filters { time: s, ..Filters::default() };
        let at = |h: u8, m: u8| {
            datetime!(2024-05-01 00:00 UTC) + std::time::Duration::from_secs(u64::from(h) * 3600 + u64::from(m) * 60)
        };
        assert!(matches(Collection::Aggregates, &t(TimeRange { start: Some(at(0, 4)), end: None }), &a));
        assert!(
            !matches(Collection::Aggregates, &t(TimeRange { start: Some(at(0, 5)), end: None }), &a),
            "end exclusive"
        );
        assert!(
            matches(Collection::Aggregates, &t(TimeRange { start: None, end: Some(at(0, 0)) }), &a),
            "start inclusive"
        );
        assert!(!matches(
            Collection::Aggregates,
            &t(TimeRange { start: None, end: Some(at(0, 0) - std::time::Duration::from_secs(1)) }),
            &a
        ));
        let key = sort_key(Collection::Aggregates, &a).unwrap();
        assert_eq!(key[1], json!("c1"));
    }

    #[test]
    fn merge_keeps_one_item_per_id_as_the_engine_would() {
        let c = Collection::Observations;
        let a = obs("a", "t1", "2024-05-01T00:00:02Z", 1.0);
        let mut a_again = a.clone();
        a_again["properties"]["note"] = json!("redelivery");
        let b = obs("b", "t1", "2024-05-01T00:00:01Z", 1.0);
        let out = merge(c, [keyed(c, a.clone()), keyed(c, b.clone()), keyed(c, a_again)]);
        assert_eq!(out.iter().map(|k| k.feature["id"].as_str().unwrap()).collect::<Vec<_>>(), ["b", "a"]);
        assert!(out[1].feature["properties"].get("note").is_none(), "the first written stays");

        let c = Collection::Latest;
        let newer = obs("n", "t1", "2024-05-01T00:00:09Z", 2.0);
        let tie = obs("m", "t1", "2024-05-01T00:00:09Z", 3.0);
        let out = merge(c, [keyed(c, a.clone()), keyed(c, newer), keyed(c, tie), keyed(c, b)]);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].feature["id"], "n", "newest by time, the first of equal times");

        let c = Collection::Aggregates;
        let agg = |v: u64| json!({"id": "g", "properties": {"bin": "c", "version": v, "window": {"start": "2024-05-01T00:00:00Z", "end": "2024-05-01T00:05:00Z"}}});
        let out = merge(c, [keyed(c, agg(2)), keyed(c, agg(5)), keyed(c, agg(3))]);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].feature["properties"]["version"], 5, "the highest version");
    }

    #[test]
    fn select_applies_filters_and_the_cursor() {
        let c = Collection::Observations;
        let a = obs("a", "t1", "2024-05-01T00:00:01Z", 1.0);
        let b = obs("b", "t1", "2024-05-01T00:00:02Z", 1.0);
        let ka = sort_key(c, &a).unwrap();
        assert!(select(c, &Filters::default(), Some(&ka), &a).is_none(), "strictly after");
        assert!(select(c, &Filters::default(), Some(&ka), &b).is_some());
        let items = vec![keyed(c, a), keyed(c, b)];
        assert_eq!(after_cursor(c, items.clone(), Some(&ka)).len(), 1);
        assert_eq!(after_cursor(c, items, None).len(), 2);
    }

    fn scan_of(c: Collection, features: &[Value], limit: usize) -> Scan {
        let mut rows: Vec<(i64, Value)> =
            features.iter().map(|f| (order_time(c, f).unwrap().div_euclid(1000), f.clone())).collect();
        rows.sort_by(|a, b| if c == Collection::Events { b.0.cmp(&a.0) } else { a.0.cmp(&b.0) });
        rows.truncate(limit);
        Scan { rows, unit_ns: 1000, limit }
    }

    #[test]
    fn assemble_pages_archive_and_tail_together_and_asks_for_more_when_unsure() {
        let c = Collection::Observations;
        let at = |s: u32| format!("2024-05-01T00:00:{s:02}Z");
        let archive: Vec<Value> = (0..10).map(|i| obs(&format!("a{i}"), "t", &at(i * 2), 1.0)).collect();
        let tail: Vec<Value> = (0..5).map(|i| obs(&format!("l{i}"), "t", &at(i * 2 + 1), 1.0)).collect();
        // A full scan (fewer rows than asked) decides everything.
        let page = assemble(c, &Filters::default(), None, 4, &scan_of(c, &archive, 100), &tail).unwrap();
        let ids: Vec<&str> = page.iter().map(|k| k.feature["id"].as_str().unwrap()).collect();
        assert_eq!(ids, ["a0", "l0", "a1", "l1"]);
        // A scan cut at its limit is certain only before its last row's time.
        assert!(assemble(c, &Filters::default(), None, 4, &scan_of(c, &archive, 2), &tail).is_none());
        let page = assemble(c, &Filters::default(), None, 4, &scan_of(c, &archive, 3), &tail).unwrap();
        assert_eq!(page.len(), 4, "a0 l0 a1 l1 lie before a2's time");
        // From a cursor, and with filters that leave rows out.
        let key = page[1].key.clone();
        let page = assemble(c, &Filters::default(), Some(&key), 2, &scan_of(c, &archive, 100), &tail).unwrap();
        assert_eq!(page[0].feature["id"], "a1");
        // Events go newest first.
        let e = Collection::Events;
        let page = assemble(e, &Filters::default(), None, 3, &scan_of(e, &archive, 100), &tail).unwrap();
        let ids: Vec<&str> = page.iter().map(|k| k.feature["id"].as_str().unwrap()).collect();
        assert_eq!(ids, ["a9", "a8", "a7"], "the tail ends at 9 s, the archive at 18 s");
        assert!(assemble(e, &Filters::default(), None, 3, &scan_of(e, &archive, 1), &tail).is_none());
        // Duplicates between archive and tail count once.
        let dup = vec![archive[0].clone()];
        let page = assemble(c, &Filters::default(), None, 100, &scan_of(c, &archive, 100), &dup).unwrap();
        assert_eq!(page.len(), 10);
    }
}
