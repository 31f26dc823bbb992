//! Feed definitions as `geostream decode --feed`, the api and ingest read them: YAML or JSON text,
//! a catalog entry (`feeds/<name>.yaml`) or a bare feed spec, validated, then turned into the
//! codec ingest would run.

use geostream_codecs::registry::build;
use geostream_model::{CatalogEntry, FeedSpec};

fn explained(what: &str, message: &str) {
    assert!(!message.trim().is_empty(), "{what} refused without a message");
}

/// Checks one feed definition text: parsing and validation either succeed or say why; an accepted
/// spec survives JSON and YAML round trips unchanged and still validates; building its codec
/// either succeeds or says why.
pub fn check_definition(text: &str) {
    let value: serde_yaml::Value = match serde_yaml::from_str(text) {
        Ok(v) => v,
        Err(e) => return explained("YAML", &e.to_string()),
    };
    // Same dispatch as `geostream decode --feed`: a catalog entry wraps the spec under `feed`.
    let spec = if value.get("feed").is_some() {
        let entry: CatalogEntry = match serde_yaml::from_value(value) {
            Ok(e) => e,
            Err(e) => return explained("catalog entry", &e.to_string()),
        };
        if let Err(e) = entry.validate() {
            return explained("catalog entry validation", &e.to_string());
        }
        let json = serde_json::to_string(&entry).unwrap_or_else(|e| panic!("entry does not serialise: {e}"));
        let back: CatalogEntry =
            serde_json::from_str(&json).unwrap_or_else(|e| panic!("entry does not read back: {e}: {json}"));
        assert_eq!(back, entry, "catalog entry changed in a JSON round trip");
        entry.feed
    } else {
        let spec: FeedSpec = match serde_yaml::from_value(value) {
            Ok(s) => s,
            Err(e) => return explained("feed spec", &e.to_string()),
        };
        if let Err(e) = spec.validate() {
            return explained("feed spec validation", &e.to_string());
        }
        spec
    };
    let json = serde_json::to_string(&spec).unwrap_or_else(|e| panic!("spec does not serialise: {e}: {spec:?}"));
    let back: FeedSpec = serde_json::from_str(&json).unwrap_or_else(|e| panic!("spec does not read back: {e}: {json}"));
    assert_eq!(back, spec, "feed spec changed in a JSON round trip: {json}");
    back.validate().unwrap_or_else(|e| panic!("spec valid before a JSON round trip, not after: {e}"));
    // The catalog files and the CLI are YAML: what the api writes back must read the same there.
    let yaml = serde_yaml::to_string(&spec).unwrap_or_else(|e| panic!("spec does not serialise as YAML: {e}"));
    let back: FeedSpec =
        serde_yaml::from_str(&yaml).unwrap_or_else(|e| panic!("spec does not read back from YAML: {e}: {yaml}"));
    assert_eq!(back, spec, "feed spec changed in a YAML round trip: {yaml}");
    if let Err(e) = build(spec.format, &spec.mapping, &spec.options) {
        explained("codec build", &e.to_string());
    }
}
