//! The canonical, unambiguous byte encoding that record ids hash.
//!
//! Every field is written with a fixed width or a length prefix, and optional fields with a
//! presence marker, so two different field lists can never produce the same byte stream (no
//! "ab" + "c" == "a" + "bc"). Each record type starts with its own domain tag, so an event and an
//! observation can never share an id by accident.

use geojson::{Geometry, GeometryValue, Position};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;

use crate::ids::RecordId;

pub(crate) struct IdHasher(Sha256);

impl IdHasher {
    pub(crate) fn new(domain: &str) -> Self {
        let mut h = IdHasher(Sha256::new());
        h.str(domain);
        h
    }

    pub(crate) fn u64(&mut self, v: u64) {
        self.0.update(v.to_be_bytes());
    }

    pub(crate) fn bytes(&mut self, b: &[u8]) {
        self.u64(b.len() as u64);
        self.0.update(b);
    }

    pub(crate) fn str(&mut self, s: &str) {
        self.bytes(s.as_bytes());
    }

    fn tag(&mut self, t: u8) {
        self.0.update([t]);
    }

    /// Presence marker for optional fields: 0 = absent, 1 = present (value follows).
    pub(crate) fn opt_str(&mut self, s: Option<&str>) {
        match s {
            None => self.tag(0),
            Some(s) => {
                self.tag(1);
                self.str(s);
            }
        }
    }

    pub(crate) fn present(&mut self, present: bool) {
        self.tag(u8::from(present));
    }

    /// Nanoseconds since the Unix epoch: independent of the offset the time was written with.
    pub(crate) fn time(&mut self, t: OffsetDateTime) {
        self.0.update(t.unix_timestamp_nanos().to_be_bytes());
    }

    fn position(&mut self, p: &Position) {
        let p = p.as_slice();
        self.u64(p.len() as u64);
        for &c in p {
            // -0.0 and 0.0 are the same place; give them the same id.
            let c = if c == 0.0 { 0.0 } else { c };
            self.u64(c.to_bits());
        }
    }

    fn positions(&mut self, ps: &[Position]) {
        self.u64(ps.len() as u64);
        for p in ps {
            self.position(p);
        }
    }

    fn rings(&mut self, rings: &[Vec<Position>]) {
        self.u64(rings.len() as u64);
        for r in rings {
            self.positions(r);
        }
    }

    /// Type tag, nesting structure and exact coordinate bits. `bbox` and foreign members are
    /// presentation, not identity, and are left out.
    pub(crate) fn geometry(&mut self, g: &Geometry) {
        match &g.value {
            GeometryValue::Point { coordinates } => {
                self.tag(1);
                self.position(coordinates);
            }
            GeometryValue::MultiPoint { coordinates } => {
                self.tag(2);
                self.positions(coordinates);
            }
            GeometryValue::LineString { coordinates } => {
                self.tag(3);
                self.positions(coordinates);
            }
            GeometryValue::MultiLineString { coordinates } => {
                self.tag(4);
                self.rings(coordinates);
            }
            GeometryValue::Polygon { coordinates } => {
                self.tag(5);
                self.rings(coordinates);
            }
            GeometryValue::MultiPolygon { coordinates } => {
                self.tag(6);
                self.u64(coordinates.len() as u64);
                for poly in coordinates {
                    self.rings(poly);
                }
            }
            GeometryValue::GeometryCollection { geometries } => {
                self.tag(7);
                self.u64(geometries.len() as u64);
                for g in geometries {
                    self.geometry(g);
                }
            }
        }
    }

    pub(crate) fn finish(self) -> RecordId {
        let digest = self.0.finalize();
        let mut id = [0u8; 16];
        id.copy_from_slice(&digest[..16]);
        RecordId::from_bytes(id)
    }
}
