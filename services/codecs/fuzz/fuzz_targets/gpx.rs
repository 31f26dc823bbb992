//! Fuzzes the `gpx` decoder as the registry builds it; see `src/lib.rs` for the invariants.
#![no_main]

use geostream_codecs::registry::CodecOptions;
use geostream_codecs_fuzz::{codec, run};
use geostream_model::Format;
use libfuzzer_sys::fuzz_target;

const MAPPING: &str = r#"{}"#;

fuzz_target!(|data: &[u8]| {
    let opts = CodecOptions { allow_missing_time: true, ..CodecOptions::default() };
    run(|| codec(Format::Gpx, MAPPING, &opts), data);
});
