//! Feed status for the dashboard: per feed, how many observations arrived in the last minutes (a
//! rate), when the newest arrived, the newest event time, and the dead letters seen in the same
//! minutes. Pure: the engine query and the reading of its answer (and the counting of dead
//! letters) are here; the handler asks the engine and Kafka.
//!
//! Arrival (`properties.received`) rather than event time drives the rate and "last seen": a
//! replay of old data is live traffic for the feed even though its event times are old.

use std::collections::BTreeMap;

use geostream_model::time::OffsetDateTime;
use geostream_model::time::format_description::well_known::Rfc3339;
use serde_json::{Value, json};

use crate::problem::ApiError;

/// Feeds listed at most (the terms aggregation's size).
pub const MAX_FEEDS: usize = 1000;

/// Default and largest window, minutes.
pub const DEFAULT_MINUTES: u32 = 5;
/// Largest window, minutes (one day).
pub const MAX_MINUTES: u32 = 1440;

/// Parses `minutes` (1..=1440, default 5).
pub fn minutes(raw: Option<&str>) -> Result<u32, ApiError> {
    let Some(raw) = raw else { return Ok(DEFAULT_MINUTES) };
    raw.parse::<u32>().ok().filter(|m| (1..=MAX_MINUTES).contains(m)).ok_or_else(|| {
        ApiError::param("minutes", format!("{raw:?} is not a whole number of minutes"), "give 1 to 1440")
    })
}

fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&Rfc3339).unwrap_or_default()
}

/// The `_search` body over the observations indices: no hits, one bucket per feed with the
/// count received since `since`, the newest arrival and the newest event time.
pub fn query(since: OffsetDateTime) -> Value {
    json!({
        "size": 0,
        "track_total_hits": false,
        "aggs": {"feeds": {
            "terms": {"field": "properties.feed", "size": MAX_FEEDS, "order": {"_key": "asc"}},
            "aggs": {
                "last_received": {"max": {"field": "properties.received"}},
                "last_time": {"max": {"field": "properties.time"}},
                "recent": {"filter": {"range": {"properties.received": {"gte": rfc3339(since)}}}},
            }
        }}
    })
}

/// One feed's status.
#[derive(Debug, Clone, PartialEq)]
pub struct FeedStatus {
    /// Feed id.
    pub feed: String,
    /// Observations stored in total.
    pub total: u64,
    /// Observations that arrived in the window.
    pub recent: u64,
    /// Newest arrival (RFC 3339), if any.
    pub last_received: Option<String>,
    /// Newest event time (RFC 3339), if any.
    pub last_time: Option<String>,
    /// Dead letters of this feed in the window.
    pub errors: u64,
}

fn max_as_string(bucket: &Value, name: &str) -> Option<String> {
    let agg = bucket.get(name)?;
    if let Some(s) = agg.get("value_as_string").and_then(Value::as_str) {
        return Some(s.to_owned());
    }
    // Without value_as_string, value is epoch milliseconds.
    let ms = agg.get("value").and_then(Value::as_f64)?;
    let t = OffsetDateTime::from_unix_timestamp_nanos((ms * 1e6) as i128).ok()?;
    Some(rfc3339(t))
}

/// Reads the engine's answer to [`query`].
pub fn read(answer: &Value) -> Result<Vec<FeedStatus>, ApiError> {
    let buckets = match answer.pointer("/aggregations/feeds/buckets") {
        Some(b) => b.as_array().ok_or_else(|| ApiError::Upstream("feeds buckets are not a list".into()))?,
        // No observations index yet: no aggregation in the answer at all.
        None => return Ok(Vec::new()),
    };
    Ok(buckets
        .iter()
        .filter_map(|b| {
            Some(FeedStatus {
                feed: b.get("key")?.as_str()?.to_owned(),
                total: b.get("doc_count").and_then(Value::as_u64).unwrap_or(0),
                recent: b.pointer("/recent/doc_count").and_then(Value::as_u64).unwrap_or(0),
                last_received: max_as_string(b, "last_received"),
                last_time: max_as_string(b, "last_time"),
                errors: 0,
            })
        })
        .collect())
}

/// Dead letters per feed from their JSON payloads (records that are not dead letters, or name no
/// feed, count under the empty feed name).
pub fn count_dead_letters<'a>(payloads: impl IntoIterator<Item = &'a [u8]>) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    for p in payloads {
        let feed = serde_json::from_slice::<Value>(p)
            .ok()
            .and_then(|v| v.get("feed").and_then(Value::as_str).map(str::to_owned))
            .unwrap_or_default();
        *out.entry(feed).or_insert(0) += 1;
    }
    out
}

