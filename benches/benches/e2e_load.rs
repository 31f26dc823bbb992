//! `e2e_load`: the whole pipeline under a controlled load, as operators run it: `geostream ingest`,
//! `process` and `sink` as separate processes (the release binary, each with its own data directory
//! as its volume) on the real Kafka and Elasticsearch of `scripts/testenv.sh`. A load generator in
//! this process plays many simulated sensors: every real aircraft track of the OpenSky sample,
//! copied with shifted positions until there are `BENCH_E2E_SENSORS` distinct track ids, each
//! reporting its track's real positions in order. It POSTs them as JSON to the ingest stage's push
//! endpoint (the catalog's `http-push-json` feed), stamped with the time each record is due, while
//! the processor runs the demo's analytics (geofences over the demo's 218 fences, motion, gaps,
//! bins) on the same observations.
//!
//! 1. **Reference:** a raw `_bulk` loader writes records of the same shape (the sink's own
//!    documents, one request at a time) into a tenant of its own: what the engine alone indexes.
//! 2. **Ceiling**, in two steps. First a burst: `BENCH_E2E_CEILING_RECORDS` records sent as fast as
//!    ingest answers (four senders, 1,000 records per request), over the time until every one is
//!    searchable in Elasticsearch *and* consumed by the processor, whichever is later. A burst is
//!    drained while nothing else runs, so it overstates what the pipeline keeps up with while
//!    records keep arriving (ingest and the generator then share the cores). So, second, the burst
//!    rate is held for `BENCH_E2E_SECONDS` (open loop, as below), and the ceiling is the records of
//!    that run over the time until all are searchable and processed: the rate the whole pipeline
//!    sustains under a steady load, which is what the fractions below are of.
//! 3. **Latency at 25, 50 and 75% of the ceiling:** `BENCH_E2E_SECONDS` of paced load each (open
//!    loop: a record's time is when it was due, so a generator held back by slow answers shows up as
//!    latency instead of hiding it). About 50 records a second are probes: their ids (computed by the
//!    feed's codec, as ingest does) are searched for every 100 ms with an `ids` query, and the time
//!    from due to first found is their source-to-searchable latency. Beside them, every 100 ms a
//!    document is indexed straight into an index of the same engine and searched for the same way:
//!    the engine's own floor (its refresh interval), reported as the reference.
//!
//! Each phase waits until Elasticsearch holds every accepted record and the processor has consumed
//! them, and checks the count exactly: nothing lost, nothing twice. Peak memory per stage is each
//! process's VmHWM, reset (`/proc/<pid>/clear_refs`) at the start of each phase.
//!
//! The stages run with the defaults but for `sink.index_replicas = 0` (one-node engine);
//! `BENCH_E2E_CONFIG` appends TOML to their configuration file, to compare settings in the same
//! conditions (e.g. `BENCH_E2E_CONFIG=$'[process]\nlateness_s = 5'`).
//!
//! Needs KAFKA_BOOTSTRAP, ELASTICSEARCH_URL (`./scripts/testenv.sh env`) and GEOSTREAM_BIN, the
//! release `geostream` binary; `scripts/bench.sh` builds it and sets all three. Lines go to
//! BENCH_REPORT (merged into bench.sh's output) and stderr.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use geostream_benches::{Engine, percentile_ms, repo_root, runtime, service, unique_tenant};
use geostream_codecs::{CodecOptions, Context, Outcome, decode_all};
use geostream_model::time::OffsetDateTime;
use geostream_model::{FeedSpec, Observation, TenantId};
use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use serde_json::{Value, json};
use tokio::sync::Semaphore;

const FEED: &str = "sensors";
/// Records per request in the ceiling run and in the reference loader's bodies.
const BURST_BATCH: usize = 1000;
const BURST_SENDERS: usize = 4;
/// Most requests in flight in a paced run; more wait, and the wait counts as latency.
const PACED_IN_FLIGHT: usize = 32;
const TICK: Duration = Duration::from_millis(20);
const POLL: Duration = Duration::from_millis(100);
const PROBES_PER_S: f64 = 50.0;
const FRACTIONS: [(f64, &str); 3] = [(0.25, "25pct"), (0.5, "50pct"), (0.75, "75pct")];
/// BRIEF section 6: p99 source-to-searchable at most 2 s at half the ceiling.
const TARGET_P99_MS: f64 = 2000.0;
/// The longest any wait for the pipeline may take before the bench fails instead of hanging.
const PATIENCE: Duration = Duration::from_secs(900);

fn env_usize(var: &str, default: usize) -> usize {
    std::env::var(var).ok().map_or(default, |v| v.parse().unwrap_or_else(|e| panic!("{var}={v}: {e}")))
}

