//! Prometheus metrics of the controllers: reconciles by result, reconcile duration, reconciles
//! running now, and leadership.

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// Labels of the reconcile counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReconcileLabels {
    /// `spinapp` or `spinappexecutor`.
    pub controller: String,
    /// `success` or an error label (see [`super::ControllerError::metric_label`]).
    pub result: String,
}

/// Labels of the duration histogram.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ControllerLabel {
    /// `spinapp` or `spinappexecutor`.
    pub controller: String,
}

fn duration_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.001, 2.0, 16))
}

/// Cheap-to-clone handles on the controller metrics.
#[derive(Clone)]
pub struct Metrics {
    reconciles: Family<ReconcileLabels, Counter>,
    duration: Family<ControllerLabel, Histogram, fn() -> Histogram>,
    in_flight: Family<ControllerLabel, Gauge>,
    leader: Gauge,
}

/// Counts one running reconcile in `reconciles_in_flight` until dropped (also when the reconcile
/// future is dropped midway, e.g. on shutdown).
pub(crate) struct Running(Gauge);

impl Drop for Running {
    fn drop(&mut self) {
        self.0.dec();
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            reconciles: Family::default(),
            duration: Family::new_with_constructor(duration_histogram),
            in_flight: Family::default(),
            leader: Gauge::default(),
        }
    }
}

impl Metrics {
    /// Creates the metrics and registers them (prefix `spin_operator_controller`).
    pub fn register(registry: &mut Registry) -> Self {
        let m = Metrics::default();
        let sub = registry.sub_registry_with_prefix("spin_operator_controller");
        sub.register(
            "reconciles",
            "Reconciles by controller and result",
            m.reconciles.clone(),
        );
        sub.register(
            "reconcile_duration_seconds",
            "Duration of reconciles",
            m.duration.clone(),
        );
        // kube-runtime keeps its queue private; running reconciles at the concurrency cap is the
        // visible sign that work is queueing.
        sub.register(
            "reconciles_in_flight",
            "Reconciles running now, by controller",
            m.in_flight.clone(),
        );
        sub.register(
            "leader",
            "1 while this replica holds the leader lease",
            m.leader.clone(),
        );
        // Series exist at 0 from the start, so dashboards and rates show both controllers.
        for controller in [super::spinapp::CONTROLLER, super::executor::CONTROLLER] {
            let label = ControllerLabel {
                controller: controller.to_string(),
            };
            let _ = m.reconciles.get_or_create(&ReconcileLabels {
                controller: controller.to_string(),
                result: "success".to_string(),
            });
            let _ = m.duration.get_or_create(&label);
            let _ = m.in_flight.get_or_create(&label);
        }
        m
    }

    pub(crate) fn observe(&self, controller: &str, result: &str, elapsed: Duration) {
        self.reconciles
            .get_or_create(&ReconcileLabels {
                controller: controller.to_string(),
                result: result.to_string(),
            })
            .inc();
        self.duration
            .get_or_create(&ControllerLabel {
                controller: controller.to_string(),
            })
            .observe(elapsed.as_secs_f64());
    }

    /// Marks a reconcile of `controller` as running until the returned guard is dropped.
    pub(crate) fn running(&self, controller: &str) -> Running {
        let gauge = self
            .in_flight
            .get_or_create(&ControllerLabel {
                controller: controller.to_string(),
            })
            .clone();
        gauge.inc();
        Running(gauge)
    }

    /// Reconciles of `controller` running now (for tests and diagnostics).
    pub fn in_flight(&self, controller: &str) -> i64 {
        self.in_flight
            .get_or_create(&ControllerLabel {
                controller: controller.to_string(),
            })
            .get()
    }

    pub(crate) fn set_leader(&self, leading: bool) {
        self.leader.set(i64::from(leading));
    }

    /// Number of reconciles recorded for `controller` with `result` (for tests and diagnostics).
    pub fn reconcile_count(&self, controller: &str, result: &str) -> u64 {
        self.reconciles
            .get_or_create(&ReconcileLabels {
                controller: controller.to_string(),
                result: result.to_string(),
            })
            .get()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registered_metrics_are_encoded() {
        let mut registry = Registry::default();
        let m = Metrics::register(&mut registry);
        m.observe("spinapp", "success", Duration::from_millis(3));
        m.set_leader(true);
        let first = m.running("spinapp");
        let second = m.running("spinapp");
        drop(first);
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &registry).unwrap();
        assert!(out.contains(
            "spin_operator_controller_reconciles_total{controller=\"spinapp\",result=\"success\"} 1"
        ));
        assert!(out.contains(
            "spin_operator_controller_reconcile_duration_seconds_count{controller=\"spinapp\"} 1"
        ));
        assert!(out.contains("spin_operator_controller_leader 1"));
        // The other controller's series exist at 0 before its first reconcile.
        for series in [
            "spin_operator_controller_reconciles_total{controller=\"spinappexecutor\",result=\"success\"} 0",
            "spin_operator_controller_reconcile_duration_seconds_count{controller=\"spinappexecutor\"} 0",
            "spin_operator_controller_reconciles_in_flight{controller=\"spinappexecutor\"} 0",
        ] {
            assert!(out.contains(series), "{series} missing in {out}");
        }
        assert!(
            out.contains("spin_operator_controller_reconciles_in_flight{controller=\"spinapp\"} 1"),
            "{out}"
        );
        drop(second);
        assert_eq!(m.in_flight("spinapp"), 0);
        assert_eq!(m.reconcile_count("spinapp", "success"), 1);
    }
}
