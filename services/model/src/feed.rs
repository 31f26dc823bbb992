//! Feed specs: how to receive, decode and map one data source. Stored on `<tenant>.feeds`, written
//! by the api and the operator, read by ingest.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::ModelError;
use crate::ids::FeedId;
use crate::observation::Observation;

named_enum! {
    /// Wire format of a feed's messages.
    Format, "format", "json, geojson, csv, nmea, ais, gtfs_rt, gpx, cap, esri_json, cot" {
        /// Arbitrary JSON objects (one per message or per line); positions come from the mapping.
        Json => "json",
        /// GeoJSON Features or FeatureCollections.
        Geojson => "geojson",
        /// Delimited text with a header row; positions come from the mapping.
        Csv => "csv",
        /// NMEA 0183 sentences (GPS receivers).
        Nmea => "nmea",
        /// AIS (AIVDM/AIVDO) sentences from vessels.
        Ais => "ais",
        /// GTFS Realtime vehicle positions (protobuf).
        GtfsRt => "gtfs_rt",
        /// GPX tracks and waypoints.
        Gpx => "gpx",
        /// Common Alerting Protocol alerts.
        Cap => "cap",
        /// Esri JSON feature sets.
        EsriJson => "esri_json",
        /// Cursor on Target events.
        Cot => "cot",
    }
}

impl Format {
    /// Whether the format carries positions in a standard place, so the mapping need not say
    /// where they are. For `json` and `csv` the mapping must name lon/lat or a geometry.
    pub const fn has_native_geometry(self) -> bool {
        !matches!(self, Format::Json | Format::Csv)
    }
}

/// Whether a TCP source connects out or listens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TcpMode {
    /// Connect to `address` (e.g. an AIS dispatcher) and reconnect when dropped.
    Client,
    /// Listen on `address` for senders.
    Server,
}

/// How a file source paces its records.
///
/// Written as `"original"`, `"fast"` or a number (the speed factor, e.g. `10` for ten times
/// faster than recorded).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub enum Replay {
    /// As fast as the pipeline accepts: imports and backfills.
    #[default]
    Fast,
    /// With the gaps between event times as recorded: demos that look live.
    Original,
    /// With the recorded gaps divided by this factor.
    Speed(f64),
}

impl Serialize for Replay {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Replay::Fast => s.serialize_str("fast"),
            Replay::Original => s.serialize_str("original"),
            Replay::Speed(f) => s.serialize_f64(*f),
        }
    }
}

impl<'de> Deserialize<'de> for Replay {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Replay;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("\"original\", \"fast\" or a speed factor such as 10")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Replay, E> {
                match v {
                    "fast" => Ok(Replay::Fast),
                    "original" => Ok(Replay::Original),
                    _ => Err(E::invalid_value(serde::de::Unexpected::Str(v), &self)),
                }
            }
            fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Replay, E> {
                Ok(Replay::Speed(v))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Replay, E> {
                Ok(Replay::Speed(v as f64))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Replay, E> {
                Ok(Replay::Speed(v as f64))
            }
        }
        d.deserialize_any(V)
    }
}

fn default_qos() -> u8 {
    1
}

fn default_timeout_s() -> u64 {
    30
}

fn default_reconnect_max_s() -> u64 {
    30
}

/// MQTT protocol version spoken to the broker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub enum MqttProtocol {
    /// MQTT 3.1.1, which every broker speaks.
    #[default]
    #[serde(rename = "3.1.1")]
    V311,
    /// MQTT 5.
    #[serde(rename = "5")]
    V5,
}

/// How an HTTP poller authenticates. Secrets are named, never written into the spec: ingest reads
/// `<secrets_dir>/<name>` (a mounted Kubernetes Secret) or the `GEOSTREAM_SECRET_<NAME>` variable.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum HttpAuth {
    /// `Authorization: Bearer <token>`.
    Bearer {
        /// Secret holding the token.
        token_ref: String,
    },
    /// HTTP basic authentication.
    Basic {
        /// User name.
        username: String,
        /// Secret holding the password.
        password_ref: String,
    },
    /// An API key in a header of its own, e.g. `X-Api-Key`.
    Header {
        /// Header name.
        name: String,
        /// Secret holding the value.
        value_ref: String,
    },
}

