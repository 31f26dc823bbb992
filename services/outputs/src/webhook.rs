//! The webhook output: one signed HTTP POST per event.

use reqwest::header::{CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue, RETRY_AFTER, USER_AGENT};
use time::OffsetDateTime;

use crate::OutputError;
use crate::retry::{FailReason, Failure, Outcome, classify_status, excerpt, parse_retry_after};
use crate::secrets::Secrets;
use crate::signature::{EVENT_ID_HEADER, OUTPUT_HEADER, SIGNATURE_HEADER, SigningKey, TIMESTAMP_HEADER, sign};
use crate::spec::{OutputName, WebhookTarget};
use crate::stage::Item;

/// Bytes of a refusing answer kept in the dead letter's detail.
const BODY_EXCERPT: usize = 512;

/// Posts events to one URL.
pub struct WebhookSender {
    client: reqwest::Client,
    url: String,
    key: SigningKey,
    headers: HeaderMap,
}

impl WebhookSender {
    /// Resolves the key and builds the client (no network yet).
    pub fn new(name: &OutputName, target: &WebhookTarget, secrets: &Secrets) -> Result<Self, OutputError> {
        let config = |problem: String| OutputError::Config { output: name.to_string(), problem };
        let key = secrets.get(&target.secret_ref).map_err(config)?;
        if key.is_empty() {
            return Err(config(format!("secret {:?} is empty; an HMAC key needs bytes", target.secret_ref)));
        }
        let mut headers = HeaderMap::new();
        for (k, v) in &target.headers {
            let k = HeaderName::from_bytes(k.as_bytes()).map_err(|e| config(format!("header {k:?}: {e}")))?;
            let v = HeaderValue::from_str(v).map_err(|e| config(format!("header {k}: {e}")))?;
            headers.insert(k, v);
        }
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/geo+json"));
        headers.insert(USER_AGENT, HeaderValue::from_static(concat!("geostream/", env!("CARGO_PKG_VERSION"))));
        let name_value = HeaderValue::from_str(name.as_str()).map_err(|e| config(e.to_string()))?;
        headers.insert(OUTPUT_HEADER, name_value);
        let client = reqwest::Client::builder()
            .timeout(target.timeout)
            // A 301/302 would turn the POST into a GET; a moved receiver is a configuration fix.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| config(format!("HTTP client: {e}")))?;
        let key = SigningKey::new(key.as_bytes()).map_err(|e| config(e.to_string()))?;
        Ok(Self { client, url: target.url.clone(), key, headers })
    }

    /// One attempt.
    pub async fn send(&self, item: &Item) -> Outcome {
        let now = OffsetDateTime::now_utc();
        let ts = now.unix_timestamp();
        let mut headers = self.headers.clone();
        let signed = [
            (SIGNATURE_HEADER, sign(&self.key, ts, &item.raw)),
            (TIMESTAMP_HEADER, ts.to_string()),
            (EVENT_ID_HEADER, item.event.id.to_string()),
        ];
        for (k, v) in signed {
            if let Ok(v) = HeaderValue::from_str(&v) {
                headers.insert(k, v);
            }
        }
        let result = self.client.post(&self.url).headers(headers).body(item.raw.to_vec()).send().await;
        let response = match result {
            Ok(r) => r,
            Err(e) => {
                let reason = if e.is_timeout() { FailReason::Timeout } else { FailReason::Transport };
                return Outcome::Failed(Failure {
                    reason,
                    detail: format!("POST {}: {e}", self.url),
                    retry_after: None,
                });
            }
        };
        let status = response.status().as_u16();
        let Some(reason) = classify_status(status) else { return Outcome::Delivered };
        let retry_after = response
            .headers()
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| parse_retry_after(v, OffsetDateTime::now_utc()));
        // The body only matters for people reading the dead letter: read no more than the excerpt
        // needs (a receiver may answer with a large page), and a failed read is not an error.
        let mut response = response;
        let mut body = Vec::new();
        while body.len() <= BODY_EXCERPT * 4 {
            match response.chunk().await {
                Ok(Some(chunk)) => body.extend_from_slice(&chunk),
                Ok(None) | Err(_) => break,
            }
        }
        Outcome::Failed(Failure {
            reason,
            detail: format!("POST {} answered {status}: {}", self.url, excerpt(&body, BODY_EXCERPT)),
            retry_after,
        })
    }
}
