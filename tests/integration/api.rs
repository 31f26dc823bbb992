//! The API against real Elasticsearch and OpenSearch. Documents are written through the sink's own
//! path (its templates, its `document::items` and bulk lines), then every endpoint is checked
//! against an independent computation over the same input: latest positions in a box, a track's
//! history in time order, event filters, aggregate shards summed per bin, OGC paging walked to its
//! end, and the auth and error rules (401, 403, 400 problem+json).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

use geostream_api::stage::{ApiSettings, ApiStage};
use geostream_model::geojson::Geometry;
use geostream_model::time::OffsetDateTime;
use geostream_model::time::format_description::well_known::Rfc3339;
use geostream_model::{
    Aggregate, AggregateKind, AnalyticId, Event, EventKind, Naming, Observation, TenantId, TopicKind, TrackId, Window,
};
use geostream_sink::client::SearchClient;
use geostream_sink::document::{append_bulk, items};
use geostream_sink::templates::{IndexSettings, templates};
use geostream_telemetry::Telemetry;
use serde_json::{Value, json};

const READ: &str = "read-token-acme";
const OTHER: &str = "read-token-other";
const ADMIN: &str = "admin-token";

/// Writes records exactly as the sink would (templates first, then one bulk body), and fails on
/// any item the engine refused; a 409 is only expected for `latest` (an older or same-time position).
async fn index_like_the_sink(url: &str, tenant: &TenantId, records: &[(TopicKind, Vec<u8>)]) {
    let client = SearchClient::new(url, None, None, Duration::from_secs(60)).unwrap();
    let engine = client.detect().await.unwrap();
    for t in templates(&Naming::default(), tenant, &engine, &IndexSettings { replicas: Some(0) }) {
        client.put_template(&t).await.unwrap();
    }
    let mut body = Vec::new();
    for (i, (kind, payload)) in records.iter().enumerate() {
        for item in items(&Naming::default(), tenant, *kind, i, Some(payload)).unwrap() {
            append_bulk(&mut body, &item);
        }
    }
    let answer: Value = serde_json::from_slice(&client.bulk(body).await.unwrap()).unwrap();
    for item in answer["items"].as_array().unwrap() {
        let (_, r) = item.as_object().unwrap().iter().next().unwrap();
        let status = r["status"].as_u64().unwrap();
        let latest = r["_index"].as_str().unwrap().ends_with("-latest");
        assert!(status < 300 || (status == 409 && latest), "bulk item refused: {item}");
    }
    client.refresh(&format!("geostream-{tenant}-*")).await.unwrap();
}

struct Api {
    http: reqwest::Client,
    base: String,
}

impl Api {
    async fn get(&self, path: &str, token: Option<&str>) -> (u16, String, Value) {
        let mut req = self.http.get(format!("{}{path}", self.base));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        let ct = resp.headers().get("content-type").map(|v| v.to_str().unwrap().to_owned()).unwrap_or_default();
        let text = resp.text().await.unwrap();
        let body =
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("GET {path}: {status} not JSON ({e}): {text}"));
        (status, ct, body)
    }

    /// A 200 answer's body, checking its content type.
    async fn ok(&self, path: &str, content_type: &str) -> Value {
        let (status, ct, body) = self.get(path, Some(READ)).await;
        assert_eq!(status, 200, "GET {path}: {body}");
        assert_eq!(ct, content_type, "GET {path}");
        body
    }

    /// A problem answer: status, content type and the five members.
    async fn problem(&self, path: &str, token: Option<&str>, want: u16) -> Value {
        let (status, ct, body) = self.get(path, token).await;
        assert_eq!(status, want, "GET {path}: {body}");
        assert_eq!(ct, "application/problem+json", "GET {path}");
        for member in ["type", "title", "status", "detail", "instance"] {
            assert!(body.get(member).is_some(), "GET {path}: no {member} in {body}");
        }
        assert_eq!(body["status"], want);
        assert_eq!(body["instance"], path.split('?').next().unwrap());
        body
    }
}

fn time(v: &Value) -> OffsetDateTime {
    OffsetDateTime::parse(v.as_str().unwrap(), &Rfc3339).unwrap()
}

fn point(f: &Value) -> (f64, f64) {
    let c = &f["geometry"]["coordinates"];
    (c[0].as_f64().unwrap(), c[1].as_f64().unwrap())
}

/// Where the API under test reads from.
enum Backend {
    /// A search engine, by name and URL variable.
    Engine(&'static str, &'static str),
    /// The local backend: the GeoParquet archive plus the live layer on real Kafka.
    Local,
}

async fn contract_on(engine: &'static str, var: &'static str) {
    contract(Backend::Engine(engine, var)).await;
}

