//! Feed the resolver from `--cert-dir`, the directory where kubelet mounts the Secret.
//!
//! Kubelet rotates a mounted Secret by writing a new timestamped directory and renaming the
//! `..data` symlink over the old one; `tls.crt` is itself a symlink through `..data`. Watching
//! the file path with inotify misses that rename, so we poll and compare content instead: a
//! cheap read of two small files every few seconds.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use super::{ReloadingResolver, TLS_CERT_FILE, TLS_KEY_FILE, TlsError};

/// Default poll period: well below kubelet's own sync period (~60 s), cheap to do.
pub const DEFAULT_POLL_INTERVAL: Duration = Duration::from_secs(3);

/// Read `tls.crt` and `tls.key` from `dir` as one consistent snapshot as far as possible: if the
/// certificate changed while we read the key (a `..data` swap between the two reads), read again.
pub fn read_pair(dir: &Path) -> Result<(Vec<u8>, Vec<u8>), TlsError> {
    let cert_path = dir.join(TLS_CERT_FILE);
    let key_path = dir.join(TLS_KEY_FILE);
    let read = |p: &PathBuf| {
        std::fs::read(p).map_err(|source| TlsError::Read {
            path: p.clone(),
            source,
        })
    };
    let mut cert = read(&cert_path)?;
    // Bounded: a directory rewritten faster than we can read three small files is broken anyway,
    // and the resolver refuses a mismatched pair regardless.
    for _ in 0..3 {
        let key = read(&key_path)?;
        let again = read(&cert_path)?;
        if again == cert {
            return Ok((cert, key));
        }
        cert = again;
    }
    let key = read(&key_path)?;
    Ok((cert, key))
}

/// One poll: read the directory and offer the pair to the resolver. Failures are reported to the
/// resolver (logged once per distinct change) and returned.
pub fn reload_from_dir(
    resolver: &ReloadingResolver,
    dir: &Path,
) -> Result<super::Reload, TlsError> {
    let source = dir.display().to_string();
    match read_pair(dir) {
        Ok((cert, key)) => resolver.offer_pem(&cert, &key, &source),
        Err(err) => {
            resolver.report_failure(&source, &err);
            Err(err)
        }
    }
}

/// Poll `dir` forever (until the task is dropped/aborted). Reads run on the blocking pool.
pub async fn watch_cert_dir(resolver: Arc<ReloadingResolver>, dir: PathBuf, interval: Duration) {
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        let (r, d) = (resolver.clone(), dir.clone());
        // Errors are already logged by the resolver, once per change.
        let _ = tokio::task::spawn_blocking(move || reload_from_dir(&r, &d)).await;
    }
}

/// Load once now (so the caller can tell readiness immediately) and keep polling in the
/// background. Returns the task handle; abort it to stop.
pub fn spawn_cert_dir_reloader(
    resolver: Arc<ReloadingResolver>,
    dir: PathBuf,
    interval: Duration,
) -> tokio::task::JoinHandle<()> {
    let _ = reload_from_dir(&resolver, &dir);
    tokio::spawn(watch_cert_dir(resolver, dir, interval))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_files_are_an_error_and_not_ready() {
        let dir = tempfile::tempdir().unwrap();
        let r = ReloadingResolver::default();
        assert!(matches!(
            reload_from_dir(&r, dir.path()),
            Err(TlsError::Read { .. })
        ));
        assert!(!r.has_certificate());
    }

    #[test]
    fn loads_plain_files() {
        let dir = tempfile::tempdir().unwrap();
        let ck = rcgen::generate_simple_self_signed(vec!["x.example".to_string()]).unwrap();
        std::fs::write(dir.path().join(TLS_CERT_FILE), ck.cert.pem()).unwrap();
        std::fs::write(
            dir.path().join(TLS_KEY_FILE),
            ck.signing_key.serialize_pem(),
        )
        .unwrap();
        let r = ReloadingResolver::default();
        assert!(matches!(
            reload_from_dir(&r, dir.path()).unwrap(),
            crate::tls::Reload::Loaded(_)
        ));
        assert_eq!(
            reload_from_dir(&r, dir.path()).unwrap(),
            crate::tls::Reload::Unchanged
        );
    }
}
