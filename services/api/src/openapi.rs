//! The OpenAPI 3.1 document (served at `/openapi.json`, printed by `geostream openapi`), built
//! from one table of the endpoints so the document and the router are reviewed side by side; a
//! test checks every routed path appears in it.

use utoipa::openapi::path::{OperationBuilder, ParameterBuilder, ParameterIn};
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::openapi::{
    ComponentsBuilder, ContentBuilder, HttpMethod, InfoBuilder, ObjectBuilder, OpenApi, OpenApiBuilder, Paths,
    Required, ResponseBuilder, SecurityRequirement, Type,
};

/// Where a parameter goes and what it says.
struct Param {
    name: &'static str,
    at: ParameterIn,
    description: &'static str,
}

const fn path(name: &'static str, description: &'static str) -> Param {
    Param { name, at: ParameterIn::Path, description }
}

const fn query(name: &'static str, description: &'static str) -> Param {
    Param { name, at: ParameterIn::Query, description }
}

struct Endpoint {
    method: HttpMethod,
    path: &'static str,
    summary: &'static str,
    params: &'static [Param],
    ok: (&'static str, &'static str),
    admin: bool,
}

const TENANT: Param = path("tenant", "The tenant this API serves");
const BBOX: Param =
    query("bbox", "minLon,minLat,maxLon,maxLat in WGS84 degrees (minLon > maxLon crosses the antimeridian)");
const START: Param = query("start", "RFC 3339 time, inclusive");
const END: Param = query("end", "RFC 3339 time, inclusive");
const LIMIT: Param = query("limit", "Most features per answer");
const CURSOR: Param = query("cursor", "The cursor of a `next` link; opaque");
const GEO: &str = "application/geo+json";
const JSON: &str = "application/json";

