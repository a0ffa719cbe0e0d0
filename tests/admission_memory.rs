//! The memory budget's expansion factor is a measurement, not a guess: every hostile body
//! (tests/support/hostile_bodies.rs), just under the body limit, is answered through the router
//! while a counting allocator records the heap's peak, and that peak (body included) must stay
//! within what the budget charges for that body (`budget::body_cost` + `budget::tree_cost`). A change that makes
//! the handlers copy a body once more fails here, before it can break the budget in production.
//!
//! Also: each answer is a short AdmissionReview (nothing echoes the megabytes back).

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::body::Body;
use axum::http::Request;
use serde_json::Value;
use spin_operator::admission::{
    AdmissionMetrics, AdmissionState, Budget, MAX_BODY_BYTES, budget, router,
};
use spin_operator::rules::Options;
use tower::ServiceExt;

#[path = "support/hostile_bodies.rs"]
mod hostile;

struct Counting;

static CURRENT: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            let now = CURRENT.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
            PEAK.fetch_max(now, Ordering::Relaxed);
        }
        p
    }
    unsafe fn dealloc(&self, p: *mut u8, layout: Layout) {
        unsafe { System.dealloc(p, layout) };
        CURRENT.fetch_sub(layout.size(), Ordering::Relaxed);
    }
    unsafe fn realloc(&self, p: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let q = unsafe { System.realloc(p, layout, new_size) };
        if !q.is_null() {
            if new_size >= layout.size() {
                let now = CURRENT.fetch_add(new_size - layout.size(), Ordering::Relaxed) + new_size
                    - layout.size();
                PEAK.fetch_max(now, Ordering::Relaxed);
            } else {
                CURRENT.fetch_sub(layout.size() - new_size, Ordering::Relaxed);
            }
        }
        q
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

fn state() -> AdmissionState {
    AdmissionState::new(
        Arc::new(hostile::inventory()),
        Options::default(),
        AdmissionMetrics::default(),
    )
    .with_budget(Budget::new(1 << 30))
    // Debug builds are slow; time is the benchmark's business.
    .with_deadline(std::time::Duration::from_secs(600))
}

// One test, one thread: the allocator's counters see nothing else.
#[test]
fn handling_a_body_stays_within_what_the_budget_charges_for_it() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let app = router(state());
    let size = MAX_BODY_BYTES - 1024;
    let mut report = Vec::new();
    for (name, path, original) in hostile::hostile_bodies(size) {
        assert!(
            original.len() <= MAX_BODY_BYTES,
            "{name}: {} bytes",
            original.len()
        );
        let len = original.len();
        // Measured from before the body exists: reading it is part of the cost.
        let before = CURRENT.load(Ordering::Relaxed);
        let body = original.clone();
        PEAK.store(before, Ordering::Relaxed);
        let (status, answer) = runtime.block_on(async {
            let request = Request::post(path)
                .header("content-type", "application/json")
                .header("content-length", len)
                .body(Body::from(body))
                .unwrap();
            let response = app.clone().oneshot(request).await.unwrap();
            let status = response.status();
            let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
                .await
                .unwrap();
            (status, bytes)
        });
        let peak = PEAK.load(Ordering::Relaxed) - before;
        let factor = peak as f64 / len as f64;
        let charged = budget::body_cost(len) + budget::tree_cost(&original);
        report.push(format!(
            "{name}: body {len} B, peak {peak} B ({factor:.1}x), charged {charged} B ({:.1}x)",
            charged as f64 / len as f64
        ));
        assert_eq!(status, 200, "{name}");
        assert!(
            answer.len() < 16 * 1024,
            "{name}: a {} byte answer echoes the body",
            answer.len()
        );
        let review: Value = serde_json::from_slice(&answer).unwrap();
        assert_eq!(review["response"]["uid"], "hostile", "{name}");
        assert!(
            peak <= charged,
            "{name}: peak heap {peak} B ({factor:.1}x the body) exceeds the budget's charge {charged} B\n{}",
            report.join("\n")
        );
    }
    println!("{}", report.join("\n"));
}
