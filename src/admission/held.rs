//! A decision's effects (its audit line and metrics) held back while the review may still be
//! decided again.
//!
//! A SpinApp review that misses its executor in the cache is decided once from the cache and,
//! when the fetched executor exists, again with it (see [`super::executor_fetch`]). Only the
//! decision that answers the review may be audited and counted: the first one's effects wait
//! here until it is known whether it is the answer ([`HeldBack::release`]) or was redone
//! ([`HeldBack::discard`]). A review dropped while they wait (the request deadline passed)
//! gets them on drop: every decision that was made is audited once.

use std::sync::{Arc, Mutex};

use k8s_openapi::api::authentication::v1::UserInfo;
use kube::core::admission::Operation;
use kube::core::{GroupVersionKind, GroupVersionResource};

use super::executor_fetch::Reviewing;
use super::review::Reviewed;

type Effects = Box<dyn FnOnce() + Send>;

/// The held effects of one review's first decision.
pub(super) struct HeldBack {
    reviewing: Arc<Reviewing>,
    effects: Mutex<Option<Effects>>,
}

impl HeldBack {
    /// For the first decision of a review seen through `reviewing`.
    pub(super) fn new(reviewing: Arc<Reviewing>) -> Self {
        HeldBack {
            reviewing,
            effects: Mutex::new(None),
        }
    }

    /// Whether the decision being made may be redone: it missed an executor in the cache.
    pub(super) fn may_redo(&self) -> bool {
        self.reviewing.has_missed()
    }

    /// Holds `effects` until [`Self::release`] or [`Self::discard`].
    pub(super) fn hold(&self, effects: impl FnOnce() + Send + 'static) {
        *self.lock() = Some(Box::new(effects));
    }

    /// The held decision answers the review: its effects happen now.
    pub(super) fn release(&self) {
        let effects = self.lock().take();
        if let Some(effects) = effects {
            effects();
        }
    }

    /// The held decision was redone: its effects never happen.
    pub(super) fn discard(&self) {
        self.lock().take();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Effects>> {
        self.effects.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Drop for HeldBack {
    fn drop(&mut self) {
        self.release();
    }
}

/// What the audit line reads of a request, owned, so that held effects outlive the body.
pub(super) struct Snapshot {
    uid: String,
    kind: GroupVersionKind,
    resource: GroupVersionResource,
    sub_resource: Option<String>,
    name: String,
    namespace: Option<String>,
    operation: Operation,
    user_info: UserInfo,
    /// Only whether they were sent: the objects are never kept.
    object: Option<()>,
    old_object: Option<()>,
    dry_run: Option<bool>,
    /// `metadata.{name, generateName, namespace}` as [`Reviewed::object_meta`] reads them.
    meta: [Option<String>; 3],
}

const META_FIELDS: [&str; 3] = ["name", "generateName", "namespace"];

impl Snapshot {
    pub(super) fn of<R: Reviewed>(req: &R) -> Self {
        let (group, version, kind) = req.kind();
        let (resource_group, resource) = req.resource();
        Snapshot {
            uid: req.uid().to_string(),
            kind: GroupVersionKind::gvk(group, version, kind),
            // The version of the resource is not part of [`Reviewed`].
            resource: GroupVersionResource::gvr(resource_group, "", resource),
            sub_resource: req.sub_resource().map(str::to_string),
            name: req.request_name().to_string(),
            namespace: req.request_namespace().map(str::to_string),
            operation: req.operation().clone(),
            user_info: UserInfo {
                username: Some(req.user().to_string()),
                ..UserInfo::default()
            },
            object: req.has_object().then_some(()),
            old_object: req.has_old_object().then_some(()),
            dry_run: Some(req.dry_run()),
            meta: META_FIELDS.map(|field| req.object_meta(field).map(str::to_string)),
        }
    }
}

impl Reviewed for Snapshot {
    super::review::request_field_accessors!();

    fn object_meta(&self, field: &str) -> Option<&str> {
        let at = META_FIELDS.iter().position(|f| *f == field)?;
        self.meta[at].as_deref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::admission::review;
    use crate::inventory::Inventory;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn a_snapshot_reads_as_the_request_did() {
        let body = serde_json::json!({
            "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
            "request": {
                "uid": "u-1",
                "kind": {"group": "core.spinkube.dev", "version": "v1alpha1", "kind": "SpinApp"},
                "resource": {"group": "core.spinkube.dev", "version": "v1alpha1", "resource": "spinapps"},
                "name": "", "namespace": "", "operation": "CREATE", "dryRun": true,
                "userInfo": {"username": "alice"},
                "object": {"metadata": {"generateName": "web-", "namespace": "apps"}},
            }
        });
        let req = review::parse(&serde_json::to_vec(&body).unwrap()).unwrap();
        let snap = Snapshot::of(&req);
        assert_eq!(Reviewed::uid(&snap), "u-1");
        assert_eq!(Reviewed::kind(&snap), Reviewed::kind(&req));
        assert_eq!(Reviewed::resource(&snap), Reviewed::resource(&req));
        assert_eq!(Reviewed::name(&snap), "web-");
        assert_eq!(Reviewed::namespace(&snap), Some("apps"));
        assert_eq!(Reviewed::user(&snap), "alice");
        assert_eq!(Reviewed::operation(&snap), &Operation::Create);
        assert!(snap.dry_run() && snap.has_object() && !snap.has_old_object());
    }

    #[test]
    fn held_effects_happen_once_on_release_or_drop_and_never_when_discarded() {
        let reviewing = Arc::new(Reviewing::new(Arc::new(Inventory::default()), None));
        let count = Arc::new(AtomicUsize::new(0));
        let effect = || {
            let count = count.clone();
            move || {
                count.fetch_add(1, Ordering::Relaxed);
            }
        };
        let held = HeldBack::new(reviewing.clone());
        held.hold(effect());
        held.release();
        held.release();
        drop(held);
        assert_eq!(count.load(Ordering::Relaxed), 1);

        let held = HeldBack::new(reviewing.clone());
        held.hold(effect());
        held.discard();
        drop(held);
        assert_eq!(count.load(Ordering::Relaxed), 1);

        let held = HeldBack::new(reviewing);
        held.hold(effect());
        drop(held);
        assert_eq!(count.load(Ordering::Relaxed), 2);
    }
}
