//! Which outputs receive an event. Pure, so every combination can be checked without a network.

use geostream_model::Event;
use serde_json::Value;

use crate::spec::{Filter, OutputName, OutputSpec};

/// Whether the event withdraws an earlier one (`"retracted": true` among its attributes).
/// Receivers that acted on the original need the retraction to undo it, so retractions are
/// delivered unless an output opts out.
pub fn is_retraction(event: &Event) -> bool {
    matches!(event.attributes.get("retracted"), Some(Value::Bool(true)))
}

impl Filter {
    /// Every non-empty list must contain the event's value; an event without a feed or fence
    /// does not match a non-empty feed or fence list.
    pub fn matches(&self, event: &Event) -> bool {
        let listed = |list_empty: bool, hit: bool| list_empty || hit;
        listed(self.kinds.is_empty(), self.kinds.contains(&event.kind))
            && listed(self.analytics.is_empty(), self.analytics.contains(&event.analytic))
            && listed(self.feeds.is_empty(), event.feed.as_ref().is_some_and(|f| self.feeds.contains(f)))
            && listed(self.fences.is_empty(), event.fence.as_ref().is_some_and(|f| self.fences.contains(&f.id)))
            && (self.retracted || !is_retraction(event))
    }
}

/// The names of the outputs whose filter matches `event`, in configuration order.
pub fn route(event: &Event, outputs: &[OutputSpec]) -> Vec<OutputName> {
    outputs.iter().filter(|o| o.filter.matches(event)).map(|o| o.name.clone()).collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::spec::{Target, WebhookTarget};
    use geostream_model::time::OffsetDateTime;
    use geostream_model::{AnalyticId, EventKind, FeedId, FenceId};
    use std::time::Duration;

    fn a(s: &str) -> AnalyticId {
        AnalyticId::new(s).unwrap()
    }
    fn f(s: &str) -> FeedId {
        FeedId::new(s).unwrap()
    }
    fn g(s: &str) -> FenceId {
        FenceId::new(s).unwrap()
    }

    /// Every event over a small domain: each kind, two analytics, feed absent/a/b, fence
    /// absent/f/h, retracted or not (and `"retracted": false` and a non-boolean, which are not
    /// retractions).
    fn events() -> Vec<Event> {
        let t = OffsetDateTime::from_unix_timestamp(1_714_564_800).unwrap();
        let mut out = Vec::new();
        for kind in EventKind::ALL {
            for analytic in ["x", "y"] {
                for feed in [None, Some("a"), Some("b")] {
                    for fence in [None, Some("f"), Some("h")] {
                        for retracted in [None, Some(Value::Bool(true)), Some(Value::Bool(false)), Some("true".into())]
                        {
                            let mut b = Event::builder(a(analytic), *kind, t);
                            if let Some(x) = feed {
                                b = b.feed(f(x));
                            }
                            if let Some(x) = fence {
                                b = b.fence(g(x), 1);
                            }
                            if let Some(r) = retracted {
                                b = b.attribute("retracted", r);
                            }
                            out.push(b.build());
                        }
                    }
                }
            }
        }
        out
    }

    fn filters() -> Vec<Filter> {
        let mut out = Vec::new();
        for kinds in [vec![], vec![EventKind::Enter], vec![EventKind::Enter, EventKind::Gap]] {
            for analytics in [vec![], vec![a("x")]] {
                for feeds in [vec![], vec![f("a")], vec![f("a"), f("b")]] {
                    for fences in [vec![], vec![g("f")]] {
                        for retracted in [true, false] {
                            out.push(Filter {
                                kinds: kinds.clone(),
                                analytics: analytics.clone(),
                                feeds: feeds.clone(),
                                fences: fences.clone(),
                                retracted,
                            });
                        }
                    }
                }
            }
        }
        out
    }

    /// The rule written out independently of `Filter::matches` (as iteration on purpose).
    #[allow(clippy::manual_contains)]
    fn oracle(flt: &Filter, e: &Event) -> bool {
        let kind_ok = flt.kinds.is_empty() || flt.kinds.iter().any(|k| *k == e.kind);
        let analytic_ok = flt.analytics.is_empty() || flt.analytics.iter().any(|x| *x == e.analytic);
        let feed_ok = if flt.feeds.is_empty() {
            true
        } else {
            match &e.feed {
                None => false,
                Some(feed) => flt.feeds.iter().any(|x| x == feed),
            }
        };
        let fence_ok = if flt.fences.is_empty() {
            true
        } else {
            match &e.fence {
                None => false,
                Some(fr) => flt.fences.iter().any(|x| *x == fr.id),
            }
        };
        let retraction = e.attributes.get("retracted") == Some(&Value::Bool(true));
        kind_ok && analytic_ok && feed_ok && fence_ok && (flt.retracted || !retraction)
    }

    fn spec(name: &str, filter: Filter) -> OutputSpec {
        OutputSpec {
            name: OutputName::new(name).unwrap(),
            filter,
            max_attempts: 1,
            max_backoff: Duration::from_secs(1),
            target: Target::Webhook(WebhookTarget {
                url: "http://x".into(),
                secret_ref: "k".into(),
                timeout: Duration::from_secs(1),
                headers: Default::default(),
            }),
        }
    }

    #[test]
    fn every_filter_against_every_event_matches_the_rule() {
        let events = events();
        let filters = filters();
        assert_eq!(events.len(), EventKind::ALL.len() * 2 * 3 * 3 * 4);
        assert_eq!(filters.len(), 3 * 2 * 3 * 2 * 2);
        let mut matched = 0usize;
        for flt in &filters {
            for e in &events {
                let want = oracle(flt, e);
                assert_eq!(flt.matches(e), want, "{flt:?} vs {e:?}");
                matched += usize::from(want);
            }
        }
        // Guards against an oracle that says yes (or no) to everything.
        assert!(matched > 0 && matched < filters.len() * events.len(), "{matched}");
    }

    #[test]
    fn route_lists_matching_outputs_in_configuration_order() {
        let events = events();
        let outputs: Vec<OutputSpec> =
            filters().into_iter().enumerate().map(|(i, flt)| spec(&format!("o{i}"), flt)).collect();
        for e in &events {
            let want: Vec<OutputName> =
                outputs.iter().filter(|o| oracle(&o.filter, e)).map(|o| o.name.clone()).collect();
            assert_eq!(route(e, &outputs), want);
        }
        assert!(route(&events[0], &[]).is_empty());
    }

    #[test]
    fn named_cases() {
        let t = OffsetDateTime::from_unix_timestamp(1_714_564_800).unwrap();
        let enter = Event::builder(a("x"), EventKind::Enter, t).feed(f("a")).fence(g("f"), 2).build();
        let gap = Event::builder(a("x"), EventKind::Gap, t).feed(f("a")).build();
        let retraction = Event::builder(a("x"), EventKind::Enter, t).attribute("retracted", true).build();
        let fences_only = Filter { fences: vec![g("f")], retracted: true, ..Filter::default() };
        assert!(fences_only.matches(&enter));
        assert!(!fences_only.matches(&gap), "a gap has no fence, so a fence filter excludes it");
        let all = Filter { retracted: true, ..Filter::default() };
        assert!(all.matches(&retraction) && is_retraction(&retraction) && !is_retraction(&enter));
        let no_retractions = Filter { retracted: false, ..Filter::default() };
        assert!(!no_retractions.matches(&retraction) && no_retractions.matches(&enter));
    }
}