fn unix_ms(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

/// One position of a real track, with what the sensor reports beside it.
struct Fix {
    lat: f64,
    lon: f64,
    alt_ft: Option<f64>,
    speed_kn: Option<f64>,
    heading: Option<f64>,
}

struct Track {
    icao: String,
    /// A JSON string literal.
    callsign: String,
    fixes: Vec<Fix>,
}

/// The aircraft of the real OpenSky sample, in file order, positions in file order.
fn tracks() -> Vec<Track> {
    let path = repo_root().join("services/codecs/tests/data/opensky_traffic_quickstart_15min.csv");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().expect("a header").split(',').collect();
    let col = |name: &str| header.iter().position(|c| *c == name).unwrap_or_else(|| panic!("no column {name}"));
    let (icao, callsign, lat, lon, alt, speed, heading) = (
        col("icao24"),
        col("callsign"),
        col("latitude"),
        col("longitude"),
        col("altitude"),
        col("groundspeed"),
        col("track"),
    );
    let mut by_icao: BTreeMap<String, usize> = BTreeMap::new();
    let mut out: Vec<Track> = Vec::new();
    for line in lines {
        let f: Vec<&str> = line.split(',').collect();
        let num = |i: usize| f.get(i).and_then(|s| s.parse::<f64>().ok());
        let (Some(la), Some(lo)) = (num(lat), num(lon)) else { continue };
        let i = *by_icao.entry(f[icao].to_owned()).or_insert_with(|| {
            out.push(Track {
                icao: f[icao].to_owned(),
                callsign: serde_json::to_string(f[callsign].trim()).expect("a string"),
                fixes: Vec::new(),
            });
            out.len() - 1
        });
        out[i].fixes.push(Fix { lat: la, lon: lo, alt_ft: num(alt), speed_kn: num(speed), heading: num(heading) });
    }
    out.retain(|t| t.fixes.len() >= 2);
    out
}

/// The simulated sensors: sensor `j` flies track `j % T`, copy `j / T`, shifted so copies do not
/// overlap; each report is its track's next real position (from the start again at the end).
struct Generator {
    tracks: Vec<Track>,
    steps: Vec<u32>,
    next: usize,
}

impl Generator {
    fn new(tracks: Vec<Track>, sensors: usize) -> Generator {
        assert!(!tracks.is_empty() && sensors > 0);
        Generator { tracks, steps: vec![0; sensors], next: 0 }
    }

    /// The next `n` sensors' reports as a JSON array, the `i`-th stamped `ms(i)`; `each(i, record)`
    /// sees each record's own JSON.
    fn array(&mut self, n: usize, ms: impl Fn(usize) -> i64, mut each: impl FnMut(usize, &str)) -> String {
        let mut body = String::from("[");
        for i in 0..n {
            if i > 0 {
                body.push(',');
            }
            let start = body.len();
            self.record(ms(i), &mut body);
            each(i, &body[start..]);
        }
        body.push(']');
        body
    }

    /// Appends the next sensor's report, stamped `ms`, as a JSON object.
    fn record(&mut self, ms: i64, out: &mut String) {
        let j = self.next;
        self.next = (self.next + 1) % self.steps.len();
        let t = &self.tracks[j % self.tracks.len()];
        let copy = j / self.tracks.len();
        let fix = &t.fixes[self.steps[j] as usize % t.fixes.len()];
        self.steps[j] = self.steps[j].wrapping_add(1);
        let lon = (fix.lon + 0.37 * copy as f64 + 180.0).rem_euclid(360.0) - 180.0;
        let lat = (fix.lat + 0.4 * ((copy % 9) as f64 - 4.0)).clamp(-89.0, 89.0);
        let _ = write!(
            out,
            r#"{{"icao24":"{}-{copy}","callsign":{},"timestamp":{ms},"longitude":{lon:.6},"latitude":{lat:.6}"#,
            t.icao, t.callsign
        );
        for (key, v) in [("geoaltitude", fix.alt_ft), ("groundspeed", fix.speed_kn), ("track", fix.heading)] {
            if let Some(v) = v {
                let _ = write!(out, r#","{key}":{v}"#);
            }
        }
        out.push('}');
    }
}

/// One stage process, SIGKILLed if dropped before `terminate` (a failed bench leaves nothing).
struct StageProc {
    name: &'static str,
    child: Option<Child>,
    telemetry: String,
    log: PathBuf,
}

impl StageProc {
    fn start(bin: &Path, config: &Path, root: &Path, name: &'static str, env: &[(&str, String)]) -> StageProc {
        let data = root.join(format!("{name}-volume"));
        std::fs::create_dir_all(&data).expect("a data directory");
        let telemetry = format!("127.0.0.1:{}", free_port());
        let log = root.join(format!("{name}.log"));
        let mut cmd = Command::new(bin);
        for (k, _) in std::env::vars() {
            if k.starts_with("GEOSTREAM_") {
                cmd.env_remove(k);
            }
        }
        cmd.arg("--config")
            .arg(config)
            .arg(name)
            .env("GEOSTREAM_DATA_DIR", &data)
            .env("GEOSTREAM_TELEMETRY__LISTEN", &telemetry)
            .env("GEOSTREAM_CATALOG", repo_root().join("feeds"))
            .env("GEOSTREAM_LOG__LEVEL", "warn")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("a log file"));
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().unwrap_or_else(|e| panic!("{}: {e}", bin.display()));
        StageProc { name, child: Some(child), telemetry, log }
    }

    fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    fn assert_running(&mut self) {
        if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().expect("wait")) {
            let log = std::fs::read_to_string(&self.log).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(30).collect();
            panic!(
                "geostream {} exited ({status}); the end of its log:\n{}",
                self.name,
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            );
        }
    }

    /// Peak resident memory since the last reset, in bytes.
    fn peak_rss(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .map_or(0, |kb| kb * 1024)
    }

    /// Starts a new peak: "5" resets VmHWM to the current resident size (proc(5), clear_refs).
    fn reset_peak_rss(&self) {
        if let Err(e) = std::fs::write(format!("/proc/{}/clear_refs", self.pid()), "5") {
            eprintln!("e2e_load: cannot reset the peak memory of {}: {e}; peaks count from its start", self.name);
        }
    }

    /// SIGTERM, then a bounded wait for a clean exit.
    fn terminate(&mut self) {
        let Some(mut c) = self.child.take() else { return };
        let _ = Command::new("kill").args(["-TERM", &c.id().to_string()]).status();
        for _ in 0..120 {
            if let Ok(Some(status)) = c.try_wait() {
                assert!(status.success(), "geostream {} exit after SIGTERM: {status}", self.name);
                return;
            }
            std::thread::sleep(Duration::from_millis(500));
        }
        let _ = c.kill();
        let _ = c.wait();
        panic!("geostream {} did not stop within 60 s of SIGTERM", self.name);
    }
}

