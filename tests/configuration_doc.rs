//! docs/configuration.md is what `spin-operator docs configuration` generates, lists exactly the
//! flags and environment variables `spin-operator run --help` shows, and every environment
//! variable the code reads directly.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

const FIX: &str =
    "run `make docs` (or `cargo run -q -- docs configuration > docs/configuration.md`)";

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn operator(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_spin-operator"))
        .args(args)
        .output()
        .expect("run spin-operator");
    assert!(
        out.status.success(),
        "spin-operator {args:?} failed: {out:?}"
    );
    String::from_utf8(out.stdout).expect("UTF-8 output")
}

fn committed() -> String {
    std::fs::read_to_string(repo().join("docs/configuration.md")).expect("docs/configuration.md")
}

#[test]
fn committed_doc_is_the_generated_one() {
    let generated = operator(&["docs", "configuration"]);
    assert!(
        committed() == generated,
        "docs/configuration.md is stale: {FIX}"
    );
}

/// `--flag` names and `[env: NAME=]` variables of `spin-operator run --help`.
fn from_help() -> (BTreeSet<String>, BTreeSet<String>) {
    let help = operator(&["run", "--help"]);
    let mut flags = BTreeSet::new();
    let mut envs = BTreeSet::new();
    for line in help.lines().map(str::trim) {
        // `-n, --name <N>` when a flag also has a short form.
        let flag_line = match line.as_bytes() {
            [b'-', short, b',', b' ', ..] if *short != b'-' => &line[4..],
            _ => line,
        };
        if let Some(rest) = flag_line
            .strip_prefix("--")
            .filter(|_| !flag_line.starts_with("---"))
        {
            let name = rest.split([' ', '=', '<']).next().unwrap_or_default();
            if name != "help" {
                flags.insert(name.to_string());
            }
        }
        if let Some(rest) = line.strip_prefix("[env: ") {
            envs.insert(rest.split('=').next().unwrap_or_default().to_string());
        }
    }
    (flags, envs)
}

/// The first two cells of the doc's flag table: `--flag` names and their variables.
fn from_doc(doc: &str) -> (BTreeSet<String>, BTreeSet<String>) {
    let section = doc
        .split("## Flags")
        .nth(1)
        .and_then(|s| s.split("\n## ").next())
        .expect("a `## Flags` section");
    let mut flags = BTreeSet::new();
    let mut envs = BTreeSet::new();
    for line in section.lines().filter(|l| l.starts_with("| `--")) {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        let flag = cells[1].trim_matches('`').trim_start_matches("--");
        flags.insert(
            flag.split([' ', '<'])
                .next()
                .unwrap_or_default()
                .to_string(),
        );
        if !cells[2].is_empty() {
            envs.insert(cells[2].trim_matches('`').to_string());
        }
    }
    (flags, envs)
}

#[test]
fn doc_lists_exactly_the_flags_and_variables_of_run_help() {
    let (help_flags, help_envs) = from_help();
    assert!(
        help_flags.contains("webhook-addr") && help_envs.contains("POD_NAMESPACE"),
        "the --help parser found {help_flags:?} / {help_envs:?}"
    );
    let (doc_flags, doc_envs) = from_doc(&committed());
    assert_eq!(doc_flags, help_flags, "flags differ from --help: {FIX}");
    assert_eq!(doc_envs, help_envs, "variables differ from --help: {FIX}");
}

/// Names in `std::env::var("NAME")` calls under `dir`.
fn env_reads(dir: &Path, out: &mut BTreeSet<String>) {
    for entry in std::fs::read_dir(dir).expect("read src/") {
        let path = entry.expect("dir entry").path();
        if path.is_dir() {
            env_reads(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            let text = std::fs::read_to_string(&path).expect("read source");
            for piece in text.split("env::var(\"").skip(1) {
                out.insert(piece.split('"').next().unwrap_or_default().to_string());
            }
        }
    }
}

#[test]
fn every_variable_the_code_reads_is_documented() {
    let mut read = BTreeSet::new();
    env_reads(&repo().join("src"), &mut read);
    assert!(read.contains("POD_NAME"), "found {read:?}");
    let doc = committed();
    let section = doc
        .split("## Environment variables read directly")
        .nth(1)
        .expect("the direct-variables section");
    let missing: Vec<&String> = read
        .iter()
        .filter(|name| !section.contains(&format!("| `{name}` |")))
        .collect();
    assert!(
        missing.is_empty(),
        "read by src/ but not in docs/configuration.md: {missing:?}; add them to DIRECT_ENV in src/cli/docs.rs and {FIX}"
    );
    // RUST_LOG is read through tracing's EnvFilter, not env::var.
    assert!(section.contains("| `RUST_LOG` |"));
}
