//! Fuzzes the declarative mapping: a mapping line, then records; see `src/mapping.rs`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    geostream_codecs_fuzz::mapping::check(data, &geostream_codecs_fuzz::context());
});
