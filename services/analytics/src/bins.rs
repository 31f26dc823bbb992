//! Spatial bins over event-time windows: count, sum, avg, min and max of chosen properties per
//! cell (geohash, H3 or a square grid in metres) and window (tumbling or hopping).
//!
//! A window's result is emitted when the watermark passes its end. Its state is kept for the
//! allowed lateness after that: a record arriving in that time updates the result, which is
//! emitted again as a correction with the same key and a higher version (downstream overwrites by
//! id). After the lateness the state is dropped and older records are `late`.
//!
//! Cells come from crates: `geohash` for geohash cells and `h3o` for H3. The metre grid is ours: rows
//! of `size_m` along the meridian, and in each row columns of `size_m` along the row's middle
//! parallel, so cells are about `size_m` square anywhere but the poles.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Metres per degree of latitude (mean).
const M_PER_DEG: f64 = 111_320.0;

/// How observations are binned in space.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum CellSpec {
    /// Geohash cells of `precision` characters (1 to 12).
    Geohash {
        /// Characters.
        precision: usize,
    },
    /// H3 cells of `resolution` (0 to 15).
    H3 {
        /// Resolution.
        resolution: u8,
    },
    /// Square cells of about `size_m` metres.
    Grid {
        /// Edge length, metres.
        size_m: f64,
    },
}

/// Why a bin spec cannot be used.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum BinError {
    /// The cell spec is out of range.
    #[error("bins: {0}")]
    Cell(String),
    /// The window spec is out of range.
    #[error("bins: {0}")]
    Window(String),
}

impl CellSpec {
    /// Checks the ranges.
    pub fn validate(&self) -> Result<(), BinError> {
        match *self {
            CellSpec::Geohash { precision } if !(1..=12).contains(&precision) => {
                Err(BinError::Cell(format!("geohash precision {precision} is outside 1 to 12")))
            }
            CellSpec::H3 { resolution } if resolution > 15 => {
                Err(BinError::Cell(format!("H3 resolution {resolution} is outside 0 to 15")))
            }
            CellSpec::Grid { size_m } if !(size_m.is_finite() && size_m >= 1.0) => {
                Err(BinError::Cell(format!("grid size {size_m} m must be at least 1 m")))
            }
            _ => Ok(()),
        }
    }

    /// The cell holding (lon, lat), as a stable text id (`gh:u33db`, `h3:8a1f…`, `grid:500:r:c`);
    /// none for coordinates the cell system cannot place.
    pub fn cell(&self, lon: f64, lat: f64) -> Option<String> {
        if !(lon.is_finite() && lat.is_finite() && (-180.0..=180.0).contains(&lon) && (-90.0..=90.0).contains(&lat)) {
            return None;
        }
        match *self {
            CellSpec::Geohash { precision } => {
                geohash::encode(geohash::Coord { x: lon, y: lat }, precision).ok().map(|h| format!("gh:{h}"))
            }
            CellSpec::H3 { resolution } => {
                let res = h3o::Resolution::try_from(resolution).ok()?;
                let ll = h3o::LatLng::new(lat, lon).ok()?;
                Some(format!("h3:{}", ll.to_cell(res)))
            }
            CellSpec::Grid { size_m } => {
                let (row, col) = grid_cell(size_m, lon, lat);
                Some(format!("grid:{size_m}:{row}:{col}"))
            }
        }
    }

