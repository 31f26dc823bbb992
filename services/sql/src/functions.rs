//! The geo and attribute functions, as DataFusion scalar UDFs.
//!
//! One implementation type for all of them: each function is a [`Func`] with its argument kinds,
//! so type checking (at planning, through `coerce_types`) and null handling are written once.
//! Nulls in give null out; a malformed argument is a DataFusion error naming the function and the
//! argument, never a panic.

use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, BinaryArray, BinaryBuilder, BooleanBuilder, Float64Array, Float64Builder, Int64Array,
    StringArray, StringBuilder,
};
use datafusion::arrow::datatypes::{DataType, Float64Type, Int64Type};
use datafusion::common::{DataFusionError, Result, ScalarValue, exec_err, plan_err};
use datafusion::logical_expr::{ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility};
use geo::{Contains, Distance, Haversine, MultiPolygon, Point};
use geostream_model::geojson::Geometry;
use serde_json::{Map, Value};

use crate::point::{self, Parsed};

/// The functions this crate adds to SQL.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Func {
    StPoint,
    StX,
    StY,
    StWithin,
    StDistance,
    StGeohash,
    H3Cell,
    AttrF64,
    AttrStr,
}

/// What an argument must be; decides the coercion.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Arg {
    /// A point: WKB (binary, from `st_point`) or GeoJSON text (the `geometry` column).
    Point,
    /// Any number, read as Float64.
    Float,
    /// An integer, read as Int64.
    Int,
    /// Text.
    Text,
}

impl Func {
    pub(crate) const ALL: [Func; 9] = [
        Func::StPoint,
        Func::StX,
        Func::StY,
        Func::StWithin,
        Func::StDistance,
        Func::StGeohash,
        Func::H3Cell,
        Func::AttrF64,
        Func::AttrStr,
    ];

    pub(crate) fn name(self) -> &'static str {
        match self {
            Func::StPoint => "st_point",
            Func::StX => "st_x",
            Func::StY => "st_y",
            Func::StWithin => "st_within",
            Func::StDistance => "st_distance",
            Func::StGeohash => "st_geohash",
            Func::H3Cell => "h3_cell",
            Func::AttrF64 => "attr_f64",
            Func::AttrStr => "attr_str",
        }
    }

    fn usage(self) -> &'static str {
        match self {
            Func::StPoint => "st_point(lon, lat)",
            Func::StX => "st_x(point)",
            Func::StY => "st_y(point)",
            Func::StWithin => "st_within(point, geojson_polygon)",
            Func::StDistance => "st_distance(point, point)",
            Func::StGeohash => "st_geohash(point, precision)",
            Func::H3Cell => "h3_cell(point, resolution)",
            Func::AttrF64 => "attr_f64(attributes, name)",
            Func::AttrStr => "attr_str(attributes, name)",
        }
    }

    fn args(self) -> &'static [Arg] {
        match self {
            Func::StPoint => &[Arg::Float, Arg::Float],
            Func::StX | Func::StY => &[Arg::Point],
            Func::StWithin => &[Arg::Point, Arg::Text],
            Func::StDistance => &[Arg::Point, Arg::Point],
            Func::StGeohash | Func::H3Cell => &[Arg::Point, Arg::Int],
            Func::AttrF64 | Func::AttrStr => &[Arg::Text, Arg::Text],
        }
    }

    fn returns(self) -> DataType {
        match self {
            Func::StPoint => DataType::Binary,
            Func::StX | Func::StY | Func::StDistance | Func::AttrF64 => DataType::Float64,
            Func::StWithin => DataType::Boolean,
            Func::StGeohash | Func::H3Cell | Func::AttrStr => DataType::Utf8,
        }
    }
}

