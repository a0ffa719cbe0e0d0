//! Readiness shared by all components, and the plain-HTTP health/metrics server
//! (`/healthz`, `/readyz`, `/metrics`). Kept off the admission port: probes and scrapes need
//! no TLS, and the admission port serves nothing but AdmissionReviews. `/metrics` may require
//! authentication and authorization ([`MetricsAuth`]); the probes never do.

use std::collections::BTreeMap;
use std::sync::{Arc, PoisonError, RwLock};

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use prometheus_client::registry::Registry;

pub use super::metrics_auth::MetricsAuth;

/// Path of the metrics endpoint (the non-resource URL the metrics-reader ClusterRole grants).
pub const METRICS_PATH: &str = "/metrics";

/// Named readiness checks. The process is ready when every registered check is ready; a check
/// starts not ready. Cheap to clone: all clones share the same checks.
#[derive(Debug, Clone, Default)]
pub struct Readiness {
    checks: Arc<RwLock<BTreeMap<String, bool>>>,
}

/// One component's readiness switch, handed out by [`Readiness::register`].
#[derive(Debug, Clone)]
pub struct ReadinessCheck {
    name: String,
    readiness: Readiness,
}

impl Readiness {
    pub fn new() -> Self {
        Self::default()
    }

    /// Add a check named `name` (not ready yet). Registering an existing name returns a handle
    /// to the same check.
    pub fn register(&self, name: &str) -> ReadinessCheck {
        self.checks
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(name.to_string())
            .or_insert(false);
        ReadinessCheck {
            name: name.to_string(),
            readiness: self.clone(),
        }
    }

    /// True when at least one check is registered and all are ready.
    pub fn is_ready(&self) -> bool {
        let checks = self.checks.read().unwrap_or_else(PoisonError::into_inner);
        !checks.is_empty() && checks.values().all(|ready| *ready)
    }

    /// Every check and its state, sorted by name.
    pub fn checks(&self) -> Vec<(String, bool)> {
        self.checks
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .map(|(name, ready)| (name.clone(), *ready))
            .collect()
    }

    fn set(&self, name: &str, ready: bool) {
        self.checks
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(name.to_string(), ready);
    }
}

impl ReadinessCheck {
    pub fn set_ready(&self, ready: bool) {
        self.readiness.set(&self.name, ready);
    }
    pub fn name(&self) -> &str {
        &self.name
    }
}

#[derive(Clone)]
struct HealthState {
    readiness: Readiness,
    registry: Arc<Registry>,
    metrics_auth: Option<MetricsAuth>,
}

/// Router of the health/metrics server; `/metrics` checks `metrics_auth` when given.
pub fn health_router(
    readiness: Readiness,
    registry: Arc<Registry>,
    metrics_auth: Option<MetricsAuth>,
) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route(METRICS_PATH, get(metrics))
        .with_state(HealthState {
            readiness,
            registry,
            metrics_auth,
        })
}

async fn readyz(State(state): State<HealthState>) -> Response {
    let checks = state.readiness.checks();
    let body: String = checks
        .iter()
        .map(|(name, ready)| format!("[{}] {name}\n", if *ready { "+" } else { "-" }))
        .collect();
    let status = if state.readiness.is_ready() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, body).into_response()
}

async fn metrics(State(state): State<HealthState>, headers: HeaderMap) -> Response {
    if let Some(auth) = &state.metrics_auth
        && let Some(refused) = auth.refusal(&headers).await
    {
        return refused;
    }
    let mut out = String::new();
    match prometheus_client::encoding::text::encode(&mut out, &state.registry) {
        Ok(()) => (
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            out,
        )
            .into_response(),
        Err(_) => (StatusCode::SERVICE_UNAVAILABLE, "metrics encoding failed\n").into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::Request;
    use tower::ServiceExt;

    #[test]
    fn ready_only_when_all_checks_ready() {
        let r = Readiness::new();
        assert!(!r.is_ready(), "no checks registered yet");
        let caches = r.register("caches");
        let cert = r.clone().register("certificate");
        assert!(!r.is_ready());
        caches.set_ready(true);
        assert!(!r.is_ready());
        cert.set_ready(true);
        assert!(r.is_ready());
        cert.set_ready(false);
        assert!(!r.is_ready());
        assert_eq!(
            r.checks(),
            vec![
                ("caches".to_string(), true),
                ("certificate".to_string(), false)
            ]
        );
    }

    #[tokio::test]
    async fn readyz_reflects_checks() {
        let r = Readiness::new();
        let check = r.register("caches");
        let app = health_router(r, Arc::new(Registry::default()), None);
        let get = |path: &str| Request::get(path).body(Body::empty()).unwrap();
        let resp = app.clone().oneshot(get("/readyz")).await.unwrap();
        assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
        check.set_ready(true);
        let resp = app.clone().oneshot(get("/readyz")).await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        let resp = app.clone().oneshot(get("/healthz")).await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        let resp = app.oneshot(get("/metrics")).await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
    }
}
