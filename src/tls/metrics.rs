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
        // Both outcomes exist at 0 from the start, so `increase()` sees the first change.
        for outcome in ["loaded", "rejected"] {
            let _ = m.reloads.get_or_create(&OutcomeLabels { outcome });
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tls::ReloadingResolver;

    #[test]
    fn exposes_not_after_and_reload_outcomes() {
        let mut registry = Registry::default();
        let metrics = TlsMetrics::register(&mut registry);
        let mut before = String::new();
        prometheus_client::encoding::text::encode(&mut before, &registry).unwrap();
        assert!(before.contains("webhook_certificate_reloads_total{outcome=\"rejected\"} 0\n"));
        let resolver = ReloadingResolver::new(Some(metrics));
        let ck = rcgen::generate_simple_self_signed(vec!["m.example".to_string()]).unwrap();
        let (cert, key) = (ck.cert.pem(), ck.signing_key.serialize_pem());
        resolver
            .offer_pem(cert.as_bytes(), key.as_bytes(), "t")
            .unwrap();
        assert!(resolver.offer_pem(cert.as_bytes(), b"", "t").is_err());
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        let not_after = resolver.info().unwrap().not_after;
        assert!(
            text.contains(&format!(
                "webhook_certificate_not_after_timestamp_seconds {not_after}\n"
            )),
            "{text}"
        );
        assert!(text.contains("webhook_certificate_reloads_total{outcome=\"loaded\"} 1\n"));
        assert!(text.contains("webhook_certificate_reloads_total{outcome=\"rejected\"} 1\n"));
    }
}
