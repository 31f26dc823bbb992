//! Event-time windows.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::error::ModelError;
use crate::rfc3339;

/// A half-open event-time interval `[start, end)` that an event or aggregate belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Window {
    /// First instant inside the window.
    #[serde(with = "rfc3339")]
    pub start: OffsetDateTime,
    /// First instant after the window.
    #[serde(with = "rfc3339")]
    pub end: OffsetDateTime,
}

impl Window {
    /// A window; `start` must be before `end`.
    pub fn new(start: OffsetDateTime, end: OffsetDateTime) -> Result<Self, ModelError> {
        let w = Window { start, end };
        w.check("window")?;
        Ok(w)
    }

    /// Whether `t` falls inside `[start, end)`.
    pub fn contains(&self, t: OffsetDateTime) -> bool {
        self.start <= t && t < self.end
    }

    pub(crate) fn check(&self, subject: &str) -> Result<(), ModelError> {
        let bad = |field: &str, problem: String| ModelError::InvalidField {
            subject: subject.to_owned(),
            field: field.to_owned(),
            problem,
        };
        if !rfc3339::is_representable(self.start) {
            return Err(bad("window.start", "is outside the years 0000 to 9999".into()));
        }
        if !rfc3339::is_representable(self.end) {
            return Err(bad("window.end", "is outside the years 0000 to 9999".into()));
        }
        if self.start >= self.end {
            return Err(bad(
                "window",
                format!("starts at {} but ends at {}; start must be before end", self.start, self.end),
            ));
        }
        Ok(())
    }
}

pub(crate) fn check_time(subject: &str, field: &str, t: OffsetDateTime) -> Result<(), ModelError> {
    if rfc3339::is_representable(t) {
        Ok(())
    } else {
        Err(ModelError::InvalidField {
            subject: subject.to_owned(),
            field: field.to_owned(),
            problem: format!("{t} is outside the years 0000 to 9999 that RFC 3339 can express"),
        })
    }
}
