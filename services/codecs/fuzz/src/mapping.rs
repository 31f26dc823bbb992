//! The declarative mapping on its own: a mapping compiled from arbitrary JSON and applied to
//! arbitrary JSON records, directly and through the pruning parser codecs use for speed.

use geostream_codecs::Context;
use geostream_codecs::mapping::CompiledMapping;
use geostream_model::{Mapping, Observation};
use serde_json::Value;

fn check_observation(o: &Observation) {
    if let Err(e) = o.validate() {
        panic!("invalid observation {o:?}: {e}");
    }
    let json = serde_json::to_vec(o).unwrap_or_else(|e| panic!("observation does not serialise: {e}: {o:?}"));
    let back: Observation =
        serde_json::from_slice(&json).unwrap_or_else(|e| panic!("observation does not read back: {e}"));
    assert_eq!(&back, o, "observation changed in a JSON round trip");
}

/// `data` is a mapping (JSON, first line) followed by one JSON record per line. A mapping either
/// compiles or says why; applied to a record it gives a valid observation or a failure with a
/// detail; and the pruned parse ([`CompiledMapping::projection`]) accepts exactly the records the
/// full parse accepts and gives exactly the same result, as the codecs rely on.
pub fn check(data: &[u8], ctx: &Context) {
    let mut lines = data.split(|b| *b == b'\n');
    let Some(first) = lines.next() else { return };
    let Ok(mapping) = serde_json::from_slice::<Mapping>(first) else { return };
    for numbers_from_strings in [false, true] {
        let compiled = match CompiledMapping::new(&mapping) {
            Ok(c) => c.with_numbers_from_strings(numbers_from_strings),
            Err(e) => {
                assert!(!e.to_string().trim().is_empty(), "mapping refused without a message: {mapping:?}");
                return;
            }
        };
        let projection = compiled.projection();
        for line in lines.clone() {
            let full = serde_json::from_slice::<Value>(line);
            let pruned = projection.parse(line);
            let (full, pruned) = match (full, pruned) {
                (Ok(f), Ok(p)) => (f, p),
                (Err(_), Err(_)) => continue,
                (f, p) => panic!("full parse {:?} but pruned parse {:?}", f.map(drop), p.map(drop)),
            };
            let native = if compiled.has_position() { None } else { full.get("geometry") };
            let result = compiled.apply_with_geometry(&full, native, ctx);
            match &result {
                Ok(o) => check_observation(o),
                Err(f) => assert!(!f.detail.trim().is_empty(), "failure without detail: {f:?}"),
            }
            // Codecs read a native geometry apart from the pruned record, so it is given as is.
            let pruned_result = compiled.apply_with_geometry(&pruned, native, ctx);
            assert_eq!(pruned_result, result, "the pruned record maps differently from the full one");
        }
    }
}
