//! CRUD, conflicts, generation, status separation, finalizers, GC, selectors — over HTTP with kube::Api.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::core::Status;
use serde_json::json;
use spin_test_apiserver::{ResourceKey, TestApiServer, Verb};

fn cm(name: &str, labels: &[(&str, &str)]) -> ConfigMap {
    serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": name, "labels": labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<BTreeMap<_, _>>()},
        "data": {"k": "v"}
    }))
    .unwrap()
}

fn deployment(name: &str, image: &str) -> Deployment {
    serde_json::from_value(json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}},
                         "spec": {"containers": [{"name": name, "image": image}]}}
        }
    }))
    .unwrap()
}

fn api_err(e: kube::Error) -> Box<Status> {
    match e {
        kube::Error::Api(s) => s,
        other => panic!("expected an API error, got {other:?}"),
    }
}

#[tokio::test]
async fn create_get_list_replace_delete() {
    let server = TestApiServer::start().await;
    let api: Api<ConfigMap> = Api::default_namespaced(server.client());

    let created = api
        .create(&PostParams::default(), &cm("a", &[("app", "x")]))
        .await
        .unwrap();
    let meta = &created.metadata;
    assert_eq!(meta.namespace.as_deref(), Some("default"));
    assert!(meta.uid.as_deref().is_some_and(|u| !u.is_empty()));
    assert!(meta.creation_timestamp.is_some());
    let rv1: u64 = meta.resource_version.as_deref().unwrap().parse().unwrap();

    let got = api.get("a").await.unwrap();
    assert_eq!(got.data.unwrap()["k"], "v");

    let err = api_err(
        api.create(&PostParams::default(), &cm("a", &[]))
            .await
            .unwrap_err(),
    );
    assert_eq!((err.code, err.reason.as_str()), (409, "AlreadyExists"));

    let mut updated = created.clone();
    updated.data = Some(BTreeMap::from([("k".to_string(), "w".to_string())]));
    let replaced = api
        .replace("a", &PostParams::default(), &updated)
        .await
        .unwrap();
    let rv2: u64 = replaced
        .metadata
        .resource_version
        .as_deref()
        .unwrap()
        .parse()
        .unwrap();
    assert!(rv2 > rv1);

    // A stale resourceVersion is a conflict.
    let err = api_err(
        api.replace("a", &PostParams::default(), &updated)
            .await
            .unwrap_err(),
    );
    assert_eq!((err.code, err.reason.as_str()), (409, "Conflict"));

    let list = api.list(&ListParams::default()).await.unwrap();
    assert_eq!(list.items.len(), 1);
    let list_rv: u64 = list
        .metadata
        .resource_version
        .as_deref()
        .unwrap()
        .parse()
        .unwrap();
    assert!(list_rv >= rv2);

    api.delete("a", &DeleteParams::default()).await.unwrap();
    let err = api_err(api.get("a").await.unwrap_err());
    assert_eq!((err.code, err.reason.as_str()), (404, "NotFound"));
    assert!(
        server
            .get(&ResourceKey::of::<ConfigMap>(), Some("default"), "a")
            .is_none()
    );
}

#[tokio::test]
async fn generate_name_and_namespace_mismatch() {
    let server = TestApiServer::start().await;
    let api: Api<ConfigMap> = Api::namespaced(server.client(), "ns1");
    let mut obj = cm("", &[]);
    obj.metadata.name = None;
    obj.metadata.generate_name = Some("gen-".into());
    let created = api.create(&PostParams::default(), &obj).await.unwrap();
    let name = created.metadata.name.unwrap();
    assert!(name.starts_with("gen-") && name.len() == 9, "{name}");

    let mut wrong = cm("b", &[]);
    wrong.metadata.namespace = Some("other".into());
    let err = api_err(
        api.create(&PostParams::default(), &wrong)
            .await
            .unwrap_err(),
    );
    assert_eq!(err.code, 400);
}