/// Where a feed's messages come from. Written with a `kind` tag, e.g.
/// `{"kind": "mqtt", "url": "mqtts://broker:8883", "topics": ["ais/#"]}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Source {
    /// Subscribe to an MQTT broker.
    Mqtt {
        /// `mqtt://` or `mqtts://` URL of the broker.
        url: String,
        /// Topic filters (`+` and `#` wildcards allowed).
        topics: Vec<String>,
        /// Subscription QoS, 0 to 2; default 1 (at least once, acked after the record is safe).
        #[serde(default = "default_qos")]
        qos: u8,
        /// Protocol version, `"3.1.1"` (default) or `"5"`.
        #[serde(default)]
        protocol: MqttProtocol,
        /// Client id; default `geostream-<tenant>-<feed>`, stable so the broker keeps the session
        /// (and queued QoS 1 messages) across restarts.
        #[serde(default)]
        client_id: Option<String>,
        /// User name for brokers that require one.
        #[serde(default)]
        username: Option<String>,
        /// Secret holding the password.
        #[serde(default)]
        password_ref: Option<String>,
        /// PEM file with the CA that signed the broker's certificate (`mqtts://`); none = the
        /// public web roots.
        #[serde(default)]
        ca_file: Option<String>,
        /// Turns topic levels into attributes: `fleet/{device_id}/position` puts the second level
        /// of a matching topic into the `device_id` attribute. `+` and `#` match without capture.
        #[serde(default)]
        topic_template: Option<String>,
        /// A capture of `topic_template` to use as the track id of records that carry none.
        #[serde(default)]
        track_from_topic: Option<String>,
    },
    /// Poll an HTTP(S) URL.
    HttpPoll {
        /// `http://` or `https://` URL.
        url: String,
        /// Seconds between polls, at least 1.
        interval_s: u64,
        /// Extra request headers.
        #[serde(default)]
        headers: BTreeMap<String, String>,
        /// Authentication, if the endpoint needs it.
        #[serde(default)]
        auth: Option<HttpAuth>,
        /// Seconds before a request is abandoned (and retried with backoff).
        #[serde(default = "default_timeout_s")]
        timeout_s: u64,
        /// Forward only observations that were not in the previous poll's answer (most feeds
        /// repeat the same items until they change).
        #[serde(default = "yes")]
        dedupe: bool,
    },
    /// Accept HTTP POSTs on ingest's push endpoint for this feed.
    HttpPush {
        /// Name of the secret holding the bearer token senders must present; none = no auth.
        #[serde(default)]
        token_ref: Option<String>,
        /// Largest accepted body in bytes; default the stage's `ingest.max_body_bytes`.
        #[serde(default)]
        max_body_bytes: Option<u64>,
    },
    /// Read a TCP stream (line-oriented formats such as NMEA/AIS).
    Tcp {
        /// `host:port` to connect to or listen on.
        address: String,
        /// Connect out or listen.
        mode: TcpMode,
        /// Client mode: the longest wait between reconnect attempts, in seconds.
        #[serde(default = "default_reconnect_max_s")]
        reconnect_max_s: u64,
    },
    /// Receive UDP datagrams.
    Udp {
        /// `host:port` to listen on.
        address: String,
    },
    /// Read a file or every matching file of a folder (samples, imports, replays).
    File {
        /// Path of the file or folder.
        path: String,
        /// Pacing.
        #[serde(default)]
        replay: Replay,
        /// For folders: file name pattern with `*` and `?` (e.g. `*.gpx`); none = every file.
        #[serde(default)]
        pattern: Option<String>,
        /// Remember how far each file was read (in the stage's data dir) and continue there after
        /// a restart instead of reading it again.
        #[serde(default = "yes")]
        resume: bool,
        /// Single files: read the file again from the start each time its end is reached, for
        /// ever (demos, soak tests). Each pass is rebased to the wall clock: the file's earliest
        /// event time becomes the time the pass starts, later ones follow at the replay speed, so
        /// records look live and a pass never repeats an earlier pass's ids. Needs a paced
        /// `replay` (`original` or a speed factor).
        #[serde(default)]
        repeat: bool,
    },
    /// Consume another Kafka topic.
    Kafka {
        /// Comma-separated `host:port` bootstrap servers.
        bootstrap: String,
        /// Topic to consume.
        topic: String,
        /// Consumer group; default derived from tenant and feed.
        #[serde(default)]
        group: Option<String>,
        /// Extra librdkafka properties for that cluster (e.g. `security.protocol`).
        #[serde(default)]
        properties: BTreeMap<String, String>,
    },
}

