//! Delimited text ([`CsvCodec`]) with the `csv` crate: one whole document per call (a file, an HTTP
//! body), the first row the header unless [`CsvOptions::header`] gives the column names.
//!
//! Each row becomes a JSON object of column name → cell text (empty cells left out) and goes
//! through the [`Mapping`], whose paths are the column names (quote a name containing `.`:
//! `"gps.lat"`). Numeric text is parsed for lon/lat, epoch times and attributes with units; other
//! attributes become numbers or booleans when their text is one (a leading zero keeps it text,
//! see [`CompiledMapping::with_numbers_from_strings`]).
//!
//! A row that fails (wrong number of fields, not UTF-8, or a mapping failure) is rejected on its
//! own with the row's text as raw bytes; a payload without a readable header is one `malformed`
//! rejection.

use geostream_model::{Mapping, ReasonCode};
use serde_json::{Map, Value};

use crate::codec::{Codec, Context, Framing, Outcome};
use crate::json::{located, reject};
use crate::mapping::{CompiledMapping, MappingError};

/// Options of the CSV codec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CsvOptions {
    /// Field delimiter, `,` by default (`;`, `\t`, `|` are common).
    pub delimiter: u8,
    /// Column names when the payload has no header row; none = the first row is the header.
    pub header: Option<Vec<String>>,
}

impl Default for CsvOptions {
    fn default() -> Self {
        CsvOptions { delimiter: b',', header: None }
    }
}

/// CSV through a mapping, see the module documentation.
#[derive(Debug)]
pub struct CsvCodec {
    mapping: CompiledMapping,
    opts: CsvOptions,
}

impl CsvCodec {
    /// Compiles the mapping; it must say where the position is (lon/lat or geometry).
    pub fn new(mapping: &Mapping, opts: CsvOptions) -> Result<Self, MappingError> {
        let compiled = CompiledMapping::new(mapping)?.with_numbers_from_strings(true);
        if !compiled.has_position() {
            return Err(MappingError::Invalid("csv rows need lon/lat (or a geometry) columns".into()));
        }
        Ok(CsvCodec { mapping: compiled, opts })
    }

    /// Replaces the compiled mapping (e.g. to set a different future-time skew).
    pub fn map_mapping(mut self, f: impl FnOnce(CompiledMapping) -> CompiledMapping) -> Self {
        self.mapping = f(self.mapping);
        self
    }
}

/// The offset and text of the row between reader positions `start` and `end`, without the line
/// terminators around it (after a `\r\n` row the reader's position can sit between the `\r` and
/// the `\n`).
fn row_text(input: &[u8], start: usize, end: usize) -> (usize, &[u8]) {
    let end = end.min(input.len());
    let Some(b) = input.get(start..end) else { return (start.min(input.len()), &[]) };
    let s = b.iter().position(|c| !matches!(c, b'\r' | b'\n')).unwrap_or(b.len());
    let e = b.iter().rposition(|c| !matches!(c, b'\r' | b'\n')).map_or(s, |i| i + 1);
    (start + s, b.get(s..e).unwrap_or_default())
}

impl Codec for CsvCodec {
    fn name(&self) -> &'static str {
        "csv"
    }

    fn framing(&self) -> Framing {
        Framing::Document
    }

    fn decode(&mut self, input: &[u8], ctx: &Context, out: &mut dyn FnMut(Outcome)) {
        let mut rdr = csv::ReaderBuilder::new()
            .delimiter(self.opts.delimiter)
            .has_headers(self.opts.header.is_none())
            .flexible(false)
            .from_reader(input);
        let header: Vec<String> = match &self.opts.header {
            Some(h) => h.clone(),
            None => match rdr.headers() {
                Ok(h) if !h.is_empty() => h.iter().map(|s| s.trim().to_owned()).collect(),
                Ok(_) => {
                    out(reject(ReasonCode::Malformed, located(ctx, "no CSV header row".into()), input.to_vec()));
                    return;
                }
                Err(e) => {
                    out(reject(ReasonCode::Malformed, located(ctx, format!("CSV header: {e}")), input.to_vec()));
                    return;
                }
            },
        };
        let mut rec = csv::ByteRecord::new();
        // Line numbers counted here (1-based, in the payload) so they are right for rows the
        // reader refused too.
        let (mut counted_to, mut newlines) = (0usize, 0usize);
        loop {
            let start = usize::try_from(rdr.position().byte()).unwrap_or(usize::MAX);
            let result = rdr.read_byte_record(&mut rec);
            let end = usize::try_from(rdr.position().byte()).unwrap_or(usize::MAX);
            let (row_start, row) = row_text(input, start, end);
            if let Some(skipped) = input.get(counted_to..row_start) {
                newlines += skipped.iter().filter(|b| **b == b'\n').count();
                counted_to = row_start;
            }
            let raw = || row.to_vec();
            let line = newlines + 1;
            let at = |d: String| located(ctx, format!("row at line {line}: {d}"));
            match result {
                Ok(false) => break,
                Ok(true) => {}
                Err(e) => {
                    let fatal = end <= start;
                    out(reject(ReasonCode::Malformed, at(format!("{e}")), raw()));
                    if fatal {
                        break;
                    }
                    continue;
                }
            }
            let mut fields = Map::with_capacity(header.len());
            let mut bad_utf8 = false;
            for (name, cell) in header.iter().zip(rec.iter()) {
                match std::str::from_utf8(cell) {
                    Ok(s) if s.trim().is_empty() => {}
                    Ok(s) => {
                        fields.insert(name.clone(), Value::String(s.to_owned()));
                    }
                    Err(_) => bad_utf8 = true,
                }
            }
            if bad_utf8 {
                out(reject(ReasonCode::Malformed, at("a cell is not UTF-8".into()), raw()));
                continue;
            }
            let outcome = match self.mapping.apply(&Value::Object(fields), ctx) {
                Ok(o) => Outcome::Observation(Box::new(o)),
                Err(f) => reject(f.reason, at(f.detail), raw()),
            };
            out(outcome);
        }
    }
}
