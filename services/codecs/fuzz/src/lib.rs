//! What every fuzz target checks: a codec built through `geostream_codecs::registry::build`, as
//! ingest builds it, never panics on any input in either framing, every observation it gives
//! passes `validate()` and survives a JSON round trip, and every rejection explains itself.
//! [`feed`] and [`mapping`] hold the checks of the feed definition and mapping targets.

pub mod feed;
pub mod mapping;

use geostream_codecs::registry::{CodecOptions, build};
use geostream_codecs::{Codec, Context, Outcome, decode_all};
use geostream_model::time::OffsetDateTime;
use geostream_model::{FeedId, Format, Mapping, Observation};

/// Builds the codec for `format` with the mapping written as JSON and the options, or panics:
/// a target whose setup is wrong must fail loudly, not fuzz nothing.
pub fn codec(format: Format, mapping: &str, opts: &CodecOptions) -> Box<dyn Codec> {
    let mapping: Mapping = serde_json::from_str(mapping).unwrap_or_else(|e| panic!("fuzz mapping: {e}"));
    build(format, &mapping, opts).unwrap_or_else(|e| panic!("fuzz codec: {e}"))
}

/// The context every target decodes in.
pub fn context() -> Context {
    // A fixed receive time keeps runs reproducible (2023-11-14T22:13:20Z).
    let received = OffsetDateTime::from_unix_timestamp(1_700_000_000).unwrap_or(OffsetDateTime::UNIX_EPOCH);
    let mut ctx = Context::new(FeedId::new("fuzz").unwrap_or_else(|e| panic!("{e}")), received);
    ctx.location = "fuzz".to_owned();
    ctx
}

fn check(outcome: &Outcome) {
    match outcome {
        Outcome::Observation(o) => {
            if let Err(e) = o.validate() {
                panic!("invalid observation {o:?}: {e}");
            }
            let json = serde_json::to_vec(o).unwrap_or_else(|e| panic!("observation does not serialise: {e}: {o:?}"));
            let back: Observation =
                serde_json::from_slice(&json).unwrap_or_else(|e| panic!("observation does not read back: {e}"));
            assert_eq!(&back, o.as_ref(), "observation changed in a JSON round trip");
        }
        Outcome::Rejected(r) => assert!(!r.detail.trim().is_empty(), "rejection without detail: {r:?}"),
        Outcome::Skipped(_) => {}
    }
}

/// Runs `data` through a fresh codec twice: framed as the codec asks (`decode_all`), then cut at
/// every newline with each piece handed to `decode` as it is (a line codec then sees stray
/// carriage returns, a document codec partial documents).
pub fn run(make: impl Fn() -> Box<dyn Codec>, data: &[u8]) {
    let ctx = context();
    let mut codec = make();
    for o in decode_all(codec.as_mut(), data, &ctx) {
        check(&o);
    }
    let mut codec = make();
    for piece in data.split(|b| *b == b'\n') {
        codec.decode(piece, &ctx, &mut |o| check(&o));
    }
    codec.finish(&ctx, &mut |o| check(&o));
}
