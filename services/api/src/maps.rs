//! Thin handlers for the map dashboard: its static files, vector tiles of latest positions and
//! aggregate bins, and the feed status panel. The features of a tile come through the same
//! queries as `/latest` and `/aggregates` ([`AppState::fetch`], [`AppState::aggregate_bins`]);
//! [`crate::tiles`] and [`crate::feed_status`] hold the logic.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Redirect, Response};
use geostream_model::TopicKind;
use geostream_model::time::OffsetDateTime;
use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};

use crate::auth::Access;
use crate::params::TimeRange;
use crate::problem::ApiError;
use crate::query::{Collection, Filters};
use crate::routes::{AppState, answer, get_param, json_response, only, terms};
use crate::tiles::{LayerKind, TileId};
use crate::{dashboard, feed_status};

type App = State<Arc<AppState>>;
type Params = Query<HashMap<String, String>>;

/// Most features one tile carries; a denser tile asks the client to zoom in.
pub const MAX_TILE_FEATURES: usize = 20_000;

/// Vector tile content type (the de-facto one; MapLibre reads any).
pub const MVT: &str = "application/vnd.mapbox-vector-tile";

/// `GET /v1/{tenant}/tiles/{layer}/{z}/{x}/{y}.mvt`
pub async fn tile(
    State(app): App,
    Path((tenant, layer, z, x, y)): Path<(String, String, String, String, String)>,
    headers: HeaderMap,
    uri: Uri,
    Query(q): Params,
) -> Response {
    let r = async {
        app.guard(&headers, &tenant, Access::Read)?;
        let kind = LayerKind::from_id(&layer)?;
        let id = TileId::parse(&z, &x, &y)?;
        let bbox = Some(id.query_bbox());
        let features = match kind {
            LayerKind::Latest => {
                only(&q, &["feed"])?;
                let filters = Filters { bbox, terms: terms(&q, &["feed"])?, ..Filters::default() };
                app.fetch_all(Collection::Latest, &filters, 5000, MAX_TILE_FEATURES, || {
                    format!("more than {MAX_TILE_FEATURES} tracks in tile {z}/{x}/{y}; zoom in or filter by feed")
                })
                .await?
            }
            LayerKind::Aggregates => {
                only(&q, &["analytic", "start", "end"])?;
                let filters = Filters {
                    bbox,
                    time: TimeRange::from_params(get_param(&q, "start"), get_param(&q, "end"))?,
                    terms: terms(&q, &["analytic"])?,
                    ..Filters::default()
                };
                app.aggregate_bins(&filters).await?
            }
        };
        let bytes = crate::tiles::encode(id, &[(kind.name(), &features)])?;
        let mut resp = (StatusCode::OK, bytes).into_response();
        resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(MVT));
        // Latest positions move: a tile is only good for a moment.
        resp.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
        Ok(resp)
    };
    answer(&uri, r.await)
}

/// `GET /v1/{tenant}/feed-status?minutes=5`
pub async fn feed_status(
    State(app): App,
    Path(tenant): Path<String>,
    headers: HeaderMap,
    uri: Uri,
    Query(q): Params,
) -> Response {
    let r = async {
        app.guard(&headers, &tenant, Access::Read)?;
        only(&q, &["minutes"])?;
        let minutes = feed_status::minutes(get_param(&q, "minutes"))?;
        let now = OffsetDateTime::now_utc();
        let since = now - Duration::from_secs(u64::from(minutes) * 60);
        let feeds = app.store.feed_status(since).await?;
        // Dead letters live only on Kafka: a Kafka problem leaves errors unknown (null) rather
        // than failing the whole panel.
        let (dead, known) =
            match dead_letters(&app.kafka, &app.naming.topic(&app.tenant, TopicKind::Deadletter), since).await {
                Ok(d) => (d, true),
                Err(e) => {
                    tracing::warn!(error = %e, tenant = %app.tenant, "feed status: dead letters unreadable");
                    (BTreeMap::new(), false)
                }
            };
        Ok(json_response("application/json", &feed_status::body(feeds, &dead, known, minutes, now)))
    };
    answer(&uri, r.await)
}

/// Most dead letters read for one status answer.
const MAX_DEAD_LETTERS: usize = 100_000;

