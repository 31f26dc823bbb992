//! Search requests as JSON: filters (bbox, time, keywords) and sort orders per collection. Pure,
//! so every query the API sends is checked by unit tests without an engine.
//!
//! Boxes filter `location`, the `geo_point` the sink adds to every document (the point itself or
//! the centre of a shape's bounding box): it exists on both engines, whereas `geo_shape` is missing
//! from the Elasticsearch test distribution.

use geostream_model::time::OffsetDateTime;
use geostream_model::time::format_description::well_known::Rfc3339;
use geostream_model::{IndexKind, Naming, TenantId};
use serde_json::{Value, json};

use crate::params::{Bbox, TimeRange};

/// The four collections the API serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Collection {
    /// Every observation (daily indices).
    Observations,
    /// One document per track: its newest position.
    Latest,
    /// Events.
    Events,
    /// Aggregates, one document per shard.
    Aggregates,
}

impl Collection {
    /// All of them, in the order the OGC collection list shows.
    pub const ALL: [Collection; 4] =
        [Collection::Observations, Collection::Latest, Collection::Events, Collection::Aggregates];

    /// The collection id in URLs.
    pub fn id(self) -> &'static str {
        match self {
            Collection::Observations => "observations",
            Collection::Latest => "latest",
            Collection::Events => "events",
            Collection::Aggregates => "aggregates",
        }
    }

    /// From a URL id.
    pub fn from_id(id: &str) -> Option<Collection> {
        Collection::ALL.into_iter().find(|c| c.id() == id)
    }

    /// A human title.
    pub fn title(self) -> &'static str {
        match self {
            Collection::Observations => "Observations",
            Collection::Latest => "Latest position per track",
            Collection::Events => "Events",
            Collection::Aggregates => "Aggregates (one feature per bin, window and shard)",
        }
    }

    /// The index (or pattern) to search.
    pub fn index(self, naming: &Naming, tenant: &TenantId) -> String {
        match self {
            Collection::Observations => format!("{}-*", naming.index(tenant, IndexKind::Observations)),
            Collection::Latest => naming.index(tenant, IndexKind::Latest),
            Collection::Events => naming.index(tenant, IndexKind::Events),
            Collection::Aggregates => naming.index(tenant, IndexKind::Aggregates),
        }
    }

    /// A total order over the collection's documents, so `search_after` pages never skip or
    /// repeat: each ends with a unique field. `unmapped_type` keeps a not-yet-written index
    /// from failing the sort.
    pub fn sort(self) -> Value {
        let field =
            |name: &str, order: &str, unmapped: &str| json!({name: {"order": order, "unmapped_type": unmapped}});
        match self {
            Collection::Observations => {
                json!([field("properties.time", "asc", "date"), field("id", "asc", "keyword")])
            }
            Collection::Latest => json!([field("properties.track", "asc", "keyword")]),
            Collection::Events => json!([field("properties.time", "desc", "date"), field("id", "asc", "keyword")]),
            Collection::Aggregates => json!([
                field("properties.window.start", "asc", "date"),
                field("properties.bin", "asc", "keyword"),
                field("id", "asc", "keyword")
            ]),
        }
    }

    /// How many sort values a cursor of this collection holds.
    pub fn sort_len(self) -> usize {
        self.sort().as_array().map_or(0, Vec::len)
    }
}

/// What to select.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Filters {
    /// Only documents whose `location` is inside.
    pub bbox: Option<Bbox>,
    /// Only documents in this time range (for aggregates: windows overlapping it).
    pub time: TimeRange,
    /// Exact matches on `properties.<name>`.
    pub terms: Vec<(&'static str, String)>,
    /// Leave out events marked `retracted: true`.
    pub exclude_retracted: bool,
}

fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&Rfc3339).unwrap_or_default()
}

/// The `query` part for `filters` on `collection`.
pub fn query(collection: Collection, filters: &Filters) -> Value {
    let mut filter = Vec::new();
    if let Some(b) = filters.bbox {
        filter.push(json!({"geo_bounding_box": {"location": {
            "top_left": {"lat": b.north, "lon": b.west},
            "bottom_right": {"lat": b.south, "lon": b.east}
        }}}));
    }
    let TimeRange { start, end } = filters.time;
    if collection == Collection::Aggregates {
        // A window [ws, we) overlaps [start, end] when it ends after start and starts at or before end.
        if let Some(s) = start {
            filter.push(json!({"range": {"properties.window.end": {"gt": rfc3339(s)}}}));
        }
        if let Some(e) = end {
            filter.push(json!({"range": {"properties.window.start": {"lte": rfc3339(e)}}}));
        }
    } else if start.is_some() || end.is_some() {
        let mut range = serde_json::Map::new();
        if let Some(s) = start {
            range.insert("gte".into(), json!(rfc3339(s)));
        }
        if let Some(e) = end {
            range.insert("lte".into(), json!(rfc3339(e)));
        }
        filter.push(json!({"range": {"properties.time": range}}));
    }
    for (name, value) in &filters.terms {
        filter.push(json!({"term": {format!("properties.{name}"): value}}));
    }
    let mut must_not = Vec::new();
    if filters.exclude_retracted {
        must_not.push(json!({"term": {"properties.retracted": true}}));
    }
    json!({"bool": {"filter": filter, "must_not": must_not}})
}

