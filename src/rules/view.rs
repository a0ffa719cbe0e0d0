//! An object as the admission fast path reads it: the metadata the rules read, decoded in the
//! same pass as the AdmissionReview, and `spec` kept as JSON text for one typed decode.
//!
//! The rules accept a view only where reading it gives exactly what reading the object as a
//! `serde_json::Value` gives. Anything else — a `null` in the spec, a repeated field (a `Value`
//! keeps the last one, a typed decode refuses), a value of the wrong type — makes the view
//! functions answer `None`, and the caller takes the `Value` path, which words every error.

use std::borrow::Cow;
use std::fmt;
use std::marker::PhantomData;

use serde::de::value::MapAccessDeserializer;
use serde::de::{DeserializeOwned, IgnoredAny, MapAccess, Visitor};
use serde::{Deserialize, Deserializer};
use serde_json::value::RawValue;

/// An object (SpinApp or SpinAppExecutor) with its `spec` as JSON text.
#[derive(Debug, Clone, Default)]
pub struct ObjectView<'a> {
    pub name: Option<Cow<'a, str>>,
    pub generate_name: Option<Cow<'a, str>>,
    pub namespace: Option<Cow<'a, str>>,
    /// `metadata.deletionTimestamp` is set (and not null).
    pub deleting: bool,
    /// `spec` as received; `None` when absent or null.
    pub spec: Option<&'a RawValue>,
}

impl<'de: 'a, 'a> Deserialize<'de> for ObjectView<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let MapOnly(fields) = MapOnly::<ObjectFields<'a>>::deserialize(deserializer)?;
        let meta = fields.metadata.map(|m| m.0).unwrap_or_default();
        Ok(Self {
            name: meta.name,
            generate_name: meta.generate_name,
            namespace: meta.namespace,
            deleting: meta.deletion_timestamp.is_some(),
            spec: fields.spec,
        })
    }
}

#[derive(Deserialize)]
struct ObjectFields<'a> {
    #[serde(default, borrow)]
    metadata: Option<MapOnly<MetaFields<'a>>>,
    #[serde(default, borrow)]
    spec: Option<&'a RawValue>,
}

#[derive(Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct MetaFields<'a> {
    #[serde(default, borrow)]
    name: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    generate_name: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    namespace: Option<Cow<'a, str>>,
    #[serde(default)]
    deletion_timestamp: Option<IgnoredAny>,
}

/// `T` decoded from a JSON object only: a derived struct would also take an array (fields by
/// position), which the `Value` path never reads as an object.
struct MapOnly<T>(T);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for MapOnly<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Only<T>(PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for Only<T> {
            type Value = MapOnly<T>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an object")
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
                T::deserialize(MapAccessDeserializer::new(map)).map(MapOnly)
            }
        }
        deserializer.deserialize_map(Only(PhantomData))
    }
}

/// The spec decoded as the `Value` path decodes it when nothing is wrong: only from an object
/// without any `null` (the `Value` path strips nulls first, a typed decode may read one as a
/// value), and only when every field decodes. `None` otherwise.
pub(crate) fn spec<T: DeserializeOwned>(raw: &RawValue) -> Option<T> {
    let text = raw.get();
    if text.contains("null") {
        return None;
    }
    serde_json::from_str::<MapOnly<T>>(text).ok().map(|m| m.0)
}

/// The spec fields SpinApp defaulting reads, as JSON text (`None` when absent or null).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct DefaultedFields<'a> {
    #[serde(default, borrow)]
    pub executor: Option<&'a RawValue>,
    #[serde(default, borrow)]
    pub replicas: Option<&'a RawValue>,
    #[serde(default, borrow)]
    pub enable_autoscaling: Option<&'a RawValue>,
}

impl<'a> DefaultedFields<'a> {
    /// Decodes them from a spec object; `None` when it is not an object or repeats one of them.
    pub fn from_spec(raw: &'a RawValue) -> Option<Self> {
        serde_json::from_str::<MapOnly<Self>>(raw.get())
            .ok()
            .map(|m| m.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(text: &str) -> Option<ObjectView<'_>> {
        serde_json::from_str(text).ok()
    }

    #[test]
    fn reads_metadata_and_keeps_spec_as_text() {
        let v = view(
            r#"{"metadata":{"name":"web","namespace":"apps","labels":{"a":"b"},
                "deletionTimestamp":"2026-01-01T00:00:00Z"},"spec":{"image":"x"},"status":{}}"#,
        )
        .unwrap();
        assert_eq!(v.name.as_deref(), Some("web"));
        assert_eq!(v.namespace.as_deref(), Some("apps"));
        assert!(v.deleting);
        assert_eq!(v.spec.unwrap().get(), r#"{"image":"x"}"#);
        let v = view(r#"{"metadata":{"deletionTimestamp":null},"spec":null}"#).unwrap();
        assert!(!v.deleting);
        assert!(v.spec.is_none());
    }

    #[test]
    fn refuses_what_a_value_would_read_differently() {
        // Arrays are not objects; repeated fields keep the last in a `Value`.
        assert!(view(r#"[{"name":"web"},{}]"#).is_none());
        assert!(view(r#"{"metadata":[null,"web"]}"#).is_none());
        assert!(view(r#"{"metadata":{"name":"a","name":"b"}}"#).is_none());
        assert!(view(r#"{"spec":{},"spec":{}}"#).is_none());
        assert!(view(r#"{"metadata":{"name":7}}"#).is_none());
        let raw = |t: &str| serde_json::from_str::<Box<RawValue>>(t).unwrap();
        assert!(
            spec::<crate::api::SpinAppSpec>(&raw(r#"{"image":"a","replicas":null}"#)).is_none()
        );
        assert!(spec::<crate::api::SpinAppSpec>(&raw(r#"["a"]"#)).is_none());
        assert!(spec::<crate::api::SpinAppSpec>(&raw(r#"{"image":"a","image":"b"}"#)).is_none());
        let s = spec::<crate::api::SpinAppSpec>(&raw(r#"{"image":"a","replicas":2}"#)).unwrap();
        assert_eq!((s.image.as_str(), s.replicas), ("a", Some(2)));
        assert!(DefaultedFields::from_spec(&raw(r#"{"replicas":1,"replicas":2}"#)).is_none());
        assert!(DefaultedFields::from_spec(&raw(r#"[1,2,3]"#)).is_none());
    }
}
