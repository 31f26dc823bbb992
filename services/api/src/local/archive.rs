//! The archive side of the local backend: DataFusion over the GeoParquet archive
//! (`geostream_archive::register`) and the archive's per-partition progress objects.
//!
//! SQL only narrows (`WHERE` on date/hour directories, time, the `bbox` covering column and keyword
//! columns) and orders; the exact rules are applied in Rust by [`super::select`], so the pushdown
//! may be loose (a microsecond of slack on times, an epsilon on boxes) but never drops a match.

use std::sync::Arc;

use datafusion::arrow::array::{Array, AsArray};
use datafusion::arrow::datatypes::Int64Type;
use datafusion::prelude::SessionContext;
use futures::future::BoxFuture;
use geostream_archive::progress::Progress as PartitionProgress;
use geostream_archive::{ArchiveKind, ArchiveStore, Layout};
use geostream_model::time::OffsetDateTime;
use serde_json::Value;

use super::layer::Progress;
use super::select::{self, Scan};
use super::{ArchiveRead, FeedFigures};
use crate::problem::ApiError;
use crate::query::{Collection, Filters};

/// Microseconds: the archive's time unit.
const UNIT_NS: i64 = 1000;

/// The archive of one tenant, read through DataFusion.
pub struct DataFusionArchive {
    ctx: SessionContext,
    store: ArchiveStore,
    layout: Layout,
}

impl DataFusionArchive {
    /// Registers `tenant`'s tables of `store`.
    pub async fn open(store: ArchiveStore, tenant: &str) -> Result<DataFusionArchive, ApiError> {
        // Files are written while the API runs: a session that lists them on every query.
        let ctx = geostream_archive::read::session()
            .map_err(|e| ApiError::Archive(format!("archive at {}: {e}", store.url)))?;
        geostream_archive::register(&ctx, Arc::clone(&store.store), &store.root, tenant)
            .await
            .map_err(|e| ApiError::Archive(format!("archive at {}: {e}", store.url)))?;
        let layout = Layout::new(store.root.clone(), tenant);
        Ok(DataFusionArchive { ctx, store, layout })
    }

    /// Runs `sql` to the end; any failure is the archive's.
    async fn query(&self, sql: &str) -> Result<Vec<datafusion::arrow::record_batch::RecordBatch>, ApiError> {
        let run = async { self.ctx.sql(sql).await?.collect().await };
        run.await.map_err(|e: datafusion::error::DataFusionError| ApiError::Archive(format!("archive query: {e}")))
    }

    async fn rows(&self, sql: &str) -> Result<Vec<(i64, Value)>, ApiError> {
        let batches = self.query(sql).await?;
        let mut out = Vec::new();
        for b in batches {
            let features = b.column(0).as_string::<i32>();
            let times = b.column(1).as_primitive::<Int64Type>();
            for i in 0..b.num_rows() {
                if features.is_null(i) {
                    continue;
                }
                let f: Value = serde_json::from_str(features.value(i))
                    .map_err(|e| ApiError::Archive(format!("archive holds a feature that is not JSON: {e}")))?;
                out.push((times.value(i), f));
            }
        }
        Ok(out)
    }
}

fn table(c: Collection) -> &'static str {
    match c {
        Collection::Observations | Collection::Latest => "observations",
        Collection::Events => "events",
        Collection::Aggregates => "aggregates",
    }
}

