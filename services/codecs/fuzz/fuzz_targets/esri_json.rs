//! Fuzzes the `esri_json` decoder as the registry builds it; see `src/lib.rs` for the invariants.
#![no_main]

use geostream_codecs::registry::CodecOptions;
use geostream_codecs_fuzz::{codec, run};
use geostream_model::Format;
use libfuzzer_sys::fuzz_target;

const MAPPING: &str = r#"{"track": "attributes.OBJECTID", "time": "attributes.t", "time_format": "unix_ms", "attributes": {"v": "attributes.v", "z": "geometry.z"}}"#;

fuzz_target!(|data: &[u8]| {
    for opts in
        [CodecOptions::default(), CodecOptions { skip_null_geometry: true, lines: false, ..CodecOptions::default() }]
    {
        run(|| codec(Format::EsriJson, MAPPING, &opts), data);
    }
});
