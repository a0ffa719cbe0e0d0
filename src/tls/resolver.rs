//! A `ResolvesServerCert` whose certificate can be swapped atomically while serving.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use sha2::{Digest, Sha256};

use super::pair::{CertInfo, load_pair};
use super::{TlsError, TlsMetrics};

type Fingerprint = [u8; 32];

/// Result of offering a new pair to the resolver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reload {
    /// The pair passed the checks and is now served to new handshakes.
    Loaded(CertInfo),
    /// Same bytes as the pair already served; nothing to do.
    Unchanged,
}

#[derive(Default)]
struct Tracking {
    /// Content hash of the pair being served.
    served: Option<Fingerprint>,
    /// Content hash of the last input that failed, so a bad pair (or a missing file) is
    /// logged and counted once, not on every poll.
    last_failure: Option<Fingerprint>,
    info: Option<CertInfo>,
}

/// Serves the last good certificate; new pairs go through [`ReloadingResolver::offer_pem`].
///
/// Handshakes take a read lock for the time of an `Arc` clone; writers hold it for a pointer
/// swap. A `std` `RwLock` is enough here and avoids another dependency.
pub struct ReloadingResolver {
    current: RwLock<Option<Arc<CertifiedKey>>>,
    tracking: Mutex<Tracking>,
    generation: AtomicU64,
    metrics: Option<TlsMetrics>,
}

impl fmt::Debug for ReloadingResolver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReloadingResolver")
            .field("generation", &self.generation())
            .field("info", &self.info())
            .finish_non_exhaustive()
    }
}

impl Default for ReloadingResolver {
    fn default() -> Self {
        Self::new(None)
    }
}

impl ReloadingResolver {
    pub fn new(metrics: Option<TlsMetrics>) -> Self {
        Self {
            current: RwLock::new(None),
            tracking: Mutex::new(Tracking::default()),
            generation: AtomicU64::new(0),
            metrics,
        }
    }

    /// Readiness: true once a valid certificate has been loaded (it then stays loaded).
    pub fn has_certificate(&self) -> bool {
        self.current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .is_some()
    }

    /// Bumped on every successful swap; tests and callers wait on it instead of sleeping.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Description of the certificate being served.
    pub fn info(&self) -> Option<CertInfo> {
        self.lock().info.clone()
    }

    /// The served certificate itself (what `resolve` hands to rustls).
    pub fn current(&self) -> Option<Arc<CertifiedKey>> {
        self.current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Offer a PEM pair. Identical bytes are a no-op; a pair that fails [`load_pair`] is
    /// refused, the old certificate keeps serving, and the failure is logged once per
    /// distinct input. `source` names where it came from, for the log.
    pub fn offer_pem(
        &self,
        cert_pem: &[u8],
        key_pem: &[u8],
        source: &str,
    ) -> Result<Reload, TlsError> {
        let fingerprint = pair_fingerprint(cert_pem, key_pem);
        // Held for the whole offer so concurrent offers apply in order; handshakes only touch
        // `current`, never this lock.
        let mut tracking = self.lock();
        if tracking.served == Some(fingerprint) {
            return Ok(Reload::Unchanged);
        }
        let now = jiff::Timestamp::now().as_second();
        let loaded = match load_pair(cert_pem, key_pem, now) {
            Ok(loaded) => loaded,
            Err(err) => {
                Self::failed(
                    &mut tracking,
                    self.metrics.as_ref(),
                    fingerprint,
                    source,
                    &err,
                );
                return Err(err);
            }
        };
        *self.current.write().unwrap_or_else(PoisonError::into_inner) = Some(loaded.key);
        tracking.served = Some(fingerprint);
        tracking.last_failure = None;
        tracking.info = Some(loaded.info.clone());
        self.generation.fetch_add(1, Ordering::AcqRel);
        drop(tracking);
        if let Some(m) = &self.metrics {
            m.loaded(loaded.info.not_after);
        }
        tracing::info!(
            source,
            serial = %loaded.info.serial,
            not_after = loaded.info.not_after,
            "serving certificate loaded"
        );
        Ok(Reload::Loaded(loaded.info))
    }

    /// Record a failure that happened before a pair could even be offered (e.g. the files are
    /// missing). Logged once per distinct error text.
    pub fn report_failure(&self, source: &str, err: &TlsError) {
        let text = err.to_string();
        let fingerprint: Fingerprint = Sha256::digest(text.as_bytes()).into();
        Self::failed(
            &mut self.lock(),
            self.metrics.as_ref(),
            fingerprint,
            source,
            err,
        );
    }

    fn failed(
        tracking: &mut Tracking,
        metrics: Option<&TlsMetrics>,
        fingerprint: Fingerprint,
        source: &str,
        err: &TlsError,
    ) {
        if tracking.last_failure == Some(fingerprint) {
            return;
        }
        tracking.last_failure = Some(fingerprint);
        let serving = tracking.served.is_some();
        if let Some(m) = metrics {
            m.rejected();
        }
        tracing::error!(
            source,
            error = %err,
            keeps_serving_previous = serving,
            "serving certificate refused"
        );
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Tracking> {
        self.tracking.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl ResolvesServerCert for ReloadingResolver {
    fn resolve(&self, _client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.current()
    }
}

/// Length-prefixed so that moving bytes between the two inputs changes the hash.
fn pair_fingerprint(cert_pem: &[u8], key_pem: &[u8]) -> Fingerprint {
    let mut h = Sha256::new();
    h.update((cert_pem.len() as u64).to_be_bytes());
    h.update(cert_pem);
    h.update(key_pem);
    h.finalize().into()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair() -> (String, String) {
        let ck = rcgen::generate_simple_self_signed(vec!["a.example".to_string()]).unwrap();
        (ck.cert.pem(), ck.signing_key.serialize_pem())
    }

    #[test]
    fn swaps_good_pairs_and_keeps_old_on_bad() {
        let metrics = TlsMetrics::default();
        let r = ReloadingResolver::new(Some(metrics.clone()));
        assert!(!r.has_certificate());
        let (c1, k1) = pair();
        let first = match r.offer_pem(c1.as_bytes(), k1.as_bytes(), "t").unwrap() {
            Reload::Loaded(info) => info,
            Reload::Unchanged => panic!("first load reported unchanged"),
        };
        assert!(r.has_certificate());
        assert_eq!(r.generation(), 1);
        assert_eq!(
            r.offer_pem(c1.as_bytes(), k1.as_bytes(), "t").unwrap(),
            Reload::Unchanged
        );
        let (c2, k2) = pair();
        // New cert, old key: a half-finished rotation.
        for _ in 0..3 {
            assert!(r.offer_pem(c2.as_bytes(), k1.as_bytes(), "t").is_err());
        }
        assert_eq!(r.generation(), 1);
        assert_eq!(r.info().unwrap(), first);
        assert_eq!(
            metrics.reloads("rejected"),
            1,
            "counted once per distinct change"
        );
        assert!(matches!(
            r.offer_pem(c2.as_bytes(), k2.as_bytes(), "t").unwrap(),
            Reload::Loaded(_)
        ));
        assert_eq!(r.generation(), 2);
        assert_ne!(r.info().unwrap().serial, first.serial);
        assert_eq!(metrics.reloads("loaded"), 2);
        assert_eq!(metrics.not_after(), r.info().unwrap().not_after);
    }
}
