//! The streaming decoder: lines in, messages out, with bounded multi-part reassembly.

use std::collections::VecDeque;

use super::bits::Bits;
use super::error::{AisError, IncompleteCause};
use super::message::{self, Message};
use super::sentence::{self, Line, LineMeta, Sentence, SkipKind};

/// Decoder settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecoderOptions {
    /// Most multi-part groups kept waiting for their remaining fragments; beyond it the oldest
    /// group is dropped and reported as [`AisError::Incomplete`].
    pub max_pending: usize,
    /// A pending group is dropped (reported incomplete) once this many further lines have been
    /// pushed without completing it.
    pub max_age_lines: u64,
    /// Whether a wrong NMEA 4.0 tag block checksum is an error. Some real captures (AMSA's) write
    /// `*00` for every tag block; turn this off for such feeds.
    pub verify_tag_block_checksum: bool,
}

impl Default for DecoderOptions {
    fn default() -> Self {
        DecoderOptions { max_pending: 64, max_age_lines: 1000, verify_tag_block_checksum: true }
    }
}

/// A decoded message with the metadata of the line that completed it.
#[derive(Debug, Clone, PartialEq)]
pub struct Decoded<'a> {
    /// The message.
    pub message: Message,
    /// Talker id of the sentence(s), e.g. `*b"AI"`.
    pub talker: [u8; 2],
    /// Whether it came as `VDO` (own ship).
    pub own_ship: bool,
    /// Radio channel, if given.
    pub channel: Option<u8>,
    /// How many sentences the message took.
    pub sentences: u8,
    /// Source and times from the tag block / trailing fields. For a multi-part message the times
    /// come from the first fragment that carried them and the source from the completing line
    /// (`None` if only an earlier fragment named it).
    pub meta: LineMeta<'a>,
}

