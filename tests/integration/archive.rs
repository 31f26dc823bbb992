//! The GeoParquet archive on real Kafka: real AIS observations, events and versioned aggregates are
//! archived while the archive is stopped dead between the files of a flush (fault injection) and
//! killed without committing, then restarted; DataFusion must find every record exactly once (by
//! id; aggregates by id and version) with its exact Feature JSON, and an independent reader
//! (pyarrow, plus geopandas when installed, in `ARCHIVE_PYTHON`) must read the same files with
//! valid GeoParquet 1.1 metadata. Then compaction merges the closed hours and the counts stay.
//! The same protocol runs against an S3-compatible server (`S3_ENDPOINT`, MinIO from testenv).

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use datafusion::arrow::array::AsArray;
use datafusion::arrow::datatypes::Int64Type;
use datafusion::prelude::SessionContext;
use geostream_archive::layout::Layout;
use geostream_archive::progress::Progress;
use geostream_archive::stage::{data_files, stored_progress};
use geostream_archive::{
    ArchiveKind, ArchiveSettings, ArchiveStage, ArchiveStore, CompactionSettings, FlushSettings, S3Options,
};
use geostream_model::geojson::Geometry;
use geostream_model::{
    Aggregate, AggregateKind, AnalyticId, Event, EventKind, FenceId, Naming, Observation, TenantId, Window,
};
use geostream_telemetry::Telemetry;
use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::util::Timeout;

const PARTITIONS: [(ArchiveKind, i32); 3] =
    [(ArchiveKind::Observations, 3), (ArchiveKind::Events, 2), (ArchiveKind::Aggregates, 1)];

/// What was produced: per kind, `(id, version)` → the exact payload.
type Produced = BTreeMap<ArchiveKind, BTreeMap<(String, i64), String>>;

fn topic(tenant: &TenantId, kind: ArchiveKind) -> String {
    Naming::default().topic(tenant, kind.topic_kind())
}

async fn create_topics(bootstrap: &str, tenant: &TenantId) {
    let admin: AdminClient<DefaultClientContext> =
        ClientConfig::new().set("bootstrap.servers", bootstrap).create().unwrap();
    let names: Vec<(String, i32)> = PARTITIONS.iter().map(|(k, p)| (topic(tenant, *k), *p)).collect();
    let new: Vec<NewTopic<'_>> = names.iter().map(|(n, p)| NewTopic::new(n, *p, TopicReplication::Fixed(1))).collect();
    for r in admin.create_topics(&new, &AdminOptions::new()).await.unwrap() {
        r.unwrap();
    }
}

/// Events and aggregates derived from the observations: an enter event at every 7th position, a
/// non-spatial gap event at every 50th, a bin aggregate per 5-minute window and track prefix with
/// two versions each (the correction arrives later). `base` is the index of `obs[0]` in the whole
/// sample, so the cells of separately produced parts never collide.
fn derived(obs: &[Observation], base: usize) -> (Vec<Event>, Vec<Aggregate>) {
    let analytic = AnalyticId::new("harbour").unwrap();
    let mut events = Vec::new();
    for (i, o) in obs.iter().enumerate() {
        if i % 7 == 0 {
            let mut b = Event::builder(analytic.clone(), EventKind::Enter, o.time)
                .feed(o.feed.clone())
                .geometry(o.geometry.clone())
                .fence(FenceId::new("zone-a").unwrap(), 1)
                .observation(o.id);
            if let Some(t) = &o.track {
                b = b.track(t.clone());
            }
            events.push(b.build());
        }
        if i % 50 == 0 {
            let mut b = Event::builder(AnalyticId::new("gaps").unwrap(), EventKind::Gap, o.time).feed(o.feed.clone());
            if let Some(t) = &o.track {
                b = b.track(t.clone());
            }
            events.push(b.attribute("silent_s", 600).build());
        }
    }
    let mut aggregates = Vec::new();
    for (i, o) in obs.iter().enumerate().step_by(25) {
        let start = o.time.replace_second(0).unwrap().replace_nanosecond(0).unwrap();
        let w = Window::new(start, start + geostream_model::time::Duration::minutes(5)).unwrap();
        let mut a =
            Aggregate::new(AggregateKind::Bin, AnalyticId::new("bins").unwrap(), w, format!("cell-{}", base + i));
        a.geometry =
            (i % 2 == 0).then(|| Geometry::new_polygon([vec![[0.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 0.0]]]));
        a.count = 3;
        aggregates.push(a.clone());
        a.version = 2;
        a.count = 4;
        aggregates.push(a);
    }
    (events, aggregates)
}

