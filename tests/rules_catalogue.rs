//! The catalogue is complete and consistent, and `webhooks/RULES.md` is its current output.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use spin_operator::rules::{Phase, catalogue, catalogue_json, catalogue_markdown};

#[test]
fn ids_are_unique_and_well_formed() {
    let mut seen = BTreeSet::new();
    for rule in catalogue() {
        assert!(seen.insert(rule.id), "duplicate rule id {}", rule.id);
        assert!(
            rule.id.starts_with("SA-") || rule.id.starts_with("SAE-"),
            "{}",
            rule.id
        );
        assert!(
            rule.id
                .chars()
                .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '-'),
            "{}",
            rule.id
        );
        assert!(!rule.description.is_empty() && !rule.field.is_empty());
        assert!(!rule.operations.is_empty());
    }
    assert!(catalogue().iter().any(|r| r.phase == Phase::Defaulting));
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// Every rule id literal in the rule sources (`"SA-..."`, `"SAE-..."`) is a catalogue row, so no
/// check can emit an id the catalogue does not document, and every row is used by a check.
#[test]
fn every_emitted_id_is_in_the_catalogue() {
    let known: BTreeSet<&str> = catalogue().iter().map(|r| r.id).collect();
    let mut files = Vec::new();
    rust_files(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("src/rules"),
        &mut files,
    );
    assert!(files.len() > 10, "rule sources not found: {files:?}");
    let mut emitted = BTreeSet::new();
    // The catalogue itself is left out: the ids must come from the checks. So is the policy
    // export table (src/rules/vap), which names every rule without emitting any.
    let vap = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/rules/vap");
    files.retain(|f| !f.ends_with("catalogue.rs") && !f.starts_with(&vap));
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        for (i, _) in text.match_indices("\"SA") {
            let rest = &text[i + 1..];
            let end = rest.find('"').unwrap();
            let id = &rest[..end];
            if id.starts_with("SA-") || id.starts_with("SAE-") {
                emitted.insert(id.to_string());
                assert!(
                    known.contains(id),
                    "{} emits {id}, which is not in the catalogue",
                    file.display()
                );
            }
        }
    }
    // And every catalogue row is emitted by some check (no dead rows).
    let emitted: BTreeSet<&str> = emitted.iter().map(String::as_str).collect();
    assert_eq!(emitted, known);
}

#[test]
fn rules_md_matches_the_generated_catalogue() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("webhooks/RULES.md");
    let committed = std::fs::read_to_string(&path).expect("webhooks/RULES.md exists");
    let generated = catalogue_markdown();
    assert!(
        committed == generated,
        "webhooks/RULES.md is stale: run `spin-operator rules > webhooks/RULES.md`"
    );
    for rule in catalogue() {
        assert!(
            generated.contains(&format!("| `{}` |", rule.id)),
            "{}",
            rule.id
        );
    }
}

#[test]
fn json_lists_every_rule() {
    let v: serde_json::Value = serde_json::from_str(&catalogue_json()).unwrap();
    let ids: Vec<&str> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap())
        .collect();
    let expected: Vec<&str> = catalogue().iter().map(|r| r.id).collect();
    assert_eq!(ids, expected);
    assert_eq!(v[0]["operations"][0], "CREATE");
}
