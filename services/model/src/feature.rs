//! Shared GeoJSON Feature framing for observations, events and aggregates.

use serde::ser::SerializeStruct;
use serde::{Deserialize, Serialize, Serializer};
use serde_json::{Map, Value};

use crate::error::ModelError;
use crate::ids::RecordId;

/// Accepts only `"type": "Feature"`.
#[derive(Deserialize)]
pub(crate) enum FeatureTag {
    Feature,
}

/// A Feature as read from the wire; `bbox` and foreign members are ignored.
#[derive(Deserialize)]
pub(crate) struct FeatureDe<G, P> {
    #[serde(rename = "type")]
    _tag: FeatureTag,
    pub(crate) id: RecordId,
    pub(crate) geometry: G,
    pub(crate) properties: P,
}

pub(crate) fn serialize_feature<S: Serializer>(
    s: S,
    id: &RecordId,
    geometry: &impl Serialize,
    properties: &impl Serialize,
) -> Result<S::Ok, S::Error> {
    let mut f = s.serialize_struct("Feature", 4)?;
    f.serialize_field("type", "Feature")?;
    f.serialize_field("id", id)?;
    f.serialize_field("geometry", geometry)?;
    f.serialize_field("properties", properties)?;
    f.end()
}

/// Attributes share the `properties` object with the record's own fields, so a colliding name
/// would produce a duplicate JSON key; it is refused instead.
pub(crate) fn reserved_clash<'a>(attributes: &'a Map<String, Value>, reserved: &[&str]) -> Option<&'a str> {
    // Iterate the short list: attributes may be many, reserved names are a handful.
    reserved.iter().find_map(|r| attributes.get_key_value(*r).map(|(k, _)| k.as_str()))
}

pub(crate) fn clash_error(subject: String, key: &str, reserved: &[&str]) -> ModelError {
    ModelError::InvalidField {
        subject,
        field: format!("attributes.{key}"),
        problem: format!("uses a reserved property name; attributes must not be named {}", reserved.join(", ")),
    }
}

pub(crate) fn clash_ser_error<E: serde::ser::Error>(key: &str) -> E {
    E::custom(format_args!("attribute {key:?} clashes with a reserved property name"))
}
