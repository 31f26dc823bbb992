//! Request limits: a rate per bearer token (requests without one share the `anonymous` budget) and
//! the largest request body. Both answer problem+json (429 with `Retry-After`, 413), so a client
//! that hits them learns which limit and when to come back.

use std::num::NonZeroU32;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use governor::clock::{Clock, DefaultClock};
use governor::state::keyed::HashMapStateStore;
use governor::{Quota, RateLimiter};

use crate::problem::{ApiError, Failure};

/// Configured limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Sustained requests per second per token; 0 = no rate limit.
    pub requests_per_s: u32,
    /// Requests a token may send at once above the sustained rate.
    pub burst: u32,
    /// Largest request body in bytes.
    pub max_body_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { requests_per_s: 100, burst: 200, max_body_bytes: 16 * 1024 * 1024 }
    }
}

/// Keyed tokens seen before the idle ones are forgotten.
const FORGET_ABOVE: usize = 10_000;

/// The per-token rate limiter.
pub struct RateLimits {
    limiter: RateLimiter<String, HashMapStateStore<String>, DefaultClock>,
    per_s: u32,
}

impl std::fmt::Debug for RateLimits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateLimits").field("per_s", &self.per_s).finish_non_exhaustive()
    }
}

impl RateLimits {
    /// A limiter for `limits`, or none when the rate is 0.
    pub fn new(limits: &Limits) -> Option<Arc<RateLimits>> {
        let per_s = NonZeroU32::new(limits.requests_per_s)?;
        let burst = NonZeroU32::new(limits.burst.max(limits.requests_per_s)).unwrap_or(per_s);
        let quota = Quota::per_second(per_s).allow_burst(burst);
        Some(Arc::new(RateLimits { limiter: RateLimiter::hashmap(quota), per_s: per_s.get() }))
    }

    /// Whether `key` may send one more request now; otherwise the seconds to wait.
    pub fn check(&self, key: &str) -> Result<(), u64> {
        if self.limiter.len() > FORGET_ABOVE {
            // Tokens nobody used lately (or made-up ones) would otherwise grow the map forever.
            self.limiter.retain_recent();
        }
        self.limiter.check_key(&key.to_owned()).map_err(|not_until| {
            let wait = not_until.wait_time_from(DefaultClock::default().now());
            wait.as_secs() + u64::from(wait.subsec_nanos() > 0)
        })
    }

    /// The sustained rate (for messages).
    pub fn per_s(&self) -> u32 {
        self.per_s
    }
}

/// The rate key of a request: its bearer token, or `anonymous`.
fn key_of(req: &Request) -> String {
    req.headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map_or_else(|| "anonymous".to_owned(), |t| format!("token:{}", t.trim()))
}

/// Middleware refusing requests over the rate with 429.
pub async fn rate_limit(State(limits): State<Arc<RateLimits>>, req: Request, next: Next) -> Response {
    match limits.check(&key_of(&req)) {
        Ok(()) => next.run(req).await,
        Err(retry_after_s) => Failure {
            error: ApiError::RateLimited {
                detail: format!(
                    "more than {} requests per second (plus the burst) with this token; retry after {retry_after_s} s",
                    limits.per_s()
                ),
                retry_after_s,
            },
            instance: req.uri().path().to_owned(),
        }
        .into_response(),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn each_token_has_its_own_budget() {
        let l = RateLimits::new(&Limits { requests_per_s: 1, burst: 3, max_body_bytes: 1 }).unwrap();
        for _ in 0..3 {
            assert!(l.check("a").is_ok());
        }
        let wait = l.check("a").unwrap_err();
        assert!(wait >= 1, "a whole second at least: {wait}");
        assert!(l.check("b").is_ok(), "another token is not held back by a");
        assert!(RateLimits::new(&Limits { requests_per_s: 0, ..Limits::default() }).is_none(), "0 = off");
    }
}
