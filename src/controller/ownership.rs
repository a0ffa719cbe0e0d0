//! Which existing objects a SpinApp's reconcile may write: only those this very SpinApp (by uid)
//! owns. Server-side apply with `force` would take over any object of a child's name — a
//! Service of another team, redirected to the app's pods by a SpinApp named after it — so a
//! child that exists and is not owned is refused and reported instead.
//!
//! - Owned by this app's uid (what this operator and upstream's create): written, so children
//!   of an app upstream managed are adopted as they are.
//! - No SpinApp owner reference (someone else's object, or children orphaned with
//!   `kubectl delete --cascade=orphan`, whose owner references the garbage collector removed —
//!   our labels alone prove nothing, anyone may set them): refused until it is deleted or
//!   renamed, or its owner reference is set to the app.
//! - Owned by another SpinApp of the same name (a deleted and recreated app whose old children
//!   the garbage collector has not removed yet): refused while it exists. The collector
//!   deletes it shortly (the old owner is gone); its delete event re-triggers the app through
//!   the owner reference's name, and the refusal's backoff retries in any case.
//!
//! The check costs no request on the common path: each apply carries a precondition the API
//! server checks in the same request ([`Expect`]), and only when it refuses is the object looked
//! up ([`apply`]). The caches hold only labelled objects, so a child absent from them may still
//! exist under its name (another team's Service); `Expect::Absent` covers exactly that.

use std::fmt;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{Patch, PatchParams};
use kube::{Api, Resource};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use super::error::ControllerError;
use crate::api::{FIELD_MANAGER, SpinApp};

/// The owner-reference kind of a SpinApp.
const SPINAPP_KIND: &str = "SpinApp";

/// Why an existing object is not the app's to write.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NotOwned {
    /// No SpinApp owner reference at all.
    NoSpinAppOwner,
    /// Owned by another SpinApp object (another uid; same name, as children share the app's).
    OtherSpinApp {
        /// That SpinApp's uid.
        uid: String,
    },
}

impl fmt::Display for NotOwned {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NotOwned::NoSpinAppOwner => f.write_str(
                "it has no SpinApp owner reference; the operator does not take over objects it \
                 did not create (delete or rename it, or rename the SpinApp)",
            ),
            NotOwned::OtherSpinApp { uid } => write!(
                f,
                "it belongs to another SpinApp of this name (uid {uid}), likely deleted moments \
                 ago; waiting for the garbage collector to remove it"
            ),
        }
    }
}

/// Whether `app` may write an existing object with these owner references.
pub fn check(owners: &[OwnerReference], app: &SpinApp) -> Result<(), NotOwned> {
    let spinapp_owners = || owners.iter().filter(|r| r.kind == SPINAPP_KIND);
    if let Some(uid) = app.metadata.uid.as_deref()
        && spinapp_owners().any(|r| r.uid == uid)
    {
        return Ok(());
    }
    // The controlling owner first: that is whose child it is.
    match spinapp_owners()
        .find(|r| r.controller == Some(true))
        .or_else(|| spinapp_owners().next())
    {
        Some(other) => Err(NotOwned::OtherSpinApp {
            uid: other.uid.clone(),
        }),
        None => Err(NotOwned::NoSpinAppOwner),
    }
}

/// What a server-side apply of a child asserts about the object it writes. kube-apiserver
/// (1.37, measured: `tests/cluster/e2e/test_ownership.py`) checks both in the apply itself:
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Expect {
    /// No object has the name (a child the caches do not show). Sent as `resourceVersion: "1"`:
    /// an apply that creates ignores its resourceVersion, and one that would write an existing
    /// object gets 409 Conflict unless the versions match. "1" is etcd's initial revision,
    /// which no write ever gets (the first is 2), so no existing object matches it. (A `uid`
    /// cannot express absence: the API server refuses to create for a uid, 409 "uid mismatch".)
    Absent,
    /// The object with this uid (the cached child, or one found owned). Another object under
    /// the name gets 422 (`metadata.uid` is immutable); none at all gets 409 "uid mismatch".
    /// Field ownership strips both preconditions, so they are never owned fields.
    Uid(String),
}

impl Expect {
    /// The apply configuration `body` with the precondition in its metadata.
    fn stamp(&self, mut body: Value) -> Value {
        let (field, value) = match self {
            Expect::Absent => ("resourceVersion", "1"),
            Expect::Uid(uid) => ("uid", uid.as_str()),
        };
        if let Some(meta) = body.get_mut("metadata").and_then(Value::as_object_mut) {
            meta.insert(field.to_string(), json!(value));
        }
        body
    }
}

/// Whether an apply (with `force`, so never a field conflict) was refused on its precondition:
/// 409 (another version, or a uid with no object), or 422 on `metadata.uid`.
fn refused(err: &kube::Error) -> bool {
    let kube::Error::Api(status) = err else {
        return false;
    };
    status.code == 409
        || (status.code == 422
            && status
                .details
                .iter()
                .flat_map(|d| &d.causes)
                .any(|c| c.field == "metadata.uid"))
}