impl Source {
    /// The secrets this source needs, so a registration can be refused before any is missing.
    pub fn secret_refs(&self) -> Vec<&str> {
        match self {
            Source::Mqtt { password_ref, .. } => password_ref.iter().map(String::as_str).collect(),
            Source::HttpPoll { auth, .. } => match auth {
                Some(HttpAuth::Bearer { token_ref }) => vec![token_ref.as_str()],
                Some(HttpAuth::Basic { password_ref, .. }) => vec![password_ref.as_str()],
                Some(HttpAuth::Header { value_ref, .. }) => vec![value_ref.as_str()],
                None => Vec::new(),
            },
            Source::HttpPush { token_ref, .. } => token_ref.iter().map(String::as_str).collect(),
            Source::Tcp { .. } | Source::Udp { .. } | Source::File { .. } | Source::Kafka { .. } => Vec::new(),
        }
    }

    /// The `kind` tag, for logs and metrics.
    pub const fn kind(&self) -> &'static str {
        match self {
            Source::Mqtt { .. } => "mqtt",
            Source::HttpPoll { .. } => "http_poll",
            Source::HttpPush { .. } => "http_push",
            Source::Tcp { .. } => "tcp",
            Source::Udp { .. } => "udp",
            Source::File { .. } => "file",
            Source::Kafka { .. } => "kafka",
        }
    }
}

/// How event times are written in the source.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TimeFormat {
    /// RFC 3339 / ISO 8601 with offset.
    #[default]
    Rfc3339,
    /// Seconds since the Unix epoch (integer or fractional).
    UnixS,
    /// Milliseconds since the Unix epoch.
    UnixMs,
    /// Microseconds since the Unix epoch.
    UnixUs,
    /// Nanoseconds since the Unix epoch.
    UnixNs,
    /// A `time` crate format description, e.g. `[year]-[month]-[day] [hour]:[minute]:[second]`.
    Custom(String),
}

/// Where the observation's fields are in a decoded message. Path syntax is defined by the
/// codecs; formats with native geometry need little or nothing here.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Mapping {
    /// Path of the track id; none = the format's own (MMSI for AIS) or untracked.
    #[serde(default)]
    pub track: Option<String>,
    /// Path of the event time; none = the format's own, or the receive time.
    #[serde(default)]
    pub time: Option<String>,
    /// How the event time is written.
    #[serde(default)]
    pub time_format: TimeFormat,
    /// IANA time zone (e.g. `Europe/Paris`) of event times written without an offset (custom
    /// formats without `[offset_...]`); none = UTC.
    #[serde(default)]
    pub time_zone: Option<String>,
    /// Path of the longitude (with `lat`).
    #[serde(default)]
    pub lon: Option<String>,
    /// Path of the latitude (with `lon`).
    #[serde(default)]
    pub lat: Option<String>,
    /// Path of a GeoJSON/WKT geometry (instead of `lon`/`lat`).
    #[serde(default)]
    pub geometry: Option<String>,
    /// Source CRS such as `EPSG:3857`; none = WGS84 lon/lat.
    #[serde(default)]
    pub crs: Option<String>,
    /// Observation attribute name → path in the message.
    #[serde(default)]
    pub attributes: BTreeMap<String, String>,
    /// Attribute name → unit of the source value (e.g. `knots`), converted by the normaliser.
    #[serde(default)]
    pub units: BTreeMap<String, String>,
}

fn yes() -> bool {
    true
}

/// Format-specific switches of a feed that are not part of the field mapping.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FormatOptions {
    /// JSON and GeoJSON: one record per line (JSON Lines, GeoJSON text sequences) instead of one
    /// document per payload. Line sources (TCP, UDP, line-by-line files) want this.
    pub lines: bool,
    /// JSON: where the records sit in each payload (mapping path syntax), e.g. `states`.
    pub records: Option<String>,
    /// CSV: the field delimiter, one ASCII character.
    pub delimiter: char,
    /// NMEA: accept sentences without a checksum (some loggers strip it).
    pub allow_missing_checksum: bool,
    /// GPX: accept points without a time (timed from the receive time).
    pub allow_missing_time: bool,
    /// GeoJSON: count features without geometry as skipped rather than rejected.
    pub skip_null_geometry: bool,
}

