//! Fuzzes the `csv` decoder as the registry builds it; see `src/lib.rs` for the invariants.
#![no_main]

use geostream_codecs::registry::CodecOptions;
use geostream_codecs_fuzz::{codec, run};
use geostream_model::Format;
use libfuzzer_sys::fuzz_target;

const MAPPING: &str = r#"{"track": "icao24", "time": "timestamp", "time_format": "unix_ms", "lon": "longitude", "lat": "latitude", "attributes": {"alt": "altitude", "squawk": "squawk"}, "units": {"alt": "ft"}}"#;

fuzz_target!(|data: &[u8]| {
    let opts = CodecOptions::default();
    run(|| codec(Format::Csv, MAPPING, &opts), data);
});
