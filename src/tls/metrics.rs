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

/// Help-text prefix of the old, unprefixed names, exported until the next release.
const DEPRECATED: &str =
    "Deprecated (removed in the next release), use spin_operator_webhook_certificate_*: ";

/// Certificate expiry and reload outcomes. Cheap to clone (shared atomics).
#[derive(Clone, Debug, Default)]
pub struct TlsMetrics {
    not_after: Gauge,
    reloads: Family<OutcomeLabels, Counter>,
}

impl TlsMetrics {
    /// Create the metrics and register them into `registry`.
    ///
    /// Each metric is registered twice over the same atomics: as `spin_operator_webhook_certificate_*`
    /// and, for one release, under its old unprefixed name (deprecated, see docs/metrics.md), so
    /// dashboards and alerts can move over without a gap.
    pub fn register(registry: &mut Registry) -> Self {
        let m = Self::default();
        for (prefix, deprecated) in [("spin_operator_", ""), ("", DEPRECATED)] {
            registry.register(
                format!("{prefix}webhook_certificate_not_after_timestamp_seconds"),
                format!("{deprecated}NotAfter of the served webhook certificate, unix seconds"),
                m.not_after.clone(),
            );
            registry.register(
                format!("{prefix}webhook_certificate_reloads"),
                format!(
                    "{deprecated}Distinct certificate changes seen, by outcome (loaded or rejected)"
                ),
                m.reloads.clone(),
            );
        }
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
        assert!(before.contains(
            "\nspin_operator_webhook_certificate_reloads_total{outcome=\"rejected\"} 0\n"
        ));
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
        // The new names and, for one release, the deprecated old ones, with the same values.
        for prefix in ["spin_operator_", ""] {
            let lines = [
                format!("\n{prefix}webhook_certificate_not_after_timestamp_seconds {not_after}\n"),
                format!("\n{prefix}webhook_certificate_reloads_total{{outcome=\"loaded\"}} 1\n"),
                format!("\n{prefix}webhook_certificate_reloads_total{{outcome=\"rejected\"}} 1\n"),
            ];
            for line in lines {
                assert!(text.contains(&line), "{line} missing in\n{text}");
            }
        }
        assert!(text.contains(
            "# HELP webhook_certificate_reloads Deprecated (removed in the next release)"
        ));
    }
}
