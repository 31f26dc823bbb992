//! Fuzzes the SQL text of `sql` analytics; see `src/lib.rs`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(
    init: geostream_sql_fuzz::install_panic_hook(),
    |data: &[u8]| {
        if let Ok(text) = std::str::from_utf8(data) {
            geostream_sql_fuzz::check(text);
        }
    }
);
