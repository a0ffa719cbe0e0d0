//! A deterministic driver for profiling one admission review without TLS or sockets: the
//! production `router` (axum + tower layers + handler + rules + encoding) called in-process with
//! the `admission_load` bodies, the lookup being the reflector-backed `CachedLookup` fed
//! directly. Run it under callgrind, whose instruction counts are repeatable on a noisy machine:
//!
//! ```text
//! cargo bench --bench admission_profile --no-run
//! PROFILE=validate PROFILE_ITERS=2000 valgrind --tool=callgrind \
//!     --callgrind-out-file=/tmp/cg.out target/release/deps/admission_profile-<hash> --bench
//! callgrind_annotate --inclusive=yes /tmp/cg.out | head -60
//! ```
//!
//! `PROFILE` is `validate` (default), `mutate`, `trivial` (the load bench's trivial endpoint: a
//! router that reads the body and answers `{"ok":true}`) or `rules` (default + apply patch +
//! validate of the bench's app, no HTTP layer). `PROFILE_LOG=1` installs the production JSON log
//! format (as `spin-operator run`, level info) writing to a sink, to price the per-decision
//! audit line; `PROFILE_LOG=events` has the subscriber format it instead (before
//! `AuditLog::start_json`). Without `--bench` (as in `cargo test --all-targets`) it runs a few iterations and
//! checks the answers.

use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::http::Request;
use kube::runtime::watcher::Event;
use prometheus_client::registry::Registry;
use serde_json::Value;
use spin_operator::admission::audit::{AuditLog, LogWriter, QUEUE_LINES};
use spin_operator::admission::cache::{self, CacheConfig};
use spin_operator::admission::{AdmissionMetrics, AdmissionState, router};
use spin_operator::rules::{self, Operation, Options};
use tower::ServiceExt;

#[path = "../tests/support/review_bodies.rs"]
mod bodies;

fn state() -> AdmissionState {
    let (lookup, mut writers) = cache::stores(CacheConfig::default());
    let executor = serde_json::from_value(bodies::executor()).unwrap();
    writers
        .executors
        .apply_watcher_event(&Event::Apply(executor));
    let mut registry = Registry::default();
    AdmissionState::new(
        Arc::new(lookup),
        Options::default(),
        AdmissionMetrics::register(&mut registry),
    )
}

/// One review through the router; returns the response body.
async fn call(app: &axum::Router, path: &str, body: &Bytes) -> Bytes {
    let resp = app
        .clone()
        .oneshot(
            Request::post(path)
                .header("content-type", "application/json")
                .body(Body::from(body.clone()))
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    axum::body::to_bytes(resp.into_body(), usize::MAX)
        .await
        .unwrap()
}

/// The criterion bench's unit of work on the bench's own app: default, apply, validate.
fn rules_once(object: &Value, lookup: &dyn spin_operator::inventory::Lookup) -> bool {
    let opts = Options::default();
    let req = rules::Request {
        operation: Operation::Create,
        namespace: bodies::NS,
        name: "web",
        object: Some(object),
        old_object: None,
    };
    let mutation = rules::mutate_spinapp(&req, lookup, &opts);
    let mut patched = object.clone();
    if json_patch::patch(&mut patched, &mutation.patch).is_err() {
        return false;
    }
    let req = rules::Request {
        object: Some(&patched),
        ..req
    };
    rules::validate_spinapp(&req, lookup, &opts).allowed()
}

fn main() {
    let bench = std::env::args().any(|a| a == "--bench");
    let iters: usize = std::env::var("PROFILE_ITERS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(if bench { 2000 } else { 3 });
    let mode = std::env::var("PROFILE").unwrap_or_else(|_| "validate".to_string());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let log = std::env::var("PROFILE_LOG").unwrap_or_default();
    let out = LogWriter::new(std::io::sink());
    if !log.is_empty() {
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new("info"))
            .json()
            .flatten_event(true)
            .with_writer(out.clone())
            .init();
    }
    let mut state = state();
    if log == "1" {
        // As `run --log-format json`: the writer thread serializes the line itself.
        let dropped = state.metrics.audit_dropped();
        state = state.with_audit(AuditLog::start_json(QUEUE_LINES, dropped, out));
    }
    match mode.as_str() {
        "trivial" => {
            let app = axum::Router::new().route(
                "/trivial",
                axum::routing::post(|_body: Bytes| async {
                    ([("content-type", "application/json")], r#"{"ok":true}"#)
                }),
            );
            let body = Bytes::from(bodies::validate_body());
            rt.block_on(async {
                assert_eq!(&call(&app, "/trivial", &body).await[..], br#"{"ok":true}"#);
                for _ in 0..iters {
                    std::hint::black_box(call(&app, "/trivial", std::hint::black_box(&body)).await);
                }
            });
        }
        "rules" => {
            let object = bodies::app(None, None);
            let lookup = state.lookup.clone();
            for _ in 0..iters {
                assert!(rules_once(std::hint::black_box(&object), lookup.as_ref()));
            }
        }
        "validate" | "mutate" => {
            let (path, body) = if mode == "validate" {
                (bodies::VALIDATE_APP, bodies::validate_body())
            } else {
                (bodies::MUTATE_APP, bodies::mutate_body())
            };
            let body = Bytes::from(body);
            let app = router(state);
            rt.block_on(async {
                // Checked once in full; the loop only calls (decoding the answer would be
                // profiled too).
                let review: Value = serde_json::from_slice(&call(&app, path, &body).await).unwrap();
                assert_eq!(review["response"]["allowed"], true, "{review}");
                assert_eq!(
                    review["response"]["patch"].is_string(),
                    mode == "mutate",
                    "{review}"
                );
                for _ in 0..iters {
                    std::hint::black_box(call(&app, path, std::hint::black_box(&body)).await);
                }
            });
        }
        other => panic!("PROFILE must be validate, mutate, trivial or rules, not {other:?}"),
    }
    println!("admission_profile: {iters} × {mode}");
}
