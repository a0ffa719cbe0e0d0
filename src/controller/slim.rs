//! [`Slim`]: how the controller caches child and referenced objects — the identity part of the
//! metadata decoded, the rest of the object as compact JSON text.
//!
//! Decoded k8s-openapi objects are mostly inline `Option`s of large structs (a `Container` is
//! 2.3 KB, a `Volume` 3.3 KB before any content), so a cached Deployment costs ~14 KB while its
//! JSON is ~2 KB. The controller and kube-runtime read only identity, owner references and
//! deletion on every event; spec, status, data and the other metadata are decoded on demand
//! ([`Slim::to_typed`], [`Slim::labels`]) by the one reconcile or index that needs them.
//! Labels and annotations stay in the JSON too: a decoded `BTreeMap` costs a 544-byte node plus
//! two allocations per entry, ~1 KB per object for the two maps (heaptrack, docs/benchmarks-history.md).

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;
use std::marker::PhantomData;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use serde::de::DeserializeOwned;
use serde::ser::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;

/// An object of kind `K` with its metadata decoded and everything else kept as JSON text.
pub struct Slim<K> {
    /// Only the [`DECODED_METADATA`] fields; the others are in `body`.
    pub metadata: ObjectMeta,
    /// The object without the decoded metadata fields, as compact JSON (an object), LZ4
    /// compressed: the JSON of a fleet's cached objects was ~40 % of the operator's memory
    /// and compresses 2–3× (names and labels repeat within an object); decompressing ~2 KB
    /// costs about a microsecond per read.
    body: Box<[u8]>,
    kind: PhantomData<fn() -> K>,
}

impl<K> Clone for Slim<K> {
    fn clone(&self) -> Self {
        Slim {
            metadata: self.metadata.clone(),
            body: self.body.clone(),
            kind: PhantomData,
        }
    }
}

// The body may hold Secret data: never print it.
impl<K: kube::Resource<DynamicType = ()>> fmt::Debug for Slim<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Slim")
            .field("kind", &K::kind(&()))
            .field("namespace", &self.metadata.namespace)
            .field("name", &self.metadata.name)
            .field("compressed_body_bytes", &self.body.len())
            .finish()
    }
}

/// The metadata fields kept decoded: what kube-runtime's store and the controller read on every
/// event (name, namespace, `resourceVersion`, `generation`, deletion). Each decoded string costs
/// two allocations (the store key copies it), so `uid` and owner references, read only by
/// the reconcile and the owner mapping, stay in the JSON ([`Slim::owner_references`]).
pub const DECODED_METADATA: [&str; 5] = [
    "name",
    "namespace",
    "resourceVersion",
    "generation",
    "deletionTimestamp",
];

/// Annotation `kubectl apply` writes: a full copy of the applied object (for a Secret, its data).
pub(crate) const LAST_APPLIED_ANNOTATION: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// Drops from the undecoded metadata what the controllers never read but objects carry:
/// `managedFields` (about as large as the object for server-side-applied children) and
/// kubectl's last-applied copy.
fn strip_unread(rest: &mut serde_json::Map<String, Value>) {
    rest.remove("managedFields");
    if let Some(Value::Object(annotations)) = rest.get_mut("annotations") {
        annotations.remove(LAST_APPLIED_ANNOTATION);
    }
}

/// One part of the undecoded metadata, read from the body.
#[derive(Deserialize)]
struct BodyMetadata<T: Default> {
    #[serde(default)]
    metadata: T,
}

#[derive(Deserialize, Default)]
struct Labels {
    #[serde(default)]
    labels: Option<BTreeMap<String, String>>,
}

#[derive(Deserialize, Default)]
struct Uid {
    #[serde(default)]
    uid: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct Owners {
    #[serde(default)]
    owner_references: Option<Vec<OwnerReference>>,
}

impl<K> Slim<K> {
    fn from_value<E: serde::de::Error>(mut value: Value) -> Result<Self, E> {
        let object = value
            .as_object_mut()
            .ok_or_else(|| E::custom("expected a Kubernetes object"))?;
        let metadata = match object.remove("metadata") {
            Some(Value::Object(mut rest)) => {
                let decoded: serde_json::Map<String, Value> = DECODED_METADATA
                    .iter()
                    .filter_map(|key| rest.remove(*key).map(|v| ((*key).to_string(), v)))
                    .collect();
                strip_unread(&mut rest);
                if !rest.is_empty() {
                    object.insert("metadata".into(), Value::Object(rest));
                }
                serde_json::from_value(Value::Object(decoded)).map_err(E::custom)?
            }
            Some(_) => return Err(E::custom("metadata is not an object")),
            None => ObjectMeta::default(),
        };
        let json = serde_json::to_vec(&value).map_err(E::custom)?;
        Ok(Slim {
            metadata,
            // An exact-size copy: shrinking the compressor's worst-case buffer in place would
            // leave a hole beside every cached object.
            body: Box::from(lz4_flex::compress_prepend_size(&json).as_slice()),
            kind: PhantomData,
        })
    }

