//! `spin-operator dev-cert` and `certs/dev-cert.sh`: key files are private (0600), also when
//! they already existed with a wider mode.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A directory holding world-readable ca.key and tls.key from an earlier run.
fn dir_with_readable_keys() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for key in ["ca.key", "tls.key"] {
        let path = dir.path().join(key);
        std::fs::write(&path, "old").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    }
    dir
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

fn assert_modes(dir: &Path) {
    for (file, expected) in [
        ("ca.key", 0o600),
        ("tls.key", 0o600),
        ("ca.crt", 0o644),
        ("tls.crt", 0o644),
    ] {
        let path = dir.join(file);
        assert_eq!(mode(&path), expected, "{file}: {:o}", mode(&path));
        let pem = std::fs::read_to_string(&path).unwrap();
        assert!(pem.starts_with("-----BEGIN"), "{file} rewritten: {pem}");
    }
}

#[test]
fn dev_cert_makes_existing_key_files_private() {
    let dir = dir_with_readable_keys();
    let out = Command::new(env!("CARGO_BIN_EXE_spin-operator"))
        .args(["dev-cert", "--out"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert_modes(dir.path());
}

#[test]
fn dev_cert_script_makes_existing_key_files_private() {
    // The openssl path (CI installs openssl: .ci/run).
    let dir = dir_with_readable_keys();
    let out = Command::new("sh")
        .arg(root().join("certs/dev-cert.sh"))
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert_modes(dir.path());
}