#[tokio::test]
async fn label_and_field_selectors() {
    let server = TestApiServer::start().await;
    let api: Api<ConfigMap> = Api::default_namespaced(server.client());
    for (name, app, tier) in [
        ("a", "web", "front"),
        ("b", "web", "back"),
        ("c", "db", "back"),
    ] {
        api.create(
            &PostParams::default(),
            &cm(name, &[("app", app), ("tier", tier)]),
        )
        .await
        .unwrap();
    }
    api.create(&PostParams::default(), &cm("d", &[]))
        .await
        .unwrap();
    let names = |sel: &str| {
        let api = api.clone();
        let sel = sel.to_string();
        async move {
            api.list(&ListParams::default().labels(&sel))
                .await
                .unwrap()
                .items
                .into_iter()
                .map(|c| c.metadata.name.unwrap())
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(names("app=web").await, ["a", "b"]);
    assert_eq!(names("app!=web").await, ["c", "d"]);
    assert_eq!(names("tier in (front,x)").await, ["a"]);
    assert_eq!(names("app notin (web)").await, ["c", "d"]);
    assert_eq!(names("app").await, ["a", "b", "c"]);
    assert_eq!(names("!app").await, ["d"]);
    assert_eq!(names("app=web,tier=back").await, ["b"]);
    let by_name = api
        .list(&ListParams::default().fields("metadata.name=c"))
        .await
        .unwrap();
    assert_eq!(by_name.items.len(), 1);
    let all: Api<ConfigMap> = Api::all(server.client());
    let by_ns = all
        .list(&ListParams::default().fields("metadata.namespace=default"))
        .await
        .unwrap();
    assert_eq!(by_ns.items.len(), 4);
    let err = api_err(
        api.list(&ListParams::default().labels("app in web"))
            .await
            .unwrap_err(),
    );
    assert_eq!(err.code, 400);
}

#[tokio::test]
async fn generation_bumps_only_on_spec_change_and_status_is_separate() {
    let server = TestApiServer::start().await;
    let api: Api<Deployment> = Api::default_namespaced(server.client());
    let d = api
        .create(&PostParams::default(), &deployment("web", "nginx:1"))
        .await
        .unwrap();
    assert_eq!(d.metadata.generation, Some(1));
    // Defaulting like a real apiserver.
    assert_eq!(d.spec.replicas, Some(1));

    let labelled = api
        .patch(
            "web",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"x": "y"}}})),
        )
        .await
        .unwrap();
    assert_eq!(labelled.metadata.generation, Some(1));

    // Status on the main resource is ignored.
    let with_status = api
        .patch(
            "web",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"readyReplicas": 3}})),
        )
        .await
        .unwrap();
    assert!(
        with_status
            .status
            .is_none_or(|s| s.ready_replicas.is_none())
    );

    let bumped = api
        .patch(
            "web",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"replicas": 2}})),
        )
        .await
        .unwrap();
    assert_eq!(bumped.metadata.generation, Some(2));

    // The status subresource changes only status.
    let st = api
        .patch_status(
            "web",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"replicas": 9}, "status": {"readyReplicas": 2}})),
        )
        .await
        .unwrap();
    assert_eq!(st.status.unwrap().ready_replicas, Some(2));
    assert_eq!(st.spec.replicas, Some(2));
    assert_eq!(st.metadata.generation, Some(2));

    // Test-side status write, visible through the API.
    let key = ResourceKey::of::<Deployment>();
    let waiter = {
        let server = server.clone();
        let key = key.clone();
        tokio::spawn(async move {
            server
                .wait_for_object(
                    &key,
                    None,
                    "web",
                    |d| d["status"]["readyReplicas"] == 1,
                    std::time::Duration::from_secs(10),
                )
                .await
        })
    };
    server.set_status(
        &ResourceKey::of::<Deployment>(),
        None,
        "web",
        json!({"readyReplicas": 1, "replicas": 1}),
    );
    assert!(waiter.await.unwrap().is_some());
    let got = api.get_status("web").await.unwrap();
    assert_eq!(got.status.unwrap().ready_replicas, Some(1));

    // A no-op patch does not bump the resourceVersion.
    let before = api.get("web").await.unwrap().metadata.resource_version;
    let same = api
        .patch(
            "web",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"replicas": 2}})),
        )
        .await
        .unwrap();
    assert_eq!(same.metadata.resource_version, before);
}

#[tokio::test]
async fn finalizers_keep_object_until_removed() {
    let server = TestApiServer::start().await;
    let api: Api<ConfigMap> = Api::default_namespaced(server.client());
    let mut obj = cm("f", &[]);
    obj.metadata.finalizers = Some(vec!["example.com/hold".into()]);
    api.create(&PostParams::default(), &obj).await.unwrap();

    api.delete("f", &DeleteParams::default()).await.unwrap();
    let held = api.get("f").await.unwrap();
    assert!(held.metadata.deletion_timestamp.is_some());

    api.patch(
        "f",
        &PatchParams::default(),
        &Patch::Json::<()>(
            serde_json::from_value(json!([{"op": "remove", "path": "/metadata/finalizers"}]))
                .unwrap(),
        ),
    )
    .await
    .unwrap();
    let err = api_err(api.get("f").await.unwrap_err());
    assert_eq!(err.code, 404);
}

