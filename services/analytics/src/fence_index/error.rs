//! Why a fence cannot be indexed.

use geostream_model::{Classify, ErrorClass, ModelError};

/// A fence the index refuses, with what is wrong, which fence and why. Always a user error: the
/// same spec fails the same way again, so it goes back to whoever registered it.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum FenceError {
    /// The spec fails the model's own validation (ring closure, coordinate ranges, radius, name).
    #[error("fence {fence:?} version {version} is invalid: {source}")]
    Spec {
        /// The fence id.
        fence: String,
        /// The spec version.
        version: u64,
        /// The model's validation error (it names the polygon, ring and position).
        #[source]
        source: ModelError,
    },

    /// Two edges of one polygon cross (a ring crosses itself or another ring of the same polygon).
    #[error(
        "fence {fence:?} version {version}: polygon {polygon}, {first} crosses {second} at about ({lon}, {lat}); \
         which side of a crossing ring is inside is a matter of fill rule, not of the drawing, so the fence is \
         ambiguous: remove the twist or make the loops separate polygons of a MultiPolygon"
    )]
    RingsCross {
        /// The fence id.
        fence: String,
        /// The spec version.
        version: u64,
        /// Index of the polygon (0 for a Polygon, the member index for a MultiPolygon).
        polygon: usize,
        /// The first edge, e.g. `ring 0 edge 6 (positions 6-7)`.
        first: String,
        /// The second edge.
        second: String,
        /// Where they cross (computed, so approximate).
        lon: f64,
        /// Where they cross (computed, so approximate).
        lat: f64,
    },

    /// A hole lies outside its polygon's exterior ring.
    #[error(
        "fence {fence:?} version {version}: polygon {polygon}, ring {ring} is a hole but lies outside the exterior \
         ring (ring 0), so it removes nothing; if it is an area of its own, make the fence a MultiPolygon with it as \
         a separate polygon"
    )]
    HoleOutside {
        /// The fence id.
        fence: String,
        /// The spec version.
        version: u64,
        /// Index of the polygon.
        polygon: usize,
        /// Index of the ring within the polygon (1 or more).
        ring: usize,
    },

    /// No polygon of the fence encloses any area.
    #[error(
        "fence {fence:?} version {version} encloses no area: every exterior ring has all its positions on one line, \
         so no point can ever be inside it"
    )]
    NoArea {
        /// The fence id.
        fence: String,
        /// The spec version.
        version: u64,
    },

    /// The same fence id occurs twice in one set.
    #[error(
        "fence {fence:?} occurs more than once in the set (versions {first} and {second}); fence ids are unique \
         within a tenant, so the set must carry one spec per id"
    )]
    Duplicate {
        /// The fence id.
        fence: String,
        /// Version of the first occurrence.
        first: u64,
        /// Version of the second occurrence.
        second: u64,
    },

    /// The set is larger than the index can address.
    #[error("the fence set is too large to index: {what} ({count}) exceeds {limit}")]
    TooLarge {
        /// What overflowed, e.g. "edges".
        what: &'static str,
        /// How many there were.
        count: usize,
        /// The limit.
        limit: usize,
    },
}

impl FenceError {
    /// The fence the problem is about, if it is about one.
    pub fn fence(&self) -> Option<&str> {
        match self {
            FenceError::Spec { fence, .. }
            | FenceError::RingsCross { fence, .. }
            | FenceError::HoleOutside { fence, .. }
            | FenceError::NoArea { fence, .. }
            | FenceError::Duplicate { fence, .. } => Some(fence),
            FenceError::TooLarge { .. } => None,
        }
    }
}

impl Classify for FenceError {
    fn class(&self) -> ErrorClass {
        ErrorClass::User
    }
}

/// Every problem of a fence set that [`FenceIndex::build`](super::FenceIndex::build) refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{} of the fence set cannot be indexed; the first: {}", plural(.problems.len()), first(.problems))]
pub struct BuildError {
    /// One entry per refused fence: duplicate ids first, then the others in input order.
    pub problems: Vec<FenceError>,
}

fn plural(n: usize) -> String {
    if n == 1 { "1 fence".to_owned() } else { format!("{n} fences") }
}

fn first(problems: &[FenceError]) -> String {
    problems.first().map_or_else(|| "(none recorded)".to_owned(), ToString::to_string)
}

impl Classify for BuildError {
    fn class(&self) -> ErrorClass {
        ErrorClass::User
    }
}
