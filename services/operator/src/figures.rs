//! The live figures of a feed as ingest reports them (observations per second, last input), for
//! SensorFeed status. Ingest exports them as Prometheus series
//! (`geostream_ingest_accepted_total`, `geostream_ingest_last_seen_timestamp_seconds`, labelled
//! with tenant and feed); parsing is pure, the source thin.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use futures::future::BoxFuture;
use serde_json::Value;

use crate::usage::{Prometheus, UsageError};

/// One feed's figures.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Figures {
    /// Observations accepted per second (5-minute rate).
    pub rate_per_second: Option<f64>,
    /// Unix seconds of the last input.
    pub last_seen: Option<i64>,
}

/// (tenant, feed id) to figures.
pub type FiguresMap = BTreeMap<(String, String), Figures>;

/// A source of feed figures.
pub trait FeedFigures: Send + Sync {
    /// Figures of every feed the source knows.
    fn figures(&self) -> BoxFuture<'_, Result<FiguresMap, UsageError>>;
}

/// Folds the answers of the rate and last-seen queries (vectors labelled tenant and feed). Pure.
pub fn parse_figures(rate: &Value, last_seen: &Value) -> FiguresMap {
    let mut out = FiguresMap::new();
    let mut fold = |v: &Value, set: &dyn Fn(&mut Figures, f64)| {
        for r in v["data"]["result"].as_array().into_iter().flatten() {
            let (Some(t), Some(f)) = (r["metric"]["tenant"].as_str(), r["metric"]["feed"].as_str()) else { continue };
            if let Some(x) = r["value"][1].as_str().and_then(|s| s.parse::<f64>().ok()).filter(|x| x.is_finite()) {
                set(out.entry((t.to_owned(), f.to_owned())).or_default(), x);
            }
        }
    };
    fold(rate, &|fig, x| fig.rate_per_second = Some((x * 1000.0).round() / 1000.0));
    // Zero means "never seen" in ingest's gauge.
    fold(last_seen, &|fig, x| fig.last_seen = (x > 0.0).then_some(x as i64));
    out
}

/// Reads the figures from Prometheus.
pub struct PrometheusFigures(Prometheus);

impl PrometheusFigures {
    /// A source querying `url`.
    pub fn new(url: impl Into<String>) -> Self {
        Self(Prometheus::new(url))
    }

    async fn query(&self, q: &str) -> Result<Value, UsageError> {
        self.0.query(q).await
    }
}

impl FeedFigures for PrometheusFigures {
    fn figures(&self) -> BoxFuture<'_, Result<FiguresMap, UsageError>> {
        Box::pin(async move {
            let rate = self.query("sum by (tenant, feed) (rate(geostream_ingest_accepted_total[5m]))").await?;
            let seen = self.query("max by (tenant, feed) (geostream_ingest_last_seen_timestamp_seconds)").await?;
            Ok(parse_figures(&rate, &seen))
        })
    }
}

/// Test double: figures set by the test, not reported by any ingest.
#[derive(Clone, Default)]
pub struct StaticFiguresTestDouble {
    map: Arc<Mutex<FiguresMap>>,
}

impl StaticFiguresTestDouble {
    /// Sets one feed's figures.
    pub fn set(&self, tenant: &str, feed: &str, figures: Figures) {
        self.map.lock().unwrap_or_else(|p| p.into_inner()).insert((tenant.into(), feed.into()), figures);
    }
}

impl FeedFigures for StaticFiguresTestDouble {
    fn figures(&self) -> BoxFuture<'_, Result<FiguresMap, UsageError>> {
        let map = self.map.lock().unwrap_or_else(|p| p.into_inner()).clone();
        Box::pin(async move { Ok(map) })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::json;

    fn vector(points: &[(&str, &str, &str)]) -> Value {
        let result: Vec<Value> =
            points.iter().map(|(t, f, v)| json!({"metric": {"tenant": t, "feed": f}, "value": [1.0, v]})).collect();
        json!({"status": "success", "data": {"resultType": "vector", "result": result}})
    }

    #[test]
    fn rate_and_last_seen_join_by_tenant_and_feed() {
        let m = parse_figures(
            &vector(&[("acme", "ais", "2.34567"), ("acme", "gps", "NaN")]),
            &vector(&[("acme", "ais", "1700000000"), ("acme", "gps", "0"), ("beta", "x", "1700000001")]),
        );
        let ais = m[&("acme".to_owned(), "ais".to_owned())];
        assert_eq!((ais.rate_per_second, ais.last_seen), (Some(2.346), Some(1_700_000_000)));
        assert_eq!(m[&("acme".to_owned(), "gps".to_owned())], Figures::default(), "NaN and never seen");
        assert_eq!(m[&("beta".to_owned(), "x".to_owned())].last_seen, Some(1_700_000_001));
    }
}
