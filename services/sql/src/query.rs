//! [`WindowQuery`]: one analytic's query, planned once, run per closed window.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Mutex;

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::Schema;
use datafusion::common::DataFusionError;
use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion::execution::context::{SQLOptions, SessionConfig, SessionContext};
use datafusion::logical_expr::{Expr, LogicalPlan, Volatility};
use datafusion::physical_plan::collect;
use geostream_analytics::engine::WindowSql;
use geostream_model::{Aggregate, AnalyticId, ErrorClass, Observation, Window};
use tokio::runtime::Runtime;

use crate::error::{SqlError, window_label};
use crate::results::{self, Layout};
use crate::table::{self, TABLE};

/// Stack of the query thread. DataFusion's planner and optimizer recurse over the expression
/// tree; we build it without its `recursive_protection` feature (stacker, a C build), so deep
/// expressions get a generous stack instead of the 2 MiB a spawned thread gets by default.
const STACK_BYTES: usize = 16 * 1024 * 1024;

/// Only queries: no DDL (`CREATE TABLE`, `CREATE EXTERNAL TABLE` would read files), no DML
/// (`COPY ... TO`, `INSERT` would write files), no `SET` (a query must not change the session the
/// next window runs in).
fn sql_options() -> SQLOptions {
    SQLOptions::new().with_allow_ddl(false).with_allow_dml(false).with_allow_statements(false)
}

/// The first function in the plan whose result is not a function of its arguments alone
/// (`now()`, `random()`, `uuid()`): it would make a window's aggregates depend on when or how
/// often it ran, which breaks deterministic ids and replays.
fn unstable_function(plan: &LogicalPlan) -> Result<Option<String>, DataFusionError> {
    let mut found = None;
    plan.apply_with_subqueries(|node| {
        node.apply_expressions(|e| {
            e.apply(|e| {
                if let Expr::ScalarFunction(f) = e
                    && f.func.signature().volatility != Volatility::Immutable
                {
                    found = Some(f.func.name().to_owned());
                    return Ok(TreeNodeRecursion::Stop);
                }
                Ok(TreeNodeRecursion::Continue)
            })
        })
    })?;
    Ok(found)
}

fn class_of(e: &DataFusionError) -> ErrorClass {
    match e.find_root() {
        DataFusionError::ResourcesExhausted(_) => ErrorClass::External,
        DataFusionError::Internal(_) => ErrorClass::Internal,
        _ => ErrorClass::User,
    }
}

/// One `sql` analytic's query, checked against the `observations` schema at construction and run
/// over each closed window's observations.
///
/// Every call does its DataFusion work on a short-lived thread of its own (scoped, so it borrows
/// the observations) that drives a current-thread tokio runtime owned by the query. So the caller
/// may be a plain thread or a tokio worker alike (block_on would panic on a worker thread); it
/// blocks for the duration of the query either way, so async callers should still call it from
/// `spawn_blocking` to keep their runtime responsive. Calls on one `WindowQuery` are serialized.
pub struct WindowQuery {
    analytic: AnalyticId,
    query: String,
    ctx: SessionContext,
    layout: Layout,
    /// `None` only while dropping; see the `Drop` impl.
    runtime: Option<Runtime>,
    /// The table is swapped per window in a shared catalog, so two windows must not overlap.
    running: Mutex<()>,
}

impl fmt::Debug for WindowQuery {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WindowQuery").field("analytic", &self.analytic).field("query", &self.query).finish()
    }
}

impl Drop for WindowQuery {
    fn drop(&mut self) {
        // Dropping a runtime blocks until its tasks end, which tokio forbids (panics) inside
        // another runtime; shutting it down in the background is allowed anywhere, and it has no
        // tasks left once a call returned.
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

/// Runs `f` on a fresh thread with a large stack and waits for it; a panic there comes back as
/// an error instead of unwinding into the caller.
fn on_query_thread<T: Send>(analytic: &AnalyticId, f: impl FnOnce() -> T + Send) -> Result<T, SqlError> {
    std::thread::scope(|s| {
        let handle = std::thread::Builder::new()
            .name("geostream-sql".into())
            .stack_size(STACK_BYTES)
            .spawn_scoped(s, f)
            .map_err(|e| SqlError::Runtime { analytic: analytic.to_string(), message: e.to_string() })?;
        handle.join().map_err(|payload| {
            let message = payload
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "(no message)".into());
            SqlError::Panicked { analytic: analytic.to_string(), message }
        })
    })
}

impl WindowQuery {
    /// Parses and plans `query` against the observations schema now, so a bad query (syntax,
    /// unknown column or function, wrong types, a statement that is not a query, a
    /// non-reproducible function such as `now()`, result columns the aggregate mapping cannot
    /// use) is refused at registration with DataFusion's message
    /// plus the analytic id, not at the first window.
    pub fn new(analytic: AnalyticId, query: &str) -> Result<Self, SqlError> {
        let refused = |message: String| SqlError::Query { analytic: analytic.to_string(), message };
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .map_err(|e| SqlError::Runtime { analytic: analytic.to_string(), message: e.to_string() })?;
        // One partition: the plan is the same for every window and rows come out in an order that
        // depends on the input alone; windows are small, parallelism would only cost.
        let config = SessionConfig::new().with_target_partitions(1).with_information_schema(false);
        let ctx = SessionContext::new_with_config(config);
        for udf in crate::functions::udfs() {
            ctx.register_udf(udf);
        }
        ctx.register_batch(TABLE, RecordBatch::new_empty(table::schema()))
            .map_err(|e| refused(format!("cannot register the observations table (a bug): {e}")))?;
        // Plan to a physical plan and run it once on the empty table: the physical planner and
        // constant folding (e.g. `st_geohash(st_point(1, 2), 99)`) find errors the logical
        // planner does not.
        let planned: Result<Schema, DataFusionError> = on_query_thread(&analytic, || {
            runtime.block_on(async {
                let df = ctx.sql_with_options(query, sql_options()).await?;
                // Before optimizing: the optimizer folds `now()` into a constant.
                if let Some(name) = unstable_function(df.logical_plan())? {
                    return Err(DataFusionError::Plan(format!(
                        "{name}() gives a different result each time the window is computed, so the \
                         aggregates and their ids would not be reproducible; use window_start or window_end \
                         for times"
                    )));
                }
                let plan = df.create_physical_plan().await?;
                collect(plan.clone(), ctx.task_ctx()).await?;
                Ok(plan.schema().as_ref().clone())
            })
        })?;
        let schema = planned.map_err(|e| refused(e.to_string()))?;
        let layout = Layout::new(&schema).map_err(refused)?;
        Ok(Self { analytic, query: query.to_owned(), ctx, layout, runtime: Some(runtime), running: Mutex::new(()) })
    }

