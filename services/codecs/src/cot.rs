//! Cursor on Target (CoT) events ([`CotCodec`]): `<event version uid type time start stale how>
//! <point lat lon hae ce le/><detail>...</detail></event>`, one per document or several back to
//! back in one buffer, as TAK servers and clients send them over TCP (each usually with its own
//! `<?xml ...?>` declaration). Read with `quick-xml` events: only a handful of attributes are
//! needed, and the `<detail>` content is open-ended (every TAK plugin adds elements), so a serde
//! mapping would only add rigidity.
//!
//! Per event:
//! - track = `uid`; time = `time` (RFC 3339 / xs:dateTime with an offset, `Z` in practice);
//! - geometry = Point `[lon, lat]` from `<point>` (the height goes to `hae_m`, as GPX elevation goes
//!   to `ele_m`);
//! - attributes: `type`, `how`, `stale`, `hae_m` (height above the WGS84 ellipsoid), `ce_m` and
//!   `le_m` (circular and linear error), each left out when it is CoT's "unknown" value 9999999 or
//!   not a number; `callsign` from `detail/contact@callsign`; `course_deg` and `speed_mps` (CoT
//!   speeds are metres per second) from `detail/track@course`/`@speed`;
//! - tasking events (`type` starting `t-`: TAK pings `t-x-c-t`, deletions `t-x-d-d`) carry no
//!   position (their point is 0,0) and are skipped as `NotAPosition`.
//!
//! Rejections, each carrying the event's own bytes: not well-formed XML, or an event whose bytes
//! run into the start of the next `<event` (a quote or tag left open) (`malformed`; parsing resumes
//! at that next `<event`, so one truncated or damaged event in a stream costs only itself; an
//! element named `event` nested inside an event is therefore not supported, and CoT has none), an element other than `<event>` at the top level, no `uid`/`type`/`time`, no `<point>`
//! or a `lat`/`lon` that is not a number (`schema`), coordinates out of range (`invalid_coordinates`)
//! or exactly (0, 0) (`null_island`), a `time` that does not parse (`invalid_time`). A buffer with no
//! event at all is one `schema` rejection.
//!
//! The codec frames by documents: a caller reading a TCP stream hands it whole events, any number
//! per call; [`complete_len`] says how much of a read buffer that is.

use geostream_model::ReasonCode;
use geostream_model::geojson::Geometry;
use geostream_model::time::OffsetDateTime;
use geostream_model::time::format_description::well_known::Rfc3339;
use quick_xml::Reader;
use quick_xml::events::{BytesStart, Event};
use serde_json::{Map, Value};

use crate::codec::{Codec, Context, Framing, Outcome, Skip};
use crate::doc_common::{check_point, observation, put, put_f64, reject};

/// CoT's value for "unknown" in `hae`, `ce` and `le`.
pub const UNKNOWN: f64 = 9_999_999.0;

/// How many leading bytes of a stream buffer are whole events: up to the end of the last
/// `</event>`. A TCP reader decodes those and keeps the rest for its next read; `0` means no event
/// has ended yet. (The end tag cannot occur inside attribute values or escaped text, so a plain
/// search is exact for CoT; a self-closed `<event/>`, which has no position anyway, waits for the
/// next full event.)
pub fn complete_len(buf: &[u8]) -> usize {
    const END: &[u8] = b"</event>";
    buf.windows(END.len()).rposition(|w| w == END).map_or(0, |i| i + END.len())
}

/// CoT event documents and streams to point observations.
#[derive(Debug, Default, Clone)]
pub struct CotCodec;

impl CotCodec {
    /// A codec; it keeps no state between documents.
    pub fn new() -> Self {
        Self
    }
}

impl Codec for CotCodec {
    fn name(&self) -> &'static str {
        "cot"
    }

    fn framing(&self) -> Framing {
        Framing::Document
    }

    fn decode(&mut self, input: &[u8], ctx: &Context, out: &mut dyn FnMut(Outcome)) {
        let mut index = 0usize;
        let mut emit = |item: Item<'_>| {
            let outcome = match item {
                Item::Event { parsed, raw } => {
                    let o = event_outcome(parsed, index, ctx, raw);
                    index += 1;
                    o
                }
                Item::Reject { reason, detail, raw } => reject(ctx, reason, detail, raw),
            };
            out(outcome);
        };
        if !scan(input, &mut emit) {
            emit(Item::Reject {
                reason: ReasonCode::Schema,
                detail: "no CoT <event> in the payload".to_owned(),
                raw: input,
            });
        }
    }
}

