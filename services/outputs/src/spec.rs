//! Outputs as written in the configuration (`[[outputs]]`) and their validated form.
//!
//! The raw types keep plain strings so validation can name the exact key (`outputs[2].filter.kinds`)
//! and a fix for every problem at once, the way the binary's other settings are checked.

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use geostream_model::{AnalyticId, EventKind, FeedId, FenceId};
use serde::{Deserialize, Serialize};

use crate::render::TopicTemplate;

/// One `[[outputs]]` entry: a name, what it receives (`filter`) and exactly one of `webhook`,
/// `mqtt` or `kafka`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct OutputConfig {
    /// Unique name: metrics label, dead-letter `source`, log field.
    pub name: String,
    /// Which events the output receives; empty lists match everything.
    #[serde(default)]
    pub filter: FilterConfig,
    /// Attempts per event before a retryable failure is dead-lettered; 0 retries until delivered.
    /// Unset: 8 for webhooks (a receiver that keeps failing must not stall every other event
    /// forever), 0 for MQTT and Kafka (a broker outage is infrastructure, not a verdict on the event).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_attempts: Option<u32>,
    /// Longest wait between attempts (jittered exponential backoff), in milliseconds; a
    /// `Retry-After` answer is honoured up to this long.
    #[serde(default = "default_max_backoff_ms")]
    pub max_backoff_ms: u64,
    /// HTTP POST of each event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook: Option<WebhookConfig>,
    /// MQTT publish of each event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mqtt: Option<MqttConfig>,
    /// Kafka produce of each event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kafka: Option<KafkaOutputConfig>,
}

fn default_max_backoff_ms() -> u64 {
    30_000
}

fn default_true() -> bool {
    true
}

/// `[outputs.filter]`: every non-empty list must match (and), any entry within a list may (or).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct FilterConfig {
    /// Event kinds (`enter`, `exit`, `gap`, ...).
    pub kinds: Vec<String>,
    /// Analytic ids.
    pub analytics: Vec<String>,
    /// Feed ids; events without a feed do not match a non-empty list.
    pub feeds: Vec<String>,
    /// Fence ids; events without a fence do not match a non-empty list.
    pub fences: Vec<String>,
    /// Deliver retractions (events with `"retracted": true`); on by default so receivers can
    /// undo what they acted on.
    #[serde(default = "default_true")]
    pub retracted: bool,
}

impl Default for FilterConfig {
    fn default() -> Self {
        Self { kinds: Vec::new(), analytics: Vec::new(), feeds: Vec::new(), fences: Vec::new(), retracted: true }
    }
}

/// `[outputs.webhook]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    /// `http://` or `https://` URL the events are POSTed to.
    pub url: String,
    /// Name of the secret holding the HMAC key: a file in `sink.secrets_dir` or the variable
    /// `GEOSTREAM_SECRET_<NAME>`.
    pub secret_ref: String,
    /// Timeout of one request, in milliseconds.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    /// Extra request headers (e.g. an API gateway's key); values are masked in `config print`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
}

fn default_timeout_ms() -> u64 {
    10_000
}

/// `[outputs.mqtt]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MqttConfig {
    /// `mqtt://host:1883` or `mqtts://host:8883`.
    pub url: String,
    /// Topic template, e.g. `geostream/{tenant}/{kind}/{track}`.
    pub topic: String,
    /// 0 (at most once) or 1 (at least once, acknowledged by the broker).
    #[serde(default = "default_qos")]
    pub qos: u8,
    /// Publish with the retain flag.
    #[serde(default)]
    pub retain: bool,
    /// Client id; unset: `geostream-<tenant>-outputs-<name>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    /// User name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// Secret name of the password (like `secret_ref`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_ref: Option<String>,
    /// PEM file of the CA certificates for `mqtts://`; unset: the web PKI roots.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
    /// How long to wait for the broker's acknowledgement, in milliseconds.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
}

fn default_qos() -> u8 {
    1
}

