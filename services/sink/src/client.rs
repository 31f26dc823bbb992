//! The search engine side of the shell: identify the engine, install templates, send bulk bodies.
//! Every call is one HTTP request; retrying is the caller's decision, guided by
//! [`Classify::retryable`].

use std::time::Duration;

use elasticsearch::Elasticsearch;
use elasticsearch::auth::Credentials;
use elasticsearch::http::Method;
use elasticsearch::http::Url;
use elasticsearch::http::headers::{CONTENT_TYPE, HeaderMap, HeaderValue};
use elasticsearch::http::transport::{SingleNodeConnectionPool, TransportBuilder};
use geostream_model::{Classify, ErrorClass};
use serde_json::Value;

use crate::engine::{DetectError, Engine, detect};
use crate::templates::Template;

/// Errors talking to the engine.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The URL or credentials cannot make a client.
    #[error("search engine client for {url}: {problem}")]
    Config {
        /// The configured URL.
        url: String,
        /// What is wrong.
        problem: String,
    },
    /// The request did not get an answer (refused, reset, timed out).
    #[error("{what} at {url}: no answer: {source}")]
    Transport {
        /// The request.
        what: String,
        /// The engine URL.
        url: String,
        /// The client's error.
        source: elasticsearch::Error,
    },
    /// The engine answered with an error status.
    #[error("{what} at {url}: HTTP {status}: {body}")]
    Status {
        /// The request.
        what: String,
        /// The engine URL.
        url: String,
        /// The status.
        status: u16,
        /// The start of the answer.
        body: String,
        /// The engine's `Retry-After` on a 429 or 503 (a proxy in front of it may send one).
        retry_after: Option<Duration>,
    },
    /// The node info was not understood.
    #[error("{url}: {source}")]
    Detect {
        /// The engine URL.
        url: String,
        /// Why.
        source: DetectError,
    },
}

impl Classify for ClientError {
    fn class(&self) -> ErrorClass {
        match self {
            ClientError::Config { .. } => ErrorClass::User,
            ClientError::Transport { .. } | ClientError::Detect { .. } => ErrorClass::External,
            ClientError::Status { status, .. } if *status == 429 || *status >= 500 => ErrorClass::External,
            // 401/403: wrong credentials or privileges; 400 on a template: a bug or an engine that
            // refuses our mapping. Neither fixes itself, but the sink keeps retrying them at start
            // anyway (with the error in the log and /readyz) because a cluster being set up may
            // grant privileges later.
            ClientError::Status { .. } => ErrorClass::User,
        }
    }

    fn retryable(&self) -> bool {
        self.class() == ErrorClass::External
    }
}

impl ClientError {
    /// How long the engine asked to be left alone, if it did.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            ClientError::Status { retry_after, .. } => *retry_after,
            _ => None,
        }
    }
}

/// A client for one engine URL.
#[derive(Debug, Clone)]
pub struct SearchClient {
    es: Elasticsearch,
    url: String,
}

/// Longest piece of an error answer kept in messages.
const BODY_EXCERPT: usize = 500;

impl SearchClient {
    /// A client for `url`, with basic auth when a username is given.
    pub fn new(
        url: &str,
        username: Option<&str>,
        password: Option<&str>,
        timeout: Duration,
    ) -> Result<Self, ClientError> {
        let config = |problem: String| ClientError::Config { url: url.to_owned(), problem };
        let parsed = Url::parse(url).map_err(|e| config(e.to_string()))?;
        let mut builder = TransportBuilder::new(SingleNodeConnectionPool::new(parsed)).timeout(timeout);
        if let Some(user) = username {
            builder = builder.auth(Credentials::Basic(user.to_owned(), password.unwrap_or_default().to_owned()));
        }
        let transport = builder.build().map_err(|e| config(e.to_string()))?;
        Ok(SearchClient { es: Elasticsearch::new(transport), url: url.to_owned() })
    }

