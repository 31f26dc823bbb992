//! What the fence and analytic fuzz targets check: a definition from arbitrary text is either
//! refused with a message or accepted, and an accepted one survives serialisation unchanged and
//! builds what the processor builds from it (a fence index, an analytics engine) without panicking,
//! with answers that agree with each other.

pub mod analytic;
pub mod fence;

/// A refusal must tell the user something.
pub fn explained(what: &str, message: &str) {
    assert!(!message.trim().is_empty(), "{what} refused without a message");
}