/// `[outputs.kafka]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct KafkaOutputConfig {
    /// Destination topic (created beforehand; the output does not create topics).
    pub topic: String,
    /// Another cluster's `host:port` list; unset: the pipeline's own cluster (`kafka.*`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bootstrap: Option<String>,
    /// librdkafka properties for the producer (e.g. `security.protocol`); with `bootstrap` set
    /// the pipeline's `kafka.properties` are not used.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub properties: BTreeMap<String, String>,
}

/// A validated output name: lowercase letters, digits, `-` and `_`, 1 to 63 characters.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct OutputName(String);

impl OutputName {
    /// Longest name (keeps metric labels and client ids short).
    pub const MAX_LEN: usize = 63;

    /// Validates a name; the problem as text.
    pub fn new(name: impl Into<String>) -> Result<Self, String> {
        let name = name.into();
        if name.is_empty() || name.len() > Self::MAX_LEN {
            return Err(format!("{name:?} must be 1 to {} characters long", Self::MAX_LEN));
        }
        if let Some(c) =
            name.chars().find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '_')))
        {
            return Err(format!("{name:?} contains {c:?}; use lowercase letters, digits, '-' and '_'"));
        }
        Ok(Self(name))
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for OutputName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Which events an output receives (validated [`FilterConfig`]).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Filter {
    /// Empty: every kind.
    pub kinds: Vec<EventKind>,
    /// Empty: every analytic.
    pub analytics: Vec<AnalyticId>,
    /// Empty: every feed (and events without one).
    pub feeds: Vec<FeedId>,
    /// Empty: every fence (and events without one).
    pub fences: Vec<FenceId>,
    /// Whether retractions are delivered.
    pub retracted: bool,
}

/// A broker address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Broker {
    /// `mqtts://`.
    pub tls: bool,
    /// Host name or address (IPv6 without brackets).
    pub host: String,
    /// Port.
    pub port: u16,
}

/// Where a webhook output posts.
#[derive(Debug, Clone, PartialEq)]
pub struct WebhookTarget {
    /// The URL.
    pub url: String,
    /// Secret name of the HMAC key.
    pub secret_ref: String,
    /// Timeout of one request.
    pub timeout: Duration,
    /// Extra headers.
    pub headers: BTreeMap<String, String>,
}

/// Where an MQTT output publishes.
#[derive(Debug, Clone, PartialEq)]
pub struct MqttTarget {
    /// The broker.
    pub broker: Broker,
    /// The topic template.
    pub topic: TopicTemplate,
    /// 0 or 1.
    pub qos: u8,
    /// Retain flag.
    pub retain: bool,
    /// Client id, if configured.
    pub client_id: Option<String>,
    /// User name.
    pub username: Option<String>,
    /// Secret name of the password.
    pub password_ref: Option<String>,
    /// CA certificates for TLS.
    pub ca_file: Option<PathBuf>,
    /// Acknowledgement timeout.
    pub timeout: Duration,
}

/// Where a Kafka output produces.
#[derive(Debug, Clone, PartialEq)]
pub struct KafkaTarget {
    /// Destination topic.
    pub topic: String,
    /// Another cluster, if set.
    pub bootstrap: Option<String>,
    /// Extra producer properties.
    pub properties: BTreeMap<String, String>,
}

/// The kind-specific part of an output.
#[derive(Debug, Clone, PartialEq)]
pub enum Target {
    /// HTTP POST.
    Webhook(WebhookTarget),
    /// MQTT publish.
    Mqtt(MqttTarget),
    /// Kafka produce.
    Kafka(KafkaTarget),
}

impl Target {
    /// `webhook`, `mqtt` or `kafka`.
    pub fn kind(&self) -> &'static str {
        match self {
            Target::Webhook(_) => "webhook",
            Target::Mqtt(_) => "mqtt",
            Target::Kafka(_) => "kafka",
        }
    }
}

