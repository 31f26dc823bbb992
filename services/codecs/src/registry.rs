//! Builds the codec a feed needs from its format, mapping and options, so that the ingest stage and
//! `geostream decode` choose decoders the same way.

use geostream_model::{Format, Mapping};

use crate::Codec;
use crate::ais::AisCodec;
use crate::cap::CapCodec;
use crate::cot::CotCodec;
use crate::csv_codec::{CsvCodec, CsvOptions};
use crate::esri_json::{EsriJsonCodec, EsriJsonOptions};
use crate::geojson_codec::{GeoJsonCodec, GeoJsonOptions};
use crate::gpx::{GpxCodec, GpxOptions};
use crate::gtfs_rt::GtfsRtCodec;
use crate::json::{JsonCodec, JsonOptions, NdjsonCodec};
use crate::mapping::MappingError;
use crate::nmea::{NmeaCodec, NmeaOptions};

/// The format switches of a feed; they live in the feed spec (`FeedSpec::options`).
pub use geostream_model::FormatOptions as CodecOptions;

/// Why no codec could be built.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// The mapping does not compile for this format.
    #[error("format {format}: {source}")]
    Mapping {
        /// The format asked for.
        format: Format,
        /// What is wrong with the mapping.
        #[source]
        source: MappingError,
    },
    /// The options do not fit the format.
    #[error("format {format}: {detail}")]
    Options {
        /// The format asked for.
        format: Format,
        /// What is wrong.
        detail: String,
    },
}

/// The formats [`build`] can decode, for messages.
pub const SUPPORTED: &str = "json, geojson, csv, nmea, ais, gtfs_rt, gpx, cap, esri_json, cot";

/// The codec for `format` with `mapping` and `opts`.
pub fn build(format: Format, mapping: &Mapping, opts: &CodecOptions) -> Result<Box<dyn Codec>, BuildError> {
    let mapping_err = |source| BuildError::Mapping { format, source };
    Ok(match format {
        Format::Ais => Box::new(AisCodec::default()),
        Format::Nmea => Box::new(NmeaCodec::new(NmeaOptions { allow_missing_checksum: opts.allow_missing_checksum })),
        Format::GtfsRt => Box::new(GtfsRtCodec::new()),
        Format::Cap => Box::new(CapCodec::new()),
        Format::Gpx => Box::new(GpxCodec::new(GpxOptions { allow_missing_time: opts.allow_missing_time })),
        Format::Json => {
            let json_opts = JsonOptions { records: opts.records.clone() };
            if opts.lines {
                Box::new(NdjsonCodec::new(mapping, json_opts).map_err(mapping_err)?)
            } else {
                Box::new(JsonCodec::new(mapping, json_opts).map_err(mapping_err)?)
            }
        }
        Format::Geojson => {
            let geo_opts = GeoJsonOptions { skip_null_geometry: opts.skip_null_geometry };
            if opts.lines {
                Box::new(GeoJsonCodec::seq(mapping, geo_opts).map_err(mapping_err)?)
            } else {
                Box::new(GeoJsonCodec::new(mapping, geo_opts).map_err(mapping_err)?)
            }
        }
        Format::Csv => {
            let delimiter = u8::try_from(opts.delimiter).map_err(|_| BuildError::Options {
                format,
                detail: format!("options.delimiter {:?} is not a single ASCII character", opts.delimiter),
            })?;
            Box::new(CsvCodec::new(mapping, CsvOptions { delimiter, ..CsvOptions::default() }).map_err(mapping_err)?)
        }
        Format::EsriJson => {
            let esri_opts = EsriJsonOptions { skip_null_geometry: opts.skip_null_geometry };
            Box::new(EsriJsonCodec::new(mapping, esri_opts).map_err(mapping_err)?)
        }
        Format::Cot => Box::new(CotCodec::new()),
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn every_format_builds_and_is_listed() {
        let mapping = Mapping { lon: Some("lon".into()), lat: Some("lat".into()), ..Mapping::default() };
        let listed: Vec<&str> = SUPPORTED.split(", ").collect();
        for format in Format::ALL {
            assert!(listed.contains(&format.as_str()), "{format} missing from SUPPORTED");
            let codec = build(*format, &mapping, &CodecOptions::default()).unwrap();
            assert!(!codec.name().is_empty());
        }
        assert_eq!(listed.len(), Format::ALL.len());
        assert_eq!(build(Format::Cot, &mapping, &CodecOptions::default()).unwrap().name(), "cot");
        assert_eq!(build(Format::EsriJson, &mapping, &CodecOptions::default()).unwrap().name(), "esri_json");
    }

    #[test]
    fn a_bad_mapping_names_the_format_and_field() {
        let mapping = Mapping { lon: Some("a..b".into()), lat: Some("lat".into()), ..Mapping::default() };
        let err = build(Format::Json, &mapping, &CodecOptions::default()).err().unwrap().to_string();
        assert!(err.starts_with("format json: mapping.lon"), "{err}");
    }
}
