//! Leader election with a `coordination.k8s.io/v1` Lease (kube 5 ships none): acquire, renew and
//! release with resourceVersion-guarded replaces, like client-go's leaderelection.

use std::future::Future;
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::Timestamp;
use kube::api::{ObjectMeta, PostParams};
use kube::{Api, Client};
use tokio::sync::watch;

use super::error::{ControllerError, is_conflict};
use super::metrics::Metrics;

/// Leader election settings.
#[derive(Clone, Debug)]
pub struct LeaderElectionConfig {
    /// Lease name (e.g. `spin-operator-leader`).
    pub lease_name: String,
    /// Namespace of the Lease (the operator's namespace).
    pub lease_namespace: String,
    /// This replica's identity (the pod name).
    pub identity: String,
    /// How long a lease is valid without renewal (default 15s).
    pub lease_duration: Duration,
    /// How often the leader renews (default 5s).
    pub renew_interval: Duration,
    /// How long the leader keeps leading while renewals fail (default 10s, < lease_duration so
    /// it steps down before anyone else may take over).
    pub renew_deadline: Duration,
    /// How often a follower retries (default 2s).
    pub retry_interval: Duration,
}

impl LeaderElectionConfig {
    /// Defaults: lease 15s, renew every 5s, renew deadline 10s, retry every 2s.
    pub fn new(
        lease_name: impl Into<String>,
        lease_namespace: impl Into<String>,
        identity: impl Into<String>,
    ) -> Self {
        LeaderElectionConfig {
            lease_name: lease_name.into(),
            lease_namespace: lease_namespace.into(),
            identity: identity.into(),
            lease_duration: Duration::from_secs(15),
            renew_interval: Duration::from_secs(5),
            renew_deadline: Duration::from_secs(10),
            retry_interval: Duration::from_secs(2),
        }
    }
}

/// Runs the election loop; [`LeaderElector::subscribe`] tells whether this replica leads.
pub struct LeaderElector {
    api: Api<Lease>,
    config: LeaderElectionConfig,
    tx: watch::Sender<bool>,
    metrics: Metrics,
    /// Last resourceVersion seen and when we first saw it (local clock: immune to skew).
    observed: Option<(String, Instant)>,
}

fn micro_now() -> MicroTime {
    MicroTime(Timestamp::now())
}

impl LeaderElector {
    /// Creates an elector (not yet running).
    pub fn new(client: Client, config: LeaderElectionConfig, metrics: Metrics) -> Self {
        let (tx, _) = watch::channel(false);
        LeaderElector {
            api: Api::namespaced(client, &config.lease_namespace),
            config,
            tx,
            metrics,
            observed: None,
        }
    }

    /// `true` while this replica holds the lease.
    pub fn subscribe(&self) -> watch::Receiver<bool> {
        self.tx.subscribe()
    }

    fn set_leading(&self, leading: bool) {
        self.tx.send_if_modified(|v| {
            let changed = *v != leading;
            *v = leading;
            changed
        });
        self.metrics.set_leader(leading);
    }

    /// Runs until `shutdown` resolves, then releases the lease if held.
    pub async fn run(mut self, shutdown: impl Future<Output = ()>) {
        tokio::pin!(shutdown);
        let mut last_renew: Option<Instant> = None;
        loop {
            // Bound every round: a renewal that hangs (no error, no answer) must not keep a
            // leader leading past its renew deadline while another replica takes the lease over.
            let budget = match last_renew {
                Some(t) if *self.tx.borrow() => {
                    self.config.renew_deadline.saturating_sub(t.elapsed())
                }
                _ => self.config.renew_deadline,
            };
            let round = tokio::time::timeout(budget, self.try_acquire_or_renew())
                .await
                .unwrap_or(Err(ControllerError::LeaseTimeout(budget)));
            match round {
                Ok(true) => {
                    if !*self.tx.borrow() {
                        tracing::info!(identity = %self.config.identity, lease = %self.config.lease_name, "became leader");
                    }
                    last_renew = Some(Instant::now());
                    self.set_leading(true);
                }
                Ok(false) => {
                    if *self.tx.borrow() {
                        tracing::warn!(identity = %self.config.identity, "lost leadership");
                    }
                    last_renew = None;
                    self.set_leading(false);
                }
                Err(e) => {
                    tracing::warn!(error = %e, "leader election request failed");
                    let expired =
                        last_renew.is_none_or(|t| t.elapsed() >= self.config.renew_deadline);
                    if expired && *self.tx.borrow() {
                        tracing::warn!(identity = %self.config.identity, "could not renew the lease in time; stepping down");
                        self.set_leading(false);
                    }
                }
            }
            let wait = if *self.tx.borrow() {
                self.config.renew_interval
            } else {
                self.config.retry_interval
            };
            tokio::select! {
                _ = &mut shutdown => break,
                _ = tokio::time::sleep(wait) => {}
            }
        }
        if *self.tx.borrow() {
            self.set_leading(false);
            if let Err(e) = self.release().await {
                tracing::warn!(error = %e, "releasing the lease failed");
            }
        }
    }