/// A validated output.
#[derive(Debug, Clone, PartialEq)]
pub struct OutputSpec {
    /// Its name.
    pub name: OutputName,
    /// What it receives.
    pub filter: Filter,
    /// Attempts before a retryable failure is dead-lettered; 0 = no limit.
    pub max_attempts: u32,
    /// Cap of the retry backoff (and of an honoured `Retry-After`).
    pub max_backoff: Duration,
    /// Where it delivers.
    pub target: Target,
}

impl OutputSpec {
    /// One line for people (`geostream config check`): where it delivers and what it receives.
    pub fn describe(&self) -> String {
        let target = match &self.target {
            Target::Webhook(w) => format!("webhook POST {}", w.url),
            Target::Mqtt(m) => format!(
                "mqtt {}://{}:{} topic {} qos {}",
                if m.broker.tls { "mqtts" } else { "mqtt" },
                m.broker.host,
                m.broker.port,
                m.topic.as_str(),
                m.qos
            ),
            Target::Kafka(k) => match &k.bootstrap {
                Some(b) => format!("kafka topic {} on {b}", k.topic),
                None => format!("kafka topic {}", k.topic),
            },
        };
        let f = &self.filter;
        let mut what = Vec::new();
        let mut list = |name: &str, items: Vec<&str>| {
            if !items.is_empty() {
                what.push(format!("{name} {}", items.join("|")));
            }
        };
        list("kinds", f.kinds.iter().map(|k| k.as_str()).collect());
        list("analytics", f.analytics.iter().map(|a| a.as_str()).collect());
        list("feeds", f.feeds.iter().map(|a| a.as_str()).collect());
        list("fences", f.fences.iter().map(|a| a.as_str()).collect());
        if !f.retracted {
            what.push("no retractions".into());
        }
        let what = if what.is_empty() { "every event".to_owned() } else { what.join(", ") };
        let attempts = match self.max_attempts {
            0 => "retried until delivered".to_owned(),
            n => format!("dead-lettered after {n} attempts"),
        };
        format!("{}: {target}; {what}; {attempts}", self.name)
    }
}

/// One invalid value: the key, what is wrong, how to fix it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigProblem {
    /// Dotted key, e.g. `outputs[0].webhook.url`.
    pub key: String,
    /// What is wrong.
    pub problem: String,
    /// What to do.
    pub fix: String,
}

/// Validates every output, collecting every problem.
pub fn validate(outputs: &[OutputConfig]) -> Result<Vec<OutputSpec>, Vec<ConfigProblem>> {
    let mut problems = Vec::new();
    let mut specs = Vec::new();
    let mut names = HashSet::new();
    for (i, o) in outputs.iter().enumerate() {
        let at = format!("outputs[{i}]");
        let mut p = |key: &str, problem: String, fix: &str| {
            problems.push(ConfigProblem { key: format!("{at}.{key}"), problem, fix: fix.to_owned() })
        };
        let name = match OutputName::new(o.name.clone()) {
            Ok(n) => {
                if !names.insert(n.clone()) {
                    p("name", format!("{:?} is used by an earlier output", o.name), "give every output its own name");
                }
                Some(n)
            }
            Err(e) => {
                p("name", e, "e.g. name = \"ops-webhook\"");
                None
            }
        };
        let filter = filter(&o.filter, &mut p);
        if o.max_backoff_ms == 0 {
            p("max_backoff_ms", "must be positive".into(), "e.g. 30000");
        }
        let configured = [o.webhook.is_some(), o.mqtt.is_some(), o.kafka.is_some()].iter().filter(|b| **b).count();
        let target = if configured != 1 {
            p(
                "",
                format!("has {configured} of webhook, mqtt and kafka configured"),
                "give each output exactly one of [outputs.webhook], [outputs.mqtt] or [outputs.kafka]",
            );
            None
        } else if let Some(w) = &o.webhook {
            webhook(w, &mut p).map(Target::Webhook)
        } else if let Some(m) = &o.mqtt {
            mqtt(m, &mut p).map(Target::Mqtt)
        } else if let Some(k) = &o.kafka {
            kafka(k, &mut p).map(Target::Kafka)
        } else {
            None
        };
        if let (Some(name), Some(filter), Some(target)) = (name, filter, target) {
            let max_attempts = o.max_attempts.unwrap_or(match target {
                Target::Webhook(_) => 8,
                Target::Mqtt(_) | Target::Kafka(_) => 0,
            });
            specs.push(OutputSpec {
                name,
                filter,
                max_attempts,
                max_backoff: Duration::from_millis(o.max_backoff_ms),
                target,
            });
        }
    }
    if problems.is_empty() { Ok(specs) } else { Err(problems) }
}

