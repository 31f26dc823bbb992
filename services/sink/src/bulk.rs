//! Bulk responses, item by item, and the state of a batch until every item is settled.
//!
//! | item answer | outcome |
//! |---|---|
//! | 200, 201 | delivered |
//! | 409 on `create` | delivered: the document with this deterministic id is already stored |
//! | 409 on an external-version `index` | delivered: a newer version is stored, this one is older |
//! | 429, 5xx | retried (only that item) after a jittered backoff |
//! | 400 | dead letter `mapping` with the engine's error (the document does not fit the mapping) |
//! | anything else | dead letter `rejected` with the engine's error |
//!
//! A Kafka record is settled when every item built from it is; if any of them is dead-lettered,
//! the record gets exactly one dead letter (the first item error), so a record never goes to the
//! dead-letter topic twice.

use geostream_model::{IndexKind, ReasonCode};
use serde_json::Value;

use crate::document::{Item, Op, Unwritable, append_bulk};

/// What became of one item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Stored now.
    Written,
    /// `create` found the id already stored: delivered before.
    Duplicate,
    /// The stored external version is the same or newer: this one is older, nothing to do.
    Older,
    /// Transient: send the item again later.
    Retry {
        /// The item's status.
        status: u16,
        /// The engine's error, for logs.
        error: String,
    },
    /// Permanent: the record goes to the dead-letter topic.
    Dead(Unwritable),
}

impl Outcome {
    /// Whether the item needs no more work.
    pub fn is_settled(&self) -> bool {
        !matches!(self, Outcome::Retry { .. })
    }
}

/// Classifies one item answer.
pub fn classify(op: Op, status: u16, error: Option<&Value>) -> Outcome {
    let describe = || match error {
        Some(e) => {
            let kind = e.get("type").and_then(Value::as_str).unwrap_or("error");
            let reason = e.get("reason").and_then(Value::as_str).unwrap_or_default();
            let cause = e.get("caused_by").and_then(|c| c.get("reason")).and_then(Value::as_str);
            match cause {
                Some(c) => format!("{status} {kind}: {reason} (caused by: {c})"),
                None => format!("{status} {kind}: {reason}"),
            }
        }
        None => format!("status {status}"),
    };
    match status {
        200 | 201 => Outcome::Written,
        409 => match op {
            Op::Create => Outcome::Duplicate,
            Op::External { .. } => Outcome::Older,
        },
        429 | 500..=599 => Outcome::Retry { status, error: describe() },
        400 => Outcome::Dead(Unwritable { reason: ReasonCode::Mapping, detail: describe() }),
        _ => Outcome::Dead(Unwritable { reason: ReasonCode::Rejected, detail: describe() }),
    }
}

/// Why a bulk response as a whole is unusable (the request is retried as a whole).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResponseError {
    /// Not JSON, or no `items` array.
    #[error("bulk response is not understood: {0}")]
    Unreadable(String),
    /// Fewer or more items than sent: nothing can be matched safely.
    #[error("bulk response has {got} items for {sent} sent")]
    Count {
        /// Items sent.
        sent: usize,
        /// Items answered.
        got: usize,
    },
}

/// Reads `(status, error)` per item from a bulk response body.
pub fn parse_response(body: &[u8], sent: usize) -> Result<Vec<(u16, Option<Value>)>, ResponseError> {
    let v: Value = serde_json::from_slice(body).map_err(|e| ResponseError::Unreadable(e.to_string()))?;
    let items =
        v.get("items").and_then(Value::as_array).ok_or_else(|| ResponseError::Unreadable("no `items` array".into()))?;
    if items.len() != sent {
        return Err(ResponseError::Count { sent, got: items.len() });
    }
    items
        .iter()
        .map(|item| {
            // Each item is `{"<action>": {"status": .., "error": {..}}}`.
            let inner = item
                .as_object()
                .and_then(|o| o.values().next())
                .ok_or_else(|| ResponseError::Unreadable(format!("item {item} is not an object")))?;
            let status = inner
                .get("status")
                .and_then(Value::as_u64)
                .and_then(|s| u16::try_from(s).ok())
                .ok_or_else(|| ResponseError::Unreadable(format!("item {item} has no status")))?;
            Ok((status, inner.get("error").cloned()))
        })
        .collect()
}

/// Counts of one applied response, for metrics and logs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Applied {
    /// Written, by index kind.
    pub written: Vec<(IndexKind, u64)>,
    /// Duplicates (`create` 409).
    pub duplicates: u64,
    /// Older external versions (409).
    pub older: u64,
    /// Items to retry.
    pub retries: u64,
    /// Items that failed permanently.
    pub dead: u64,
    /// The first retry error, for the log.
    pub first_retry_error: Option<String>,
}

