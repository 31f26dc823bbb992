//! The HTTP surface: thin handlers that check the token, parse parameters with [`crate::params`],
//! build the query with [`crate::query`], ask the engine and shape the answer with
//! [`crate::shape`]. Every failure answers problem+json.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::sse::{KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use geostream_model::time::OffsetDateTime;
use geostream_model::time::format_description::well_known::Rfc3339;
use geostream_model::{Naming, TenantId, TopicKind};
use serde_json::{Map, Value, json};

use crate::auth::{Access, Tokens};
use crate::backend::Store;
use crate::live::LiveFilter;
use crate::params::{self, Bbox, TimeRange};
use crate::problem::{ApiError, Failure};
use crate::query::{Collection, Filters};
use crate::registry::{Kind, Registries};
use crate::shape::{self, Page};

/// GeoJSON's media type (RFC 7946).
pub const GEO_JSON: &str = "application/geo+json";

/// Largest `limit`: one more item than the limit is fetched to know whether a page follows, and
/// the engines refuse windows above 10,000 by default.
pub const MAX_LIMIT: usize = 9_999;

/// Most documents one aggregates answer combines; beyond it the caller must narrow the query.
pub const MAX_AGGREGATE_DOCS: usize = 50_000;

/// What every handler shares.
#[derive(Debug)]
pub struct AppState {
    /// The tenant this API serves.
    pub tenant: TenantId,
    /// Index naming.
    pub naming: Naming,
    /// Where collections are read.
    pub store: Store,
    /// Request metrics.
    pub metrics: Arc<crate::metrics::ApiMetrics>,
    /// Request limits.
    pub limits: crate::limits::Limits,
    /// Who may do what.
    pub tokens: Tokens,
    /// The registry topics.
    pub registries: Registries,
    /// librdkafka properties for live push.
    pub kafka: std::collections::BTreeMap<String, String>,
    /// One permit per live client: each holds a Kafka consumer, so their number is bounded.
    pub live_slots: Arc<tokio::sync::Semaphore>,
    /// Cancelled when the stage stops: live streams end then, or the graceful shutdown would wait
    /// for them forever.
    pub shutdown: tokio_util::sync::CancellationToken,
    /// Where the built dashboard's files are (`api.dashboard_dir`).
    pub dashboard_dir: std::path::PathBuf,
}

type App = State<Arc<AppState>>;
type Params = Query<HashMap<String, String>>;

/// The API router (without the telemetry endpoints, which the stage serves on their own port).
pub fn router(state: Arc<AppState>) -> Router {
    let rate = crate::limits::RateLimits::new(&state.limits);
    let body_limit = axum::extract::DefaultBodyLimit::max(state.limits.max_body_bytes);
    let routes = Router::new()
        .route("/v1/{tenant}/latest", get(latest))
        .route("/v1/{tenant}/tracks/{track}", get(track))
        .route("/v1/{tenant}/events", get(events))
        .route("/v1/{tenant}/aggregates", get(aggregates))
        .route("/v1/{tenant}/tiles/{layer}/{z}/{x}/{y}", get(crate::maps::tile))
        .route("/v1/{tenant}/feed-status", get(crate::maps::feed_status))
        .route("/", get(crate::maps::to_dashboard))
        .route("/dashboard", get(crate::maps::to_dashboard))
        .route("/dashboard/", get(crate::maps::dashboard_index))
        .route("/dashboard/{*path}", get(crate::maps::dashboard_file))
        .route("/openapi.json", get(openapi))
        .route("/v1/{tenant}/live", get(live))
        .route("/v1/{tenant}/{registry}", get(registry_list))
        .route("/v1/{tenant}/{registry}/{id}", get(registry_get).put(registry_put).delete(registry_delete))
        .route("/ogc/{tenant}", get(landing))
        .route("/ogc/{tenant}/", get(landing))
        .route("/ogc/{tenant}/conformance", get(conformance))
        .route("/ogc/{tenant}/collections", get(collections))
        .route("/ogc/{tenant}/collections/{collection}", get(collection))
        .route("/ogc/{tenant}/collections/{collection}/items", get(items))
        .route("/ogc/{tenant}/collections/{collection}/items/{feature}", get(item))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(body_limit);
    let routes = match rate {
        Some(r) => routes.layer(axum::middleware::from_fn_with_state(r, crate::limits::rate_limit)),
        None => routes,
    };
    // Outermost, so refused requests (rate, auth) are counted too.
    routes
        .layer(axum::middleware::from_fn_with_state(Arc::clone(&state.metrics), crate::metrics::track))
        .with_state(state)
}