fn filter(f: &FilterConfig, p: &mut impl FnMut(&str, String, &str)) -> Option<Filter> {
    let mut ok = true;
    let mut list = |key: &str, values: &[String], parse: &dyn Fn(&str) -> Result<(), String>, fix: &str| {
        for v in values {
            if let Err(e) = parse(v) {
                p(&format!("filter.{key}"), e, fix);
                ok = false;
            }
        }
    };
    list("kinds", &f.kinds, &|v| v.parse::<EventKind>().map(|_| ()).map_err(|e| e.to_string()), "use event kinds");
    list("analytics", &f.analytics, &|v| AnalyticId::new(v).map(|_| ()).map_err(|e| e.to_string()), "use analytic ids");
    list("feeds", &f.feeds, &|v| FeedId::new(v).map(|_| ()).map_err(|e| e.to_string()), "use feed ids");
    list("fences", &f.fences, &|v| FenceId::new(v).map(|_| ()).map_err(|e| e.to_string()), "use fence ids");
    if !ok {
        return None;
    }
    Some(Filter {
        kinds: f.kinds.iter().filter_map(|v| v.parse().ok()).collect(),
        analytics: f.analytics.iter().filter_map(|v| AnalyticId::new(v).ok()).collect(),
        feeds: f.feeds.iter().filter_map(|v| FeedId::new(v).ok()).collect(),
        fences: f.fences.iter().filter_map(|v| FenceId::new(v).ok()).collect(),
        retracted: f.retracted,
    })
}

fn webhook(w: &WebhookConfig, p: &mut impl FnMut(&str, String, &str)) -> Option<WebhookTarget> {
    let mut ok = true;
    match reqwest::Url::parse(&w.url) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => {
            if !u.username().is_empty() || u.password().is_some() {
                p("webhook.url", "has credentials in it".into(), "put them in webhook.headers (masked when printed)");
                ok = false;
            }
        }
        Ok(_) => {
            p(
                "webhook.url",
                format!("{:?} is not an http(s) URL with a host", w.url),
                "e.g. https://ops.example/hooks",
            );
            ok = false;
        }
        Err(e) => {
            p("webhook.url", format!("{:?}: {e}", w.url), "e.g. https://ops.example/hooks");
            ok = false;
        }
    }
    if let Err(e) = secret_name(&w.secret_ref) {
        p("webhook.secret_ref", e, "name a file in sink.secrets_dir or a GEOSTREAM_SECRET_<NAME> variable");
        ok = false;
    }
    if w.timeout_ms == 0 {
        p("webhook.timeout_ms", "must be positive".into(), "e.g. 10000");
        ok = false;
    }
    for (name, value) in &w.headers {
        let valid = reqwest::header::HeaderName::from_bytes(name.as_bytes()).is_ok()
            && reqwest::header::HeaderValue::from_str(value).is_ok();
        if !valid {
            p(
                &format!("webhook.headers.{name}"),
                "is not a valid HTTP header".into(),
                "use a token name and a visible ASCII value",
            );
            ok = false;
        } else if name.to_ascii_lowercase().starts_with("x-geostream-") || name.eq_ignore_ascii_case("content-type") {
            p(&format!("webhook.headers.{name}"), "is set by the output itself".into(), "remove it");
            ok = false;
        }
    }
    ok.then(|| WebhookTarget {
        url: w.url.clone(),
        secret_ref: w.secret_ref.clone(),
        timeout: Duration::from_millis(w.timeout_ms),
        headers: w.headers.clone(),
    })
}

