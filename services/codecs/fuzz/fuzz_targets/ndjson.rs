//! Fuzzes the `ndjson` decoder as the registry builds it; see `src/lib.rs` for the invariants.
#![no_main]

use geostream_codecs::registry::CodecOptions;
use geostream_codecs_fuzz::{codec, run};
use geostream_model::Format;
use libfuzzer_sys::fuzz_target;

const MAPPING: &str = r#"{"track": "id", "time": "t", "time_format": "rfc3339", "lon": "lon", "lat": "lat", "attributes": {"alt": "alt"}, "units": {"alt": "ft"}}"#;

fuzz_target!(|data: &[u8]| {
    let opts = CodecOptions { lines: true, ..CodecOptions::default() };
    run(|| codec(Format::Json, MAPPING, &opts), data);
});
