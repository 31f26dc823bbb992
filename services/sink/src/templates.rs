//! Index names and index templates per tenant.
//!
//! - observations: daily indices `geostream-<tenant>-observations-YYYY.MM.DD` by event time (UTC).
//!   Plain time-based indices rather than data streams: a data stream only accepts `create`
//!   without an external version and routes by `@timestamp` arrival, while daily indices keep
//!   the `_id` → index mapping a pure function of the record (a redelivered record lands in the
//!   same index and `create` answers 409), work identically on Elasticsearch and OpenSearch, and
//!   can be dropped per day for retention.
//! - events, aggregates, latest: one index each, `geostream-<tenant>-<kind>`.
//!
//! A template per kind (`PUT /_index_template/geostream-<tenant>-<kind>`) maps every index it
//! matches. Its priority grows with the tenant name's length: tenant `a`'s pattern
//! `geostream-a-observations-*` also matches indices of a tenant called `a-observations-x`, and the
//! longer (more specific) tenant must win rather than the engine refusing two overlapping
//! templates of equal priority.

use geostream_model::time::OffsetDateTime;
use geostream_model::{IndexKind, Naming, TenantId};
use serde_json::{Value, json};

use crate::engine::Engine;

/// Base priority of geostream's templates (above the engines' built-in ones, which use 100 and below).
const PRIORITY_BASE: usize = 200;

/// The index an observation with event time `time` goes to.
pub fn observation_index(naming: &Naming, tenant: &TenantId, time: OffsetDateTime) -> String {
    let t = time.to_offset(geostream_model::time::UtcOffset::UTC);
    format!(
        "{}-{:04}.{:02}.{:02}",
        naming.index(tenant, IndexKind::Observations),
        t.year(),
        u8::from(t.month()),
        t.day()
    )
}

/// The pattern a kind's template matches.
pub fn index_pattern(naming: &Naming, tenant: &TenantId, kind: IndexKind) -> String {
    let base = naming.index(tenant, kind);
    match kind {
        IndexKind::Observations => format!("{base}-*"),
        IndexKind::Events | IndexKind::Aggregates | IndexKind::Latest => base,
    }
}

/// One index template: its name and the body for `PUT /_index_template/<name>`.
#[derive(Debug, Clone, PartialEq)]
pub struct Template {
    /// `geostream-<tenant>-<kind>`.
    pub name: String,
    /// The composable template body.
    pub body: Value,
}

/// Index settings the operator may set.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IndexSettings {
    /// `index.number_of_replicas`; none leaves the engine's default.
    pub replicas: Option<u32>,
}

/// The templates of every index kind of a tenant, for this engine.
pub fn templates(naming: &Naming, tenant: &TenantId, engine: &Engine, settings: &IndexSettings) -> Vec<Template> {
    IndexKind::ALL
        .iter()
        .map(|kind| {
            let mut index_settings = json!({});
            if let Some(r) = settings.replicas {
                index_settings["number_of_replicas"] = json!(r);
            }
            Template {
                name: naming.index(tenant, *kind),
                body: json!({
                    "index_patterns": [index_pattern(naming, tenant, *kind)],
                    "priority": PRIORITY_BASE + tenant.as_str().len(),
                    "template": {"settings": index_settings, "mappings": mappings(*kind, engine.geo_shape)},
                    "_meta": {"managed_by": "geostream sink", "tenant": tenant.as_str(), "kind": kind.as_str()},
                }),
            }
        })
        .collect()
}

