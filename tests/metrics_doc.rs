//! docs/metrics.md documents exactly the metrics a running operator exports: the registry is
//! built the way `spin-operator run` builds it, encoded with prometheus-client's text encoder, and
//! its metric names and types compared with the table. (The chart tests check that the Grafana
//! dashboard and the alerts query only metrics of that table.)

use std::collections::BTreeMap;
use std::path::PathBuf;

use prometheus_client::registry::Registry;

/// Exported name -> type, from the `# TYPE` lines of the encoded registry. Counters are sampled
/// as `<name>_total`, which is the name users query and the table lists.
fn exported(controllers: bool, webhooks: bool) -> BTreeMap<String, String> {
    let mut registry = Registry::default();
    let metrics = spin_operator::metrics::register(&mut registry, controllers, webhooks);
    // A family is encoded once it has a series; most start with theirs at 0, rule hits get one
    // when a rule fires, as after the server's first denial.
    if let Some(admission) = &metrics.admission {
        admission.observe(
            "vspinapp.kb.io",
            spin_operator::admission::metrics::Outcome::Denied,
            &["SA-REPLICAS-MIN"],
            std::time::Duration::from_millis(1),
        );
    }
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry).expect("encode registry");
    text.lines()
        .filter_map(|line| line.strip_prefix("# TYPE "))
        .map(|rest| {
            let (name, kind) = rest.split_once(' ').expect("`# TYPE name type`");
            let name = match kind {
                "counter" => format!("{name}_total"),
                _ => name.to_string(),
            };
            (name, kind.to_string())
        })
        .collect()
}

/// Metric name -> type, from the rows of the table in docs/metrics.md whose second cell is a
/// metric type.
fn documented() -> BTreeMap<String, String> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("docs/metrics.md");
    let text = std::fs::read_to_string(&path).expect("read docs/metrics.md");
    let mut table = BTreeMap::new();
    for line in text.lines() {
        let cells: Vec<&str> = line
            .trim()
            .trim_matches('|')
            .split('|')
            .map(str::trim)
            .collect();
        let [name, kind, _labels, meaning] = cells.as_slice() else {
            continue;
        };
        if !["counter", "gauge", "histogram"].contains(kind) {
            continue;
        }
        let name = name
            .strip_prefix('`')
            .and_then(|n| n.strip_suffix('`'))
            .unwrap_or_else(|| panic!("metric name not in backticks: {line}"));
        assert!(!meaning.is_empty(), "no meaning for {name}");
        let previous = table.insert(name.to_string(), kind.to_string());
        assert!(previous.is_none(), "{name} documented twice");
    }
    table
}

#[test]
fn every_exported_metric_is_documented_with_its_type() {
    let exported = exported(true, true);
    // Guards the parsers: both sides must see the operator's families.
    assert!(
        exported.contains_key("spin_operator_admission_requests_total"),
        "{exported:?}"
    );
    assert!(exported.len() >= 9, "{exported:?}");
    pretty_assertions::assert_eq!(
        documented(),
        exported,
        "docs/metrics.md must list every metric `spin-operator run` registers (name, type), and no other"
    );
}

#[test]
fn components_register_only_their_own_metrics() {
    let all = exported(true, true);
    let controllers = exported(true, false);
    let webhooks = exported(false, true);
    assert!(exported(false, false).is_empty());
    assert!(
        controllers
            .keys()
            .all(|n| n.starts_with("spin_operator_controller_"))
    );
    assert!(
        webhooks
            .keys()
            .all(|n| !n.starts_with("spin_operator_controller_"))
    );
    let mut union = controllers;
    union.extend(webhooks);
    assert_eq!(union, all);
}