/// The API description needs no token: clients read it to learn how to authenticate.
async fn openapi() -> Response {
    let mut r = (StatusCode::OK, crate::openapi::json()).into_response();
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/vnd.oai.openapi+json;version=3.1"));
    r
}

async fn not_found(uri: Uri) -> Response {
    Failure {
        error: ApiError::NotFound(format!("no endpoint at {}; see /openapi.json or docs/api.md", uri.path())),
        instance: uri.path().to_owned(),
    }
    .into_response()
}

async fn method_not_allowed(uri: Uri) -> Response {
    Failure {
        error: ApiError::MethodNotAllowed(format!("{} does not answer this method", uri.path())),
        instance: uri.path().to_owned(),
    }
    .into_response()
}

pub(crate) fn answer(uri: &Uri, result: Result<Response, ApiError>) -> Response {
    match result {
        Ok(r) => r,
        Err(error) => Failure { error, instance: uri.path().to_owned() }.into_response(),
    }
}

pub(crate) fn json_response(content_type: &'static str, body: &Value) -> Response {
    let bytes = serde_json::to_vec(body).unwrap_or_default();
    let mut r = (StatusCode::OK, bytes).into_response();
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}

impl AppState {
    /// Checks the token for `tenant`, then that this API serves it.
    pub(crate) fn guard(&self, headers: &HeaderMap, tenant: &str, access: Access) -> Result<(), ApiError> {
        let auth = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
        self.tokens.check(auth, tenant, access)?;
        if tenant != self.tenant.as_str() {
            return Err(ApiError::NotFound(format!(
                "this API serves tenant {:?}, not {tenant:?}",
                self.tenant.as_str()
            )));
        }
        Ok(())
    }

    pub(crate) async fn fetch(
        &self,
        c: Collection,
        filters: &Filters,
        size: usize,
        after: Option<&[Value]>,
        count_total: bool,
    ) -> Result<Page, ApiError> {
        self.store.page(c, filters, size, after, count_total).await
    }

    /// Every record matching `filters`, read in pages of `page`; more than `max` answers
    /// `result-too-large` with `too_many` (what matched, and how to narrow it).
    pub(crate) async fn fetch_all(
        &self,
        c: Collection,
        filters: &Filters,
        page: usize,
        max: usize,
        too_many: impl Fn() -> String,
    ) -> Result<Vec<Value>, ApiError> {
        let mut out = Vec::new();
        let mut after: Option<Vec<Value>> = None;
        loop {
            let p = self.fetch(c, filters, page, after.as_deref(), false).await?;
            let n = p.features.len();
            out.extend(p.features);
            if out.len() > max {
                return Err(ApiError::TooLarge(too_many()));
            }
            if n < page {
                return Ok(out);
            }
            after = p.sorts.last().cloned();
        }
    }

    /// Every aggregate bin matching `filters`, shards summed (see [`shape::combine_shards`]).
    pub(crate) async fn aggregate_bins(&self, filters: &Filters) -> Result<Vec<Value>, ApiError> {
        // Every shard document of every bin is needed before any bin can be summed.
        let docs = self
            .fetch_all(Collection::Aggregates, filters, 1000, MAX_AGGREGATE_DOCS, || {
                format!(
                    "more than {MAX_AGGREGATE_DOCS} aggregate documents match; narrow it with analytic, start/end or bbox"
                )
            })
            .await?;
        Ok(shape::combine_shards(&docs))
    }

    /// One page of `limit` and whether more follow: asks for one more than needed, so the last
    /// page never carries a `next` that leads nowhere.
    async fn fetch_page(
        &self,
        c: Collection,
        filters: &Filters,
        limit: usize,
        cursor: Option<&str>,
        count_total: bool,
    ) -> Result<(Page, Option<String>), ApiError> {
        let after = cursor.map(|raw| params::decode_cursor(raw, c.sort_len())).transpose()?;
        let mut page = self.fetch(c, filters, limit + 1, after.as_deref(), count_total).await?;
        let next = if page.features.len() > limit {
            page.features.truncate(limit);
            page.sorts.truncate(limit);
            page.sorts.last().map(|s| params::encode_cursor(s))
        } else {
            None
        };
        Ok((page, next))
    }
}