/// What pushing one line produced.
#[derive(Debug, Clone, PartialEq)]
pub enum Output<'a> {
    /// A complete message.
    Message(Decoded<'a>),
    /// A fragment of a multi-part message was stored; the message is not complete yet.
    Fragment,
    /// A fragment identical to one already held was ignored.
    Duplicate,
    /// The line is not AIS and was skipped.
    Skipped(SkipKind),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Key {
    talker: [u8; 2],
    channel: u8,
    seq: u8,
}

#[derive(Debug)]
struct Group {
    active: bool,
    key: Key,
    source: String,
    total: u8,
    have: u16,
    /// (start, len) of each part's payload in `buf`, index = part number - 1.
    parts: [(u32, u32); 9],
    fill: u8,
    buf: Vec<u8>,
    first_line: u64,
    tag_time_ms: Option<i64>,
    receive_time_ms: Option<i64>,
}

impl Group {
    fn empty() -> Self {
        Group {
            active: false,
            key: Key { talker: [0; 2], channel: 0, seq: 0 },
            source: String::new(),
            total: 0,
            have: 0,
            parts: [(0, 0); 9],
            fill: 0,
            buf: Vec::new(),
            first_line: 0,
            tag_time_ms: None,
            receive_time_ms: None,
        }
    }

    fn matches(&self, key: Key, source: &str) -> bool {
        self.active && self.key == key && self.source == source
    }

    fn start(&mut self, key: Key, s: &Sentence<'_>, line: u64) {
        self.active = true;
        self.key = key;
        self.source.clear();
        self.source.push_str(s.meta.source.unwrap_or(""));
        self.total = s.total;
        self.have = 0;
        self.buf.clear();
        self.first_line = line;
        self.tag_time_ms = None;
        self.receive_time_ms = None;
        self.fill = 0;
    }

    fn add(&mut self, s: &Sentence<'_>) {
        let idx = usize::from(s.num - 1);
        let start = self.buf.len() as u32;
        self.buf.extend_from_slice(s.payload);
        if let Some(p) = self.parts.get_mut(idx) {
            *p = (start, s.payload.len() as u32);
        }
        self.have |= 1 << idx;
        if s.num == s.total {
            self.fill = s.fill;
        }
        self.tag_time_ms = self.tag_time_ms.or(s.meta.tag_time_ms);
        self.receive_time_ms = self.receive_time_ms.or(s.meta.receive_time_ms);
    }

    fn part(&self, idx: usize) -> &[u8] {
        let (start, len) = self.parts.get(idx).copied().unwrap_or((0, 0));
        self.buf.get(start as usize..(start + len) as usize).unwrap_or_default()
    }

    fn complete(&self) -> bool {
        self.have.count_ones() == u32::from(self.total)
    }

    fn incomplete(&mut self, cause: IncompleteCause) -> AisError {
        self.active = false;
        AisError::Incomplete {
            talker: String::from_utf8_lossy(&self.key.talker).into_owned(),
            channel: if self.key.channel == 0 { '-' } else { char::from(self.key.channel) },
            seq: if self.key.seq == u8::MAX { '-' } else { char::from(b'0' + self.key.seq) },
            received: self.have.count_ones() as u8,
            total: self.total,
            cause,
        }
    }
}

/// Streaming AIS decoder: push one line at a time; multi-part messages are reassembled by
/// (talker, channel, sequential message id, source) from fragments in any order.
///
/// Groups that are given up (evicted, expired, superseded, flushed) are queued as
/// [`AisError::Incomplete`]; take them with [`Decoder::take_incomplete`] after each push (the
/// queue keeps at most `max_pending` reports; older ones are counted in
/// [`Decoder::dropped_reports`]).
#[derive(Debug)]
pub struct Decoder {
    opts: DecoderOptions,
    groups: Vec<Group>,
    active: usize,
    line_no: u64,
    incomplete: VecDeque<AisError>,
    dropped_reports: u64,
}

impl Default for Decoder {
    fn default() -> Self {
        Self::new(DecoderOptions::default())
    }
}

impl Decoder {
    /// A decoder with the given options (`max_pending` is at least 1).
    pub fn new(opts: DecoderOptions) -> Self {
        let opts = DecoderOptions { max_pending: opts.max_pending.max(1), ..opts };
        Decoder { opts, groups: Vec::new(), active: 0, line_no: 0, incomplete: VecDeque::new(), dropped_reports: 0 }
    }

    /// Decodes one line (with or without its line terminator).
    pub fn push_line<'a>(&mut self, line: &'a [u8]) -> Result<Output<'a>, AisError> {
        self.line_no += 1;
        if self.active > 0 {
            self.expire();
        }
        let s = match sentence::parse_line(line, self.opts.verify_tag_block_checksum)? {
            Line::Skip(kind) => return Ok(Output::Skipped(kind)),
            Line::Sentence(s) => s,
        };
        if s.total == 1 {
            let mut bits = Bits::new();
            bits.push_armored(s.payload, 0)?;
            bits.remove_fill(s.fill)?;
            let message = message::decode(&mut bits)?;
            return Ok(Output::Message(Decoded {
                message,
                talker: s.talker,
                own_ship: s.own_ship,
                channel: s.channel,
                sentences: 1,
                meta: s.meta,
            }));
        }
        self.push_fragment(&s)
    }

    fn push_fragment<'a>(&mut self, s: &Sentence<'a>) -> Result<Output<'a>, AisError> {
        let key = Key { talker: s.talker, channel: s.channel.unwrap_or(0), seq: s.seq.unwrap_or(u8::MAX) };
        let source = s.meta.source.unwrap_or("");
        let idx = usize::from(s.num - 1);
        // Exact key first; else a group whose fragments so far lacked a source, or which has one
        // when this fragment lacks it (real captures put the tag block or station on one
        // fragment only).
        let found = self.groups.iter().position(|g| g.matches(key, source)).or_else(|| {
            self.groups.iter().position(|g| g.active && g.key == key && (g.source.is_empty() || source.is_empty()))
        });
        let gi = match found {
            Some(gi) => {
                let g = &mut self.groups[gi];
                if g.source.is_empty() && !source.is_empty() {
                    g.source.push_str(source);
                }
                let held = g.have & (1 << idx) != 0;
                if held && g.part(idx) == s.payload && g.total == s.total {
                    return Ok(Output::Duplicate);
                }
                if held || g.total != s.total {
                    let err = g.incomplete(IncompleteCause::Superseded);
                    self.active = self.active.saturating_sub(1);
                    self.report(err);
                    self.claim(gi, key, s);
                }
                gi
            }
            None => {
                let gi = self.free_slot();
                self.claim(gi, key, s);
                gi
            }
        };
        let g = &mut self.groups[gi];
        g.add(s);
        if !g.complete() {
            return Ok(Output::Fragment);
        }
        g.active = false;
        self.active = self.active.saturating_sub(1);
        let g = &self.groups[gi];
        let mut bits = Bits::new();
        let mut offset = 0;
        for part in 0..usize::from(g.total) {
            let p = g.part(part);
            bits.push_armored(p, offset)?;
            offset += p.len();
        }
        bits.remove_fill(g.fill)?;
        let meta = LineMeta { source: s.meta.source, tag_time_ms: g.tag_time_ms, receive_time_ms: g.receive_time_ms };
        let message = message::decode(&mut bits)?;
        Ok(Output::Message(Decoded {
            message,
            talker: s.talker,
            own_ship: s.own_ship,
            channel: s.channel,
            sentences: g.total,
            meta,
        }))
    }

    fn claim(&mut self, gi: usize, key: Key, s: &Sentence<'_>) {
        let line = self.line_no;
        if let Some(g) = self.groups.get_mut(gi) {
            g.start(key, s, line);
            self.active += 1;
        }
    }

    /// Index of an inactive group, growing the pool up to `max_pending`, else evicting the oldest.
    fn free_slot(&mut self) -> usize {
        if let Some(i) = self.groups.iter().position(|g| !g.active) {
            return i;
        }
        if self.groups.len() < self.opts.max_pending {
            self.groups.push(Group::empty());
            return self.groups.len() - 1;
        }
        let oldest = self.groups.iter().enumerate().min_by_key(|(_, g)| g.first_line).map_or(0, |(i, _)| i);
        if let Some(g) = self.groups.get_mut(oldest) {
            let err = g.incomplete(IncompleteCause::Evicted);
            self.active = self.active.saturating_sub(1);
            self.report(err);
        }
        oldest
    }

    fn expire(&mut self) {
        let now = self.line_no;
        let max_age = self.opts.max_age_lines;
        for i in 0..self.groups.len() {
            let g = &mut self.groups[i];
            if g.active && now.saturating_sub(g.first_line) > max_age {
                let err = g.incomplete(IncompleteCause::Expired);
                self.active = self.active.saturating_sub(1);
                self.report(err);
            }
        }
    }

    fn report(&mut self, err: AisError) {
        if self.incomplete.len() >= self.opts.max_pending {
            self.incomplete.pop_front();
            self.dropped_reports += 1;
        }
        self.incomplete.push_back(err);
    }

    /// Takes the queued [`AisError::Incomplete`] reports of groups given up so far.
    pub fn take_incomplete(&mut self) -> impl Iterator<Item = AisError> + '_ {
        self.incomplete.drain(..)
    }

    /// Gives up every pending group (end of input); take the reports with
    /// [`Decoder::take_incomplete`].
    pub fn flush(&mut self) {
        for i in 0..self.groups.len() {
            let g = &mut self.groups[i];
            if g.active {
                let err = g.incomplete(IncompleteCause::Flushed);
                self.active = self.active.saturating_sub(1);
                self.report(err);
            }
        }
    }

    /// Number of multi-part groups waiting for fragments.
    pub fn pending(&self) -> usize {
        self.active
    }

    /// Incomplete reports dropped because the queue was full and nobody took them.
    pub fn dropped_reports(&self) -> u64 {
        self.dropped_reports
    }
}
