//! The one integration-test binary of geostream-codecs. Sample data lives in `tests/data` (copied
//! byte-identical from public sources, see `tests/data/PROVENANCE.md`); nothing outside the crate
//! is read.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod ais_files;
mod ais_golden;
mod ais_props;
mod ais_sentences;
mod cot_files;
mod data;
mod docs_formats;
mod docs_props;
mod esri_cot_props;
mod esri_files;
mod mapping_cases;
mod mapping_files;
mod mapping_props;
mod nmea_files;
mod nmea_props;
