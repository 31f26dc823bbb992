//! From engine answers to GeoJSON: hits become the Features the sink stored (minus the
//! engine-only `location`), a track becomes a LineString, and the shards of an aggregate bin are
//! summed into one feature.

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};

use crate::problem::ApiError;

/// A page of hits: the features, their sort values (for the next cursor) and the
/// total the engine counted (when asked to).
#[derive(Debug, Clone, PartialEq)]
pub struct Page {
    /// Features in the engine's order.
    pub features: Vec<Value>,
    /// `sort` of each hit (empty for a hit without one).
    pub sorts: Vec<Vec<Value>>,
    /// `hits.total.value`, when exact.
    pub total: Option<u64>,
}

/// Reads a `_search` answer.
pub fn page(answer: &Value) -> Result<Page, ApiError> {
    let hits = answer
        .pointer("/hits/hits")
        .and_then(Value::as_array)
        .ok_or_else(|| ApiError::Upstream("the search answer has no hits.hits".into()))?;
    let features = hits.iter().filter_map(|h| h.get("_source")).map(feature).collect();
    let sorts = hits
        .iter()
        .filter(|h| h.get("_source").is_some())
        .map(|h| h.get("sort").and_then(Value::as_array).cloned().unwrap_or_default())
        .collect();
    let total = match answer.pointer("/hits/total") {
        Some(t) if t.get("relation").and_then(Value::as_str) == Some("eq") => t.get("value").and_then(Value::as_u64),
        Some(Value::Number(n)) => n.as_u64(),
        _ => None,
    };
    Ok(Page { features, sorts, total })
}

/// A stored document as the Feature it was on the wire.
pub fn feature(source: &Value) -> Value {
    let mut f = source.clone();
    if let Some(obj) = f.as_object_mut() {
        obj.remove("location");
        obj.entry("type").or_insert_with(|| json!("Feature"));
    }
    f
}

/// A FeatureCollection with optional foreign members.
pub fn collection(features: Vec<Value>, extra: Map<String, Value>) -> Value {
    let mut obj = Map::new();
    obj.insert("type".into(), json!("FeatureCollection"));
    obj.insert("numberReturned".into(), json!(features.len()));
    obj.insert("features".into(), Value::Array(features));
    obj.extend(extra);
    Value::Object(obj)
}

/// The position a feature stands for: its point, or the centre of its geometry's bounding box.
pub fn position(feature: &Value) -> Option<[f64; 2]> {
    geostream_sink::document::representative_point(feature.get("geometry")?)
}

/// The track as one LineString Feature through the positions in the given (time) order. Null
/// geometry when there are fewer than two positions, since a LineString needs two.
pub fn track_line(track: &str, features: &[Value]) -> Value {
    let coords: Vec<Value> = features.iter().filter_map(position).map(|[x, y]| json!([x, y])).collect();
    let start = features.first().and_then(|f| f.pointer("/properties/time")).cloned().unwrap_or(Value::Null);
    let end = features.last().and_then(|f| f.pointer("/properties/time")).cloned().unwrap_or(Value::Null);
    let geometry = if coords.len() >= 2 { json!({"type": "LineString", "coordinates": coords}) } else { Value::Null };
    json!({
        "type": "Feature",
        "id": track,
        "geometry": geometry,
        "properties": {"track": track, "points": features.len(), "start": start, "end": end},
    })
}

#[derive(Default)]
struct Bin {
    first: Option<Value>,
    count: u64,
    version: u64,
    shards: Vec<Value>,
    sums: BTreeMap<String, f64>,
    mins: BTreeMap<String, f64>,
    maxs: BTreeMap<String, f64>,
    /// Values that follow no combinable naming: kept only when one shard has them.
    other: BTreeMap<String, Vec<f64>>,
}