/// All the functions, ready for `SessionContext::register_udf`.
pub(crate) fn udfs() -> Vec<ScalarUDF> {
    Func::ALL.iter().map(|&func| ScalarUDF::new_from_impl(GeoUdf::new(func))).collect()
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct GeoUdf {
    func: Func,
    signature: Signature,
}

impl GeoUdf {
    fn new(func: Func) -> Self {
        // User-defined: `coerce_types` below accepts every string and binary flavour and NULL
        // literals, and refuses anything else at planning with a message naming the argument.
        Self { func, signature: Signature::user_defined(Volatility::Immutable) }
    }
}

fn is_text(t: &DataType) -> bool {
    matches!(t, DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View)
}

fn is_binary(t: &DataType) -> bool {
    matches!(t, DataType::Binary | DataType::LargeBinary | DataType::BinaryView | DataType::FixedSizeBinary(_))
}

impl ScalarUDFImpl for GeoUdf {
    fn name(&self) -> &str {
        self.func.name()
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(self.func.returns())
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        let f = self.func;
        let want = f.args();
        if arg_types.len() != want.len() {
            return plan_err!(
                "{} takes {} argument(s), got {}: use {}",
                f.name(),
                want.len(),
                arg_types.len(),
                f.usage()
            );
        }
        want.iter()
            .zip(arg_types)
            .enumerate()
            .map(|(i, (want, got))| {
                let ok = match want {
                    Arg::Point if is_binary(got) || got.is_null() => Some(DataType::Binary),
                    Arg::Point if is_text(got) => Some(DataType::Utf8),
                    Arg::Float if got.is_numeric() || got.is_null() => Some(DataType::Float64),
                    Arg::Int if got.is_integer() || got.is_null() => Some(DataType::Int64),
                    Arg::Text if is_text(got) || got.is_null() => Some(DataType::Utf8),
                    _ => None,
                };
                ok.ok_or_else(|| {
                    let what = match want {
                        Arg::Point => "a point (st_point(lon, lat)) or GeoJSON text",
                        Arg::Float => "a number",
                        Arg::Int => "an integer",
                        Arg::Text => "text",
                    };
                    DataFusionError::Plan(format!(
                        "{}: argument {} must be {what}, got {got}; use {}",
                        f.name(),
                        i + 1,
                        f.usage()
                    ))
                })
            })
            .collect()
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        // Constant arguments are evaluated once, into a constant, even over an empty batch: the
        // planner's constant folding defers errors to execution, and this is what makes
        // `st_geohash(st_point(1, 2), 13)` fail on the empty table `WindowQuery::new` runs.
        if args.args.iter().all(|a| matches!(a, ColumnarValue::Scalar(_))) {
            let arrays = args.args.iter().map(|a| a.to_array(1)).collect::<Result<Vec<_>>>()?;
            let out = eval(self.func, &arrays, 1)?;
            return Ok(ColumnarValue::Scalar(ScalarValue::try_from_array(&out, 0)?));
        }
        let arrays = ColumnarValue::values_to_arrays(&args.args)?;
        Ok(ColumnarValue::Array(eval(self.func, &arrays, args.number_rows)?))
    }
}

/// A point argument after coercion.
enum Points<'a> {
    Wkb(&'a BinaryArray),
    Text(&'a StringArray),
}

impl Points<'_> {
    fn get(&self, f: Func, arg: usize, i: usize) -> Result<Option<(f64, f64)>> {
        let parsed = match self {
            Points::Wkb(a) if a.is_valid(i) => point::from_bytes(a.value(i)),
            Points::Text(a) if a.is_valid(i) => point::from_geojson(a.value(i)),
            _ => return Ok(None),
        };
        match parsed {
            Ok(Parsed::Point(x, y)) => Ok(Some((x, y))),
            Ok(Parsed::NotAPoint) => Ok(None),
            Err(problem) => exec_err!("{}: argument {arg} {problem}", f.name()),
        }
    }
}

fn points(f: Func, a: &ArrayRef, arg: usize) -> Result<Points<'_>> {
    if let Some(b) = a.as_binary_opt::<i32>() {
        Ok(Points::Wkb(b))
    } else if let Some(s) = a.as_string_opt::<i32>() {
        Ok(Points::Text(s))
    } else {
        exec_err!("{}: argument {arg} arrived as {} after coercion (a bug)", f.name(), a.data_type())
    }
}