/// A SQL string literal.
fn lit(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

fn micros(t: OffsetDateTime) -> i64 {
    i64::try_from(t.unix_timestamp_nanos().div_euclid(1000)).unwrap_or(i64::MAX)
}

fn day(t: OffsetDateTime) -> String {
    format!("{:04}-{:02}-{:02}", t.year(), u8::from(t.month()), t.day())
}

/// The `WHERE` clause narrowing `c` to candidates for `filters` after `after` (loose, see the
/// module docs).
pub fn pushdown(c: Collection, filters: &Filters, after: Option<&[Value]>) -> String {
    let mut w: Vec<String> = vec!["TRUE".into()];
    let t = "CAST(time AS BIGINT)";
    let (start, end) = (filters.time.start, filters.time.end);
    if c == Collection::Aggregates {
        if let Some(s) = start {
            w.push(format!("CAST(window_end AS BIGINT) >= {}", micros(s)));
        }
        if let Some(e) = end {
            w.push(format!("{t} <= {}", micros(e) + 1));
            w.push(format!("date <= {}", lit(&day(e))));
        }
    } else {
        if let Some(s) = start {
            w.push(format!("{t} >= {}", micros(s) - 1));
            w.push(format!("date >= {}", lit(&day(s))));
        }
        if let Some(e) = end {
            w.push(format!("{t} <= {}", micros(e) + 1));
            w.push(format!("date <= {}", lit(&day(e))));
        }
    }
    if let Some(b) = filters.bbox {
        let eps = 1e-9;
        let cx = "((get_field(bbox, 'xmin') + get_field(bbox, 'xmax')) / 2.0)";
        let cy = "((get_field(bbox, 'ymin') + get_field(bbox, 'ymax')) / 2.0)";
        w.push(format!("{cy} >= {} AND {cy} <= {}", b.south - eps, b.north + eps));
        if b.west <= b.east {
            w.push(format!("{cx} >= {} AND {cx} <= {}", b.west - eps, b.east + eps));
        } else {
            w.push(format!("({cx} >= {} OR {cx} <= {})", b.west - eps, b.east + eps));
        }
    }
    for (name, value) in &filters.terms {
        let column = match (c, *name) {
            (_, "feed" | "track") if c != Collection::Aggregates => Some(*name),
            (Collection::Events | Collection::Aggregates, "kind" | "analytic") => Some(*name),
            _ => None,
        };
        if let Some(col) = column {
            w.push(format!("{col} = {}", lit(value)));
        }
    }
    if let Some(key) = after
        && let Some(ns) = key.first().and_then(Value::as_i64)
    {
        let us = ns.div_euclid(UNIT_NS);
        if c == Collection::Events {
            w.push(format!("{t} <= {us}"));
        } else {
            w.push(format!("{t} >= {us}"));
        }
    }
    w.join(" AND ")
}

/// The ordered scan of up to `limit` candidates.
pub fn scan_sql(c: Collection, filters: &Filters, after: Option<&[Value]>, limit: usize) -> String {
    let order = match c {
        Collection::Events => "time DESC, id",
        Collection::Aggregates => "time, bin, id",
        Collection::Observations | Collection::Latest => "time, id",
    };
    format!(
        "SELECT feature, CAST(time AS BIGINT) AS t FROM {} WHERE {} ORDER BY {order} LIMIT {limit}",
        table(c),
        pushdown(c, filters, after)
    )
}

/// Every track's newest archived observation (the first written of equal times).
pub const LATEST_SQL: &str = "SELECT feature, t FROM (SELECT feature, CAST(time AS BIGINT) AS t, \
     row_number() OVER (PARTITION BY track ORDER BY time DESC, kafka_partition, kafka_offset) AS rn \
     FROM observations WHERE track IS NOT NULL) WHERE rn = 1";

impl ArchiveRead for DataFusionArchive {
    fn progress(&self) -> BoxFuture<'_, Result<Progress, ApiError>> {
        Box::pin(async move {
            let mut out = Progress::new();
            for kind in ArchiveKind::ALL {
                let objects = self
                    .store
                    .list(&self.layout.progress_dir(kind))
                    .await
                    .map_err(|e| ApiError::Archive(format!("archive progress: {e}")))?;
                for meta in objects {
                    let Some(bytes) = self
                        .store
                        .get(&meta.location)
                        .await
                        .map_err(|e| ApiError::Archive(format!("archive progress: {e}")))?
                    else {
                        continue;
                    };
                    let p = PartitionProgress::from_bytes(&bytes)
                        .map_err(|e| ApiError::Archive(format!("archive progress {}: {e}", meta.location)))?;
                    out.insert((kind.topic_kind(), p.partition), p.next_offset);
                }
            }
            Ok(out)
        })
    }

    fn scan<'a>(
        &'a self,
        c: Collection,
        filters: &'a Filters,
        after: Option<&'a [Value]>,
        limit: usize,
    ) -> BoxFuture<'a, Result<Scan, ApiError>> {
        Box::pin(async move {
            let rows = self.rows(&scan_sql(c, filters, after, limit)).await?;
            Ok(Scan { rows, unit_ns: UNIT_NS, limit })
        })
    }

    fn count<'a>(&'a self, c: Collection, filters: &'a Filters) -> BoxFuture<'a, Result<u64, ApiError>> {
        Box::pin(async move {
            // Exact: the loose pushdown narrows, the Rust rules decide, ids count once.
            let sql = format!(
                "SELECT feature, CAST(time AS BIGINT) AS t FROM {} WHERE {}",
                table(c),
                pushdown(c, filters, None)
            );
            let rows = self.rows(&sql).await?;
            let ids: std::collections::HashSet<String> = rows
                .iter()
                .filter(|(_, f)| select::matches(c, filters, f))
                .filter_map(|(_, f)| f.get("id").and_then(Value::as_str).map(str::to_owned))
                .collect();
            Ok(ids.len() as u64)
        })
    }

    fn by_id<'a>(&'a self, c: Collection, id: &'a str) -> BoxFuture<'a, Result<Vec<Value>, ApiError>> {
        Box::pin(async move {
            let sql = format!("SELECT feature, CAST(time AS BIGINT) AS t FROM {} WHERE id = {}", table(c), lit(id));
            Ok(self.rows(&sql).await?.into_iter().map(|(_, f)| f).collect())
        })
    }

    fn feeds(&self, since_ns: i64) -> BoxFuture<'_, Result<Vec<FeedFigures>, ApiError>> {
        Box::pin(async move {
            let since_us = since_ns.div_euclid(UNIT_NS);
            let sql = format!(
                "SELECT feed, CAST(COUNT(*) AS BIGINT), \
                 CAST(SUM(CASE WHEN CAST(received AS BIGINT) >= {since_us} THEN 1 ELSE 0 END) AS BIGINT), \
                 MAX(CAST(received AS BIGINT)), MAX(CAST(time AS BIGINT)) \
                 FROM observations WHERE feed IS NOT NULL GROUP BY feed"
            );
            let batches = self.query(&sql).await?;
            let mut out = Vec::new();
            for b in batches {
                let feed = b.column(0).as_string::<i32>();
                let ints = |i: usize| b.column(i).as_primitive::<Int64Type>();
                let (total, recent, received, time) = (ints(1), ints(2), ints(3), ints(4));
                let opt = |a: &datafusion::arrow::array::PrimitiveArray<Int64Type>, r: usize| {
                    (!a.is_null(r)).then(|| a.value(r).saturating_mul(UNIT_NS))
                };
                for r in 0..b.num_rows() {
                    out.push(FeedFigures {
                        feed: feed.value(r).to_owned(),
                        total: u64::try_from(total.value(r)).unwrap_or(0),
                        recent: if recent.is_null(r) { 0 } else { u64::try_from(recent.value(r)).unwrap_or(0) },
                        last_received_ns: opt(received, r),
                        last_time_ns: opt(time, r),
                    });
                }
            }
            Ok(out)
        })
    }

    fn latest(&self) -> BoxFuture<'_, Result<Vec<Value>, ApiError>> {
        Box::pin(async move { Ok(self.rows(LATEST_SQL).await?.into_iter().map(|(_, f)| f).collect()) })
    }
}
