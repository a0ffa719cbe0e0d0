//! Prometheus metrics for the serving certificate.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: &'static str,
}

/// Certificate expiry and reload outcomes. Cheap to clone (shared atomics).
#[derive(Clone, Debug, Default)]
pub struct TlsMetrics {
    not_after: Gauge,
    reloads: Family<OutcomeLabels, Counter>,
}

impl TlsMetrics {
    /// Create the metrics and register them into `registry`.
    pub fn register(registry: &mut Registry) -> Self {
        let m = Self::default();
        registry.register(
            "webhook_certificate_not_after_timestamp_seconds",
            "NotAfter of the served webhook certificate, unix seconds",
            m.not_after.clone(),
        );
        registry.register(
            "webhook_certificate_reloads",
            "Distinct certificate changes seen, by outcome (loaded or rejected)",
            m.reloads.clone(),
        );
        m
    }

    pub(crate) fn loaded(&self, not_after: i64) {
        self.not_after.set(not_after);
        self.count("loaded");
    }

    pub(crate) fn rejected(&self) {
        self.count("rejected");
    }

    fn count(&self, outcome: &'static str) {
        self.reloads.get_or_create(&OutcomeLabels { outcome }).inc();
    }

    /// Current value of the not-after gauge (0 until a certificate was loaded).
    pub fn not_after(&self) -> i64 {
        self.not_after.get()
    }

    /// How many reloads had `outcome` ("loaded" or "rejected").
    pub fn reloads(&self, outcome: &'static str) -> u64 {
        self.reloads.get_or_create(&OutcomeLabels { outcome }).get()
    }
}
