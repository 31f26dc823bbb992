//! Fuzzes analytic definitions and the engine built from them; see `src/analytic.rs`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        geostream_analytics_fuzz::analytic::check(text);
    }
});