    /// The outline of a cell id made by [`CellSpec::cell`] as a closed ring of (lon, lat).
    pub fn outline(&self, cell: &str) -> Option<Vec<[f64; 2]>> {
        match *self {
            CellSpec::Geohash { .. } => {
                let rect = geohash::decode_bbox(cell.strip_prefix("gh:")?).ok()?;
                let (a, b) = (rect.min(), rect.max());
                Some(vec![[a.x, a.y], [b.x, a.y], [b.x, b.y], [a.x, b.y], [a.x, a.y]])
            }
            CellSpec::H3 { .. } => {
                let idx: h3o::CellIndex = cell.strip_prefix("h3:")?.parse().ok()?;
                let mut ring: Vec<[f64; 2]> = idx.boundary().iter().map(|p| [p.lng(), p.lat()]).collect();
                let first = *ring.first()?;
                ring.push(first);
                Some(ring)
            }
            CellSpec::Grid { size_m } => {
                let mut parts = cell.strip_prefix("grid:")?.rsplitn(3, ':');
                let col: i64 = parts.next()?.parse().ok()?;
                let row: i64 = parts.next()?.parse().ok()?;
                // Rows and columns run on past the antimeridian and the poles; the cells there are
                // cut at them so the outline stays valid WGS84 (found by fuzzing).
                let lat0 = (row as f64 * size_m / M_PER_DEG).clamp(-90.0, 90.0);
                let lat1 = ((row + 1) as f64 * size_m / M_PER_DEG).clamp(-90.0, 90.0);
                let deg_lon = size_m / (M_PER_DEG * row_scale(size_m, row));
                let lon0 = (col as f64 * deg_lon).clamp(-180.0, 180.0);
                let lon1 = ((col + 1) as f64 * deg_lon).clamp(-180.0, 180.0);
                Some(vec![[lon0, lat0], [lon1, lat0], [lon1, lat1], [lon0, lat1], [lon0, lat0]])
            }
        }
    }
}

/// cos of the row's middle latitude, never below a small floor so polar rows stay finite.
fn row_scale(size_m: f64, row: i64) -> f64 {
    let mid = (row as f64 + 0.5) * size_m / M_PER_DEG;
    mid.to_radians().cos().max(1e-6)
}

fn grid_cell(size_m: f64, lon: f64, lat: f64) -> (i64, i64) {
    let row = (lat * M_PER_DEG / size_m).floor() as i64;
    let col = (lon * M_PER_DEG * row_scale(size_m, row) / size_m).floor() as i64;
    (row, col)
}

/// Event-time windows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct WindowSpec {
    /// Window length (ns).
    pub size_ns: i128,
    /// Distance between window starts (ns); equal to `size_ns` for tumbling windows.
    pub hop_ns: i128,
}

impl WindowSpec {
    /// Tumbling windows of `size_ns`.
    pub fn tumbling(size_ns: i128) -> Self {
        Self { size_ns, hop_ns: size_ns }
    }

    /// Checks the ranges.
    pub fn validate(&self) -> Result<(), BinError> {
        if self.size_ns <= 0 || self.hop_ns <= 0 || self.hop_ns > self.size_ns {
            return Err(BinError::Window(format!(
                "window size {} ns and hop {} ns: both must be positive and hop at most size",
                self.size_ns, self.hop_ns
            )));
        }
        Ok(())
    }

    /// Starts of the windows holding `t` (ns), oldest first.
    pub fn windows_of(&self, t: i128) -> impl Iterator<Item = i128> + '_ {
        let last = t.div_euclid(self.hop_ns) * self.hop_ns;
        let count = (self.size_ns + self.hop_ns - 1) / self.hop_ns;
        (0..count).rev().map(move |k| last - k * self.hop_ns).filter(move |s| *s <= t && t < *s + self.size_ns)
    }
}

/// Running statistics of one property.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Stats {
    /// Values seen.
    pub count: u64,
    /// Their sum.
    pub sum: f64,
    /// Smallest.
    pub min: f64,
    /// Largest.
    pub max: f64,
}

impl Stats {
    fn add(&mut self, v: f64) {
        self.count += 1;
        // Saturate instead of overflowing to infinity: JSON (the checkpoint and the aggregate on
        // the wire) has no infinity, so one huge value would make the whole state unwritable.
        self.sum = (self.sum + v).clamp(f64::MIN, f64::MAX);
        self.min = self.min.min(v);
        self.max = self.max.max(v);
    }

