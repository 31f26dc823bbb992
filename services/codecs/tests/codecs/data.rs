//! Access to the sample files in `tests/data`.

use std::path::PathBuf;

use geostream_codecs::ais::{AisError, Decoded, Decoder, DecoderOptions, Output};

pub fn path(name: &str) -> PathBuf {
    // Read at run time: a path compiled in can name an earlier checkout when cargo reuses this
    // test binary from a shared target directory.
    let package = std::env::var_os("CARGO_MANIFEST_DIR").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("."));
    package.join("tests/data").join(name)
}

pub fn read(name: &str) -> Vec<u8> {
    std::fs::read(path(name)).unwrap_or_else(|e| panic!("reading test data {name}: {e}"))
}

/// Splits on '\n' (keeping any '\r', which the decoder trims).
pub fn lines(bytes: &[u8]) -> impl Iterator<Item = &[u8]> {
    bytes.split(|&c| c == b'\n')
}

/// Decodes every line of a file, calling `f` with each line and its result.
pub fn decode_all(bytes: &[u8], opts: DecoderOptions, mut f: impl FnMut(&[u8], Result<Output<'_>, AisError>)) {
    let mut dec = Decoder::new(opts);
    for line in lines(bytes) {
        let r = dec.push_line(line);
        f(line, r);
    }
    dec.flush();
    assert_eq!(dec.pending(), 0);
}

/// Decoded messages of a file, in order, with errors.
pub fn messages(bytes: &[u8], opts: DecoderOptions) -> Vec<Result<Decoded<'static>, AisError>> {
    let mut out = Vec::new();
    decode_all(bytes, opts, |_, r| match r {
        Ok(Output::Message(d)) => out.push(Ok(Decoded { meta: Default::default(), ..d })),
        Ok(_) => {}
        Err(e) => out.push(Err(e)),
    });
    out
}

/// A real document with a few bytes overwritten, for property tests that decoders never panic on
/// damaged input of the shape they expect.
pub fn mutated(base: &'static [u8]) -> impl proptest::strategy::Strategy<Value = Vec<u8>> {
    use proptest::prelude::*;
    prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..8).prop_map(move |edits| {
        let mut b = base.to_vec();
        for (i, v) in edits {
            let i = i.index(b.len());
            b[i] = v;
        }
        b
    })
}