    /// The engine URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    async fn request(
        &self,
        what: &str,
        method: Method,
        path: &str,
        headers: HeaderMap,
        body: Option<Vec<u8>>,
    ) -> Result<(u16, HeaderMap, Vec<u8>), ClientError> {
        let transport = |source| ClientError::Transport { what: what.to_owned(), url: self.url.clone(), source };
        let resp = self.es.send(method, path, headers, Option::<&()>::None, body, None).await.map_err(transport)?;
        let status = resp.status_code().as_u16();
        let headers = resp.headers().clone();
        let bytes = resp.bytes().await.map_err(transport)?;
        Ok((status, headers, bytes.to_vec()))
    }

    fn status_error(&self, what: &str, status: u16, body: &[u8]) -> ClientError {
        let text = String::from_utf8_lossy(body);
        ClientError::Status {
            what: what.to_owned(),
            url: self.url.clone(),
            status,
            body: text.chars().take(BODY_EXCERPT).collect(),
            retry_after: None,
        }
    }

    /// Identifies the engine (see [`crate::engine`]).
    pub async fn detect(&self) -> Result<Engine, ClientError> {
        let what = "GET /_nodes/_local";
        let (status, headers, body) = self.request(what, Method::Get, "/_nodes/_local", HeaderMap::new(), None).await?;
        if !(200..300).contains(&status) {
            return Err(self.status_error(what, status, &body));
        }
        let nodes: Value = serde_json::from_slice(&body).map_err(|e| ClientError::Detect {
            url: self.url.clone(),
            source: DetectError(format!("not JSON: {e}")),
        })?;
        let product = headers.get("x-elastic-product").and_then(|v| v.to_str().ok());
        detect(product, &nodes).map_err(|source| ClientError::Detect { url: self.url.clone(), source })
    }

    /// Installs (or replaces with the same content) one index template.
    pub async fn put_template(&self, t: &Template) -> Result<(), ClientError> {
        let what = format!("PUT /_index_template/{}", t.name);
        let body = serde_json::to_vec(&t.body).map_err(|e| self.status_error(&what, 0, e.to_string().as_bytes()))?;
        let path = format!("/_index_template/{}", t.name);
        let (status, _, answer) = self.request(&what, Method::Put, &path, HeaderMap::new(), Some(body)).await?;
        if (200..300).contains(&status) { Ok(()) } else { Err(self.status_error(&what, status, &answer)) }
    }

    /// Sends one NDJSON bulk body; returns the answer body of a 200. Any other status is an error
    /// for the whole request (then no item was applied, or the caller cannot know which were).
    pub async fn bulk(&self, body: Vec<u8>) -> Result<Vec<u8>, ClientError> {
        let what = "POST /_bulk";
        let mut headers = HeaderMap::new();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/x-ndjson"));
        let (status, headers, answer) = self.request(what, Method::Post, "/_bulk", headers, Some(body)).await?;
        if status == 200 {
            return Ok(answer);
        }
        let mut e = self.status_error(what, status, &answer);
        if let ClientError::Status { retry_after, .. } = &mut e
            && matches!(status, 429 | 503)
        {
            *retry_after = headers.get("retry-after").and_then(|v| v.to_str().ok()).and_then(|v| {
                geostream_model::backoff::parse_retry_after(v, geostream_model::time::OffsetDateTime::now_utc())
            });
        }
        Err(e)
    }

    /// Makes recent writes visible to search (tests and tools; the sink never needs it).
    pub async fn refresh(&self, index_pattern: &str) -> Result<(), ClientError> {
        let what = format!("POST /{index_pattern}/_refresh");
        let (status, _, answer) =
            self.request(&what, Method::Post, &format!("/{index_pattern}/_refresh"), HeaderMap::new(), None).await?;
        if (200..300).contains(&status) { Ok(()) } else { Err(self.status_error(&what, status, &answer)) }
    }
}