/// A page of `collection`: `size` documents after `search_after` in the collection's order.
pub fn page(
    collection: Collection,
    filters: &Filters,
    size: usize,
    search_after: Option<&[Value]>,
    count_total: bool,
) -> Value {
    let mut body = json!({
        "size": size,
        "query": query(collection, filters),
        "sort": collection.sort(),
        "track_total_hits": count_total,
    });
    if let Some(after) = search_after {
        body["search_after"] = Value::Array(after.to_vec());
    }
    body
}

/// One document by its feature id: the record id, or for `latest` also the track (its `_id`).
pub fn by_id(id: &str) -> Value {
    json!({
        "size": 1,
        "query": {"bool": {"should": [{"ids": {"values": [id]}}, {"term": {"id": id}}], "minimum_should_match": 1}},
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use geostream_model::time::macros::datetime;

    fn acme() -> TenantId {
        "acme".parse().unwrap()
    }

    #[test]
    fn indices_follow_the_sink_naming() {
        let n = Naming::default();
        let got: Vec<String> = Collection::ALL.iter().map(|c| c.index(&n, &acme())).collect();
        assert_eq!(
            got,
            [
                "geostream-acme-observations-*",
                "geostream-acme-latest",
                "geostream-acme-events",
                "geostream-acme-aggregates"
            ]
        );
        for c in Collection::ALL {
            assert_eq!(Collection::from_id(c.id()), Some(c));
        }
        assert_eq!(Collection::from_id("fences"), None);
    }

    #[test]
    fn every_sort_ends_with_a_unique_field() {
        for c in Collection::ALL {
            let sort = c.sort();
            let last = sort.as_array().unwrap().last().unwrap().as_object().unwrap();
            let field = last.keys().next().unwrap();
            // latest has one document per track, so the track is unique there.
            let unique = if c == Collection::Latest { "properties.track" } else { "id" };
            assert_eq!(field, unique, "{c:?}");
            assert_eq!(c.sort_len(), sort.as_array().unwrap().len());
        }
    }

    #[test]
    fn no_filters_match_everything() {
        let q = query(Collection::Observations, &Filters::default());
        assert_eq!(q, json!({"bool": {"filter": [], "must_not": []}}));
    }

    #[test]
    fn filters_become_bool_clauses() {
        let f = Filters {
            bbox: Some(Bbox { west: 5.0, south: 52.0, east: 6.0, north: 53.0 }),
            time: TimeRange {
                start: Some(datetime!(2024-05-01 00:00 UTC)),
                end: Some(datetime!(2024-05-02 00:00 UTC)),
            },
            terms: vec![("feed", "ais".into()), ("track", "v1".into())],
            exclude_retracted: true,
        };
        let q = query(Collection::Events, &f);
        let filter = q["bool"]["filter"].as_array().unwrap();
        assert_eq!(
            filter[0],
            json!({"geo_bounding_box": {"location": {"top_left": {"lat": 53.0, "lon": 5.0}, "bottom_right": {"lat": 52.0, "lon": 6.0}}}})
        );
        assert_eq!(
            filter[1],
            json!({"range": {"properties.time": {"gte": "2024-05-01T00:00:00Z", "lte": "2024-05-02T00:00:00Z"}}})
        );
        assert_eq!(filter[2], json!({"term": {"properties.feed": "ais"}}));
        assert_eq!(filter[3], json!({"term": {"properties.track": "v1"}}));
        assert_eq!(q["bool"]["must_not"], json!([{"term": {"properties.retracted": true}}]));
    }

    #[test]
    fn aggregates_select_overlapping_windows() {
        let f = Filters {
            time: TimeRange { start: Some(datetime!(2024-05-01 00:00 UTC)), end: None },
            ..Filters::default()
        };
        let q = query(Collection::Aggregates, &f);
        assert_eq!(q["bool"]["filter"], json!([{"range": {"properties.window.end": {"gt": "2024-05-01T00:00:00Z"}}}]));
        let f = Filters { time: TimeRange { start: None, end: Some(datetime!(2024-05-01 00:00 UTC)) }, ..f };
        let q = query(Collection::Aggregates, &f);
        assert_eq!(
            q["bool"]["filter"],
            json!([{"range": {"properties.window.start": {"lte": "2024-05-01T00:00:00Z"}}}])
        );
    }

    #[test]
    fn pages_carry_size_sort_and_cursor() {
        let p = page(Collection::Latest, &Filters::default(), 7, None, true);
        assert_eq!((p["size"].as_u64(), p["track_total_hits"].as_bool()), (Some(7), Some(true)));
        assert!(p.get("search_after").is_none());
        let p = page(Collection::Latest, &Filters::default(), 7, Some(&[json!("t9")]), false);
        assert_eq!(p["search_after"], json!(["t9"]));
        assert_eq!(by_id("x")["query"]["bool"]["should"][0], json!({"ids": {"values": ["x"]}}));
    }
}
