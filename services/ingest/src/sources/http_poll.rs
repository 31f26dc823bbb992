//! The `http_poll` source: GET a URL every `interval_s` seconds; the body is one payload.
//!
//! Polls are conditional: the `ETag` and `Last-Modified` of the last answer that was committed go
//! out as `If-None-Match` / `If-Modified-Since`, and `304 Not Modified` means nothing new (no
//! decode, no commit). With `dedupe`, items the previous answer already had are dropped
//! ([`Deduper`]), because most feeds repeat their current items until they change.
//!
//! Failures (connect errors, timeouts, non-2xx answers) are logged with their status code,
//! counted, and retried with jittered exponential backoff; a wait is never shorter than the
//! interval (the endpoint's owner asked for that rate) and honours `Retry-After` on 429 and 503.
//! Polls are paced start to start, so a slow answer does not stretch the interval.

use std::time::Duration;

use geostream_model::{HttpAuth, Source};
use reqwest::header::{self, HeaderMap, HeaderName, HeaderValue};
use reqwest::{StatusCode, Url};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::{commit, sleep_or_cancel};
use crate::feed::{FeedHandle, SourceError, now};
use crate::pipeline::{Batch, Deduper, FeedPipeline};
use geostream_model::backoff::Backoff;

/// Largest body read; a larger answer is an error (and is not decoded), so a misbehaving endpoint
/// cannot take the stage's memory.
const MAX_BODY_BYTES: usize = 256 * 1024 * 1024;

/// Longest wait between polls of a failing endpoint (unless the interval itself is longer).
const MAX_BACKOFF: Duration = Duration::from_secs(300);

/// Longest `Retry-After` honoured; beyond it the server is asking for an outage, and the normal
/// backoff is a better guess of when to look again.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);

/// How the request authenticates, with the secrets already read.
enum Auth {
    None,
    Bearer(String),
    Basic { username: String, password: String },
}

/// Validators of the last committed answer, for conditional requests.
#[derive(Default)]
struct Validators {
    etag: Option<HeaderValue>,
    last_modified: Option<HeaderValue>,
}

/// What one poll did.
enum Polled {
    /// A new answer, committed: records written and dropped as unchanged.
    Fresh { written: usize, deduplicated: usize },
    /// `304 Not Modified`.
    NotModified,
    /// The feed was cancelled.
    Cancelled,
}

/// Why a poll failed; retried with backoff.
struct PollFailure {
    /// For the log: the status code or the transport error.
    detail: String,
    /// `Retry-After` of a 429 or 503.
    retry_after: Option<Duration>,
}

