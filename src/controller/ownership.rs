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

use std::fmt;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;

use crate::api::SpinApp;

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
