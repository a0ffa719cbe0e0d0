//! The operator's Prometheus metrics in one place: what `spin-operator run` registers for the
//! components it runs. docs/metrics.md documents every family (tests/metrics_doc.rs keeps the two
//! equal); the chart's dashboard and alerts use only those.

use prometheus_client::registry::Registry;

use crate::admission::AdmissionMetrics;
use crate::controller::Metrics;
use crate::tls::TlsMetrics;

/// Handles on the registered metrics; `None` for a component that does not run.
#[derive(Clone, Default)]
pub struct OperatorMetrics {
    /// Reconciles and leadership (with the controllers on).
    pub controllers: Option<Metrics>,
    /// Serving certificate (with the webhooks on).
    pub tls: Option<TlsMetrics>,
    /// Admission requests (with the webhooks on).
    pub admission: Option<AdmissionMetrics>,
}

/// Registers the metrics of the enabled components into `registry`.
pub fn register(registry: &mut Registry, controllers: bool, webhooks: bool) -> OperatorMetrics {
    OperatorMetrics {
        controllers: controllers.then(|| Metrics::register(registry)),
        tls: webhooks.then(|| TlsMetrics::register(registry)),
        admission: webhooks.then(|| AdmissionMetrics::register(registry)),
    }
}
