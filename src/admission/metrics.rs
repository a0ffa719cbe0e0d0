//! Prometheus metrics of the admission server.

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// How a request ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// Allowed (possibly with a patch or warnings).
    Allowed,
    /// Denied by the rules.
    Denied,
    /// Not judged: malformed input, wrong kind, internal failure (answered as a denial).
    Error,
}

impl Outcome {
    /// Label value: `allowed`, `denied` or `error`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Allowed => "allowed",
            Self::Denied => "denied",
            Self::Error => "error",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct RequestLabels {
    webhook: &'static str,
    outcome: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct RuleLabels {
    webhook: &'static str,
    rule: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct WebhookLabels {
    webhook: &'static str,
}

/// Admission metrics; cheap to clone (the families are shared).
#[derive(Debug, Clone)]
pub struct AdmissionMetrics {
    requests: Family<RequestLabels, Counter>,
    rules: Family<RuleLabels, Counter>,
    latency: Family<WebhookLabels, Histogram>,
    shed: Family<WebhookLabels, Counter>,
    audit_dropped: Counter,
}

impl Default for AdmissionMetrics {
    fn default() -> Self {
        Self {
            requests: Family::default(),
            rules: Family::default(),
            shed: Family::default(),
            audit_dropped: Counter::default(),
            // 100µs .. ~1.6s: decisions are sub-millisecond, anything near the 4s timeout is broken.
            latency: Family::new_with_constructor(|| {
                Histogram::new(exponential_buckets(0.0001, 2.0, 15))
            }),
        }
    }
}

impl AdmissionMetrics {
    /// Create the metrics and register them under `spin_operator_admission_*`.
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = Self::default();
        let sub = registry.sub_registry_with_prefix("spin_operator_admission");
        sub.register(
            "requests",
            "Admission requests by webhook and outcome",
            metrics.requests.clone(),
        );
        sub.register(
            "rule_hits",
            "Rules that produced an error, warning or patch, by webhook",
            metrics.rules.clone(),
        );
        sub.register(
            "duration_seconds",
            "Time to answer an admission request, by webhook",
            metrics.latency.clone(),
        );
        sub.register(
            "shed",
            "Admission requests answered 429 because the in-flight memory budget was spent, by webhook",
            metrics.shed.clone(),
        );
        sub.register(
            "audit_dropped",
            "Audit log lines of admission decisions dropped because the queue to the log writer was full",
            metrics.audit_dropped.clone(),
        );
        // Series exist at 0 from the start, so error ratios and alerts see a value before the
        // first request (rule hits stay sparse: one series per rule that ever fired).
        for route in super::routes::ROUTES {
            for outcome in [Outcome::Allowed, Outcome::Denied, Outcome::Error] {
                let _ = metrics.requests.get_or_create(&RequestLabels {
                    webhook: route.name,
                    outcome: outcome.as_str(),
                });
            }
            let _ = metrics.latency.get_or_create(&WebhookLabels {
                webhook: route.name,
            });
            let _ = metrics.shed.get_or_create(&WebhookLabels {
                webhook: route.name,
            });
        }
        metrics
    }

    /// The counter of audit lines dropped at a full queue (`audit::AuditLog`).
    pub fn audit_dropped(&self) -> Counter {
        self.audit_dropped.clone()
    }

    /// Record one request shed at the memory budget (not judged, so not in `requests`).
    pub fn shed(&self, webhook: &'static str) {
        self.shed.get_or_create(&WebhookLabels { webhook }).inc();
    }

    /// Record one answered request.
    pub fn observe(
        &self,
        webhook: &'static str,
        outcome: Outcome,
        rules: &[&'static str],
        elapsed: Duration,
    ) {
        self.requests
            .get_or_create(&RequestLabels {
                webhook,
                outcome: outcome.as_str(),
            })
            .inc();
        for &rule in rules {
            self.rules
                .get_or_create(&RuleLabels { webhook, rule })
                .inc();
        }
        self.latency
            .get_or_create(&WebhookLabels { webhook })
            .observe(elapsed.as_secs_f64());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_requests_rules_and_latency() {
        let mut registry = Registry::default();
        let m = AdmissionMetrics::register(&mut registry);
        m.observe(
            "vspinapp.kb.io",
            Outcome::Denied,
            &["SA-REPLICAS-MIN"],
            Duration::from_micros(300),
        );
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &registry).unwrap();
        assert!(out.contains(
            r#"spin_operator_admission_requests_total{webhook="vspinapp.kb.io",outcome="denied"} 1"#
        ), "{out}");
        assert!(out.contains(
            r#"spin_operator_admission_rule_hits_total{webhook="vspinapp.kb.io",rule="SA-REPLICAS-MIN"} 1"#
        ), "{out}");
        assert!(
            out.contains(
                "spin_operator_admission_duration_seconds_count{webhook=\"vspinapp.kb.io\"} 1"
            ),
            "{out}"
        );
        // Every route's outcomes exist at 0 before its first request.
        for route in crate::admission::ROUTES {
            for outcome in ["allowed", "error"] {
                let series = format!(
                    "spin_operator_admission_requests_total{{webhook=\"{}\",outcome=\"{outcome}\"}} 0",
                    route.name
                );
                assert!(out.contains(&series), "{series} missing in {out}");
            }
        }
    }
}
