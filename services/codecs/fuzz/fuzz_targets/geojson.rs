//! Fuzzes the `geojson` decoder as the registry builds it; see `src/lib.rs` for the invariants.
#![no_main]

use geostream_codecs::registry::CodecOptions;
use geostream_codecs_fuzz::{codec, run};
use geostream_model::Format;
use libfuzzer_sys::fuzz_target;

const MAPPING: &str = r#"{"track": "id", "time": "properties.time", "time_format": "unix_ms", "attributes": {"mag": "properties.mag", "depth": "geometry.coordinates[2]"}}"#;

fuzz_target!(|data: &[u8]| {
    for opts in
        [CodecOptions::default(), CodecOptions { skip_null_geometry: true, lines: true, ..CodecOptions::default() }]
    {
        run(|| codec(Format::Geojson, MAPPING, &opts), data);
    }
});
