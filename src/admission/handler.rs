//! The axum side: one POST route per [`ROUTES`] entry, body limit, timeout, panic guard, and the
//! per-decision log line and metrics.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, FromRequest, Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use kube::core::admission::AdmissionResponse;
use tokio::sync::Semaphore;
use tower::ServiceBuilder;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::timeout::TimeoutLayer;

use super::audit::{self, AuditFields, AuditLine, AuditLog};
use super::budget::{self, Budget};
use super::executor_fetch::{ExecutorFetch, Reviewing};
use super::held::{HeldBack, Snapshot};
use super::idle::Caller;
use super::metrics::{AdmissionMetrics, Outcome};
use super::review::{self, RawRequest, Rejection, Reviewed};
use super::routes::{Action, ROUTES, Route, WebhookResource};
use super::view;
use crate::inventory::Lookup;
use crate::rules::{self, Decision, Options};

/// Largest AdmissionReview accepted (the apiserver's own object limit is ~1.5 MiB; a review can
/// carry two copies).
pub const MAX_BODY_BYTES: usize = 3 * 1024 * 1024;
/// Whole-request deadline for the webhooks' default `timeoutSeconds` (5), see [`deadline_for`].
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(4);
/// Bodies up to this size are judged on the runtime worker that read them: the worst body
/// takes about 1 ms per 16 KiB (BENCHMARKS.md, "Webhook under hostile load"), a normal review
/// 10 µs, less than handing it to a blocking thread costs. Larger ones run on the blocking
/// pool, one per core at a time, so they never hold the workers that read other requests.
pub const INLINE_BODY_BYTES: usize = 16 * 1024;

/// The server's deadline for a webhook whose `timeoutSeconds` is `timeout_seconds`: a quarter
/// of it, at most one second, is left for the network and the API server's own handling, so our
/// answer (a denial or 408 on timeout) never arrives after the API server has given up.
pub fn deadline_for(timeout_seconds: u64) -> Duration {
    let timeout = Duration::from_secs(timeout_seconds.max(1));
    timeout - (timeout / 4).min(Duration::from_secs(1))
}

/// What the admission handlers share. Cheap to clone.
#[derive(Clone)]
pub struct AdmissionState {
    /// Cluster view (watched caches in `run`, an `Inventory` in tests and offline).
    pub lookup: Arc<dyn Lookup>,
    pub options: Options,
    pub metrics: AdmissionMetrics,
    /// Fetches an executor a SpinApp review missed in the cache (`run`); none: cache only.
    pub executor_fetch: Option<ExecutorFetch>,
    /// Memory in flight: past it, requests are shed with 429.
    pub budget: Budget,
    /// Whole-request deadline (a 408 answers a request that misses it).
    pub deadline: Duration,
    /// Set while a review's first decision may be redone (see [`handle_fetching`]): its
    /// effects wait there.
    held: Option<Arc<HeldBack>>,
    /// When the review arrived, once a decision of it was made (a redone decision's latency
    /// counts from there).
    started: Option<Instant>,
    /// Blocking threads judging large bodies at once: CPU work has no use for more threads
    /// than cores, and a bounded number keeps the worst case of each measurable.
    workers: Arc<Semaphore>,
    /// The queue of audit lines to their writer thread.
    audit: AuditLog,
}

impl AdmissionState {
    pub fn new(lookup: Arc<dyn Lookup>, options: Options, metrics: AdmissionMetrics) -> Self {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        Self {
            lookup,
            options,
            executor_fetch: None,
            budget: Budget::default(),
            deadline: REQUEST_TIMEOUT,
            held: None,
            started: None,
            workers: Arc::new(Semaphore::new(cores)),
            audit: AuditLog::start(audit::QUEUE_LINES, metrics.audit_dropped()),
            metrics,
        }
    }

    /// The same state with another in-flight memory budget.
    pub fn with_budget(mut self, budget: Budget) -> Self {
        self.budget = budget;
        self
    }

    /// The same state with another whole-request deadline.
    pub fn with_deadline(mut self, deadline: Duration) -> Self {
        self.deadline = deadline;
        self
    }