const ENDPOINTS: &[Endpoint] = &[
    Endpoint {
        method: HttpMethod::Get,
        path: "/v1/{tenant}/latest",
        summary: "Latest position of every track, optionally in a box and of one feed",
        params: &[TENANT, BBOX, query("feed", "Only this feed"), LIMIT, CURSOR],
        ok: (GEO, "FeatureCollection, with `next` while more follow"),
        admin: false,
    },
    Endpoint {
        method: HttpMethod::Get,
        path: "/v1/{tenant}/tracks/{track}",
        summary: "A track's observations in time order, plus a LineString through them (`line`)",
        params: &[TENANT, path("track", "The track id"), START, END, LIMIT, CURSOR],
        ok: (GEO, "FeatureCollection with the foreign member `line`"),
        admin: false,
    },
    Endpoint {
        method: HttpMethod::Get,
        path: "/v1/{tenant}/events",
        summary: "Events, newest first; retracted ones only with include_retracted=true",
        params: &[
            TENANT,
            START,
            END,
            query("kind", "Event kind (enter, exit, dwell, gap, ...)"),
            query("analytic", "Analytic id"),
            query("track", "Track id"),
            BBOX,
            query("include_retracted", "true to include events marked retracted"),
            LIMIT,
            CURSOR,
        ],
        ok: (GEO, "FeatureCollection"),
        admin: false,
    },
    Endpoint {
        method: HttpMethod::Get,
        path: "/v1/{tenant}/aggregates",
        summary: "Aggregates, one feature per (analytic, window, bin) with the shards summed",
        params: &[TENANT, query("analytic", "Analytic id"), START, END, BBOX],
        ok: (GEO, "FeatureCollection of bins"),
        admin: false,
    },
    Endpoint {
        method: HttpMethod::Get,
        path: "/v1/{tenant}/tiles/{layer}/{z}/{x}/{y}.mvt",
        summary: "Mapbox Vector Tile (extent 4096, buffer 64) of latest positions or aggregate bins",
        params: &[
            TENANT,
            path("layer", "latest or aggregates (also the layer's name inside the tile)"),
            path("z", "Zoom, 0 to 24"),
            path("x", "Column, 0 to 2^z - 1"),
            path("y", "Row from the north, 0 to 2^z - 1"),
            query("feed", "latest only: only this feed"),
            query("analytic", "aggregates only: analytic id"),
            query("start", "aggregates only: RFC 3339, windows overlapping from here"),
            query("end", "aggregates only: RFC 3339, windows overlapping up to here"),
        ],
        ok: ("application/vnd.mapbox-vector-tile", "The tile (empty when nothing is in it)"),
        admin: false,
    },
    Endpoint {
        method: HttpMethod::Get,
        path: "/v1/{tenant}/feed-status",
        summary: "Per feed: observations received in the last minutes, rate, last arrival, last event time, dead letters",
        params: &[TENANT, query("minutes", "The window, 1 to 1440 (default 5)")],
        ok: (JSON, "`feeds` (feed, total, recent, rate_per_s, last_received, last_time, errors) and `minutes`"),
        admin: false,
    },
    Endpoint {
        method: HttpMethod::Get,
        path: "/v1/{tenant}/live",
        summary: "Server-Sent Events of new observations or events (ready, feature, dropped)",
        params: &[TENANT, query("kind", "observations (default) or events"), BBOX, query("feed", "Only this feed")],
        ok: ("text/event-stream", "The event stream"),
        admin: false,
    },
    Endpoint {
        method: HttpMethod::Get,
        path: "/v1/{tenant}/{registry}",
        summary: "Every spec of a registry (feeds, fences or analytics)",
        params: &[TENANT, path("registry", "feeds, fences or analytics")],
        ok: (JSON, "`items` and `numberReturned`"),
        admin: false,
    },
    Endpoint {
        method: HttpMethod::Get,
        path: "/v1/{tenant}/{registry}/{id}",
        summary: "One registered spec",
        params: &[TENANT, path("registry", "feeds, fences or analytics"), path("id", "The spec id")],
        ok: (JSON, "The spec"),
        admin: false,
    },
    Endpoint {
        method: HttpMethod::Put,
        path: "/v1/{tenant}/{registry}/{id}",
        summary: "Register or change a spec (validated; the version rises only on change); admin token",
        params: &[TENANT, path("registry", "feeds, fences or analytics"), path("id", "The spec id")],
        ok: (JSON, "The spec as registered (201 when new)"),
        admin: true,
    },
    Endpoint {
        method: HttpMethod::Delete,
        path: "/v1/{tenant}/{registry}/{id}",
        summary: "Remove a spec (a tombstone on the compacted topic); admin token",
        params: &[TENANT, path("registry", "feeds, fences or analytics"), path("id", "The spec id")],
        ok: (JSON, "204, no content"),
        admin: true,
    },
    Endpoint {
        method: HttpMethod::Get,
        path: "/ogc/{tenant}/",
        summary: "OGC API - Features landing page",
        params: &[TENANT],
        ok: (JSON, "Landing page"),
        admin: false,
    },
    Endpoint {
        method: HttpMethod::Get,
        path: "/ogc/{tenant}/conformance",
        summary: "OGC API - Features conformance classes",
        params: &[TENANT],
        ok: (JSON, "conformsTo"),
        admin: false,
    },
    Endpoint {
        method: HttpMethod::Get,
        path: "/ogc/{tenant}/collections",
        summary: "The collections: observations, latest, events, aggregates",
        params: &[TENANT],
        ok: (JSON, "Collections"),
        admin: false,
    },
    Endpoint {
        method: HttpMethod::Get,
        path: "/ogc/{tenant}/collections/{collectionId}",
        summary: "One collection",
        params: &[TENANT, path("collectionId", "observations, latest, events or aggregates")],
        ok: (JSON, "Collection"),
        admin: false,
    },
    Endpoint {
        method: HttpMethod::Get,
        path: "/ogc/{tenant}/collections/{collectionId}/items",
        summary: "Items of a collection, paged by `next` links",
        params: &[
            TENANT,
            path("collectionId", "observations, latest, events or aggregates"),
            BBOX,
            query("datetime", "An RFC 3339 instant or interval (`..` for an open end)"),
            LIMIT,
            CURSOR,
        ],
        ok: (GEO, "FeatureCollection with numberMatched, numberReturned and links"),
        admin: false,
    },
    Endpoint {
        method: HttpMethod::Get,
        path: "/ogc/{tenant}/collections/{collectionId}/items/{featureId}",
        summary: "One item",
        params: &[
            TENANT,
            path("collectionId", "observations, latest, events or aggregates"),
            path("featureId", "The feature id"),
        ],
        ok: (GEO, "Feature"),
        admin: false,
    },
];

