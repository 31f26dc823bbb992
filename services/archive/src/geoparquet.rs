//! GeoParquet 1.1 files: the `geo` key-value metadata and Parquet bytes (zstd), and reading them back.
//!
//! The metadata says: version `1.1.0`, primary column `geometry`, WKB encoding, the geometry
//! types present in the file, the file's bounding box, and a `covering.bbox` that points at the
//! `bbox` struct column so readers can skip row groups by bounds. No `crs` key: GeoParquet then
//! means OGC:CRS84 (WGS84 longitude/latitude), which is what every record holds.

use std::collections::BTreeSet;

use bytes::Bytes;
use datafusion::arrow::array::{Array, AsArray};
use datafusion::arrow::datatypes::Float64Type;
use datafusion::arrow::error::ArrowError;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::parquet::arrow::ArrowWriter;
use datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use datafusion::parquet::basic::{Compression, ZstdLevel};
use datafusion::parquet::errors::ParquetError;
use datafusion::parquet::file::metadata::KeyValue;
use datafusion::parquet::file::properties::WriterProperties;
use serde_json::{Value, json};

/// The GeoParquet version written.
pub const VERSION: &str = "1.1.0";

/// Rows per row group: small enough that the bbox statistics let readers skip, large enough to compress.
const ROW_GROUP_ROWS: usize = 64 * 1024;

/// Bounds and types of the geometries in some batches.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct GeoSummary {
    /// `[xmin, ymin, xmax, ymax]`, absent when no row has a geometry.
    pub bbox: Option<[f64; 4]>,
    /// GeoParquet type names present.
    pub types: BTreeSet<String>,
}

impl GeoSummary {
    /// Reads the `bbox` column (and the WKB type codes) of `batches`.
    pub fn of(batches: &[RecordBatch]) -> GeoSummary {
        let mut s = GeoSummary::default();
        for b in batches {
            let (Some(bbox), Some(geom)) = (b.column_by_name("bbox"), b.column_by_name("geometry")) else { continue };
            let bbox = bbox.as_struct();
            let col = |n: &str| bbox.column_by_name(n).map(|c| c.as_primitive::<Float64Type>().clone());
            let (Some(x0), Some(y0), Some(x1), Some(y1)) = (col("xmin"), col("ymin"), col("xmax"), col("ymax")) else {
                continue;
            };
            let geom = geom.as_binary::<i32>();
            for i in 0..b.num_rows() {
                if bbox.is_null(i) {
                    continue;
                }
                let r = [x0.value(i), y0.value(i), x1.value(i), y1.value(i)];
                s.bbox = Some(match s.bbox {
                    None => r,
                    Some(a) => [a[0].min(r[0]), a[1].min(r[1]), a[2].max(r[2]), a[3].max(r[3])],
                });
                if let Some(t) = wkb_type_name(geom.value(i)) {
                    s.types.insert(t.to_owned());
                }
            }
        }
        s
    }
}

/// The GeoParquet name of a WKB geometry's type (2D ISO codes 1–7).
fn wkb_type_name(wkb: &[u8]) -> Option<&'static str> {
    let code = match wkb.first()? {
        0 => u32::from_be_bytes(wkb.get(1..5)?.try_into().ok()?),
        _ => u32::from_le_bytes(wkb.get(1..5)?.try_into().ok()?),
    };
    Some(match code {
        1 => "Point",
        2 => "LineString",
        3 => "Polygon",
        4 => "MultiPoint",
        5 => "MultiLineString",
        6 => "MultiPolygon",
        7 => "GeometryCollection",
        _ => return None,
    })
}

/// The `geo` metadata JSON for a file with these geometries.
pub fn geo_metadata(summary: &GeoSummary) -> Value {
    let mut column = json!({
        "encoding": "WKB",
        "geometry_types": summary.types.iter().collect::<Vec<_>>(),
        "covering": {
            "bbox": {
                "xmin": ["bbox", "xmin"],
                "ymin": ["bbox", "ymin"],
                "xmax": ["bbox", "xmax"],
                "ymax": ["bbox", "ymax"],
            }
        }
    });
    if let (Some(b), Some(obj)) = (summary.bbox, column.as_object_mut()) {
        obj.insert("bbox".into(), json!(b));
    }
    json!({
        "version": VERSION,
        "primary_column": "geometry",
        "columns": { "geometry": column },
    })
}

