//! A real kube::runtime::Controller against the server: converges, survives faults, and a
//! compare-before-write reconciler makes no writes at steady state.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::watcher;
use kube::{CustomResource, Resource, ResourceExt};
use serde::{Deserialize, Serialize};
use serde_json::json;
use spin_test_apiserver::{RequestMatcher, ResourceKey, TestApiServer, Verb, wait_for};

#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default)]
#[kube(
    group = "core.spinkube.dev",
    version = "v1alpha1",
    kind = "SpinApp",
    namespaced,
    status = "AppStatus",
    schema = "disabled"
)]
struct AppSpec {
    image: String,
}

/// Must use fields of the real CRD schema: the server prunes unknown ones like the apiserver.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
struct AppStatus {
    deployment_name: String,
}

#[derive(Debug, thiserror::Error)]
#[error(transparent)]
struct Error(#[from] kube::Error);

const MANAGER: &str = "spin-operator";

/// Applies an owned ConfigMap and writes status, each only when it differs.
async fn reconcile(app: Arc<SpinApp>, client: Arc<kube::Client>) -> Result<Action, Error> {
    let ns = app.namespace().unwrap_or_default();
    let name = app.name_any();
    let cms: Api<ConfigMap> = Api::namespaced((*client).clone(), &ns);
    let owner = app.controller_owner_ref(&()).unwrap();
    let want = json!({"image": app.spec.image});
    let current = cms.get_opt(&name).await?;
    if current
        .as_ref()
        .and_then(|c| c.data.as_ref())
        .map(|d| json!(d))
        != Some(want.clone())
    {
        let cm = json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": name, "ownerReferences": [owner]}, "data": want});
        cms.patch(
            &name,
            &PatchParams::apply(MANAGER).force(),
            &Patch::Apply(cm),
        )
        .await?;
    }
    let status = AppStatus {
        deployment_name: format!("{name}-{}", app.spec.image),
    };
    if app.status.as_ref() != Some(&status) {
        let apps: Api<SpinApp> = Api::namespaced((*client).clone(), &ns);
        apps.patch_status(
            &name,
            &PatchParams::default(),
            &Patch::Merge(json!({"status": status})),
        )
        .await?;
    }
    Ok(Action::requeue(Duration::from_millis(100)))
}

fn error_policy(_: Arc<SpinApp>, _: &Error, _: Arc<kube::Client>) -> Action {
    Action::requeue(Duration::from_millis(50))
}

fn run_controller(server: &TestApiServer) {
    let client = server.client();
    let apps: Api<SpinApp> = Api::all(client.clone());
    let cms: Api<ConfigMap> = Api::all(client.clone());
    let controller = Controller::new(apps, watcher::Config::default())
        .owns(cms, watcher::Config::default())
        .run(reconcile, error_policy, Arc::new(client))
        .for_each(|_| async {});
    tokio::spawn(controller);
}

fn cm_image(server: &TestApiServer, name: &str) -> Option<String> {
    let cm = server.get(&ResourceKey::of::<ConfigMap>(), Some("default"), name)?;
    cm["data"]["image"].as_str().map(str::to_string)
}

#[tokio::test]
async fn controller_converges_then_stays_quiet() {
    let server = TestApiServer::start().await;
    let apps: Api<SpinApp> = Api::default_namespaced(server.client());
    apps.create(
        &PostParams::default(),
        &SpinApp::new(
            "a",
            AppSpec {
                image: "i:1".into(),
            },
        ),
    )
    .await
    .unwrap();
    run_controller(&server);
    let wait = Duration::from_secs(10);
    assert!(wait_for(|| cm_image(&server, "a").as_deref() == Some("i:1"), wait).await);
    let status_written = || {
        server
            .get(&ResourceKey::of::<SpinApp>(), Some("default"), "a")
            .is_some_and(|a| a["status"]["deploymentName"] == "a-i:1")
    };
    assert!(wait_for(status_written, wait).await);

    // Steady state: once the controller's cache has caught up with its own writes (two
    // resyncs), several more resyncs (100ms requeue) make no write at all.
    let resyncs = |n: usize| {
        let server = server.clone();
        move || {
            server
                .requests_matching(&RequestMatcher::any().verb(Verb::Get).resource("configmaps"))
                .len()
                >= n
        }
    };
    server.clear_requests();
    assert!(wait_for(resyncs(2), wait).await);
    server.clear_requests();
    assert!(wait_for(resyncs(5), wait).await);
    assert_eq!(server.count_writes(), 0, "{:?}", server.writes());

    // A spec change is followed; an injected failure is retried.
    server
        .faults()
        .fail_next(2, 500, RequestMatcher::writes().resource("configmaps"));
    apps.patch(
        "a",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"image": "i:2"}})),
    )
    .await
    .unwrap();
    assert!(wait_for(|| cm_image(&server, "a").as_deref() == Some("i:2"), wait).await);
    let failed = server
        .requests_matching(&RequestMatcher::writes().resource("configmaps"))
        .iter()
        .filter(|r| r.status == 500)
        .count();
    assert_eq!(failed, 2);

    // Someone deletes the child: the owner watch brings it back.
    server
        .delete(&ResourceKey::of::<ConfigMap>(), Some("default"), "a")
        .unwrap();
    assert!(wait_for(|| cm_image(&server, "a").is_some(), wait).await);

    // Watches dropped: still converges on the next change.
    server.faults().drop_watches();
    apps.patch(
        "a",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"image": "i:3"}})),
    )
    .await
    .unwrap();
    assert!(wait_for(|| cm_image(&server, "a").as_deref() == Some("i:3"), wait).await);

    // Deleting the app garbage-collects the child.
    apps.delete("a", &DeleteParams::default()).await.unwrap();
    assert!(wait_for(|| cm_image(&server, "a").is_none(), wait).await);
}
