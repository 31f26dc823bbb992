//! `latest_latency`: latency of the latest-in-bbox query (`GET /v1/<tenant>/latest?bbox=..`) under
//! concurrent load, against the same box queries sent straight to Elasticsearch's `_search` with
//! the same concurrency, in the same run.
//!
//! Data: 10,000 `latest` documents (BENCH_TRACKS), one per track, at the positions of the real
//! sample observations (each observation becomes its own track), written through the sink's
//! templates and `document::items`. The API runs in-process (`ApiStage`, its public entry point)
//! in front of the same engine.
//!
//! One round: C clients (BENCH_CLIENTS, default 16) each send Q queries (BENCH_QUERIES, default 25)
//! one after another, cycling through 64 boxes of four sizes (0.25 to 15 degrees wide) centred on
//! sample positions, `limit=100`. The reference sends, per query, the body the API sends for it
//! (a `geo_bounding_box` filter on `location`, sorted by track, `size` = limit + 1, no total
//! count), written out here independently. Both sides read the whole answer body.
//!
//! Criterion times rounds (queries/s: `latest_latency/api` and `latest_latency/search`); every
//! single query's latency is kept, and the p50 and p99 of each side go to the JSON lines file named
//! by BENCH_REPORT (scripts/bench.sh merges them into its output) and to stderr.
//!
//! Needs ELASTICSEARCH_URL (`./scripts/testenv.sh env`).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use criterion::{Criterion, SamplingMode, Throughput, criterion_group, criterion_main};
use geostream_api::stage::{ApiSettings, ApiStage};
use geostream_benches::{Engine, observations, percentile_ms, runtime, service, unique_tenant};
use geostream_model::{IndexKind, Naming, TenantId, TopicKind, TrackId};
use geostream_sink::document::{append_bulk, items};
use geostream_telemetry::Telemetry;
use serde_json::{Value, json};

const TOKEN: &str = "bench-read-token";
const LIMIT: usize = 100;

fn env_usize(var: &str, default: usize) -> usize {
    std::env::var(var).ok().map_or(default, |v| v.parse().unwrap_or_else(|e| panic!("{var}={v}: {e}")))
}

/// A box: west, south, east, north.
type Bbox = [f64; 4];

struct Setup {
    engine: Engine,
    tenant: TenantId,
    index: String,
    api_base: String,
    boxes: Vec<Bbox>,
    clients: usize,
    queries: usize,
    tracks: usize,
}

/// Writes `n` latest documents, one per track, at the sample positions.
async fn index_latest(engine: &Engine, tenant: &TenantId, n: usize) -> Vec<(f64, f64)> {
    engine.install_templates(tenant).await;
    let mut obs = observations();
    assert!(obs.len() >= n, "the samples have {} observations, fewer than {n} tracks", obs.len());
    obs.truncate(n);
    let mut positions = Vec::with_capacity(n);
    for chunk in obs.chunks_mut(5000) {
        let mut body = Vec::new();
        for (i, o) in chunk.iter_mut().enumerate() {
            let base = o.track.as_ref().map_or("t", TrackId::as_str);
            o.track = Some(TrackId::new(format!("{base}-{}", o.id)).expect("a track id"));
            o.refresh_id();
            let v = serde_json::to_value(&o.geometry).expect("a geometry");
            positions.push((v["coordinates"][0].as_f64().unwrap_or(0.0), v["coordinates"][1].as_f64().unwrap_or(0.0)));
            let payload = serde_json::to_vec(o).expect("an observation");
            for item in items(&Naming::default(), tenant, TopicKind::Observations, i, Some(&payload))
                .expect("a valid observation")
                .into_iter()
                .filter(|it| it.kind == IndexKind::Latest)
            {
                append_bulk(&mut body, &item);
            }
        }
        let r: Value = engine
            .http
            .post(format!("{}/_bulk", engine.url))
            .header("content-type", "application/x-ndjson")
            .body(body)
            .send()
            .await
            .expect("bulk sent")
            .json()
            .await
            .expect("bulk answer");
        assert_eq!(
            r["errors"],
            json!(false),
            "bulk refused items: {}",
            r.to_string().chars().take(500).collect::<String>()
        );
    }
    positions
}