/// The document.
pub fn document() -> OpenApi {
    let mut paths = Paths::new();
    for e in ENDPOINTS {
        let mut op = OperationBuilder::new()
            .summary(Some(e.summary))
            .tag(if e.path.starts_with("/ogc") { "OGC API - Features" } else { "geostream" })
            .security(SecurityRequirement::new("bearer", Vec::<String>::new()));
        for p in e.params {
            op = op.parameter(
                ParameterBuilder::new()
                    .name(p.name)
                    .parameter_in(p.at.clone())
                    .required(if matches!(p.at, ParameterIn::Path) { Required::True } else { Required::False })
                    .description(Some(p.description))
                    .schema(Some(ObjectBuilder::new().schema_type(Type::String))),
            );
        }
        let problem = |d: &str| {
            ResponseBuilder::new()
                .description(d)
                .content(crate::problem::PROBLEM_JSON, ContentBuilder::new().build())
                .build()
        };
        let ok_status = match e.method {
            HttpMethod::Delete => "204",
            _ => "200",
        };
        op = op
            .response(
                ok_status,
                ResponseBuilder::new().description(e.ok.1).content(e.ok.0, ContentBuilder::new().build()).build(),
            )
            .response("400", problem("A parameter is invalid (problem+json naming it)"))
            .response("401", problem("No or unknown bearer token"))
            .response("403", problem(if e.admin { "Not the admin token" } else { "A token of another tenant" }))
            .response("404", problem("Unknown tenant, collection or item"))
            .response("502", problem("The search engine or Kafka could not answer"));
        paths.add_path_operation(e.path, vec![e.method.clone()], op.build());
    }
    let components = ComponentsBuilder::new()
        .security_scheme("bearer", SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)))
        .build();
    OpenApiBuilder::new()
        .info(
            InfoBuilder::new()
                .title("geostream api")
                .version(env!("CARGO_PKG_VERSION"))
                .description(Some(
                    "Queries, OGC API - Features, live push and the registry of one geostream tenant. See docs/api.md.",
                ))
                .build(),
        )
        .paths(paths)
        .components(Some(components))
        .build()
}

/// The document as pretty JSON.
pub fn json() -> String {
    document().to_pretty_json().unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::Value;

    #[test]
    fn every_endpoint_is_described_with_its_parameters() {
        let doc: Value = serde_json::from_str(&json()).unwrap();
        assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
        let paths = doc["paths"].as_object().unwrap();
        for e in ENDPOINTS {
            let method = match e.method {
                HttpMethod::Get => "get",
                HttpMethod::Put => "put",
                HttpMethod::Delete => "delete",
                _ => unreachable!("only these are routed"),
            };
            let op = &paths[e.path][method];
            assert!(op.is_object(), "{} {}", method, e.path);
            // Every `{param}` of the path is declared as a path parameter.
            for seg in e.path.split('/').filter_map(|s| s.strip_prefix('{').and_then(|s| s.strip_suffix('}'))) {
                assert!(
                    op["parameters"].as_array().unwrap().iter().any(|p| p["name"] == seg && p["in"] == "path"),
                    "{}: {seg}",
                    e.path
                );
            }
            assert!(op["responses"]["401"]["content"][crate::problem::PROBLEM_JSON].is_object(), "{}", e.path);
        }
        assert_eq!(doc["components"]["securitySchemes"]["bearer"]["scheme"], "bearer");
    }
}
