//! RFC 7807 problem details: every error the API answers has this body and the
//! `application/problem+json` content type, so clients parse one error shape everywhere.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

/// Content type of every error answer.
pub const PROBLEM_JSON: &str = "application/problem+json";

/// Base of the `type` URIs; each kind of problem has its own fragment documented in `docs/api.md`.
const TYPE_BASE: &str = "https://geostream.dev/problems/";

/// A problem details object (RFC 7807).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    /// A URI naming the kind of problem.
    #[serde(rename = "type")]
    pub kind: String,
    /// A short summary of the kind of problem (the same for every occurrence).
    pub title: String,
    /// The HTTP status.
    pub status: u16,
    /// What went wrong this time, and how to fix it.
    pub detail: String,
    /// The request path it happened on.
    pub instance: String,
    /// The query parameter at fault, for `invalid-parameter`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parameter: Option<String>,
}

/// Everything a request can fail with; each maps to one problem type and status.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApiError {
    /// A query parameter (or path part) has a value the API cannot use.
    #[error("parameter `{parameter}`: {problem}; {fix}")]
    InvalidParameter {
        /// The parameter name.
        parameter: String,
        /// What is wrong with the value.
        problem: String,
        /// What to send instead.
        fix: String,
    },
    /// No bearer token, or one nobody issued.
    #[error("{0}")]
    Unauthenticated(String),
    /// A valid token without the right to this tenant or operation.
    #[error("{0}")]
    Forbidden(String),
    /// The tenant, collection or item does not exist.
    #[error("{0}")]
    NotFound(String),
    /// Too many live clients are connected; try again later.
    #[error("{0}")]
    Busy(String),
    /// The path exists but not with this method.
    #[error("{0}")]
    MethodNotAllowed(String),
    /// The search engine could not answer (down, timeout, unexpected answer).
    #[error("the search engine could not answer: {0}")]
    Upstream(String),
    /// Kafka (the registry topics) could not answer.
    #[error("the registry on Kafka could not answer: {0}")]
    Kafka(String),
    /// The query would touch more documents than one answer may combine.
    #[error("{0}")]
    TooLarge(String),
    /// The archive (local backend) could not be read.
    #[error("the archive could not answer: {0}")]
    Archive(String),
    /// The token (or the anonymous caller) sent more requests than its rate allows.
    #[error("{detail}")]
    RateLimited {
        /// What happened and the limit.
        detail: String,
        /// Seconds until a request is accepted again (`Retry-After`).
        retry_after_s: u64,
    },
    /// The request body is larger than the API accepts.
    #[error("{0}")]
    PayloadTooLarge(String),
}