/// Refuses parameters the endpoint does not know, so a typo (`bbbox`) is not silently ignored.
pub(crate) fn only(q: &HashMap<String, String>, known: &[&str]) -> Result<(), ApiError> {
    let mut unknown: Vec<&String> = q.keys().filter(|k| !known.contains(&k.as_str())).collect();
    unknown.sort();
    match unknown.first() {
        None => Ok(()),
        Some(k) => {
            Err(ApiError::param(k, "is not a parameter of this endpoint", format!("use only {}", known.join(", "))))
        }
    }
}

pub(crate) fn get_param<'a>(q: &'a HashMap<String, String>, name: &str) -> Option<&'a str> {
    q.get(name).map(String::as_str)
}

fn bbox_of(q: &HashMap<String, String>) -> Result<Option<Bbox>, ApiError> {
    get_param(q, "bbox").map(Bbox::parse).transpose()
}

pub(crate) fn terms(
    q: &HashMap<String, String>,
    names: &[&'static str],
) -> Result<Vec<(&'static str, String)>, ApiError> {
    let mut out = Vec::new();
    for name in names {
        if let Some(v) = params::keyword(name, get_param(q, name))? {
            out.push((*name, v));
        }
    }
    Ok(out)
}

/// A query string with `cursor` replaced, for `next` links.
fn with_cursor(uri: &Uri, cursor: &str) -> String {
    let mut pairs: Vec<String> = uri
        .query()
        .unwrap_or_default()
        .split('&')
        .filter(|p| !p.is_empty() && !p.starts_with("cursor="))
        .map(str::to_owned)
        .collect();
    pairs.push(format!("cursor={cursor}"));
    format!("{}?{}", uri.path(), pairs.join("&"))
}

fn next_member(uri: &Uri, next: Option<String>) -> Map<String, Value> {
    let mut m = Map::new();
    if let Some(c) = next {
        m.insert("next".into(), json!(with_cursor(uri, &c)));
    }
    m
}

async fn latest(
    State(app): App,
    Path(tenant): Path<String>,
    headers: HeaderMap,
    uri: Uri,
    Query(q): Params,
) -> Response {
    let r = async {
        app.guard(&headers, &tenant, Access::Read)?;
        only(&q, &["bbox", "feed", "limit", "cursor"])?;
        let filters = Filters { bbox: bbox_of(&q)?, terms: terms(&q, &["feed"])?, ..Filters::default() };
        let limit = params::limit(get_param(&q, "limit"), 1000, MAX_LIMIT)?;
        let (page, next) = app.fetch_page(Collection::Latest, &filters, limit, get_param(&q, "cursor"), false).await?;
        Ok(json_response(GEO_JSON, &shape::collection(page.features, next_member(&uri, next))))
    };
    answer(&uri, r.await)
}

async fn track(
    State(app): App,
    Path((tenant, track)): Path<(String, String)>,
    headers: HeaderMap,
    uri: Uri,
    Query(q): Params,
) -> Response {
    let r = async {
        app.guard(&headers, &tenant, Access::Read)?;
        only(&q, &["start", "end", "limit", "cursor"])?;
        let filters = Filters {
            time: TimeRange::from_params(get_param(&q, "start"), get_param(&q, "end"))?,
            terms: vec![("track", track.clone())],
            ..Filters::default()
        };
        let limit = params::limit(get_param(&q, "limit"), 1000, MAX_LIMIT)?;
        let (page, next) =
            app.fetch_page(Collection::Observations, &filters, limit, get_param(&q, "cursor"), false).await?;
        let mut extra = next_member(&uri, next);
        extra.insert("line".into(), shape::track_line(&track, &page.features));
        Ok(json_response(GEO_JSON, &shape::collection(page.features, extra)))
    };
    answer(&uri, r.await)
}

async fn events(
    State(app): App,
    Path(tenant): Path<String>,
    headers: HeaderMap,
    uri: Uri,
    Query(q): Params,
) -> Response {
    let r = async {
        app.guard(&headers, &tenant, Access::Read)?;
        only(&q, &["start", "end", "kind", "analytic", "track", "bbox", "limit", "cursor", "include_retracted"])?;
        let filters = Filters {
            bbox: bbox_of(&q)?,
            time: TimeRange::from_params(get_param(&q, "start"), get_param(&q, "end"))?,
            terms: terms(&q, &["kind", "analytic", "track"])?,
            exclude_retracted: !params::flag("include_retracted", get_param(&q, "include_retracted"))?,
        };
        let limit = params::limit(get_param(&q, "limit"), 100, MAX_LIMIT)?;
        let (page, next) = app.fetch_page(Collection::Events, &filters, limit, get_param(&q, "cursor"), false).await?;
        Ok(json_response(GEO_JSON, &shape::collection(page.features, next_member(&uri, next))))
    };
    answer(&uri, r.await)
}

async fn aggregates(
    State(app): App,
    Path(tenant): Path<String>,
    headers: HeaderMap,
    uri: Uri,
    Query(q): Params,
) -> Response {
    let r = async {
        app.guard(&headers, &tenant, Access::Read)?;
        only(&q, &["analytic", "start", "end", "bbox"])?;
        let filters = Filters {
            bbox: bbox_of(&q)?,
            time: TimeRange::from_params(get_param(&q, "start"), get_param(&q, "end"))?,
            terms: terms(&q, &["analytic"])?,
            ..Filters::default()
        };
        let bins = app.aggregate_bins(&filters).await?;
        Ok(json_response(GEO_JSON, &shape::collection(bins, Map::new())))
    };
    answer(&uri, r.await)
}

async fn live(State(app): App, Path(tenant): Path<String>, headers: HeaderMap, uri: Uri, Query(q): Params) -> Response {
    let r = async {
        app.guard(&headers, &tenant, Access::Read)?;
        only(&q, &["kind", "bbox", "feed"])?;
        let topic = match get_param(&q, "kind").unwrap_or("observations") {
            "observations" => TopicKind::Observations,
            "events" => TopicKind::Events,
            other => {
                return Err(ApiError::param(
                    "kind",
                    format!("{other:?} cannot be followed"),
                    "use kind=observations or kind=events",
                ));
            }
        };
        let filter = LiveFilter { bbox: bbox_of(&q)?, feed: params::keyword("feed", get_param(&q, "feed"))? };
        let slot = Arc::clone(&app.live_slots)
            .try_acquire_owned()
            .map_err(|_| ApiError::Busy("every live-push slot is taken (api.max_live_clients); retry later".into()))?;
        let topic = app.naming.topic(&app.tenant, topic);
        let stream = crate::live::open(&app.kafka, &topic, filter, crate::live::CLIENT_BUFFER, Some(slot)).await?;
        let stream = futures::StreamExt::take_until(stream, app.shutdown.clone().cancelled_owned());
        let events = futures::StreamExt::map(stream, |item| Ok::<_, std::convert::Infallible>(item.to_sse()));
        Ok(Sse::new(events).keep_alive(KeepAlive::default()).into_response())
    };
    answer(&uri, r.await)
}

// ---- Registry ----

fn registry_kind(segment: &str) -> Result<Kind, ApiError> {
    Kind::from_segment(segment).ok_or_else(|| {
        ApiError::NotFound(format!(
            "no endpoint {segment:?}; the registries are feeds, fences, analytics and the queries latest, tracks, events, aggregates"
        ))
    })
}

async fn registry_list(
    State(app): App,
    Path((tenant, registry)): Path<(String, String)>,
    headers: HeaderMap,
    uri: Uri,
) -> Response {
    let r = async {
        app.guard(&headers, &tenant, Access::Read)?;
        let kind = registry_kind(&registry)?;
        let items = app.registries.list(kind).await?;
        Ok(json_response("application/json", &json!({"numberReturned": items.len(), "items": items})))
    };
    answer(&uri, r.await)
}

async fn registry_get(
    State(app): App,
    Path((tenant, registry, id)): Path<(String, String, String)>,
    headers: HeaderMap,
    uri: Uri,
) -> Response {
    let r = async {
        app.guard(&headers, &tenant, Access::Read)?;
        let kind = registry_kind(&registry)?;
        Ok(json_response("application/json", &app.registries.get(kind, &id).await?))
    };
    answer(&uri, r.await)
}

async fn registry_put(
    State(app): App,
    Path((tenant, registry, id)): Path<(String, String, String)>,
    headers: HeaderMap,
    uri: Uri,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> Response {
    let r = async {
        app.guard(&headers, &tenant, Access::Admin)?;
        let body = body.map_err(|e| {
            if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::PayloadTooLarge(format!(
                    "the body is larger than api.max_body_bytes ({} bytes); split the registration",
                    app.limits.max_body_bytes
                ))
            } else {
                ApiError::param("body", e.body_text(), "send the spec as a JSON body")
            }
        })?;
        let kind = registry_kind(&registry)?;
        let (created, spec) = app.registries.put(kind, &id, &body).await?;
        let mut resp = json_response("application/json", &spec);
        if created {
            *resp.status_mut() = StatusCode::CREATED;
            if let Ok(loc) = HeaderValue::from_str(uri.path()) {
                resp.headers_mut().insert(header::LOCATION, loc);
            }
        }
        Ok(resp)
    };
    answer(&uri, r.await)
}

async fn registry_delete(
    State(app): App,
    Path((tenant, registry, id)): Path<(String, String, String)>,
    headers: HeaderMap,
    uri: Uri,
) -> Response {
    let r = async {
        app.guard(&headers, &tenant, Access::Admin)?;
        let kind = registry_kind(&registry)?;
        app.registries.delete(kind, &id).await?;
        Ok(StatusCode::NO_CONTENT.into_response())
    };
    answer(&uri, r.await)
}

// ---- OGC API - Features ----

const CONFORMANCE: &[&str] = &[
    "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/core",
    "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/geojson",
];

/// The absolute base of links: scheme and host as the client reached us (a proxy in front sets
/// `X-Forwarded-Proto`).
fn base(headers: &HeaderMap) -> String {
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok()).unwrap_or("localhost");
    let proto = headers.get("x-forwarded-proto").and_then(|h| h.to_str().ok()).unwrap_or("http");
    format!("{proto}://{host}")
}

