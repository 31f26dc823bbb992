//! The map dashboard in a real browser (Debian's chromium driven by playwright-core from
//! `web/tests/browser.mjs`) against real Kafka and Elasticsearch, with the sink and the API run
//! in-process: the page loads and goes live, then a replay of real AIS observations is produced
//! to Kafka; the page must count exactly the replayed tracks as live points, a click on one
//! track's point must draw its whole history (as many positions as were produced for it), the
//! history slider must load the newest window and the feed panel must count every stored
//! observation. A screenshot is kept in `target/test-reports/dashboard.png`.
//!
//! The vector tiles of the same data are checked too: decoded, the world tile holds every
//! track once, and the zoom-12 tile of one track's newest position holds that track at the
//! tile coordinates computed here independently.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::process::Stdio;
use std::time::Duration;

use geostream_api::stage::{ApiSettings, ApiStage};
use geostream_model::geojson::Geometry;
use geostream_model::time::OffsetDateTime;
use geostream_model::time::format_description::well_known::Rfc3339;
use geostream_model::{
    Aggregate, AggregateKind, AnalyticId, DeadLetter, Naming, Observation, ReasonCode, Stage, TenantId, TopicKind,
    Window,
};
use geostream_sink::stage::{SinkSettings, SinkStage};
use geostream_sink::templates::IndexSettings;
use geostream_telemetry::Telemetry;
use geozero::mvt::{Message, Tile};
use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::util::Timeout;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

const TOKEN: &str = "dashboard-read-token";
/// Observations replayed: below the live stream's per-client buffer (1024), so a page that is
/// slow to read is still never dropped.
const REPLAY: usize = 300;

fn topic(tenant: &TenantId, kind: TopicKind) -> String {
    Naming::default().topic(tenant, kind)
}

async fn create_topics(bootstrap: &str, tenant: &TenantId) {
    let admin: AdminClient<DefaultClientContext> =
        ClientConfig::new().set("bootstrap.servers", bootstrap).create().unwrap();
    let names = [
        (topic(tenant, TopicKind::Observations), 3),
        (topic(tenant, TopicKind::Events), 1),
        (topic(tenant, TopicKind::Aggregates), 1),
        (topic(tenant, TopicKind::Deadletter), 1),
    ];
    let new: Vec<NewTopic<'_>> = names.iter().map(|(n, p)| NewTopic::new(n, *p, TopicReplication::Fixed(1))).collect();
    for r in admin.create_topics(&new, &AdminOptions::new()).await.unwrap() {
        r.unwrap();
    }
}

fn lon_lat(o: &Observation) -> (f64, f64) {
    let v = serde_json::to_value(&o.geometry).unwrap();
    (v["coordinates"][0].as_f64().unwrap(), v["coordinates"][1].as_f64().unwrap())
}

/// Web Mercator tile coordinates of a position, written out here rather than taken from the
/// API's `tiles` module, so the check is independent of the code it checks.
fn tile_of(lon: f64, lat: f64, z: u32) -> (u32, u32, f64, f64) {
    let n = f64::from(1u32 << z);
    let wx = (lon + 180.0) / 360.0 * n;
    let r = lat.to_radians();
    let wy = (1.0 - r.tan().asinh() / std::f64::consts::PI) / 2.0 * n;
    let (x, y) = (wx.floor(), wy.floor());
    (x as u32, y as u32, (wx - x) * 4096.0, (wy - y) * 4096.0)
}

/// A decoded tile layer: per feature its `track` and its first point.
fn decode_points(bytes: &[u8], layer: &str) -> Vec<(String, (i64, i64))> {
    let tile = Tile::decode(bytes).unwrap();
    let Some(l) = tile.layers.iter().find(|l| l.name == layer) else { return Vec::new() };
    assert_eq!(l.extent, Some(4096));
    l.features
        .iter()
        .map(|f| {
            let track = f
                .tags
                .chunks(2)
                .find(|kv| l.keys[kv[0] as usize] == "track")
                .and_then(|kv| l.values[kv[1] as usize].string_value.clone())
                .unwrap();
            // One MoveTo of one point: command, then zigzag-encoded x and y.
            assert_eq!(f.geometry[0], 9, "a single point");
            let unzig = |v: u32| i64::from((v >> 1) as i32 ^ -((v & 1) as i32));
            (track, (unzig(f.geometry[1]), unzig(f.geometry[2])))
        })
        .collect()
}