fn floats(f: Func, a: &ArrayRef, arg: usize) -> Result<&Float64Array> {
    a.as_primitive_opt::<Float64Type>().ok_or_else(|| {
        DataFusionError::Execution(format!("{}: argument {arg} arrived as {} (a bug)", f.name(), a.data_type()))
    })
}

fn ints(f: Func, a: &ArrayRef, arg: usize) -> Result<&Int64Array> {
    a.as_primitive_opt::<Int64Type>().ok_or_else(|| {
        DataFusionError::Execution(format!("{}: argument {arg} arrived as {} (a bug)", f.name(), a.data_type()))
    })
}

fn texts(f: Func, a: &ArrayRef, arg: usize) -> Result<&StringArray> {
    a.as_string_opt::<i32>().ok_or_else(|| {
        DataFusionError::Execution(format!("{}: argument {arg} arrived as {} (a bug)", f.name(), a.data_type()))
    })
}

fn arg(arrays: &[ArrayRef], i: usize) -> Result<&ArrayRef> {
    arrays.get(i).ok_or_else(|| DataFusionError::Execution(format!("argument {} missing (a bug)", i + 1)))
}

fn eval(f: Func, arrays: &[ArrayRef], rows: usize) -> Result<ArrayRef> {
    match f {
        Func::StPoint => {
            let (lon, lat) = (floats(f, arg(arrays, 0)?, 1)?, floats(f, arg(arrays, 1)?, 2)?);
            let mut out = BinaryBuilder::with_capacity(rows, rows * point::WKB_POINT_LEN);
            for i in 0..rows {
                if lon.is_null(i) || lat.is_null(i) {
                    out.append_null();
                    continue;
                }
                let (x, y) = (lon.value(i), lat.value(i));
                if !(-180.0..=180.0).contains(&x) {
                    return exec_err!("st_point: longitude {x} is outside [-180, 180] (arguments are lon, lat)");
                }
                if !(-90.0..=90.0).contains(&y) {
                    return exec_err!("st_point: latitude {y} is outside [-90, 90] (arguments are lon, lat)");
                }
                out.append_value(point::wkb_point(x, y));
            }
            Ok(Arc::new(out.finish()))
        }
        Func::StX | Func::StY => {
            let p = points(f, arg(arrays, 0)?, 1)?;
            let mut out = Float64Builder::with_capacity(rows);
            for i in 0..rows {
                out.append_option(p.get(f, 1, i)?.map(|(x, y)| if f == Func::StX { x } else { y }));
            }
            Ok(Arc::new(out.finish()))
        }
        Func::StDistance => {
            let (a, b) = (points(f, arg(arrays, 0)?, 1)?, points(f, arg(arrays, 1)?, 2)?);
            let mut out = Float64Builder::with_capacity(rows);
            for i in 0..rows {
                let d = match (a.get(f, 1, i)?, b.get(f, 2, i)?) {
                    (Some((x1, y1)), Some((x2, y2))) => {
                        Some(Haversine.distance(Point::new(x1, y1), Point::new(x2, y2)))
                    }
                    _ => None,
                };
                out.append_option(d);
            }
            Ok(Arc::new(out.finish()))
        }
        Func::StWithin => {
            let p = points(f, arg(arrays, 0)?, 1)?;
            let polys = texts(f, arg(arrays, 1)?, 2)?;
            let mut out = BooleanBuilder::with_capacity(rows);
            // The polygon is nearly always a literal, the same text on every row: parse it once.
            let mut cached: Option<(&str, MultiPolygon)> = None;
            for i in 0..rows {
                let (Some((x, y)), true) = (p.get(f, 1, i)?, polys.is_valid(i)) else {
                    out.append_null();
                    continue;
                };
                let text = polys.value(i);
                if cached.as_ref().is_none_or(|(t, _)| *t != text) {
                    cached = Some((text, polygon(text)?));
                }
                if let Some((_, area)) = &cached {
                    out.append_value(area.contains(&Point::new(x, y)));
                }
            }
            Ok(Arc::new(out.finish()))
        }
        Func::StGeohash | Func::H3Cell => {
            let p = points(f, arg(arrays, 0)?, 1)?;
            let levels = ints(f, arg(arrays, 1)?, 2)?;
            let mut out = StringBuilder::with_capacity(rows, rows * 16);
            for i in 0..rows {
                let (Some((x, y)), true) = (p.get(f, 1, i)?, levels.is_valid(i)) else {
                    out.append_null();
                    continue;
                };
                let level = levels.value(i);
                let cell = if f == Func::StGeohash { geohash_cell(x, y, level)? } else { h3_cell(x, y, level)? };
                out.append_value(cell);
            }
            Ok(Arc::new(out.finish()))
        }
        Func::AttrF64 | Func::AttrStr => {
            let (attrs, names) = (texts(f, arg(arrays, 0)?, 1)?, texts(f, arg(arrays, 1)?, 2)?);
            let mut num = Float64Builder::with_capacity(if f == Func::AttrF64 { rows } else { 0 });
            let mut txt = StringBuilder::with_capacity(if f == Func::AttrStr { rows } else { 0 }, 0);
            for i in 0..rows {
                let value = if attrs.is_valid(i) && names.is_valid(i) {
                    let map: Map<String, Value> = serde_json::from_str(attrs.value(i)).map_err(|e| {
                        DataFusionError::Execution(format!("{}: argument 1 is not a JSON object: {e}", f.name()))
                    })?;
                    map.get(names.value(i)).cloned()
                } else {
                    None
                };
                if f == Func::AttrF64 {
                    num.append_option(value.as_ref().and_then(Value::as_f64));
                } else {
                    txt.append_option(value.as_ref().and_then(Value::as_str));
                }
            }
            Ok(if f == Func::AttrF64 { Arc::new(num.finish()) } else { Arc::new(txt.finish()) })
        }
    }
}

