//! Labels, selectors and owner references shared by the children (upstream `constructAppLabels`,
//! `ConstructStatusReadyLabel`, `SetControllerReference`).

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::ResourceExt;

use crate::api::{API_VERSION, APP_NAME_LABEL, APP_STATUS_READY, SpinApp, app_status_label};

/// `core.spinkube.dev/app-name: <app>`: on every owned child.
pub(super) fn app_labels(app: &SpinApp) -> BTreeMap<String, String> {
    BTreeMap::from([(APP_NAME_LABEL.to_string(), app.name_any())])
}

/// `core.spinkube.dev/app.<app>.status: ready`: what the Service selects on.
pub(super) fn ready_selector(app: &SpinApp) -> BTreeMap<String, String> {
    BTreeMap::from([(
        app_status_label(&app.name_any()),
        APP_STATUS_READY.to_string(),
    )])
}

/// App-name plus ready label: the Deployment selector (and part of the pod labels).
pub(super) fn selector_labels(app: &SpinApp) -> BTreeMap<String, String> {
    let mut labels = app_labels(app);
    labels.extend(ready_selector(app));
    labels
}

/// Controller owner reference to the app. Omitted while the app has no uid (offline render):
/// an owner reference without a uid is rejected by the API server.
pub(super) fn owner_references(app: &SpinApp) -> Option<Vec<OwnerReference>> {
    let uid = app.metadata.uid.clone().filter(|u| !u.is_empty())?;
    Some(vec![OwnerReference {
        api_version: API_VERSION.to_string(),
        kind: "SpinApp".to_string(),
        name: app.name_any(),
        uid,
        controller: Some(true),
        block_owner_deletion: Some(true),
    }])
}

/// Metadata of an owned child named `name` in the app's namespace.
pub(super) fn child_meta(
    app: &SpinApp,
    name: String,
    annotations: Option<&BTreeMap<String, String>>,
) -> ObjectMeta {
    ObjectMeta {
        name: Some(name),
        namespace: app.metadata.namespace.clone(),
        labels: Some(app_labels(app)),
        // Upstream sends an empty map, which JSON-omits: same as None.
        annotations: annotations.filter(|a| !a.is_empty()).cloned(),
        owner_references: owner_references(app),
        ..ObjectMeta::default()
    }
}