fn link(href: String, rel: &str, kind: &str, title: &str) -> Value {
    json!({"href": href, "rel": rel, "type": kind, "title": title})
}

fn ogc_root(headers: &HeaderMap, tenant: &str) -> String {
    format!("{}/ogc/{tenant}", base(headers))
}

async fn landing(State(app): App, Path(tenant): Path<String>, headers: HeaderMap, uri: Uri) -> Response {
    let r = (|| {
        app.guard(&headers, &tenant, Access::Read)?;
        let root = ogc_root(&headers, &tenant);
        Ok(json_response(
            "application/json",
            &json!({
                "title": format!("geostream {tenant}"),
                "description": "Observations, latest positions, events and aggregates of one geostream tenant (OGC API - Features).",
                "links": [
                    link(format!("{root}/"), "self", "application/json", "This document"),
                    link(format!("{}/openapi.json", base(&headers)), "service-desc", "application/vnd.oai.openapi+json;version=3.1", "The API definition"),
                    link(format!("{root}/conformance"), "conformance", "application/json", "Conformance classes"),
                    link(format!("{root}/collections"), "data", "application/json", "Collections"),
                ]
            }),
        ))
    })();
    answer(&uri, r)
}

async fn conformance(State(app): App, Path(tenant): Path<String>, headers: HeaderMap, uri: Uri) -> Response {
    let r = (|| {
        app.guard(&headers, &tenant, Access::Read)?;
        Ok(json_response("application/json", &json!({"conformsTo": CONFORMANCE})))
    })();
    answer(&uri, r)
}