impl Drop for StageProc {
    fn drop(&mut self) {
        if let Some(c) = self.child.as_mut() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// User plus system CPU time of a process so far, in seconds (/proc/<pid>/stat, fields 14 and
/// 15, in clock ticks of `CLK_TCK`, 100 unless the environment says otherwise).
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let Some((_, rest)) = stat.rsplit_once(')') else { return 0.0 };
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    let hz = std::env::var("CLK_TCK").ok().and_then(|v| v.parse::<f64>().ok()).unwrap_or(100.0);
    // After the command's closing parenthesis, field 3 (state) is index 0.
    (ticks(11) + ticks(12)) / hz
}

/// CPU seconds of a process and of its descendants still running (the services' pid files name
/// a launcher whose child is the JVM).
fn tree_cpu_seconds(pid: u32) -> f64 {
    let mut total = cpu_seconds(pid);
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else { return total };
    for task in tasks.flatten() {
        let children = std::fs::read_to_string(task.path().join("children")).unwrap_or_default();
        for child in children.split_whitespace().filter_map(|c| c.parse::<u32>().ok()) {
            total += tree_cpu_seconds(child);
        }
    }
    total
}

/// The processes whose CPU time a phase reports: the three stages, then the services named in
/// `BENCH_E2E_PEERS` (`name=pid,...`, set by bench.sh from scripts/testenv.sh's pid files).
fn cpu_watch(stages: &[StageProc]) -> Vec<(String, u32)> {
    let mut out: Vec<(String, u32)> = stages.iter().map(|s| (s.name.to_owned(), s.pid())).collect();
    for pair in std::env::var("BENCH_E2E_PEERS").unwrap_or_default().split(',').filter(|p| !p.is_empty()) {
        match pair.split_once('=').and_then(|(n, p)| Some((n, p.trim().parse::<u32>().ok()?))) {
            Some((name, pid)) => out.push((name.to_owned(), pid)),
            None => panic!("BENCH_E2E_PEERS: {pair:?} is not name=pid"),
        }
    }
    out
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("a free port").port()
}

/// The geostream CLI with `config`, which must succeed.
fn cli(bin: &Path, config: &Path, args: &[&str]) {
    let mut cmd = Command::new(bin);
    for (k, _) in std::env::vars() {
        if k.starts_with("GEOSTREAM_") {
            cmd.env_remove(k);
        }
    }
    let out = cmd.arg("--config").arg(config).args(args).output().expect("geostream runs");
    assert!(out.status.success(), "geostream {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// The catalog's `http-push-json` feed under the id `sensors`.
fn feed_spec() -> FeedSpec {
    let path = repo_root().join("feeds/http-push-json.yaml");
    let entry: serde_yaml::Value =
        serde_yaml::from_str(&std::fs::read_to_string(&path).expect("the catalog entry")).expect("YAML");
    let mut feed = serde_json::to_value(&entry["feed"]).expect("a feed");
    feed["id"] = json!(FEED);
    serde_json::from_value(feed).expect("a feed spec")
}

/// Whose latency a probe measures.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Pipeline,
    Engine,
}

/// Probes not found yet, and the latencies of those found, by phase; for pipeline probes also
/// when a reader of the observations topic saw them.
#[derive(Default)]
struct Probes {
    pending: HashMap<String, (usize, Kind, SystemTime)>,
    in_kafka: HashMap<String, SystemTime>,
    /// Phase, kind, due to searchable, due to readable in Kafka.
    found: Vec<(usize, Kind, Duration, Option<Duration>)>,
}

struct Bench {
    engine: Engine,
    tenant: TenantId,
    push_url: String,
    obs_index: String,
    ref_index: String,
    http: reqwest::Client,
    probes: Arc<Mutex<Probes>>,
    accepted: Arc<AtomicU64>,
    generator: Arc<Mutex<Generator>>,
    codec_spec: FeedSpec,
}

impl Bench {
    /// POSTs a JSON array of records to the push endpoint until ingest takes it (503, retry later,
    /// is retried); panics on anything but every record accepted.
    async fn push(http: &reqwest::Client, url: &str, body: String, records: usize, accepted: &AtomicU64) {
        for attempt in 0.. {
            let resp = http
                .post(url)
                .header("content-type", "application/json")
                .body(body.clone())
                .send()
                .await
                .unwrap_or_else(|e| panic!("push: {e}"));
            let status = resp.status();
            let answer: Value = resp.json().await.unwrap_or(Value::Null);
            if status == reqwest::StatusCode::SERVICE_UNAVAILABLE && attempt < 60 {
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
            assert_eq!(status, reqwest::StatusCode::ACCEPTED, "push answered {status}: {answer}");
            assert_eq!(answer["accepted"].as_u64(), Some(records as u64), "push: every record accepted: {answer}");
            accepted.fetch_add(records as u64, Ordering::Relaxed);
            return;
        }
    }

    /// What ingest makes of `json` (a record or an array of them) with the feed's codec; every
    /// record must decode.
    fn decode(&self, json: &str) -> Vec<Observation> {
        let spec = &self.codec_spec;
        let mut codec =
            geostream_codecs::build(spec.format, &spec.mapping, &CodecOptions::default()).expect("the feed's codec");
        let ctx = Context::new(spec.id.clone(), OffsetDateTime::now_utc());
        decode_all(codec.as_mut(), json.as_bytes(), &ctx)
            .into_iter()
            .map(|o| match o {
                Outcome::Observation(o) => *o,
                _ => panic!("the generator's records do not all decode: {json}"),
            })
            .collect()
    }

    /// The id ingest gives the record `json`.
    fn id_of(&self, json: &str) -> String {
        self.decode(json).first().map(|o| o.id.to_string()).expect("one observation")
    }

    /// Documents in the observation indices that search sees (no refresh forced).
    async fn searchable(&self) -> u64 {
        let url =
            format!("{}/{}/_count?ignore_unavailable=true&allow_no_indices=true", self.engine.url, self.obs_index);
        match self.http.get(url).send().await {
            Ok(r) if r.status().is_success() => {
                r.json::<Value>().await.ok().and_then(|v| v["count"].as_u64()).unwrap_or(0)
            }
            _ => 0,
        }
    }

    /// Waits until search sees `want` observations and the processor has consumed as many,
    /// checking the stages keep running; returns when each happened, counted from `since`.
    async fn drained(
        &self,
        want: u64,
        processed_want: u64,
        stages: &mut [StageProc],
        since: Instant,
    ) -> (Duration, Duration) {
        let (mut obs_at, mut proc_at) = (None, None);
        loop {
            for s in stages.iter_mut() {
                s.assert_running();
            }
            if obs_at.is_none() && self.searchable().await >= want {
                obs_at = Some(since.elapsed());
            }
            if proc_at.is_none() && processed(&self.http, &stages[1]).await >= processed_want {
                proc_at = Some(since.elapsed());
            }
            if let (Some(o), Some(p)) = (obs_at, proc_at) {
                return (o, p);
            }
            assert!(
                since.elapsed() < PATIENCE,
                "after {PATIENCE:?}: {} of {want} observations searchable, {} of {processed_want} processed",
                self.searchable().await,
                processed(&self.http, &stages[1]).await
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

/// Input records the processor has consumed (`geostream_process_records_total`, all series).
async fn processed(http: &reqwest::Client, process: &StageProc) -> u64 {
    let Ok(r) = http.get(format!("http://{}/metrics", process.telemetry)).send().await else { return 0 };
    let text = r.text().await.unwrap_or_default();
    text.lines()
        .filter(|l| l.starts_with("geostream_process_records_total"))
        .filter_map(|l| l.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()))
        .sum::<f64>() as u64
}

/// Searches every `POLL` for the pending probes; records when each is first found.
async fn poll_probes(http: reqwest::Client, url: String, probes: Arc<Mutex<Probes>>, stop: Arc<AtomicBool>) {
    while !stop.load(Ordering::Relaxed) {
        tokio::time::sleep(POLL).await;
        let ids: Vec<String> = probes.lock().expect("probes").pending.keys().take(2000).cloned().collect();
        if ids.is_empty() {
            continue;
        }
        let body = json!({"size": ids.len(), "_source": false, "query": {"ids": {"values": ids}}});
        let Ok(r) = http.post(&url).json(&body).send().await else { continue };
        let Ok(v) = r.json::<Value>().await else { continue };
        let now = SystemTime::now();
        let mut p = probes.lock().expect("probes");
        for hit in v["hits"]["hits"].as_array().into_iter().flatten() {
            let Some(id) = hit["_id"].as_str() else { continue };
            if let Some((phase, kind, due)) = p.pending.remove(id) {
                let kafka = p.in_kafka.remove(id).map(|t| t.duration_since(due).unwrap_or_default());
                p.found.push((phase, kind, now.duration_since(due).unwrap_or_default(), kafka));
            }
        }
    }
}

/// Reads the observations topic from its end until `stop` (`read_committed`, as the sink does) and
/// notes when each pending probe becomes readable there: the split of its latency between ingest
/// (to Kafka) and the sink (to searchable).
fn watch_topic(bootstrap: String, topic: String, probes: Arc<Mutex<Probes>>, stop: Arc<AtomicBool>) {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .set("group.id", format!("{topic}.e2e-bench-reader"))
        .set("enable.auto.commit", "false")
        .set("isolation.level", "read_committed")
        .create()
        .expect("a Kafka consumer");
    let md = consumer.fetch_metadata(Some(&topic), Duration::from_secs(10)).expect("topic metadata");
    let mut tpl = TopicPartitionList::new();
    for p in md.topics().iter().flat_map(|t| t.partitions()) {
        tpl.add_partition_offset(&topic, p.id(), Offset::End).expect("a partition");
    }
    consumer.assign(&tpl).expect("partitions assigned");
    while !stop.load(Ordering::Relaxed) {
        let Some(Ok(m)) = consumer.poll(Duration::from_millis(100)) else { continue };
        let now = SystemTime::now();
        // The observation's id, without parsing the whole Feature.
        let Some(id) = m.payload().and_then(|b| {
            let at = b.windows(6).position(|w| w == b"\"id\":\"")? + 6;
            let len = b[at..].iter().position(|c| *c == b'"')?;
            std::str::from_utf8(&b[at..at + len]).ok()
        }) else {
            continue;
        };
        let mut p = probes.lock().expect("probes");
        if p.pending.contains_key(id) {
            p.in_kafka.insert(id.to_owned(), now);
        }
    }
}

/// Indexes one document straight into the reference index every `POLL` until `stop`: the
/// engine's own index-to-searchable time.
async fn engine_probes(bench: Arc<Bench>, phase: usize, stop: Arc<AtomicBool>) {
    let mut n = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let id = format!("p{phase}-{n}");
        n += 1;
        let due = SystemTime::now();
        let url = format!("{}/{}/_doc/{id}", bench.engine.url, bench.ref_index);
        let r = bench.http.put(url).json(&json!({"time": unix_ms(due), "n": n})).send().await;
        if r.is_ok_and(|r| r.status().is_success()) {
            bench.probes.lock().expect("probes").pending.insert(id, (phase, Kind::Engine, due));
        }
        tokio::time::sleep(POLL).await;
    }
}

/// The ceiling run: `records` sent as fast as ingest answers. Returns (records/s of the whole
/// pipeline, records/s ingest accepted, seconds to searchable, seconds to processed).
async fn ceiling(bench: &Arc<Bench>, stages: &mut [StageProc], records: usize) -> (f64, f64, f64, f64) {
    let base = bench.accepted.load(Ordering::Relaxed);
    let base_processed = processed(&bench.http, &stages[1]).await;
    let left = Arc::new(Mutex::new(records));
    let started = Instant::now();
    let senders: Vec<_> = (0..BURST_SENDERS)
        .map(|_| {
            let (bench, left) = (Arc::clone(bench), Arc::clone(&left));
            tokio::spawn(async move {
                loop {
                    let take = {
                        let mut left = left.lock().expect("records left");
                        let take = (*left).min(BURST_BATCH);
                        *left -= take;
                        take
                    };
                    if take == 0 {
                        return;
                    }
                    let ms = unix_ms(SystemTime::now());
                    let body = bench.generator.lock().expect("generator").array(take, |_| ms, |_, _| {});
                    Bench::push(&bench.http, &bench.push_url, body, take, &bench.accepted).await;
                }
            })
        })
        .collect();
    for s in senders {
        s.await.expect("a sender");
    }
    let sent_s = started.elapsed().as_secs_f64();
    let want = bench.accepted.load(Ordering::Relaxed);
    assert_eq!(want - base, records as u64, "every ceiling record accepted");
    let (obs, proc) = bench.drained(want, base_processed + records as u64, stages, started).await;
    let total = obs.max(proc).as_secs_f64();
    (records as f64 / total, records as f64 / sent_s, obs.as_secs_f64(), proc.as_secs_f64())
}

struct Phase {
    rate: f64,
    achieved: f64,
    pipeline: Vec<Duration>,
    engine: Vec<Duration>,
    /// Due to readable in the observations topic, for the probes the topic reader saw first.
    to_kafka: Vec<Duration>,
    peak_rss: Vec<u64>,
    /// Cores used per process while the load ran.
    cpu: Vec<(String, f64)>,
    /// Records sent.
    total: u64,
    /// From the start until every record was searchable and processed.
    drained: Duration,
}

/// `seconds` of load at `rate` records/s, open loop; waits for every probe and record.
async fn paced(bench: &Arc<Bench>, stages: &mut [StageProc], phase: usize, rate: f64, seconds: f64) -> Phase {
    for s in stages.iter() {
        s.reset_peak_rss();
    }
    let base_processed = processed(&bench.http, &stages[1]).await;
    let base = bench.accepted.load(Ordering::Relaxed);
    let watched = cpu_watch(stages);
    let cpu_before: Vec<f64> = watched.iter().map(|(_, pid)| tree_cpu_seconds(*pid)).collect();
    let total = (rate * seconds).round() as u64;
    let probe_every = ((rate / PROBES_PER_S).round() as u64).max(1);
    let stop_engine = Arc::new(AtomicBool::new(false));
    let engine_task = tokio::spawn(engine_probes(Arc::clone(bench), phase, Arc::clone(&stop_engine)));
    let in_flight = Arc::new(Semaphore::new(PACED_IN_FLIGHT));
    let start_wall = SystemTime::now();
    let started = Instant::now();
    let mut sent = 0u64;
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    while sent < total {
        tick.tick().await;
        let due = ((started.elapsed().as_secs_f64() * rate) as u64).min(total);
        while sent < due {
            let n = (due - sent).min(2000);
            let at = |seq: u64| start_wall + Duration::from_secs_f64(seq as f64 / rate);
            let mut probes = Vec::new();
            let body = bench.generator.lock().expect("generator").array(
                n as usize,
                |k| unix_ms(at(sent + k as u64)),
                |k, record| {
                    let seq = sent + k as u64;
                    if seq.is_multiple_of(probe_every) {
                        probes.push((record.to_owned(), at(seq)));
                    }
                },
            );
            {
                let ids: Vec<(String, SystemTime)> = probes.iter().map(|(j, at)| (bench.id_of(j), *at)).collect();
                let mut p = bench.probes.lock().expect("probes");
                for (id, at) in ids {
                    // The record's own timestamp, truncated to the millisecond, is when it was due.
                    let at = UNIX_EPOCH + Duration::from_millis(unix_ms(at) as u64);
                    p.pending.insert(id, (phase, Kind::Pipeline, at));
                }
            }
            let permit = Arc::clone(&in_flight).acquire_owned().await.expect("a permit");
            let bench2 = Arc::clone(bench);
            tokio::spawn(async move {
                Bench::push(&bench2.http, &bench2.push_url, body, n as usize, &bench2.accepted).await;
                drop(permit);
            });
            sent += n;
        }
    }
    let _all = in_flight.acquire_many(PACED_IN_FLIGHT as u32).await.expect("every request answered");
    let sending = started.elapsed().as_secs_f64();
    let achieved = total as f64 / sending;
    // Share of one core each process used while the load ran (the drain after it is not counted).
    let cpu: Vec<(String, f64)> = watched
        .iter()
        .zip(&cpu_before)
        .map(|((name, pid), before)| (name.clone(), (tree_cpu_seconds(*pid) - before) / sending))
        .collect();
    stop_engine.store(true, Ordering::Relaxed);
    engine_task.await.expect("engine probes");
    let want = bench.accepted.load(Ordering::Relaxed);
    assert_eq!(want - base, total, "every record of the phase accepted");
    let (obs, proc) = bench.drained(want, base_processed + total, stages, started).await;
    let waited = Instant::now();
    loop {
        let left = bench.probes.lock().expect("probes").pending.values().filter(|(p, _, _)| *p == phase).count();
        if left == 0 {
            break;
        }
        assert!(waited.elapsed() < Duration::from_secs(120), "{left} probes of phase {phase} never became searchable");
        tokio::time::sleep(POLL).await;
    }
    let peak_rss = stages.iter().map(StageProc::peak_rss).collect();
    let p = bench.probes.lock().expect("probes");
    let of = |kind: Kind| {
        let mut v: Vec<Duration> =
            p.found.iter().filter(|(ph, k, _, _)| *ph == phase && *k == kind).map(|(_, _, d, _)| *d).collect();
        v.sort_unstable();
        v
    };
    let mut to_kafka: Vec<Duration> =
        p.found.iter().filter(|(ph, k, _, _)| *ph == phase && *k == Kind::Pipeline).filter_map(|f| f.3).collect();
    to_kafka.sort_unstable();
    Phase {
        rate,
        achieved,
        pipeline: of(Kind::Pipeline),
        engine: of(Kind::Engine),
        to_kafka,
        peak_rss,
        cpu,
        total,
        drained: obs.max(proc),
    }
}

/// The reference: records of the same shape written by a raw `_bulk` loader (the sink's
/// documents, one request at a time) into a tenant of their own. Records/s.
async fn raw_bulk(bench: &Bench, records: usize) -> f64 {
    let tenant = unique_tenant("bench-e2e-bulk");
    bench.engine.install_templates(&tenant).await;
    let mut values = Vec::with_capacity(records);
    {
        // A generator of its own, so the pipeline's sensors are not moved on by it.
        let mut g = Generator::new(tracks(), bench.generator.lock().expect("generator").steps.len());
        let ms = unix_ms(SystemTime::now());
        for chunk in 0..records.div_ceil(BURST_BATCH) {
            let body = g.array(BURST_BATCH.min(records - chunk * BURST_BATCH), |_| ms + chunk as i64, |_, _| {});
            values.extend(bench.decode(&body).iter().map(|o| serde_json::to_vec(o).expect("an observation encodes")));
        }
    }
    let bodies = Engine::bulk_bodies(&tenant, &values, BURST_BATCH);
    let started = Instant::now();
    for body in bodies {
        bench.engine.bulk(body).await;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let stored = bench.engine.count(&format!("geostream-{tenant}-observations-*")).await;
    assert_eq!(stored, records as u64, "raw bulk: observations stored");
    bench.engine.cleanup(&tenant).await;
    records as f64 / elapsed
}

fn round(v: f64, places: i32) -> f64 {
    let f = 10f64.powi(places);
    (v * f).round() / f
}

fn main() {
    // `cargo bench` passes criterion-style arguments; this bench takes its settings from the
    // environment, so it skips itself when a filter excludes it.
    let filter: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with('-')).collect();
    if !filter.is_empty() && !filter.iter().any(|f| "e2e_load".contains(f.as_str()) || f.contains("e2e")) {
        return;
    }
    let bootstrap = service("KAFKA_BOOTSTRAP");
    let url = service("ELASTICSEARCH_URL");
    let bin = PathBuf::from(std::env::var("GEOSTREAM_BIN").unwrap_or_else(|_| {
        panic!("GEOSTREAM_BIN is not set: build the release binary (cargo build --release -p geostream) and point it there, or run ./scripts/bench.sh")
    }));
    assert!(bin.exists(), "GEOSTREAM_BIN={}: no such file", bin.display());
    let sensors = env_usize("BENCH_E2E_SENSORS", 10_000);
    let seconds = env_usize("BENCH_E2E_SECONDS", 60) as f64;
    let ceiling_records = env_usize("BENCH_E2E_CEILING_RECORDS", 150_000);
    let reference_records = env_usize("BENCH_E2E_REFERENCE_RECORDS", 50_000);

    let root = tempfile::tempdir().expect("a temporary directory");
    let tenant = unique_tenant("bench-e2e");
    let ingest_listen = format!("127.0.0.1:{}", free_port());
    let config = root.path().join("geostream.toml");
    std::fs::write(
        &config,
        format!(
            "tenant = \"{tenant}\"\n[kafka]\nbootstrap = \"{bootstrap}\"\n[elasticsearch]\nurl = \"{url}\"\n\
             [sink]\nindex_replicas = 0\n{}",
            std::env::var("BENCH_E2E_CONFIG").unwrap_or_default()
        ),
    )
    .expect("the configuration");
    let spec = feed_spec();
    let spec_file = root.path().join("feed.json");
    std::fs::write(&spec_file, serde_json::to_vec(&spec).expect("JSON")).expect("the feed file");
    cli(&bin, &config, &["feeds", "register", "--file", spec_file.to_str().expect("a path")]);
    let fences = repo_root().join("feeds/demo/fences.geojson");
    cli(&bin, &config, &["fences", "apply", fences.to_str().expect("a path")]);
    // The demo's analytics, for every feed.
    let analytics = root.path().join("analytics.yaml");
    std::fs::write(
        &analytics,
        "- {id: zones, analytic: {kind: geofence, dwell_s: 600, copy_properties: true}}\n\
         - {id: motion, analytic: {kind: motion}}\n\
         - {id: silence, analytic: {kind: gaps, threshold_s: 120}}\n\
         - {id: density, analytic: {kind: bins, cells: {kind: geohash, precision: 4}, window_s: 60, properties: [speed_mps]}}\n",
    )
    .expect("the analytics file");
    cli(&bin, &config, &["analytics", "apply", analytics.to_str().expect("a path")]);

    let mut stages = vec![
        StageProc::start(&bin, &config, root.path(), "ingest", &[("GEOSTREAM_INGEST__LISTEN", ingest_listen.clone())]),
        StageProc::start(&bin, &config, root.path(), "process", &[]),
        StageProc::start(&bin, &config, root.path(), "sink", &[]),
    ];
    let tracks = tracks();
    let fixes: usize = tracks.iter().map(|t| t.fixes.len()).sum();
    eprintln!(
        "e2e_load: tenant {tenant}; {sensors} sensors over {} real tracks ({fixes} fixes); ceiling run {ceiling_records} records; \
         {seconds} s per paced run",
        tracks.len()
    );
    let http = reqwest::Client::builder().timeout(Duration::from_secs(120)).build().expect("an HTTP client");
    let bench = Arc::new(Bench {
        engine: Engine::new(&url),
        push_url: format!("http://{ingest_listen}/v1/push/{tenant}/{FEED}"),
        obs_index: format!("geostream-{tenant}-observations-*"),
        ref_index: format!("geostream-{tenant}-e2e-reference"),
        tenant: tenant.clone(),
        http,
        probes: Arc::default(),
        accepted: Arc::default(),
        generator: Arc::new(Mutex::new(Generator::new(tracks, sensors))),
        codec_spec: spec,
    });

    let rt = runtime();
    rt.block_on(async {
        // Ingest answers 404 until it has read the feed from the registry.
        let ready = Instant::now();
        loop {
            for s in &mut stages {
                s.assert_running();
            }
            let r = bench.http.post(&bench.push_url).header("content-type", "application/json").body("[]").send().await;
            if r.is_ok_and(|r| r.status() == reqwest::StatusCode::ACCEPTED) {
                break;
            }
            assert!(ready.elapsed() < Duration::from_secs(120), "ingest never served {}", bench.push_url);
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        let r = bench.http.put(format!("{}/{}", bench.engine.url, bench.ref_index)).send().await.expect("reference index");
        assert!(r.status().is_success(), "creating {}: {}", bench.ref_index, r.status());
        let poll_url = format!(
            "{}/{},{}/_search?ignore_unavailable=true&allow_no_indices=true&filter_path=hits.hits._id",
            bench.engine.url, bench.obs_index, bench.ref_index
        );
        let stop_poll = Arc::new(AtomicBool::new(false));
        let poller = tokio::spawn(poll_probes(bench.http.clone(), poll_url, Arc::clone(&bench.probes), Arc::clone(&stop_poll)));

        // Warm-up: the sink and the processor have joined their groups, indices exist.
        let started = Instant::now();
        let body =
            bench.generator.lock().expect("generator").array(BURST_BATCH, |_| unix_ms(SystemTime::now()), |_, _| {});
        Bench::push(&bench.http, &bench.push_url, body, BURST_BATCH, &bench.accepted).await;
        bench.drained(BURST_BATCH as u64, BURST_BATCH as u64, &mut stages, started).await;
        eprintln!("e2e_load: warm-up of {BURST_BATCH} records through in {:.1} s", started.elapsed().as_secs_f64());

        let topic_reader = {
            let (bootstrap, probes, stop) = (bootstrap.clone(), Arc::clone(&bench.probes), Arc::clone(&stop_poll));
            let topic = format!("{tenant}.observations");
            std::thread::spawn(move || watch_topic(bootstrap, topic, probes, stop))
        };
        let reference = raw_bulk(&bench, reference_records).await;
        eprintln!("e2e_load: raw _bulk loader: {reference:.0} records/s ({reference_records} records)");

        for s in &stages {
            s.reset_peak_rss();
        }
        let (burst, accepted_rate, obs_s, proc_s) = ceiling(&bench, &mut stages, ceiling_records).await;
        let burst_rss: Vec<u64> = stages.iter().map(StageProc::peak_rss).collect();
        eprintln!(
            "e2e_load: burst {burst:.0} records/s: {ceiling_records} records accepted at {accepted_rate:.0}/s, all searchable \
             after {obs_s:.1} s, all processed after {proc_s:.1} s"
        );
        let held = paced(&bench, &mut stages, FRACTIONS.len(), burst, seconds).await;
        let ceiling = held.total as f64 / held.drained.as_secs_f64();
        let ceiling_rss: Vec<u64> = burst_rss.iter().zip(&held.peak_rss).map(|(a, b)| *a.max(b)).collect();
        eprintln!(
            "e2e_load: ceiling {ceiling:.0} records/s: the burst rate held for {seconds} s ({} records), all searchable and \
             processed after {:.1} s; pipeline p50 {:.0} ms p99 {:.0} ms meanwhile",
            held.total,
            held.drained.as_secs_f64(),
            percentile_ms(&held.pipeline, 0.5),
            percentile_ms(&held.pipeline, 0.99),
        );

        let mut phases = Vec::new();
        for (i, (fraction, label)) in FRACTIONS.iter().enumerate() {
            let phase = paced(&bench, &mut stages, i, ceiling * fraction, seconds).await;
            eprintln!(
                "e2e_load: {label}: {:.0} records/s asked, {:.0} sent; pipeline p50 {:.0} ms p99 {:.0} ms ({} probes); \
                 engine alone p50 {:.0} ms p99 {:.0} ms ({} probes)",
                phase.rate,
                phase.achieved,
                percentile_ms(&phase.pipeline, 0.5),
                percentile_ms(&phase.pipeline, 0.99),
                phase.pipeline.len(),
                percentile_ms(&phase.engine, 0.5),
                percentile_ms(&phase.engine, 0.99),
                phase.engine.len()
            );
            let cpu: Vec<String> = phase.cpu.iter().map(|(n, c)| format!("{n} {c:.2}")).collect();
            eprintln!(
                "e2e_load: {label}: of it, to Kafka p50 {:.0} ms p99 {:.0} ms ({} probes); cores used while loaded: {}",
                percentile_ms(&phase.to_kafka, 0.5),
                percentile_ms(&phase.to_kafka, 0.99),
                phase.to_kafka.len(),
                cpu.join(", ")
            );
            phases.push((*fraction, *label, phase));
        }
        stop_poll.store(true, Ordering::Relaxed);
        poller.await.expect("the poller");
        topic_reader.join().expect("the topic reader");

        // Nothing lost, nothing twice: the indices hold exactly what ingest accepted.
        bench.engine.refresh(&bench.obs_index).await;
        let accepted = bench.accepted.load(Ordering::Relaxed);
        assert_eq!(bench.searchable().await, accepted, "observations in Elasticsearch against records accepted");

        let mut lines = vec![json!({
            "name": "e2e/ceiling", "value": round(ceiling, 0), "unit": "records/s",
            "reference": "e2e/raw_bulk", "reference_value": round(reference, 0), "ratio": round(ceiling / reference, 3),
            "target_ratio": null, "target_value": null, "per_core": false, "meets_target": null,
            "held_records": held.total, "held_seconds": seconds, "drained_after_s": round(held.drained.as_secs_f64(), 2),
            "held_p99_ms": round(percentile_ms(&held.pipeline, 0.99), 1),
            "burst_records_per_s": round(burst, 0), "burst_records": ceiling_records,
            "accepted_records_per_s": round(accepted_rate, 0),
            "burst_searchable_after_s": round(obs_s, 2), "burst_processed_after_s": round(proc_s, 2), "sensors": sensors,
        })];
        for (fraction, label, phase) in &phases {
            for (q, qname) in [(0.5, "p50"), (0.99, "p99")] {
                let (value, floor) = (percentile_ms(&phase.pipeline, q), percentile_ms(&phase.engine, q));
                let target = (*fraction == 0.5 && qname == "p99").then_some(TARGET_P99_MS);
                lines.push(json!({
                    "name": format!("e2e/latency_{qname}_at_{label}"), "value": round(value, 1), "unit": "ms",
                    "reference": format!("e2e/engine_floor_{qname}_at_{label}"), "reference_value": round(floor, 1),
                    "ratio": round(value / floor, 3),
                    "target_ratio": null, "target_value": target, "per_core": false,
                    "meets_target": target.map(|t| value <= t),
                    "rate": round(phase.rate, 0), "achieved_rate": round(phase.achieved, 0), "seconds": seconds,
                    "probes": phase.pipeline.len(), "reference_probes": phase.engine.len(), "poll_ms": POLL.as_millis() as u64,
                    "to_kafka_ms": round(percentile_ms(&phase.to_kafka, q), 1),
                    "cores_used": phase.cpu.iter().map(|(n, c)| (n.clone(), json!(round(*c, 2)))).collect::<serde_json::Map<_, _>>(),
                }));
            }
        }
        for (i, s) in stages.iter().enumerate() {
            let mut per_phase = serde_json::Map::new();
            per_phase.insert("ceiling_mb".into(), json!(round(ceiling_rss[i] as f64 / 1048576.0, 1)));
            for (_, label, phase) in &phases {
                per_phase.insert(format!("{label}_mb"), json!(round(phase.peak_rss[i] as f64 / 1048576.0, 1)));
            }
            let peak = phases.iter().map(|(_, _, p)| p.peak_rss[i]).chain([ceiling_rss[i]]).max().unwrap_or(0);
            let mut line = json!({
                "name": format!("e2e/peak_rss/{}", s.name), "value": round(peak as f64 / 1048576.0, 1), "unit": "MiB",
                "reference": null, "reference_value": null, "ratio": null,
                "target_ratio": null, "target_value": null, "per_core": false, "meets_target": null,
            });
            line.as_object_mut().expect("an object").extend(per_phase);
            lines.push(line);
        }
        let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
        eprint!("{text}");
        if let Ok(path) = std::env::var("BENCH_REPORT") {
            std::fs::write(&path, text).unwrap_or_else(|e| panic!("{path}: {e}"));
        }

        for s in stages.iter_mut().rev() {
            s.terminate();
        }
        bench.engine.cleanup(&bench.tenant).await;
        delete_topics(&bootstrap, &bench.tenant).await;
    });
}

/// Removes the tenant's topics (names are unique per run, so this only saves disk).
async fn delete_topics(bootstrap: &str, tenant: &TenantId) {
    let admin: AdminClient<DefaultClientContext> =
        ClientConfig::new().set("bootstrap.servers", bootstrap).create().expect("a Kafka admin client");
    let Ok(md) = admin.inner().fetch_metadata(None, Duration::from_secs(10)) else { return };
    let prefix = format!("{tenant}.");
    let names: Vec<String> =
        md.topics().iter().map(|t| t.name().to_owned()).filter(|n| n.starts_with(&prefix)).collect();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    if !refs.is_empty() {
        let _ = admin.delete_topics(&refs, &AdminOptions::new()).await;
    }
}