async fn produce_all(p: &FutureProducer, tenant: &TenantId, obs: &[Observation], base: usize, produced: &mut Produced) {
    let (events, aggregates) = derived(obs, base);
    let mut sends = Vec::new();
    let mut push = |kind: ArchiveKind, key: String, id: String, version: i64, payload: String| {
        let before = produced.entry(kind).or_default().insert((id.clone(), version), payload.clone());
        assert!(before.is_none(), "the test produced {kind} {id} v{version} twice");
        let t = topic(tenant, kind);
        sends.push(async move {
            p.send(FutureRecord::to(&t).key(&key).payload(&payload), Timeout::After(Duration::from_secs(30)))
                .await
                .unwrap();
        });
    };
    for o in obs {
        push(
            ArchiveKind::Observations,
            o.kafka_key().into_owned(),
            o.id.to_string(),
            0,
            serde_json::to_string(o).unwrap(),
        );
    }
    for e in &events {
        push(ArchiveKind::Events, e.id.to_string(), e.id.to_string(), 0, serde_json::to_string(e).unwrap());
    }
    for a in &aggregates {
        push(
            ArchiveKind::Aggregates,
            a.id.to_string(),
            a.id.to_string(),
            i64::from(a.version),
            serde_json::to_string(a).unwrap(),
        );
    }
    futures::future::join_all(sends).await;
}

fn settings(
    tenant: &TenantId,
    bootstrap: &str,
    store: ArchiveStore,
    fault: Option<u64>,
    compact: bool,
) -> ArchiveSettings {
    ArchiveSettings {
        tenant: tenant.clone(),
        naming: Naming::default(),
        kafka: BTreeMap::from([("bootstrap.servers".to_owned(), bootstrap.to_owned())]),
        store,
        // Small flushes so a run writes many files (and a crash hits the middle of the stream).
        flush: FlushSettings { max_records: 400, max_bytes: 8 * 1024 * 1024, max_age: Duration::from_millis(500) },
        compaction: CompactionSettings {
            enabled: compact,
            interval: Duration::from_millis(300),
            grace: Duration::ZERO,
            target_bytes: 64 * 1024 * 1024,
        },
        fault_stop_after_files: fault,
    }
}

/// Ends of every partition of the tenant's topics.
fn ends(bootstrap: &str, tenant: &TenantId) -> BTreeMap<(ArchiveKind, i32), i64> {
    let c: BaseConsumer = ClientConfig::new().set("bootstrap.servers", bootstrap).create().unwrap();
    let mut out = BTreeMap::new();
    for (kind, n) in PARTITIONS {
        for p in 0..n {
            let (_, high) = c.fetch_watermarks(&topic(tenant, kind), p, Duration::from_secs(10)).unwrap();
            out.insert((kind, p), high);
        }
    }
    out
}

async fn all_progress(store: &ArchiveStore, layout: &Layout) -> BTreeMap<(ArchiveKind, i32), Option<Progress>> {
    let mut out = BTreeMap::new();
    for (kind, n) in PARTITIONS {
        for p in 0..n {
            out.insert((kind, p), stored_progress(store, layout, kind, p).await.unwrap());
        }
    }
    out
}