fn polygon(text: &str) -> Result<MultiPolygon> {
    let g: Geometry = text
        .parse()
        .map_err(|e| DataFusionError::Execution(format!("st_within: argument 2 is not GeoJSON geometry text: {e}")))?;
    let g: geo::Geometry<f64> = geo::Geometry::try_from(&g.value)
        .map_err(|e| DataFusionError::Execution(format!("st_within: argument 2 is not a usable geometry: {e}")))?;
    match g {
        geo::Geometry::Polygon(p) => Ok(MultiPolygon::new(vec![p])),
        geo::Geometry::MultiPolygon(mp) => Ok(mp),
        _ => exec_err!("st_within: argument 2 must be a GeoJSON Polygon or MultiPolygon"),
    }
}

fn geohash_cell(x: f64, y: f64, precision: i64) -> Result<String> {
    let Some(len) = usize::try_from(precision).ok().filter(|p| (1..=12).contains(p)) else {
        return exec_err!("st_geohash: precision {precision} is outside 1 to 12");
    };
    geohash::encode(geohash::Coord { x, y }, len)
        .map_err(|e| DataFusionError::Execution(format!("st_geohash: cannot encode ({x}, {y}): {e}")))
}

fn h3_cell(x: f64, y: f64, resolution: i64) -> Result<String> {
    let Some(res) = u8::try_from(resolution).ok().and_then(|r| h3o::Resolution::try_from(r).ok()) else {
        return exec_err!("h3_cell: resolution {resolution} is outside 0 to 15");
    };
    let ll = h3o::LatLng::new(y, x)
        .map_err(|e| DataFusionError::Execution(format!("h3_cell: cannot index ({x}, {y}): {e}")))?;
    Ok(ll.to_cell(res).to_string())
}
