//! The CRDs in `charts/geostream-operator/crds/` are exactly what the Rust types generate
//! (`geostream crdgen`); a changed type without regenerated files fails here.
//! Regenerate with `GEOSTREAM_WRITE_CRDS=1 cargo test -p geostream-operator --test crds`.
#![allow(clippy::unwrap_used, missing_docs)]

use std::path::PathBuf;

fn crd_dir() -> PathBuf {
    // At run time: a test binary built from another checkout sharing the target directory (CI's
    // clone) must read this checkout's files, not the path baked in when it was compiled.
    std::env::var_os("CARGO_MANIFEST_DIR")
        .map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")), PathBuf::from)
        .join("../../charts/geostream-operator/crds")
}

#[test]
fn checked_in_crds_match_the_types() {
    let generated = geostream_operator::crd::yaml().unwrap();
    assert_eq!(generated.len(), 4);
    let dir = crd_dir();
    if std::env::var_os("GEOSTREAM_WRITE_CRDS").is_some() {
        std::fs::create_dir_all(&dir).unwrap();
        for (file, yaml) in &generated {
            std::fs::write(dir.join(file), yaml).unwrap();
        }
    }
    let mut on_disk: Vec<String> =
        std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    on_disk.sort();
    let mut names: Vec<String> = generated.iter().map(|(f, _)| f.clone()).collect();
    names.sort();
    assert_eq!(on_disk, names, "stale or missing files in {}", dir.display());
    for (file, yaml) in &generated {
        let disk = std::fs::read_to_string(dir.join(file)).unwrap();
        assert!(
            disk == *yaml,
            "{file} drifted from the Rust types; regenerate with GEOSTREAM_WRITE_CRDS=1 cargo test -p geostream-operator --test crds"
        );
    }
}

#[test]
fn crds_are_structural_and_namespaced_where_they_should_be() {
    for crd in geostream_operator::crd::all() {
        let v = serde_json::to_value(&crd).unwrap();
        let kind = v["spec"]["names"]["kind"].as_str().unwrap().to_owned();
        let scope = v["spec"]["scope"].as_str().unwrap();
        assert_eq!(scope == "Cluster", kind == "VolumeAutoscalePolicy", "{kind} is {scope}");
        let version = &v["spec"]["versions"][0];
        assert_eq!(version["subresources"]["status"], serde_json::json!({}), "{kind} has a status subresource");
        let schema = &version["schema"]["openAPIV3Schema"];
        assert_eq!(schema["type"], "object", "{kind}");
        // Structural schemas have no $ref, anyOf/oneOf at the top of a property, or missing types.
        let text = schema.to_string();
        assert!(!text.contains("$ref") && !text.contains("\"definitions\""), "{kind}: {text}");
    }
}
