//! The engine side: one `_search` request per call, the same on Elasticsearch and OpenSearch.

use std::time::Duration;

use elasticsearch::Elasticsearch;
use elasticsearch::auth::Credentials;
use elasticsearch::http::headers::{CONTENT_TYPE, HeaderMap, HeaderValue};
use elasticsearch::http::transport::{SingleNodeConnectionPool, TransportBuilder};
use elasticsearch::http::{Method, Url};
use serde_json::Value;

use crate::problem::ApiError;

/// The engine URL or credentials cannot make a client.
#[derive(Debug, thiserror::Error)]
#[error("search engine client for {url}: {problem}")]
pub struct ClientConfigError {
    /// The configured URL.
    pub url: String,
    /// What is wrong.
    pub problem: String,
}

/// A search client for one engine URL.
#[derive(Debug, Clone)]
pub struct Search {
    es: Elasticsearch,
}

/// Longest piece of an engine error kept in a problem's detail.
const EXCERPT: usize = 300;

/// Waits between searches while a shard is not started: 100, 200, ... 3,200 ms, about 6 s in all.
const SHARD_WAIT_FIRST: Duration = Duration::from_millis(100);
const SHARD_WAIT_LAST: Duration = Duration::from_millis(3200);

/// How one search request ended, when not with hits.
enum Attempt {
    /// 503 naming a shard that is not started (yet).
    ShardNotStarted(ApiError),
    Failed(ApiError),
}

impl Search {
    /// A client for `url`, with basic auth when a username is given.
    pub fn new(
        url: &str,
        username: Option<&str>,
        password: Option<&str>,
        timeout: Duration,
    ) -> Result<Self, ClientConfigError> {
        let config = |problem: String| ClientConfigError { url: url.to_owned(), problem };
        let parsed = Url::parse(url).map_err(|e| config(e.to_string()))?;
        let mut builder = TransportBuilder::new(SingleNodeConnectionPool::new(parsed)).timeout(timeout);
        if let Some(user) = username {
            builder = builder.auth(Credentials::Basic(user.to_owned(), password.unwrap_or_default().to_owned()));
        }
        let transport = builder.build().map_err(|e| config(e.to_string()))?;
        Ok(Search { es: Elasticsearch::new(transport) })
    }

    /// Runs `body` against `index` (a name or pattern). Missing indices answer no hits rather than
    /// 404: a tenant with no events yet has an empty collection, not a broken one.
    ///
    /// A search that finds a shard not started yet is tried again for up to about 6 s: the sink
    /// creates a day's observation index when the first record of that day arrives, and until its
    /// primary shard starts (well under a second on a healthy engine) every search over the
    /// pattern fails with 503 (`no_shard_available_action_exception` on Elasticsearch). Without the retry a map
    /// dashboard shows an error at each new index; a shard that stays unavailable (a real outage)
    /// still fails, with the engine's answer.
    pub async fn search(&self, index: &str, body: &Value) -> Result<Value, ApiError> {
        let mut wait = SHARD_WAIT_FIRST;
        loop {
            match self.search_once(index, body).await {
                Err(Attempt::ShardNotStarted(e)) if wait <= SHARD_WAIT_LAST => {
                    tracing::debug!(index, error = %e, "a shard is not started yet; searching again");
                    tokio::time::sleep(wait).await;
                    wait *= 2;
                }
                Err(Attempt::ShardNotStarted(e) | Attempt::Failed(e)) => return Err(e),
                Ok(v) => return Ok(v),
            }
        }
    }

    async fn search_once(&self, index: &str, body: &Value) -> Result<Value, Attempt> {
        let fail = |e: ApiError| Attempt::Failed(e);
        let mut headers = HeaderMap::new();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        let path = format!("/{index}/_search");
        let query = [("ignore_unavailable", "true"), ("allow_no_indices", "true")];
        let bytes = serde_json::to_vec(body).map_err(|e| fail(ApiError::Upstream(e.to_string())))?;
        let resp = self
            .es
            .send(Method::Post, &path, headers, Some(&query), Some(bytes), None)
            .await
            .map_err(|e| fail(ApiError::Upstream(format!("POST {path}: {e}"))))?;
        let status = resp.status_code().as_u16();
        let text = resp.text().await.map_err(|e| fail(ApiError::Upstream(format!("POST {path}: {e}"))))?;
        if !(200..300).contains(&status) {
            let excerpt: String = text.chars().take(EXCERPT).collect();
            let e = ApiError::Upstream(format!("POST {path}: HTTP {status}: {excerpt}"));
            // Elasticsearch names the cause; OpenSearch answers the same case with "all shards
            // failed" and no shard listed. A 503 means the shards were unavailable, not the query.
            let unstarted = text.contains("no_shard_available_action_exception") || text.contains("all shards failed");
            return Err(if status == 503 && unstarted { Attempt::ShardNotStarted(e) } else { Attempt::Failed(e) });
        }
        serde_json::from_str(&text)
            .map_err(|e| fail(ApiError::Upstream(format!("POST {path}: answer is not JSON: {e}"))))
    }

    /// Whether the engine answers at all (for readiness).
    pub async fn ping(&self) -> Result<(), ApiError> {
        let resp = self
            .es
            .send(Method::Get, "/_cluster/health", HeaderMap::new(), Option::<&()>::None, Option::<Vec<u8>>::None, None)
            .await
            .map_err(|e| ApiError::Upstream(format!("GET /_cluster/health: {e}")))?;
        let status = resp.status_code().as_u16();
        if (200..300).contains(&status) {
            Ok(())
        } else {
            Err(ApiError::Upstream(format!("GET /_cluster/health: HTTP {status}")))
        }
    }
}
