//! Server-side apply: creation, field ownership, conflicts, force, status apply.

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, Patch, PatchParams};
use serde_json::{Value, json};
use spin_test_apiserver::{ResourceKey, TestApiServer, Verb};

fn apply_cm(data: Value) -> Patch<Value> {
    Patch::Apply(
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": data}),
    )
}

fn managers(obj: &Value) -> Vec<(String, String)> {
    obj["metadata"]["managedFields"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| {
            (
                e["manager"].as_str().unwrap().to_string(),
                e["operation"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[tokio::test]
async fn apply_creates_then_updates_and_tracks_managers() {
    let server = TestApiServer::start().await;
    let api: Api<ConfigMap> = Api::default_namespaced(server.client());
    let pp = PatchParams::apply("alpha");
    let created = api
        .patch("c", &pp, &apply_cm(json!({"a": "1", "b": "2"})))
        .await
        .unwrap();
    assert!(created.metadata.resource_version.is_some());
    let create_status = server.requests().last().unwrap().status;
    assert_eq!(create_status, 201);

    let stored = server
        .get(&ResourceKey::of::<ConfigMap>(), None, "c")
        .unwrap();
    assert_eq!(
        managers(&stored),
        [("alpha".to_string(), "Apply".to_string())]
    );
    assert_eq!(
        stored["metadata"]["managedFields"][0]["fieldsV1"],
        json!({"f:data": {"f:a": {}, "f:b": {}}})
    );

    // Dropping a field from the applied config removes it.
    let updated = api
        .patch("c", &pp, &apply_cm(json!({"a": "1"})))
        .await
        .unwrap();
    assert_eq!(updated.data.unwrap().len(), 1);

    // Re-applying the same config is a no-op: no new resourceVersion.
    let again = api
        .patch("c", &pp, &apply_cm(json!({"a": "1"})))
        .await
        .unwrap();
    let rv_before = server
        .get(&ResourceKey::of::<ConfigMap>(), None, "c")
        .unwrap()["metadata"]["resourceVersion"]
        .clone();
    assert_eq!(json!(again.metadata.resource_version), rv_before);
    let again2 = api
        .patch("c", &pp, &apply_cm(json!({"a": "1"})))
        .await
        .unwrap();
    assert_eq!(
        again2.metadata.resource_version,
        again.metadata.resource_version
    );
}

#[tokio::test]
async fn apply_conflicts_between_managers_unless_forced() {
    let server = TestApiServer::start().await;
    let api: Api<ConfigMap> = Api::default_namespaced(server.client());
    api.patch(
        "c",
        &PatchParams::apply("alpha"),
        &apply_cm(json!({"a": "1"})),
    )
    .await
    .unwrap();

    let err = api
        .patch(
            "c",
            &PatchParams::apply("beta"),
            &apply_cm(json!({"a": "2"})),
        )
        .await
        .unwrap_err();
    let kube::Error::Api(status) = err else {
        panic!("expected API error")
    };
    assert_eq!((status.code, status.reason.as_str()), (409, "Conflict"));
    assert!(
        status.message.contains("conflict with \"alpha\""),
        "{}",
        status.message
    );
    assert!(status.message.contains(".data.a"), "{}", status.message);

    // Same value: co-ownership, no conflict.
    api.patch(
        "c",
        &PatchParams::apply("beta"),
        &apply_cm(json!({"a": "1"})),
    )
    .await
    .unwrap();

    let forced = api
        .patch(
            "c",
            &PatchParams::apply("gamma").force(),
            &apply_cm(json!({"a": "3"})),
        )
        .await
        .unwrap();
    assert_eq!(forced.data.unwrap()["a"], "3");
    let stored = server
        .get(&ResourceKey::of::<ConfigMap>(), None, "c")
        .unwrap();
    assert_eq!(
        managers(&stored),
        [("gamma".to_string(), "Apply".to_string())]
    );
}

#[tokio::test]
async fn merge_patch_takes_ownership_from_applier() {
    let server = TestApiServer::start().await;
    let api: Api<ConfigMap> = Api::default_namespaced(server.client());
    api.patch(
        "c",
        &PatchParams::apply("alpha"),
        &apply_cm(json!({"a": "1"})),
    )
    .await
    .unwrap();
    let pp = PatchParams {
        field_manager: Some("editor".into()),
        ..Default::default()
    };
    api.patch("c", &pp, &Patch::Merge(json!({"data": {"a": "edited"}})))
        .await
        .unwrap();
    let err = api
        .patch(
            "c",
            &PatchParams::apply("alpha"),
            &apply_cm(json!({"a": "1"})),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, kube::Error::Api(s) if s.code == 409 && s.message.contains("editor")));
    let fixed = api
        .patch(
            "c",
            &PatchParams::apply("alpha").force(),
            &apply_cm(json!({"a": "1"})),
        )
        .await
        .unwrap();
    assert_eq!(fixed.data.unwrap()["a"], "1");
}

#[tokio::test]
async fn apply_requires_field_manager_and_type() {
    let server = TestApiServer::start().await;
    let api: Api<ConfigMap> = Api::default_namespaced(server.client());
    let err = api
        .patch("c", &PatchParams::default(), &apply_cm(json!({})))
        .await;
    // kube validates this client-side or the server answers 400: never a success.
    assert!(err.is_err());
    let err = api
        .patch(
            "c",
            &PatchParams::apply("a"),
            &Patch::Apply(json!({"metadata": {"name": "c"}, "data": {}})),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, kube::Error::Api(s) if s.code == 400));
}

#[tokio::test]
async fn apply_namespace_must_match_the_url() {
    let server = TestApiServer::start().await;
    let api: Api<ConfigMap> = Api::namespaced(server.client(), "one");
    let cfg = Patch::Apply(json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "c", "namespace": "two"}}));
    let err = api
        .patch("c", &PatchParams::apply("a"), &cfg)
        .await
        .unwrap_err();
    assert!(matches!(err, kube::Error::Api(s) if s.code == 400));
}

