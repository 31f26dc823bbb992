//! The archive as DataFusion tables: `observations`, `events` and `aggregates`, listing tables over
//! `<root>/<tenant>/<kind>/` with the hive partition columns `date` (Utf8, `YYYY-MM-DD`) and `hour`
//! (Utf8, `HH`) appended to the kind's schema ([`crate::rows::schema`]).
//!
//! Queries should restrict `date`/`hour` (whole directories are skipped) and may filter on the
//! `bbox` struct (`get_field(bbox, 'xmin')` …; row groups are skipped by its statistics). The same record can
//! briefly be in two files after an interrupted compaction, so readers dedupe by `id`; for
//! aggregates keep the row with the highest `version` (see [`DEDUPED`]).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use datafusion::arrow::datatypes::DataType;
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::{ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl};
use datafusion::prelude::SessionContext;
use object_store::ObjectStore;
use object_store::path::Path;

use crate::error::ArchiveError;
use crate::kind::ArchiveKind;
use crate::layout::Layout;
use crate::rows::schema;

/// Queries that return each record once, per table (`SELECT * FROM (<query>)`): the first copy of
/// an observation or event, the highest version of an aggregate.
pub const DEDUPED: [(&str, &str); 3] = [
    ("observations", "SELECT DISTINCT ON (id) * FROM observations ORDER BY id, kafka_offset"),
    ("events", "SELECT DISTINCT ON (id) * FROM events ORDER BY id, kafka_offset"),
    ("aggregates", "SELECT DISTINCT ON (id) * FROM aggregates ORDER BY id, version DESC"),
];

/// What [`register`] registered.
#[derive(Debug, Clone)]
pub struct ArchiveTables {
    /// The object store URL the archive's store was registered under (unique per call).
    pub store_url: String,
    /// Table name and its listing URL.
    pub tables: Vec<(String, String)>,
}

static REGISTRATIONS: AtomicU64 = AtomicU64::new(0);

/// A DataFusion session for reading an archive that is being written: DataFusion (since 51)
/// caches file listings for ever by default, so a session made with `SessionContext::new()`
/// never sees a file written after its first query (an archive-backed API then loses every
/// record its live layer hands over to the archive). This one lists the files on every query.
pub fn session() -> Result<SessionContext, ArchiveError> {
    use datafusion::execution::cache::cache_manager::CacheManagerConfig;
    use datafusion::execution::runtime_env::RuntimeEnvBuilder;
    let runtime = RuntimeEnvBuilder::new()
        .with_cache_manager(CacheManagerConfig::default().with_list_files_cache_limit(0))
        .build_arc()?;
    Ok(SessionContext::new_with_config_rt(datafusion::prelude::SessionConfig::new(), runtime))
}