#[tokio::test]
async fn garbage_collection_follows_owner_references() {
    let server = TestApiServer::start().await;
    let client = server.client();
    let deps: Api<Deployment> = Api::default_namespaced(client.clone());
    let secrets: Api<Secret> = Api::default_namespaced(client.clone());
    let cms: Api<ConfigMap> = Api::default_namespaced(client);

    let owner = cms
        .create(&PostParams::default(), &cm("owner", &[]))
        .await
        .unwrap();
    let owner_ref = json!([{"apiVersion": "v1", "kind": "ConfigMap", "name": "owner",
        "uid": owner.metadata.uid.clone().unwrap(), "controller": true}]);
    let mut d = deployment("child", "nginx");
    d.metadata.owner_references = Some(serde_json::from_value(owner_ref).unwrap());
    let d = deps.create(&PostParams::default(), &d).await.unwrap();
    // Grandchild owned by the Deployment.
    let s: Secret = serde_json::from_value(json!({"apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": "grandchild", "ownerReferences": [{"apiVersion": "apps/v1", "kind": "Deployment",
            "name": "child", "uid": d.metadata.uid.clone().unwrap()}]},
        "stringData": {"a": "b"}})).unwrap();
    let s = secrets.create(&PostParams::default(), &s).await.unwrap();
    assert_eq!(s.data.unwrap()["a"].0, b"b");
    let unrelated = cms
        .create(&PostParams::default(), &cm("unrelated", &[]))
        .await
        .unwrap();
    assert!(unrelated.metadata.owner_references.is_none());

    cms.delete("owner", &DeleteParams::default()).await.unwrap();
    assert!(deps.get_opt("child").await.unwrap().is_none());
    assert!(secrets.get_opt("grandchild").await.unwrap().is_none());
    assert!(cms.get_opt("unrelated").await.unwrap().is_some());
    let deletes = server
        .requests()
        .into_iter()
        .filter(|r| r.verb == Verb::Delete)
        .count();
    assert_eq!(deletes, 1, "GC deletes are server-side, not requests");
}

#[tokio::test]
async fn json_and_strategic_patches() {
    let server = TestApiServer::start().await;
    let api: Api<ConfigMap> = Api::default_namespaced(server.client());
    api.create(&PostParams::default(), &cm("p", &[]))
        .await
        .unwrap();
    let p: json_patch::Patch = serde_json::from_value(json!([
        {"op": "add", "path": "/data/n", "value": "1"},
        {"op": "test", "path": "/data/k", "value": "v"}
    ]))
    .unwrap();
    let got = api
        .patch("p", &PatchParams::default(), &Patch::Json::<()>(p))
        .await
        .unwrap();
    assert_eq!(got.data.as_ref().unwrap()["n"], "1");
    let failing: json_patch::Patch =
        serde_json::from_value(json!([{"op": "test", "path": "/data/k", "value": "nope"}]))
            .unwrap();
    let err = api_err(
        api.patch("p", &PatchParams::default(), &Patch::Json::<()>(failing))
            .await
            .unwrap_err(),
    );
    assert_eq!(err.code, 422);
    let got = api
        .patch(
            "p",
            &PatchParams::default(),
            &Patch::Strategic(json!({"data": {"n": null, "s": "2"}})),
        )
        .await
        .unwrap();
    assert_eq!(
        got.data.unwrap(),
        BTreeMap::from([("k".into(), "v".into()), ("s".into(), "2".into())])
    );
    let kinds: Vec<Option<String>> = server
        .requests()
        .into_iter()
        .filter(|r| r.verb == Verb::Patch)
        .map(|r| r.patch_type)
        .collect();
    assert_eq!(
        kinds,
        [
            Some("application/json-patch+json".to_string()),
            Some("application/json-patch+json".to_string()),
            Some("application/strategic-merge-patch+json".to_string()),
        ]
    );
}

#[tokio::test]
async fn dry_run_stores_nothing() {
    let server = TestApiServer::start().await;
    let api: Api<ConfigMap> = Api::default_namespaced(server.client());
    let rv = server.resource_version();
    let pp = PostParams {
        dry_run: true,
        ..Default::default()
    };
    let created = api.create(&pp, &cm("dry", &[])).await.unwrap();
    assert_eq!(created.metadata.name.as_deref(), Some("dry"));
    assert!(api.get_opt("dry").await.unwrap().is_none());
    assert_eq!(server.resource_version(), rv);
    // Validation still happens.
    api.create(&PostParams::default(), &cm("real", &[]))
        .await
        .unwrap();
    let err = api_err(api.create(&pp, &cm("real", &[])).await.unwrap_err());
    assert_eq!(err.code, 409);
}