/// Sums the shards of each (analytic, window, bin) into one feature, in first-seen order.
///
/// `count` and every `*_count`/`*_sum` value are added; `*_min` takes the smallest, `*_max` the
/// largest; `*_avg` is recomputed as `<stat>_sum / <stat>_count` (the shards' averages cannot be
/// averaged). Other values (e.g. SQL columns) are kept only when a single shard carries them,
/// since no sound combination is known; they are listed under `uncombined` otherwise. `shard`
/// becomes `shards` (the list), `version` the highest, and the id is
/// `<analytic>/<window start>/<window end>/<bin>`.
pub fn combine_shards(features: &[Value]) -> Vec<Value> {
    let mut order: Vec<(String, String, String, String)> = Vec::new();
    let mut bins: BTreeMap<(String, String, String, String), Bin> = BTreeMap::new();
    for f in features {
        let p = f.get("properties").cloned().unwrap_or(Value::Null);
        let s = |ptr: &str| {
            p.pointer(ptr).map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_owned)).unwrap_or_default()
        };
        let key = (s("/analytic"), s("/window/start"), s("/window/end"), s("/bin"));
        let bin = bins.entry(key.clone()).or_insert_with(|| {
            order.push(key.clone());
            Bin::default()
        });
        if bin.first.is_none() {
            bin.first = Some(f.clone());
        }
        bin.count += p.get("count").and_then(Value::as_u64).unwrap_or(0);
        bin.version = bin.version.max(p.get("version").and_then(Value::as_u64).unwrap_or(0));
        bin.shards.push(p.get("shard").cloned().unwrap_or(Value::Null));
        if let Some(values) = p.get("values").and_then(Value::as_object) {
            for (name, v) in values {
                let Some(x) = v.as_f64() else { continue };
                if name.ends_with("_count") || name.ends_with("_sum") {
                    *bin.sums.entry(name.clone()).or_insert(0.0) += x;
                } else if name.ends_with("_min") {
                    let e = bin.mins.entry(name.clone()).or_insert(x);
                    *e = e.min(x);
                } else if name.ends_with("_max") {
                    let e = bin.maxs.entry(name.clone()).or_insert(x);
                    *e = e.max(x);
                } else if !name.ends_with("_avg") {
                    bin.other.entry(name.clone()).or_default().push(x);
                }
            }
        }
    }
    order
        .into_iter()
        .filter_map(|key| {
            let bin = bins.remove(&key)?;
            let mut f = bin.first?;
            let mut values = Map::new();
            for (k, v) in bin.sums.iter().chain(&bin.mins).chain(&bin.maxs) {
                values.insert(k.clone(), json!(v));
            }
            for (name, sum) in &bin.sums {
                if let Some(stat) = name.strip_suffix("_sum")
                    && let Some(n) = bin.sums.get(&format!("{stat}_count"))
                    && *n > 0.0
                {
                    values.insert(format!("{stat}_avg"), json!(sum / n));
                }
            }
            let mut uncombined = Vec::new();
            for (name, xs) in bin.other {
                match xs.as_slice() {
                    [x] if bin.shards.len() == 1 => {
                        values.insert(name, json!(x));
                    }
                    _ => uncombined.push(json!(name)),
                }
            }
            let (analytic, start, end, cell) = key;
            f["id"] = json!(format!("{analytic}/{start}/{end}/{cell}"));
            if let Some(props) = f.get_mut("properties").and_then(Value::as_object_mut) {
                props.remove("shard");
                props.insert("count".into(), json!(bin.count));
                props.insert("version".into(), json!(bin.version));
                props.insert("values".into(), Value::Object(values));
                props.insert("shards".into(), Value::Array(bin.shards));
                if !uncombined.is_empty() {
                    props.insert("uncombined".into(), Value::Array(uncombined));
                }
            }
            Some(f)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::float_cmp)]
    use super::*;

    #[test]
    fn hits_become_features_without_location() {
        let answer = json!({"hits": {"total": {"value": 2, "relation": "eq"}, "hits": [
            {"_id": "a", "_source": {"type": "Feature", "id": "a", "geometry": null, "properties": {}, "location": {"lat": 1, "lon": 2}}, "sort": [1, "a"]},
            {"_id": "b", "_source": {"id": "b", "properties": {}}, "sort": [2, "b"]}
        ]}});
        let p = page(&answer).unwrap();
        assert_eq!(p.features.len(), 2);
        assert!(p.features[0].get("location").is_none());
        assert_eq!(p.features[1]["type"], "Feature");
        assert_eq!(p.sorts.last(), Some(&vec![json!(2), json!("b")]));
        assert_eq!(p.total, Some(2));
        let gte = json!({"hits": {"total": {"value": 10000, "relation": "gte"}, "hits": []}});
        let p = page(&gte).unwrap();
        assert_eq!((p.total, p.sorts.len(), p.features.len()), (None, 0, 0));
        assert!(page(&json!({"error": "x"})).is_err());
    }

    #[test]
    fn a_track_line_follows_the_given_order() {
        let pt = |x: f64, t: &str| json!({"geometry": {"type": "Point", "coordinates": [x, 1.0]}, "properties": {"time": t}});
        let fs = vec![pt(0.0, "t0"), pt(1.0, "t1"), json!({"geometry": null}), pt(2.0, "t2")];
        let line = track_line("v1", &fs);
        assert_eq!(line["geometry"]["coordinates"], json!([[0.0, 1.0], [1.0, 1.0], [2.0, 1.0]]));
        assert_eq!(line["properties"]["points"], 4);
        assert_eq!(line["properties"]["start"], "t0");
        assert_eq!(line["properties"]["end"], "t2");
        assert_eq!(track_line("v1", &fs[..1])["geometry"], Value::Null);
    }

    fn agg(bin: &str, shard: u32, count: u64, values: Value, version: u64) -> Value {
        json!({"type": "Feature", "id": format!("{bin}-{shard}"), "geometry": {"type": "Polygon", "coordinates": []},
            "properties": {"kind": "bin", "analytic": "bins", "window": {"start": "2024-05-01T00:00:00Z", "end": "2024-05-01T00:05:00Z"},
            "bin": bin, "shard": shard, "version": version, "count": count, "values": values}})
    }

    #[test]
    fn shards_of_a_bin_are_summed_into_one_feature() {
        let fs = vec![
            agg(
                "c1",
                0,
                3,
                json!({"speed_count": 3.0, "speed_sum": 30.0, "speed_avg": 10.0, "speed_min": 5.0, "speed_max": 15.0, "sorted": 1.0}),
                1,
            ),
            agg(
                "c2",
                0,
                1,
                json!({"speed_count": 1.0, "speed_sum": 7.0, "speed_avg": 7.0, "speed_min": 7.0, "speed_max": 7.0, "sorted": 0.0}),
                1,
            ),
            agg(
                "c1",
                2,
                1,
                json!({"speed_count": 1.0, "speed_sum": 50.0, "speed_avg": 50.0, "speed_min": 50.0, "speed_max": 50.0}),
                4,
            ),
        ];
        let out = combine_shards(&fs);
        assert_eq!(out.len(), 2, "one feature per bin");
        let c1 = &out[0]["properties"];
        assert_eq!(out[0]["id"], "bins/2024-05-01T00:00:00Z/2024-05-01T00:05:00Z/c1");
        assert_eq!(c1["count"], 4);
        assert_eq!(c1["version"], 4);
        assert_eq!(c1["shards"], json!([0, 2]));
        assert!(c1.get("shard").is_none());
        assert_eq!(c1["values"]["speed_count"], 4.0);
        assert_eq!(c1["values"]["speed_sum"], 80.0);
        assert_eq!(c1["values"]["speed_avg"], 20.0, "sum/count, not the mean of the shard means (30)");
        assert_eq!(c1["values"]["speed_min"], 5.0);
        assert_eq!(c1["values"]["speed_max"], 50.0);
        assert!(c1["values"].get("sorted").is_none());
        assert_eq!(c1["uncombined"], json!(["sorted"]));
        let c2 = &out[1]["properties"];
        assert_eq!((c2["count"].as_u64(), c2["values"]["sorted"].as_f64()), (Some(1), Some(0.0)));
        assert!(c2.get("uncombined").is_none());
        // Different windows of one bin stay apart.
        let mut other_window = agg("c1", 0, 2, json!({}), 1);
        other_window["properties"]["window"]["start"] = json!("2024-05-01T00:05:00Z");
        assert_eq!(combine_shards(&[fs[0].clone(), other_window]).len(), 2);
        assert!(combine_shards(&[]).is_empty());
    }
}