/// Why a file could not be written or read.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    /// Arrow rejected the data.
    #[error("arrow: {0}")]
    Arrow(#[from] ArrowError),
    /// Parquet encoding or decoding failed.
    #[error("parquet: {0}")]
    Parquet(#[from] ParquetError),
}

/// Encodes `batches` (one schema) as a GeoParquet file.
pub fn write(batches: &[RecordBatch]) -> Result<Vec<u8>, FileError> {
    let Some(first) = batches.first() else {
        return Err(FileError::Arrow(ArrowError::InvalidArgumentError("no batches to write".into())));
    };
    let geo = geo_metadata(&GeoSummary::of(batches)).to_string();
    let props = WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::try_new(3)?))
        .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
        .set_key_value_metadata(Some(vec![KeyValue::new("geo".to_owned(), geo)]))
        .build();
    let mut out = Vec::new();
    let mut w = ArrowWriter::try_new(&mut out, first.schema(), Some(props))?;
    for b in batches {
        w.write(b)?;
    }
    w.close()?;
    Ok(out)
}

/// Decodes a whole file into batches, and its `geo` metadata.
pub fn read(bytes: Bytes) -> Result<(Vec<RecordBatch>, Option<Value>), FileError> {
    let builder = ParquetRecordBatchReaderBuilder::try_new(bytes)?;
    let geo = builder
        .metadata()
        .file_metadata()
        .key_value_metadata()
        .and_then(|kv| kv.iter().find(|k| k.key == "geo"))
        .and_then(|k| k.value.as_deref())
        .and_then(|v| serde_json::from_str(v).ok());
    let reader = builder.build()?;
    let batches = reader.collect::<Result<Vec<_>, ArrowError>>()?;
    Ok((batches, geo))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::kind::ArchiveKind;
    use crate::rows::{Row, schema, to_batch};
    use geostream_model::geojson::{Geometry, GeometryValue as G};
    use geostream_model::{AnalyticId, Event, EventKind};
    use time::macros::datetime;

    fn event(i: i64, geometry: Option<G>) -> Row {
        let mut b = Event::builder(
            AnalyticId::new("watch").unwrap(),
            EventKind::Enter,
            datetime!(2026-11-26 10:00 UTC) + time::Duration::seconds(i),
        );
        if let Some(g) = geometry {
            b = b.geometry(Geometry::new(g));
        }
        Row::parse(ArchiveKind::Events, 0, i, &serde_json::to_vec(&b.build()).unwrap()).unwrap()
    }

    #[test]
    fn the_geo_metadata_is_geoparquet_1_1_with_a_bbox_covering() {
        let rows = vec![
            event(1, Some(G::new_point([10.0, 60.0]))),
            event(2, Some(G::new_line_string([[-3.0, 50.0], [12.0, 61.5]]))),
            event(3, None),
        ];
        let batch = to_batch(ArchiveKind::Events, &rows).unwrap();
        let bytes = write(std::slice::from_ref(&batch)).unwrap();
        assert_eq!(&bytes[..4], b"PAR1");
        let (back, geo) = read(Bytes::from(bytes)).unwrap();
        assert_eq!(back.iter().map(RecordBatch::num_rows).sum::<usize>(), 3);
        assert_eq!(back[0].schema().fields(), schema(ArchiveKind::Events).fields());
        let geo = geo.unwrap();
        assert_eq!(
            geo,
            json!({
                "version": "1.1.0",
                "primary_column": "geometry",
                "columns": {"geometry": {
                    "encoding": "WKB",
                    "geometry_types": ["LineString", "Point"],
                    "bbox": [-3.0, 50.0, 12.0, 61.5],
                    "covering": {"bbox": {
                        "xmin": ["bbox", "xmin"], "ymin": ["bbox", "ymin"],
                        "xmax": ["bbox", "xmax"], "ymax": ["bbox", "ymax"]
                    }}
                }}
            })
        );
    }

    #[test]
    fn a_file_without_geometries_has_no_bbox_and_no_types() {
        let batch = to_batch(ArchiveKind::Events, &[event(1, None)]).unwrap();
        let geo = geo_metadata(&GeoSummary::of(&[batch]));
        assert!(geo["columns"]["geometry"].get("bbox").is_none());
        assert_eq!(geo["columns"]["geometry"]["geometry_types"], json!([]));
    }

    #[test]
    fn wkb_type_codes_in_both_byte_orders() {
        assert_eq!(wkb_type_name(&[1, 3, 0, 0, 0]), Some("Polygon"));
        assert_eq!(wkb_type_name(&[0, 0, 0, 0, 6]), Some("MultiPolygon"));
        assert_eq!(wkb_type_name(&[1, 0xe9, 3, 0, 0]), None, "Z types are not written");
        assert_eq!(wkb_type_name(&[1]), None);
    }

    #[test]
    fn writing_nothing_is_an_error() {
        assert!(write(&[]).is_err());
    }
}