/// Registers the tables `observations`, `events` and `aggregates` of `tenant`'s archive below
/// `root` in `store`. Tables of a kind nothing was archived for yet are empty. In a [`session`],
/// files are listed per query, so new and compacted files show up without registering again.
pub async fn register(
    ctx: &SessionContext,
    store: Arc<dyn ObjectStore>,
    root: &Path,
    tenant: &str,
) -> Result<ArchiveTables, ArchiveError> {
    // A scheme of our own: the store may be a prefixed local directory or a bucket, and several
    // archives may be registered in one context.
    let n = REGISTRATIONS.fetch_add(1, Ordering::Relaxed);
    let store_url = format!("geostream-archive://a{n}/");
    let parsed = url::Url::parse(&store_url).map_err(|e| datafusion::error::DataFusionError::External(Box::new(e)))?;
    ctx.register_object_store(&parsed, store);
    let layout = Layout::new(root.clone(), tenant);
    let mut tables = Vec::new();
    for kind in ArchiveKind::ALL {
        let url = format!("{store_url}{}/", layout.kind_dir(kind));
        let options = ListingOptions::new(Arc::new(ParquetFormat::default()))
            .with_file_extension(".parquet")
            .with_table_partition_cols(vec![("date".into(), DataType::Utf8), ("hour".into(), DataType::Utf8)]);
        let config = ListingTableConfig::new(ListingTableUrl::parse(&url)?)
            .with_listing_options(options)
            .with_schema(schema(kind));
        ctx.register_table(kind.as_str(), Arc::new(ListingTable::try_new(config)?))?;
        tables.push((kind.as_str().to_owned(), url));
    }
    Ok(ArchiveTables { store_url, tables })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::geoparquet;
    use crate::layout::{FileName, HourKey};
    use crate::rows::{Row, to_batch};
    use crate::store::{ArchiveStore, S3Options};
    use datafusion::arrow::array::AsArray;
    use datafusion::arrow::datatypes::Int64Type;
    use geostream_model::geojson::Geometry;
    use geostream_model::{FeedId, Observation, TrackId};
    use time::macros::datetime;

    async fn count(ctx: &SessionContext, sql: &str) -> i64 {
        let batches = ctx.sql(sql).await.unwrap().collect().await.unwrap();
        batches[0].column(0).as_primitive::<Int64Type>().value(0)
    }

    #[tokio::test]
    async fn tables_read_the_hive_layout_and_filter_by_bbox() {
        let dir = tempfile::tempdir().unwrap();
        let store = ArchiveStore::open(&format!("file://{}", dir.path().display()), &S3Options::default()).unwrap();
        let layout = Layout::new(store.root.clone(), "acme");
        // Two hours, points along a line from (0, 0) to (9, 9).
        for (h, range) in [(9u8, 0..5), (10, 5..10)] {
            let rows: Vec<Row> = range
                .map(|i| {
                    let t = datetime!(2026-11-26 00:00 UTC) + time::Duration::hours(i64::from(h));
                    let o = Observation::try_new(
                        FeedId::new("f").unwrap(),
                        Some(TrackId::new(format!("t{i}")).unwrap()),
                        t,
                        t,
                        Geometry::new_point([f64::from(i), f64::from(i)]),
                        Default::default(),
                    )
                    .unwrap();
                    Row::parse(ArchiveKind::Observations, 0, i64::from(i), &serde_json::to_vec(&o).unwrap()).unwrap()
                })
                .collect();
            let hour = rows[0].hour();
            assert_eq!(hour, HourKey::of(datetime!(2026-11-26 00:00 UTC) + time::Duration::hours(i64::from(h))));
            let bytes = geoparquet::write(&[to_batch(ArchiveKind::Observations, &rows).unwrap()]).unwrap();
            let name = FileName::Batch { partition: 0, first: rows[0].offset, last: rows[rows.len() - 1].offset };
            store.put(&layout.file(ArchiveKind::Observations, hour, &name), bytes).await.unwrap();
        }
        // A temporary file of an interrupted local write is not part of the table.
        std::fs::write(dir.path().join("acme/observations/date=2026-11-26/hour=09/p1-0-1.parquet#3"), b"PAR1").unwrap();
        let ctx = session().unwrap();
        let t = register(&ctx, store.store.clone(), &store.root, "acme").await.unwrap();
        assert_eq!(t.tables.len(), 3);
        assert_eq!(count(&ctx, "SELECT count(*) FROM observations").await, 10);
        assert_eq!(count(&ctx, "SELECT count(*) FROM observations WHERE hour = '10'").await, 5);
        assert_eq!(
            count(&ctx, "SELECT count(*) FROM observations WHERE get_field(bbox, 'xmin') >= 2.5 AND get_field(bbox, 'xmax') <= 6.5").await,
            4
        );
        assert_eq!(count(&ctx, "SELECT count(*) FROM events").await, 0, "no events archived yet");
        assert_eq!(count(&ctx, &format!("SELECT count(*) FROM ({})", DEDUPED[0].1)).await, 10);

        // A file written after the queries above is seen by the next one (no listing cache).
        let t = datetime!(2026-11-26 11:00 UTC);
        let o = Observation::try_new(
            FeedId::new("f").unwrap(),
            Some(TrackId::new("late").unwrap()),
            t,
            t,
            Geometry::new_point([1.0, 1.0]),
            Default::default(),
        )
        .unwrap();
        let row = Row::parse(ArchiveKind::Observations, 0, 10, &serde_json::to_vec(&o).unwrap()).unwrap();
        let bytes = geoparquet::write(&[to_batch(ArchiveKind::Observations, &[row]).unwrap()]).unwrap();
        let name = FileName::Batch { partition: 0, first: 10, last: 10 };
        store.put(&layout.file(ArchiveKind::Observations, HourKey::of(t), &name), bytes).await.unwrap();
        assert_eq!(count(&ctx, "SELECT count(*) FROM observations").await, 11, "a file written meanwhile");
    }
}