fn mqtt(m: &MqttConfig, p: &mut impl FnMut(&str, String, &str)) -> Option<MqttTarget> {
    let broker = parse_broker_url(&m.url).map_err(|e| p("mqtt.url", e, "e.g. mqtt://127.0.0.1:1883")).ok();
    let topic =
        TopicTemplate::parse(&m.topic).map_err(|e| p("mqtt.topic", e, "e.g. geostream/{tenant}/{kind}/{track}")).ok();
    let mut ok = true;
    if m.qos > 1 {
        p("mqtt.qos", format!("is {}", m.qos), "use 0 (at most once) or 1 (at least once)");
        ok = false;
    }
    if m.timeout_ms == 0 {
        p("mqtt.timeout_ms", "must be positive".into(), "e.g. 10000");
        ok = false;
    }
    if m.client_id.as_deref().is_some_and(|c| c.trim().is_empty()) {
        p("mqtt.client_id", "is empty".into(), "leave it unset for geostream-<tenant>-outputs-<name>");
        ok = false;
    }
    if let Some(r) = &m.password_ref {
        if let Err(e) = secret_name(r) {
            p("mqtt.password_ref", e, "name a file in sink.secrets_dir or a GEOSTREAM_SECRET_<NAME> variable");
            ok = false;
        }
        if m.username.is_none() {
            p("mqtt.password_ref", "is set without mqtt.username".into(), "set mqtt.username too");
            ok = false;
        }
    }
    if m.ca_file.is_some() && broker.as_ref().is_some_and(|b| !b.tls) {
        p("mqtt.ca_file", "is set but mqtt.url is not mqtts://".into(), "use mqtts:// or remove ca_file");
        ok = false;
    }
    let (Some(broker), Some(topic), true) = (broker, topic, ok) else { return None };
    Some(MqttTarget {
        broker,
        topic,
        qos: m.qos,
        retain: m.retain,
        client_id: m.client_id.clone(),
        username: m.username.clone(),
        password_ref: m.password_ref.clone(),
        ca_file: m.ca_file.clone(),
        timeout: Duration::from_millis(m.timeout_ms),
    })
}

fn kafka(k: &KafkaOutputConfig, p: &mut impl FnMut(&str, String, &str)) -> Option<KafkaTarget> {
    let mut ok = true;
    let legal = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
    if k.topic.is_empty() || k.topic.len() > geostream_model::KAFKA_TOPIC_MAX_LEN || !k.topic.chars().all(legal) {
        p("kafka.topic", format!("{:?} is not a Kafka topic name", k.topic), "use 1 to 249 of a-z A-Z 0-9 . _ -");
        ok = false;
    }
    if let Some(b) = &k.bootstrap {
        let bad = b.trim().is_empty()
            || b.split(',').map(str::trim).any(|hp| match hp.rsplit_once(':') {
                Some((h, port)) => h.is_empty() || port.parse::<u16>().map_or(true, |n| n == 0),
                None => true,
            });
        if bad {
            p("kafka.bootstrap", format!("{b:?} is not a host:port list"), "e.g. other-kafka:9092, or leave it unset");
            ok = false;
        }
    }
    for key in ["bootstrap.servers", "enable.idempotence", "transactional.id"] {
        if k.properties.contains_key(key) {
            p(&format!("kafka.properties.{key}"), "is managed by the output".into(), "remove it (use kafka.bootstrap)");
            ok = false;
        }
    }
    ok.then(|| KafkaTarget { topic: k.topic.clone(), bootstrap: k.bootstrap.clone(), properties: k.properties.clone() })
}

/// Secret names are file names in the secrets directory.
fn secret_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.contains(['/', '\\']) || name == "." || name == ".." {
        Err(format!("{name:?} is not a plain file name"))
    } else {
        Ok(())
    }
}