async fn wait_indexed(http: &reqwest::Client, url: &str, index: &str, want: u64) {
    let mut last = Value::Null;
    for _ in 0..600 {
        let _ = http.post(format!("{url}/{index}/_refresh")).send().await;
        let r = http.get(format!("{url}/{index}/_count")).send().await.unwrap();
        last = r.json().await.unwrap();
        if last["count"].as_u64() == Some(want) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("the sink never stored {want} documents in {index}: {last}");
}

async fn next_line(lines: &mut tokio::io::Lines<BufReader<tokio::process::ChildStdout>>, stage: &str) -> Value {
    let line = tokio::time::timeout(Duration::from_secs(300), lines.next_line())
        .await
        .unwrap_or_else(|_| panic!("browser test: no {stage:?} line in 300 s"))
        .unwrap()
        .unwrap_or_else(|| panic!("browser test ended before {stage:?}"));
    let v: Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("browser test said {line:?}: {e}"));
    assert_eq!(v["stage"], stage, "browser test: {v}");
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn dashboard_shows_a_replay_live_and_a_clicked_tracks_history() {
    let name = "dashboard browser test";
    let Some(bootstrap) = geostream_tests::service("KAFKA_BOOTSTRAP", name) else { return };
    let Some(url) = geostream_tests::service("ELASTICSEARCH_URL", name) else { return };
    let Some(chromium) = geostream_tests::service("GEOSTREAM_CHROMIUM", name) else { return };
    let root = geostream_tests::repo_root();
    let built = std::process::Command::new(root.join("scripts/dashboard.sh")).status().unwrap();
    assert!(built.success(), "scripts/dashboard.sh failed");

    let tenant: TenantId = geostream_tests::unique("dash").parse().unwrap();
    create_topics(&bootstrap, &tenant).await;
    let kafka = BTreeMap::from([("bootstrap.servers".to_owned(), bootstrap.clone())]);
    let sink_telemetry = Telemetry::new("sink", tenant.as_str());
    let sink = SinkStage::start(
        SinkSettings {
            tenant: tenant.clone(),
            naming: Naming::default(),
            kafka: kafka.clone(),
            url: url.clone(),
            username: None,
            password: None,
            batch_max_records: 100,
            batch_max_bytes: 4 * 1024 * 1024,
            linger: Duration::from_millis(20),
            max_in_flight: 2,
            max_backoff: Duration::from_secs(2),
            request_timeout: Duration::from_secs(60),
            index: IndexSettings { replicas: Some(0) },
        },
        &sink_telemetry,
    )
    .await
    .unwrap();
    let api_telemetry = Telemetry::new("api", tenant.as_str());
    let api = ApiStage::start(
        ApiSettings {
            tenant: tenant.clone(),
            naming: Naming::default(),
            kafka,
            url: url.clone(),
            username: None,
            password: None,
            listen: "127.0.0.1:0".parse().unwrap(),
            tokens: BTreeMap::from([(tenant.to_string(), vec![TOKEN.to_owned()])]),
            admin_token: None,
            request_timeout: Duration::from_secs(30),
            max_live_clients: 8,
            dashboard_dir: root.join("web/dist"),
            tls: None,
            limits: geostream_api::limits::Limits::default(),
        },
        &api_telemetry,
    )
    .await
    .unwrap();
    let base = format!("http://{}", api.addr());
    let http = reqwest::Client::new();

    // The page and its files are served; `/` leads to it.
    let index = http.get(format!("{base}/")).send().await.unwrap();
    assert_eq!(index.status(), 200);
    assert!(index.text().await.unwrap().contains("<div id=\"map\""));

    let screenshot = geostream_tests::report_dir().join("dashboard.png");
    let _ = std::fs::remove_file(&screenshot);
    let mut child = tokio::process::Command::new("node")
        .arg(root.join("web/tests/browser.mjs"))
        .current_dir(root.join("web"))
        .env("GEOSTREAM_URL", &base)
        .env("GEOSTREAM_TOKEN", TOKEN)
        .env("GEOSTREAM_TENANT", tenant.as_str())
        .env("GEOSTREAM_CHROMIUM", &chromium)
        .env("GEOSTREAM_SCREENSHOT", &screenshot)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .expect("node must be installed (scripts/testenv.sh up browser)");
    let mut stdin = child.stdin.take().unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let live = next_line(&mut lines, "live").await;
    assert_eq!(live["live_points"], 0, "a new tenant has no tracks before the replay");

    // The replay, produced only now that the page follows the topic.
    let obs = crate::sink::sample(REPLAY);
    let producer: FutureProducer =
        ClientConfig::new().set("bootstrap.servers", &bootstrap).set("enable.idempotence", "true").create().unwrap();
    let obs_topic = topic(&tenant, TopicKind::Observations);
    for o in &obs {
        let payload = serde_json::to_vec(o).unwrap();
        let key = o.kafka_key().into_owned();
        producer
            .send(FutureRecord::to(&obs_topic).key(&key).payload(&payload), Timeout::After(Duration::from_secs(30)))
            .await
            .unwrap();
    }
    let mut per_track: HashMap<String, Vec<&Observation>> = HashMap::new();
    for o in &obs {
        per_track.entry(o.track.as_ref().unwrap().as_str().to_owned()).or_default().push(o);
    }
    let newest = |t: &str| *per_track[t].iter().max_by_key(|o| o.time).unwrap();
    // The target: a track with several positions whose newest one is farthest from every other
    // track's newest, so its point is the only one under the click.
    let target = per_track
        .keys()
        .filter(|t| per_track[*t].len() >= 2)
        .max_by(|a, b| {
            let gap = |t: &str| {
                let (x, y) = lon_lat(newest(t));
                per_track
                    .keys()
                    .filter(|o| o.as_str() != t)
                    .map(|o| {
                        let (ox, oy) = lon_lat(newest(o));
                        (ox - x).hypot(oy - y)
                    })
                    .fold(f64::INFINITY, f64::min)
            };
            gap(a).total_cmp(&gap(b))
        })
        .expect("the sample has a track with two positions")
        .clone();
    let (tlon, tlat) = lon_lat(newest(&target));
    // One aggregate bin, a hexagon around the target, for the map's bin layer and the tiles.
    let t0 = obs.iter().map(|o| o.time).min().unwrap();
    let mut bin = Aggregate::new(
        AggregateKind::Bin,
        AnalyticId::new("density").unwrap(),
        Window::new(t0, t0 + Duration::from_secs(300)).unwrap(),
        "hex-1",
    );
    let hexagon: Vec<[f64; 2]> = (0..=6)
        .map(|i| {
            let a = f64::from(i % 6) * std::f64::consts::PI / 3.0;
            [tlon + 0.02 * a.cos(), tlat + 0.02 * a.sin()]
        })
        .collect();
    bin.geometry = Some(Geometry::new_polygon([hexagon]));
    bin.count = 42;
    bin.shard = Some(0);
    bin.refresh_id();
    let payload = serde_json::to_vec(&bin).unwrap();
    producer
        .send(
            FutureRecord::to(&topic(&tenant, TopicKind::Aggregates)).key("hex-1").payload(&payload),
            Timeout::After(Duration::from_secs(30)),
        )
        .await
        .unwrap();
    wait_indexed(&http, &url, &format!("geostream-{tenant}-observations-*"), obs.len() as u64).await;
    wait_indexed(&http, &url, &format!("geostream-{tenant}-aggregates"), 1).await;
    wait_indexed(&http, &url, &format!("geostream-{tenant}-latest"), per_track.len() as u64).await;

    let replay = json!({
        "tracks": per_track.len(),
        "target": target,
        "target_position": [tlon, tlat],
        "observations": obs.len(),
        "feed": obs[0].feed.as_str(),
    });
    stdin.write_all(format!("{replay}\n").as_bytes()).await.unwrap();
    stdin.flush().await.unwrap();
    drop(stdin);
    let done = next_line(&mut lines, "done").await;
    eprintln!("browser test saw: {done}");
    let status = tokio::time::timeout(Duration::from_secs(60), child.wait()).await.unwrap().unwrap();
    assert!(status.success(), "browser test exited with {status}: {done}");

    // What the page showed, against what was produced.
    assert_eq!(done["live_points"], per_track.len(), "{done}");
    assert_eq!(done["live_features"], obs.len(), "every replayed position arrived live: {done}");
    let shown: BTreeSet<String> =
        done["tracks_shown"].as_array().unwrap().iter().map(|t| t.as_str().unwrap().to_owned()).collect();
    assert_eq!(shown, per_track.keys().cloned().collect::<BTreeSet<_>>());
    assert_eq!(done["selected"], target.as_str(), "{done}");
    assert_eq!(done["history_points"], per_track[&target].len(), "{done}");
    assert_eq!(done["history_panel"], per_track[&target].len().to_string());
    assert!(done["window_points"].as_u64().unwrap() >= 1, "{done}");
    assert_eq!(done["feed_row"]["total"], obs.len(), "{done}");
    assert_eq!(done["external_requests"], json!([]), "the page loads nothing from outside the API");
    assert_eq!(done["errors"], json!([]), "{done}");
    let png = std::fs::read(&screenshot).unwrap();
    assert!(png.starts_with(b"\x89PNG") && png.len() > 10_000, "screenshot: {} bytes", png.len());

    // Vector tiles of the same data. The world tile holds every track once...
    let get_tile = |path: String| {
        let http = http.clone();
        async move {
            let r = http.get(path).bearer_auth(TOKEN).send().await.unwrap();
            assert_eq!(r.status(), 200);
            assert_eq!(r.headers()["content-type"], "application/vnd.mapbox-vector-tile");
            r.bytes().await.unwrap().to_vec()
        }
    };
    let world = decode_points(&get_tile(format!("{base}/v1/{tenant}/tiles/latest/0/0/0.mvt")).await, "latest");
    let tracks: BTreeSet<String> = world.iter().map(|(t, _)| t.clone()).collect();
    assert_eq!(world.len(), per_track.len());
    assert_eq!(tracks, per_track.keys().cloned().collect::<BTreeSet<_>>());
    // ...and the zoom-12 tile of the target's newest position holds it where it belongs (one
    // unit of rounding, plus the engine's geo_point quantization, which is far below a unit).
    let (x, y, px, py) = tile_of(tlon, tlat, 12);
    let here = decode_points(&get_tile(format!("{base}/v1/{tenant}/tiles/latest/12/{x}/{y}.mvt")).await, "latest");
    let (_, (gx, gy)) = here.iter().find(|(t, _)| *t == target).unwrap_or_else(|| panic!("{target} not in its tile"));
    assert!((*gx as f64 - px).abs() <= 1.0 && (*gy as f64 - py).abs() <= 1.0, "{target}: ({gx}, {gy}) vs ({px}, {py})");
    // A tile on the other side of the world is empty.
    let away = get_tile(format!("{base}/v1/{tenant}/tiles/latest/12/{}/{}.mvt", (x + 2048) % 4096, y)).await;
    assert!(decode_points(&away, "latest").iter().all(|(t, _)| *t != target));

    // The bin's tile holds it as a polygon with its properties.
    let bins = Tile::decode(&*get_tile(format!("{base}/v1/{tenant}/tiles/aggregates/12/{x}/{y}.mvt")).await).unwrap();
    let layer = bins.layers.iter().find(|l| l.name == "aggregates").expect("an aggregates layer");
    assert_eq!(layer.features.len(), 1);
    let f = &layer.features[0];
    assert_eq!(f.r#type(), geozero::mvt::tile::GeomType::Polygon);
    let props: BTreeMap<&str, String> = f
        .tags
        .chunks(2)
        .map(|kv| {
            let v = &layer.values[kv[1] as usize];
            let text = v
                .string_value
                .clone()
                .or(v.int_value.map(|i| i.to_string()))
                .or(v.sint_value.map(|i| i.to_string()))
                .or(v.uint_value.map(|i| i.to_string()))
                .or(v.double_value.map(|d| d.to_string()))
                .unwrap_or_default();
            (layer.keys[kv[0] as usize].as_str(), text)
        })
        .collect();
    assert_eq!((props["count"].as_str(), props["bin"].as_str()), ("42", "hex-1"), "{props:?}");
    let bin_json = serde_json::to_value(&bin).unwrap();
    assert_eq!(props["window.start"], bin_json["properties"]["window"]["start"].as_str().unwrap(), "{props:?}");

    // Feed status: every observation received in the window, and a dead letter of the feed
    // (written as ingest writes them) counted as its error.
    let dl = DeadLetter::new(
        b"$GPRMC,broken".to_vec(),
        Stage::Ingest,
        ReasonCode::Malformed,
        "test",
        OffsetDateTime::now_utc(),
    );
    let dl = DeadLetter { feed: Some(obs[0].feed.as_str().to_owned()), ..dl };
    let payload = serde_json::to_vec(&dl).unwrap();
    producer
        .send(
            FutureRecord::to(&topic(&tenant, TopicKind::Deadletter)).key("x").payload(&payload),
            Timeout::After(Duration::from_secs(30)),
        )
        .await
        .unwrap();
    let r = http.get(format!("{base}/v1/{tenant}/feed-status?minutes=30")).bearer_auth(TOKEN).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let status: Value = r.json().await.unwrap();
    assert_eq!(status["feeds"].as_array().unwrap().len(), 1, "{status}");
    let feed = &status["feeds"][0];
    assert_eq!(feed["feed"], obs[0].feed.as_str());
    assert_eq!(
        (feed["total"].as_u64(), feed["recent"].as_u64()),
        (Some(REPLAY as u64), Some(REPLAY as u64)),
        "{status}"
    );
    assert_eq!(feed["errors"], 1, "{status}");
    let newest_time = obs.iter().map(|o| o.time).max().unwrap();
    let last_time = OffsetDateTime::parse(feed["last_time"].as_str().unwrap(), &Rfc3339).unwrap();
    assert_eq!(last_time.unix_timestamp(), newest_time.unix_timestamp(), "{status}");

    api.shutdown().await;
    sink.shutdown().await;
}