#[tokio::test]
async fn status_apply_is_separate_from_spec_apply() {
    let server = TestApiServer::start().await;
    let api: Api<Deployment> = Api::default_namespaced(server.client());
    let spec = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"},
        "spec": {"replicas": 2, "selector": {"matchLabels": {"a": "b"}},
                 "template": {"metadata": {"labels": {"a": "b"}}, "spec": {"containers": [{"name": "c", "image": "i:1"}]}}},
        "status": {"replicas": 7}});
    let d = api
        .patch("d", &PatchParams::apply("op").force(), &Patch::Apply(spec))
        .await
        .unwrap();
    assert!(
        d.status.is_none_or(|s| s.replicas.is_none()),
        "status ignored on main resource"
    );

    let st = api
        .patch_status(
            "d",
            &PatchParams::apply("kcm").force(),
            &Patch::Apply(
                json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"},
                "status": {"readyReplicas": 2}}),
            ),
        )
        .await
        .unwrap();
    assert_eq!(st.status.unwrap().ready_replicas, Some(2));
    assert_eq!(st.metadata.generation, Some(1));
    let stored = server
        .get(&ResourceKey::of::<Deployment>(), None, "d")
        .unwrap();
    let subresources: Vec<Value> = stored["metadata"]["managedFields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e.get("subresource").cloned().unwrap_or(Value::Null))
        .collect();
    assert_eq!(subresources, [Value::Null, json!("status")]);
    let verbs: Vec<(Verb, Option<String>)> = server
        .requests()
        .into_iter()
        .map(|r| (r.verb, r.subresource))
        .collect();
    assert_eq!(
        verbs,
        [(Verb::Patch, None), (Verb::Patch, Some("status".into()))]
    );
}