/// What the scanner found: an event (parsed, with its bytes) or bytes to reject.
enum Item<'a> {
    Event { parsed: Result<Box<CotEvent>, String>, raw: &'a [u8] },
    Reject { reason: ReasonCode, detail: String, raw: &'a [u8] },
}

/// The parts of an event this codec uses.
#[derive(Debug, Default)]
struct CotEvent {
    uid: Option<String>,
    type_: Option<String>,
    time: Option<String>,
    stale: Option<String>,
    how: Option<String>,
    /// `lat`, `lon`, `hae`, `ce`, `le` as written, if there is a `<point>`.
    point: Option<[Option<String>; 5]>,
    callsign: Option<String>,
    course: Option<String>,
    speed: Option<String>,
}

/// Walks the top level of `input`, reporting each `<event>` (or what is wrong) through `emit`.
/// Returns whether anything but whitespace, declarations and comments was found.
fn scan<'a>(input: &'a [u8], emit: &mut dyn FnMut(Item<'a>)) -> bool {
    let mut base = 0usize;
    let mut found = false;
    'restart: while base < input.len() {
        let rest = &input[base..];
        let mut reader = Reader::from_reader(rest);
        loop {
            let start = pos(&reader);
            let item: Result<Item<'a>, String> = match reader.read_event() {
                Err(e) => Err(format!("not well-formed XML at byte {}: {e}", base + pos_of(reader.error_position()))),
                Ok(Event::Eof) => break 'restart,
                Ok(Event::Decl(_) | Event::PI(_) | Event::Comment(_) | Event::DocType(_)) => continue,
                Ok(Event::Text(t)) if t.iter().all(u8::is_ascii_whitespace) => continue,
                Ok(Event::Start(e)) if e.local_name().as_ref() == b"event" => read_event_body(&mut reader, &e)
                    .map(|parsed| Item::Event { parsed, raw: &rest[start..pos(&reader)] })
                    .map_err(|err| format!("not well-formed XML in the <event> at byte {}: {err}", base + start)),
                Ok(Event::Empty(e)) if e.local_name().as_ref() == b"event" => {
                    // A self-closed event has no <point>: rejected as such by event_outcome.
                    Ok(Item::Event { parsed: event_attributes(&e), raw: &rest[start..pos(&reader)] })
                }
                Ok(Event::Start(e)) => {
                    let name = String::from_utf8_lossy(e.name().as_ref()).into_owned();
                    let end = e.to_end().into_owned();
                    match reader.read_to_end(end.name()) {
                        Ok(_) => Ok(Item::Reject {
                            reason: ReasonCode::Schema,
                            detail: format!("<{name}> at byte {} is not a CoT <event>", base + start),
                            raw: &rest[start..pos(&reader)],
                        }),
                        Err(err) => Err(format!("not well-formed XML in <{name}> at byte {}: {err}", base + start)),
                    }
                }
                Ok(Event::Empty(e)) => Ok(Item::Reject {
                    reason: ReasonCode::Schema,
                    detail: format!(
                        "<{}/> at byte {} is not a CoT <event>",
                        String::from_utf8_lossy(e.name().as_ref()),
                        base + start
                    ),
                    raw: &rest[start..pos(&reader)],
                }),
                // Text, CDATA or an entity reference outside any element: junk between events.
                Ok(_) => Ok(Item::Reject {
                    reason: ReasonCode::Malformed,
                    detail: format!("text outside any element at byte {}", base + start),
                    raw: &rest[start..pos(&reader)],
                }),
            };
            found = true;
            // A quote or tag left open (a flipped byte, a cut segment) can make one item swallow the
            // events after it, even as well-formed XML; the start of another event inside an item's
            // bytes gives that away.
            let item = item.and_then(|item| match find_event_start(&rest[..pos(&reader)], start + 1) {
                Some(_) => Err(format!(
                    "the markup at byte {} runs into the next <event>: a quote or tag in it is not closed",
                    base + start
                )),
                None => Ok(item),
            });
            match item {
                Ok(item) => emit(item),
                Err(detail) => {
                    // Resynchronise at the next event, so one bad event costs only itself.
                    let next = find_event_start(rest, start + 1).unwrap_or(rest.len());
                    emit(Item::Reject { reason: ReasonCode::Malformed, detail, raw: &rest[start..next] });
                    base += next;
                    continue 'restart;
                }
            }
        }
    }
    found
}