fn collection_doc(root: &str, c: Collection) -> Value {
    let href = format!("{root}/collections/{}", c.id());
    json!({
        "id": c.id(),
        "title": c.title(),
        "itemType": "feature",
        "crs": ["http://www.opengis.net/def/crs/OGC/1.3/CRS84"],
        "extent": {"spatial": {"bbox": [[-180.0, -90.0, 180.0, 90.0]], "crs": "http://www.opengis.net/def/crs/OGC/1.3/CRS84"}},
        "links": [
            link(href.clone(), "self", "application/json", c.title()),
            link(format!("{href}/items"), "items", GEO_JSON, "Items"),
        ],
    })
}

fn collection_of(id: &str) -> Result<Collection, ApiError> {
    Collection::from_id(id).ok_or_else(|| {
        ApiError::NotFound(format!(
            "no collection {id:?}; the collections are observations, latest, events, aggregates"
        ))
    })
}

async fn collections(State(app): App, Path(tenant): Path<String>, headers: HeaderMap, uri: Uri) -> Response {
    let r = (|| {
        app.guard(&headers, &tenant, Access::Read)?;
        let root = ogc_root(&headers, &tenant);
        let list: Vec<Value> = Collection::ALL.iter().map(|c| collection_doc(&root, *c)).collect();
        Ok(json_response(
            "application/json",
            &json!({"links": [link(format!("{root}/collections"), "self", "application/json", "Collections")], "collections": list}),
        ))
    })();
    answer(&uri, r)
}

async fn collection(
    State(app): App,
    Path((tenant, id)): Path<(String, String)>,
    headers: HeaderMap,
    uri: Uri,
) -> Response {
    let r = (|| {
        app.guard(&headers, &tenant, Access::Read)?;
        let c = collection_of(&id)?;
        Ok(json_response("application/json", &collection_doc(&ogc_root(&headers, &tenant), c)))
    })();
    answer(&uri, r)
}

