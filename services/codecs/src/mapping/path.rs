//! Field paths: where a value sits in a decoded message.
//!
//! # Syntax
//!
//! A path is a chain of segments resolved against a [`serde_json::Value`]:
//!
//! - `name`: an object key; segments are joined with `.` (`position.lat`).
//! - `[N]`: an array index (zero-based), after a key or at the start (`coords[1]`, `[0]`,
//!   `a.b[0].c`, `m[2][0]`).
//! - `"any key"`: a key in double quotes may contain `.`, `[`, `]` or spaces; `\"` and `\\` escape
//!   a quote and a backslash (`properties."sensor.id"`).
//!
//! Unquoted keys are any characters except `.`, `[`, `]` and `"`. A path must not be empty and must
//! not contain empty segments (`a..b`, `.a`, `a.`). For CSV the top-level keys are the column names
//! of the header, so a column named `lat` is the path `lat` and a column `gps.lat` is `"gps.lat"`.
//!
//! Hand-written rather than JSON Pointer (`/a/b/0`, where `0` is ambiguous between a key and an
//! index and `~1` escapes read badly in feed specs) or JSONPath (whose filters and wildcards return
//! many values, while a mapping needs exactly one).

use std::fmt;

use serde_json::Value;

/// One step of a [`Path`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Segment {
    /// An object key.
    Key(String),
    /// An array index.
    Index(usize),
}

/// A parsed field path, see the module documentation for the syntax.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Path {
    segments: Vec<Segment>,
}

/// Why a path string is not a valid path.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("path {path:?} is invalid at character {pos}: {problem}")]
pub struct PathError {
    /// The path as written.
    pub path: String,
    /// Character offset of the problem.
    pub pos: usize,
    /// What is wrong.
    pub problem: &'static str,
}

impl Path {
    /// Parses a path string.
    pub fn parse(input: &str) -> Result<Self, PathError> {
        let err = |pos: usize, problem: &'static str| PathError { path: input.to_owned(), pos, problem };
        let chars: Vec<char> = input.chars().collect();
        if chars.is_empty() {
            return Err(err(0, "a path must not be empty"));
        }
        let mut segments = Vec::new();
        let mut i = 0;
        // Whether the next thing must be a key (start, or after '.').
        let mut expect_key = true;
        let mut at_start = true;
        while i < chars.len() {
            let c = chars[i];
            if c == '[' {
                if expect_key && !at_start {
                    return Err(err(i, "expected a key after '.'"));
                }
                let start = i + 1;
                let mut j = start;
                while j < chars.len() && chars[j].is_ascii_digit() {
                    j += 1;
                }
                if j == start || j >= chars.len() || chars[j] != ']' {
                    return Err(err(i, "an index is digits in brackets, like [0]"));
                }
                let digits: String = chars[start..j].iter().collect();
                let n = digits.parse::<usize>().map_err(|_| err(start, "index too large"))?;
                segments.push(Segment::Index(n));
                i = j + 1;
                expect_key = false;
                at_start = false;
                continue;
            }
            if c == '.' {
                if expect_key {
                    return Err(err(i, "empty segment"));
                }
                expect_key = true;
                at_start = false;
                i += 1;
                continue;
            }
            if !expect_key {
                return Err(err(i, "expected '.' or '[' after a key or index"));
            }
            if c == ']' {
                return Err(err(i, "unmatched ']'"));
            }
            if c == '"' {
                let mut key = String::new();
                let mut j = i + 1;
                let mut closed = false;
                while j < chars.len() {
                    match chars[j] {
                        '\\' => {
                            match chars.get(j + 1) {
                                Some(&e @ ('"' | '\\')) => key.push(e),
                                _ => return Err(err(j, "only \\\" and \\\\ are escapes in a quoted key")),
                            }
                            j += 2;
                        }
                        '"' => {
                            closed = true;
                            j += 1;
                            break;
                        }
                        other => {
                            key.push(other);
                            j += 1;
                        }
                    }
                }
                if !closed {
                    return Err(err(i, "unterminated quoted key"));
                }
                segments.push(Segment::Key(key));
                i = j;
            } else {
                let start = i;
                while i < chars.len() && !matches!(chars[i], '.' | '[' | ']' | '"') {
                    i += 1;
                }
                if i < chars.len() && matches!(chars[i], ']' | '"') {
                    return Err(err(i, "']' and '\"' are not allowed in an unquoted key; quote the key"));
                }
                segments.push(Segment::Key(chars[start..i].iter().collect()));
            }
            expect_key = false;
            at_start = false;
        }
        if expect_key {
            return Err(err(chars.len(), "a path must not end with '.'"));
        }
        Ok(Path { segments })
    }