/// A batch of Kafka records and their items, until all are settled.
#[derive(Debug, Clone)]
pub struct BatchState {
    items: Vec<Item>,
    outcomes: Vec<Option<Outcome>>,
    /// Per record: the reason it cannot be written, if any (set at parse time or by the first dead item).
    dead: Vec<Option<Unwritable>>,
}

impl BatchState {
    /// A batch of `records` records with their items; `unwritable` lists records that produced no
    /// items and go straight to the dead-letter topic.
    pub fn new(records: usize, items: Vec<Item>, unwritable: Vec<(usize, Unwritable)>) -> Self {
        let mut dead = vec![None; records];
        for (i, u) in unwritable {
            if let Some(slot) = dead.get_mut(i) {
                *slot = Some(u);
            }
        }
        let outcomes = vec![None; items.len()];
        BatchState { items, outcomes, dead }
    }

    /// Indices of items still to send (never sent, or answered with a retryable status).
    pub fn pending(&self) -> Vec<usize> {
        self.outcomes
            .iter()
            .enumerate()
            .filter(|(_, o)| !o.as_ref().is_some_and(Outcome::is_settled))
            .map(|(i, _)| i)
            .collect()
    }

    /// Whether every item is settled.
    pub fn settled(&self) -> bool {
        self.outcomes.iter().all(|o| o.as_ref().is_some_and(Outcome::is_settled))
    }

    /// The NDJSON body for the given items.
    pub fn body(&self, which: &[usize]) -> Vec<u8> {
        let mut body = Vec::new();
        for &i in which {
            if let Some(item) = self.items.get(i) {
                append_bulk(&mut body, item);
            }
        }
        body
    }

    /// Applies the answers to the items `sent` (same order).
    pub fn apply(&mut self, sent: &[usize], answers: &[(u16, Option<Value>)]) -> Applied {
        let mut applied = Applied::default();
        for (&i, (status, error)) in sent.iter().zip(answers) {
            let Some(item) = self.items.get(i) else { continue };
            let outcome = classify(item.op, *status, error.as_ref());
            match &outcome {
                Outcome::Written => match applied.written.iter_mut().find(|(k, _)| *k == item.kind) {
                    Some((_, n)) => *n += 1,
                    None => applied.written.push((item.kind, 1)),
                },
                Outcome::Duplicate => applied.duplicates += 1,
                Outcome::Older => applied.older += 1,
                Outcome::Retry { error, .. } => {
                    applied.retries += 1;
                    applied.first_retry_error.get_or_insert_with(|| error.clone());
                }
                Outcome::Dead(u) => {
                    applied.dead += 1;
                    if let Some(slot @ None) = self.dead.get_mut(item.record) {
                        let which = if item.kind == IndexKind::Latest { " (latest document)" } else { "" };
                        *slot = Some(Unwritable { reason: u.reason, detail: format!("{}{which}", u.detail) });
                    }
                }
            }
            self.outcomes[i] = Some(outcome);
        }
        applied
    }

    /// Records to dead-letter, with the reason, once the batch is settled.
    pub fn dead_letters(&self) -> impl Iterator<Item = (usize, &Unwritable)> {
        self.dead.iter().enumerate().filter_map(|(i, d)| d.as_ref().map(|d| (i, d)))
    }