/// Dead letters per feed on `topic` from `since` to the current end (Kafka timestamps).
async fn dead_letters(
    kafka: &BTreeMap<String, String>,
    topic: &str,
    since: OffsetDateTime,
) -> Result<BTreeMap<String, u64>, ApiError> {
    let mut cfg = ClientConfig::new();
    for (k, v) in kafka {
        cfg.set(k, v);
    }
    // Unused (partitions are assigned), but required; under the tenant's prefix for its ACLs.
    cfg.set("group.id", format!("{topic}.api-feed-status")).set("enable.auto.commit", "false");
    let topic = topic.to_owned();
    let since_ms = (since.unix_timestamp_nanos() / 1_000_000) as i64;
    tokio::task::spawn_blocking(move || -> Result<BTreeMap<String, u64>, ApiError> {
        let k = |e: rdkafka::error::KafkaError| ApiError::Kafka(format!("dead letters on {topic}: {e}"));
        let consumer: BaseConsumer = cfg.create().map_err(k)?;
        let timeout = Duration::from_secs(10);
        let md = consumer.fetch_metadata(Some(&topic), timeout).map_err(k)?;
        let parts: Vec<i32> = md
            .topics()
            .iter()
            .filter(|t| t.error().is_none())
            .flat_map(|t| t.partitions().iter().map(|p| p.id()))
            .collect();
        if parts.is_empty() {
            // No dead-letter topic yet: nothing was ever dead-lettered.
            return Ok(BTreeMap::new());
        }
        let mut by_time = TopicPartitionList::new();
        let mut ends = HashMap::new();
        for p in &parts {
            by_time.add_partition_offset(&topic, *p, Offset::Offset(since_ms)).map_err(k)?;
            let (_, high) = consumer.fetch_watermarks(&topic, *p, timeout).map_err(k)?;
            ends.insert(*p, high);
        }
        let starts = consumer.offsets_for_times(by_time, timeout).map_err(k)?;
        let mut assign = TopicPartitionList::new();
        let mut pending = 0usize;
        for e in starts.elements() {
            let high = ends.get(&e.partition()).copied().unwrap_or(0);
            // No record at or after `since`: the partition has nothing to read.
            let Offset::Offset(start) = e.offset() else { continue };
            if start < high {
                assign.add_partition_offset(&topic, e.partition(), Offset::Offset(start)).map_err(k)?;
                pending += (high - start) as usize;
            }
        }
        if pending == 0 {
            return Ok(BTreeMap::new());
        }
        consumer.assign(&assign).map_err(k)?;
        let mut payloads: Vec<Vec<u8>> = Vec::new();
        let mut left: HashMap<i32, i64> = HashMap::new();
        for e in assign.elements() {
            if let Offset::Offset(start) = e.offset() {
                left.insert(e.partition(), ends.get(&e.partition()).copied().unwrap_or(0) - start);
            }
        }
        let deadline = std::time::Instant::now() + timeout;
        while left.values().any(|n| *n > 0) && payloads.len() < MAX_DEAD_LETTERS {
            if std::time::Instant::now() > deadline {
                return Err(ApiError::Kafka(format!("dead letters on {topic}: not read to the end in {timeout:?}")));
            }
            match consumer.poll(Duration::from_millis(200)) {
                None => {}
                Some(Err(e)) => return Err(k(e)),
                Some(Ok(m)) => {
                    let high = ends.get(&m.partition()).copied().unwrap_or(0);
                    if m.offset() < high {
                        payloads.push(m.payload().unwrap_or_default().to_vec());
                        left.insert(m.partition(), high - 1 - m.offset());
                    }
                }
            }
        }
        Ok(feed_status::count_dead_letters(payloads.iter().map(Vec::as_slice)))
    })
    .await
    .map_err(|e| ApiError::Kafka(format!("dead letters task: {e}")))?
}

/// `/` and `/dashboard` lead to the dashboard.
pub async fn to_dashboard() -> Redirect {
    Redirect::to("/dashboard/")
}

/// `GET /dashboard/`
pub async fn dashboard_index(State(app): App, uri: Uri) -> Response {
    serve(&app, "", &uri).await
}

/// `GET /dashboard/{*path}`
pub async fn dashboard_file(State(app): App, Path(path): Path<String>, uri: Uri) -> Response {
    serve(&app, &path, &uri).await
}

async fn serve(app: &AppState, rel: &str, uri: &Uri) -> Response {
    let r = async {
        let file = dashboard::file_for(&app.dashboard_dir, rel)
            .ok_or_else(|| ApiError::NotFound(format!("no dashboard file {rel:?}")))?;
        match tokio::fs::read(&file).await {
            Ok(bytes) => {
                let mut resp = (StatusCode::OK, bytes).into_response();
                resp.headers_mut()
                    .insert(header::CONTENT_TYPE, HeaderValue::from_static(dashboard::content_type(&file)));
                Ok(resp)
            }
            Err(_) if rel.is_empty() || !app.dashboard_dir.join("index.html").is_file() => {
                Err(ApiError::NotFound(format!(
                    "the dashboard is not built: {} has no index.html; run scripts/dashboard.sh or set api.dashboard_dir",
                    app.dashboard_dir.display()
                )))
            }
            Err(_) => Err(ApiError::NotFound(format!("no dashboard file {rel:?}"))),
        }
    };
    answer(uri, r.await)
}