/// The mapping of one index kind.
///
/// Documents are the GeoJSON Feature as written to Kafka plus `location`, a `geo_point` (the point
/// itself, or the centre of a shape's bounding box), so every record can be found by box, distance
/// and grid aggregations. `geometry` is a `geo_shape` where the engine has the type; elsewhere it is
/// kept in `_source` but not indexed (`enabled: false`), so nothing is lost and queries fall back
/// to `location`. Strings are keywords (track ids, names, codes are matched exactly, not searched
/// as text), and date detection is off so a string attribute that merely looks like a date cannot
/// fix a field's type for every later record.
pub fn mappings(kind: IndexKind, geo_shape: bool) -> Value {
    let geometry = if geo_shape { json!({"type": "geo_shape"}) } else { json!({"type": "object", "enabled": false}) };
    let keyword = json!({"type": "keyword"});
    let date = json!({"type": "date"});
    let window = json!({"properties": {"start": date, "end": date}});
    let properties = match kind {
        IndexKind::Observations | IndexKind::Latest => json!({
            "feed": keyword, "track": keyword, "time": date, "received": date,
        }),
        IndexKind::Events => json!({
            "kind": keyword, "analytic": keyword, "time": date, "feed": keyword, "track": keyword,
            "fence": {"properties": {"id": keyword, "version": {"type": "long"}}},
            "window": window, "observation": keyword,
        }),
        IndexKind::Aggregates => json!({
            "kind": keyword, "analytic": keyword, "window": window, "bin": keyword,
            "version": {"type": "long"}, "count": {"type": "long"},
        }),
    };
    json!({
        "dynamic": true,
        "date_detection": false,
        "dynamic_templates": [
            {"strings_as_keywords": {"match_mapping_type": "string", "mapping": {"type": "keyword", "ignore_above": 1024}}}
        ],
        "properties": {
            "type": keyword,
            "id": keyword,
            "location": {"type": "geo_point"},
            "geometry": geometry,
            "properties": {"properties": properties},
        }
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::engine::Product;
    use geostream_model::time::macros::datetime;

    fn acme() -> TenantId {
        "acme".parse().unwrap()
    }

    fn engine(geo_shape: bool) -> Engine {
        Engine { product: Product::OpenSearch, version: "3.6.0".into(), geo_shape }
    }

    #[test]
    fn observation_indices_are_daily_by_utc_event_time() {
        let n = Naming::default();
        assert_eq!(
            observation_index(&n, &acme(), datetime!(2024-05-01 23:30 -02:00)),
            "geostream-acme-observations-2024.05.02"
        );
        assert_eq!(
            observation_index(&n, &acme(), datetime!(1969-12-31 23:59:59 UTC)),
            "geostream-acme-observations-1969.12.31"
        );
        // The topic prefix never reaches index names.
        let staging = Naming::new("staging.").unwrap();
        assert_eq!(
            observation_index(&staging, &acme(), datetime!(2024-01-09 00:00 UTC)),
            "geostream-acme-observations-2024.01.09"
        );
    }

    #[test]
    fn one_template_per_kind_matching_its_indices() {
        let n = Naming::default();
        let ts = templates(&n, &acme(), &engine(true), &IndexSettings::default());
        let names: Vec<&str> = ts.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "geostream-acme-observations",
                "geostream-acme-events",
                "geostream-acme-aggregates",
                "geostream-acme-latest"
            ]
        );
        let patterns: Vec<&Value> = ts.iter().map(|t| &t.body["index_patterns"][0]).collect();
        assert_eq!(
            patterns,
            [
                &json!("geostream-acme-observations-*"),
                &json!("geostream-acme-events"),
                &json!("geostream-acme-aggregates"),
                &json!("geostream-acme-latest")
            ]
        );
        for t in &ts {
            assert_eq!(t.body["template"]["settings"], json!({}), "no replicas setting unless configured");
            assert_eq!(t.body["template"]["mappings"]["properties"]["location"]["type"], "geo_point");
        }
        let with_replicas = templates(&n, &acme(), &engine(true), &IndexSettings { replicas: Some(0) });
        assert_eq!(with_replicas[0].body["template"]["settings"]["number_of_replicas"], 0);
    }

    #[test]
    fn longer_tenants_outrank_the_shorter_tenants_whose_patterns_cover_them() {
        let n = Naming::default();
        let short: TenantId = "a".parse().unwrap();
        let long: TenantId = "a-observations-x".parse().unwrap();
        let short_obs = &templates(&n, &short, &engine(true), &IndexSettings::default())[0];
        let long_events = &templates(&n, &long, &engine(true), &IndexSettings::default())[1];
        let pattern = short_obs.body["index_patterns"][0].as_str().unwrap().trim_end_matches('*');
        let long_index = long_events.body["index_patterns"][0].as_str().unwrap();
        assert!(long_index.starts_with(pattern), "the overlap this rule exists for");
        assert!(long_events.body["priority"].as_u64() > short_obs.body["priority"].as_u64());
    }

    #[test]
    fn geometry_is_geo_shape_only_where_the_engine_has_it() {
        for kind in IndexKind::ALL {
            let with = mappings(*kind, true);
            assert_eq!(with["properties"]["geometry"], json!({"type": "geo_shape"}));
            let without = mappings(*kind, false);
            assert_eq!(without["properties"]["geometry"], json!({"type": "object", "enabled": false}));
            assert_eq!(without["date_detection"], false);
        }
    }

    #[test]
    fn record_fields_have_fixed_types() {
        let obs = mappings(IndexKind::Observations, true);
        let p = &obs["properties"]["properties"]["properties"];
        assert_eq!(p["track"]["type"], "keyword");
        assert_eq!(p["feed"]["type"], "keyword");
        assert_eq!(p["time"]["type"], "date");
        assert_eq!(mappings(IndexKind::Latest, false)["properties"]["properties"], obs["properties"]["properties"]);
        let ev = mappings(IndexKind::Events, true);
        assert_eq!(ev["properties"]["properties"]["properties"]["window"]["properties"]["end"]["type"], "date");
        let agg = mappings(IndexKind::Aggregates, true);
        assert_eq!(agg["properties"]["properties"]["properties"]["version"]["type"], "long");
    }
}