    /// Number of items in the batch.
    pub fn item_count(&self) -> usize {
        self.items.len()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::json;

    const EXT: Op = Op::External { version: 5 };

    #[test]
    fn item_statuses() {
        assert_eq!(classify(Op::Create, 201, None), Outcome::Written);
        assert_eq!(classify(EXT, 200, None), Outcome::Written);
        assert_eq!(classify(EXT, 201, None), Outcome::Written);
        assert_eq!(classify(Op::Create, 409, None), Outcome::Duplicate);
        assert_eq!(classify(EXT, 409, None), Outcome::Older);
        for s in [429, 500, 502, 503, 504] {
            assert!(matches!(classify(Op::Create, s, None), Outcome::Retry { status, .. } if status == s));
            assert!(!classify(EXT, s, None).is_settled());
        }
        let err = json!({"type": "document_parsing_exception", "reason": "failed to parse field [properties.x]",
                         "caused_by": {"type": "number_format_exception", "reason": "For input string: \"abc\""}});
        match classify(Op::Create, 400, Some(&err)) {
            Outcome::Dead(u) => {
                assert_eq!(u.reason, ReasonCode::Mapping);
                assert_eq!(
                    u.detail,
                    "400 document_parsing_exception: failed to parse field [properties.x] (caused by: For input string: \"abc\")"
                );
            }
            other => panic!("{other:?}"),
        }
        for s in [401, 403, 404, 413, 422] {
            assert!(matches!(
                classify(Op::Create, s, None),
                Outcome::Dead(Unwritable { reason: ReasonCode::Rejected, .. })
            ));
        }
    }

    #[test]
    fn response_parsing() {
        let body = br#"{"took":3,"errors":true,"items":[
            {"create":{"_index":"i","_id":"a","status":201}},
            {"create":{"_index":"i","_id":"b","status":409,"error":{"type":"version_conflict_engine_exception","reason":"exists"}}},
            {"index":{"_index":"l","_id":"t","status":429,"error":{"type":"es_rejected_execution_exception","reason":"queue full"}}}]}"#;
        let r = parse_response(body, 3).unwrap();
        assert_eq!(r.iter().map(|(s, _)| *s).collect::<Vec<_>>(), [201, 409, 429]);
        assert_eq!(r[1].1.as_ref().unwrap()["type"], "version_conflict_engine_exception");
        assert_eq!(parse_response(body, 2).unwrap_err(), ResponseError::Count { sent: 2, got: 3 });
        assert!(matches!(parse_response(b"<html>", 1), Err(ResponseError::Unreadable(_))));
        assert!(matches!(parse_response(br#"{"error":"x"}"#, 1), Err(ResponseError::Unreadable(_))));
        assert!(matches!(parse_response(br#"{"items":[{"create":{}}]}"#, 1), Err(ResponseError::Unreadable(_))));
    }

    fn item(record: usize, kind: IndexKind, op: Op) -> Item {
        Item { record, kind, index: "i".into(), id: format!("{record}-{}", kind.as_str()), op, source: b"{}".to_vec() }
    }

    #[test]
    fn only_failed_items_are_resent_and_records_settle_once() {
        // Record 0: observation + latest; record 1: observation; record 2: malformed; record 3: observation.
        let items = vec![
            item(0, IndexKind::Observations, Op::Create),
            item(0, IndexKind::Latest, EXT),
            item(1, IndexKind::Observations, Op::Create),
            item(3, IndexKind::Observations, Op::Create),
        ];
        let malformed = Unwritable { reason: ReasonCode::Malformed, detail: "not json".into() };
        let mut b = BatchState::new(4, items, vec![(2, malformed.clone())]);
        assert_eq!(b.pending(), [0, 1, 2, 3]);
        assert!(!b.settled());
        let sent = b.pending();
        let body = String::from_utf8(b.body(&sent)).unwrap();
        assert_eq!(body.lines().count(), 8);

        let mapping = json!({"type": "mapper_parsing_exception", "reason": "bad"});
        let a = b.apply(&sent, &[(201, None), (503, None), (409, None), (400, Some(mapping))]);
        assert_eq!(a.written, [(IndexKind::Observations, 1)]);
        assert_eq!((a.duplicates, a.retries, a.dead), (1, 1, 1));
        assert_eq!(a.first_retry_error.as_deref(), Some("status 503"));
        assert_eq!(b.pending(), [1], "only the 503 item is sent again");
        assert!(!b.settled());

        let a = b.apply(&[1], &[(409, None)]);
        assert_eq!(a.older, 1);
        assert!(b.settled());
        assert!(b.pending().is_empty());
        let dead: Vec<(usize, ReasonCode)> = b.dead_letters().map(|(i, u)| (i, u.reason)).collect();
        assert_eq!(dead, [(2, ReasonCode::Malformed), (3, ReasonCode::Mapping)]);
    }

    #[test]
    fn a_record_is_dead_lettered_once_even_when_both_items_fail() {
        let items = vec![item(0, IndexKind::Observations, Op::Create), item(0, IndexKind::Latest, EXT)];
        let mut b = BatchState::new(1, items, vec![]);
        b.apply(&[0, 1], &[(400, None), (403, None)]);
        let dead: Vec<_> = b.dead_letters().collect();
        assert_eq!(dead.len(), 1);
        assert_eq!(dead[0].1.reason, ReasonCode::Mapping, "the first item error wins");
        let mut b = BatchState::new(
            1,
            vec![item(0, IndexKind::Observations, Op::Create), item(0, IndexKind::Latest, EXT)],
            vec![],
        );
        b.apply(&[0, 1], &[(201, None), (400, None)]);
        assert!(b.dead_letters().next().unwrap().1.detail.ends_with("(latest document)"));
    }

    #[test]
    fn an_empty_or_fully_unwritable_batch_is_settled_at_once() {
        let b =
            BatchState::new(2, vec![], vec![(0, Unwritable { reason: ReasonCode::Malformed, detail: String::new() })]);
        assert!(b.settled());
        assert_eq!(b.dead_letters().count(), 1);
        assert!(BatchState::new(0, vec![], vec![]).settled());
    }
}