    /// The body's JSON text.
    fn json(&self) -> Result<Vec<u8>, serde_json::Error> {
        lz4_flex::decompress_size_prepended(&self.body)
            .map_err(<serde_json::Error as serde::de::Error>::custom)
    }

    /// The whole object as JSON (metadata included).
    pub fn to_value(&self) -> Result<Value, serde_json::Error> {
        let mut value: Value = serde_json::from_slice(&self.json()?)?;
        if let Some(object) = value.as_object_mut()
            && let Value::Object(decoded) = serde_json::to_value(&self.metadata)?
        {
            match object
                .entry("metadata")
                .or_insert_with(|| Value::Object(Default::default()))
            {
                Value::Object(rest) => rest.extend(decoded),
                other => *other = Value::Object(decoded),
            }
        }
        Ok(value)
    }

    /// `metadata.labels` (empty when there are none).
    pub fn labels(&self) -> Result<BTreeMap<String, String>, serde_json::Error> {
        let body: BodyMetadata<Labels> = serde_json::from_slice(&self.json()?)?;
        Ok(body.metadata.labels.unwrap_or_default())
    }

    /// `metadata.uid`.
    pub fn uid(&self) -> Result<Option<String>, serde_json::Error> {
        let body: BodyMetadata<Uid> = serde_json::from_slice(&self.json()?)?;
        Ok(body.metadata.uid)
    }

    /// `metadata.ownerReferences` (empty when there are none).
    pub fn owner_references(&self) -> Result<Vec<OwnerReference>, serde_json::Error> {
        let body: BodyMetadata<Owners> = serde_json::from_slice(&self.json()?)?;
        Ok(body.metadata.owner_references.unwrap_or_default())
    }
}

impl<K> Slim<K> {
    /// Decodes the object without its metadata as `T` (e.g. a struct of the few fields needed).
    pub fn decode_body<T: DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        serde_json::from_slice(&self.json()?)
    }
}

impl<K: DeserializeOwned> Slim<K> {
    /// Decodes the whole object.
    pub fn to_typed(&self) -> Result<K, serde_json::Error> {
        serde_json::from_value(self.to_value()?)
    }
}

impl<K: Serialize> Slim<K> {
    /// The slim form of a decoded object.
    pub fn from_typed(obj: &K) -> Result<Self, serde_json::Error> {
        Self::from_value(serde_json::to_value(obj)?)
    }
}

// Decoding goes through `Value` (not a borrowed raw value) because kube decodes watch events as
// an adjacently tagged enum, which may buffer the object before this sees it.
impl<'de, K> Deserialize<'de> for Slim<K> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Self::from_value(Value::deserialize(deserializer)?)
    }
}

impl<K> Serialize for Slim<K> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.to_value()
            .map_err(S::Error::custom)?
            .serialize(serializer)
    }
}

// Implemented on kube's trait (not k8s-openapi's) so derived custom resources (SpinApp) work too.
impl<K: kube::Resource<DynamicType = ()>> kube::Resource for Slim<K> {
    type DynamicType = ();
    type Scope = K::Scope;