    /// The analytic this query belongs to.
    pub fn analytic(&self) -> &AnalyticId {
        &self.analytic
    }

    /// The query text.
    pub fn query(&self) -> &str {
        &self.query
    }

    /// Runs the query over one closed window's observations; one [`Aggregate`] of kind `sql` per
    /// result row, validated, sorted by bin key. Same input, same output, ids included.
    pub fn run(&self, window: &Window, observations: &[Observation]) -> Result<Vec<Aggregate>, SqlError> {
        let analytic = || self.analytic.to_string();
        let label = || window_label(window);
        let batch = table::batch(window, observations).map_err(|(observation, problem)| SqlError::Input {
            analytic: analytic(),
            window: label(),
            observation,
            problem,
        })?;
        let Some(runtime) = &self.runtime else {
            return Err(SqlError::Panicked { analytic: analytic(), message: "runtime gone before drop".into() });
        };
        // A previous call that panicked leaves the lock poisoned, but it guards no data: the table
        // is replaced below anyway.
        let _serial = self.running.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let ctx = &self.ctx;
        let query = self.query.as_str();
        let batches: Result<Vec<RecordBatch>, DataFusionError> = on_query_thread(&self.analytic, move || {
            runtime.block_on(async move {
                ctx.deregister_table(TABLE)?;
                ctx.register_batch(TABLE, batch)?;
                let result = match ctx.sql_with_options(query, sql_options()).await {
                    Ok(df) => df.collect().await,
                    Err(e) => Err(e),
                };
                // Release the window's data now rather than holding it until the next window.
                ctx.deregister_table(TABLE)?;
                result
            })
        })?;
        let batches = batches.map_err(|e| SqlError::Execution {
            analytic: analytic(),
            window: label(),
            message: e.to_string(),
            class: class_of(&e),
        })?;
        let mut out = BTreeMap::new();
        for b in &batches {
            results::collect(&self.layout, &self.analytic, window, b, &mut out)
                .map_err(|problem| SqlError::Result { analytic: analytic(), window: label(), problem })?;
        }
        Ok(out.into_values().collect())
    }
}

impl WindowSql for WindowQuery {
    fn run(&mut self, window: &Window, observations: &[Observation]) -> Result<Vec<Aggregate>, String> {
        WindowQuery::run(self, window, observations).map_err(|e| e.to_string())
    }
}

/// Builds the [`WindowSql`] of an analytic of kind `sql` from its id and query; a refused query
/// comes back as the error's text. The engine's factory takes the whole spec, so wiring it is
/// one closure: `move |spec| match &spec.analytic { AnalyticKind::Sql { query, .. } =>
/// f(&spec.id, query), _ => Err(..) }`.
pub fn factory() -> impl Fn(&AnalyticId, &str) -> Result<Box<dyn WindowSql>, String> + Send + Sync {
    |analytic: &AnalyticId, query: &str| {
        WindowQuery::new(analytic.clone(), query).map(|q| Box::new(q) as Box<dyn WindowSql>).map_err(|e| e.to_string())
    }
}

/// The engine's SQL runner: builds a [`WindowQuery`] for each `sql` analytic of a spec set. The
/// processor and `geostream analyze` hand it to `geostream_analytics::engine::EngineConfig`.
pub fn runner() -> std::sync::Arc<geostream_analytics::engine::SqlFactory> {
    let build = factory();
    std::sync::Arc::new(move |spec: &geostream_analytics::spec::AnalyticSpec| match &spec.analytic {
        geostream_analytics::spec::AnalyticKind::Sql { query, .. } => build(&spec.id, query),
        other => Err(format!("analytic {} is a {} analytic, not sql", spec.id, other.name())),
    })
}
