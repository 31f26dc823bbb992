//! Fuzzes feed definitions (catalog entries and bare specs, YAML or JSON); see `src/feed.rs`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        geostream_codecs_fuzz::feed::check_definition(text);
    }
});