    /// The same state with another audit log writer.
    pub fn with_audit(mut self, audit: AuditLog) -> Self {
        self.audit = audit;
        self
    }

    /// This state, fetching executors the cache misses with `fetch`.
    pub fn with_executor_fetch(mut self, fetch: ExecutorFetch) -> Self {
        self.executor_fetch = Some(fetch);
        self
    }
}

/// The admission router: every route of [`ROUTES`], nothing else (other paths are 404).
pub fn router(state: AdmissionState) -> Router {
    let deadline = state.deadline;
    let mut app = Router::new();
    for route in ROUTES {
        app = app.route(
            route.path,
            post(
                move |State(state): State<AdmissionState>, request: Request| {
                    serve(state, route, request)
                },
            ),
        );
    }
    // One composite layer (outermost first): each `Router::layer` call wraps every route in
    // another boxed service, cloned per request.
    app.with_state(state).layer(
        ServiceBuilder::new()
            // Last resort: decisions already run under catch_unwind with the uid at hand; this
            // catches anything outside it and still answers a denial, never a bare 500.
            .layer(CatchPanicLayer::custom(
                |_: Box<dyn std::any::Any + Send>| {
                    json_response(review::rejected("", "internal error in admission webhook"))
                },
            ))
            .layer(TimeoutLayer::with_status_code(
                StatusCode::REQUEST_TIMEOUT,
                deadline,
            ))
            .layer(DefaultBodyLimit::max(MAX_BODY_BYTES)),
    )
}

/// One request: charged to the memory budget before its body is read (or shed), then judged.
async fn serve(state: AdmissionState, route: &'static Route, request: Request) -> Response {
    // Who the TLS layer says called (a verified client certificate or not), for the audit line.
    let caller = request
        .extensions()
        .get::<Caller>()
        .copied()
        .unwrap_or_default();
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<usize>().ok());
    // Larger declared bodies are refused by the body limit below, unread; an undeclared size
    // is charged as the largest until read.
    let charged = declared.unwrap_or(MAX_BODY_BYTES).min(MAX_BODY_BYTES);
    let Some(mut charge) = state.budget.try_charge(budget::body_cost(charged)) else {
        return shed(&state, route);
    };
    let body = match Bytes::from_request(request, &()).await {
        Ok(body) => body,
        Err(rejection) => return rejection.into_response(),
    };
    charge.shrink_to(budget::body_cost(body.len()));
    // A small body is charged its bound, without the counting pass, while the budget has ample
    // room; otherwise counted, so that what is shed is still decided by the exact cost.
    if !budget::charge_bound(&state.budget, &mut charge, body.len()) {
        let tree = budget::tree_cost(&body);
        if budget::body_cost(body.len()).saturating_add(tree) > state.budget.total_bytes() {
            // Would never fit: retrying is no use.
            return too_complex(&state, route);
        }
        if !charge.grow(&state.budget, tree) {
            return shed(&state, route);
        }
    }
    if body.len() <= INLINE_BODY_BYTES {
        let inline = |state: AdmissionState| {
            let response = with_caller(caller, || handle(&state, route, &body));
            std::future::ready(response)
        };
        return handle_fetching(&state, route, inline).await;
    }
    // Waiting here is bounded by the deadline (the timeout layer drops this future).
    let Ok(worker) = state.workers.clone().acquire_owned().await else {
        return json_response(review::rejected("", "admission webhook shutting down"));
    };
    // The charge and the worker go with the work: if the deadline answers first, the memory
    // and the thread stay accounted for until the handler is done with them.
    let held = Arc::new((charge, worker));
    let blocking = |state: AdmissionState| {
        let (body, held) = (body.clone(), held.clone());
        async move {
            let judged = tokio::task::spawn_blocking(move || {
                let _held = held;
                with_caller(caller, || handle(&state, route, &body))
            });
            match judged.await {
                Ok(response) => response,
                Err(_) => {
                    json_response(review::rejected("", "internal error in admission webhook"))
                }
            }
        }
    };
    handle_fetching(&state, route, blocking).await
}

