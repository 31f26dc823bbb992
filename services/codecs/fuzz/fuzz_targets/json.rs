//! Fuzzes the `json` decoder as the registry builds it; see `src/lib.rs` for the invariants.
#![no_main]

use geostream_codecs::registry::CodecOptions;
use geostream_codecs_fuzz::{codec, run};
use geostream_model::Format;
use libfuzzer_sys::fuzz_target;

const MAPPING: &str = r#"{"track": "id", "time": "t", "time_format": "unix_ms", "lon": "pos[0]", "lat": "pos[1]", "crs": "EPSG:3857", "attributes": {"s": "s", "name": "meta.name"}, "units": {"s": "knots"}}"#;

fuzz_target!(|data: &[u8]| {
    let opts = CodecOptions::default();
    run(|| codec(Format::Json, MAPPING, &opts), data);
});
