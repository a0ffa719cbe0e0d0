//! A fake Kubernetes API server for the admission tests: list responses for the resources the
//! webhook caches watch, watches that stay open and quiet, and a log of every call.
#![allow(dead_code)]

use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::http::{Request, Response, StatusCode};
use serde_json::{Value, json};

/// Every request the fake API server saw, as `METHOD path?query accept=...`.
pub type Calls = Arc<Mutex<Vec<String>>>;

fn list(kind: &str, api_version: &str, items: Vec<Value>) -> Value {
    json!({
        "apiVersion": api_version,
        "kind": format!("{kind}List"),
        "metadata": {"resourceVersion": "100"},
        "items": items,
    })
}

pub fn executor(name: &str) -> Value {
    json!({
        "apiVersion": "core.spinkube.dev/v1alpha1",
        "kind": "SpinAppExecutor",
        "metadata": {"name": name, "namespace": "apps", "resourceVersion": "1",
                     "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{}"}},
        "spec": {"createDeployment": true, "deploymentConfig": {"runtimeClassName": "wasmtime-spin-v2"}},
    })
}

fn partial(kind: &str, name: &str) -> Value {
    json!({
        "apiVersion": "meta.k8s.io/v1",
        "kind": "PartialObjectMetadata",
        "metadata": {"name": name, "namespace": "apps", "resourceVersion": "2",
                     "annotations": {"kubectl.kubernetes.io/last-applied-configuration":
                        format!("{{\"kind\":\"{kind}\",\"data\":{{\"password\":\"hunter2\"}}}}")}},
    })
}

fn list_body(path: &str) -> Option<Value> {
    Some(match path {
        "/apis/core.spinkube.dev/v1alpha1/spinappexecutors" => list(
            "SpinAppExecutor",
            "core.spinkube.dev/v1alpha1",
            vec![executor("zeta"), executor("containerd-shim-spin")],
        ),
        "/apis/core.spinkube.dev/v1alpha1/spinapps" => list(
            "SpinApp",
            "core.spinkube.dev/v1alpha1",
            vec![json!({
                "apiVersion": "core.spinkube.dev/v1alpha1",
                "kind": "SpinApp",
                "metadata": {"name": "hello", "namespace": "apps", "resourceVersion": "3"},
                // Does not decode as a typed SpinApp: the untyped app cache must not care.
                "spec": {"executor": "zeta", "replicas": "three", "image": 7},
            })],
        ),
        "/api/v1/secrets" => list(
            "PartialObjectMetadata",
            "meta.k8s.io/v1",
            vec![partial("Secret", "db-creds")],
        ),
        "/api/v1/configmaps" => list(
            "PartialObjectMetadata",
            "meta.k8s.io/v1",
            vec![partial("ConfigMap", "settings")],
        ),
        _ => return None,
    })
}

/// The fake API server as an axum router (usable as a `kube::Client` service or over TCP).
pub fn fake_api(calls: Calls) -> axum::Router {
    axum::Router::new().fallback(move |req: Request<Body>| {
        let calls = calls.clone();
        async move {
            let path = req.uri().path().to_string();
            let query = req.uri().query().unwrap_or("").to_string();
            let accept = req
                .headers()
                .get("accept")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_string();
            calls
                .lock()
                .unwrap()
                .push(format!("{} {path}?{query} accept={accept}", req.method()));
            let watching = query.split('&').any(|kv| kv == "watch=true");
            match (watching, list_body(&path)) {
                // A watch that stays open and quiet, like an idle cluster.
                (true, Some(_)) => Response::new(Body::from_stream(futures::stream::pending::<
                    Result<axum::body::Bytes, std::convert::Infallible>,
                >())),
                (false, Some(body)) => {
                    Response::new(Body::from(serde_json::to_vec(&body).unwrap()))
                }
                (_, None) => {
                    let mut r = Response::new(Body::from("{}"));
                    *r.status_mut() = StatusCode::NOT_FOUND;
                    r
                }
            }
        }
    })
}

/// Posts `review` to `path` on the admission router; the AdmissionReview's `response`.
pub async fn admit(app: &axum::Router, path: &str, review: &Value) -> Value {
    use tower::ServiceExt;
    let resp = app
        .clone()
        .oneshot(
            Request::post(path)
                .header("content-type", "application/json")
                .body(Body::from(serde_json::to_vec(review).unwrap()))
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX)
        .await
        .unwrap();
    let body: Value = serde_json::from_slice(&bytes).unwrap();
    body["response"].clone()
}