/// Parses `mqtt://host:port` / `mqtts://host:port` (ports default to 1883 / 8883).
pub fn parse_broker_url(url: &str) -> Result<Broker, String> {
    let (scheme, rest) = url.split_once("://").ok_or_else(|| format!("{url:?} is not a URL like mqtt://host:1883"))?;
    let tls = match scheme.to_ascii_lowercase().as_str() {
        "mqtt" | "tcp" => false,
        "mqtts" | "ssl" => true,
        other => return Err(format!("{url:?} has scheme {other:?}; use mqtt:// or mqtts://")),
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    if authority.contains('@') {
        return Err(format!("{url:?} has credentials in it; use mqtt.username and mqtt.password_ref"));
    }
    let (host, port) = match authority.strip_prefix('[') {
        Some(v6) => {
            let (h, after) = v6.split_once(']').ok_or_else(|| format!("{url:?}: unclosed '['"))?;
            (h, after.strip_prefix(':'))
        }
        None => match authority.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        },
    };
    if host.is_empty() {
        return Err(format!("{url:?} has no host"));
    }
    let port = match port {
        None => {
            if tls {
                8883
            } else {
                1883
            }
        }
        Some(p) => p.parse::<u16>().ok().filter(|n| *n > 0).ok_or_else(|| format!("{url:?} has port {p:?}"))?,
    };
    Ok(Broker { tls, host: host.to_owned(), port })
}

