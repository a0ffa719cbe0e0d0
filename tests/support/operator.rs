//! The real controllers (`spin_operator::controller::run`) as a task a test starts, stops
//! gracefully or crashes. Shared by the controller test files.
#![allow(dead_code)] // each test file uses a different subset

use std::time::Duration;

use spin_operator::controller::{ControllerConfig, ControllerError, ControllerState, Metrics};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// How long a graceful stop may take.
const STOP_WAIT: Duration = Duration::from_secs(60);

/// A running controller instance.
pub struct Running {
    stop: Option<oneshot::Sender<()>>,
    pub task: JoinHandle<Result<(), ControllerError>>,
    pub metrics: Metrics,
    pub state: ControllerState,
}

impl Running {
    /// Graceful stop; the controllers must return without error.
    pub async fn stop(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        let r = tokio::time::timeout(STOP_WAIT, &mut self.task)
            .await
            .expect("controller stops within the timeout")
            .expect("controller task did not panic");
        r.expect("controller returned without error");
    }

    /// A crash: the task is dropped mid-flight, nothing is released.
    pub async fn crash(self) {
        self.task.abort();
        let r = self.task.await;
        assert!(r.is_err_and(|e| e.is_cancelled()));
    }

    /// Successful SpinApp reconciles so far.
    pub fn successes(&self) -> u64 {
        self.metrics.reconcile_count("spinapp", "success")
    }
}

/// Starts the controllers with `client` and `config`.
pub fn start(client: kube::Client, config: ControllerConfig) -> Running {
    // `RUST_LOG=spin_operator=debug cargo test ...` shows the controllers' logs.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    let (tx, rx) = oneshot::channel::<()>();
    let metrics = config.metrics.clone();
    let state = config.state.clone();
    let task = tokio::spawn(async move {
        spin_operator::controller::run(client, config, async move {
            let _ = rx.await;
        })
        .await
    });
    Running {
        stop: Some(tx),
        task,
        metrics,
        state,
    }
}