/// Writes the records to Kafka, the first `archived` of each topic before an archive run that
/// takes them all into GeoParquet files, the rest after it (so they are only on Kafka, for the
/// live layer).
async fn archive_like_the_sink(
    bootstrap: &str,
    tenant: &TenantId,
    records: &[(TopicKind, Vec<u8>)],
    root: &std::path::Path,
) -> geostream_archive::ArchiveStore {
    use rdkafka::producer::{FutureProducer, FutureRecord};
    let naming = Naming::default();
    for (kind, partitions) in [(TopicKind::Observations, 3), (TopicKind::Events, 2), (TopicKind::Aggregates, 2)] {
        crate::api::create_topic(bootstrap, &naming.topic(tenant, kind), partitions).await;
    }
    let producer: FutureProducer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("enable.idempotence", "true")
        .create()
        .unwrap();
    let key = |payload: &[u8]| -> String {
        let v: Value = serde_json::from_slice(payload).unwrap();
        v.pointer("/properties/track").and_then(Value::as_str).unwrap_or_else(|| v["id"].as_str().unwrap()).to_owned()
    };
    let send = |part: &[(TopicKind, Vec<u8>)]| {
        let producer = producer.clone();
        let part = part.to_vec();
        let naming = naming.clone();
        let tenant = tenant.clone();
        async move {
            for (kind, payload) in &part {
                let topic = naming.topic(&tenant, *kind);
                let k = key(payload);
                producer
                    .send(FutureRecord::to(&topic).key(&k).payload(payload), Duration::from_secs(30))
                    .await
                    .unwrap();
            }
        }
    };
    // Every topic gets records on both sides of the cut.
    let (first, rest): (Vec<_>, Vec<_>) = records.iter().enumerate().partition(|(i, _)| i % 2 == 0);
    let first: Vec<(TopicKind, Vec<u8>)> = first.into_iter().map(|(_, r)| r.clone()).collect();
    let rest: Vec<(TopicKind, Vec<u8>)> = rest.into_iter().map(|(_, r)| r.clone()).collect();
    send(&first).await;
    let url = format!("file://{}", root.display());
    let store = geostream_archive::ArchiveStore::open(&url, &Default::default()).unwrap();
    let settings = geostream_archive::ArchiveSettings {
        tenant: tenant.clone(),
        naming: naming.clone(),
        kafka: BTreeMap::from([("bootstrap.servers".to_owned(), bootstrap.to_owned())]),
        store: store.clone(),
        flush: geostream_archive::FlushSettings {
            max_records: 50,
            max_bytes: 1 << 20,
            max_age: Duration::from_millis(200),
        },
        compaction: geostream_archive::CompactionSettings {
            enabled: false,
            interval: Duration::from_secs(60),
            grace: Duration::from_secs(60),
            target_bytes: 1 << 26,
        },
        fault_stop_after_files: None,
    };
    let telemetry = Telemetry::new("sink", tenant.as_str());
    let archive = geostream_archive::ArchiveStage::start(settings, &telemetry).await.unwrap();
    // Until every record of the first half is in committed files, by the archive's own progress.
    let layout = geostream_archive::Layout::new(store.root.clone(), tenant.as_str());
    let want: BTreeMap<TopicKind, usize> = first.iter().fold(BTreeMap::new(), |mut m, (k, _)| {
        *m.entry(*k).or_default() += 1;
        m
    });
    for _ in 0..600 {
        let mut done = true;
        for kind in geostream_archive::ArchiveKind::ALL {
            let mut archived = 0;
            for p in 0..3 {
                if let Some(pr) = geostream_archive::stage::stored_progress(&store, &layout, kind, p).await.unwrap() {
                    archived += usize::try_from(pr.next_offset).unwrap();
                }
            }
            done &= archived >= want.get(&kind.topic_kind()).copied().unwrap_or(0);
        }
        if done {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    archive.shutdown().await;
    send(&rest).await;
    store
}

async fn contract(backend: Backend) {
    let (engine, url, bootstrap) = match backend {
        Backend::Engine(engine, var) => {
            let Some(url) = geostream_tests::service(var, &format!("api on {engine}")) else { return };
            (engine, Some(url), None)
        }
        Backend::Local => {
            let Some(b) = geostream_tests::service("KAFKA_BOOTSTRAP", "api on the archive") else { return };
            ("archive", None, Some(b))
        }
    };
    let tenant: TenantId = geostream_tests::unique(&format!("api-{}", &engine[..2])).parse().unwrap();
    let obs = crate::sink::sample(300);

    // Events: kinds alternate, every fifth is retracted; all with a track and a point.
    let t0 = obs.iter().map(|o| o.time).min().unwrap();
    let events: Vec<Event> = (0..20u64)
        .map(|i| {
            let kind = if i % 2 == 0 { EventKind::Enter } else { EventKind::Exit };
            let mut b = Event::builder(AnalyticId::new("harbour").unwrap(), kind, t0 + Duration::from_secs(60 * i))
                .geometry(Geometry::new_point([10.0 + i as f64 * 0.1, 60.0]))
                .track(TrackId::new(format!("v{}", i % 3)).unwrap());
            if i % 5 == 0 {
                b = b.attribute("retracted", true);
            }
            b.build()
        })
        .collect();
    // Aggregates: bin c1 in three shards, bin c2 in one, plus c1 in a later window.
    let w1 = Window::new(t0, t0 + Duration::from_secs(300)).unwrap();
    let w2 = Window::new(t0 + Duration::from_secs(300), t0 + Duration::from_secs(600)).unwrap();
    let agg = |w: Window, bin: &str, shard: u32, count: u64, sum: f64, min: f64, max: f64| {
        let mut a = Aggregate::new(AggregateKind::Bin, AnalyticId::new("bins").unwrap(), w, bin);
        a.shard = Some(shard);
        a.count = count;
        a.geometry = Some(Geometry::new_point([10.5, 60.5]));
        a.values = BTreeMap::from([
            ("speed_count".to_owned(), count as f64),
            ("speed_sum".to_owned(), sum),
            ("speed_avg".to_owned(), sum / count as f64),
            ("speed_min".to_owned(), min),
            ("speed_max".to_owned(), max),
        ]);
        a.refresh_id();
        a
    };
    let aggregates = [
        agg(w1, "c1", 0, 2, 10.0, 4.0, 6.0),
        agg(w1, "c1", 1, 3, 30.0, 1.0, 19.0),
        agg(w1, "c1", 4, 5, 5.0, 0.5, 2.0),
        agg(w1, "c2", 0, 1, 7.0, 7.0, 7.0),
        agg(w2, "c1", 0, 4, 8.0, 1.0, 3.0),
    ];
    let mut records: Vec<(TopicKind, Vec<u8>)> =
        obs.iter().map(|o| (TopicKind::Observations, serde_json::to_vec(o).unwrap())).collect();
    records.extend(events.iter().map(|e| (TopicKind::Events, serde_json::to_vec(e).unwrap())));
    records.extend(aggregates.iter().map(|a| (TopicKind::Aggregates, serde_json::to_vec(a).unwrap())));
    let archive_dir = tempfile::tempdir().unwrap();
    let store_written = bootstrap.is_some();
    let store = match (&url, &bootstrap) {
        (Some(url), _) => {
            index_like_the_sink(url, &tenant, &records).await;
            None
        }
        (None, Some(b)) => Some(archive_like_the_sink(b, &tenant, &records, archive_dir.path()).await),
        (None, None) => unreachable!(),
    };

    let other_tenant = format!("{tenant}-x");
    let settings = ApiSettings {
        tenant: tenant.clone(),
        naming: Naming::default(),
        kafka: bootstrap.iter().map(|b| ("bootstrap.servers".to_owned(), b.clone())).collect(),
        url: url.clone().unwrap_or_default(),
        username: None,
        password: None,
        listen: "127.0.0.1:0".parse().unwrap(),
        tokens: BTreeMap::from([
            (tenant.to_string(), vec![READ.to_owned()]),
            (other_tenant.clone(), vec![OTHER.to_owned()]),
        ]),
        admin_token: Some(ADMIN.to_owned()),
        request_timeout: Duration::from_secs(30),
        max_live_clients: 4,
        limits: geostream_api::limits::Limits::default(),
        dashboard_dir: std::path::PathBuf::from("/nonexistent/dashboard"),
        tls: None,
    };
    let telemetry = Telemetry::new("api", tenant.as_str());
    let stage = match store {
        None => ApiStage::start(settings, &telemetry).await.unwrap(),
        Some(store) => {
            let archive = geostream_api::local::archive::DataFusionArchive::open(store, tenant.as_str()).await.unwrap();
            let stage =
                ApiStage::start_local(settings, &telemetry, std::sync::Arc::new(archive), 100_000).await.unwrap();
            // Ready once the live layer has read what Kafka held at start.
            for _ in 0..600 {
                if telemetry.health().report().ready {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            assert!(telemetry.health().report().ready, "{:?}", telemetry.health().report());
            stage
        }
    };
    let api = Api { http: reqwest::Client::new(), base: format!("http://{}", stage.addr()) };
    let v1 = format!("/v1/{tenant}");
    let geo = "application/geo+json";

    // Latest in a box, against the newest position per track computed here (ties: the first
    // written stays, since the second has the same external version).
    let mut newest: HashMap<String, &Observation> = HashMap::new();
    // In write order: the archive run takes every other record first (see archive_like_the_sink).
    let write_order: Vec<&Observation> = if store_written {
        obs.iter().step_by(2).chain(obs.iter().skip(1).step_by(2)).collect()
    } else {
        obs.iter().collect()
    };
    for o in write_order {
        let track = o.track.as_ref().unwrap().as_str().to_owned();
        match newest.get(&track) {
            Some(prev) if prev.time >= o.time => {}
            _ => {
                newest.insert(track, o);
            }
        }
    }
    let pos = |o: &Observation| {
        let v = serde_json::to_value(&o.geometry).unwrap();
        (v["coordinates"][0].as_f64().unwrap(), v["coordinates"][1].as_f64().unwrap())
    };
    let mut lons: Vec<f64> = newest.values().map(|o| pos(o).0).collect();
    lons.sort_by(f64::total_cmp);
    // Box edges fall halfway between positions: the engines store geo_points quantized (about
    // 1e-7 degrees), so a point exactly on an edge may land on either side.
    let mid = lons.len() / 2;
    let (west, east) = ((lons[0] - 0.001).max(-180.0), (lons[mid] + lons[mid + 1]) / 2.0);
    assert!(lons[mid] < lons[mid + 1], "{engine}: two tracks share the median longitude");
    let want: HashSet<String> =
        newest.iter().filter(|(_, o)| (west..=east).contains(&pos(o).0)).map(|(t, _)| t.clone()).collect();
    assert!(want.len() > 5 && want.len() < newest.len(), "{engine}: the box must split the tracks: {}", want.len());
    let body = api.ok(&format!("{v1}/latest?bbox={west},-90,{east},90&limit=9999"), geo).await;
    assert_eq!(body["type"], "FeatureCollection");
    let got: HashSet<String> = body["features"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["properties"]["track"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(got, want, "{engine}: latest tracks in the box");
    for f in body["features"].as_array().unwrap() {
        let track = f["properties"]["track"].as_str().unwrap();
        assert_eq!(time(&f["properties"]["time"]), newest[track].time, "{engine}: {track}");
        assert!(f.get("location").is_none());
    }
    let all = api.ok(&format!("{v1}/latest"), geo).await;
    assert_eq!(all["numberReturned"], newest.len(), "{engine}: latest without a box");
    let fed = api.ok(&format!("{v1}/latest?feed=amsa-sat&limit=9999"), geo).await;
    assert_eq!(fed["numberReturned"], newest.len(), "{engine}: every sample track is of feed amsa-sat");
    assert_eq!(api.ok(&format!("{v1}/latest?feed=elsewhere"), geo).await["numberReturned"], 0);

    // A track's history: every observation of it, in time order, and the line through them.
    let mut per_track: HashMap<&str, Vec<&Observation>> = HashMap::new();
    for o in &obs {
        per_track.entry(o.track.as_ref().unwrap().as_str()).or_default().push(o);
    }
    let (busy, points) = per_track.iter().max_by_key(|(_, v)| v.len()).map(|(k, v)| (*k, v.clone())).unwrap();
    assert!(points.len() >= 3, "{engine}: the busiest track has {} points", points.len());
    let body = api.ok(&format!("{v1}/tracks/{busy}"), geo).await;
    let feats = body["features"].as_array().unwrap();
    assert_eq!(feats.len(), points.len(), "{engine}: history of {busy}");
    let times: Vec<OffsetDateTime> = feats.iter().map(|f| time(&f["properties"]["time"])).collect();
    assert!(times.windows(2).all(|w| w[0] <= w[1]), "{engine}: history in time order: {times:?}");
    assert_eq!(body["line"]["geometry"]["type"], "LineString");
    let line: Vec<Value> = feats.iter().map(|f| json!([point(f).0, point(f).1])).collect();
    assert_eq!(body["line"]["geometry"]["coordinates"], json!(line));
    // A time range keeps the points inside it, ends included.
    let (from, to) = (times[1], times[times.len() - 2]);
    let within = points.iter().filter(|o| o.time >= from && o.time <= to).count();
    let ranged = api
        .ok(
            &format!(
                "{v1}/tracks/{busy}?start={}&end={}",
                from.format(&Rfc3339).unwrap(),
                to.format(&Rfc3339).unwrap()
            ),
            geo,
        )
        .await;
    assert_eq!(ranged["numberReturned"], within, "{engine}: history between {from} and {to}");
    // Paged by two, the history is the same.
    let mut path = format!("{v1}/tracks/{busy}?limit=2");
    let mut paged = Vec::new();
    loop {
        let page = api.ok(&path, geo).await;
        paged.extend(page["features"].as_array().unwrap().iter().map(|f| f["id"].clone()));
        match page.get("next").and_then(Value::as_str) {
            Some(next) => path = next.to_owned(),
            None => break,
        }
    }
    assert_eq!(paged, feats.iter().map(|f| f["id"].clone()).collect::<Vec<_>>(), "{engine}: paged history");

    // Events: newest first, retracted left out unless asked for, filters by kind and track.
    let body = api.ok(&format!("{v1}/events?limit=1000"), geo).await;
    let evs = body["features"].as_array().unwrap();
    assert_eq!(evs.len(), 16, "{engine}: 20 events, 4 retracted");
    let times: Vec<OffsetDateTime> = evs.iter().map(|f| time(&f["properties"]["time"])).collect();
    assert!(times.windows(2).all(|w| w[0] >= w[1]), "{engine}: newest first");
    assert_eq!(api.ok(&format!("{v1}/events?include_retracted=true"), geo).await["numberReturned"], 20);
    let enters = api.ok(&format!("{v1}/events?kind=enter&include_retracted=true"), geo).await;
    assert_eq!(enters["numberReturned"], 10, "{engine}: enter events");
    let v1_exit = api.ok(&format!("{v1}/events?kind=exit&track=v1&include_retracted=true"), geo).await;
    let want_v1_exit = (0..20u64).filter(|i| i % 2 == 1 && i % 3 == 1).count();
    assert_eq!(v1_exit["numberReturned"], want_v1_exit, "{engine}: exit events of v1");
    let boxed = api.ok(&format!("{v1}/events?bbox=9.95,59,10.45,61&include_retracted=true"), geo).await;
    assert_eq!(boxed["numberReturned"], 5, "{engine}: events at lon 10.0..10.4");
    let after = time(&json!(events[10].time.format(&Rfc3339).unwrap()));
    let since =
        api.ok(&format!("{v1}/events?include_retracted=true&start={}", after.format(&Rfc3339).unwrap()), geo).await;
    assert_eq!(since["numberReturned"], 10, "{engine}: events from the 11th on");

    // Aggregates: one feature per (analytic, window, bin), shards summed.
    let body = api.ok(&format!("{v1}/aggregates?analytic=bins"), geo).await;
    let bins = body["features"].as_array().unwrap();
    assert_eq!(bins.len(), 3, "{engine}: c1/w1, c2/w1, c1/w2: {body}");
    let c1 = bins
        .iter()
        .find(|b| b["properties"]["bin"] == "c1" && time(&b["properties"]["window"]["start"]) == t0)
        .unwrap();
    assert_eq!(c1["properties"]["count"], 10);
    assert_eq!(c1["properties"]["values"]["speed_sum"], 45.0);
    assert_eq!(c1["properties"]["values"]["speed_avg"], 4.5);
    assert_eq!(c1["properties"]["values"]["speed_min"], 0.5);
    assert_eq!(c1["properties"]["values"]["speed_max"], 19.0);
    assert_eq!(c1["properties"]["shards"].as_array().unwrap().len(), 3);
    let later = api
        .ok(&format!("{v1}/aggregates?start={}", (t0 + Duration::from_secs(400)).format(&Rfc3339).unwrap()), geo)
        .await;
    assert_eq!(later["numberReturned"], 1, "{engine}: only the second window overlaps");

    // Feed status from the local backend: the archived and the live observations together.
    if store_written {
        let status = api.ok(&format!("{v1}/feed-status?minutes=60"), "application/json").await;
        let feed = status["feeds"].as_array().unwrap().iter().find(|f| f["feed"] == "amsa-sat").unwrap().clone();
        assert_eq!(feed["total"], obs.len(), "{engine}: every observation counted once: {status}");
        assert_eq!(feed["recent"], obs.len(), "{engine}: all received within the hour: {status}");
    }

    // OGC API - Features.
    let ogc = format!("/ogc/{tenant}");
    let landing = api.ok(&format!("{ogc}/"), "application/json").await;
    let rels: HashSet<&str> = landing["links"].as_array().unwrap().iter().map(|l| l["rel"].as_str().unwrap()).collect();
    for rel in ["self", "service-desc", "conformance", "data"] {
        assert!(rels.contains(rel), "{engine}: landing page lacks {rel}: {landing}");
    }
    let conf = api.ok(&format!("{ogc}/conformance"), "application/json").await;
    let classes: Vec<&str> = conf["conformsTo"].as_array().unwrap().iter().map(|c| c.as_str().unwrap()).collect();
    assert!(classes.contains(&"http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/core"));
    assert!(classes.contains(&"http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/geojson"));
    let cols = api.ok(&format!("{ogc}/collections"), "application/json").await;
    let ids: Vec<&str> = cols["collections"].as_array().unwrap().iter().map(|c| c["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["observations", "latest", "events", "aggregates"]);
    let col = api.ok(&format!("{ogc}/collections/observations"), "application/json").await;
    assert!(col["links"].as_array().unwrap().iter().any(|l| l["rel"] == "items"));
    // Walk the `next` links of the observations to the end: every observation once.
    let mut path = format!("{ogc}/collections/observations/items?limit=37");
    let mut seen = Vec::new();
    let mut pages = 0;
    loop {
        let page = api.ok(&path, geo).await;
        pages += 1;
        assert_eq!(page["numberMatched"], obs.len(), "{engine}: numberMatched");
        let n = page["features"].as_array().unwrap().len();
        assert_eq!(page["numberReturned"], n);
        seen.extend(page["features"].as_array().unwrap().iter().map(|f| f["id"].as_str().unwrap().to_owned()));
        let next = page["links"].as_array().unwrap().iter().find(|l| l["rel"] == "next");
        match next {
            Some(l) => {
                assert_eq!(n, 37, "{engine}: only the last page may be short");
                path = l["href"].as_str().unwrap().strip_prefix(&api.base).unwrap().to_owned();
            }
            None => break,
        }
        assert!(pages < 100, "{engine}: paging does not end");
    }
    assert_eq!(seen.len(), obs.len(), "{engine}: items over all pages");
    let distinct: HashSet<&String> = seen.iter().collect();
    assert_eq!(distinct.len(), obs.len(), "{engine}: no item twice");
    assert_eq!(pages, obs.len().div_ceil(37), "{engine}: pages");
    let one = api.ok(&format!("{ogc}/collections/observations/items/{}", obs[7].id), geo).await;
    assert_eq!(one["id"], obs[7].id.to_string());
    assert!(one["links"].as_array().unwrap().iter().any(|l| l["rel"] == "collection"));
    let boxed = api.ok(&format!("{ogc}/collections/latest/items?bbox={west},-90,{east},90&limit=9999"), geo).await;
    assert_eq!(boxed["numberMatched"], want.len(), "{engine}: OGC latest in the box");
    api.problem(&format!("{ogc}/collections/observations/items/nope"), Some(READ), 404).await;
    api.problem(&format!("{ogc}/collections/fences"), Some(READ), 404).await;

    // Auth and errors.
    let p = api.problem(&format!("{v1}/latest"), None, 401).await;
    assert!(p["type"].as_str().unwrap().ends_with("unauthenticated"));
    api.problem(&format!("{v1}/latest"), Some("made-up"), 401).await;
    let p = api.problem(&format!("{v1}/latest"), Some(OTHER), 403).await;
    assert!(p["detail"].as_str().unwrap().contains("another tenant"), "{p}");
    api.problem(&format!("{ogc}/collections"), Some(OTHER), 403).await;
    // The other tenant's own token on the other tenant's path: valid, but not served here.
    api.problem(&format!("/v1/{other_tenant}/latest"), Some(OTHER), 404).await;
    let p = api.problem(&format!("{v1}/latest?bbox=1,2,3"), Some(READ), 400).await;
    assert_eq!(p["parameter"], "bbox");
    assert!(p["detail"].as_str().unwrap().contains("minLon,minLat,maxLon,maxLat"), "{p}");
    let p = api.problem(&format!("{v1}/events?start=yesterday"), Some(READ), 400).await;
    assert_eq!(p["parameter"], "start");
    let p = api.problem(&format!("{ogc}/collections/events/items?cursor=forged"), Some(READ), 400).await;
    assert_eq!(p["parameter"], "cursor");
    let p = api.problem(&format!("{v1}/latest?bbbox=1,2,3,4"), Some(READ), 400).await;
    assert_eq!(p["parameter"], "bbbox");
    api.problem("/nowhere", Some(READ), 404).await;
    // The admin token reads too.
    assert_eq!(api.get(&format!("{v1}/latest"), Some(ADMIN)).await.0, 200);

    // Readiness reflects the engine.
    for _ in 0..100 {
        if telemetry.health().report().ready {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(telemetry.health().report().ready, "{engine}: {:?}", telemetry.health().report());
    stage.shutdown().await;
    if let Some(url) = url {
        let http = reqwest::Client::new();
        let _ = http.delete(format!("{url}/geostream-{tenant}-*")).send().await;
        for kind in ["observations", "events", "aggregates", "latest"] {
            let _ = http.delete(format!("{url}/_index_template/geostream-{tenant}-{kind}")).send().await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_answers_queries_and_ogc_features_on_elasticsearch() {
    contract_on("elasticsearch", "ELASTICSEARCH_URL").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_answers_queries_and_ogc_features_on_the_archive_and_live_layer() {
    contract(Backend::Local).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_answers_queries_and_ogc_features_on_opensearch() {
    contract_on("opensearch", "OPENSEARCH_URL").await;
}

/// A shard that is not started yet (here held unassigned by an allocation filter naming no node,
/// as a day's new observation index is for a moment after the sink creates it) makes the engine
/// answer every search over the pattern with 503. The API's search waits for it to start instead
/// of failing; one that never starts still fails, with the engine's reason.
async fn unstarted_shard_on(engine: &'static str, var: &'static str) {
    use futures::FutureExt;
    let Some(url) = geostream_tests::service(var, engine) else { return };
    let http = reqwest::Client::new();
    let name = geostream_tests::unique("shards");
    let (late, never) = (format!("{name}-late"), format!("{name}-never"));
    for index in [&late, &never] {
        let r = http
            // Without waiting for the shard, which is held unassigned here.
            .put(format!("{url}/{index}?wait_for_active_shards=0"))
            .json(&json!({"settings": {"number_of_shards": 1, "number_of_replicas": 0,
                                       "index.routing.allocation.require._name": "no-such-node"}}))
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "{engine}: creating {index}: {}", r.text().await.unwrap());
    }
    // An unassigned primary turns the engine's health red, which would stop the next
    // `testenv.sh up` from calling it healthy: the indices go whatever the checks find.
    let checks = std::panic::AssertUnwindSafe(unstarted_shard_checks(engine, &url, &http, &late, &never));
    let outcome = checks.catch_unwind().await;
    for index in [&late, &never] {
        let r = http.delete(format!("{url}/{index}")).send().await;
        assert!(r.is_ok_and(|r| r.status().is_success()), "{engine}: deleting {index}");
    }
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}

async fn unstarted_shard_checks(engine: &str, url: &str, http: &reqwest::Client, late: &str, never: &str) {
    let search = geostream_api::search::Search::new(url, None, None, Duration::from_secs(30)).unwrap();
    let body = json!({"query": {"match_all": {}}});

    let direct = http.post(format!("{url}/{late}*/_search")).json(&body).send().await.unwrap();
    assert_eq!(direct.status().as_u16(), 503, "{engine}: an unassigned shard makes the search fail");

    let release = {
        let (http, url, late) = (http.clone(), url.to_owned(), late.to_owned());
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(300)).await;
            let r = http
                .put(format!("{url}/{late}/_settings"))
                .json(&json!({"index.routing.allocation.require._name": null}))
                .send()
                .await
                .unwrap();
            assert!(r.status().is_success(), "allocation allowed");
        })
    };
    let hits = search.search(&format!("{late}*"), &body).await;
    release.await.unwrap();
    let hits = hits.unwrap_or_else(|e| panic!("{engine}: the search did not wait for the shard: {e}"));
    assert_eq!(hits["hits"]["hits"], json!([]), "{engine}: {hits}");

    let err = search.search(&format!("{never}*"), &body).await.expect_err("a shard that never starts fails");
    assert!(err.to_string().contains("HTTP 503"), "{engine}: {err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_search_waits_for_a_shard_that_is_not_started_yet_on_elasticsearch() {
    unstarted_shard_on("elasticsearch", "ELASTICSEARCH_URL").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_search_waits_for_a_shard_that_is_not_started_yet_on_opensearch() {
    unstarted_shard_on("opensearch", "OPENSEARCH_URL").await;
}

/// The registry endpoints over real Kafka: PUT creates (201) at version 1, the same PUT again
/// changes nothing, a changed spec gets version 2, GET and the list show it, a read token cannot
/// write (403), DELETE leaves a tombstone (then 404), and the processor's and ingest's own registry
/// readers see the same state.
/// An API for `tenant` (reader token `READ`) whose search engine URL answers nothing, no Kafka,
/// plain HTTP: for tests of what does not query the engine.
fn without_search_engine(tenant: &TenantId) -> ApiSettings {
    ApiSettings {
        tenant: tenant.clone(),
        naming: Naming::default(),
        kafka: BTreeMap::new(),
        url: "http://127.0.0.1:9".into(),
        username: None,
        password: None,
        listen: "127.0.0.1:0".parse().unwrap(),
        tokens: BTreeMap::from([(tenant.to_string(), vec![READ.to_owned()])]),
        admin_token: None,
        request_timeout: Duration::from_secs(5),
        max_live_clients: 4,
        limits: geostream_api::limits::Limits::default(),
        dashboard_dir: std::path::PathBuf::from("/nonexistent/dashboard"),
        tls: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_registry_round_trip_on_kafka() {
    let Some(bootstrap) = geostream_tests::service("KAFKA_BOOTSTRAP", "api registry") else { return };
    let tenant: TenantId = geostream_tests::unique("api-reg").parse().unwrap();
    let kafka = BTreeMap::from([("bootstrap.servers".to_owned(), bootstrap.clone())]);
    // The search engine is never asked: registry requests do not touch it.
    let settings =
        ApiSettings { kafka: kafka.clone(), admin_token: Some(ADMIN.to_owned()), ..without_search_engine(&tenant) };
    let stage = ApiStage::start(settings, &Telemetry::new("api", tenant.as_str())).await.unwrap();
    let http = reqwest::Client::new();
    let base = format!("http://{}/v1/{tenant}", stage.addr());
    let put =
        |path: &str, token: &str, body: Value| http.put(format!("{base}/{path}")).bearer_auth(token).json(&body).send();
    let gaps = |s: u64| json!({"analytic": {"kind": "gaps", "threshold_s": s}});

    let r = put("analytics/gap-watch", ADMIN, gaps(60)).await.unwrap();
    assert_eq!(r.status().as_u16(), 201);
    assert_eq!(r.json::<Value>().await.unwrap()["version"], 1);
    let r = put("analytics/gap-watch", ADMIN, gaps(60)).await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(r.json::<Value>().await.unwrap()["version"], 1, "unchanged: no new version");
    let r = put("analytics/gap-watch", ADMIN, gaps(120)).await.unwrap();
    assert_eq!(r.json::<Value>().await.unwrap()["version"], 2);
    let r = put("analytics/gap-watch", READ, gaps(30)).await.unwrap();
    assert_eq!(r.status().as_u16(), 403);
    assert_eq!(r.headers()["content-type"], "application/problem+json");
    let r = put("analytics/gap-watch", ADMIN, gaps(0)).await.unwrap();
    assert_eq!(r.status().as_u16(), 400, "an invalid spec is refused");
    let fence = json!({"name": "harbour", "geometry": {"type": "Polygon",
        "coordinates": [[[10.0, 59.0], [11.0, 59.0], [11.0, 60.0], [10.0, 59.0]]]}});
    assert_eq!(put("fences/harbour", ADMIN, fence).await.unwrap().status().as_u16(), 201);

    let got: Value =
        http.get(format!("{base}/analytics/gap-watch")).bearer_auth(READ).send().await.unwrap().json().await.unwrap();
    assert_eq!((got["version"].clone(), got["analytic"]["threshold_s"].clone()), (json!(2), json!(120)));
    let list: Value = http.get(format!("{base}/fences")).bearer_auth(READ).send().await.unwrap().json().await.unwrap();
    assert_eq!(list["numberReturned"], 1);
    assert_eq!(list["items"][0]["id"], "harbour");

    // What the processor and the CLI read from the topic is what the API wrote.
    let topic = geostream_processor::registry::RegistryTopic::new(
        kafka.clone(),
        Naming::default().topic(&tenant, TopicKind::Analytics),
    );
    let (reg, refused) = topic.read::<geostream_analytics::spec::AnalyticSpec>().await.unwrap();
    assert!(refused.is_empty());
    assert_eq!(reg.get("gap-watch").map(|s| s.version), Some(2));

    let del = |path: &str, token: &str| http.delete(format!("{base}/{path}")).bearer_auth(token).send();
    assert_eq!(del("analytics/gap-watch", READ).await.unwrap().status().as_u16(), 403);
    assert_eq!(del("analytics/gap-watch", ADMIN).await.unwrap().status().as_u16(), 204);
    assert_eq!(del("analytics/gap-watch", ADMIN).await.unwrap().status().as_u16(), 404);
    let r = http.get(format!("{base}/analytics/gap-watch")).bearer_auth(READ).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 404);
    let (reg, _) = topic.read::<geostream_analytics::spec::AnalyticSpec>().await.unwrap();
    assert!(reg.get("gap-watch").is_none());
    let r = http.get(format!("{base}/analytics")).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 401);

    // Feeds, read back through the ingest stage's own registry client.
    let feed = |enabled: bool| json!({"type": "http-push-json", "source": {"kind": "http_push"}, "format": "geojson", "enabled": enabled});
    let r = put("feeds/push-1", ADMIN, feed(true)).await.unwrap();
    assert_eq!(r.status().as_u16(), 201);
    assert!(r.headers()["location"].to_str().unwrap().ends_with("/feeds/push-1"));
    assert_eq!(put("feeds/push-1", ADMIN, feed(false)).await.unwrap().json::<Value>().await.unwrap()["version"], 2);
    let bad = json!({"type": "x", "source": {"kind": "carrier-pigeon"}, "format": "geojson"});
    assert_eq!(put("feeds/push-2", ADMIN, bad).await.unwrap().status().as_u16(), 400);
    let feeds =
        geostream_ingest::registry::RegistryClient::new(kafka, Naming::default().topic(&tenant, TopicKind::Feeds));
    let (state, _) = feeds.snapshot().await.unwrap();
    let registered = state.get(&geostream_model::FeedId::new("push-1").unwrap()).unwrap();
    assert_eq!((registered.version, registered.enabled), (2, false));
    assert_eq!(state.len(), 1, "the refused feed was not written");
    assert_eq!(del("feeds/push-1", ADMIN).await.unwrap().status().as_u16(), 204);
    let (state, _) = feeds.snapshot().await.unwrap();
    assert!(state.is_empty());
    stage.shutdown().await;
}

async fn create_topic(bootstrap: &str, name: &str, partitions: i32) {
    use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
    let admin: AdminClient<rdkafka::client::DefaultClientContext> =
        rdkafka::ClientConfig::new().set("bootstrap.servers", bootstrap).create().unwrap();
    for r in admin
        .create_topics(&[NewTopic::new(name, partitions, TopicReplication::Fixed(1))], &AdminOptions::new())
        .await
        .unwrap()
    {
        r.unwrap();
    }
}

/// Server-Sent Events over HTTP: a client connects with a box, observations are produced after it
/// is ready (one key, so Kafka keeps their order, and a last one inside the box as an end marker),
/// and the client receives exactly those inside the box, nothing older than its connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_live_push_delivers_exactly_the_observations_in_the_box() {
    use rdkafka::producer::{FutureProducer, FutureRecord};
    let Some(bootstrap) = geostream_tests::service("KAFKA_BOOTSTRAP", "api live push") else { return };
    let tenant: TenantId = geostream_tests::unique("api-live").parse().unwrap();
    let topic = Naming::default().topic(&tenant, TopicKind::Observations);
    create_topic(&bootstrap, &topic, 3).await;
    let producer: FutureProducer = rdkafka::ClientConfig::new().set("bootstrap.servers", &bootstrap).create().unwrap();
    let send = |o: &Observation| {
        let payload = serde_json::to_vec(o).unwrap();
        let p = producer.clone();
        let topic = topic.clone();
        async move {
            p.send(FutureRecord::to(&topic).key("one").payload(&payload), Duration::from_secs(30)).await.unwrap();
        }
    };
    let obs = crate::sink::sample(120);
    // Produced before the client connects: must not be delivered.
    for o in &obs[..10] {
        send(o).await;
    }
    let settings = ApiSettings {
        kafka: BTreeMap::from([("bootstrap.servers".to_owned(), bootstrap.clone())]),
        max_live_clients: 1,
        ..without_search_engine(&tenant)
    };
    let stage = ApiStage::start(settings, &Telemetry::new("api", tenant.as_str())).await.unwrap();
    let pos = |o: &Observation| {
        let v = serde_json::to_value(&o.geometry).unwrap();
        (v["coordinates"][0].as_f64().unwrap(), v["coordinates"][1].as_f64().unwrap())
    };
    let later = &obs[10..];
    let mut lons: Vec<f64> = later.iter().map(|o| pos(o).0).collect();
    lons.sort_by(f64::total_cmp);
    let (west, east) = (lons[0], lons[lons.len() / 2]);
    let inside = |o: &Observation| (west..=east).contains(&pos(o).0);
    let marker = later.iter().rev().find(|o| inside(o)).unwrap().id.to_string();
    let mut want: Vec<String> = later.iter().filter(|o| inside(o)).map(|o| o.id.to_string()).collect();
    want.dedup();

    let http = reqwest::Client::new();
    let url = format!("http://{}/v1/{tenant}/live?kind=observations&bbox={west},-90,{east},90", stage.addr());
    assert_eq!(http.get(&url).send().await.unwrap().status().as_u16(), 401);
    let mut resp = http.get(&url).bearer_auth(READ).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    let mut text = String::new();
    let mut got: Vec<String> = Vec::new();
    let mut produced = false;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    'read: loop {
        let chunk = tokio::time::timeout_at(deadline, resp.chunk()).await.expect("live push timed out").unwrap();
        let Some(chunk) = chunk else { panic!("the stream ended early: {text}") };
        text.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(end) = text.find("\n\n") {
            let block: String = text.drain(..end + 2).collect();
            let event = block.lines().find_map(|l| l.strip_prefix("event: ")).unwrap_or_default().to_owned();
            let data: String = block.lines().filter_map(|l| l.strip_prefix("data: ")).collect();
            match event.as_str() {
                "ready" if !produced => {
                    produced = true;
                    for o in later {
                        send(o).await;
                    }
                }
                "feature" => {
                    let f: Value = serde_json::from_str(&data).unwrap();
                    let id = f["id"].as_str().unwrap().to_owned();
                    got.push(id.clone());
                    if id == marker && got.len() >= want.len() {
                        break 'read;
                    }
                }
                "" => {}
                other => panic!("unexpected event {other}: {data}"),
            }
        }
    }
    assert_eq!(got, want, "exactly the observations inside the box, in order");
    // One slot (max_live_clients = 1): a second client is turned away while the first is
    // connected, and the slot is free again once the first goes.
    let second = http.get(&url).bearer_auth(READ).send().await.unwrap();
    assert_eq!(second.status().as_u16(), 503);
    assert_eq!(second.headers()["content-type"], "application/problem+json");
    drop(resp);
    let mut again = None;
    for _ in 0..100 {
        let r = http.get(&url).bearer_auth(READ).send().await.unwrap();
        if r.status().as_u16() == 200 {
            again = Some(r);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut again = again.expect("the slot of a client that left is given back");
    // Stopping the stage ends a connected client's stream instead of waiting for it.
    tokio::time::timeout(Duration::from_secs(20), stage.shutdown()).await.expect("shutdown waits for a live client");
    let mut rest = String::new();
    while let Ok(Some(chunk)) = tokio::time::timeout(Duration::from_secs(20), again.chunk()).await.unwrap() {
        rest.push_str(&String::from_utf8_lossy(&chunk));
    }
    assert!(rest.contains("event: ready"), "{rest}");
}

/// A client that does not read is dropped once its buffer is full, with a final `dropped` item.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_live_push_drops_a_slow_client_with_a_reason() {
    use futures::StreamExt;
    use geostream_api::live::{LiveFilter, LiveItem, open};
    use rdkafka::producer::{FutureProducer, FutureRecord};
    let Some(bootstrap) = geostream_tests::service("KAFKA_BOOTSTRAP", "api live slow client") else { return };
    let tenant: TenantId = geostream_tests::unique("api-slow").parse().unwrap();
    let topic = Naming::default().topic(&tenant, TopicKind::Observations);
    create_topic(&bootstrap, &topic, 1).await;
    let kafka = BTreeMap::from([("bootstrap.servers".to_owned(), bootstrap.clone())]);
    let stream = open(&kafka, &topic, LiveFilter::default(), 4, None).await.unwrap();
    let mut stream = Box::pin(stream);
    assert_eq!(stream.next().await, Some(LiveItem::Ready));
    let producer: FutureProducer = rdkafka::ClientConfig::new().set("bootstrap.servers", &bootstrap).create().unwrap();
    for o in crate::sink::sample(20) {
        let payload = serde_json::to_vec(&o).unwrap();
        producer.send(FutureRecord::to(&topic).key("k").payload(&payload), Duration::from_secs(30)).await.unwrap();
    }
    // The reader task fills the buffer of 4 and gives up on the fifth; only then is the stream read.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let rest: Vec<LiveItem> =
        tokio::time::timeout(Duration::from_secs(30), stream.collect::<Vec<_>>()).await.expect("the stream must end");
    assert_eq!(rest.len(), 5, "{rest:?}");
    assert!(rest[..4].iter().all(|i| matches!(i, LiveItem::Feature(_))));
    match &rest[4] {
        LiveItem::Dropped(why) => assert!(why.contains("behind"), "{why}"),
        other => panic!("{other:?}"),
    }
}

/// `openssl` (a real tool, as an operator or cert-manager would use) in `dir`; must succeed.
fn openssl(dir: &std::path::Path, args: &[&str]) {
    let out = std::process::Command::new("openssl").args(args).current_dir(dir).output().unwrap();
    assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// A test CA and two server certificates for 127.0.0.1 signed by it (`leaf1`, `leaf2`), as PEM,
/// plus each leaf as DER to recognise which one the server presents.
fn test_pki(dir: &std::path::Path) {
    let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
    openssl(
        dir,
        &[
            &["req", "-x509"],
            &ec[..],
            &["-keyout", "ca.key", "-out", "ca.crt", "-days", "2", "-subj", "/CN=geostream test CA"],
        ]
        .concat(),
    );
    std::fs::write(dir.join("san.ext"), "subjectAltName=IP:127.0.0.1\n").unwrap();
    for leaf in ["leaf1", "leaf2"] {
        let (key, csr, crt, der) =
            (format!("{leaf}.key"), format!("{leaf}.csr"), format!("{leaf}.crt"), format!("{leaf}.der"));
        openssl(dir, &[&["req"], &ec[..], &["-keyout", &key, "-out", &csr, "-subj", "/CN=127.0.0.1"]].concat());
        openssl(
            dir,
            &[
                "x509",
                "-req",
                "-in",
                &csr,
                "-CA",
                "ca.crt",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-out",
                &crt,
                "-days",
                "2",
                "-extfile",
                "san.ext",
            ],
        );
        openssl(dir, &["x509", "-in", &crt, "-outform", "der", "-out", &der]);
    }
}

/// The API over HTTPS: a client trusting the CA gets answers (and auth still applies), plain HTTP
/// and clients that do not trust the CA get none, and a renewed certificate written over the files
/// is served without a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_serves_https_and_picks_up_a_renewed_certificate() {
    let dir = tempfile::tempdir().unwrap();
    test_pki(dir.path());
    let (cert, key) = (dir.path().join("tls.crt"), dir.path().join("tls.key"));
    std::fs::copy(dir.path().join("leaf1.crt"), &cert).unwrap();
    std::fs::copy(dir.path().join("leaf1.key"), &key).unwrap();
    let tenant: TenantId = geostream_tests::unique("api-tls").parse().unwrap();
    let settings = ApiSettings {
        tls: Some(geostream_api::stage::TlsFiles { cert: cert.clone(), key: key.clone() }),
        ..without_search_engine(&tenant)
    };
    let stage = ApiStage::start(settings, &Telemetry::new("api", tenant.as_str())).await.unwrap();
    let ca = reqwest::Certificate::from_pem(&std::fs::read(dir.path().join("ca.crt")).unwrap()).unwrap();
    // A new client per request: a pooled connection would keep the certificate it started with.
    let trusting = || {
        reqwest::Client::builder()
            .add_root_certificate(ca.clone())
            .tls_info(true)
            .pool_max_idle_per_host(0)
            .build()
            .unwrap()
    };
    let https = format!("https://{}", stage.addr());

    let r = trusting().get(format!("{https}/openapi.json")).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let presented = |r: &reqwest::Response| {
        r.extensions().get::<reqwest::tls::TlsInfo>().and_then(|t| t.peer_certificate()).map(<[u8]>::to_vec)
    };
    assert_eq!(presented(&r), Some(std::fs::read(dir.path().join("leaf1.der")).unwrap()));
    let r = trusting().get(format!("{https}/v1/{tenant}/latest")).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 401, "tokens are still required over TLS");

    let plain = reqwest::Client::new().get(format!("http://{}/openapi.json", stage.addr())).send().await;
    assert!(plain.map_or(true, |r| !r.status().is_success()), "plain HTTP must not be answered");
    let untrusting = reqwest::Client::new().get(format!("{https}/openapi.json")).send().await;
    assert!(untrusting.is_err(), "a client that does not trust the CA must fail the handshake");

    // Renewal: the new pair replaces the files (key first, as a Secret update lands both).
    std::fs::copy(dir.path().join("leaf2.key"), &key).unwrap();
    std::fs::copy(dir.path().join("leaf2.crt"), &cert).unwrap();
    let want = std::fs::read(dir.path().join("leaf2.der")).unwrap();
    let mut served = None;
    for _ in 0..150 {
        let r = trusting().get(format!("{https}/openapi.json")).send().await.unwrap();
        assert_eq!(r.status().as_u16(), 200);
        served = presented(&r);
        if served.as_deref() == Some(&want[..]) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(served.as_deref(), Some(&want[..]), "the renewed certificate was never served");
    stage.shutdown().await;
}
