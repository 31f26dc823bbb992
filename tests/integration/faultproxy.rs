//! `FaultProxy`, a **test double**: a reverse proxy in front of the real Elasticsearch that injects
//! faults the real engine cannot produce on demand. Everything it does not fault is forwarded to
//! the real engine unchanged, and every document that ends up stored was stored by the real engine.
//!
//! Faults apply to `POST /_bulk` only (templates, node info and searches pass through), from a
//! script of [`BulkFault`]s consumed one per bulk request, plus standing [`ItemFault`]s for chosen
//! document ids:
//!
//! - [`BulkFault::Reject`]: the whole request is answered with a status (429, 503), with or
//!   without `Retry-After`, and not forwarded: a storm is N of them in a row.
//! - [`BulkFault::Items`]: every n-th item of the request is taken out before the rest is
//!   forwarded, and the real answer gets a failed item spliced in at its place, so the response
//!   reads as a partial failure and the failed items are really not stored.
//! - [`FaultProxy::fail_ids`]: items with the given `_id` in an index whose name contains a given
//!   part are answered with a fault every time (for mapping errors: `400 mapper_parsing_exception`).
//!
//! [`FaultProxy::counts`] says what it did, so a test can hold the sink's metrics against it.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode};
use axum::response::Response;
use serde_json::{Value, json};

/// A failure of one bulk item.
#[derive(Debug, Clone)]
pub struct ItemFault {
    /// The item's status.
    pub status: u16,
    /// The engine's error type.
    pub error_type: String,
    /// The engine's error reason.
    pub reason: String,
}

impl ItemFault {
    /// What a full write queue answers.
    pub fn too_many_requests() -> ItemFault {
        ItemFault {
            status: 429,
            error_type: "es_rejected_execution_exception".into(),
            reason: "rejected execution (queue capacity 200) [injected by FaultProxy]".into(),
        }
    }

    /// What a shard that is not available answers.
    pub fn unavailable() -> ItemFault {
        ItemFault {
            status: 503,
            error_type: "unavailable_shards_exception".into(),
            reason: "primary shard is not active [injected by FaultProxy]".into(),
        }
    }

    /// A document that does not fit the mapping.
    pub fn mapping(reason: &str) -> ItemFault {
        ItemFault { status: 400, error_type: "mapper_parsing_exception".into(), reason: reason.into() }
    }
}

/// One scripted fault, applied to one bulk request.
#[derive(Debug, Clone)]
pub enum BulkFault {
    /// Answer the whole request with `status` (and `Retry-After: <seconds>` when given) without
    /// forwarding it.
    Reject {
        /// 429, 503, ...
        status: u16,
        /// Seconds for the `Retry-After` header.
        retry_after: Option<u32>,
    },
    /// Fail items 0, n, 2n, ... of the request with `fault`; forward the others.
    Items {
        /// n (1 fails every item).
        every: usize,
        /// The failure.
        fault: ItemFault,
    },
}

/// What the proxy did so far.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counts {
    /// Bulk requests received.
    pub bulk_requests: u64,
    /// Whole bulk requests answered with an injected status, by status.
    pub rejected: BTreeMap<u16, u64>,
    /// Items answered with an injected failure, by status.
    pub failed_items: BTreeMap<u16, u64>,
    /// `(index, _id)` of each item answered with an injected failure, in order.
    pub failed: Vec<(String, String)>,
    /// Items forwarded to the real engine.
    pub forwarded_items: u64,
}

struct Script {
    faults: VecDeque<BulkFault>,
    /// (`_id`, part of the index name) -> fault.
    by_id: HashMap<String, (String, ItemFault)>,
    counts: Counts,
}

struct Inner {
    target: String,
    http: reqwest::Client,
    script: Mutex<Script>,
}

