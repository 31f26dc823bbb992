//! Shared setup of the benchmarks that need real services (`benches/sink_vs_bulk.rs`,
//! `benches/latest_latency.rs`): the service addresses, the real sample data as observations, and
//! the engine calls both benches make outside their timed parts (templates, clean-up).
//!
//! Both benches compare against a reference measured in the same run on the same services, so the
//! ratios they report hold on a loaded machine where the absolute figures do not.

use std::collections::HashSet;
use std::time::Duration;

use geostream_codecs::{CodecOptions, Context, Outcome, decode_all};
use geostream_model::time::OffsetDateTime;
use geostream_model::{FeedId, Format, Mapping, Naming, Observation, TenantId, TopicKind};
use geostream_sink::client::SearchClient;
use geostream_sink::document::{append_bulk, items};
use geostream_sink::templates::{IndexSettings, templates};

/// The address of a service from the environment; panics with instructions when it is missing
/// (a benchmark without its service measures nothing, so it must not pass quietly).
pub fn service(var: &str) -> String {
    match std::env::var(var) {
        Ok(v) if !v.trim().is_empty() => v,
        _ => panic!(
            "{var} is not set: this benchmark needs Kafka and Elasticsearch. Run it through ./scripts/bench.sh \
             (which starts them), or `./scripts/testenv.sh up kafka elasticsearch && eval \"$(./scripts/testenv.sh env)\"`."
        ),
    }
}

/// A tenant name unique to this run, so iterations never share an index or a topic.
pub fn unique_tenant(prefix: &str) -> TenantId {
    let nanos =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or_default();
    let name = format!("{prefix}-{}-{:x}", std::process::id(), nanos & 0xff_ffff);
    name.parse().unwrap_or_else(|e| panic!("tenant {name}: {e}"))
}

/// The repository's root, found at run time like the tests do: the bench binary may come from
/// another checkout's build.
pub fn repo_root() -> std::path::PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR")
        .map_or_else(|| std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")), std::path::PathBuf::from)
        .join("..")
}

/// The value at quantile `p` (0 to 1, nearest rank) of sorted durations, in milliseconds; NaN
/// when there are none.
pub fn percentile_ms(sorted: &[Duration], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted.get(i).map_or(f64::NAN, |d| d.as_secs_f64() * 1000.0)
}

