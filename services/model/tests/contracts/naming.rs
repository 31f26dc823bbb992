//! Tenant ids and derived names: accepted iff valid, and every derived name is legal where used.
#![allow(clippy::unwrap_used)]

use geostream_model::{IndexKind, Naming, Stage, TenantId, TopicKind};
use proptest::prelude::*;

/// The rules a tenant id must satisfy, each with a phrase its error message must contain.
fn violated_rules(s: &str) -> Vec<&'static str> {
    let mut v = Vec::new();
    if s.is_empty() {
        v.push("it is empty");
    }
    if s.chars().count() > TenantId::MAX_LEN {
        v.push("the limit is 32");
    }
    if s.chars().any(|c| !matches!(c, 'a'..='z' | '0'..='9' | '-')) {
        // Either "is uppercase" or "is not allowed"; both name the character and position.
        v.push("at position");
    }
    if s.starts_with('-') {
        v.push("starts with '-'");
    }
    if s.ends_with('-') {
        v.push("ends with '-'");
    }
    v
}

fn assert_kafka_topic(name: &str) {
    assert!(!name.is_empty() && name.len() <= 249, "{name}");
    assert!(name != "." && name != "..");
    assert!(name.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b)), "{name}");
}

fn assert_index(name: &str) {
    assert!(name.len() <= 255, "{name}");
    assert_eq!(name, name.to_lowercase());
    assert!(!name.starts_with(['-', '_', '+']), "{name}");
    assert!(name != "." && name != "..");
    assert!(!name.contains(['\\', '/', '*', '?', '"', '<', '>', '|', ' ', ',', '#', ':']), "{name}");
}

/// Kubernetes object names of the tenant's release: `geostream-<tenant>-<stage>`; a StatefulSet
/// name must leave room for `-<10 char hash>` in a 63-character label.
fn assert_kubernetes(name: &str) {
    assert!(name.len() <= 52, "{name} is too long for a StatefulSet name");
}

proptest! {
    #[test]
    fn valid_labels_are_accepted(s in "[a-z0-9]([a-z0-9-]{0,30}[a-z0-9])?") {
        let t = TenantId::new(s.as_str()).unwrap();
        prop_assert_eq!(t.as_str(), s.as_str());
        let json = serde_json::to_string(&t).unwrap();
        prop_assert_eq!(serde_json::from_str::<TenantId>(&json).unwrap(), t);
    }

    #[test]
    fn rejected_iff_a_rule_is_violated(s in prop_oneof![
        "[a-z0-9-]{0,40}",
        "[a-zA-Z0-9_. -]{0,36}",
        "\\PC{0,36}",
    ]) {
        let violated = violated_rules(&s);
        match TenantId::new(s.as_str()) {
            Ok(_) => prop_assert!(violated.is_empty(), "{s:?} accepted despite {violated:?}"),
            Err(e) => {
                prop_assert!(!violated.is_empty(), "{s:?} rejected: {e}");
                let m = e.to_string();
                prop_assert!(m.starts_with("invalid tenant id "), "{m}");
                prop_assert!(m.ends_with("tenant ids are lowercase DNS labels like \"acme-ports\""), "{m}");
                prop_assert!(violated.iter().any(|rule| m.contains(rule)), "{m} mentions none of {violated:?}");
                // Deserialization applies the same rules.
                prop_assert!(serde_json::from_value::<TenantId>(serde_json::json!(s)).is_err());
            }
        }
    }

    #[test]
    fn derived_names_are_legal(
        s in "[a-z0-9]([a-z0-9-]{0,30}[a-z0-9])?",
        prefix in "[a-zA-Z0-9._-]{0,203}",
    ) {
        let t = TenantId::new(s).unwrap();
        let n = Naming::new(prefix).unwrap();
        for k in TopicKind::ALL {
            assert_kafka_topic(&n.topic(&t, *k));
        }
        for k in IndexKind::ALL {
            assert_index(&n.index(&t, *k));
        }
        for stage in Stage::ALL {
            let g = n.consumer_group(&t, *stage);
            assert_kafka_topic(&g);
            assert_kubernetes(&g);
        }
    }
}

#[test]
fn longest_prefix_and_tenant_fit() {
    let t = TenantId::new("t".repeat(TenantId::MAX_LEN)).unwrap();
    let n = Naming::new("p".repeat(Naming::MAX_TOPIC_PREFIX_LEN)).unwrap();
    assert_eq!(n.topic(&t, TopicKind::ProcessState).len(), 249, "the longest kind");
    assert!(Naming::new("p".repeat(Naming::MAX_TOPIC_PREFIX_LEN + 1)).is_err());
}
