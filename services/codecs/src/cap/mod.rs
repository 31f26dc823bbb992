//! CAP (Common Alerting Protocol 1.1 / 1.2) alerts: one XML document to one observation per
//! `<info><area>` that has a shape.
//!
//! Parsed with `quick-xml` events into a small element tree (elements matched by local name, so
//! the CAP 1.1 and 1.2 namespaces and prefixed documents read alike). Every `<alert>` element in the
//! document is decoded (a bare alert, or alerts embedded in a wrapper); nested elements are capped at
//! [`MAX_DEPTH`] levels.
//!
//! Per area:
//! - geometry: each non-empty `<polygon>` ("lat,lon lat,lon ...", latitude first as CAP says) becomes
//!   a ring of `[lon, lat]` positions; it must be closed and hold at least 4 positions, else the area is
//!   rejected (`schema`). Each `<circle>` ("lat,lon radius_km") becomes a ring of [`CIRCLE_VERTICES`]
//!   vertices (plus the closing one) at the given great-circle distance from the centre on a sphere of
//!   the mean Earth radius; a circle crossing the antimeridian keeps longitudes normalised to
//!   [-180, 180] (a consumer that needs split rings must split it). One shape gives a Polygon, several
//!   give a MultiPolygon;
//! - an area with only `<geocode>`s (or empty `<polygon/>` elements, as NWS sends) is skipped as
//!   `NotAPosition`: geometry by geocode lookup (FIPS, UGC) is out of scope here;
//! - track = `<identifier>#<info index>.<area index>` (both from 0), so each area is its own track;
//! - time = the alert's `<sent>` (required by CAP, so every area of an alert shares it); `<effective>`,
//!   `<onset>` and `<expires>` are attributes;
//! - attributes: `identifier`, `sender`, `status`, `msgType`, `scope`, `language`, `event`, `urgency`,
//!   `severity`, `certainty`, `headline`, `effective`, `onset`, `expires`, `areaDesc`, `altitude`,
//!   `ceiling`, and `geocodes` as an object from `valueName` to a list of values (FIPS6, UGC, ...).
//!
//! A document that is not well-formed XML, or has no `<alert>`, is one rejection (`malformed`,
//! `schema`); an alert without `<identifier>` or with a `<sent>` that is not RFC 3339 is one rejection.

use geostream_model::ReasonCode;
use geostream_model::geojson::{Geometry, Position};
use geostream_model::time::OffsetDateTime;
use geostream_model::time::format_description::well_known::Rfc3339;
use quick_xml::Reader;
use quick_xml::events::Event;
use serde_json::{Map, Value};

use crate::codec::{Codec, Context, Framing, Outcome, Skip};
use crate::doc_common::{check_lon_lat, check_ring, observation, reject};

/// Vertices of the polygon that stands for a `<circle>` (the closing vertex not counted).
pub const CIRCLE_VERTICES: usize = 64;
/// Deepest element nesting read; deeper documents are rejected as malformed.
pub const MAX_DEPTH: usize = 64;
/// Mean Earth radius in metres (IUGG), used for circles.
const EARTH_RADIUS_M: f64 = 6_371_008.8;

/// CAP alert documents to area observations.
#[derive(Debug, Default, Clone)]
pub struct CapCodec;

impl CapCodec {
    /// A codec; it keeps no state between documents.
    pub fn new() -> Self {
        Self
    }
}

impl Codec for CapCodec {
    fn name(&self) -> &'static str {
        "cap"
    }

    fn framing(&self) -> Framing {
        Framing::Document
    }

    fn decode(&mut self, input: &[u8], ctx: &Context, out: &mut dyn FnMut(Outcome)) {
        let root = match parse_tree(input) {
            Ok(r) => r,
            Err(e) => return out(reject(ctx, ReasonCode::Malformed, format!("not well-formed XML: {e}"), input)),
        };
        let mut alerts = Vec::new();
        collect_alerts(&root, &mut alerts);
        if alerts.is_empty() {
            return out(reject(ctx, ReasonCode::Schema, "no <alert> element".to_owned(), input));
        }
        for alert in alerts {
            decode_alert(alert, ctx, input, out);
        }
    }
}

/// An XML element: local name, concatenated text and child elements.
#[derive(Debug, Default)]
struct Node {
    name: String,
    text: String,
    children: Vec<Node>,
}

impl Node {
    fn child(&self, name: &str) -> Option<&Node> {
        self.children.iter().find(|c| c.name == name)
    }

    fn all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Node> + 'a {
        self.children.iter().filter(move |c| c.name == name)
    }

    /// The trimmed text of the first child `name`, if non-empty.
    fn text_of(&self, name: &str) -> Option<&str> {
        self.child(name).map(|c| c.text.trim()).filter(|t| !t.is_empty())
    }
}

fn local_name(qname: &[u8]) -> String {
    let local = qname.rsplit(|b| *b == b':').next().unwrap_or(qname);
    String::from_utf8_lossy(local).into_owned()
}