async fn items(
    State(app): App,
    Path((tenant, id)): Path<(String, String)>,
    headers: HeaderMap,
    uri: Uri,
    Query(q): Params,
) -> Response {
    let r = async {
        app.guard(&headers, &tenant, Access::Read)?;
        let c = collection_of(&id)?;
        only(&q, &["bbox", "datetime", "limit", "cursor", "f"])?;
        if let Some(f) = get_param(&q, "f")
            && f != "json"
            && f != "geojson"
        {
            return Err(ApiError::param("f", format!("{f:?} is not offered"), "use f=json (GeoJSON) or leave f out"));
        }
        let filters = Filters {
            bbox: bbox_of(&q)?,
            time: get_param(&q, "datetime").map(TimeRange::from_datetime).transpose()?.unwrap_or_default(),
            ..Filters::default()
        };
        let limit = params::limit(get_param(&q, "limit"), 10, MAX_LIMIT)?;
        let (page, next) = app.fetch_page(c, &filters, limit, get_param(&q, "cursor"), true).await?;
        let b = base(&headers);
        let mut links = vec![
            link(format!("{b}{}", path_and_query(&uri)), "self", GEO_JSON, "This page"),
            link(
                format!("{}/collections/{}", ogc_root(&headers, &tenant), c.id()),
                "collection",
                "application/json",
                c.title(),
            ),
        ];
        if let Some(cursor) = next {
            links.push(link(format!("{b}{}", with_cursor(&uri, &cursor)), "next", GEO_JSON, "Next page"));
        }
        let mut extra = Map::new();
        extra.insert("links".into(), Value::Array(links));
        extra.insert("timeStamp".into(), json!(OffsetDateTime::now_utc().format(&Rfc3339).unwrap_or_default()));
        if let Some(total) = page.total {
            extra.insert("numberMatched".into(), json!(total));
        }
        Ok(json_response(GEO_JSON, &shape::collection(page.features, extra)))
    };
    answer(&uri, r.await)
}

fn path_and_query(uri: &Uri) -> String {
    uri.path_and_query().map_or_else(|| uri.path().to_owned(), |p| p.as_str().to_owned())
}