    fn kind(dt: &()) -> Cow<'_, str> {
        K::kind(dt)
    }
    fn group(dt: &()) -> Cow<'_, str> {
        K::group(dt)
    }
    fn version(dt: &()) -> Cow<'_, str> {
        K::version(dt)
    }
    fn plural(dt: &()) -> Cow<'_, str> {
        K::plural(dt)
    }
    fn meta(&self) -> &ObjectMeta {
        &self.metadata
    }
    fn meta_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::apps::v1::Deployment;
    use k8s_openapi::api::core::v1::Secret;
    use kube::api::WatchEvent;
    use serde_json::json;

    fn deployment_json() -> Value {
        json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "hello", "namespace": "default", "resourceVersion": "7",
                         "labels": {"core.spinkube.dev/app-name": "hello"}},
            "spec": {"replicas": 2, "selector": {"matchLabels": {"a": "b"}},
                     "template": {"spec": {"containers": [{"name": "hello", "image": "i"}]}}},
            "status": {"readyReplicas": 1}
        })
    }

    #[test]
    fn round_trips_the_whole_object() {
        let slim: Slim<Deployment> = serde_json::from_value(deployment_json()).unwrap();
        assert_eq!(slim.metadata.name.as_deref(), Some("hello"));
        assert_eq!(serde_json::to_value(&slim).unwrap(), deployment_json());
        let typed = slim.to_typed().unwrap();
        assert_eq!(typed.spec.replicas, Some(2));
        assert_eq!(typed.status.unwrap().ready_replicas, Some(1));
        let typed: Deployment = serde_json::from_value(deployment_json()).unwrap();
        let again = Slim::from_typed(&typed).unwrap();
        assert_eq!(again.to_typed().unwrap(), typed);
    }

    #[test]
    fn decodes_inside_watch_events_with_the_object_before_the_type() {
        // serde_json maps are sorted, so "object" precedes "type": the event is buffered first.
        let text =
            serde_json::to_string(&json!({"type": "ADDED", "object": deployment_json()})).unwrap();
        assert!(text.find("\"object\"").unwrap() < text.find("\"type\"").unwrap());
        let event: WatchEvent<Slim<Deployment>> = serde_json::from_str(&text).unwrap();
        let WatchEvent::Added(slim) = event else {
            panic!("expected Added")
        };
        assert_eq!(slim.metadata.resource_version.as_deref(), Some("7"));
    }

    #[test]
    fn keeps_identity_decoded_and_the_rest_of_the_metadata_as_json() {
        let mut object = deployment_json();
        object["metadata"]["uid"] = json!("u-1");
        object["metadata"]["annotations"] = json!({
            "a": "b",
            LAST_APPLIED_ANNOTATION: "{\"a\":\"copy\"}",
        });
        object["metadata"]["managedFields"] = json!([{"manager": "m", "operation": "Apply"}]);
        object["metadata"]["ownerReferences"] = json!([{
            "apiVersion": "core.spinkube.dev/v1alpha1", "kind": "SpinApp", "name": "hello",
            "uid": "u-0", "controller": true
        }]);
        let slim: Slim<Deployment> = serde_json::from_value(object.clone()).unwrap();
        // Decoded: name, namespace, versions; the rest is read from the JSON.
        assert_eq!(slim.metadata.resource_version.as_deref(), Some("7"));
        assert_eq!(slim.metadata.uid, None);
        assert_eq!(slim.uid().unwrap().as_deref(), Some("u-1"));
        assert!(slim.metadata.labels.is_none() && slim.metadata.annotations.is_none());
        assert_eq!(slim.owner_references().unwrap()[0].name, "hello");
        assert_eq!(
            slim.to_typed().unwrap().metadata.uid.as_deref(),
            Some("u-1")
        );
        assert_eq!(
            slim.labels().unwrap(),
            BTreeMap::from([(
                "core.spinkube.dev/app-name".to_string(),
                "hello".to_string()
            )])
        );
        // The whole object comes back, minus what is never read.
        let metadata = object["metadata"].as_object_mut().unwrap();
        metadata.remove("managedFields");
        metadata["annotations"]
            .as_object_mut()
            .unwrap()
            .remove(LAST_APPLIED_ANNOTATION);
        assert_eq!(slim.to_value().unwrap(), object);
        assert_eq!(
            slim.to_typed().unwrap().metadata.annotations.unwrap().len(),
            1
        );
    }

    #[test]
    fn debug_never_prints_the_body() {
        let secret: Slim<Secret> = serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "s"}, "data": {"password": "aHVudGVyMg=="}
        }))
        .unwrap();
        let shown = format!("{secret:?}");
        assert!(shown.contains("Secret") && !shown.contains("aHVudGVyMg"));
    }

    #[test]
    fn non_objects_are_an_error_not_a_panic() {
        assert!(serde_json::from_value::<Slim<Secret>>(json!("text")).is_err());
        assert!(serde_json::from_value::<Slim<Secret>>(json!({"metadata": 3})).is_err());
    }
}
