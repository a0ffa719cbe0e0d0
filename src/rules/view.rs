//! An object as the admission fast path reads it: the metadata the rules read and the spec
//! decoded in the same pass as the AdmissionReview — into the typed spec (validation), the
//! fields defaulting reads (mutation), or kept as JSON text.
//!
//! The rules accept a view only where reading it gives exactly what reading the object as a
//! `serde_json::Value` gives. Anything else — a repeated field (a `Value` keeps the last one, a
//! typed decode refuses), a value of the wrong type, a spec that does not decode — fails the
//! view or makes the view functions answer `None`, and the caller takes the `Value` path,
//! which words every error.

use std::borrow::Cow;
use std::fmt;
use std::marker::PhantomData;

use serde::de::value::MapAccessDeserializer;
use serde::de::{IgnoredAny, MapAccess, Visitor};
use serde::{Deserialize, Deserializer};
use serde_json::value::RawValue;

/// An object (SpinApp or SpinAppExecutor) with its `spec` read as `S`.
#[derive(Debug, Clone, Default)]
pub struct ObjectView<'a, S = &'a RawValue> {
    pub name: Option<Cow<'a, str>>,
    pub generate_name: Option<Cow<'a, str>>,
    pub namespace: Option<Cow<'a, str>>,
    /// `metadata.deletionTimestamp` is set (and not null).
    pub deleting: bool,
    /// `spec`; `None` when absent or null.
    pub spec: Option<S>,
}

impl<'de: 'a, 'a, S: Deserialize<'de>> Deserialize<'de> for ObjectView<'a, S> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let MapOnly(fields) = MapOnly::<ObjectFields<'a, S>>::deserialize(deserializer)?;
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
#[serde(bound(deserialize = "S: Deserialize<'de>"))]
struct ObjectFields<'a, S> {
    #[serde(default, borrow)]
    metadata: Option<MapOnly<MetaFields<'a>>>,
    #[serde(default = "none")]
    spec: Option<S>,
}

fn none<S>() -> Option<S> {
    None
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
#[derive(Debug, Clone, Default)]
pub struct MapOnly<T>(pub T);

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

/// A SpinApp spec as validation reads it: decoded whole, from an object. A decode that
/// succeeds gives what the `Value` path's decode gives: a `null` where one is accepted is an
/// absent optional field in both (the `Value` path strips nulls; `SpinAppSpec` has no
/// `serde_json::Value` field the checks read), and anything else fails here. Boxed: the spec
/// is large, and the decode moves it through every enclosing struct of the review.
pub type AppSpec = Box<MapOnly<crate::api::SpinAppSpec>>;

/// A SpinApp spec as defaulting reads it.
pub type DefaultingSpec<'a> = MapOnly<DefaultedFields<'a>>;

/// The spec fields SpinApp defaulting reads, as JSON text (`None` when absent or null).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DefaultedFields<'a> {
    #[serde(default, borrow)]
    executor: Option<&'a RawValue>,
    #[serde(default, borrow)]
    replicas: Option<&'a RawValue>,
    #[serde(default, borrow)]
    enable_autoscaling: Option<&'a RawValue>,
}

impl DefaultedFields<'_> {
    /// `spec.executor` absent, null or "".
    pub(crate) fn executor_unset(&self) -> bool {
        self.executor.is_none_or(|v| v.get() == r#""""#)
    }

    /// `spec.replicas` absent or null.
    pub(crate) fn replicas_unset(&self) -> bool {
        self.replicas.is_none()
    }

    /// `spec.enableAutoscaling` absent, null or `false`.
    pub(crate) fn autoscaling_off(&self) -> bool {
        self.enable_autoscaling.is_none_or(|v| v.get() == "false")
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
        fn app(t: &str) -> Option<ObjectView<'_, AppSpec>> {
            serde_json::from_str(t).ok()
        }
        assert!(app(r#"{"spec":["a"]}"#).is_none());
        assert!(app(r#"{"spec":{"image":"a","image":"b"}}"#).is_none());
        assert!(app(r#"{"spec":{"image":null}}"#).is_none());
        let s = app(r#"{"spec":{"image":"a","replicas":2,"checks":null}}"#).unwrap();
        let spec = &s.spec.unwrap().0;
        assert_eq!((spec.image.as_str(), spec.replicas), ("a", Some(2)));
        assert!(spec.checks.is_none());
        fn defaults(t: &str) -> Option<ObjectView<'_, DefaultingSpec<'_>>> {
            serde_json::from_str(t).ok()
        }
        assert!(defaults(r#"{"spec":{"replicas":1,"replicas":2}}"#).is_none());
        assert!(defaults(r#"{"spec":[1,2,3]}"#).is_none());
        let d = defaults(r#"{"spec":{"executor":"","replicas":null,"enableAutoscaling":false}}"#)
            .unwrap()
            .spec
            .unwrap()
            .0;
        assert!(d.executor_unset() && d.replicas_unset() && d.autoscaling_off());
    }
}