/// 64 boxes of four sizes around sample positions spread over the set (deterministic).
fn boxes(positions: &[(f64, f64)]) -> Vec<Bbox> {
    let widths = [0.25, 1.0, 4.0, 15.0];
    (0..64)
        .map(|i| {
            let (lon, lat) = positions[(i * 7919) % positions.len()];
            let w = widths[i % widths.len()];
            [
                (lon - w / 2.0).max(-180.0),
                (lat - w / 4.0).max(-90.0),
                (lon + w / 2.0).min(180.0),
                (lat + w / 4.0).min(90.0),
            ]
        })
        .collect()
}

/// What the API sends the engine for a latest-in-bbox page (see services/api/src/query.rs).
fn search_body(b: &Bbox) -> Value {
    json!({
        "size": LIMIT + 1,
        "query": {"bool": {"filter": [{"geo_bounding_box": {"location": {
            "top_left": {"lat": b[3], "lon": b[0]},
            "bottom_right": {"lat": b[1], "lon": b[2]}
        }}}], "must_not": []}},
        "sort": [{"properties.track": {"order": "asc", "unmapped_type": "keyword"}}],
        "track_total_hits": false,
    })
}

#[derive(Clone, Copy)]
enum Side {
    Api,
    Search,
}

impl Setup {
    fn request(&self, http: &reqwest::Client, side: Side, b: &Bbox) -> reqwest::RequestBuilder {
        match side {
            Side::Api => http
                .get(format!(
                    "{}/v1/{}/latest?bbox={},{},{},{}&limit={LIMIT}",
                    self.api_base, self.tenant, b[0], b[1], b[2], b[3]
                ))
                .bearer_auth(TOKEN),
            Side::Search => http
                .post(format!(
                    "{}/{}/_search?ignore_unavailable=true&allow_no_indices=true",
                    self.engine.url, self.index
                ))
                .json(&search_body(b)),
        }
    }

    /// Tracks answered for box `b` by one side, to check both do the same work.
    async fn tracks_in(&self, http: &reqwest::Client, side: Side, b: &Bbox) -> Vec<String> {
        let v: Value = self.request(http, side, b).send().await.expect("query sent").json().await.expect("JSON");
        let docs: Vec<&Value> = match side {
            Side::Api => v["features"].as_array().expect("features").iter().collect(),
            Side::Search => {
                v["hits"]["hits"].as_array().expect("hits").iter().map(|h| &h["_source"]).take(LIMIT).collect()
            }
        };
        docs.iter().map(|d| d["properties"]["track"].as_str().expect("a track").to_owned()).collect()
    }

    /// One round: every client sends its queries one after another; returns each query's latency.
    async fn round(self: &Arc<Self>, http: &reqwest::Client, side: Side) -> Vec<Duration> {
        let mut tasks = tokio::task::JoinSet::new();
        for client in 0..self.clients {
            let (s, http) = (Arc::clone(self), http.clone());
            tasks.spawn(async move {
                let mut lat = Vec::with_capacity(s.queries);
                for q in 0..s.queries {
                    let b = &s.boxes[(client * 13 + q) % s.boxes.len()];
                    let started = Instant::now();
                    let resp = s.request(&http, side, b).send().await.expect("query sent");
                    assert!(resp.status().is_success(), "query answered {}", resp.status());
                    resp.bytes().await.expect("answer read");
                    lat.push(started.elapsed());
                }
                lat
            });
        }
        let mut all = Vec::with_capacity(self.clients * self.queries);
        while let Some(r) = tasks.join_next().await {
            all.extend(r.expect("a client task"));
        }
        all
    }
}