/// A body whose parse alone would take more than the whole budget: no retry will fit it.
fn too_complex(state: &AdmissionState, route: &'static Route) -> Response {
    state
        .metrics
        .observe(route.name, Outcome::Error, &[], Duration::ZERO);
    (
        StatusCode::PAYLOAD_TOO_LARGE,
        "admission request has too many JSON values to judge within the webhook's memory budget\n",
    )
        .into_response()
}

/// The answer past the budget: fast, and retryable.
fn shed(state: &AdmissionState, route: &'static Route) -> Response {
    state.metrics.shed(route.name);
    tracing::debug!(
        target: "spin_operator::admission",
        webhook = route.name,
        "admission request shed: in-flight memory budget spent"
    );
    (
        StatusCode::TOO_MANY_REQUESTS,
        [(header::RETRY_AFTER, budget::RETRY_AFTER_SECONDS.to_string())],
        "admission webhook at its in-flight memory budget; retry later\n",
    )
        .into_response()
}

fn json_bytes(bytes: Vec<u8>) -> Response<Body> {
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        bytes,
    )
        .into_response()
}

fn json_response(response: AdmissionResponse) -> Response<Body> {
    match review::encode(response) {
        Ok(bytes) => json_bytes(bytes),
        Err(_) => (
            StatusCode::BAD_REQUEST,
            "could not encode AdmissionReview response\n",
        )
            .into_response(),
    }
}

pub(super) fn handle(state: &AdmissionState, route: &'static Route, body: &[u8]) -> Response {
    let started = state.started.unwrap_or_else(Instant::now);
    if let Some(response) = handle_view(state, route, body, started) {
        return response;
    }
    handle_value(state, route, body, started)
}

/// The common case without a `Value` of the object (building and dropping it was most of a
/// review's CPU): the request with its objects as [`rules::ObjectView`]s and the view rules.
/// `None` hands the request to [`handle_value`] — anything the typed passes do not accept, a
/// spec that does not decode as it is, an UPDATE to ratchet — which answers it the same way
/// the view would have, and words every error.
pub(crate) fn handle_view(
    state: &AdmissionState,
    route: &'static Route,
    body: &[u8],
    started: Instant,
) -> Option<Response> {
    match route.action {
        Action::MutateSpinApp => decide_view(state, route, body, started, |req, lookup| {
            rules::mutate_spinapp_view(req, lookup, &state.options)
        }),
        Action::ValidateSpinApp => decide_view(state, route, body, started, |req, lookup| {
            rules::validate_spinapp_view(req, lookup, &state.options)
        }),
        Action::ValidateExecutor | Action::AllowUnchanged => None,
    }
}