/// Runs the source until `cancel`.
pub async fn run(handle: FeedHandle, cancel: CancellationToken) -> Result<(), SourceError> {
    let Source::HttpPoll { url, interval_s, headers, auth, timeout_s, dedupe } = &handle.spec.source else {
        return Err(handle.config_error("not an http_poll source"));
    };
    let url = Url::parse(url).map_err(|e| handle.config_error(format!("source.url {url:?} is not a URL: {e}")))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(handle.config_error(format!("source.url {url} must be http:// or https://")));
    }
    let mut extra = HeaderMap::new();
    for (name, value) in headers {
        let (n, v) =
            header_pair(name, value).map_err(|p| handle.config_error(format!("source.headers.{name}: {p}")))?;
        extra.insert(n, v);
    }
    let auth = match auth {
        None => Auth::None,
        Some(HttpAuth::Bearer { token_ref }) => Auth::Bearer(handle.secret(token_ref)?),
        Some(HttpAuth::Basic { username, password_ref }) => {
            Auth::Basic { username: username.clone(), password: handle.secret(password_ref)? }
        }
        Some(HttpAuth::Header { name, value_ref }) => {
            let secret = handle.secret(value_ref)?;
            let (n, mut v) = header_pair(name, &secret)
                .map_err(|p| handle.config_error(format!("source.auth header {name:?} (secret {value_ref:?}): {p}")))?;
            v.set_sensitive(true);
            extra.insert(n, v);
            Auth::None
        }
    };
    let timeout = Duration::from_secs((*timeout_s).max(1));
    let client = reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout.min(Duration::from_secs(10)))
        .user_agent(concat!("geostream/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| handle.config_error(format!("the HTTP client could not be set up: {e}")))?;
    let mut pipeline = handle.pipeline()?;
    let interval = Duration::from_secs((*interval_s).max(1));
    let location = shown_location(&url);

    let poller = Poller { handle: &handle, client, url, extra, auth, location, cancel: &cancel };
    let mut validators = Validators::default();
    let mut deduper = dedupe.then(Deduper::default);
    let mut backoff = Backoff::new(Duration::from_secs(1), MAX_BACKOFF.max(interval));
    let mut failing = true;
    let id = handle.id();
    loop {
        let started = Instant::now();
        let wait = match poller.poll(&mut pipeline, &mut validators, deduper.as_mut()).await {
            Ok(Polled::Cancelled) => break,
            Ok(polled) => {
                handle.metrics.set_up(id, true);
                backoff.reset();
                match polled {
                    Polled::Fresh { written, deduplicated } if failing => tracing::info!(
                        feed = %id, location = %poller.location, status = 200, written, deduplicated, "http_poll: polling"
                    ),
                    Polled::Fresh { written, deduplicated } => tracing::debug!(
                        feed = %id, location = %poller.location, status = 200, written, deduplicated, "http_poll: new answer"
                    ),
                    _ => {
                        tracing::debug!(feed = %id, location = %poller.location, status = 304, "http_poll: not modified")
                    }
                }
                failing = false;
                interval
            }
            Err(PollError::Retry(PollFailure { detail, retry_after })) => {
                handle.metrics.source_error(id);
                let wait = wait_after_failure(interval, backoff.next_delay(), retry_after);
                tracing::warn!(
                    feed = %id, location = %poller.location, error = %detail, failures = backoff.failures(),
                    retry_in_s = wait.as_secs_f64(), "http_poll: poll failed"
                );
                failing = true;
                wait
            }
            Err(PollError::Fatal(e)) => return Err(e),
        };
        let elapsed = started.elapsed();
        if !sleep_or_cancel(wait.saturating_sub(elapsed), &cancel).await {
            break;
        }
    }
    handle.metrics.set_up(id, false);
    Ok(())
}

/// The wait before the next poll after a failure: the backoff's jittered delay, never less than
/// the interval, and at least a (bounded) `Retry-After`.
fn wait_after_failure(interval: Duration, backoff: Duration, retry_after: Option<Duration>) -> Duration {
    let wait = backoff.max(interval);
    retry_after.map_or(wait, |r| wait.max(r.min(MAX_RETRY_AFTER)))
}

fn header_pair(name: &str, value: &str) -> Result<(HeaderName, HeaderValue), String> {
    let n = HeaderName::from_bytes(name.as_bytes()).map_err(|_| format!("{name:?} is not a valid header name"))?;
    let v = HeaderValue::from_str(value)
        .map_err(|_| "the value is not a valid header value (printable ASCII, no line breaks)".to_owned())?;
    Ok((n, v))
}

/// The poll's location for dead letters and logs: never with a password or query values (API keys
/// often ride in the query string); parameter names stay, for debugging.
fn shown_location(url: &reqwest::Url) -> String {
    let mut shown = url.clone();
    let _ = shown.set_password(None);
    if shown.query().is_some() {
        let names: Vec<String> = shown.query_pairs().map(|(k, _)| format!("{k}=redacted")).collect();
        shown.set_query(Some(&names.join("&")));
    }
    format!("GET {shown}")
}

struct Poller<'a> {
    handle: &'a FeedHandle,
    client: reqwest::Client,
    url: Url,
    extra: HeaderMap,
    auth: Auth,
    location: String,
    cancel: &'a CancellationToken,
}

enum PollError {
    /// Retried with backoff.
    Retry(PollFailure),
    /// Stops the source: the spool cannot take records any more.
    Fatal(SourceError),
}