/// The reader's position as an index into its input (it never exceeds the input's length).
fn pos(reader: &Reader<&[u8]>) -> usize {
    pos_of(reader.buffer_position())
}

fn pos_of(p: u64) -> usize {
    usize::try_from(p).unwrap_or(usize::MAX)
}

/// Where the next `<event` tag starts at or after `from`.
fn find_event_start(input: &[u8], from: usize) -> Option<usize> {
    let hay = input.get(from..)?;
    hay.windows(7)
        .position(|w| w.starts_with(b"<event") && matches!(w[6], b' ' | b'\t' | b'\r' | b'\n' | b'>' | b'/'))
        .map(|i| from + i)
}

fn attr_text(a: &quick_xml::events::attributes::Attribute<'_>, e: &BytesStart<'_>) -> Result<String, String> {
    a.decode_and_unescape_value(e.decoder())
        .map(|v| v.into_owned())
        .map_err(|e| format!("attribute {}: {e}", String::from_utf8_lossy(a.key.as_ref())))
}

/// Reads the attributes of `e` named in `names`, in that order.
fn attributes<const N: usize>(e: &BytesStart<'_>, names: [&[u8]; N]) -> Result<[Option<String>; N], String> {
    let mut out: [Option<String>; N] = std::array::from_fn(|_| None);
    for a in e.attributes() {
        let a = a.map_err(|err| format!("<{}>: {err}", String::from_utf8_lossy(e.name().as_ref())))?;
        if let Some(i) = names.iter().position(|n| *n == a.key.local_name().as_ref()) {
            out[i] = Some(attr_text(&a, e)?);
        }
    }
    Ok(out)
}

fn event_attributes(e: &BytesStart<'_>) -> Result<Box<CotEvent>, String> {
    let [uid, type_, time, stale, how] = attributes(e, [b"uid", b"type", b"time", b"stale", b"how"])?;
    Ok(Box::new(CotEvent { uid, type_, time, stale, how, ..CotEvent::default() }))
}

/// Reads from just after `<event ...>` to its `</event>`. The outer error is XML that is not
/// well-formed (the reader cannot go on); the inner one a bad attribute (this event only).
fn read_event_body(
    reader: &mut Reader<&[u8]>,
    start: &BytesStart<'_>,
) -> Result<Result<Box<CotEvent>, String>, String> {
    let mut ev = event_attributes(start);
    let mut depth = 1usize;
    let mut in_detail = false;
    loop {
        let (e, opens) = match reader.read_event().map_err(|e| e.to_string())? {
            // The next document began before this one ended (a cut stream): stop here rather than
            // read the rest of the buffer as this event's content.
            Event::Decl(_) => return Err("an XML declaration inside the <event>: it is not closed".to_owned()),
            Event::Start(e) | Event::Empty(e) if e.local_name().as_ref() == b"event" => {
                return Err("an <event> inside the <event>: the first is not closed".to_owned());
            }
            Event::Start(e) => (e, true),
            Event::Empty(e) => (e, false),
            Event::End(_) => {
                depth = depth.saturating_sub(1);
                if depth == 1 {
                    in_detail = false;
                }
                if depth == 0 {
                    return Ok(ev);
                }
                continue;
            }
            Event::Eof => return Err("the payload ends inside the <event>".to_owned()),
            _ => continue,
        };
        let level = depth + 1;
        if let Ok(event) = &mut ev {
            let found = match (level, in_detail, e.local_name().as_ref()) {
                (2, _, b"point") if event.point.is_none() => {
                    attributes(&e, [b"lat", b"lon", b"hae", b"ce", b"le"]).map(|p| event.point = Some(p))
                }
                (3, true, b"contact") if event.callsign.is_none() => {
                    attributes(&e, [b"callsign"]).map(|[c]| event.callsign = c)
                }
                (3, true, b"track") if event.course.is_none() && event.speed.is_none() => {
                    attributes(&e, [b"course", b"speed"]).map(|[c, s]| {
                        event.course = c;
                        event.speed = s;
                    })
                }
                _ => Ok(()),
            };
            if let Err(err) = found {
                ev = Err(err);
            }
        }
        if opens {
            depth = level;
            if level == 2 && e.local_name().as_ref() == b"detail" {
                in_detail = true;
            }
        }
    }
}