async fn item(
    State(app): App,
    Path((tenant, id, feature)): Path<(String, String, String)>,
    headers: HeaderMap,
    uri: Uri,
) -> Response {
    let r = async {
        app.guard(&headers, &tenant, Access::Read)?;
        let c = collection_of(&id)?;
        let mut f = app
            .store
            .by_id(c, &feature)
            .await?
            .ok_or_else(|| ApiError::NotFound(format!("no item {feature:?} in collection {:?}", c.id())))?;
        let root = ogc_root(&headers, &tenant);
        f["links"] = json!([
            link(format!("{root}/collections/{}/items/{feature}", c.id()), "self", GEO_JSON, "This item"),
            link(format!("{root}/collections/{}", c.id()), "collection", "application/json", c.title()),
        ]);
        Ok(json_response(GEO_JSON, &f))
    };
    answer(&uri, r.await)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use axum::body::Body;
    use axum::http::Request;
    use http_body_util::BodyExt;
    use std::collections::BTreeMap;
    use tower::ServiceExt;

    /// A router whose engine and Kafka are unreachable: everything tested here is decided before
    /// either is asked.
    fn app() -> Router {
        let kafka = BTreeMap::from([("bootstrap.servers".to_owned(), "127.0.0.1:9".to_owned())]);
        let tokens =
            BTreeMap::from([("acme".to_owned(), vec!["r".to_owned()]), ("other".to_owned(), vec!["o".to_owned()])]);
        router(Arc::new(AppState {
            tenant: "acme".parse().unwrap(),
            naming: Naming::default(),
            store: Store::Search {
                search: crate::search::Search::new("http://127.0.0.1:9", None, None, std::time::Duration::from_secs(1))
                    .unwrap(),
                naming: Naming::default(),
                tenant: "acme".parse().unwrap(),
            },
            metrics: Arc::default(),
            limits: crate::limits::Limits { requests_per_s: 5, burst: 5, max_body_bytes: 64 },
            tokens: Tokens::new(&tokens, Some("adm".into())),
            registries: Registries {
                feeds: geostream_ingest::registry::RegistryClient::new(kafka.clone(), "acme.feeds"),
                fences: geostream_processor::registry::RegistryTopic::new(kafka.clone(), "acme.fences"),
                analytics: geostream_processor::registry::RegistryTopic::new(kafka.clone(), "acme.analytics"),
            },
            kafka,
            live_slots: Arc::new(tokio::sync::Semaphore::new(0)),
            shutdown: tokio_util::sync::CancellationToken::new(),
            dashboard_dir: std::path::PathBuf::from("/nonexistent/dashboard"),
        }))
    }

    async fn call(method: &str, uri: &str, token: Option<&str>) -> (u16, String, Value) {
        let mut req = Request::builder().method(method).uri(uri);
        if let Some(t) = token {
            req = req.header("authorization", format!("Bearer {t}"));
        }
        let resp = app().oneshot(req.body(Body::empty()).unwrap()).await.unwrap();
        let status = resp.status().as_u16();
        let ct = resp.headers().get("content-type").map(|v| v.to_str().unwrap().to_owned()).unwrap_or_default();
        let bytes = resp.into_body().collect().await.unwrap().to_bytes();
        (status, ct, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
    }

    #[tokio::test]
    async fn tokens_are_rate_limited_and_bodies_bounded_with_problems() {
        let router = app();
        let send = |method: &str, uri: &str, token: &str, body: Vec<u8>| {
            let req = Request::builder()
                .method(method)
                .uri(uri)
                .header("authorization", format!("Bearer {token}"))
                .body(Body::from(body))
                .unwrap();
            router.clone().oneshot(req)
        };
        // Burst 5: five answers (401, the token is unknown) and then 429 for the same token.
        for _ in 0..5 {
            assert_eq!(send("GET", "/v1/acme/latest", "made-up", vec![]).await.unwrap().status(), 401);
        }
        let resp = send("GET", "/v1/acme/latest", "made-up", vec![]).await.unwrap();
        assert_eq!(resp.status(), 429);
        assert!(resp.headers()[header::RETRY_AFTER].to_str().unwrap().parse::<u64>().unwrap() >= 1);
        assert_eq!(resp.headers()[header::CONTENT_TYPE], crate::problem::PROBLEM_JSON);
        // Another token has its own budget; a body over max_body_bytes (64) answers 413.
        let resp = send("PUT", "/v1/acme/fences/f1", "adm", vec![b' '; 65]).await.unwrap();
        assert_eq!(resp.status(), 413);
        let bytes = resp.into_body().collect().await.unwrap().to_bytes();
        let p: Value = serde_json::from_slice(&bytes).unwrap();
        assert!(p["type"].as_str().unwrap().ends_with("payload-too-large"), "{p}");
        assert!(p["detail"].as_str().unwrap().contains("64 bytes"), "{p}");
    }

    #[tokio::test]
    async fn auth_and_parameters_are_decided_before_any_backend() {
        // method, uri, token, status, the parameter a 400 names
        type Case<'a> = (&'a str, &'a str, Option<&'a str>, u16, Option<&'a str>);
        let cases: &[Case<'_>] = &[
            ("GET", "/v1/acme/latest", None, 401, None),
            ("GET", "/v1/acme/latest", Some("nope"), 401, None),
            ("GET", "/v1/acme/latest", Some("o"), 403, None),
            ("GET", "/v1/other/latest", Some("o"), 404, None),
            ("GET", "/v1/acme/latest?bbox=1,2,3", Some("r"), 400, Some("bbox")),
            ("GET", "/v1/acme/latest?limit=0", Some("r"), 400, Some("limit")),
            ("GET", "/v1/acme/tracks/t1?start=x", Some("r"), 400, Some("start")),
            ("GET", "/v1/acme/events?include_retracted=1", Some("r"), 400, Some("include_retracted")),
            ("GET", "/v1/acme/aggregates?limit=5", Some("r"), 400, Some("limit")),
            ("GET", "/v1/acme/live?kind=aggregates", Some("r"), 400, Some("kind")),
            ("GET", "/v1/acme/live?kind=events", Some("r"), 503, None),
            ("GET", "/ogc/acme/collections/latest/items?datetime=soon", Some("r"), 400, Some("datetime")),
            ("GET", "/ogc/acme/collections/latest/items?f=html", Some("r"), 400, Some("f")),
            ("GET", "/ogc/acme/collections/nope", Some("r"), 404, None),
            ("GET", "/v1/acme/nothing", Some("r"), 404, None),
            ("PUT", "/v1/acme/fences/f1", Some("r"), 403, None),
            ("DELETE", "/v1/acme/analytics/a1", Some("r"), 403, None),
            ("PUT", "/v1/acme/fences/f1", None, 401, None),
            ("POST", "/v1/acme/latest", Some("r"), 405, None),
            ("GET", "/elsewhere", Some("r"), 404, None),
            ("GET", "/v1/acme/tiles/latest/3/1/2.mvt", None, 401, None),
            ("GET", "/v1/acme/tiles/roads/3/1/2.mvt", Some("r"), 404, None),
            ("GET", "/v1/acme/tiles/latest/3/8/2.mvt", Some("r"), 400, Some("tile")),
            ("GET", "/v1/acme/tiles/latest/3/1/2.png", Some("r"), 400, Some("tile")),
            ("GET", "/v1/acme/tiles/latest/3/1/2.mvt?analytic=x", Some("r"), 400, Some("analytic")),
            ("GET", "/v1/acme/tiles/aggregates/3/1/2.mvt?start=x", Some("r"), 400, Some("start")),
            ("GET", "/v1/acme/feed-status", Some("o"), 403, None),
            ("GET", "/v1/acme/feed-status?minutes=0", Some("r"), 400, Some("minutes")),
            ("GET", "/dashboard/", None, 404, None),
            ("GET", "/dashboard/../secret", None, 404, None),
        ];
        for (method, uri, token, want, parameter) in cases {
            let (status, ct, body) = call(method, uri, *token).await;
            assert_eq!(status, *want, "{method} {uri}: {body}");
            assert_eq!(ct, "application/problem+json", "{method} {uri}");
            assert_eq!(body["status"], *want, "{method} {uri}: {body}");
            assert_eq!(body["instance"], uri.split('?').next().unwrap());
            if let Some(p) = parameter {
                assert_eq!(body["parameter"], *p, "{method} {uri}: {body}");
            }
        }
    }

    #[tokio::test]
    async fn pages_that_need_no_backend_answer_with_their_content_types() {
        let (status, ct, body) = call("GET", "/ogc/acme/conformance", Some("r")).await;
        assert_eq!((status, ct.as_str()), (200, "application/json"));
        assert_eq!(body["conformsTo"].as_array().unwrap().len(), 2);
        let (status, _, body) = call("GET", "/ogc/acme", Some("r")).await;
        assert_eq!(status, 200);
        let rels: Vec<&str> = body["links"].as_array().unwrap().iter().map(|l| l["rel"].as_str().unwrap()).collect();
        assert_eq!(rels, ["self", "service-desc", "conformance", "data"]);
        let (status, _, body) = call("GET", "/ogc/acme/collections", Some("r")).await;
        assert_eq!(status, 200);
        assert_eq!(body["collections"].as_array().unwrap().len(), 4);
        let (status, ct, body) = call("GET", "/openapi.json", None).await;
        assert_eq!(status, 200, "the API description needs no token");
        assert!(ct.starts_with("application/vnd.oai.openapi+json"), "{ct}");
        assert!(body["paths"]["/v1/{tenant}/events"].is_object());
    }

    #[tokio::test]
    async fn the_root_leads_to_the_dashboard() {
        for uri in ["/", "/dashboard"] {
            let resp = app().oneshot(Request::builder().uri(uri).body(Body::empty()).unwrap()).await.unwrap();
            assert_eq!(resp.status().as_u16(), 303, "{uri}");
            assert_eq!(resp.headers()["location"], "/dashboard/");
        }
        let (_, _, body) = call("GET", "/dashboard/", None).await;
        assert!(body["detail"].as_str().unwrap().contains("scripts/dashboard.sh"), "{body}");
    }

    #[test]
    fn next_links_replace_the_cursor_and_keep_the_rest() {
        let uri: Uri = "/ogc/acme/collections/latest/items?limit=5&cursor=old&bbox=1,2,3,4".parse().unwrap();
        assert_eq!(with_cursor(&uri, "new"), "/ogc/acme/collections/latest/items?limit=5&bbox=1,2,3,4&cursor=new");
        let bare: Uri = "/v1/acme/latest".parse().unwrap();
        assert_eq!(with_cursor(&bare, "c"), "/v1/acme/latest?cursor=c");
    }

    #[test]
    fn unknown_parameters_are_named() {
        let q = HashMap::from([("bbbox".to_owned(), "1".to_owned())]);
        match only(&q, &["bbox"]).unwrap_err() {
            ApiError::InvalidParameter { parameter, fix, .. } => {
                assert_eq!(parameter, "bbbox");
                assert!(fix.contains("bbox"));
            }
            e => panic!("{e:?}"),
        }
        assert!(only(&HashMap::new(), &["bbox"]).is_ok());
    }
}