impl ApiError {
    /// A 400 naming the parameter and the fix.
    pub fn param(parameter: &str, problem: impl Into<String>, fix: impl Into<String>) -> Self {
        ApiError::InvalidParameter { parameter: parameter.to_owned(), problem: problem.into(), fix: fix.into() }
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::InvalidParameter { .. } | ApiError::TooLarge(_) => StatusCode::BAD_REQUEST,
            ApiError::Unauthenticated(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Busy(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Upstream(_) | ApiError::Kafka(_) | ApiError::Archive(_) => StatusCode::BAD_GATEWAY,
            ApiError::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
        }
    }

    fn kind_and_title(&self) -> (&'static str, &'static str) {
        match self {
            ApiError::InvalidParameter { .. } => ("invalid-parameter", "A request parameter is invalid"),
            ApiError::Unauthenticated(_) => ("unauthenticated", "A valid bearer token is required"),
            ApiError::Forbidden(_) => ("forbidden", "The token does not grant this request"),
            ApiError::NotFound(_) => ("not-found", "Not found"),
            ApiError::MethodNotAllowed(_) => ("method-not-allowed", "The path does not answer this method"),
            ApiError::Busy(_) => ("busy", "The API is at its limit of live clients"),
            ApiError::Upstream(_) => ("search-engine-unavailable", "The search engine could not answer"),
            ApiError::Kafka(_) => ("registry-unavailable", "The registry topics could not be read or written"),
            ApiError::TooLarge(_) => ("result-too-large", "The query matches too much to combine"),
            ApiError::Archive(_) => ("archive-unavailable", "The archive could not be read"),
            ApiError::RateLimited { .. } => ("rate-limited", "Too many requests for this token"),
            ApiError::PayloadTooLarge(_) => ("payload-too-large", "The request body is too large"),
        }
    }

    /// The problem details for this error on `instance` (the request path).
    pub fn problem(&self, instance: &str) -> Problem {
        let (kind, title) = self.kind_and_title();
        Problem {
            kind: format!("{TYPE_BASE}{kind}"),
            title: title.to_owned(),
            status: self.status().as_u16(),
            detail: self.to_string(),
            instance: instance.to_owned(),
            parameter: match self {
                ApiError::InvalidParameter { parameter, .. } => Some(parameter.clone()),
                _ => None,
            },
        }
    }
}

/// An error bound to the path it happened on, ready to answer.
#[derive(Debug)]
pub struct Failure {
    /// The error.
    pub error: ApiError,
    /// The request path.
    pub instance: String,
}

impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        let status = self.error.status();
        let problem = self.error.problem(&self.instance);
        let body = serde_json::to_vec(&problem).unwrap_or_else(|_| b"{}".to_vec());
        let mut resp = (status, body).into_response();
        resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
        if status == StatusCode::SERVICE_UNAVAILABLE {
            resp.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
        }
        if let ApiError::RateLimited { retry_after_s, .. } = &self.error {
            resp.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(retry_after_s.max(&1).to_owned()));
        }
        if status == StatusCode::UNAUTHORIZED {
            resp.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        resp
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn every_problem_has_the_five_members_and_its_status() {
        let cases = [
            (ApiError::param("bbox", "has 3 numbers", "give minLon,minLat,maxLon,maxLat"), 400, "invalid-parameter"),
            (ApiError::Unauthenticated("no token".into()), 401, "unauthenticated"),
            (ApiError::Forbidden("other tenant".into()), 403, "forbidden"),
            (ApiError::NotFound("no such item".into()), 404, "not-found"),
            (ApiError::MethodNotAllowed("POST".into()), 405, "method-not-allowed"),
            (ApiError::Busy("full".into()), 503, "busy"),
            (ApiError::Upstream("refused".into()), 502, "search-engine-unavailable"),
            (ApiError::TooLarge("too many".into()), 400, "result-too-large"),
            (ApiError::Kafka("down".into()), 502, "registry-unavailable"),
            (ApiError::Archive("gone".into()), 502, "archive-unavailable"),
            (ApiError::RateLimited { detail: "slow down".into(), retry_after_s: 3 }, 429, "rate-limited"),
            (ApiError::PayloadTooLarge("big".into()), 413, "payload-too-large"),
        ];
        for (e, status, kind) in cases {
            let p = serde_json::to_value(e.problem("/v1/acme/latest")).unwrap();
            assert_eq!(p["status"], status);
            assert!(p["type"].as_str().unwrap().ends_with(kind), "{p}");
            for member in ["type", "title", "status", "detail", "instance"] {
                assert!(p.get(member).is_some(), "{member} missing in {p}");
            }
            assert_eq!(p["instance"], "/v1/acme/latest");
        }
        let p = ApiError::param("bbox", "has 3 numbers", "give four").problem("/x");
        assert_eq!(p.parameter.as_deref(), Some("bbox"));
        assert!(p.detail.contains("bbox") && p.detail.contains("give four"), "{}", p.detail);
    }

    #[test]
    fn answers_carry_the_problem_content_type() {
        let resp = Failure { error: ApiError::Unauthenticated("x".into()), instance: "/".into() }.into_response();
        assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(resp.headers()[header::CONTENT_TYPE], PROBLEM_JSON);
        assert_eq!(resp.headers()[header::WWW_AUTHENTICATE], "Bearer");
        let resp =
            Failure { error: ApiError::RateLimited { detail: "x".into(), retry_after_s: 0 }, instance: "/".into() }
                .into_response();
        assert_eq!(resp.headers()[header::RETRY_AFTER], "1", "never zero: a client would retry at once");
    }
}