/// Waits (by checks, bounded only as a hang guard) until every partition's progress reached its end.
async fn wait_archived(
    bootstrap: &str,
    tenant: &TenantId,
    store: &ArchiveStore,
    layout: &Layout,
    stage: &ArchiveStage,
) {
    let ends = ends(bootstrap, tenant);
    for _ in 0..1500 {
        let progress = all_progress(store, layout).await;
        if ends
            .iter()
            .all(|(k, end)| progress[k].as_ref().is_some_and(|p| p.next_offset >= *end && p.pending.is_none()))
        {
            return;
        }
        assert!(!stage.is_finished(), "the archive stopped before catching up");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("the archive did not catch up with {ends:?}: {:?}", all_progress(store, layout).await);
}

/// Every row of a kind through DataFusion: `(id, version)` → (copies, feature).
async fn archived(ctx: &SessionContext, kind: ArchiveKind) -> HashMap<(String, i64), (usize, String)> {
    let version = if kind == ArchiveKind::Aggregates { "version" } else { "CAST(0 AS BIGINT)" };
    let sql = format!("SELECT id, {version} AS v, feature FROM {}", kind.as_str());
    let mut out: HashMap<(String, i64), (usize, String)> = HashMap::new();
    for b in ctx.sql(&sql).await.unwrap().collect().await.unwrap() {
        let ids = b.column(0).as_string::<i32>();
        let vs = b.column(1).as_primitive::<Int64Type>();
        let fs = b.column(2).as_string::<i32>();
        for i in 0..b.num_rows() {
            let e = out.entry((ids.value(i).to_owned(), vs.value(i))).or_insert((0, fs.value(i).to_owned()));
            e.0 += 1;
        }
    }
    out
}

async fn check_exactly_once(store: &ArchiveStore, tenant: &TenantId, produced: &Produced, compacted: bool) {
    let ctx = SessionContext::new();
    geostream_archive::register(&ctx, store.store.clone(), &store.root, tenant.as_str()).await.unwrap();
    for (kind, want) in produced {
        let got = archived(&ctx, *kind).await;
        let dupes: Vec<_> = got.iter().filter(|(_, (n, _))| *n > 1).map(|(k, _)| k).collect();
        assert!(dupes.is_empty(), "{kind}: archived more than once: {dupes:?}");
        let want: BTreeMap<&(String, i64), &String> = if compacted && *kind == ArchiveKind::Aggregates {
            // Compaction keeps only the highest version of an aggregate.
            let mut best: BTreeMap<&String, &(String, i64)> = BTreeMap::new();
            for k in want.keys() {
                let e = best.entry(&k.0).or_insert(k);
                if k.1 > e.1 {
                    *e = k;
                }
            }
            best.values().map(|k| (*k, &want[*k])).collect()
        } else {
            want.iter().collect()
        };
        let missing: Vec<_> = want.keys().filter(|k| !got.contains_key(**k)).collect();
        assert!(missing.is_empty(), "{kind}: {} of {} missing, e.g. {:?}", missing.len(), want.len(), missing.first());
        if !compacted {
            assert_eq!(got.len(), want.len(), "{kind}: rows that were never produced");
        }
        for (k, payload) in want {
            assert_eq!(&got[k].1, payload, "{kind} {k:?}: the feature column is not the Kafka payload");
        }
    }
    // The bbox covering column answers a spatial filter: the enter events' points in a box.
    let batches = ctx
        .sql(
            "SELECT id FROM events WHERE get_field(bbox, 'xmin') >= 100 AND get_field(bbox, 'xmax') <= 160 \
              AND get_field(bbox, 'ymin') >= -50 AND get_field(bbox, 'ymax') <= 0",
        )
        .await
        .unwrap()
        .collect()
        .await
        .unwrap();
    let in_box: std::collections::BTreeSet<String> = batches
        .iter()
        .flat_map(|b| (0..b.num_rows()).map(|i| b.column(0).as_string::<i32>().value(i).to_owned()))
        .collect();
    let expected: std::collections::BTreeSet<String> = produced[&ArchiveKind::Events]
        .iter()
        .filter(|(_, f)| {
            let e: Event = serde_json::from_str(f).unwrap();
            matches!(&e.geometry, Some(g) if matches!(&g.value,
                geostream_model::geojson::GeometryValue::Point { coordinates }
                    if (100.0..=160.0).contains(&coordinates[0]) && (-50.0..=0.0).contains(&coordinates[1])))
        })
        .map(|((id, _), _)| id.clone())
        .collect();
    let extra: Vec<&String> = in_box.difference(&expected).collect();
    let missed: Vec<&String> = expected.difference(&in_box).collect();
    assert!(
        extra.is_empty() && missed.is_empty(),
        "bbox filter: {} extra, e.g. {:?}; {} missed, e.g. {:?}",
        extra.len(),
        extra.first().map(|id| &produced[&ArchiveKind::Events][&((*id).clone(), 0)]),
        missed.len(),
        missed.first()
    );
    assert!(!expected.is_empty(), "no event falls in the box; the check would prove nothing");
}

/// The independent reader: pyarrow (and geopandas when installed) over the local files.
fn python_check(python: &str, root: &std::path::Path, tenant: &TenantId, produced: &Produced) {
    const SCRIPT: &str = r#"
import glob, json, os, sys
import pyarrow.parquet as pq
root, tenant = sys.argv[1], sys.argv[2]
try:
    import geopandas
except Exception:
    geopandas = None
out = {"geopandas": geopandas is not None}
for kind in ("observations", "events", "aggregates"):
    files = sorted(glob.glob(os.path.join(root, tenant, kind, "date=*", "hour=*", "*.parquet")))
    ids, rows = [], 0
    for f in files:
        meta = pq.read_metadata(f).metadata
        geo = json.loads(meta[b"geo"])
        assert geo["version"] == "1.1.0", geo
        assert geo["primary_column"] == "geometry", geo
        col = geo["columns"]["geometry"]
        assert col["encoding"] == "WKB", col
        assert col["covering"]["bbox"]["xmin"] == ["bbox", "xmin"], col
        t = pq.read_table(f)
        assert t.schema.field("bbox").type.num_fields == 4
        rows += t.num_rows
        versions = t.column("version").to_pylist() if kind == "aggregates" else [0] * t.num_rows
        ids += [f"{i}/{v}" for i, v in zip(t.column("id").to_pylist(), versions)]
        if geopandas is not None:
            df = geopandas.read_parquet(f)
            assert df.geometry.name == "geometry"
            assert str(df.crs).upper().endswith("CRS84") or df.crs is None or df.crs.to_epsg() == 4326, df.crs
            assert len(df) == t.num_rows
            nonnull = df[~df.geometry.isna()]
            if len(nonnull) and "bbox" in col:
                b = nonnull.total_bounds
                assert abs(b[0] - col["bbox"][0]) < 1e-9 and abs(b[3] - col["bbox"][3]) < 1e-9, (b, col["bbox"])
    out[kind] = {"files": len(files), "rows": rows, "ids": ids}
print(json.dumps(out))
"#;
    let run = std::process::Command::new(python).arg("-c").arg(SCRIPT).arg(root).arg(tenant.as_str()).output().unwrap();
    assert!(run.status.success(), "python reader failed:\n{}", String::from_utf8_lossy(&run.stderr));
    let report: serde_json::Value = serde_json::from_slice(&run.stdout).unwrap();
    eprintln!("python reader: geopandas {}", report["geopandas"]);
    for (kind, want) in produced {
        let r = &report[kind.as_str()];
        assert!(r["files"].as_u64().unwrap() > 0, "{kind}: no files");
        let mut ids: Vec<String> =
            r["ids"].as_array().unwrap().iter().map(|v| v.as_str().unwrap().to_owned()).collect();
        ids.sort();
        let mut expect: Vec<String> = want.keys().map(|(id, v)| format!("{id}/{v}")).collect();
        expect.sort();
        assert_eq!(ids, expect, "{kind}: pyarrow reads other ids than were produced");
    }
}

/// Produce, crash between files, kill without commit, restart, check; returns what was produced.
async fn crash_and_recover(bootstrap: &str, tenant: &TenantId, store: &ArchiveStore) -> Produced {
    create_topics(bootstrap, tenant).await;
    let layout = Layout::new(store.root.clone(), tenant.as_str());
    let obs = crate::sink::sample(2800);
    let producer: FutureProducer =
        ClientConfig::new().set("bootstrap.servers", bootstrap).set("enable.idempotence", "true").create().unwrap();
    let mut produced = Produced::new();
    produce_all(&producer, tenant, &obs[..1400], 0, &mut produced).await;
    let telemetry = Telemetry::new("sink", tenant.as_str());

    // 1. Stopped dead after its 5th data file: a flush spans several hours, so mid-flush.
    // The waits below are liveness bounds (5 minutes): with the whole suite running on 2 cores the
    // first group join and five S3 writes once took longer than a minute.
    let a = ArchiveStage::start(settings(tenant, bootstrap, store.clone(), Some(5), false), &telemetry).await.unwrap();
    for _ in 0..3000 {
        if a.is_finished() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(a.is_finished(), "fault injection did not fire");
    a.kill().await;
    let pending = all_progress(store, &layout).await.into_values().flatten().filter(|p| p.pending.is_some()).count();
    assert_eq!(pending, 1, "the crash must leave exactly one interrupted flush");

    // 2. Restarted; killed (no flush, no commit) once it flushed a few times, while more arrives.
    let b = ArchiveStage::start(settings(tenant, bootstrap, store.clone(), None, false), &telemetry).await.unwrap();
    let more = produce_all(&producer, tenant, &obs[1400..], 1400, &mut produced);
    more.await;
    // The redo happens once the interrupted flush's whole range is read again; then two more.
    for _ in 0..6000 {
        if b.metrics().redone_flushes.get() > 0 && b.flushes() >= 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(b.metrics().redone_flushes.get(), 1, "the interrupted flush was not redone");
    assert_eq!(b.metrics().abandoned_files.get(), 0, "the interrupted flush was abandoned");
    assert!(b.flushes() >= 3, "the second run did not flush after the redo");
    b.kill().await;

    // 3. Restarted to the end.
    let c = ArchiveStage::start(settings(tenant, bootstrap, store.clone(), None, false), &telemetry).await.unwrap();
    wait_archived(bootstrap, tenant, store, &layout, &c).await;
    c.shutdown().await;
    check_exactly_once(store, tenant, &produced, false).await;
    produced
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn archive_is_exactly_once_through_crashes_and_readable_by_pyarrow() {
    let Some(bootstrap) = geostream_tests::service("KAFKA_BOOTSTRAP", "archive exactly once") else { return };
    let Some(python) = geostream_tests::service("ARCHIVE_PYTHON", "archive read by pyarrow") else { return };
    let tenant = TenantId::new(geostream_tests::unique("arch")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = ArchiveStore::open(&format!("file://{}", dir.path().display()), &S3Options::default()).unwrap();
    let produced = crash_and_recover(&bootstrap, &tenant, &store).await;
    python_check(&python, dir.path(), &tenant, &produced);

    // Compaction: the AIS capture's hours are long closed; one run merges them.
    let layout = Layout::new(store.root.clone(), tenant.as_str());
    let before = data_files(&store, &layout, ArchiveKind::Observations).await.unwrap().len();
    let telemetry = Telemetry::new("sink", tenant.as_str());
    let d = ArchiveStage::start(settings(&tenant, &bootstrap, store.clone(), None, true), &telemetry).await.unwrap();
    for _ in 0..600 {
        let done = ArchiveKind::ALL.iter().all(|k| {
            d.metrics()
                .compactions
                .get_or_create(&geostream_archive::metrics::KindLabel { kind: k.as_str().into() })
                .get()
                > 0
        });
        if done {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    d.shutdown().await;
    let after = data_files(&store, &layout, ArchiveKind::Observations).await.unwrap().len();
    assert!(after < before, "compaction left {after} of {before} observation files");
    check_exactly_once(&store, &tenant, &produced, true).await;
    let text = telemetry.encode().unwrap();
    assert!(text.contains("geostream_archive_compactions_total"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn archive_on_an_s3_compatible_store_is_exactly_once() {
    let Some(bootstrap) = geostream_tests::service("KAFKA_BOOTSTRAP", "archive on S3") else { return };
    let Some(endpoint) = geostream_tests::service("S3_ENDPOINT", "archive on S3") else { return };
    let bucket = std::env::var("S3_BUCKET").unwrap_or_else(|_| "geostream-test".into());
    let key = std::env::var("S3_ACCESS_KEY_ID").unwrap();
    let secret = std::fs::read_to_string(std::env::var("S3_SECRET_ACCESS_KEY_FILE").unwrap()).unwrap();
    let tenant = TenantId::new(geostream_tests::unique("arch-s3")).unwrap();
    let s3 = S3Options {
        endpoint: Some(endpoint),
        region: None,
        access_key_id: Some(key),
        secret_access_key: Some(secret.trim().to_owned()),
        path_style: true,
        allow_http: true,
    };
    let store = ArchiveStore::open(&format!("s3://{bucket}/runs/{}", geostream_tests::unique("r")), &s3).unwrap();
    crash_and_recover(&bootstrap, &tenant, &store).await;
    let files: Vec<_> = store.list(&store.root).await.unwrap();
    assert!(files.iter().any(|m| m.location.as_ref().ends_with(".parquet")));
}
