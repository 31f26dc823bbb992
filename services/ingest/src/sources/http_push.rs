//! The HTTP push receiver: `POST /v1/push/{tenant}/{feed}` with the records as the body.
//!
//! One server per ingest process serves every `http_push` feed of its tenant. A feed's "source task"
//! only registers the feed with the server for as long as it runs, so registry changes (new token,
//! pause, delete) apply like for any other source. The answer is `202 Accepted` only after the
//! records are fsynced in the spool; the body says how many were accepted, rejected (and why) and
//! skipped, so a sender sees bad records without reading the dead-letter topic.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use geostream_model::Source;
use serde_json::json;
use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;

use crate::feed::{FeedHandle, SourceError, now};
use crate::pipeline::{Batch, FeedPipeline};

struct PushFeed {
    generation: u64,
    handle: FeedHandle,
    token: Option<String>,
    max_body: Option<usize>,
    pipeline: Arc<Mutex<FeedPipeline>>,
}

/// The push feeds currently registered with the receiver.
#[derive(Clone, Default)]
pub struct PushFeeds {
    feeds: Arc<RwLock<HashMap<String, Arc<PushFeed>>>>,
    generation: Arc<AtomicU64>,
}

impl std::fmt::Debug for PushFeeds {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PushFeeds").finish_non_exhaustive()
    }
}

impl PushFeeds {
    fn get(&self, feed: &str) -> Option<Arc<PushFeed>> {
        self.feeds.read().unwrap_or_else(|p| p.into_inner()).get(feed).cloned()
    }
}

/// Settings of the receiver.
#[derive(Debug, Clone)]
pub struct PushConfig {
    /// The tenant served; requests for another tenant get 404.
    pub tenant: String,
    /// Body limit for feeds that set none.
    pub default_max_body: usize,
}

/// Registers the feed with the receiver until `cancel`.
pub async fn serve_feed(handle: FeedHandle, push: PushFeeds, cancel: CancellationToken) -> Result<(), SourceError> {
    let Source::HttpPush { token_ref, max_body_bytes } = &handle.spec.source else {
        return Err(handle.config_error("not an http_push source"));
    };
    let token = match token_ref {
        Some(name) => Some(handle.secret(name)?),
        None => None,
    };
    let pipeline = Arc::new(Mutex::new(handle.pipeline()?));
    let generation = push.generation.fetch_add(1, Ordering::Relaxed);
    let id = handle.id().to_owned();
    let max_body = max_body_bytes.map(|b| usize::try_from(b).unwrap_or(usize::MAX));
    handle.metrics.set_up(&id, true);
    let metrics = handle.metrics.clone();
    let feed = Arc::new(PushFeed { generation, handle, token, max_body, pipeline });
    push.feeds.write().unwrap_or_else(|p| p.into_inner()).insert(id.clone(), feed);
    cancel.cancelled().await;
    let mut feeds = push.feeds.write().unwrap_or_else(|p| p.into_inner());
    if feeds.get(&id).is_some_and(|f| f.generation == generation) {
        feeds.remove(&id);
    }
    metrics.set_up(&id, false);
    Ok(())
}

#[derive(Clone)]
struct AppState {
    feeds: PushFeeds,
    config: Arc<PushConfig>,
}

/// The receiver's routes.
pub fn router(feeds: PushFeeds, config: PushConfig) -> Router {
    Router::new()
        .route("/v1/push/{tenant}/{feed}", post(receive))
        .with_state(AppState { feeds, config: Arc::new(config) })
}

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, axum::Json(json!({ "error": message.into() }))).into_response()
}

/// Compares without an early exit, so response times do not reveal how much of a token matched.
fn same_secret(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn receive(
    State(app): State<AppState>,
    Path((tenant, feed)): Path<(String, String)>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    if tenant != app.config.tenant {
        return error(
            StatusCode::NOT_FOUND,
            format!("tenant {tenant:?} is not served here (this ingest serves {:?})", app.config.tenant),
        );
    }
    let Some(push) = app.feeds.get(&feed) else {
        return error(
            StatusCode::NOT_FOUND,
            format!("feed {feed:?} is not a registered, enabled http_push feed of tenant {tenant:?}"),
        );
    };
    if let Some(expected) = &push.token {
        let presented = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
            .map(str::trim);
        let ok = presented.is_some_and(|p| same_secret(p.as_bytes(), expected.as_bytes()));
        if !ok {
            let mut resp = error(
                StatusCode::UNAUTHORIZED,
                if presented.is_some() {
                    "the bearer token does not match this feed's token"
                } else {
                    "this feed needs `Authorization: Bearer <token>`"
                },
            );
            resp.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            return resp;
        }
    }
    let limit = push.max_body.unwrap_or(app.config.default_max_body);
    let too_large =
        || error(StatusCode::PAYLOAD_TOO_LARGE, format!("the body is larger than this feed's limit of {limit} bytes"));
    let declared =
        headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return too_large();
    }
    let bytes = match axum::body::to_bytes(body, limit).await {
        Ok(b) => b,
        Err(e) => {
            let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(&e);
            while let Some(c) = cause {
                if c.is::<http_body_util::LengthLimitError>() {
                    return too_large();
                }
                cause = c.source();
            }
            return error(StatusCode::BAD_REQUEST, format!("the body could not be read: {e}"));
        }
    };
    let mut batch = Batch::default();
    {
        let mut pipeline = push.pipeline.lock().await;
        let ctx = pipeline.context(now(), "http push");
        pipeline.decode_payload(&bytes, &ctx, &mut batch);
        // A request is self-contained: a fix assembled over NMEA sentences or a multi-part AIS
        // message ends with it, and the sender learns about incomplete ones in this answer.
        pipeline.finish(&ctx, &mut batch);
    }
    match push.handle.commit(&batch).await {
        Ok(()) => {
            let rejected: BTreeMap<&str, u64> = batch.summary.rejected.clone();
            let body = json!({
                "accepted": batch.summary.accepted,
                "rejected": rejected,
                "skipped": batch.summary.skipped.values().sum::<u64>(),
            });
            (StatusCode::ACCEPTED, axum::Json(body)).into_response()
        }
        Err(e) => {
            tracing::error!(feed = %push.handle.id(), error = %e, "push batch not durable; answered 503");
            let mut resp = error(StatusCode::SERVICE_UNAVAILABLE, format!("records not stored, retry later: {e}"));
            resp.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
            resp
        }
    }
}