/// [`handle_view`] with the route's view rules, whose objects' specs are read as `S`.
fn decide_view<'a, S: serde::Deserialize<'a>>(
    state: &AdmissionState,
    route: &'static Route,
    body: &'a [u8],
    started: Instant,
    rules: impl FnOnce(&rules::Request<rules::ObjectView<'a, S>>, &dyn Lookup) -> Option<Decision>,
) -> Option<Response> {
    let req = view::parse::<S>(body)?;
    review::check_route(route, &req).ok()?;
    let decided = std::panic::catch_unwind(AssertUnwindSafe(|| {
        if !route.operations.contains(&req.operation) {
            return Some(Decision::default());
        }
        let request = rules::Request {
            operation: review::rules_operation(&req.operation),
            namespace: req.namespace().unwrap_or_default(),
            name: req.name(),
            object: req.object.as_ref(),
            old_object: req.old_object.as_ref(),
        };
        rules(&request, state.lookup.as_ref())
    }));
    let decision = match decided {
        Ok(decision) => decision?,
        Err(_) => return Some(rules_panicked(state, route, &req.uid, started)),
    };
    if let Some(bytes) = review::encode_allowed(route, &req.uid, &decision) {
        record(state, route, &req, &decision, Outcome::Allowed, started);
        return Some(json_bytes(bytes));
    }
    let response = review::respond(route, &req, &decision).ok()?;
    Some(answer(state, route, &req, &decision, response, started))
}

/// The reference path: the objects as `Value`s, for every request.
pub(crate) fn handle_value(
    state: &AdmissionState,
    route: &'static Route,
    body: &[u8],
    started: Instant,
) -> Response {
    let req = match review::parse(body).and_then(|req| {
        review::check_route(route, &req)?;
        Ok(req)
    }) {
        Ok(req) => req,
        Err(rejection) => return reject(state, route, rejection, started),
    };

    let decided = std::panic::catch_unwind(AssertUnwindSafe(|| decide(state, route, &req)));
    let decision = match decided {
        Ok(decision) => decision,
        Err(_) => return rules_panicked(state, route, &req.uid, started),
    };
    let response = match review::respond(route, &req, &decision) {
        Ok(response) => response,
        Err(e) => {
            let rejection = Rejection {
                uid: Some(req.uid.clone()),
                reason: e.to_string(),
            };
            return reject(state, route, rejection, started);
        }
    };
    answer(state, route, &req, &decision, response, started)
}

fn rules_panicked(
    state: &AdmissionState,
    route: &'static Route,
    uid: &str,
    started: Instant,
) -> Response {
    let rejection = Rejection {
        uid: Some(uid.to_string()),
        reason: "internal error while evaluating admission rules".to_string(),
    };
    reject(state, route, rejection, started)
}

/// The decision's log line and metrics, and the answer.
fn answer<R: Reviewed>(
    state: &AdmissionState,
    route: &'static Route,
    req: &R,
    decision: &Decision,
    response: AdmissionResponse,
    started: Instant,
) -> Response {
    let outcome = if response.allowed {
        Outcome::Allowed
    } else {
        Outcome::Denied
    };
    record(state, route, req, decision, outcome, started);
    json_response(response)
}

/// The decision's audit line and metrics.
fn record<R: Reviewed>(
    state: &AdmissionState,
    route: &'static Route,
    req: &R,
    decision: &Decision,
    outcome: Outcome,
    started: Instant,
) {
    if let Some(held) = state.holding() {
        let (req, decision) = (Snapshot::of(req), decision.clone());
        let (caller, metrics, audit) = (
            CALLER.with(|c| c.get()),
            state.metrics.clone(),
            state.audit.clone(),
        );
        held.hold(move || {
            with_caller(caller, || {
                log_decision(&audit, route, &req, &decision, outcome)
            });
            let elapsed = started.elapsed();
            metrics.observe(route.name, outcome, &decision.rules_fired, elapsed);
        });
        return;
    }
    log_decision(&state.audit, route, req, decision, outcome);
    state.metrics.observe(
        route.name,
        outcome,
        &decision.rules_fired,
        started.elapsed(),
    );
}

fn decide(state: &AdmissionState, route: &Route, req: &RawRequest) -> Decision {
    let operation = review::rules_operation(&req.operation);
    let registered = route.operations.contains(&req.operation);
    let request = rules::Request {
        operation,
        namespace: req.namespace().unwrap_or_default(),
        name: req.name(),
        object: req.object.as_ref(),
        old_object: req.old_object.as_ref(),
    };
    let lookup = state.lookup.as_ref();
    match route.action {
        // Operations the route is not registered for have no rules: allow unchanged.
        _ if !registered => Decision::default(),
        Action::MutateSpinApp => rules::mutate_spinapp(&request, lookup, &state.options),
        Action::ValidateSpinApp => rules::validate_spinapp(&request, lookup, &state.options),
        Action::ValidateExecutor => rules::validate_executor(&request, lookup, &state.options),
        Action::AllowUnchanged => Decision::default(),
    }
}

fn reject(
    state: &AdmissionState,
    route: &'static Route,
    rejection: Rejection,
    started: Instant,
) -> Response {
    let effects = {
        let (uid, reason) = (rejection.uid.clone(), rejection.reason.clone());
        let metrics = state.metrics.clone();
        move || {
            tracing::warn!(
                target: "spin_operator::admission",
                webhook = route.name,
                uid = uid.as_deref().unwrap_or(""),
                reason = %reason,
                "admission request rejected"
            );
            metrics.observe(route.name, Outcome::Error, &[], started.elapsed());
        }
    };
    match state.holding() {
        Some(held) => held.hold(effects),
        None => effects(),
    }
    match rejection.uid {
        Some(uid) => json_response(review::rejected(&uid, &rejection.reason)),
        None => (StatusCode::BAD_REQUEST, format!("{}\n", rejection.reason)).into_response(),
    }
}

std::thread_local! {
    /// The caller of the decision being made on this thread (the handlers are synchronous).
    static CALLER: std::cell::Cell<Caller> = const { std::cell::Cell::new(Caller { authenticated: false }) };
}

/// Runs `f` with `caller` as the audit line's caller, on this thread only.
pub(super) fn with_caller<T>(caller: Caller, f: impl FnOnce() -> T) -> T {
    let previous = CALLER.with(|c| c.replace(caller));
    let out = f();
    CALLER.with(|c| c.set(previous));
    out
}

/// One line per decision, for audit. Identifies the request and what fired; never object
/// contents (they may hold secrets or runtime config). The review's `userInfo` is only what
/// the caller claims: unless its client certificate was verified (`--client-ca-file`), anyone
/// who can reach the port can write any user there, so it is logged as `claimed_user`.
/// Built here, formatted and written by the audit writer thread (`audit`).
fn log_decision<R: Reviewed>(
    audit: &AuditLog,
    route: &Route,
    req: &R,
    decision: &Decision,
    outcome: Outcome,
) {
    if !audit::enabled() {
        return;
    }
    audit.write(AuditLine::new(&AuditFields {
        uid: req.uid(),
        caller_authenticated: CALLER.with(|c| c.get()).authenticated,
        claimed_user: req.user(),
        namespace: req.namespace().unwrap_or_default(),
        name: req.name(),
        operation: review::rules_operation(req.operation()).as_str(),
        webhook: route.name,
        allowed: outcome == Outcome::Allowed,
        rules: &decision.rules_fired,
        patch_ops: decision.patch.0.len(),
        warnings: decision.warnings.len(),
        dry_run: req.dry_run(),
    }));
}

/// Decides a review; a SpinApp review that missed its executor in the cache is decided again
/// with the executor fetched (when it exists).
async fn handle_fetching<F, Fut>(
    state: &AdmissionState,
    route: &'static Route,
    judge: F,
) -> Response
where
    F: Fn(AdmissionState) -> Fut,
    Fut: std::future::Future<Output = Response>,
{
    let Some(fetch) = state
        .executor_fetch
        .as_ref()
        .filter(|_| route.resource == WebhookResource::SpinApps)
    else {
        return judge(state.clone()).await;
    };
    let started = Instant::now();
    let first = Arc::new(Reviewing::new(state.lookup.clone(), None));
    // The first decision's audit line and metrics wait until it is known to be the answer.
    let held = Arc::new(HeldBack::new(first.clone()));
    let response = judge(state.for_pass(first.clone(), Some(held.clone()), started)).await;
    let Some((namespace, name)) = first.missed() else {
        return response;
    };
    let Some(executor) = fetch.get(&namespace, &name).await else {
        held.release();
        return response;
    };
    held.discard();
    tracing::debug!(%namespace, executor = %name, "executor fetched for a review; deciding again");
    let again = Reviewing::new(state.lookup.clone(), Some(executor));
    judge(state.for_pass(Arc::new(again), None, started)).await
}

impl AdmissionState {
    /// The state one decision of a review is made with: its view of the cluster, where its
    /// effects go, and when the review arrived.
    fn for_pass(
        &self,
        lookup: Arc<dyn Lookup>,
        held: Option<Arc<HeldBack>>,
        started: Instant,
    ) -> AdmissionState {
        AdmissionState {
            lookup,
            held,
            started: Some(started),
            ..self.clone()
        }
    }

    /// Where this decision's effects wait, when it may be redone.
    fn holding(&self) -> Option<&HeldBack> {
        self.held.as_deref().filter(|held| held.may_redo())
    }
}

#[cfg(test)]
#[path = "handler_view_tests.rs"]
mod view_tests;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::SpinAppExecutor;
    use crate::inventory::{Inventory, Presence};
    use axum::http::Request;
    use serde_json::{Value, json};
    use tower::ServiceExt;

    /// A lookup that panics: the rules must never take the server down with them.
    struct Panicking;
    impl Lookup for Panicking {
        fn executor(&self, _: &str, _: &str) -> Option<SpinAppExecutor> {
            panic!("lookup bug")
        }
        fn executor_names(&self, _: &str) -> Vec<String> {
            panic!("lookup bug")
        }
        fn apps_using_executor(&self, _: &str, _: &str) -> Vec<String> {
            panic!("lookup bug")
        }
        fn secret(&self, _: &str, _: &str) -> Presence {
            panic!("lookup bug")
        }
        fn config_map(&self, _: &str, _: &str) -> Presence {
            panic!("lookup bug")
        }
    }

    fn review(operation: &str) -> Value {
        json!({
            "apiVersion": "admission.k8s.io/v1",
            "kind": "AdmissionReview",
            "request": {
                "uid": "u-h",
                "kind": {"group": "core.spinkube.dev", "version": "v1alpha1", "kind": "SpinApp"},
                "resource": {"group": "core.spinkube.dev", "version": "v1alpha1", "resource": "spinapps"},
                "name": "web", "namespace": "apps", "operation": operation,
                "userInfo": {"username": "bob"},
                "object": {"metadata": {"name": "web"}, "spec": {"image": "ghcr.io/a/b:v1"}},
                "oldObject": {"metadata": {"name": "web"}, "spec": {"image": "ghcr.io/a/b:v1"}},
            }
        })
    }

    async fn call(lookup: Arc<dyn Lookup>, path: &str, body: &Value) -> (StatusCode, Value) {
        let app = router(AdmissionState::new(
            lookup,
            Options::default(),
            AdmissionMetrics::default(),
        ));
        let resp = app
            .oneshot(
                Request::post(path)
                    .body(Body::from(serde_json::to_vec(body).unwrap()))
                    .unwrap(),
            )
            .await
            .unwrap();
        let status = resp.status();
        let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX)
            .await
            .unwrap();
        (
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        )
    }

    #[tokio::test]
    async fn a_panic_in_the_rules_is_a_denial_with_the_uid() {
        let (status, body) = call(
            Arc::new(Panicking),
            "/mutate-core-spinkube-dev-v1alpha1-spinapp",
            &review("CREATE"),
        )
        .await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body["response"]["uid"], "u-h");
        assert_eq!(body["response"]["allowed"], false);
        assert!(
            body["response"]["status"]["message"]
                .as_str()
                .unwrap()
                .contains("internal error")
        );
    }

    #[tokio::test]
    async fn unregistered_operations_are_allowed_unchanged() {
        // DELETE is not registered for SpinApps: nothing to check, and the rules never run
        // (the panicking lookup proves it).
        let (status, body) = call(
            Arc::new(Panicking),
            "/validate-core-spinkube-dev-v1alpha1-spinapp",
            &review("DELETE"),
        )
        .await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body["response"]["allowed"], true);
    }

    #[test]
    fn the_deadline_leaves_a_margin_below_the_webhook_timeout() {
        assert_eq!(deadline_for(5), REQUEST_TIMEOUT);
        assert_eq!(deadline_for(1), Duration::from_millis(750));
        assert_eq!(deadline_for(2), Duration::from_millis(1500));
        assert_eq!(deadline_for(30), Duration::from_secs(29));
    }

    async fn post(app: &Router, body: Vec<u8>) -> Response {
        app.clone()
            .oneshot(
                Request::post("/validate-core-spinkube-dev-v1alpha1-spinapp")
                    .header(header::CONTENT_LENGTH, body.len())
                    .body(Body::from(body))
                    .unwrap(),
            )
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn over_the_memory_budget_requests_are_shed_with_429_and_retry_after() {
        let mut registry = prometheus_client::registry::Registry::default();
        let metrics = AdmissionMetrics::register(&mut registry);
        let small = serde_json::to_vec(&review("CREATE")).unwrap();
        // Room for one small request, not for one of 64 KiB.
        let state =
            AdmissionState::new(Arc::new(Inventory::default()), Options::default(), metrics)
                .with_budget(Budget::new(
                    budget::body_cost(small.len()) + budget::tree_cost(&small) + 4096,
                ));
        let app = router(state.clone());
        let mut big = small.clone();
        big.extend(std::iter::repeat_n(b' ', 64 * 1024));
        let shed = post(&app, big).await;
        assert_eq!(shed.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(shed.headers()[header::RETRY_AFTER], "1");
        // Small ones still fit, one after the other: each gives its charge back.
        for _ in 0..3 {
            assert_eq!(post(&app, small.clone()).await.status(), StatusCode::OK);
        }
        assert_eq!(state.budget.available_bytes(), state.budget.total_bytes());
        // A request holding the budget sheds the next one.
        let held = state.budget.try_charge(8192).unwrap();
        assert_eq!(
            post(&app, small.clone()).await.status(),
            StatusCode::TOO_MANY_REQUESTS
        );
        drop(held);
        assert_eq!(post(&app, small).await.status(), StatusCode::OK);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        assert!(
            text.contains(r#"spin_operator_admission_shed_total{webhook="vspinapp.kb.io"} 2"#),
            "{text}"
        );
    }

    /// The denial message for a CREATE of `web` whose spec is `spec`, under `budget`.
    async fn denial_for_spec(spec: Value, budget: Budget) -> String {
        let mut body = review("CREATE");
        body["request"]["object"]["spec"] = spec;
        let bytes = serde_json::to_vec(&body).unwrap();
        assert!(bytes.len() > 2 << 20 && bytes.len() <= MAX_BODY_BYTES);
        let app = router(
            AdmissionState::new(
                Arc::new(Inventory::default()),
                Options::default(),
                AdmissionMetrics::default(),
            )
            .with_budget(budget)
            // Debug builds are slow; time is the benchmark's business.
            .with_deadline(Duration::from_secs(600)),
        );
        let resp = post(&app, bytes).await;
        assert_eq!(resp.status(), StatusCode::OK);
        let answer = axum::body::to_bytes(resp.into_body(), usize::MAX)
            .await
            .unwrap();
        assert!(answer.len() < 2048, "{} byte answer", answer.len());
        let answer: Value = serde_json::from_slice(&answer).unwrap();
        assert_eq!(answer["response"]["allowed"], false);
        answer["response"]["status"]["message"]
            .as_str()
            .unwrap()
            .to_string()
    }

    #[tokio::test]
    async fn a_huge_non_object_spec_gets_a_short_denial_naming_its_type() {
        let head = "SpinApp.core.spinkube.dev \"web\" is invalid: spec: Invalid value";
        let text = Value::String("x".repeat(3_000_000));
        assert_eq!(
            denial_for_spec(text, Budget::default()).await,
            format!("{head}: \"string\": must be of type object")
        );
        let list = Value::Array(std::iter::repeat_n(json!(0), 1_500_000).collect());
        assert_eq!(
            denial_for_spec(list, Budget::new(1 << 30)).await,
            format!("{head}: \"array\": must be of type object")
        );
    }

    #[tokio::test]
    async fn a_body_whose_parse_exceeds_the_whole_budget_is_refused_not_shed() {
        let mut body = review("CREATE");
        body["request"]["object"]["spec"] =
            Value::Array(std::iter::repeat_n(json!(0), 100_000).collect());
        let bytes = serde_json::to_vec(&body).unwrap();
        let app = router(
            AdmissionState::new(
                Arc::new(Inventory::default()),
                Options::default(),
                AdmissionMetrics::default(),
            )
            .with_budget(Budget::new(4 << 20)),
        );
        // 200 KiB of body, ~13 MiB of parsed trees: retrying would not help.
        assert_eq!(
            post(&app, bytes).await.status(),
            StatusCode::PAYLOAD_TOO_LARGE
        );
    }

    #[tokio::test]
    async fn create_runs_the_rules() {
        let (_, body) = call(
            Arc::new(Inventory::default()),
            "/validate-core-spinkube-dev-v1alpha1-spinapp",
            &review("CREATE"),
        )
        .await;
        // No executor in the namespace: the rules deny.
        assert_eq!(body["response"]["allowed"], false, "{body}");
        assert_eq!(body["response"]["status"]["reason"], "Invalid");
    }
}
