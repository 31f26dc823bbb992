//! [`Codec`] for AIS: the streaming decoder plus normalisation, one line at a time.

use super::{Decoder, DecoderOptions, Normalised, Output, SkipKind, normalise};
use crate::codec::{Codec, Context, Framing, Outcome, Rejection, Skip};
use crate::doc_common;
use geostream_model::ReasonCode;

/// AIS sentences (AIVDM/AIVDO, with tag blocks or trailing receiver fields) to observations.
///
/// Position reports become observations; static reports (types 5, 24) and base stations are
/// counted as skipped until track enrichment uses them; unsupported types, malformed sentences,
/// checksum failures, junk lines and incomplete multi-part messages are rejected with their reason.
#[derive(Debug, Default)]
pub struct AisCodec {
    decoder: Decoder,
}

impl AisCodec {
    /// A codec with the given decoder options.
    pub fn new(opts: DecoderOptions) -> Self {
        Self { decoder: Decoder::new(opts) }
    }

    fn drain_incomplete(&mut self, out: &mut dyn FnMut(Outcome)) {
        for err in self.decoder.take_incomplete() {
            out(Outcome::Rejected(Rejection { reason: err.reason(), detail: err.to_string(), raw: Vec::new() }));
        }
    }
}

impl Codec for AisCodec {
    fn name(&self) -> &'static str {
        "ais"
    }

    fn framing(&self) -> Framing {
        Framing::Lines
    }

    fn decode(&mut self, input: &[u8], ctx: &Context, out: &mut dyn FnMut(Outcome)) {
        let reject = |reason: ReasonCode, detail: String| doc_common::reject(ctx, reason, detail, input);
        let outcome = match self.decoder.push_line(input) {
            Ok(Output::Message(d)) => match normalise(&d, &ctx.feed, ctx.received) {
                Ok(Normalised::Observation(mut obs)) => {
                    // Attributes are not part of the id, so adding them after construction is safe.
                    ctx.merge_source_attributes(&mut obs.attributes);
                    Outcome::Observation(obs)
                }
                Ok(Normalised::Static(_) | Normalised::Ignored(_)) => Outcome::Skipped(Skip::NotAPosition),
                Err(e) => reject(e.reason(), e.to_string()),
            },
            Ok(Output::Fragment) => Outcome::Skipped(Skip::Fragment),
            Ok(Output::Duplicate) => Outcome::Skipped(Skip::Duplicate),
            Ok(Output::Skipped(SkipKind::Blank)) => Outcome::Skipped(Skip::Blank),
            Ok(Output::Skipped(SkipKind::Comment)) => Outcome::Skipped(Skip::Comment),
            Ok(Output::Skipped(SkipKind::OtherNmea)) => Outcome::Skipped(Skip::NotAPosition),
            Ok(Output::Skipped(SkipKind::Junk)) => {
                reject(ReasonCode::Malformed, "not an NMEA sentence (no '!' or '$' start)".to_owned())
            }
            Err(e) => reject(e.reason(), e.to_string()),
        };
        out(outcome);
        self.drain_incomplete(out);
    }

    fn finish(&mut self, _ctx: &Context, out: &mut dyn FnMut(Outcome)) {
        self.decoder.flush();
        self.drain_incomplete(out);
    }
}
