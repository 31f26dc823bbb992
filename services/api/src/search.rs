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
    pub async fn search(&self, index: &str, body: &Value) -> Result<Value, ApiError> {
        let mut headers = HeaderMap::new();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        let path = format!("/{index}/_search");
        let query = [("ignore_unavailable", "true"), ("allow_no_indices", "true")];
        let bytes = serde_json::to_vec(body).map_err(|e| ApiError::Upstream(e.to_string()))?;
        let resp = self
            .es
            .send(Method::Post, &path, headers, Some(&query), Some(bytes), None)
            .await
            .map_err(|e| ApiError::Upstream(format!("POST {path}: {e}")))?;
        let status = resp.status_code().as_u16();
        let text = resp.text().await.map_err(|e| ApiError::Upstream(format!("POST {path}: {e}")))?;
        if !(200..300).contains(&status) {
            let excerpt: String = text.chars().take(EXCERPT).collect();
            return Err(ApiError::Upstream(format!("POST {path}: HTTP {status}: {excerpt}")));
        }
        serde_json::from_str(&text).map_err(|e| ApiError::Upstream(format!("POST {path}: answer is not JSON: {e}")))
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