/// Indexes the tracks, starts the API and checks both sides answer alike (outside any timing).
fn prepare(rt: &tokio::runtime::Runtime) -> (Arc<Setup>, ApiStage, reqwest::Client) {
    let url = service("ELASTICSEARCH_URL");
    let engine = Engine::new(&url);
    let tenant = unique_tenant("bench-api");
    let tracks = env_usize("BENCH_TRACKS", 10_000);
    let positions = rt.block_on(index_latest(&engine, &tenant, tracks));
    let index = Naming::default().index(&tenant, IndexKind::Latest);
    rt.block_on(engine.refresh(&index));
    let settings = ApiSettings {
        tenant: tenant.clone(),
        naming: Naming::default(),
        kafka: BTreeMap::new(),
        url: url.clone(),
        username: None,
        password: None,
        listen: "127.0.0.1:0".parse().expect("an address"),
        tokens: BTreeMap::from([(tenant.to_string(), vec![TOKEN.to_owned()])]),
        admin_token: None,
        request_timeout: Duration::from_secs(30),
        max_live_clients: 4,
        // The limiter runs (its cost is part of the figure) but never refuses: the bench measures
        // query latency, not the per-token budget.
        limits: geostream_api::limits::Limits { requests_per_s: 1_000_000, burst: 1_000_000, ..Default::default() },
        dashboard_dir: std::path::PathBuf::from("/nonexistent/dashboard"),
        tls: None,
    };
    let telemetry = Telemetry::new("api", tenant.as_str());
    let stage = rt.block_on(ApiStage::start(settings, &telemetry)).expect("the API starts");
    let setup = Arc::new(Setup {
        api_base: format!("http://{}", stage.addr()),
        boxes: boxes(&positions),
        engine,
        tenant,
        index,
        clients: env_usize("BENCH_CLIENTS", 16),
        queries: env_usize("BENCH_QUERIES", 25),
        tracks,
    });
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(setup.clients)
        .timeout(Duration::from_secs(60))
        .build()
        .expect("an HTTP client");

    // Same answers from both sides, and the boxes are neither all empty nor all full.
    let mut answered = 0;
    for b in &setup.boxes {
        let api = rt.block_on(setup.tracks_in(&http, Side::Api, b));
        let direct = rt.block_on(setup.tracks_in(&http, Side::Search, b));
        assert_eq!(api, direct, "the API and _search disagree on box {b:?}");
        answered += usize::from(!api.is_empty());
    }
    assert!(answered > setup.boxes.len() / 2, "only {answered} of {} boxes hold tracks", setup.boxes.len());
    eprintln!(
        "latest_latency: {} tracks, {} clients x {} queries per round, {answered} of {} boxes non-empty",
        setup.tracks,
        setup.clients,
        setup.queries,
        setup.boxes.len()
    );
    (setup, stage, http)
}

fn latest_latency(c: &mut Criterion) {
    let rt = runtime();
    // Set up on first use, so a criterion filter that leaves both sides out costs nothing.
    let prepared = std::cell::OnceCell::new();
    let latencies: [Arc<Mutex<Vec<Duration>>>; 2] = Default::default();
    let mut g = c.benchmark_group("latest_latency");
    g.sampling_mode(SamplingMode::Flat).sample_size(10);
    let (clients, queries) = (env_usize("BENCH_CLIENTS", 16), env_usize("BENCH_QUERIES", 25));
    g.throughput(Throughput::Elements((clients * queries) as u64));
    for (name, side, store) in [("api", Side::Api, &latencies[0]), ("search", Side::Search, &latencies[1])] {
        g.bench_function(name, |b| {
            let (setup, _, http) = prepared.get_or_init(|| prepare(&rt));
            b.iter_custom(|iters| {
                rt.block_on(async {
                    let started = Instant::now();
                    for _ in 0..iters {
                        let lat = setup.round(http, side).await;
                        store.lock().expect("latencies").extend(lat);
                    }
                    started.elapsed()
                })
            })
        });
    }
    g.finish();
    let Some((setup, stage, _)) = prepared.into_inner() else { return };

    let [api, search] = latencies.map(|l| {
        let mut v = l.lock().expect("latencies").clone();
        v.sort_unstable();
        v
    });
    let mut lines = Vec::new();
    if !api.is_empty() && !search.is_empty() {
        for (p, label) in [(0.5, "p50"), (0.99, "p99")] {
            let (a, s) = (percentile_ms(&api, p), percentile_ms(&search, p));
            let line = json!({
                "name": format!("latest_latency/api_{label}"),
                "value": (a * 100.0).round() / 100.0,
                "unit": "ms",
                "reference": format!("latest_latency/search_{label}"),
                "reference_value": (s * 100.0).round() / 100.0,
                "ratio": (a / s * 1000.0).round() / 1000.0,
                "queries": api.len(),
                "reference_queries": search.len(),
                "clients": setup.clients,
                "tracks": setup.tracks,
                "limit": LIMIT,
            });
            eprintln!("{line}");
            lines.push(line.to_string());
        }
    }
    if let Ok(path) = std::env::var("BENCH_REPORT") {
        std::fs::write(&path, lines.iter().map(|l| format!("{l}\n")).collect::<String>())
            .unwrap_or_else(|e| panic!("{path}: {e}"));
    }
    rt.block_on(async {
        stage.shutdown().await;
        setup.engine.cleanup(&setup.tenant).await;
    });
}

// The macro generates an undocumented `pub fn benches`.
#[allow(missing_docs)]
mod group {
    use super::*;
    criterion_group!(benches, latest_latency);
}
criterion_main!(group::benches);
