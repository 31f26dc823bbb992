//! Result rows to [`Aggregate`]s (the mapping is documented in the crate documentation).

use std::collections::BTreeMap;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, RecordBatch};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Float64Type, Int64Type, Schema};
use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};
use geostream_model::geojson::Geometry;
use geostream_model::{Aggregate, AggregateKind, AnalyticId, Window};
use serde_json::Value;

use crate::point::{self, Parsed};

/// Which result column plays which part, decided from the schema alone so a query whose columns
/// cannot map is refused at registration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Layout {
    /// The column names the indices below refer to.
    names: Vec<String>,
    key: Option<usize>,
    count: Option<usize>,
    geometry: Option<usize>,
    lon_lat: Option<(usize, usize)>,
    numeric: Vec<usize>,
    other: Vec<usize>,
}

fn is_text(t: &DataType) -> bool {
    matches!(t, DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View)
}

fn is_binary(t: &DataType) -> bool {
    matches!(t, DataType::Binary | DataType::LargeBinary | DataType::BinaryView | DataType::FixedSizeBinary(_))
}

impl Layout {
    pub(crate) fn new(schema: &Schema) -> Result<Self, String> {
        let fields = schema.fields();
        let find = |name: &str| fields.iter().position(|f| f.name() == name);
        let key = find("key");
        let count = find("count");
        if let Some(i) = count {
            let t = fields[i].data_type();
            if !t.is_integer() {
                return Err(format!(
                    "result column \"count\" is {t}; it becomes the aggregate's count and must be an integer \
                     (count(*) is one), so cast it or rename it"
                ));
            }
        }
        let geometry = find("geometry");
        if let Some(i) = geometry {
            let t = fields[i].data_type();
            if !is_binary(t) && !is_text(t) {
                return Err(format!(
                    "result column \"geometry\" is {t}; it becomes the aggregate's geometry and must be a point \
                     (st_point) or GeoJSON text, so rename it"
                ));
            }
        }
        let lon_lat = match (geometry, find("lon"), find("lat")) {
            (None, Some(x), Some(y)) if fields[x].data_type().is_numeric() && fields[y].data_type().is_numeric() => {
                Some((x, y))
            }
            _ => None,
        };
        let mut numeric = Vec::new();
        let mut other = Vec::new();
        for (i, f) in fields.iter().enumerate() {
            if Some(i) == key
                || Some(i) == count
                || Some(i) == geometry
                || lon_lat.is_some_and(|(x, y)| i == x || i == y)
            {
                continue;
            }
            if f.data_type().is_numeric() {
                numeric.push(i);
            } else if Aggregate::RESERVED_PROPERTIES.contains(&f.name().as_str()) {
                return Err(format!(
                    "result column {:?} would become an attribute, but the aggregate uses that name itself \
                     ({}); rename it",
                    f.name(),
                    Aggregate::RESERVED_PROPERTIES.join(", ")
                ));
            } else {
                other.push(i);
            }
        }
        let names = fields.iter().map(|f| f.name().clone()).collect();
        Ok(Self { names, key, count, geometry, lon_lat, numeric, other })
    }
}

fn formatter<'a>(a: &'a ArrayRef, opts: &'a FormatOptions<'a>) -> Result<ArrayFormatter<'a>, String> {
    ArrayFormatter::try_new(a.as_ref(), opts).map_err(|e| format!("cannot render a {} column: {e}", a.data_type()))
}

fn to_f64(a: &ArrayRef) -> Result<ArrayRef, String> {
    cast(a, &DataType::Float64).map_err(|e| format!("cannot read a {} column as a number: {e}", a.data_type()))
}