#[tokio::test]
async fn deleting_a_namespace_deletes_its_objects() {
    let server = TestApiServer::start().await;
    let client = server.client();
    let namespaces: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(client.clone());
    let ns = namespaces
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "gone"}})).unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(ns.status.unwrap().phase.as_deref(), Some("Active"));
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "gone");
    cms.create(&PostParams::default(), &cm("x", &[]))
        .await
        .unwrap();
    let other: Api<ConfigMap> = Api::namespaced(client, "kept");
    other
        .create(&PostParams::default(), &cm("x", &[]))
        .await
        .unwrap();
    namespaces
        .delete("gone", &DeleteParams::default())
        .await
        .unwrap();
    assert!(cms.get_opt("x").await.unwrap().is_none());
    assert!(other.get_opt("x").await.unwrap().is_some());
}

#[tokio::test]
async fn delete_answers_like_the_apiserver() {
    let server = TestApiServer::start().await;
    let api: Api<ConfigMap> = Api::default_namespaced(server.client());
    api.create(&PostParams::default(), &cm("now", &[]))
        .await
        .unwrap();
    let gone = api.delete("now", &DeleteParams::default()).await.unwrap();
    assert!(
        gone.right().is_some_and(|s| s.is_success()),
        "immediate delete returns a success Status"
    );

    let mut held = cm("held", &[]);
    held.metadata.finalizers = Some(vec!["x/y".into()]);
    api.create(&PostParams::default(), &held).await.unwrap();
    let pending = api.delete("held", &DeleteParams::default()).await.unwrap();
    let obj = pending.left().expect("pending deletion returns the object");
    assert!(obj.metadata.deletion_timestamp.is_some());
    let err = api_err(
        api.delete("missing", &DeleteParams::default())
            .await
            .unwrap_err(),
    );
    assert_eq!(err.code, 404);
}

#[tokio::test]
async fn json_patch_test_of_null_passes_on_missing_path() {
    // kube::runtime::finalizer adds the first finalizer with exactly this patch.
    let server = TestApiServer::start().await;
    let api: Api<ConfigMap> = Api::default_namespaced(server.client());
    api.create(&PostParams::default(), &cm("f", &[]))
        .await
        .unwrap();
    let p: json_patch::Patch = serde_json::from_value(json!([
        {"op": "test", "path": "/metadata/finalizers", "value": null},
        {"op": "add", "path": "/metadata/finalizers", "value": ["x/y"]}
    ]))
    .unwrap();
    let got = api
        .patch("f", &PatchParams::default(), &Patch::Json::<()>(p))
        .await
        .unwrap();
    assert_eq!(got.metadata.finalizers, Some(vec!["x/y".to_string()]));
}

#[tokio::test]
async fn lists_paginate_with_limit_and_continue() {
    let server = TestApiServer::start().await;
    for i in 0..7 {
        server.put(serde_json::to_value(cm(&format!("cm-{i}"), &[("page", "yes")])).unwrap());
    }
    server.put(serde_json::to_value(cm("other", &[])).unwrap());
    let api: Api<ConfigMap> = Api::namespaced(server.client(), "default");
    let mut names = Vec::new();
    let mut pages = 0;
    let mut token: Option<String> = None;
    let mut first_rv = None;
    loop {
        let mut lp = ListParams::default().labels("page=yes").limit(3);
        if let Some(t) = &token {
            lp = lp.continue_token(t);
        }
        let page = api.list(&lp).await.unwrap();
        pages += 1;
        assert!(page.items.len() <= 3);
        // Every page reports the resourceVersion of the first one.
        let rv = page.metadata.resource_version.clone();
        assert_eq!(*first_rv.get_or_insert(rv.clone()), rv);
        names.extend(page.items.iter().map(|c| c.metadata.name.clone().unwrap()));
        match page.metadata.continue_.filter(|c| !c.is_empty()) {
            Some(t) => token = Some(t),
            None => break,
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(names, (0..7).map(|i| format!("cm-{i}")).collect::<Vec<_>>());
    // Without a limit everything comes at once; a bad token is a 400, not a panic.
    assert_eq!(
        api.list(&ListParams::default()).await.unwrap().items.len(),
        8
    );
    let err = api
        .list(&ListParams::default().limit(2).continue_token("garbage"))
        .await
        .unwrap_err();
    assert_eq!(api_err(err).code, 400);
}