    /// A path of one key (e.g. a CSV column), with no parsing.
    pub fn key(name: impl Into<String>) -> Self {
        Path { segments: vec![Segment::Key(name.into())] }
    }

    /// The segments.
    pub fn segments(&self) -> &[Segment] {
        &self.segments
    }

    /// The value at this path, if every step exists. A JSON `null` is returned as `Some(Null)`.
    pub fn resolve<'v>(&self, value: &'v Value) -> Option<&'v Value> {
        let mut cur = value;
        for s in &self.segments {
            cur = match (s, cur) {
                (Segment::Key(k), Value::Object(m)) => m.get(k)?,
                (Segment::Index(i), Value::Array(a)) => a.get(*i)?,
                _ => return None,
            };
        }
        Some(cur)
    }
}

fn needs_quotes(key: &str) -> bool {
    key.is_empty() || key.contains(['.', '[', ']', '"', '\\'])
}

impl fmt::Display for Path {
    /// Writes the path in the syntax [`Path::parse`] reads back.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, s) in self.segments.iter().enumerate() {
            match s {
                Segment::Index(n) => write!(f, "[{n}]")?,
                Segment::Key(k) => {
                    if i > 0 {
                        f.write_str(".")?;
                    }
                    if needs_quotes(k) {
                        f.write_str("\"")?;
                        for c in k.chars() {
                            if matches!(c, '"' | '\\') {
                                f.write_str("\\")?;
                            }
                            write!(f, "{c}")?;
                        }
                        f.write_str("\"")?;
                    } else {
                        f.write_str(k)?;
                    }
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::json;

    #[test]
    fn parses_and_resolves() {
        let v = json!({"a": {"b": [{"c": 1}, {"c": 2}]}, "x.y": {"z": true}, "": 5, "m": [[7, 8]]});
        assert_eq!(Path::parse("a.b[1].c").unwrap().resolve(&v), Some(&json!(2)));
        assert_eq!(Path::parse("\"x.y\".z").unwrap().resolve(&v), Some(&json!(true)));
        assert_eq!(Path::parse("\"\"").unwrap().resolve(&v), Some(&json!(5)));
        assert_eq!(Path::parse("m[0][1]").unwrap().resolve(&v), Some(&json!(8)));
        assert_eq!(Path::parse("[0]").unwrap().resolve(&json!([3])), Some(&json!(3)));
        assert_eq!(Path::parse("a.b[5].c").unwrap().resolve(&v), None);
        assert_eq!(Path::parse("a.b.c").unwrap().resolve(&v), None);
    }

    #[test]
    fn rejects_bad_syntax() {
        for bad in
            ["", ".", "a.", ".a", "a..b", "a[", "a[x]", "a[]", "a]", "a\"b\"", "\"open", "a.[0]", "\"\\n\"", "a b\""]
        {
            assert!(Path::parse(bad).is_err(), "{bad:?} should be rejected");
        }
        let e = Path::parse("a..b").unwrap_err();
        assert_eq!(e.pos, 2);
    }

    #[test]
    fn display_round_trips() {
        for p in ["a.b[0].c", "\"x.y\".z", "[3]", "\"q\\\"uote\"", "a b.c"] {
            let parsed = Path::parse(p).unwrap();
            assert_eq!(Path::parse(&parsed.to_string()).unwrap(), parsed, "{p}");
        }
    }
}