/// Server-side applies `body` (with `force`: this operator owns its children's fields) as
/// child `name` of `app`, asserting `expect`. When the API server refuses, the object is looked
/// up once: owned by this app (upstream's children, a child recreated under us), it is applied
/// again for its uid; otherwise nothing is written and the error says whose it is.
pub(crate) async fn apply<K>(
    api: &Api<K>,
    app: &SpinApp,
    kind: &'static str,
    ns: &str,
    body: Value,
    expect: Expect,
) -> Result<K, ControllerError>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + std::fmt::Debug,
{
    let name = body
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let params = PatchParams::apply(FIELD_MANAGER).force();
    let write = |expect: Expect| {
        let body = expect.stamp(body.clone());
        let (api, params, name) = (api, &params, &name);
        async move { api.patch(name, params, &Patch::Apply(&body)).await }
    };
    let refusal = match write(expect).await {
        Err(e) if refused(&e) => e,
        other => {
            return other.map_err(|e| ControllerError::api(format!("apply {kind} {ns}/{name}"), e));
        }
    };
    let found = api
        .get_metadata_opt(&name)
        .await
        .map_err(|e| ControllerError::api(format!("get {kind} {ns}/{name}"), e))?;
    let Some(found) = found else {
        // Gone since: a conflict, retried soon (its delete event re-triggers the app too).
        return Err(ControllerError::api(
            format!("apply {kind} {ns}/{name}"),
            refusal,
        ));
    };
    check(
        found
            .metadata
            .owner_references
            .as_deref()
            .unwrap_or_default(),
        app,
    )
    .map_err(|reason| ControllerError::NotOwned {
        kind,
        name: format!("{ns}/{name}"),
        reason,
    })?;
    let uid = found.metadata.uid.unwrap_or_default();
    write(Expect::Uid(uid))
        .await
        .map_err(|e| ControllerError::api(format!("apply {kind} {ns}/{name}"), e))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn app(uid: Option<&str>) -> SpinApp {
        let mut app = SpinApp::new("hello", Default::default());
        app.metadata.uid = uid.map(str::to_string);
        app
    }

    fn owner(kind: &str, uid: &str, controller: bool) -> OwnerReference {
        OwnerReference {
            api_version: "core.spinkube.dev/v1alpha1".into(),
            kind: kind.into(),
            name: "hello".into(),
            uid: uid.into(),
            controller: Some(controller),
            ..Default::default()
        }
    }

    #[test]
    fn applies_carry_their_precondition_and_only_precondition_failures_are_refusals() {
        let body = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "hello"}});
        assert_eq!(
            Expect::Absent.stamp(body.clone())["metadata"],
            json!({"name": "hello", "resourceVersion": "1"})
        );
        assert_eq!(
            Expect::Uid("u1".into()).stamp(body)["metadata"],
            json!({"name": "hello", "uid": "u1"})
        );
        let api_error = |code: u16, field: Option<&str>| {
            let causes: Vec<Value> = field.map(|f| json!({"field": f})).into_iter().collect();
            let status: kube::core::Status = serde_json::from_value(json!({
                "status": "Failure", "code": code, "reason": "Reason", "message": "refused",
                "details": {"causes": causes}
            }))
            .unwrap();
            kube::Error::Api(status.boxed())
        };
        assert!(refused(&api_error(409, None)));
        assert!(refused(&api_error(422, Some("metadata.uid"))));
        // The desired object itself is invalid: an apply failure, not someone else's object.
        assert!(!refused(&api_error(422, Some("spec.ports[0].port"))));
        assert!(!refused(&api_error(422, None)));
        assert!(!refused(&api_error(500, None)));
    }

    #[test]
    fn only_this_apps_uid_may_write() {
        let me = app(Some("u1"));
        assert_eq!(check(&[owner("SpinApp", "u1", true)], &me), Ok(()));
        // Upstream's children, or an extra owner next to ours: still ours.
        assert_eq!(
            check(
                &[
                    owner("ReplicaSet", "x", false),
                    owner("SpinApp", "u1", false)
                ],
                &me
            ),
            Ok(())
        );
        assert_eq!(check(&[], &me), Err(NotOwned::NoSpinAppOwner));
        assert_eq!(
            check(&[owner("Deployment", "u1", true)], &me),
            Err(NotOwned::NoSpinAppOwner),
            "a uid match of another kind is not ownership"
        );
        assert_eq!(
            check(
                &[owner("SpinApp", "u0", false), owner("SpinApp", "u2", true)],
                &me
            ),
            Err(NotOwned::OtherSpinApp { uid: "u2".into() })
        );
        // An app without a uid (never from the API server) owns nothing.
        assert_eq!(
            check(&[owner("SpinApp", "", true)], &app(None)),
            Err(NotOwned::OtherSpinApp { uid: "".into() })
        );
    }
}