impl Default for FormatOptions {
    fn default() -> Self {
        Self {
            lines: false,
            records: None,
            delimiter: ',',
            allow_missing_checksum: false,
            allow_missing_time: false,
            skip_null_geometry: false,
        }
    }
}

/// A feed: one source of one tenant, with its format and field mapping.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FeedSpec {
    /// The feed's id, unique within the tenant.
    pub id: FeedId,
    /// Catalog type it was created from (a file name in `feeds/`), e.g. `ais-tcp`.
    #[serde(rename = "type")]
    pub type_: String,
    /// Where messages come from.
    pub source: Source,
    /// How messages are encoded.
    pub format: Format,
    /// Where the fields are.
    #[serde(default)]
    pub mapping: Mapping,
    /// Format switches that are not field mapping (framing, delimiters, leniency).
    #[serde(default)]
    pub options: FormatOptions,
    /// Disabled feeds stay registered but are not ingested.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Spec version, raised on every change; consumers ignore older versions.
    #[serde(default)]
    pub version: u64,
}

/// Collects the context for field errors of one spec.
struct FieldCheck<'a> {
    subject: &'a str,
}

impl FieldCheck<'_> {
    fn err(&self, field: impl Into<String>, problem: impl Into<String>) -> ModelError {
        ModelError::InvalidField { subject: self.subject.to_owned(), field: field.into(), problem: problem.into() }
    }

    fn non_empty(&self, field: &str, value: &str) -> Result<(), ModelError> {
        if value.trim().is_empty() { Err(self.err(field, "must not be empty")) } else { Ok(()) }
    }

    fn url(&self, field: &str, url: &str, schemes: &[&str]) -> Result<(), ModelError> {
        let ok = url
            .split_once("://")
            .is_some_and(|(scheme, rest)| schemes.iter().any(|s| s.eq_ignore_ascii_case(scheme)) && !rest.is_empty());
        if ok {
            Ok(())
        } else {
            Err(self.err(field, format!("is {url:?}; expected a URL starting with {}://", schemes.join("://, "))))
        }
    }

    fn host_port(&self, field: &str, address: &str) -> Result<(), ModelError> {
        let problem = match address.rsplit_once(':') {
            None => Some("has no port".to_owned()),
            Some((host, _)) if host.is_empty() || host == "[]" => Some("has no host".to_owned()),
            Some((_, port)) => match port.parse::<u16>() {
                Ok(p) if p > 0 => None,
                _ => Some(format!("has port {port:?}; ports are 1 to 65535")),
            },
        };
        match problem {
            None => Ok(()),
            Some(p) => {
                Err(self.err(field, format!("is {address:?} and {p}; expected host:port like \"0.0.0.0:10110\"")))
            }
        }
    }
}

/// MQTT topic filter rules: non-empty, `#` only as the whole last level, `+` only as a whole level.
fn mqtt_filter_problem(filter: &str) -> Option<String> {
    if filter.is_empty() {
        return Some("is empty".into());
    }
    let levels: Vec<&str> = filter.split('/').collect();
    for (i, level) in levels.iter().enumerate() {
        if level.contains('#') && (*level != "#" || i + 1 != levels.len()) {
            return Some(format!("is {filter:?}; '#' must be a whole level and the last one"));
        }
        if level.contains('+') && *level != "+" {
            return Some(format!("is {filter:?}; '+' must be a whole level"));
        }
    }
    None
}

/// The capture names of an MQTT topic template (`fleet/{device_id}/+/#`), or what is wrong with it.
pub fn topic_template_captures(template: &str) -> Result<Vec<String>, String> {
    if template.is_empty() {
        return Err("is empty".into());
    }
    let levels: Vec<&str> = template.split('/').collect();
    let mut names = Vec::new();
    for (i, level) in levels.iter().enumerate() {
        if let Some(name) = level.strip_prefix('{').and_then(|l| l.strip_suffix('}')) {
            let ok = !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
            if !ok {
                return Err(format!("level {} {level:?}: a capture is {{name}} with letters, digits, '_'", i + 1));
            }
            if names.iter().any(|n| n == name) {
                return Err(format!("captures {name:?} twice"));
            }
            names.push(name.to_owned());
        } else if level.contains(['{', '}']) {
            return Err(format!("level {} {level:?}: a capture must be a whole level like {{device_id}}", i + 1));
        } else if (level.contains('#') && (*level != "#" || i + 1 != levels.len()))
            || (level.contains('+') && *level != "+")
        {
            return Err(format!("level {} {level:?}: '+' and '#' must be whole levels, '#' the last", i + 1));
        }
    }
    Ok(names)
}