impl Poller<'_> {
    async fn poll(
        &self,
        pipeline: &mut FeedPipeline,
        validators: &mut Validators,
        deduper: Option<&mut Deduper>,
    ) -> Result<Polled, PollError> {
        let mut req = self.client.get(self.url.clone()).headers(self.extra.clone());
        req = match &self.auth {
            Auth::None => req,
            Auth::Bearer(token) => req.bearer_auth(token),
            Auth::Basic { username, password } => req.basic_auth(username, Some(password)),
        };
        if let Some(etag) = &validators.etag {
            req = req.header(header::IF_NONE_MATCH, etag.clone());
        }
        if let Some(lm) = &validators.last_modified {
            req = req.header(header::IF_MODIFIED_SINCE, lm.clone());
        }
        let sent = tokio::select! {
            () = self.cancel.cancelled() => return Ok(Polled::Cancelled),
            r = req.send() => r,
        };
        let mut resp = sent.map_err(|e| retry(describe(&e), None))?;
        let status = resp.status();
        if status == StatusCode::NOT_MODIFIED {
            return Ok(Polled::NotModified);
        }
        if !status.is_success() {
            let retry_after = matches!(status, StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE)
                .then(|| resp.headers().get(header::RETRY_AFTER).and_then(parse_retry_after_header))
                .flatten();
            let excerpt = tokio::select! {
                () = self.cancel.cancelled() => return Ok(Polled::Cancelled),
                b = resp.chunk() => b.ok().flatten().map(|b| excerpt(&b)).unwrap_or_default(),
            };
            return Err(retry(format!("HTTP {status}{excerpt}"), retry_after));
        }
        let etag = resp.headers().get(header::ETAG).cloned();
        let last_modified = resp.headers().get(header::LAST_MODIFIED).cloned();
        let mut body = Vec::new();
        loop {
            let chunk = tokio::select! {
                () = self.cancel.cancelled() => return Ok(Polled::Cancelled),
                c = resp.chunk() => c,
            };
            match chunk {
                Ok(Some(c)) => {
                    if body.len() + c.len() > MAX_BODY_BYTES {
                        return Err(retry(
                            format!("HTTP {status}, but the body is larger than {MAX_BODY_BYTES} bytes; not decoded"),
                            None,
                        ));
                    }
                    body.extend_from_slice(&c);
                }
                Ok(None) => break,
                Err(e) => return Err(retry(format!("HTTP {status}, body not read: {}", describe(&e)), None)),
            }
        }
        let mut batch = Batch::default();
        let ctx = pipeline.context(now(), self.location.clone());
        pipeline.decode_payload(&body, &ctx, &mut batch);
        // Every answer is a complete document: nothing may stay pending in the codec.
        pipeline.finish(&ctx, &mut batch);
        let deduplicated = deduper.map_or(0, |d| d.filter(&mut batch));
        if deduplicated > 0 {
            let label = crate::metrics::FeedLabel { feed: self.handle.id().to_owned() };
            self.handle.metrics.deduplicated.get_or_create(&label).inc_by(deduplicated as u64);
        }
        match commit(self.handle, &batch, self.cancel).await {
            Ok(true) => {}
            Ok(false) => return Ok(Polled::Cancelled),
            Err(e) => return Err(PollError::Fatal(e)),
        }
        // Only a committed answer may make the server answer 304 next time.
        *validators = Validators { etag, last_modified };
        Ok(Polled::Fresh { written: batch.len(), deduplicated })
    }
}

fn retry(detail: String, retry_after: Option<Duration>) -> PollError {
    PollError::Retry(PollFailure { detail, retry_after })
}

/// A transport error with its kind spelled out (reqwest's text alone often just says "error
/// sending request").
fn describe(e: &reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "could not connect"
    } else if e.is_body() || e.is_decode() {
        "body failed"
    } else {
        "request failed"
    };
    let mut text = format!("{kind}: {e}");
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// `: <first bytes of the body>` for the log, as one line of printable text.
fn excerpt(body: &[u8]) -> String {
    let head = body.get(..200).unwrap_or(body);
    let text: String = String::from_utf8_lossy(head).chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
    let text = text.trim();
    if text.is_empty() { String::new() } else { format!(": {text}") }
}

/// `Retry-After` in seconds or as an HTTP date.
fn parse_retry_after_header(v: &HeaderValue) -> Option<Duration> {
    geostream_model::backoff::parse_retry_after(v.to_str().ok()?, geostream_model::time::OffsetDateTime::now_utc())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn locations_hide_passwords_and_query_values() {
        let url = reqwest::Url::parse("https://u:pw@api.example.org/v1/pos?key=SECRET&bbox=1,2").unwrap();
        let shown = shown_location(&url);
        assert_eq!(shown, "GET https://u@api.example.org/v1/pos?key=redacted&bbox=redacted");
        assert!(!shown.contains("SECRET") && !shown.contains("pw"));
    }

    #[test]
    fn failures_never_poll_faster_than_the_interval_and_honour_bounded_retry_after() {
        let s = Duration::from_secs;
        assert_eq!(wait_after_failure(s(60), s(2), None), s(60), "backoff below the interval");
        assert_eq!(wait_after_failure(s(10), s(40), None), s(40), "backoff above the interval");
        assert_eq!(wait_after_failure(s(10), s(5), Some(s(120))), s(120));
        assert_eq!(wait_after_failure(s(10), s(5), Some(s(1))), s(10), "Retry-After never shortens the wait");
        assert_eq!(wait_after_failure(s(10), s(5), Some(s(999_999))), MAX_RETRY_AFTER);
    }

    #[test]
    fn retry_after_and_excerpts_are_read_defensively() {
        assert_eq!(parse_retry_after_header(&HeaderValue::from_static(" 30 ")), Some(Duration::from_secs(30)));
        // A date in the past means now.
        assert_eq!(
            parse_retry_after_header(&HeaderValue::from_static("Wed, 21 Oct 2015 07:28:00 GMT")),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after_header(&HeaderValue::from_static("later")), None);
        assert_eq!(excerpt(b"  "), "");
        assert_eq!(excerpt(b"{\"error\":\n\"quota\"}"), ": {\"error\": \"quota\"}");
        assert_eq!(excerpt(&[b'x'; 500]).len(), 202);
        assert!(header_pair("X-Api-Key", "abc").is_ok());
        assert!(header_pair("bad name", "abc").unwrap_err().contains("not a valid header name"));
        assert!(header_pair("X-Key", "a\nb").unwrap_err().contains("not a valid header value"));
    }
}
