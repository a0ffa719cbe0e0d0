//! Admission webhooks: HTTPS server, AdmissionReview handling, routes and webhook configurations.
//!
//! - [`routes`]: the one route table (paths, webhook names, operations).
//! - [`review`]: AdmissionReview parsing and responses (pure); [`view`]: the fast path's
//!   borrowed, typed reading of a review.
//! - [`handler`]: the axum [`router`] with body limit, timeout and panic guard;
//!   [`budget`]: the in-flight memory budget past which requests are shed with 429.
//! - [`server`]: the accept loop (TLS or plain HTTP) with a handshake budget per peer, idle
//!   timeout, eviction at the connection cap, a lame duck (`stopping.rs`) and graceful drain
//!   (rustls configuration and certificates come from [`crate::tls`]).
//! - [`cache`]: [`Lookup`](crate::inventory::Lookup) from reflector stores (zero API calls per
//!   request answered from them); [`executor_fetch`]: one GET for an executor a review missed,
//!   [`held`]: the first decision's audit line and metrics held back until it is final.
//! - [`health`]: [`Readiness`] and the plain-HTTP `/healthz`, `/readyz`, `/metrics` server.
//! - [`metrics`]: Prometheus metrics; [`config`]: the generated webhook configurations.
//! - [`audit`]: the per-decision audit line, queued to a writer thread off the request path.

pub mod audit;
pub mod budget;
pub mod cache;
pub mod config;
pub mod executor_fetch;
pub mod handler;
pub mod health;
mod held;
mod idle;
pub mod metrics;
mod metrics_auth;
mod pending;
pub mod presence;
pub mod review;
pub mod routes;
pub mod server;
mod stopping;
pub mod view;

pub use budget::Budget;
pub use handler::{AdmissionState, MAX_BODY_BYTES, REQUEST_TIMEOUT, deadline_for, router};
pub use health::{Readiness, ReadinessCheck, health_router};
pub use idle::Caller;
pub use metrics::AdmissionMetrics;
pub use routes::{ROUTES, Route};
pub use server::{HttpsServer, Server, ServerLimits};
