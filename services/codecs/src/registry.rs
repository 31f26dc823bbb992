//! Builds the codec a feed needs from its format, mapping and options, so that the ingest stage and
//! `geostream decode` choose decoders the same way.

use geostream_model::{Format, Mapping};

use crate::Codec;
use crate::ais::AisCodec;
use crate::cap::CapCodec;
use crate::csv_codec::{CsvCodec, CsvOptions};
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
    /// The format has no decoder yet.
    #[error("format {0}: no decoder yet (planned with the feed-adapter work); supported: {SUPPORTED}")]
    NotImplemented(Format),
}

/// The formats [`build`] can decode, for messages.
pub const SUPPORTED: &str = "json, geojson, csv, nmea, ais, gtfs_rt, gpx, cap";

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
        Format::EsriJson | Format::Cot => return Err(BuildError::NotImplemented(format)),
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn every_supported_format_builds_and_the_rest_say_so() {
        let mapping = Mapping { lon: Some("lon".into()), lat: Some("lat".into()), ..Mapping::default() };
        for name in SUPPORTED.split(", ") {
            let format: Format = name.parse().unwrap();
            let codec = build(format, &mapping, &CodecOptions::default()).unwrap();
            assert!(!codec.name().is_empty());
        }
        for format in [Format::EsriJson, Format::Cot] {
            let err = build(format, &mapping, &CodecOptions::default()).err().unwrap().to_string();
            assert!(err.contains("no decoder yet"), "{err}");
        }
    }

    #[test]
    fn a_bad_mapping_names_the_format_and_field() {
        let mapping = Mapping { lon: Some("a..b".into()), lat: Some("lat".into()), ..Mapping::default() };
        let err = build(Format::Json, &mapping, &CodecOptions::default()).err().unwrap().to_string();
        assert!(err.starts_with("format json: mapping.lon"), "{err}");
    }
}
