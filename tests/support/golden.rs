//! Golden files: compare an output with its committed copy, or rewrite it with UPDATE_GOLDEN=1.

use std::path::{Path, PathBuf};

/// Whether this run rewrites the golden files instead of comparing with them.
pub fn updating() -> bool {
    std::env::var("UPDATE_GOLDEN").is_ok_and(|v| v == "1")
}

/// Compares `actual` with `golden` (or writes it when updating); a mismatch is printed and
/// recorded in `mismatched`, so one run lists every file that differs.
pub fn check(golden: &Path, actual: &str, mismatched: &mut Vec<PathBuf>) {
    if updating() {
        if let Some(dir) = golden.parent() {
            std::fs::create_dir_all(dir).unwrap();
        }
        std::fs::write(golden, actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(golden)
        .unwrap_or_else(|_| panic!("{} missing: run with UPDATE_GOLDEN=1", golden.display()));
    if expected != actual {
        eprintln!("--- {} differs:\n{actual}", golden.display());
        mismatched.push(golden.to_path_buf());
    }
}
