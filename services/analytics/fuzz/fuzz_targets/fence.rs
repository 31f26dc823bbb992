//! Fuzzes fence definitions and the fence index built from them; see `src/fence.rs`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    geostream_analytics_fuzz::fence::check(data);
});