    /// The mean.
    pub fn avg(&self) -> f64 {
        self.sum / self.count as f64
    }
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
struct Bin {
    count: u64,
    stats: BTreeMap<String, Stats>,
    /// Times this bin was emitted (0 = not yet); the next emission carries version + 1.
    version: u64,
    dirty: bool,
}

/// One result: a cell of a window.
#[derive(Debug, Clone, PartialEq)]
pub struct BinResult {
    /// Window start (ns).
    pub window_start_ns: i128,
    /// Window end (ns, exclusive).
    pub window_end_ns: i128,
    /// The cell id.
    pub cell: String,
    /// Observations in the cell and window.
    pub count: u64,
    /// Statistics per property.
    pub stats: BTreeMap<String, Stats>,
    /// 1 for the first result, higher for corrections.
    pub version: u64,
}

/// Whether a record counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Added {
    /// Counted in this many windows.
    Counted(usize),
    /// Older than every window still kept: dead-letter it as `late`.
    Late,
    /// Coordinates the cell system cannot place.
    NoCell,
}

/// Spatial bins of one analytic; serialisable for checkpoints.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BinAggregator {
    cells: CellSpec,
    windows: WindowSpec,
    allowed_lateness_ns: i128,
    /// (window start, cell) → bin; a list of entries on the wire, since JSON keys are strings.
    #[serde(with = "bin_entries")]
    bins: BTreeMap<(i128, String), Bin>,
    watermark_ns: Option<i128>,
}

mod bin_entries {
    use std::collections::BTreeMap;

    use serde::{Deserialize, Deserializer, Serializer};

    use super::Bin;

    pub fn serialize<S: Serializer>(bins: &BTreeMap<(i128, String), Bin>, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(bins.iter().map(|((start, cell), bin)| (start, cell, bin)))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<BTreeMap<(i128, String), Bin>, D::Error> {
        let entries: Vec<(i128, String, Bin)> = Vec::deserialize(d)?;
        Ok(entries.into_iter().map(|(start, cell, bin)| ((start, cell), bin)).collect())
    }
}

impl BinAggregator {
    /// An aggregator; specs are validated.
    pub fn new(cells: CellSpec, windows: WindowSpec, allowed_lateness_ns: i128) -> Result<Self, BinError> {
        cells.validate()?;
        windows.validate()?;
        if allowed_lateness_ns < 0 {
            return Err(BinError::Window(format!("allowed lateness {allowed_lateness_ns} ns is negative")));
        }
        Ok(Self { cells, windows, allowed_lateness_ns, bins: BTreeMap::new(), watermark_ns: None })
    }

    /// Whether this aggregator was made with these settings (a restored one may not have been).
    pub fn has_settings(&self, cells: &CellSpec, windows: &WindowSpec, allowed_lateness_ns: i128) -> bool {
        self.cells == *cells && self.windows == *windows && self.allowed_lateness_ns == allowed_lateness_ns
    }

    /// The cell spec (for outlines).
    pub fn cells(&self) -> &CellSpec {
        &self.cells
    }

    /// Adds an observation at `t` (ns) with the chosen property values.
    pub fn add(&mut self, t: i128, lon: f64, lat: f64, values: &[(&str, f64)]) -> Added {
        let Some(cell) = self.cells.cell(lon, lat) else { return Added::NoCell };
        let horizon = self.watermark_ns.map(|w| w - self.allowed_lateness_ns);
        let mut n = 0;
        let windows = self.windows;
        for start in windows.windows_of(t) {
            let end = start + windows.size_ns;
            if horizon.is_some_and(|h| end <= h) {
                continue;
            }
            let bin = self.bins.entry((start, cell.clone())).or_default();
            bin.count += 1;
            for (name, v) in values {
                if !v.is_finite() {
                    continue;
                }
                // Look up before inserting: the name is allocated once per bin, not per record.
                match bin.stats.get_mut(*name) {
                    Some(s) => s.add(*v),
                    None => {
                        let mut s = Stats { count: 0, sum: 0.0, min: f64::INFINITY, max: f64::NEG_INFINITY };
                        s.add(*v);
                        bin.stats.insert((*name).to_owned(), s);
                    }
                }
            }
            bin.dirty = true;
            n += 1;
        }
        if n == 0 { Added::Late } else { Added::Counted(n) }
    }

