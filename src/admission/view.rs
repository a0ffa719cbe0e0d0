//! The AdmissionReview as the fast path reads it, in one typed pass over the body: strings
//! borrowed from it (unless escaped), fields the handler never reads only type-checked, and the
//! objects as [`ObjectView`]s whose spec is decoded in the same pass into what the route's
//! rules read. Nothing of the review is copied into a `Value`.
//!
//! Accepts a subset of what [`review::parse`](super::review::parse) accepts (a repeated field
//! is refused here, for one) and, where both accept, reads the same request from it; `None`
//! otherwise, and the caller takes the reference path.

use std::borrow::Cow;
use std::fmt;
use std::marker::PhantomData;

use kube::core::admission::{META_API_VERSION_V1, META_KIND, Operation};
use serde::de::value::MapAccessDeserializer;
use serde::de::{MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer};

use crate::rules::ObjectView;

/// The request fields the webhooks read (as [`RawRequest`](super::review::RawRequest)), the
/// objects' specs read as `S`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
#[serde(bound(deserialize = "S: Deserialize<'de>"))]
pub struct RequestView<'a, S> {
    #[serde(borrow)]
    pub uid: Cow<'a, str>,
    #[serde(borrow)]
    pub kind: KindView<'a>,
    #[serde(borrow)]
    pub resource: ResourceView<'a>,
    #[serde(default, borrow)]
    pub sub_resource: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    pub name: Cow<'a, str>,
    #[serde(default, borrow)]
    pub namespace: Option<Cow<'a, str>>,
    pub operation: Operation,
    #[serde(default, borrow)]
    pub user_info: UserView<'a>,
    #[serde(default = "none", borrow)]
    pub object: Option<ObjectView<'a, S>>,
    #[serde(default = "none", borrow)]
    pub old_object: Option<ObjectView<'a, S>>,
    #[serde(default)]
    pub dry_run: Option<bool>,
}

fn none<T>() -> Option<T> {
    None
}

/// kube's `GroupVersionKind`, borrowed (same derive, same fields).
#[derive(Debug, Deserialize)]
pub struct KindView<'a> {
    #[serde(borrow)]
    pub group: Cow<'a, str>,
    #[serde(borrow)]
    pub version: Cow<'a, str>,
    #[serde(borrow)]
    pub kind: Cow<'a, str>,
}

/// kube's `GroupVersionResource`, borrowed (same derive, same fields).
#[derive(Debug, Deserialize)]
pub struct ResourceView<'a> {
    #[serde(borrow)]
    pub group: Cow<'a, str>,
    #[serde(borrow)]
    pub version: Cow<'a, str>,
    #[serde(borrow)]
    pub resource: Cow<'a, str>,
    #[serde(default)]
    #[allow(dead_code)] // read for its type only, as kube reads it
    api_version: Str,
}

/// k8s-openapi's `UserInfo`: the username kept, the rest only type-checked.
#[derive(Debug, Default)]
pub struct UserView<'a> {
    pub username: Option<Cow<'a, str>>,
}

impl<'de: 'a, 'a> Deserialize<'de> for UserView<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        struct Fields<'a> {
            #[serde(default, borrow)]
            username: Option<Cow<'a, str>>,
            #[serde(default)]
            #[allow(dead_code)]
            uid: Option<Str>,
            #[serde(default)]
            #[allow(dead_code)]
            groups: Option<SeqOf<Str>>,
            #[serde(default)]
            #[allow(dead_code)]
            extra: Option<MapOf<SeqOf<Str>>>,
        }
        // k8s-openapi reads `UserInfo` from an object only.
        struct Only<'a>(PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for Only<'a> {
            type Value = UserView<'a>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("UserInfo")
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
                let fields = Fields::deserialize(MapAccessDeserializer::new(map))?;
                Ok(UserView {
                    username: fields.username,
                })
            }
        }
        deserializer.deserialize_struct(
            "UserInfo",
            &["extra", "groups", "uid", "username"],
            Only(PhantomData),
        )
    }
}

/// A JSON string, checked and not kept.
#[derive(Debug, Default)]
struct Str;

impl<'de> Deserialize<'de> for Str {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Str;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_str<E: serde::de::Error>(self, _: &str) -> Result<Str, E> {
                Ok(Str)
            }
        }
        deserializer.deserialize_str(V)
    }
}

/// A JSON array of `T`, checked and not kept.
#[derive(Debug)]
struct SeqOf<T>(PhantomData<T>);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for SeqOf<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V<T>(PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for V<T> {
            type Value = SeqOf<T>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a sequence")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                while seq.next_element::<T>()?.is_some() {}
                Ok(SeqOf(PhantomData))
            }
        }
        deserializer.deserialize_seq(V(PhantomData))
    }
}

/// A JSON object of string keys and `T` values, checked and not kept.
#[derive(Debug)]
struct MapOf<T>(PhantomData<T>);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for MapOf<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V<T>(PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for V<T> {
            type Value = MapOf<T>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a map")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                while map.next_entry::<Str, T>()?.is_some() {}
                Ok(MapOf(PhantomData))
            }
        }
        deserializer.deserialize_map(V(PhantomData))
    }
}

/// Parses an AdmissionReview v1 body for the fast path; `None` when this pass does not accept
/// it or it is not a well-formed v1 review with a uid (the reference path answers those).
pub fn parse<'a, S: Deserialize<'a>>(body: &'a [u8]) -> Option<RequestView<'a, S>> {
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    #[serde(bound(deserialize = "S: Deserialize<'de>"))]
    struct Envelope<'a, S> {
        #[serde(default, borrow)]
        api_version: Option<Cow<'a, str>>,
        #[serde(default, borrow)]
        kind: Option<Cow<'a, str>>,
        #[serde(default = "none", borrow)]
        request: Option<RequestView<'a, S>>,
    }
    // One UTF-8 check of the whole body instead of one per string (`from_slice` checks each
    // string it reads and none it skips; the reference refuses invalid UTF-8 wherever it reads).
    let text = std::str::from_utf8(body).ok()?;
    let envelope = serde_json::from_str::<Envelope<S>>(text).ok()?;
    let request = envelope.request?;
    (envelope.api_version.as_deref() == Some(META_API_VERSION_V1)
        && envelope.kind.as_deref() == Some(META_KIND)
        && !request.uid.is_empty())
    .then_some(request)
}

impl<S> RequestView<'_, S> {
    fn meta_str(&self, field: &str) -> Option<&str> {
        let object = self.object.as_ref().or(self.old_object.as_ref())?;
        match field {
            "name" => object.name.as_deref(),
            "generateName" => object.generate_name.as_deref(),
            _ => object.namespace.as_deref(),
        }
    }
}

impl<S> super::review::Reviewed for RequestView<'_, S> {
    super::review::request_field_accessors!();
    fn object_meta(&self, field: &str) -> Option<&str> {
        self.meta_str(field)
    }
}