/// Reads the whole document into a tree under a synthetic root.
fn parse_tree(input: &[u8]) -> Result<Node, String> {
    let mut reader = Reader::from_reader(input);
    reader.config_mut().expand_empty_elements = true;
    let mut stack = vec![Node::default()];
    loop {
        match reader.read_event().map_err(|e| e.to_string())? {
            Event::Start(e) => {
                if stack.len() > MAX_DEPTH {
                    return Err(format!("elements nested deeper than {MAX_DEPTH}"));
                }
                stack.push(Node { name: local_name(e.name().as_ref()), ..Node::default() });
            }
            Event::End(_) => {
                let node = stack.pop().ok_or("unbalanced end tag")?;
                stack.last_mut().ok_or("unbalanced end tag")?.children.push(node);
                if stack.is_empty() {
                    return Err("unbalanced end tag".to_owned());
                }
            }
            Event::Text(t) => {
                let s = t.xml_content().map_err(|e| e.to_string())?;
                if let Some(top) = stack.last_mut() {
                    top.text.push_str(&s);
                }
            }
            Event::CData(t) => {
                let s = t.decode().map_err(|e| e.to_string())?;
                if let Some(top) = stack.last_mut() {
                    top.text.push_str(&s);
                }
            }
            Event::GeneralRef(r) => {
                let resolved = if r.is_char_ref() {
                    r.resolve_char_ref().map_err(|e| e.to_string())?.map(String::from)
                } else {
                    let name = r.decode().map_err(|e| e.to_string())?;
                    quick_xml::escape::resolve_predefined_entity(&name).map(str::to_owned)
                };
                let s = resolved.ok_or("unknown entity reference")?;
                if let Some(top) = stack.last_mut() {
                    top.text.push_str(&s);
                }
            }
            Event::Eof => break,
            _ => {}
        }
    }
    if stack.len() != 1 {
        return Err("document ends inside an element".to_owned());
    }
    stack.pop().ok_or_else(|| "empty document".to_owned())
}

fn collect_alerts<'a>(node: &'a Node, out: &mut Vec<&'a Node>) {
    // Iterative so a deep (but capped) tree cannot exhaust the stack in any case.
    let mut todo = vec![node];
    while let Some(n) = todo.pop() {
        if n.name == "alert" {
            out.push(n);
        } else {
            todo.extend(n.children.iter().rev());
        }
    }
}

fn decode_alert(alert: &Node, ctx: &Context, raw: &[u8], out: &mut dyn FnMut(Outcome)) {
    let Some(identifier) = alert.text_of("identifier") else {
        return out(reject(ctx, ReasonCode::Schema, "alert without <identifier>".to_owned(), raw));
    };
    let sent = alert.text_of("sent").unwrap_or("");
    let Ok(time) = OffsetDateTime::parse(sent, &Rfc3339) else {
        let detail = format!("alert {identifier:?}: <sent> {sent:?} is not an RFC 3339 date-time");
        return out(reject(ctx, ReasonCode::InvalidTime, detail, raw));
    };
    let mut base = Map::new();
    for key in ["identifier", "sender", "status", "msgType", "scope"] {
        text_attr(&mut base, alert, key);
    }
    for (i, info) in alert.all("info").enumerate() {
        let mut info_attrs = base.clone();
        for key in
            ["language", "event", "urgency", "severity", "certainty", "headline", "effective", "onset", "expires"]
        {
            text_attr(&mut info_attrs, info, key);
        }
        for (j, area) in info.all("area").enumerate() {
            let what = format!("alert {identifier:?} info {i} area {j}");
            let outcome = match area_geometry(area) {
                Err(e) => reject(ctx, ReasonCode::Schema, format!("{what}: {e}"), raw),
                Ok(None) => Outcome::Skipped(Skip::NotAPosition),
                Ok(Some(geometry)) => {
                    let mut a = info_attrs.clone();
                    for key in ["areaDesc", "altitude", "ceiling"] {
                        text_attr(&mut a, area, key);
                    }
                    let codes = geocodes(area);
                    if !codes.is_empty() {
                        a.insert("geocodes".to_owned(), Value::Object(codes));
                    }
                    let track = format!("{identifier}#{i}.{j}");
                    observation(ctx, &what, &track, time, geometry, a, raw)
                }
            };
            out(outcome);
        }
    }
}

fn text_attr(attrs: &mut Map<String, Value>, node: &Node, key: &str) {
    if let Some(t) = node.text_of(key) {
        attrs.insert(key.to_owned(), Value::String(t.to_owned()));
    }
}

fn geocodes(area: &Node) -> Map<String, Value> {
    let mut m = Map::new();
    for g in area.all("geocode") {
        let (Some(name), Some(value)) = (g.text_of("valueName"), g.text_of("value")) else { continue };
        if let Value::Array(list) = m.entry(name.to_owned()).or_insert_with(|| Value::Array(Vec::new())) {
            list.push(Value::String(value.to_owned()));
        }
    }
    m
}

