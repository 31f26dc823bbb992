//! The 6-bit payload armoring and a bounds-checked bit reader over a stack buffer.

use super::error::AisError;

/// Longest payload (in armored characters) the decoder accepts, over all fragments of a message.
/// The longest AIS message is 5 slots (1008 bits, 168 characters); this leaves room for
/// non-conforming senders while keeping the bit buffer on the stack.
pub const MAX_PAYLOAD_CHARS: usize = 1024;

const MAX_BYTES: usize = MAX_PAYLOAD_CHARS * 6 / 8;
/// 8 zero bytes of slack so a read can always load a whole `u64` window.
const BUF_BYTES: usize = MAX_BYTES + 8;

/// Value of one armoring character, or `None` if it is outside the alphabet.
#[inline]
pub(crate) fn sixbit(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'W' => Some(c - b'0'),
        b'`'..=b'w' => Some(c - b'0' - 8),
        _ => None,
    }
}

/// The de-armored payload bits of one message.
pub struct Bits {
    buf: [u8; BUF_BYTES],
    len: usize,
    msg_type: u8,
}

impl Bits {
    /// An empty buffer.
    pub(crate) fn new() -> Self {
        Bits { buf: [0; BUF_BYTES], len: 0, msg_type: 0 }
    }

    /// Appends armored characters; `offset` is where they start in the whole payload (for errors).
    pub(crate) fn push_armored(&mut self, chars: &[u8], offset: usize) -> Result<(), AisError> {
        if self.len + chars.len() * 6 > MAX_BYTES * 8 {
            return Err(AisError::malformed("payload", "longer than 1024 armored characters"));
        }
        for (i, &c) in chars.iter().enumerate() {
            let v = sixbit(c).ok_or(AisError::Armoring { ch: c as char, pos: offset + i })?;
            self.push6(v);
        }
        Ok(())
    }

    #[inline]
    fn push6(&mut self, v: u8) {
        // Up to two bytes are touched; the buffer starts zeroed and is filled left to right.
        let byte = self.len / 8;
        let shift = self.len % 8;
        let v16 = u16::from(v) << (10 - shift);
        if let Some(b) = self.buf.get_mut(byte) {
            *b |= (v16 >> 8) as u8;
        }
        if let Some(b) = self.buf.get_mut(byte + 1) {
            *b |= v16 as u8;
        }
        self.len += 6;
    }

    /// Drops the `fill` padding bits at the end.
    pub(crate) fn remove_fill(&mut self, fill: u8) -> Result<(), AisError> {
        let fill = usize::from(fill);
        if fill > self.len {
            return Err(AisError::malformed("fill bits", "more fill bits than payload bits"));
        }
        self.len -= fill;
        Ok(())
    }

    /// Number of payload bits.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Sets the message type used in error messages.
    pub(crate) fn set_type(&mut self, t: u8) {
        self.msg_type = t;
    }

    /// Reads `width` (1..=32) bits at `start` as an unsigned number.
    #[inline]
    pub(crate) fn u(&self, start: usize, width: usize, field: &'static str) -> Result<u32, AisError> {
        self.opt_u(start, width).ok_or(AisError::TooShort {
            msg_type: self.msg_type,
            bits: self.len,
            need: start + width,
            field,
        })
    }

    /// Like [`Bits::u`] but `None` when the bits are not there.
    #[inline]
    pub(crate) fn opt_u(&self, start: usize, width: usize) -> Option<u32> {
        if width == 0 || width > 32 || start + width > self.len {
            return None;
        }
        let byte = start / 8;
        let window = self.buf.get(byte..byte + 8)?;
        let mut w = [0u8; 8];
        w.copy_from_slice(window);
        let word = u64::from_be_bytes(w);
        let shifted = word << (start % 8);
        Some((shifted >> (64 - width)) as u32)
    }

    /// Reads a two's complement signed field.
    #[inline]
    pub(crate) fn i(&self, start: usize, width: usize, field: &'static str) -> Result<i32, AisError> {
        let raw = self.u(start, width, field)?;
        Ok(sign_extend(raw, width))
    }