/// A number attribute, `None` when absent, not a number, not finite or CoT's "unknown".
fn known(v: &Option<String>) -> Option<f64> {
    v.as_deref().and_then(|s| s.trim().parse::<f64>().ok()).filter(|n| n.is_finite() && *n != UNKNOWN)
}

fn event_outcome(parsed: Result<Box<CotEvent>, String>, index: usize, ctx: &Context, raw: &[u8]) -> Outcome {
    let ev = match parsed {
        Ok(ev) => ev,
        Err(e) => return reject(ctx, ReasonCode::Malformed, format!("event {index}: {e}"), raw),
    };
    let Some(uid) = ev.uid.as_deref().map(str::trim).filter(|u| !u.is_empty()) else {
        return reject(ctx, ReasonCode::Schema, format!("event {index}: no uid attribute"), raw);
    };
    let what = format!("event {index} (uid {uid:?})");
    let Some(type_) = ev.type_.as_deref().map(str::trim).filter(|t| !t.is_empty()) else {
        return reject(ctx, ReasonCode::Schema, format!("{what}: no type attribute"), raw);
    };
    if type_.starts_with("t-") {
        return Outcome::Skipped(Skip::NotAPosition);
    }
    let Some([lat, lon, hae, ce, le]) = &ev.point else {
        return reject(ctx, ReasonCode::Schema, format!("{what}: no <point>"), raw);
    };
    let number = |v: &Option<String>, name: &str| match v.as_deref().map(str::trim) {
        None => Err(format!("<point> has no {name}")),
        Some(s) => s.parse::<f64>().map_err(|_| format!("<point> {name} {s:?} is not a number")),
    };
    let (lat, lon) = match (number(lat, "lat"), number(lon, "lon")) {
        (Ok(lat), Ok(lon)) => (lat, lon),
        (Err(e), _) | (_, Err(e)) => return reject(ctx, ReasonCode::Schema, format!("{what}: {e}"), raw),
    };
    if let Err((reason, e)) = check_point(lon, lat) {
        return reject(ctx, reason, format!("{what}: {e}"), raw);
    }
    let Some(time_text) = ev.time.as_deref().map(str::trim) else {
        return reject(ctx, ReasonCode::Schema, format!("{what}: no time attribute"), raw);
    };
    let time = match OffsetDateTime::parse(time_text, &Rfc3339) {
        Ok(t) => t,
        Err(e) => {
            let detail = format!("{what}: time {time_text:?} is not an RFC 3339 date-time with an offset: {e}");
            return reject(ctx, ReasonCode::InvalidTime, detail, raw);
        }
    };
    let mut a = Map::new();
    a.insert("type".to_owned(), Value::from(type_));
    put(&mut a, "how", ev.how.clone());
    put(&mut a, "stale", ev.stale.clone());
    put_f64(&mut a, "hae_m", known(hae));
    put_f64(&mut a, "ce_m", known(ce));
    put_f64(&mut a, "le_m", known(le));
    put(&mut a, "callsign", ev.callsign.clone().filter(|c| !c.is_empty()));
    put_f64(&mut a, "course_deg", known(&ev.course));
    put_f64(&mut a, "speed_mps", known(&ev.speed));
    observation(ctx, &what, uid, time, Geometry::new_point([lon, lat]), a, raw)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn finds_event_starts_not_prefixes() {
        let s = b"<events><event_x/><event uid='a'/><event>";
        assert_eq!(find_event_start(s, 0), Some(18));
        assert_eq!(find_event_start(s, 19), Some(34));
        assert_eq!(find_event_start(s, 35), None);
    }

    #[test]
    fn complete_len_stops_after_the_last_end_tag() {
        assert_eq!(complete_len(b""), 0);
        assert_eq!(complete_len(b"<event uid='a'><point lat='1'"), 0);
        let two = b"<event/></event><?xml?><event><point";
        assert_eq!(complete_len(two), 16);
        assert_eq!(complete_len(&two[..16]), 16);
    }

    #[test]
    fn known_drops_unknown_and_junk() {
        assert_eq!(known(&Some("9999999.0".into())), None);
        assert_eq!(known(&Some("9999999".into())), None);
        assert_eq!(known(&Some("-13.62".into())), Some(-13.62));
        assert_eq!(known(&Some("NaN".into())), None);
        assert_eq!(known(&Some("high".into())), None);
        assert_eq!(known(&None), None);
    }
}