impl FeedSpec {
    /// Checks everything a running ingest would trip over, naming the field in each message.
    pub fn validate(&self) -> Result<(), ModelError> {
        let subject = format!("feed {:?}", self.id.as_str());
        let c = FieldCheck { subject: &subject };
        if FeedId::new(self.type_.as_str()).is_err() {
            return Err(c.err(
                "type",
                format!("is {:?}; expected a catalog type name like \"ais-tcp\" (a-z, 0-9, '-', '_')", self.type_),
            ));
        }
        self.validate_source(&c)?;
        if !self.options.delimiter.is_ascii()
            || (self.options.delimiter.is_ascii_control() && self.options.delimiter != '\t')
        {
            return Err(c.err(
                "options.delimiter",
                format!("is {:?}; use one printable ASCII character or a tab", self.options.delimiter),
            ));
        }
        self.validate_mapping(&c)
    }

    fn validate_source(&self, c: &FieldCheck<'_>) -> Result<(), ModelError> {
        match &self.source {
            Source::Mqtt {
                url,
                topics,
                qos,
                username,
                password_ref,
                ca_file,
                topic_template,
                track_from_topic,
                client_id,
                ..
            } => {
                c.url("source.url", url, &["mqtt", "mqtts"])?;
                if topics.is_empty() {
                    return Err(c.err("source.topics", "is empty; subscribe to at least one topic"));
                }
                for (i, t) in topics.iter().enumerate() {
                    if let Some(p) = mqtt_filter_problem(t) {
                        return Err(c.err(format!("source.topics[{i}]"), p));
                    }
                }
                if *qos > 2 {
                    return Err(c.err("source.qos", format!("is {qos}; MQTT QoS is 0, 1 or 2")));
                }
                if let Some(id) = client_id {
                    c.non_empty("source.client_id", id)?;
                }
                if password_ref.is_some() && username.is_none() {
                    return Err(c.err("source.username", "is missing; a password_ref needs a username"));
                }
                if ca_file.is_some() && !url.to_ascii_lowercase().starts_with("mqtts://") {
                    return Err(c.err("source.ca_file", "is set but source.url is not mqtts://; TLS needs mqtts://"));
                }
                let captures = match topic_template {
                    Some(t) => topic_template_captures(t).map_err(|p| c.err("source.topic_template", p))?,
                    None => Vec::new(),
                };
                if let Some(name) = track_from_topic
                    && !captures.iter().any(|cap| cap == name)
                {
                    return Err(c.err(
                        "source.track_from_topic",
                        format!(
                            "is {name:?}, which is not a capture of source.topic_template; captures: [{}]",
                            captures.join(", ")
                        ),
                    ));
                }
            }
            Source::HttpPoll { url, interval_s, headers, auth, timeout_s, .. } => {
                c.url("source.url", url, &["http", "https"])?;
                if *interval_s == 0 {
                    return Err(c.err("source.interval_s", "is 0; poll at most once per second"));
                }
                if *timeout_s == 0 {
                    return Err(c.err("source.timeout_s", "is 0; give requests at least a second"));
                }
                let header_ok = |name: &str| {
                    !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_".contains(&b))
                };
                for name in headers.keys() {
                    if !header_ok(name) {
                        return Err(c.err(
                            format!("source.headers.{name}"),
                            "is not a valid header name (letters, digits, '-', '_')",
                        ));
                    }
                }
                match auth {
                    Some(HttpAuth::Bearer { token_ref }) => c.non_empty("source.auth.token_ref", token_ref)?,
                    Some(HttpAuth::Basic { username, password_ref }) => {
                        c.non_empty("source.auth.username", username)?;
                        c.non_empty("source.auth.password_ref", password_ref)?;
                    }
                    Some(HttpAuth::Header { name, value_ref }) => {
                        if !header_ok(name) {
                            return Err(c.err("source.auth.name", format!("{name:?} is not a valid header name")));
                        }
                        c.non_empty("source.auth.value_ref", value_ref)?;
                    }
                    None => {}
                }
            }
            Source::HttpPush { token_ref, max_body_bytes } => {
                if let Some(t) = token_ref {
                    c.non_empty("source.token_ref", t)?;
                }
                if *max_body_bytes == Some(0) {
                    return Err(c.err("source.max_body_bytes", "is 0; leave it out for the stage default"));
                }
            }
            Source::Tcp { reconnect_max_s: 0, .. } => {
                return Err(c.err("source.reconnect_max_s", "is 0; wait at least a second between reconnects"));
            }
            Source::Tcp { address, .. } | Source::Udp { address } => {
                c.host_port("source.address", address)?;
            }
            Source::File { path, replay, pattern, repeat, .. } => {
                c.non_empty("source.path", path)?;
                if *repeat && *replay == Replay::Fast {
                    return Err(c.err(
                        "source.repeat",
                        "needs a paced replay: with `replay: fast` every pass would land at the same instant; \
                         set `replay` to `original` or a speed factor",
                    ));
                }
                if let Some(p) = pattern {
                    c.non_empty("source.pattern", p)?;
                    if p.contains('/') {
                        return Err(c.err("source.pattern", format!("is {p:?}; a file name pattern has no '/'")));
                    }
                }
                if let Replay::Speed(f) = replay
                    && !(f.is_finite() && *f > 0.0)
                {
                    return Err(c.err("source.replay", format!("is {f}; a speed factor must be a positive number")));
                }
            }
            Source::Kafka { bootstrap, topic, group, .. } => {
                c.non_empty("source.bootstrap", bootstrap)?;
                for server in bootstrap.split(',') {
                    c.host_port("source.bootstrap", server.trim())?;
                }
                let legal = topic.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
                if topic.is_empty() || topic.len() > 249 || !legal {
                    return Err(c.err(
                        "source.topic",
                        format!("is {topic:?}; Kafka topics are 1 to 249 characters of a-z, A-Z, 0-9, '.', '_', '-'"),
                    ));
                }
                if let Some(g) = group {
                    c.non_empty("source.group", g)?;
                }
            }
        }
        Ok(())
    }