fn sample(file: &str) -> Vec<u8> {
    let path = repo_root().join("services/codecs/tests/data").join(file);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn decode(format: Format, mapping: serde_json::Value, feed: &str, file: &str) -> Vec<Observation> {
    let mapping: Mapping = serde_json::from_value(mapping).unwrap_or_else(|e| panic!("{file}: mapping: {e}"));
    let mut codec = geostream_codecs::build(format, &mapping, &CodecOptions::default())
        .unwrap_or_else(|e| panic!("{file}: codec: {e}"));
    let feed = FeedId::new(feed).unwrap_or_else(|e| panic!("{feed}: {e}"));
    let ctx = Context::new(feed, OffsetDateTime::now_utc());
    decode_all(codec.as_mut(), &sample(file), &ctx)
        .into_iter()
        .filter_map(|o| match o {
            Outcome::Observation(o) if o.track.is_some() => Some(*o),
            _ => None,
        })
        .collect()
}

/// Every distinct tracked observation in the real samples: the AMSA satellite AIS capture (ships)
/// and the OpenSky ADS-B extract (aircraft), 24,351 in all. Deterministic order.
pub fn observations() -> Vec<Observation> {
    let mut all =
        decode(Format::Ais, serde_json::json!({}), "amsa-sat", "amsa_risky_exactearth_sat_ais_epochms_1.nmea");
    all.extend(decode(
        Format::Csv,
        serde_json::json!({
            "track": "icao24", "time": "timestamp", "time_format": "unix_ms", "lon": "longitude", "lat": "latitude",
            "attributes": {"callsign": "callsign", "altitude_m": "altitude", "speed_mps": "groundspeed",
                           "track_deg": "track", "vrate_mps": "vertical_rate", "onground": "onground", "squawk": "squawk"},
            "units": {"altitude_m": "ft", "speed_mps": "knots", "track_deg": "deg", "vrate_mps": "ft/min"}
        }),
        "opensky",
        "opensky_traffic_quickstart_15min.csv",
    ));
    let mut seen = HashSet::new();
    all.retain(|o| seen.insert(o.id));
    all
}

/// The engine calls the benches make outside their timed parts.
#[derive(Debug, Clone)]
pub struct Engine {
    /// Base URL.
    pub url: String,
    /// A plain HTTP client (the reference loaders use it too).
    pub http: reqwest::Client,
}

/// Index settings of every bench index: no replicas on the one-node test engine.
pub const INDEX: IndexSettings = IndexSettings { replicas: Some(0) };

impl Engine {
    /// A client for `url`.
    pub fn new(url: &str) -> Engine {
        let http = reqwest::Client::builder().timeout(Duration::from_secs(120)).build().expect("an HTTP client");
        Engine { url: url.trim_end_matches('/').to_owned(), http }
    }

    /// Installs the sink's templates for `tenant`, as the sink does at start.
    pub async fn install_templates(&self, tenant: &TenantId) {
        let client = SearchClient::new(&self.url, None, None, Duration::from_secs(60)).expect("a search client");
        let engine = client.detect().await.expect("the engine answers GET /_nodes/_local");
        for t in templates(&Naming::default(), tenant, &engine, &INDEX) {
            client.put_template(&t).await.expect("template installed");
        }
    }

    /// Makes everything written to `index` visible to search.
    pub async fn refresh(&self, index: &str) {
        let r = self.http.post(format!("{}/{index}/_refresh", self.url)).send().await.expect("refresh sent");
        assert!(r.status().is_success(), "refresh {index}: {}", r.status());
    }

    /// Observations (their Kafka values) as the sink's `_bulk` bodies for `tenant`, `per_body`
    /// records each: the same items, ids, operations and indices the sink writes.
    pub fn bulk_bodies(tenant: &TenantId, values: &[Vec<u8>], per_body: usize) -> Vec<Vec<u8>> {
        values
            .chunks(per_body)
            .map(|chunk| {
                let mut body = Vec::new();
                for (i, value) in chunk.iter().enumerate() {
                    for item in items(&Naming::default(), tenant, TopicKind::Observations, i, Some(value))
                        .expect("a valid observation")
                    {
                        append_bulk(&mut body, &item);
                    }
                }
                body
            })
            .collect()
    }

    /// One `POST /_bulk` of the raw loader; panics on any refused item but an older `latest`
    /// position (409), which the sink also accepts.
    pub async fn bulk(&self, body: Vec<u8>) {
        let resp = self
            .http
            .post(format!("{}/_bulk", self.url))
            .header("content-type", "application/x-ndjson")
            .body(body)
            .send()
            .await
            .expect("bulk sent");
        let status = resp.status();
        let answer: serde_json::Value = resp.json().await.expect("bulk answer is JSON");
        assert!(status.is_success(), "bulk: {status}");
        if answer["errors"] == serde_json::Value::Bool(true) {
            for item in answer["items"].as_array().into_iter().flatten() {
                let r = item.as_object().and_then(|o| o.values().next()).expect("an item");
                let ok = r["status"].as_u64().is_some_and(|s| s < 300)
                    || (r["status"] == 409 && r["_index"].as_str().is_some_and(|i| i.ends_with("-latest")));
                assert!(ok, "bulk item refused: {item}");
            }
        }
    }

    /// Documents in `index` (a name or pattern) after making everything written visible.
    pub async fn count(&self, index: &str) -> u64 {
        self.refresh(index).await;
        let r: serde_json::Value = self
            .http
            .get(format!("{}/{index}/_count", self.url))
            .send()
            .await
            .expect("count sent")
            .json()
            .await
            .expect("count answer");
        r["count"].as_u64().unwrap_or_else(|| panic!("{index}/_count: {r}"))
    }

    /// Removes a tenant's indices and templates (names are unique per run, so this only saves disk).
    pub async fn cleanup(&self, tenant: &TenantId) {
        let _ = self.http.delete(format!("{}/geostream-{tenant}-*", self.url)).send().await;
        for kind in ["observations", "events", "aggregates", "latest"] {
            let _ = self.http.delete(format!("{}/_index_template/geostream-{tenant}-{kind}", self.url)).send().await;
        }
    }
}

/// A runtime for one bench: two worker threads, the machine's core count.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("a tokio runtime")
}

/// The value of the first metric line that starts with `prefix` and contains `label` (the
/// Prometheus text format puts labels in no fixed order).
pub fn metric(text: &str, prefix: &str, label: &str) -> u64 {
    text.lines()
        .find(|l| l.starts_with(prefix) && l.contains(label))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse::<f64>().ok())
        .map_or(0, |v| v as u64)
}