#[tokio::test]
async fn reapplying_defaulted_lists_is_a_no_op_even_when_co_owned() {
    let server = TestApiServer::start().await;
    let api: Api<Deployment> = Api::default_namespaced(server.client());
    let cfg = Patch::Apply(
        json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"},
        "spec": {"selector": {"matchLabels": {"a": "b"}},
                 "template": {"metadata": {"labels": {"a": "b"}},
                              "spec": {"containers": [{"name": "c", "image": "i:1", "ports": [{"containerPort": 80}]}]}}}}),
    );
    let first = api
        .patch("d", &PatchParams::apply("op"), &cfg)
        .await
        .unwrap();
    // The server defaulted fields inside the (atomic) containers list.
    let c = &first.spec.template.spec.as_ref().unwrap().containers[0];
    assert_eq!(c.image_pull_policy.as_deref(), Some("IfNotPresent"));
    // A second manager applies the same values: shared ownership.
    let second = api
        .patch("d", &PatchParams::apply("other"), &cfg)
        .await
        .unwrap();
    let again = api
        .patch("d", &PatchParams::apply("op"), &cfg)
        .await
        .unwrap();
    // Recording the second manager was a write; the re-apply is not, and nothing conflicts.
    assert_eq!(
        again.metadata.resource_version,
        second.metadata.resource_version
    );
    assert_eq!(again.metadata.generation, Some(1));
}

/// Preconditions in an apply body, as kube-apiserver 1.37 answers them (measured there; the
/// operator's ownership check relies on them, see `tests/cluster/e2e/test_ownership.py`): a
/// `resourceVersion` is ignored when the apply creates the object and refuses (409) any other
/// version of an existing one; a `uid` refuses to create (409) and to write an object with
/// another uid (422, the field's immutability).
#[tokio::test]
async fn apply_preconditions_refuse_without_writing() {
    let server = TestApiServer::start().await;
    let api: Api<ConfigMap> = Api::default_namespaced(server.client());
    let pp = PatchParams::apply("alpha").force();
    let cm = |meta: Value, data: Value| {
        let mut meta = meta;
        meta["name"] = json!("c");
        Patch::Apply(
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta, "data": data}),
        )
    };
    let code = |r: Result<ConfigMap, kube::Error>| match r {
        Err(kube::Error::Api(s)) => (s.code, s.reason.clone(), s.message.clone(), s.details),
        other => panic!("expected a refusal, got {other:?}"),
    };
    let key = ResourceKey::of::<ConfigMap>();

    let (status, reason, message, _) = code(
        api.patch(
            "c",
            &pp,
            &cm(json!({"uid": "placeholder"}), json!({"a": "1"})),
        )
        .await,
    );
    assert_eq!((status, reason.as_str()), (409, "Conflict"));
    assert!(message.contains("uid mismatch"), "{message}");
    assert!(server.get(&key, None, "c").is_none(), "nothing created");

    // Version 1 (etcd's initial revision, which no write gets) creates...
    let created = api
        .patch(
            "c",
            &pp,
            &cm(json!({"resourceVersion": "1"}), json!({"a": "1"})),
        )
        .await
        .unwrap();
    assert_ne!(created.metadata.resource_version.as_deref(), Some("1"));
    let stored = server.get(&key, None, "c").unwrap();
    // ...and never matches an existing object.
    let (status, reason, ..) = code(
        api.patch(
            "c",
            &pp,
            &cm(json!({"resourceVersion": "1"}), json!({"a": "2"})),
        )
        .await,
    );
    assert_eq!((status, reason.as_str()), (409, "Conflict"));
    let (status, reason, _, details) = code(
        api.patch("c", &pp, &cm(json!({"uid": "another"}), json!({"a": "2"})))
            .await,
    );
    assert_eq!((status, reason.as_str()), (422, "Invalid"));
    let causes = details.unwrap().causes;
    assert_eq!(causes[0].field, "metadata.uid", "{causes:?}");
    assert_eq!(server.get(&key, None, "c").unwrap(), stored, "not written");

    // Its own uid applies; neither precondition is recorded as owned.
    let uid = created.metadata.uid.unwrap();
    let updated = api
        .patch("c", &pp, &cm(json!({"uid": uid}), json!({"a": "2"})))
        .await
        .unwrap();
    assert_eq!(updated.data.unwrap()["a"], "2");
    let stored = server.get(&key, None, "c").unwrap();
    assert_eq!(stored["metadata"]["uid"], json!(uid));
    assert_eq!(
        stored["metadata"]["managedFields"][0]["fieldsV1"],
        json!({"f:data": {"f:a": {}}})
    );
}
