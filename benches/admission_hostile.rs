//! Worst-case CPU of one admission: every hostile body (tests/support/hostile_bodies.rs, the
//! inputs of tests/admission_memory.rs), just under the 3 MiB body limit, through the production
//! router in-process (body limit, budget, blocking pool, decode, rules, answer), next to a
//! normal review. Prints the time per request (median of BENCH_RUNS, default 5), what the memory
//! budget charges for it, and whether the chart's budget (half of 256 Mi) would judge it or
//! refuse it as too large to parse (413). BENCHMARKS.md, "Webhook under hostile load":
//!
//! ```text
//! cargo bench --bench admission_hostile
//! ```
//!
//! Without `--bench` (as in `cargo test --all-targets`) it runs each body once at 64 KiB and
//! checks the answers.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::Request;
use serde_json::Value;
use spin_operator::admission::{
    AdmissionMetrics, AdmissionState, Budget, MAX_BODY_BYTES, budget, router,
};
use spin_operator::rules::Options;
use tower::ServiceExt;

#[path = "../tests/support/review_bodies.rs"]
#[allow(dead_code)]
mod bodies;
#[path = "../tests/support/hostile_bodies.rs"]
mod hostile;

/// The budget the chart's 256 Mi memory limit gives (`budget::budget_for_limit`).
const CHART_BUDGET: usize = 128 << 20;

fn state() -> AdmissionState {
    // Room for any body, and all the time it takes: the work itself is measured.
    AdmissionState::new(
        Arc::new(hostile::inventory()),
        Options::default(),
        AdmissionMetrics::default(),
    )
    .with_budget(Budget::new(1 << 30))
    .with_deadline(Duration::from_secs(600))
}

async fn call(app: &axum::Router, path: &str, body: &[u8]) -> (u16, Value) {
    let request = Request::post(path)
        .header("content-type", "application/json")
        .header("content-length", body.len())
        .body(Body::from(body.to_vec()))
        .unwrap();
    let response = app.clone().oneshot(request).await.unwrap();
    let status = response.status().as_u16();
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .unwrap();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

fn main() {
    let bench = std::env::args().any(|a| a == "--bench");
    let size = if bench {
        MAX_BODY_BYTES - 1024
    } else {
        64 * 1024
    };
    let runs: usize = match bench {
        true => std::env::var("BENCH_RUNS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(5),
        false => 1,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let app = router(state());
    let mut cases = vec![(
        "normal review (validate, allowed)",
        bodies::VALIDATE_APP,
        bodies::validate_body(),
    )];
    cases.extend(hostile::hostile_bodies(size));
    println!(
        "| body | bytes | ms per request (median of {runs}) | MB/s | charged MiB | chart budget |\n|---|---:|---:|---:|---:|---|"
    );
    let mut baseline = None;
    for (name, path, body) in cases {
        let mut times = Vec::with_capacity(runs);
        for _ in 0..runs {
            let started = Instant::now();
            let (status, answer) = runtime.block_on(call(&app, path, &body));
            times.push(started.elapsed());
            assert_eq!(status, 200, "{name}: {answer}");
            assert!(answer["response"]["uid"].is_string(), "{name}: {answer}");
        }
        times.sort();
        let median = times[times.len() / 2];
        let charged = budget::body_cost(body.len()) + budget::tree_cost(&body);
        let verdict = if charged <= CHART_BUDGET {
            "judged"
        } else {
            "413 (parse larger than the budget)"
        };
        let ms = median.as_secs_f64() * 1000.0;
        baseline.get_or_insert(ms);
        println!(
            "| {name} | {} | {ms:.2} | {:.0} | {:.1} | {verdict} |",
            body.len(),
            body.len() as f64 / median.as_secs_f64() / 1e6,
            charged as f64 / f64::from(1 << 20),
        );
    }
}
