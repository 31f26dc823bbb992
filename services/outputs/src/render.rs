//! MQTT topic templates: `geostream/{tenant}/{kind}/{track}` rendered per event.
//!
//! Values are made safe to be one topic level: `/` would add levels and `+`/`#` are wildcards a
//! broker refuses in a PUBLISH topic, so all three (and NUL) become `_`. An absent value (an event
//! without a track or fence) renders as `-`, so subscribers can still match the level with `+`.

use geostream_model::{Event, TenantId};

/// Placeholders a template may use.
pub const PLACEHOLDERS: &[&str] = &["tenant", "kind", "analytic", "feed", "track", "fence", "id"];

/// What an absent value renders as.
pub const ABSENT: &str = "-";

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Literal(String),
    Field(Field),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Field {
    Tenant,
    Kind,
    Analytic,
    Feed,
    Track,
    Fence,
    Id,
}

/// A parsed topic template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicTemplate {
    source: String,
    parts: Vec<Part>,
}

impl TopicTemplate {
    /// Parses a template; the problem as text.
    pub fn parse(template: &str) -> Result<Self, String> {
        if template.is_empty() {
            return Err("is empty".into());
        }
        if template.starts_with('$') {
            return Err(format!("{template:?} starts with '$', which brokers reserve for their own topics"));
        }
        let mut parts = Vec::new();
        let mut rest = template;
        while !rest.is_empty() {
            match rest.find(['{', '}']) {
                None => {
                    parts.push(Part::Literal(rest.to_owned()));
                    rest = "";
                }
                Some(i) if rest.as_bytes().get(i) == Some(&b'}') => {
                    return Err(format!("{template:?} has a '}}' without its '{{'"));
                }
                Some(i) => {
                    if i > 0 {
                        parts.push(Part::Literal(rest[..i].to_owned()));
                    }
                    let after = &rest[i + 1..];
                    let end = after.find('}').ok_or_else(|| format!("{template:?} has an unclosed '{{'"))?;
                    let name = &after[..end];
                    let field = match name {
                        "tenant" => Field::Tenant,
                        "kind" => Field::Kind,
                        "analytic" => Field::Analytic,
                        "feed" => Field::Feed,
                        "track" => Field::Track,
                        "fence" => Field::Fence,
                        "id" => Field::Id,
                        other => {
                            return Err(format!(
                                "{template:?} uses {{{other}}}; placeholders are {}",
                                PLACEHOLDERS.iter().map(|p| format!("{{{p}}}")).collect::<Vec<_>>().join(", ")
                            ));
                        }
                    };
                    parts.push(Part::Field(field));
                    rest = &after[end + 1..];
                }
            }
        }
        for p in &parts {
            if let Part::Literal(l) = p
                && l.contains(['+', '#', '\0'])
            {
                return Err(format!("{template:?} contains a wildcard ('+' or '#'), which a publish topic cannot"));
            }
        }
        Ok(Self { source: template.to_owned(), parts })
    }

    /// The template as written.
    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// The topic for `event` of `tenant`.
    pub fn render(&self, tenant: &TenantId, event: &Event) -> String {
        let mut out = String::with_capacity(self.source.len() + 32);
        for p in &self.parts {
            match p {
                Part::Literal(l) => out.push_str(l),
                Part::Field(f) => {
                    let value = match f {
                        Field::Tenant => Some(tenant.as_str().to_owned()),
                        Field::Kind => Some(event.kind.as_str().to_owned()),
                        Field::Analytic => Some(event.analytic.as_str().to_owned()),
                        Field::Feed => event.feed.as_ref().map(|v| v.as_str().to_owned()),
                        Field::Track => event.track.as_ref().map(|v| v.as_str().to_owned()),
                        Field::Fence => event.fence.as_ref().map(|v| v.id.as_str().to_owned()),
                        Field::Id => Some(event.id.to_string()),
                    };
                    match value.filter(|v| !v.is_empty()) {
                        Some(v) => {
                            out.extend(v.chars().map(|c| if matches!(c, '/' | '+' | '#' | '\0') { '_' } else { c }))
                        }
                        None => out.push_str(ABSENT),
                    }
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use geostream_model::time::OffsetDateTime;
    use geostream_model::{AnalyticId, EventKind, FeedId, FenceId, TrackId};

    fn event(track: Option<&str>) -> Event {
        let mut b = Event::builder(
            AnalyticId::new("harbour").unwrap(),
            EventKind::Enter,
            OffsetDateTime::from_unix_timestamp(1_714_564_800).unwrap(),
        )
        .feed(FeedId::new("ais").unwrap())
        .fence(FenceId::new("port-a").unwrap(), 3);
        if let Some(t) = track {
            b = b.track(TrackId::new(t).unwrap());
        }
        b.build()
    }

    #[test]
    fn renders_every_placeholder_and_marks_absent_values() {
        let tenant = TenantId::new("acme").unwrap();
        let t = TopicTemplate::parse("geostream/{tenant}/{kind}/{track}").unwrap();
        assert_eq!(t.render(&tenant, &event(Some("257123456"))), "geostream/acme/enter/257123456");
        assert_eq!(t.render(&tenant, &event(None)), "geostream/acme/enter/-");
        let all = TopicTemplate::parse("{analytic}.{feed}.{fence}.{id}").unwrap();
        let e = event(None);
        assert_eq!(all.render(&tenant, &e), format!("harbour.ais.port-a.{}", e.id));
    }

    #[test]
    fn values_never_add_levels_or_wildcards() {
        let tenant = TenantId::new("acme").unwrap();
        let t = TopicTemplate::parse("x/{track}").unwrap();
        for (track, want) in [("a/b", "x/a_b"), ("a+b", "x/a_b"), ("#", "x/_")] {
            let e = Event { track: Some(TrackId::new(track).unwrap()), ..event(None) };
            assert_eq!(t.render(&tenant, &e), want);
        }
    }

    #[test]
    fn bad_templates_say_why() {
        for (t, says) in [
            ("", "empty"),
            ("$SYS/x", "'$'"),
            ("a/{kind", "unclosed"),
            ("a/kind}", "without"),
            ("a/{nope}", "{tenant}, {kind}"),
            ("a/+/{kind}", "wildcard"),
            ("a/#", "wildcard"),
        ] {
            let e = TopicTemplate::parse(t).unwrap_err();
            assert!(e.contains(says), "{t:?}: {e}");
        }
        assert_eq!(TopicTemplate::parse("plain/topic").unwrap().as_str(), "plain/topic");
    }
}
