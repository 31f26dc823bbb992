//! Cutting a byte stream (a TCP connection, a file) into lines, pure and incremental.
//!
//! Lines end with `\n`, optionally preceded by `\r` (which is removed). A final line without a
//! terminator is a line once the stream ends, as in `geostream_codecs::decode_all`, so a file read
//! through here gives the codec exactly the lines a whole-file decode would. Memory is bounded: a
//! line longer than the limit keeps only its first `max` bytes and is reported as
//! [`LineKind::TooLong`] once its end is seen, with its full length.

use geostream_codecs::Context;
use geostream_model::ReasonCode;

use crate::pipeline::{Batch, FeedPipeline};

/// Longest line, in bytes without its terminator, that stream sources hand to a codec. No NMEA,
/// AIS or JSON Lines record comes close; a longer "line" is a binary stream or a peer that never
/// sends a newline, and holding it whole would let one peer take unbounded memory.
pub const MAX_LINE_BYTES: usize = 64 * 1024;

/// What [`LineSplitter`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LineKind<'a> {
    /// A line within the limit, without its terminator.
    Line(&'a [u8]),
    /// A line over the limit: its first `max` bytes and its full length (terminator excluded).
    TooLong {
        /// The first bytes of the line, as many as the limit.
        prefix: &'a [u8],
        /// The line's length without its terminator.
        len: u64,
    },
}

/// One line of the stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Line<'a> {
    /// 1-based line number in the stream.
    pub number: u64,
    /// Stream offset just after the line's terminator: where reading resumes after this line.
    pub end: u64,
    /// The line.
    pub kind: LineKind<'a>,
}

/// Incremental line splitter; feed it chunks with [`LineSplitter::push`].
#[derive(Debug)]
pub struct LineSplitter {
    max: usize,
    /// The current, unterminated line (at most `max + 1` bytes: the limit plus a possible `\r`).
    buf: Vec<u8>,
    /// Bytes of the current line that did not fit in `buf`.
    dropped: u64,
    /// Whether the last byte of the current line seen so far is `\r` (also when it was dropped).
    ends_cr: bool,
    /// Stream offset of the next byte pushed.
    offset: u64,
    /// Number of the last line reported.
    number: u64,
}

impl LineSplitter {
    /// A splitter at the start of a stream.
    pub fn new(max: usize) -> Self {
        Self::starting_at(max, 0, 0)
    }

    /// A splitter that continues a stream at `offset`, after line `lines_before` (resuming a file).
    pub fn starting_at(max: usize, offset: u64, lines_before: u64) -> Self {
        Self { max, buf: Vec::new(), dropped: 0, ends_cr: false, offset, number: lines_before }
    }

    /// Stream offset of the next byte.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// Whether part of a line is waiting for its terminator.
    pub fn has_partial(&self) -> bool {
        !self.buf.is_empty() || self.dropped > 0
    }