    fn lease_duration_secs(&self) -> i32 {
        i32::try_from(self.config.lease_duration.as_secs().max(1)).unwrap_or(i32::MAX)
    }

    /// One election round: `Ok(true)` when we hold the lease afterwards.
    async fn try_acquire_or_renew(&mut self) -> Result<bool, ControllerError> {
        let name = self.config.lease_name.clone();
        let me = self.config.identity.clone();
        let existing = self
            .api
            .get_opt(&name)
            .await
            .map_err(|e| ControllerError::api(format!("get Lease {name}"), e))?;
        let Some(mut lease) = existing else {
            let now = micro_now();
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(name.clone()),
                    ..Default::default()
                },
                spec: Some(LeaseSpec {
                    holder_identity: Some(me),
                    lease_duration_seconds: Some(self.lease_duration_secs()),
                    acquire_time: Some(now.clone()),
                    renew_time: Some(now),
                    lease_transitions: Some(0),
                    ..Default::default()
                }),
            };
            return match self.api.create(&PostParams::default(), &lease).await {
                Ok(created) => {
                    self.observe(&created);
                    Ok(true)
                }
                Err(e) if is_conflict(&e) => Ok(false),
                Err(e) => Err(ControllerError::api(format!("create Lease {name}"), e)),
            };
        };

        self.observe(&lease);
        let spec = lease.spec.clone().unwrap_or_default();
        let holder = spec.holder_identity.clone().unwrap_or_default();
        let duration = spec
            .lease_duration_seconds
            .and_then(|s| u64::try_from(s).ok())
            .map_or(self.config.lease_duration, Duration::from_secs);
        let observed_at = self.observed.as_ref().map(|(_, t)| *t);
        let held_by_other = !holder.is_empty()
            && holder != me
            && observed_at.is_some_and(|t| t.elapsed() < duration);
        if held_by_other {
            return Ok(false);
        }

        let now = micro_now();
        let taking_over = holder != me;
        lease.spec = Some(LeaseSpec {
            holder_identity: Some(me),
            lease_duration_seconds: Some(self.lease_duration_secs()),
            acquire_time: if taking_over {
                Some(now.clone())
            } else {
                spec.acquire_time.clone()
            },
            renew_time: Some(now),
            lease_transitions: Some(spec.lease_transitions.unwrap_or(0) + i32::from(taking_over)),
            ..spec
        });
        // `replace` carries the resourceVersion we read: a concurrent writer makes it 409.
        match self
            .api
            .replace(&name, &PostParams::default(), &lease)
            .await
        {
            Ok(updated) => {
                self.observe(&updated);
                Ok(true)
            }
            Err(e) if is_conflict(&e) => Ok(false),
            Err(e) => Err(ControllerError::api(format!("update Lease {name}"), e)),
        }
    }

    fn observe(&mut self, lease: &Lease) {
        let rv = lease.metadata.resource_version.clone().unwrap_or_default();
        if self.observed.as_ref().map(|(r, _)| r) != Some(&rv) {
            self.observed = Some((rv, Instant::now()));
        }
    }

    /// Gives the lease up so another replica can take over immediately.
    async fn release(&mut self) -> Result<(), ControllerError> {
        let name = self.config.lease_name.clone();
        let Some(mut lease) = self
            .api
            .get_opt(&name)
            .await
            .map_err(|e| ControllerError::api(format!("get Lease {name}"), e))?
        else {
            return Ok(());
        };
        let spec = lease.spec.clone().unwrap_or_default();
        if spec.holder_identity.as_deref() != Some(self.config.identity.as_str()) {
            return Ok(());
        }
        lease.spec = Some(LeaseSpec {
            holder_identity: None,
            lease_duration_seconds: Some(1),
            renew_time: Some(micro_now()),
            ..spec
        });
        self.api
            .replace(&name, &PostParams::default(), &lease)
            .await
            .map_err(|e| ControllerError::api(format!("release Lease {name}"), e))?;
        tracing::info!(identity = %self.config.identity, "released the leader lease");
        Ok(())
    }
}
