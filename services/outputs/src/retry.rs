//! What to do after an attempt: pure decisions from status codes, `Retry-After` and attempt
//! counts. The shell draws the jittered backoff and passes it in, so these stay deterministic.

use std::time::Duration;

/// Why an attempt failed; the `reason` label of the failure metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FailReason {
    /// 4xx other than 408 and 429: the receiver refuses this event.
    Rejected,
    /// 3xx: the URL moved; redirects are not followed (a POST must not turn into a GET).
    Redirect,
    /// 429.
    Throttled,
    /// 408 or no answer within the timeout.
    Timeout,
    /// 5xx.
    ServerError,
    /// Connection refused, reset, DNS, TLS.
    Transport,
    /// A broker (MQTT or Kafka) did not take the message.
    Broker,
    /// The broker refused the message for good (e.g. too large for the topic).
    BrokerRejected,
}

impl FailReason {
    /// The metric label.
    pub const fn as_str(self) -> &'static str {
        match self {
            FailReason::Rejected => "rejected",
            FailReason::Redirect => "redirect",
            FailReason::Throttled => "throttled",
            FailReason::Timeout => "timeout",
            FailReason::ServerError => "server_error",
            FailReason::Transport => "transport",
            FailReason::Broker => "broker",
            FailReason::BrokerRejected => "broker_rejected",
        }
    }

    /// Whether trying again cannot help.
    pub const fn permanent(self) -> bool {
        matches!(self, FailReason::Rejected | FailReason::Redirect | FailReason::BrokerRejected)
    }
}

/// One failed attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// Why.
    pub reason: FailReason,
    /// For people: status and body excerpt, or the error.
    pub detail: String,
    /// What the receiver asked for (`Retry-After`).
    pub retry_after: Option<Duration>,
}

/// The result of one attempt to deliver one event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Taken by the receiver or broker.
    Delivered,
    /// Not taken.
    Failed(Failure),
}

/// What the shell does next with the event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Settled: delivered.
    Done,
    /// Try again after this wait.
    Retry(Duration),
    /// Settled: produce a dead letter.
    DeadLetter,
}

/// The outcome of an HTTP answer with `status`; `None` for 2xx (delivered).
pub fn classify_status(status: u16) -> Option<FailReason> {
    match status {
        200..=299 => None,
        408 => Some(FailReason::Timeout),
        429 => Some(FailReason::Throttled),
        300..=399 => Some(FailReason::Redirect),
        400..=499 => Some(FailReason::Rejected),
        // 5xx, and anything outside the defined classes (treated as a broken server).
        _ => Some(FailReason::ServerError),
    }
}

pub use geostream_model::backoff::parse_retry_after;

/// The next step after an attempt. `attempts` counts attempts made so far including this one;
/// `max_attempts` 0 means no limit; `backoff` is the jittered wait drawn for this failure;
/// `Retry-After` lengthens the wait, up to `max_backoff`.
pub fn decide(outcome: &Outcome, attempts: u32, max_attempts: u32, backoff: Duration, max_backoff: Duration) -> Step {
    match outcome {
        Outcome::Delivered => Step::Done,
        Outcome::Failed(f) if f.reason.permanent() => Step::DeadLetter,
        Outcome::Failed(_) if max_attempts > 0 && attempts >= max_attempts => Step::DeadLetter,
        Outcome::Failed(f) => {
            let asked = f.retry_after.unwrap_or_default().min(max_backoff);
            Step::Retry(backoff.max(asked))
        }
    }
}

/// At most `max` bytes of `body` as text (cut at a character boundary), for dead-letter details.
pub fn excerpt(body: &[u8], max: usize) -> String {
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    if text.len() <= max {
        return text.to_owned();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn every_status_class() {
        for s in 200..300 {
            assert_eq!(classify_status(s), None, "{s}");
        }
        for s in 300..400 {
            assert_eq!(classify_status(s), Some(FailReason::Redirect), "{s}");
        }
        for s in 400..500 {
            let want = match s {
                408 => FailReason::Timeout,
                429 => FailReason::Throttled,
                _ => FailReason::Rejected,
            };
            assert_eq!(classify_status(s), Some(want), "{s}");
        }
        for s in (500..600).chain([100, 101, 600, 999]) {
            assert_eq!(classify_status(s), Some(FailReason::ServerError), "{s}");
        }
        let permanent: Vec<u16> =
            (100..1000).filter(|s| classify_status(*s).is_some_and(FailReason::permanent)).collect();
        assert_eq!(permanent.len(), 100 + 100 - 2, "3xx and 4xx except 408 and 429");
    }

    fn failed(reason: FailReason, retry_after: Option<u64>) -> Outcome {
        Outcome::Failed(Failure { reason, detail: String::new(), retry_after: retry_after.map(Duration::from_secs) })
    }

    #[test]
    fn decisions() {
        let b = Duration::from_millis(300);
        let max = Duration::from_secs(10);
        assert_eq!(decide(&Outcome::Delivered, 5, 1, b, max), Step::Done);
        assert_eq!(decide(&failed(FailReason::Rejected, None), 1, 8, b, max), Step::DeadLetter);
        assert_eq!(decide(&failed(FailReason::Redirect, None), 1, 0, b, max), Step::DeadLetter);
        assert_eq!(decide(&failed(FailReason::BrokerRejected, None), 1, 0, b, max), Step::DeadLetter);
        for r in [
            FailReason::ServerError,
            FailReason::Throttled,
            FailReason::Timeout,
            FailReason::Transport,
            FailReason::Broker,
        ] {
            assert_eq!(decide(&failed(r, None), 1, 3, b, max), Step::Retry(b), "{r:?}");
            assert_eq!(decide(&failed(r, None), 2, 3, b, max), Step::Retry(b), "{r:?}");
            assert_eq!(decide(&failed(r, None), 3, 3, b, max), Step::DeadLetter, "{r:?}");
            assert_eq!(decide(&failed(r, None), 1000, 0, b, max), Step::Retry(b), "{r:?}: 0 = no limit");
        }
        assert_eq!(decide(&failed(FailReason::Throttled, Some(2)), 1, 0, b, max), Step::Retry(Duration::from_secs(2)));
        assert_eq!(decide(&failed(FailReason::Throttled, Some(0)), 1, 0, b, max), Step::Retry(b));
        assert_eq!(decide(&failed(FailReason::Throttled, Some(3600)), 1, 0, b, max), Step::Retry(max));
    }

    #[test]
    fn excerpts_cut_at_characters() {
        assert_eq!(excerpt(b"  short \n", 10), "short");
        assert_eq!(excerpt("ééé".as_bytes(), 3), "é…");
        assert_eq!(excerpt(b"\xff\xfe", 10), "\u{fffd}\u{fffd}");
    }
}
