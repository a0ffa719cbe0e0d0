//! Custom resources (SpinApp) and the rules that differ from built-ins.

use kube::CustomResource;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use serde::{Deserialize, Serialize};
use serde_json::json;
use spin_test_apiserver::{ResourceKey, TestApiServer};

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
    executor: String,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default)]
#[serde(rename_all = "camelCase")]
struct AppStatus {
    ready_replicas: i32,
}

fn app(name: &str) -> SpinApp {
    SpinApp::new(
        name,
        AppSpec {
            image: "ghcr.io/x:1".into(),
            executor: "containerd-shim-spin".into(),
        },
    )
}

#[tokio::test]
async fn spinapp_crud_status_and_finalizer() {
    let server = TestApiServer::start().await;
    let api: Api<SpinApp> = Api::default_namespaced(server.client());
    let created = api.create(&PostParams::default(), &app("a")).await.unwrap();
    assert_eq!(created.metadata.generation, Some(1));

    // Custom resources refuse unconditional updates.
    let mut unconditional = created.clone();
    unconditional.metadata.resource_version = None;
    let err = api
        .replace("a", &PostParams::default(), &unconditional)
        .await
        .unwrap_err();
    assert!(matches!(err, kube::Error::Api(s) if s.code == 422));

    let mut changed = created.clone();
    changed.spec.image = "ghcr.io/x:2".into();
    changed.status = Some(AppStatus { ready_replicas: 5 });
    let replaced = api
        .replace("a", &PostParams::default(), &changed)
        .await
        .unwrap();
    assert_eq!(replaced.metadata.generation, Some(2));
    assert!(replaced.status.is_none());

    let mut with_status = replaced.clone();
    with_status.status = Some(AppStatus { ready_replicas: 1 });
    let st = api
        .replace_status("a", &PostParams::default(), &with_status)
        .await
        .unwrap();
    assert_eq!(st.status.unwrap().ready_replicas, 1);
    assert_eq!(st.metadata.generation, Some(2));

    api.patch(
        "a",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"finalizers": ["core.spinkube.dev/finalizer"]}})),
    )
    .await
    .unwrap();
    api.delete("a", &DeleteParams::default()).await.unwrap();
    let stored = server
        .get(&ResourceKey::of::<SpinApp>(), Some("default"), "a")
        .unwrap();
    assert!(stored["metadata"]["deletionTimestamp"].is_string());
    assert_eq!(
        stored["metadata"]["generation"], 3,
        "deletion bumps generation"
    );
    api.patch(
        "a",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"finalizers": null}})),
    )
    .await
    .unwrap();
    assert!(api.get_opt("a").await.unwrap().is_none());
}

#[tokio::test]
async fn all_namespaces_list_and_direct_put() {
    let server = TestApiServer::start().await;
    for ns in ["one", "two"] {
        server.put(
            json!({"apiVersion": "core.spinkube.dev/v1alpha1", "kind": "SpinApp",
            "metadata": {"name": "a", "namespace": ns}, "spec": {"image": "i", "executor": "e"},
            "status": {"readyReplicas": 3}}),
        );
    }
    let all: Api<SpinApp> = Api::all(server.client());
    let list = all.list(&Default::default()).await.unwrap();
    let namespaces: Vec<_> = list
        .items
        .iter()
        .map(|a| a.metadata.namespace.clone().unwrap())
        .collect();
    assert_eq!(namespaces, ["one", "two"]);
    assert_eq!(list.items[0].status.as_ref().unwrap().ready_replicas, 3);
    let typed: SpinApp = server.get_as(Some("two"), "a").unwrap();
    assert_eq!(typed.spec.executor, "e");
    assert_eq!(server.list(&ResourceKey::of::<SpinApp>(), None).len(), 2);
}