    fn validate_mapping(&self, c: &FieldCheck<'_>) -> Result<(), ModelError> {
        let m = &self.mapping;
        let paths = [
            ("mapping.track", &m.track),
            ("mapping.time", &m.time),
            ("mapping.lon", &m.lon),
            ("mapping.lat", &m.lat),
            ("mapping.geometry", &m.geometry),
            ("mapping.crs", &m.crs),
        ];
        for (field, value) in paths {
            if let Some(v) = value {
                c.non_empty(field, v)?;
            }
        }
        match (&m.lon, &m.lat) {
            (Some(_), None) => {
                return Err(c.err("mapping.lat", "is missing; lon and lat are mapped together"));
            }
            (None, Some(_)) => {
                return Err(c.err("mapping.lon", "is missing; lon and lat are mapped together"));
            }
            _ => {}
        }
        if m.geometry.is_some() && m.lon.is_some() {
            return Err(c.err("mapping.geometry", "is set together with lon/lat; map the position one way only"));
        }
        let has_position = m.lon.is_some() || m.geometry.is_some();
        if !self.format.has_native_geometry() && !has_position {
            return Err(c.err(
                "mapping.lon",
                format!(
                    "is missing; format {} has no standard position field, so map lon and lat (or geometry)",
                    self.format
                ),
            ));
        }
        if let TimeFormat::Custom(pattern) = &m.time_format {
            c.non_empty("mapping.time_format.custom", pattern)?;
        }
        if let Some(z) = &m.time_zone {
            c.non_empty("mapping.time_zone", z)?;
        }
        for (name, path) in &m.attributes {
            if name.is_empty() {
                return Err(c.err("mapping.attributes", "has an attribute with an empty name"));
            }
            if Observation::RESERVED_PROPERTIES.contains(&name.as_str()) {
                return Err(c.err(
                    format!("mapping.attributes.{name}"),
                    format!(
                        "uses a reserved observation property name ({})",
                        Observation::RESERVED_PROPERTIES.join(", ")
                    ),
                ));
            }
            c.non_empty(&format!("mapping.attributes.{name}"), path)?;
        }
        for (name, unit) in &m.units {
            if name.is_empty() {
                return Err(c.err("mapping.units", "has an entry with an empty name"));
            }
            c.non_empty(&format!("mapping.units.{name}"), unit)?;
        }
        Ok(())
    }
}