/// The proxy (see the module documentation). Stops when dropped.
pub struct FaultProxy {
    url: String,
    inner: Arc<Inner>,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl FaultProxy {
    /// Listens on a free local port and forwards to `engine_url`.
    pub async fn start(engine_url: &str) -> FaultProxy {
        let inner = Arc::new(Inner {
            target: engine_url.trim_end_matches('/').to_owned(),
            http: reqwest::Client::new(),
            script: Mutex::new(Script { faults: VecDeque::new(), by_id: HashMap::new(), counts: Counts::default() }),
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let app = Router::new().fallback(handle).with_state(Arc::clone(&inner));
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        FaultProxy { url, inner, server }
    }

    /// The URL to give the sink instead of the engine's.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Appends faults for the next bulk requests, one each.
    pub fn script(&self, faults: impl IntoIterator<Item = BulkFault>) {
        self.inner.script.lock().unwrap().faults.extend(faults);
    }

    /// Scripted faults not applied yet.
    pub fn remaining(&self) -> usize {
        self.inner.script.lock().unwrap().faults.len()
    }

    /// Fails every item with one of `ids` as `_id` in an index whose name contains `index_part`.
    pub fn fail_ids(&self, ids: impl IntoIterator<Item = String>, index_part: &str, fault: &ItemFault) {
        let mut s = self.inner.script.lock().unwrap();
        for id in ids {
            s.by_id.insert(id, (index_part.to_owned(), fault.clone()));
        }
    }

    /// What the proxy did so far.
    pub fn counts(&self) -> Counts {
        self.inner.script.lock().unwrap().counts.clone()
    }
}

/// One bulk item: its action line, its source line (none for `delete`), and what it names.
struct BulkItem<'a> {
    lines: Vec<&'a [u8]>,
    action: String,
    index: String,
    id: String,
}

fn parse_bulk(body: &[u8]) -> Vec<BulkItem<'_>> {
    let mut lines = body.split(|&b| b == b'\n').filter(|l| !l.is_empty());
    let mut out = Vec::new();
    while let Some(action_line) = lines.next() {
        let v: Value = serde_json::from_slice(action_line).expect("a bulk action line");
        let (action, meta) = v.as_object().and_then(|o| o.iter().next()).expect("one action");
        let mut item_lines = vec![action_line];
        if action != "delete" {
            item_lines.push(lines.next().expect("a source line after the action"));
        }
        out.push(BulkItem {
            lines: item_lines,
            action: action.clone(),
            index: meta["_index"].as_str().unwrap_or_default().to_owned(),
            id: meta["_id"].as_str().unwrap_or_default().to_owned(),
        });
    }
    out
}

fn failed_item(item: &BulkItem<'_>, f: &ItemFault) -> Value {
    json!({item.action.as_str(): {
        "_index": item.index, "_id": item.id, "status": f.status,
        "error": {"type": f.error_type, "reason": f.reason}
    }})
}

async fn handle(State(p): State<Arc<Inner>>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let body = axum::body::to_bytes(body, usize::MAX).await.unwrap();
    let is_bulk = parts.method == axum::http::Method::POST && parts.uri.path().ends_with("/_bulk");
    if !is_bulk {
        return forward(&p, &parts, body).await;
    }
    let items = parse_bulk(&body);
    // Decide every item's fate under the lock, then forward without it.
    let mut faults: Vec<Option<ItemFault>> = vec![None; items.len()];
    {
        let mut s = p.script.lock().unwrap();
        s.counts.bulk_requests += 1;
        match s.faults.pop_front() {
            Some(BulkFault::Reject { status, retry_after }) => {
                *s.counts.rejected.entry(status).or_default() += 1;
                let mut r = Response::new(Body::from(
                    json!({"error": {"type": "es_rejected_execution_exception",
                                     "reason": "rejected by FaultProxy"}, "status": status})
                    .to_string(),
                ));
                *r.status_mut() = StatusCode::from_u16(status).unwrap();
                r.headers_mut().insert("content-type", HeaderValue::from_static("application/json"));
                if let Some(secs) = retry_after {
                    r.headers_mut().insert("retry-after", HeaderValue::from(secs));
                }
                return r;
            }
            Some(BulkFault::Items { every, fault }) => {
                for (i, slot) in faults.iter_mut().enumerate() {
                    if i % every.max(1) == 0 {
                        *slot = Some(fault.clone());
                    }
                }
            }
            None => {}
        }
        for (item, slot) in items.iter().zip(faults.iter_mut()) {
            if let Some((part, f)) = s.by_id.get(&item.id)
                && item.index.contains(part.as_str())
            {
                *slot = Some(f.clone());
            }
        }
        for (item, f) in items.iter().zip(&faults) {
            match f {
                Some(f) => {
                    *s.counts.failed_items.entry(f.status).or_default() += 1;
                    s.counts.failed.push((item.index.clone(), item.id.clone()));
                }
                None => s.counts.forwarded_items += 1,
            }
        }
    }
    if faults.iter().all(Option::is_none) {
        return forward(&p, &parts, body).await;
    }
    let mut forwarded = Vec::new();
    for (item, f) in items.iter().zip(&faults) {
        if f.is_none() {
            for l in &item.lines {
                forwarded.extend_from_slice(l);
                forwarded.push(b'\n');
            }
        }
    }
    let mut answers = VecDeque::new();
    let mut took = 0;
    if !forwarded.is_empty() {
        let real = forward(&p, &parts, Bytes::from(forwarded)).await;
        if real.status() != StatusCode::OK {
            return real; // the engine's own failure of the whole request: pass it on as it is
        }
        let real: Value =
            serde_json::from_slice(&axum::body::to_bytes(real.into_body(), usize::MAX).await.unwrap()).unwrap();
        took = real["took"].as_u64().unwrap_or(0);
        answers.extend(real["items"].as_array().cloned().unwrap_or_default());
    }
    let merged: Vec<Value> = items
        .iter()
        .zip(&faults)
        .map(|(item, f)| match f {
            Some(f) => failed_item(item, f),
            None => answers.pop_front().expect("the engine answered every forwarded item"),
        })
        .collect();
    let mut r = Response::new(Body::from(json!({"took": took, "errors": true, "items": merged}).to_string()));
    r.headers_mut().insert("content-type", HeaderValue::from_static("application/json"));
    r
}

async fn forward(p: &Inner, parts: &axum::http::request::Parts, body: Bytes) -> Response {
    let path = parts.uri.path_and_query().map_or("/", |pq| pq.as_str());
    let method = reqwest::Method::from_bytes(parts.method.as_str().as_bytes()).unwrap();
    let mut req = p.http.request(method, format!("{}{path}", p.target)).body(body);
    for (name, value) in &parts.headers {
        if !matches!(name.as_str(), "host" | "content-length" | "connection" | "transfer-encoding") {
            req = req.header(name.as_str(), value.as_bytes());
        }
    }
    let resp = match req.send().await {
        Ok(r) => r,
        Err(e) => {
            let mut r = Response::new(Body::from(format!("FaultProxy: engine unreachable: {e}")));
            *r.status_mut() = StatusCode::BAD_GATEWAY;
            return r;
        }
    };
    let mut out = Response::builder().status(resp.status().as_u16());
    for (name, value) in resp.headers() {
        if !matches!(name.as_str(), "content-length" | "connection" | "transfer-encoding") {
            out = out.header(name.as_str(), value.as_bytes());
        }
    }
    out.body(Body::from(resp.bytes().await.unwrap_or_default())).unwrap()
}
