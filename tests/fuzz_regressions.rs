//! Replays saved fuzz inputs through the fuzz targets' own functions (`spin_operator::fuzzing`),
//! so `cargo test` keeps them passing without cargo-fuzz or a nightly toolchain:
//! - `tests/fixtures/fuzz-regressions/<target>/*`: inputs that once found a bug (each file
//!   names the bug it found), kept so it stays fixed;
//! - `fuzz/seeds/<target>/*`: the seed corpora, made from the project's fixtures by
//!   `fuzz/seed.py`, so every harness and its oracles run on meaningful inputs.
//!
//! A harness panics when an oracle fails; the panic message names the input file.

use std::path::{Path, PathBuf};

use spin_operator::fuzzing;

/// A fuzz target's harness.
type Harness = fn(&[u8]);

const TARGETS: &[(&str, Harness)] = &[
    ("admission", fuzzing::admission),
    ("admission_structured", fuzzing::admission_structured),
    ("quantity", fuzzing::quantity),
    ("reference", fuzzing::reference),
    ("runtime_config", fuzzing::runtime_config),
    ("http", fuzzing::http),
];

fn inputs(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
}

fn replay(target: &str, run: Harness) -> usize {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut count = 0;
    for dir in [
        root.join("tests/fixtures/fuzz-regressions").join(target),
        root.join("fuzz/seeds").join(target),
    ] {
        for file in inputs(&dir) {
            let data = std::fs::read(&file).unwrap();
            if let Err(panic) = std::panic::catch_unwind(|| run(&data)) {
                let message = panic
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default();
                panic!("{target}: {} fails: {message}", file.display());
            }
            count += 1;
        }
    }
    count
}

#[test]
fn every_target_has_seeds_and_they_pass() {
    for &(target, run) in TARGETS {
        let n = replay(target, run);
        assert!(n >= 3, "{target}: only {n} inputs replayed");
    }
}