/// Adds one batch's rows to `out`, keyed by bin; a key seen before is an error naming it.
pub(crate) fn collect(
    layout: &Layout,
    analytic: &AnalyticId,
    window: &Window,
    batch: &RecordBatch,
    out: &mut BTreeMap<String, Aggregate>,
) -> Result<(), String> {
    let schema = batch.schema();
    // The query is planned again per window; the indices are only valid if it gave the columns
    // it gave at registration.
    if schema.fields().iter().map(|f| f.name()).ne(layout.names.iter()) {
        return Err(format!(
            "the result columns changed since registration (a bug): {:?}, then {:?}",
            layout.names,
            schema.fields().iter().map(|f| f.name()).collect::<Vec<_>>()
        ));
    }
    let columns = batch.columns();
    let name = |i: usize| schema.field(i).name().as_str();
    let opts = FormatOptions::default();
    let key_fmt = layout.key.map(|i| formatter(&columns[i], &opts)).transpose()?;
    let other_fmt = layout.other.iter().map(|&i| formatter(&columns[i], &opts)).collect::<Result<Vec<_>, _>>()?;
    let numeric = layout.numeric.iter().map(|&i| to_f64(&columns[i])).collect::<Result<Vec<_>, _>>()?;
    let count = layout
        .count
        .map(|i| cast(&columns[i], &DataType::Int64).map_err(|e| format!("column \"count\": {e}")))
        .transpose()?;
    let lon_lat =
        layout.lon_lat.map(|(x, y)| Ok::<_, String>((to_f64(&columns[x])?, to_f64(&columns[y])?))).transpose()?;

    for row in 0..batch.num_rows() {
        let bin = match &key_fmt {
            Some(f) => f.value(row).to_string(),
            None => other_fmt.iter().map(|f| f.value(row).to_string()).collect::<Vec<_>>().join("|"),
        };
        let mut agg = Aggregate::new(AggregateKind::Sql, analytic.clone(), *window, bin.clone());
        if let Some(c) = &count {
            let c = c.as_primitive::<Int64Type>();
            if c.is_valid(row) {
                let v = c.value(row);
                agg.count = u64::try_from(v).map_err(|_| format!("key {bin:?}: count is {v}, which is negative"))?;
            }
        }
        for (&i, values) in layout.numeric.iter().zip(&numeric) {
            let values = values.as_primitive::<Float64Type>();
            if values.is_valid(row) {
                agg.values.insert(name(i).to_owned(), values.value(row));
            }
        }
        for (&i, f) in layout.other.iter().zip(&other_fmt) {
            let a = &columns[i];
            let v = if a.is_null(row) {
                Value::Null
            } else if let Some(b) = a.as_boolean_opt() {
                Value::Bool(b.value(row))
            } else {
                Value::String(f.value(row).to_string())
            };
            agg.attributes.insert(name(i).to_owned(), v);
        }
        agg.geometry = match (layout.geometry, &lon_lat) {
            (Some(i), _) => geometry(&columns[i], row).map_err(|p| format!("key {bin:?}: column \"geometry\" {p}"))?,
            (None, Some((x, y))) => {
                let (x, y) = (x.as_primitive::<Float64Type>(), y.as_primitive::<Float64Type>());
                (x.is_valid(row) && y.is_valid(row)).then(|| point::geometry(x.value(row), y.value(row)))
            }
            (None, None) => None,
        };
        agg.validate().map_err(|e| format!("key {bin:?}: {e}"))?;
        if out.contains_key(&bin) {
            return Err(format!(
                "two result rows have the key {bin:?}; aggregate ids must be unique per window, so group by \
                 every column that makes up the key, or select a unique `key` column"
            ));
        }
        out.insert(bin, agg);
    }
    Ok(())
}

fn geometry(a: &ArrayRef, row: usize) -> Result<Option<Geometry>, String> {
    if a.is_null(row) {
        return Ok(None);
    }
    let bytes = if let Some(b) = a.as_binary_opt::<i32>() {
        Some(b.value(row))
    } else if let Some(b) = a.as_binary_opt::<i64>() {
        Some(b.value(row))
    } else if let Some(b) = a.as_binary_view_opt() {
        Some(b.value(row))
    } else {
        a.as_fixed_size_binary_opt().map(|b| b.value(row))
    };
    if let Some(bytes) = bytes {
        return match point::from_bytes(bytes)? {
            Parsed::Point(x, y) => Ok(Some(point::geometry(x, y))),
            Parsed::NotAPoint => Err("holds a WKB geometry other than a point; only points are supported".into()),
        };
    }
    let text = if let Some(t) = a.as_string_opt::<i32>() {
        t.value(row)
    } else if let Some(t) = a.as_string_opt::<i64>() {
        t.value(row)
    } else if let Some(t) = a.as_string_view_opt() {
        t.value(row)
    } else {
        return Err(format!("is {}, neither a point nor text (a bug: the layout allowed it)", a.data_type()));
    };
    text.parse::<Geometry>().map(Some).map_err(|e| format!("is not GeoJSON geometry text: {e}"))
}
