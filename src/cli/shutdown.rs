//! The shutdown sequence of `spin-operator run`: not ready at once, serving through a lame-duck
//! period, then stopping.

use std::future::Future;
use std::time::Duration;

use spin_operator::admission::ReadinessCheck;
use tokio::sync::watch;

/// A shutdown signal every component can wait on. On SIGTERM or ctrl-c, readiness goes false at
/// once and [`Shutdown::begun`] fires (the controllers stop and hand over leadership); the
/// servers are told to stop ([`Shutdown::wait`]) only after the lame-duck period (or a second
/// signal), so the API server keeps being served while Endpoints drop the pod.
#[derive(Clone)]
pub struct Shutdown {
    begun: watch::Receiver<bool>,
    stop: watch::Receiver<bool>,
}

impl Shutdown {
    pub(crate) fn install(lame_duck: Duration, serving: ReadinessCheck) -> Self {
        serving.set_ready(true);
        let (begun_tx, begun) = watch::channel(false);
        let (stop_tx, stop) = watch::channel(false);
        tokio::spawn(async move {
            wait_for_signal().await;
            serving.set_ready(false);
            let _ = begun_tx.send(true);
            tracing::info!(
                lame_duck_seconds = lame_duck.as_secs(),
                "shutdown signal received: not ready, still serving for the lame-duck period"
            );
            tokio::select! {
                () = tokio::time::sleep(lame_duck) => {}
                () = wait_for_signal() => tracing::info!("second signal: ending the lame-duck period"),
            }
            tracing::info!("lame-duck period over: stopping");
            let _ = stop_tx.send(true);
        });
        Self { begun, stop }
    }

    fn fired(rx: &watch::Receiver<bool>) -> impl Future<Output = ()> + Send + 'static {
        let mut rx = rx.clone();
        async move {
            let _ = rx.wait_for(|down| *down).await;
        }
    }

    /// Whether a shutdown signal has arrived (the lame-duck period may still be running).
    pub fn has_begun(&self) -> bool {
        *self.begun.borrow()
    }

    /// Completes as soon as a shutdown signal arrives (for what serves no clients).
    pub fn begun(&self) -> impl Future<Output = ()> + Send + 'static {
        Self::fired(&self.begun)
    }

    /// Completes once the servers (and what they need) are to stop: after the lame-duck period.
    pub fn wait(&self) -> impl Future<Output = ()> + Send + 'static {
        Self::fired(&self.stop)
    }
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