/// Masks what could be a secret in a printed configuration: webhook header values, and Kafka
/// properties whose key mentions a password, secret or token.
pub fn redact(outputs: &mut [OutputConfig]) {
    for o in outputs {
        if let Some(w) = &mut o.webhook {
            for v in w.headers.values_mut() {
                *v = "<redacted>".into();
            }
        }
        if let Some(k) = &mut o.kafka {
            for (key, v) in k.properties.iter_mut() {
                if key.contains("password") || key.contains("secret") || key.contains("token") {
                    *v = "<redacted>".into();
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn webhook_output(name: &str) -> OutputConfig {
        OutputConfig {
            name: name.into(),
            filter: FilterConfig::default(),
            max_attempts: None,
            max_backoff_ms: 30_000,
            webhook: Some(WebhookConfig {
                url: "https://ops.example/hooks".into(),
                secret_ref: "ops-key".into(),
                timeout_ms: 10_000,
                headers: BTreeMap::new(),
            }),
            mqtt: None,
            kafka: None,
        }
    }

    #[test]
    fn a_valid_webhook_gets_the_webhook_defaults() {
        let specs = validate(&[webhook_output("ops")]).unwrap();
        assert_eq!(specs.len(), 1);
        assert_eq!(specs[0].max_attempts, 8);
        assert!(specs[0].filter.retracted);
        assert_eq!(specs[0].target.kind(), "webhook");
    }

    #[test]
    fn every_problem_names_its_key() {
        let mut a = webhook_output("Ops Hook");
        a.filter.kinds = vec!["enter".into(), "entered".into()];
        a.filter.feeds = vec!["Bad Feed".into()];
        a.max_backoff_ms = 0;
        let mut b = webhook_output("dup");
        b.webhook = None;
        let mut c = webhook_output("dup");
        c.webhook.as_mut().unwrap().url = "ftp://x".into();
        c.webhook.as_mut().unwrap().secret_ref = "../key".into();
        c.webhook.as_mut().unwrap().headers.insert("X-Geostream-Signature".into(), "x".into());
        let mut d = webhook_output("mq");
        d.webhook = None;
        d.mqtt = Some(MqttConfig {
            url: "http://broker".into(),
            topic: "a/{nope}/+".into(),
            qos: 2,
            retain: false,
            client_id: None,
            username: None,
            password_ref: Some("p".into()),
            ca_file: None,
            timeout_ms: 0,
        });
        let mut e = webhook_output("kf");
        e.webhook = None;
        e.kafka = Some(KafkaOutputConfig {
            topic: "bad topic".into(),
            bootstrap: Some("nohost".into()),
            properties: BTreeMap::from([("enable.idempotence".into(), "false".into())]),
        });
        let problems = validate(&[a, b, c, d, e]).unwrap_err();
        let keys: Vec<&str> = problems.iter().map(|p| p.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "outputs[0].name",
                "outputs[0].filter.kinds",
                "outputs[0].filter.feeds",
                "outputs[0].max_backoff_ms",
                "outputs[1].",
                "outputs[2].name",
                "outputs[2].webhook.url",
                "outputs[2].webhook.secret_ref",
                "outputs[2].webhook.headers.X-Geostream-Signature",
                "outputs[3].mqtt.url",
                "outputs[3].mqtt.topic",
                "outputs[3].mqtt.qos",
                "outputs[3].mqtt.timeout_ms",
                "outputs[3].mqtt.password_ref",
                "outputs[4].kafka.topic",
                "outputs[4].kafka.bootstrap",
                "outputs[4].kafka.properties.enable.idempotence",
            ]
        );
        assert!(problems[1].problem.contains("\"entered\""), "{:?}", problems[1]);
        assert!(problems[4].fix.contains("exactly one"), "{:?}", problems[4]);
        assert!(problems[5].problem.contains("earlier output"), "{:?}", problems[5]);
        assert!(problems[10].problem.contains("nope"), "{:?}", problems[10]);
    }

    #[test]
    fn descriptions_say_where_and_what() {
        let mut w = webhook_output("ops");
        w.filter.kinds = vec!["enter".into(), "exit".into()];
        w.filter.fences = vec!["port-a".into()];
        w.filter.retracted = false;
        let mut m = webhook_output("alerts");
        m.webhook = None;
        m.mqtt = Some(MqttConfig {
            url: "mqtts://broker".into(),
            topic: "g/{kind}".into(),
            qos: 0,
            retain: false,
            client_id: None,
            username: None,
            password_ref: None,
            ca_file: None,
            timeout_ms: 1000,
        });
        let mut k = webhook_output("copy");
        k.webhook = None;
        k.kafka = Some(KafkaOutputConfig {
            topic: "t".into(),
            bootstrap: Some("b:9092".into()),
            properties: BTreeMap::new(),
        });
        let lines: Vec<String> = validate(&[w, m, k]).unwrap().iter().map(OutputSpec::describe).collect();
        assert_eq!(
            lines,
            [
                "ops: webhook POST https://ops.example/hooks; kinds enter|exit, fences port-a, no retractions; \
                 dead-lettered after 8 attempts",
                "alerts: mqtt mqtts://broker:8883 topic g/{kind} qos 0; every event; retried until delivered",
                "copy: kafka topic t on b:9092; every event; retried until delivered",
            ]
        );
    }

    #[test]
    fn broker_urls() {
        let b = |tls, host: &str, port| Broker { tls, host: host.into(), port };
        assert_eq!(parse_broker_url("mqtt://h").unwrap(), b(false, "h", 1883));
        assert_eq!(parse_broker_url("mqtts://h").unwrap(), b(true, "h", 8883));
        assert_eq!(parse_broker_url("mqtt://[::1]:1884").unwrap(), b(false, "::1", 1884));
        assert!(parse_broker_url("mqtt://u:p@h").unwrap_err().contains("credentials"));
        assert!(parse_broker_url("mqtt://h:0").is_err());
        assert!(parse_broker_url("h:1883").is_err());
    }

    #[test]
    fn redaction_masks_header_values_and_secret_properties() {
        let mut o = webhook_output("a");
        o.webhook.as_mut().unwrap().headers.insert("Authorization".into(), "Bearer abc".into());
        let mut k = webhook_output("b");
        k.webhook = None;
        k.kafka = Some(KafkaOutputConfig {
            topic: "t".into(),
            bootstrap: None,
            properties: BTreeMap::from([
                ("sasl.password".into(), "pw".into()),
                ("security.protocol".into(), "SASL_SSL".into()),
            ]),
        });
        let mut all = vec![o, k];
        redact(&mut all);
        let shown = format!("{all:?}");
        assert!(!shown.contains("Bearer abc") && !shown.contains("\"pw\""), "{shown}");
        assert!(shown.contains("SASL_SSL"), "{shown}");
    }
}