/// The answer body: feeds (with dead letters merged in; a feed with dead letters but no stored
/// observation is listed too) and the window.
pub fn body(
    mut feeds: Vec<FeedStatus>,
    dead: &BTreeMap<String, u64>,
    errors_known: bool,
    minutes: u32,
    now: OffsetDateTime,
) -> Value {
    for (feed, n) in dead {
        match feeds.iter_mut().find(|f| &f.feed == feed) {
            Some(f) => f.errors = *n,
            None => feeds.push(FeedStatus {
                feed: feed.clone(),
                total: 0,
                recent: 0,
                last_received: None,
                last_time: None,
                errors: *n,
            }),
        }
    }
    feeds.sort_by(|a, b| a.feed.cmp(&b.feed));
    let secs = f64::from(minutes) * 60.0;
    let items: Vec<Value> = feeds
        .iter()
        .map(|f| {
            json!({
                "feed": f.feed,
                "total": f.total,
                "recent": f.recent,
                "rate_per_s": f.recent as f64 / secs,
                "last_received": f.last_received,
                "last_time": f.last_time,
                "errors": if errors_known { json!(f.errors) } else { Value::Null },
            })
        })
        .collect();
    json!({"minutes": minutes, "now": rfc3339(now), "numberReturned": items.len(), "feeds": items})
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use geostream_model::time::macros::datetime;

    #[test]
    fn minutes_are_checked() {
        assert_eq!(minutes(None).unwrap(), 5);
        assert_eq!(minutes(Some("60")).unwrap(), 60);
        for bad in ["0", "1441", "x", "-3", "1.5"] {
            match minutes(Some(bad)) {
                Err(ApiError::InvalidParameter { parameter, .. }) => assert_eq!(parameter, "minutes"),
                other => panic!("{bad}: {other:?}"),
            }
        }
    }

    #[test]
    fn the_query_buckets_by_feed_and_counts_recent_arrivals() {
        let q = query(datetime!(2024-05-01 12:00 UTC));
        assert_eq!(q["size"], 0);
        let feeds = &q["aggs"]["feeds"];
        assert_eq!(feeds["terms"]["field"], "properties.feed");
        assert_eq!(feeds["aggs"]["recent"]["filter"]["range"]["properties.received"]["gte"], "2024-05-01T12:00:00Z");
        assert_eq!(feeds["aggs"]["last_received"]["max"]["field"], "properties.received");
    }

    #[test]
    fn answers_are_read_and_merged_with_dead_letters() {
        let answer = json!({"aggregations": {"feeds": {"buckets": [
            {"key": "ais", "doc_count": 40, "recent": {"doc_count": 30},
             "last_received": {"value": 1714564800000.0, "value_as_string": "2024-05-01T12:00:00.000Z"},
             "last_time": {"value": 1714564800000.0}},
            {"key": "gps", "doc_count": 2, "recent": {"doc_count": 0}, "last_received": {"value": null}, "last_time": {"value": null}},
        ]}}});
        let feeds = read(&answer).unwrap();
        assert_eq!(feeds.len(), 2);
        assert_eq!(feeds[0].last_received.as_deref(), Some("2024-05-01T12:00:00.000Z"));
        assert_eq!(feeds[0].last_time.as_deref(), Some("2024-05-01T12:00:00Z"));
        assert_eq!((feeds[1].total, feeds[1].recent, feeds[1].last_time.clone()), (2, 0, None));
        assert!(read(&json!({"hits": {"hits": []}})).unwrap().is_empty());
        assert!(read(&json!({"aggregations": {"feeds": {"buckets": 3}}})).is_err());

        let dl: Vec<&[u8]> =
            vec![br#"{"feed":"gps","reason":"parse"}"#, br#"{"feed":"nmea"}"#, br#"{"feed":"gps"}"#, b"junk"];
        let dead = count_dead_letters(dl);
        assert_eq!(dead, BTreeMap::from([("".into(), 1), ("gps".into(), 2), ("nmea".into(), 1)]));
        let b = body(feeds.clone(), &dead, true, 5, datetime!(2024-05-01 12:01 UTC));
        let names: Vec<&str> = b["feeds"].as_array().unwrap().iter().map(|f| f["feed"].as_str().unwrap()).collect();
        assert_eq!(names, ["", "ais", "gps", "nmea"]);
        assert_eq!(b["feeds"][1]["rate_per_s"], 0.1);
        assert_eq!(b["feeds"][2]["errors"], 2);
        assert_eq!(b["feeds"][3]["total"], 0);
        assert_eq!((b["minutes"].as_u64(), b["numberReturned"].as_u64()), (Some(5), Some(4)));
        let unknown = body(feeds, &BTreeMap::new(), false, 5, datetime!(2024-05-01 12:01 UTC));
        assert!(unknown["feeds"][0]["errors"].is_null(), "errors unknown is not zero errors");
    }
}