    /// Splits `data`, the next bytes of the stream, and reports each completed line in order.
    pub fn push(&mut self, data: &[u8], mut out: impl FnMut(Line<'_>)) {
        let mut rest = data;
        while let Some(nl) = rest.iter().position(|&b| b == b'\n') {
            let (head, tail) = rest.split_at(nl);
            self.offset += nl as u64 + 1;
            self.number += 1;
            let end = self.offset;
            if !self.has_partial() && head.len() <= self.max + 1 {
                // Fast path: the whole line is inside this chunk; no copy.
                let line = head.strip_suffix(b"\r").unwrap_or(head);
                out(Line { number: self.number, end, kind: Self::kind_of(self.max, line, line.len() as u64) });
            } else {
                self.take(head);
                let (line, len) = self.current();
                out(Line { number: self.number, end, kind: Self::kind_of(self.max, line, len) });
                self.reset();
            }
            rest = tail.get(1..).unwrap_or_default();
        }
        if !rest.is_empty() {
            self.offset += rest.len() as u64;
            self.take(rest);
        }
    }

    /// End of the stream: reports the final line if it had no terminator.
    pub fn finish(&mut self, mut out: impl FnMut(Line<'_>)) {
        if !self.has_partial() {
            return;
        }
        self.number += 1;
        let (line, len) = self.current();
        out(Line { number: self.number, end: self.offset, kind: Self::kind_of(self.max, line, len) });
        self.reset();
    }

    fn kind_of(max: usize, line: &[u8], len: u64) -> LineKind<'_> {
        if len > max as u64 {
            LineKind::TooLong { prefix: line.get(..max).unwrap_or(line), len }
        } else {
            LineKind::Line(line)
        }
    }

    /// Appends to the current line, keeping at most `max + 1` bytes.
    fn take(&mut self, bytes: &[u8]) {
        if let Some(&last) = bytes.last() {
            self.ends_cr = last == b'\r';
        }
        let room = (self.max + 1).saturating_sub(self.buf.len());
        let (kept, over) = bytes.split_at(room.min(bytes.len()));
        self.buf.extend_from_slice(kept);
        self.dropped += over.len() as u64;
    }

    /// The current line without a trailing `\r`, and its full length.
    fn current(&self) -> (&[u8], u64) {
        let total = self.buf.len() as u64 + self.dropped;
        if self.ends_cr {
            let kept = if self.dropped == 0 { self.buf.strip_suffix(b"\r").unwrap_or(&self.buf) } else { &self.buf };
            (kept, total - 1)
        } else {
            (&self.buf, total)
        }
    }

    fn reset(&mut self) {
        self.buf.clear();
        self.dropped = 0;
        self.ends_cr = false;
    }
}

/// Decodes one line: a line within the limit goes to the codec; a longer one becomes a
/// `too_large` dead letter holding its first bytes, so the rest of the stream still decodes.
pub fn decode_line(pipeline: &mut FeedPipeline, kind: LineKind<'_>, ctx: &Context, batch: &mut Batch) {
    match kind {
        LineKind::Line(line) => pipeline.decode_unit(line, ctx, batch),
        LineKind::TooLong { prefix, len } => {
            let detail = format!(
                "the line is {len} bytes, longer than the {MAX_LINE_BYTES} byte limit of one line; its first {} bytes \
                 are kept here and the rest was dropped",
                prefix.len()
            );
            pipeline.reject_unit(prefix, ReasonCode::TooLarge, &detail, ctx, batch);
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// (number, end, text or "TOO LONG <len> <prefix>") of every line, feeding `chunks` in turn.
    fn split(max: usize, chunks: &[&[u8]]) -> Vec<(u64, u64, String)> {
        let mut s = LineSplitter::new(max);
        let mut out = Vec::new();
        let mut record = |l: Line<'_>| {
            let text = match l.kind {
                LineKind::Line(b) => String::from_utf8_lossy(b).into_owned(),
                LineKind::TooLong { prefix, len } => format!("TOO LONG {len} {}", String::from_utf8_lossy(prefix)),
            };
            out.push((l.number, l.end, text));
        };
        for c in chunks {
            s.push(c, &mut record);
        }
        s.finish(&mut record);
        out
    }

    fn owned(v: &[(u64, u64, &str)]) -> Vec<(u64, u64, String)> {
        v.iter().map(|(n, e, t)| (*n, *e, (*t).to_owned())).collect()
    }

    #[test]
    fn splits_on_newline_strips_one_cr_and_keeps_blank_lines() {
        let got = split(100, &[b"a\r\nbb\n\n\r\nc\r\r\n"]);
        assert_eq!(got, owned(&[(1, 3, "a"), (2, 6, "bb"), (3, 7, ""), (4, 9, ""), (5, 13, "c\r")]));
    }

    #[test]
    fn a_final_line_without_terminator_counts_only_at_the_end_and_a_final_newline_adds_none() {
        assert_eq!(split(100, &[b"x\ny"]), owned(&[(1, 2, "x"), (2, 3, "y")]));
        assert_eq!(split(100, &[b"x\n"]), owned(&[(1, 2, "x")]));
        assert_eq!(split(100, &[b""]), owned(&[]));
        let mut s = LineSplitter::new(100);
        let mut n = 0;
        s.push(b"abc", |_| n += 1);
        assert_eq!(n, 0);
        assert!(s.has_partial());
        assert_eq!(s.offset(), 3);
    }

    #[test]
    fn lines_and_crlf_split_across_chunks_at_every_position() {
        let input: &[u8] = b"first\r\nsecond line\nthird\r\n";
        let want = split(100, &[input]);
        assert_eq!(want, owned(&[(1, 7, "first"), (2, 19, "second line"), (3, 26, "third")]));
        for i in 0..=input.len() {
            for j in i..=input.len() {
                let got = split(100, &[&input[..i], &input[i..j], &input[j..]]);
                assert_eq!(got, want, "chunks cut at {i} and {j}");
            }
        }
    }

    #[test]
    fn lines_at_the_limit_pass_and_longer_ones_are_cut_with_their_length() {
        let max = 8;
        let mut input = Vec::new();
        input.extend_from_slice(b"12345678\r\n"); // exactly max, with CR
        input.extend_from_slice(b"123456789\n"); // one over
        input.extend_from_slice(&[b'z'; 50]); // far over, CRLF, must not be kept whole
        input.extend_from_slice(b"\r\nok\n");
        input.extend_from_slice(b"123456789\r"); // over the limit, unterminated: the final CR is dropped
        let want = owned(&[
            (1, 10, "12345678"),
            (2, 20, "TOO LONG 9 12345678"),
            (3, 72, "TOO LONG 50 zzzzzzzz"),
            (4, 75, "ok"),
            (5, 85, "TOO LONG 9 12345678"),
        ]);
        assert_eq!(split(max, &[&input]), want);
        // The same stream one byte at a time: the slow path gives the same answer.
        let bytes: Vec<&[u8]> = input.chunks(1).collect();
        assert_eq!(split(max, &bytes), want);
        let mut s = LineSplitter::new(max);
        s.push(&[b'q'; 10_000], |_| {});
        assert!(s.buf.len() <= max + 1, "memory stays bounded by the limit");
    }

    #[test]
    fn an_over_long_line_becomes_a_too_large_dead_letter_and_the_codec_never_sees_it() {
        let spec: geostream_model::FeedSpec = serde_json::from_value(serde_json::json!({
            "id": "f", "type": "t", "source": {"kind": "udp", "address": "127.0.0.1:1"}, "format": "nmea"
        }))
        .unwrap();
        let mut p = FeedPipeline::new(&spec).unwrap();
        let ctx = p.context(geostream_model::time::OffsetDateTime::UNIX_EPOCH, "tcp 1.2.3.4:5 line 9");
        let mut batch = Batch::default();
        decode_line(&mut p, LineKind::TooLong { prefix: b"$GPGGA,1234", len: 99_999 }, &ctx, &mut batch);
        assert_eq!((batch.inputs, batch.len()), (1, 1));
        assert_eq!(batch.summary.rejected.get("too_large"), Some(&1));
        let dead: geostream_model::DeadLetter = serde_json::from_slice(&batch.envelopes[0].value).unwrap();
        assert_eq!(dead.raw, b"$GPGGA,1234");
        assert!(dead.detail.starts_with("tcp 1.2.3.4:5 line 9: the line is 99999 bytes"), "{}", dead.detail);
        let mut ok = Batch::default();
        decode_line(&mut p, LineKind::Line(b"# a comment"), &ctx, &mut ok);
        assert_eq!((ok.inputs, ok.len()), (1, 0), "a line within the limit goes to the codec");
    }

    #[test]
    fn a_resumed_splitter_continues_numbers_and_offsets() {
        let mut s = LineSplitter::starting_at(100, 500, 41);
        let mut got = Vec::new();
        s.push(b"a\nb\n", |l| got.push((l.number, l.end)));
        assert_eq!(got, [(42, 502), (43, 504)]);
    }
}