    /// Moves the watermark: emits the windows that ended (first results and corrections) and drops
    /// the ones past the allowed lateness.
    pub fn advance(&mut self, watermark_ns: i128) -> Vec<BinResult> {
        let w = self.watermark_ns.map_or(watermark_ns, |old| old.max(watermark_ns));
        self.watermark_ns = Some(w);
        let size = self.windows.size_ns;
        let mut out = Vec::new();
        // Keys sort by window start: the windows that ended are a prefix, and so are the ones past
        // the lateness, so a watermark step costs the ended windows, not every open bin.
        let ended = (w - size + 1, String::new());
        for ((start, cell), bin) in self.bins.range_mut(..ended) {
            if bin.dirty {
                bin.dirty = false;
                bin.version += 1;
                out.push(BinResult {
                    window_start_ns: *start,
                    window_end_ns: *start + size,
                    cell: cell.clone(),
                    count: bin.count,
                    stats: bin.stats.clone(),
                    version: bin.version,
                });
            }
        }
        let kept = (w - size - self.allowed_lateness_ns + 1, String::new());
        self.bins = self.bins.split_off(&kept);
        out
    }

    /// Bins held (open or within the lateness).
    pub fn len(&self) -> usize {
        self.bins.len()
    }

    /// Whether no bin is held.
    pub fn is_empty(&self) -> bool {
        self.bins.is_empty()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use proptest::prelude::*;

    const S: i128 = 1_000_000_000;

    #[test]
    fn cells_of_each_system_contain_their_point() {
        let (lon, lat) = (151.2093, -33.8688);
        for spec in
            [CellSpec::Geohash { precision: 6 }, CellSpec::H3 { resolution: 8 }, CellSpec::Grid { size_m: 500.0 }]
        {
            let cell = spec.cell(lon, lat).unwrap();
            let ring = spec.outline(&cell).unwrap();
            let poly = geo::Polygon::new(ring.iter().map(|p| geo::coord! { x: p[0], y: p[1] }).collect(), vec![]);
            use geo::Contains;
            assert!(poly.contains(&geo::Point::new(lon, lat)), "{spec:?} {cell}");
        }
        assert_eq!(CellSpec::Geohash { precision: 5 }.cell(-0.1278, 51.5074).unwrap(), "gh:gcpvj");
        assert_eq!(CellSpec::Grid { size_m: 100.0 }.cell(f64::NAN, 0.0), None);
        assert!(CellSpec::H3 { resolution: 16 }.validate().is_err());
        assert!(CellSpec::Grid { size_m: 0.5 }.validate().is_err());
    }

    #[test]
    fn grid_cells_are_about_the_requested_size() {
        let spec = CellSpec::Grid { size_m: 1000.0 };
        let cell = spec.cell(10.0, 60.0).unwrap();
        let ring = spec.outline(&cell).unwrap();
        use geo::{Distance, Haversine, Point};
        let south = Haversine.distance(Point::new(ring[0][0], ring[0][1]), Point::new(ring[1][0], ring[1][1]));
        let west = Haversine.distance(Point::new(ring[0][0], ring[0][1]), Point::new(ring[3][0], ring[3][1]));
        assert!((south - 1000.0).abs() < 20.0, "{south}");
        assert!((west - 1000.0).abs() < 20.0, "{west}");
    }

    #[test]
    fn grid_cells_at_the_antimeridian_and_the_poles_are_cut_there() {
        // From fuzzing (services/analytics/fuzz, target `analytic`): a 183 m grid cell of a point
        // at 179.999 reached 180.00016 and its bin aggregate failed validation.
        let in_range =
            |ring: &[[f64; 2]]| ring.iter().all(|p| (-180.0..=180.0).contains(&p[0]) && (-90.0..=90.0).contains(&p[1]));
        for (size_m, lon, lat) in [
            (183.0, 179.999, -33.87),
            (183.0, -179.999, -33.87),
            (5000.0, 180.0, 0.5),
            (100_000.0, 10.0, 89.9),
            (100_000.0, -10.0, -89.9),
        ] {
            let spec = CellSpec::Grid { size_m };
            let cell = spec.cell(lon, lat).unwrap();
            let ring = spec.outline(&cell).unwrap();
            assert!(in_range(&ring), "{size_m} m cell of ({lon}, {lat}): {ring:?}");
            assert_eq!(ring.first(), ring.last());
        }
    }

    #[test]
    fn hopping_windows_hold_a_point_size_over_hop_times() {
        let w = WindowSpec { size_ns: 60 * S, hop_ns: 20 * S };
        assert_eq!(w.windows_of(65 * S).collect::<Vec<_>>(), [20 * S, 40 * S, 60 * S]);
        assert_eq!(WindowSpec::tumbling(60 * S).windows_of(-1).collect::<Vec<_>>(), [-60 * S]);
        assert!(WindowSpec { size_ns: 10, hop_ns: 20 }.validate().is_err());
    }

    #[test]
    fn emitted_at_the_watermark_corrected_within_lateness_late_after() {
        let mut b =
            BinAggregator::new(CellSpec::Geohash { precision: 4 }, WindowSpec::tumbling(60 * S), 30 * S).unwrap();
        assert_eq!(b.add(10 * S, 10.0, 50.0, &[("speed", 4.0)]), Added::Counted(1));
        assert_eq!(b.add(20 * S, 10.0, 50.0, &[("speed", 6.0)]), Added::Counted(1));
        assert!(b.advance(59 * S).is_empty(), "window not over");
        let r = b.advance(60 * S);
        assert_eq!(r.len(), 1);
        assert_eq!((r[0].count, r[0].version), (2, 1));
        assert_eq!(r[0].stats["speed"].avg(), 5.0);
        assert!(b.advance(70 * S).is_empty(), "nothing new");
        assert_eq!(b.add(30 * S, 10.0, 50.0, &[("speed", 8.0)]), Added::Counted(1), "within lateness");
        let r = b.advance(80 * S);
        assert_eq!((r[0].count, r[0].version, r[0].stats["speed"].max), (3, 2, 8.0), "a correction");
        b.advance(91 * S);
        assert!(b.is_empty(), "dropped after the lateness");
        assert_eq!(b.add(40 * S, 10.0, 50.0, &[]), Added::Late);
    }

    proptest! {
        #[test]
        fn prop_final_counts_sum_to_the_input_in_any_order(
            mut points in prop::collection::vec((0i128..600, -10.0f64..10.0, 40.0f64..50.0), 1..300),
            seed in any::<u64>(),
        ) {
            let spec = CellSpec::Geohash { precision: 3 };
            let run = |pts: &[(i128, f64, f64)]| {
                let mut b = BinAggregator::new(spec, WindowSpec::tumbling(60 * S), 0).unwrap();
                for (t, lon, lat) in pts {
                    prop_assert_eq!(b.add(t * S, *lon, *lat, &[("v", *lat)]), Added::Counted(1));
                }
                let mut latest: BTreeMap<(i128, String), BinResult> = BTreeMap::new();
                for r in b.advance(10_000 * S) {
                    latest.insert((r.window_start_ns, r.cell.clone()), r);
                }
                Ok(latest)
            };
            let a = run(&points)?;
            // Reorder (the watermark only moves at the end, so any order is within lateness).
            let n = points.len();
            for i in 0..n {
                let j = (seed.wrapping_mul(6364136223846793005).wrapping_add(i as u64) % n as u64) as usize;
                points.swap(i, j);
            }
            let b = run(&points)?;
            prop_assert_eq!(a.values().map(|r| r.count).sum::<u64>(), n as u64);
            prop_assert_eq!(a.len(), b.len());
            for (k, r) in &a {
                let o = &b[k];
                prop_assert_eq!(r.count, o.count);
                prop_assert!((r.stats["v"].sum - o.stats["v"].sum).abs() < 1e-6);
                prop_assert_eq!(r.stats["v"].min, o.stats["v"].min);
                prop_assert_eq!(r.stats["v"].max, o.stats["v"].max);
            }
        }
    }
}