    /// Reads a boolean bit.
    #[inline]
    pub(crate) fn b(&self, start: usize, field: &'static str) -> Result<bool, AisError> {
        Ok(self.u(start, 1, field)? == 1)
    }

    /// Reads `chars` 6-bit text characters at `start`.
    pub(crate) fn text(&self, start: usize, chars: usize, field: &'static str) -> Result<AisText, AisError> {
        if start + chars * 6 > self.len {
            return Err(AisError::TooShort { msg_type: self.msg_type, bits: self.len, need: start + chars * 6, field });
        }
        Ok(self.text_lenient(start, chars))
    }

    /// Reads up to `chars` 6-bit characters at `start`, as many as fit.
    pub(crate) fn text_lenient(&self, start: usize, chars: usize) -> AisText {
        let mut t = AisText::default();
        self.push_chars(&mut t, start, chars);
        t.trim();
        t
    }

    /// Reads `chars1` characters at `start1` followed by `chars2` at `start2` as one text.
    pub(crate) fn text_split(&self, start1: usize, chars1: usize, start2: usize, chars2: usize) -> AisText {
        let mut t = AisText::default();
        self.push_chars(&mut t, start1, chars1);
        self.push_chars(&mut t, start2, chars2);
        t.trim();
        t
    }

    fn push_chars(&self, t: &mut AisText, start: usize, chars: usize) {
        for k in 0..chars {
            let Some(v) = self.opt_u(start + 6 * k, 6) else { break };
            let c = if v < 32 { v as u8 + 64 } else { v as u8 };
            t.push_raw(c);
        }
    }
}

/// Sign-extends the low `width` bits of `raw`.
#[inline]
pub(crate) fn sign_extend(raw: u32, width: usize) -> i32 {
    if width == 0 || width >= 32 {
        return raw as i32;
    }
    let shift = 32 - width as u32;
    ((raw << shift) as i32) >> shift
}

/// Capacity of [`AisText`]: the longest AIS text field (aid-to-navigation name with extension:
/// 20 + 14 characters).
pub const AIS_TEXT_CAP: usize = 34;

/// A short AIS text field (name, call sign, destination) held inline, without heap allocation.
/// Trailing `@` padding and spaces are trimmed, and text stops at the first `@` (the AIS
/// "no more text" character).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct AisText {
    buf: [u8; AIS_TEXT_CAP],
    len: u8,
}

impl Default for AisText {
    fn default() -> Self {
        AisText { buf: [0; AIS_TEXT_CAP], len: 0 }
    }
}

impl AisText {
    fn push_raw(&mut self, c: u8) {
        if let Some(slot) = self.buf.get_mut(usize::from(self.len)) {
            *slot = c;
            self.len += 1;
        }
    }

    fn trim(&mut self) {
        let s = &self.buf[..usize::from(self.len)];
        let end = s.iter().position(|&c| c == b'@').unwrap_or(s.len());
        let end = s[..end].iter().rposition(|&c| c != b' ').map_or(0, |p| p + 1);
        self.len = end as u8;
    }

    /// The text. Always ASCII.
    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.buf[..usize::from(self.len)]).unwrap_or_default()
    }

    /// Whether the field is empty (not available).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl std::fmt::Debug for AisText {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(self.as_str(), f)
    }
}

impl std::fmt::Display for AisText {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl PartialEq<str> for AisText {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for AisText {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn reads_fields_across_bytes() {
        let mut b = Bits::new();
        b.push_armored(b"15RTgt0PAso;90TKcjM8h6g208CQ", 0).unwrap();
        assert_eq!(b.len(), 168);
        assert_eq!(b.u(0, 6, "type").unwrap(), 1);
        assert_eq!(b.u(8, 30, "mmsi").unwrap(), 371_798_000);
        assert!(b.u(160, 9, "x").is_err());
        assert_eq!(sign_extend(0xFF, 8), -1);
        assert_eq!(sign_extend(0x7F, 8), 127);
    }
}