/// The area's shapes as one geometry, `None` when it has none.
fn area_geometry(area: &Node) -> Result<Option<Geometry>, String> {
    let mut rings: Vec<Vec<Position>> = Vec::new();
    for p in area.all("polygon") {
        let text = p.text.trim();
        if !text.is_empty() {
            rings.push(parse_polygon(text)?);
        }
    }
    for c in area.all("circle") {
        let text = c.text.trim();
        if !text.is_empty() {
            rings.push(parse_circle(text)?);
        }
    }
    Ok(match rings.len() {
        0 => None,
        1 => Some(Geometry::new_polygon(rings)),
        _ => Some(Geometry::new_multi_polygon(rings.into_iter().map(|r| vec![r]))),
    })
}

/// "lat,lon" to (lon, lat), checked.
fn parse_point(s: &str) -> Result<(f64, f64), String> {
    let (lat, lon) = s.split_once(',').ok_or_else(|| format!("{s:?} is not \"lat,lon\""))?;
    let num = |t: &str| t.trim().parse::<f64>().map_err(|_| format!("{s:?} is not \"lat,lon\""));
    let (lat, lon) = (num(lat)?, num(lon)?);
    check_lon_lat(lon, lat)?;
    Ok((lon, lat))
}

fn parse_polygon(text: &str) -> Result<Vec<Position>, String> {
    let ring = text
        .split_whitespace()
        .map(|p| parse_point(p).map(|(lon, lat)| Position::from([lon, lat])))
        .collect::<Result<Vec<_>, _>>()?;
    check_ring(&ring).map_err(|e| format!("<polygon> {e}"))?;
    Ok(ring)
}

fn parse_circle(text: &str) -> Result<Vec<Position>, String> {
    let mut parts = text.split_whitespace();
    let (Some(centre), Some(radius), None) = (parts.next(), parts.next(), parts.next()) else {
        return Err(format!("<circle> {text:?} is not \"lat,lon radius_km\""));
    };
    let (lon0, lat0) = parse_point(centre)?;
    let radius_km: f64 = radius.parse().map_err(|_| format!("<circle> radius {radius:?} is not a number"))?;
    // Half the Earth's circumference: beyond that the "circle" wraps around the globe.
    if !(radius_km > 0.0 && radius_km <= 20_000.0) {
        return Err(format!("<circle> radius {radius_km} km is not in (0, 20000]"));
    }
    Ok(circle_ring(lon0, lat0, radius_km * 1000.0))
}

/// A closed ring approximating the geodesic circle (on a sphere) around (lon0, lat0).
fn circle_ring(lon0: f64, lat0: f64, radius_m: f64) -> Vec<Position> {
    let d = radius_m / EARTH_RADIUS_M;
    let (phi1, lambda1) = (lat0.to_radians(), lon0.to_radians());
    let mut ring = Vec::with_capacity(CIRCLE_VERTICES + 1);
    for k in 0..CIRCLE_VERTICES {
        // Vertices run clockwise from north when seen from above; reversed below to the
        // counter-clockwise exterior ring RFC 7946 recommends.
        let bearing = (k as f64) * std::f64::consts::TAU / (CIRCLE_VERTICES as f64);
        let sin_phi2 = phi1.sin() * d.cos() + phi1.cos() * d.sin() * bearing.cos();
        let phi2 = sin_phi2.clamp(-1.0, 1.0).asin();
        let lambda2 = lambda1 + (bearing.sin() * d.sin() * phi1.cos()).atan2(d.cos() - phi1.sin() * sin_phi2);
        let lon = (lambda2.to_degrees() + 540.0).rem_euclid(360.0) - 180.0;
        let lat = phi2.to_degrees().clamp(-90.0, 90.0);
        ring.push([lon, lat]);
    }
    ring.reverse();
    if let Some(first) = ring.first().copied() {
        ring.push(first);
    }
    ring.into_iter().map(Position::from).collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn circle_has_64_vertices_closed_and_at_radius() {
        let ring = circle_ring(-77.0, 39.0, 10_000.0);
        assert_eq!(ring.len(), CIRCLE_VERTICES + 1);
        assert_eq!(ring.first(), ring.last());
        for p in &ring {
            let (lon, lat) = (p[0].to_radians(), p[1].to_radians());
            let (lon0, lat0) = ((-77.0f64).to_radians(), 39.0f64.to_radians());
            // Haversine distance back to the centre.
            let h = ((lat - lat0) / 2.0).sin().powi(2) + lat.cos() * lat0.cos() * ((lon - lon0) / 2.0).sin().powi(2);
            let dist = 2.0 * EARTH_RADIUS_M * h.sqrt().asin();
            assert!((dist - 10_000.0).abs() < 0.01, "{dist}");
        }
    }

    #[test]
    fn polygon_rules() {
        assert!(parse_polygon("1,2 3,4 5,6 1,2").is_ok());
        assert!(parse_polygon("1,2 3,4 1,2").is_err());
        assert!(parse_polygon("1,2 3,4 5,6 7,8").is_err());
        assert!(parse_polygon("91,2 3,4 5,6 91,2").is_err());
        assert_eq!(parse_polygon("1,2 3,4 5,6 1,2").unwrap()[0], Position::from([2.0, 1.0]));
    }
}
