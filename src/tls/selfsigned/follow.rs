//! The self-signed mode's loop: a sync pass whenever the Secret or one of our webhook
//! configurations changes (a watch each, limited to that one object by name), whenever
//! leadership changes, and on a slow fallback resync for renewal due dates and lost events.

use std::fmt::Debug;
use std::time::Duration;

use futures::stream::{self, BoxStream};
use futures::{FutureExt, StreamExt};
use k8s_openapi::api::admissionregistration::v1::{
    MutatingWebhookConfiguration, ValidatingWebhookConfiguration,
};
use k8s_openapi::api::core::v1::Secret;
use kube::api::Api;
use kube::core::PartialObjectMeta;
use kube::runtime::{WatchStreamExt, watcher};
use serde::de::DeserializeOwned;

use super::bootstrap::SelfSigned;
use crate::tls::webhook_configs::WriterRole;

/// How often the leadership flag is read (a local read, no API call): a new leader issues or
/// patches without waiting for the fallback resync.
const LEADERSHIP_CHECK: Duration = Duration::from_secs(1);

/// Emits `()` on every change of the object `name` (and once when the initial list is done).
/// Metadata only: a change bumps the resourceVersion, and the Secret's keys stay out of this
/// stream. Watch errors are retried by the watcher's backoff; the fallback resync covers them.
pub(crate) fn changes<K>(api: Api<PartialObjectMeta<K>>, name: &str) -> BoxStream<'static, ()>
where
    K: kube::Resource + Clone + DeserializeOwned + Debug + Send + 'static,
    K::DynamicType: Default,
{
    let wc = watcher::Config::default().fields(&format!("metadata.name={name}"));
    let kind = K::kind(&K::DynamicType::default()).into_owned();
    watcher(api, wc)
        .default_backoff()
        .filter_map(move |event| {
            futures::future::ready(match event {
                Ok(
                    watcher::Event::Apply(_) | watcher::Event::Delete(_) | watcher::Event::InitDone,
                ) => Some(()),
                Ok(watcher::Event::Init | watcher::Event::InitApply(_)) => None,
                Err(e) => {
                    tracing::warn!(kind = %kind, error = %e, "self-signed watch error; retrying");
                    None
                }
            })
        })
        .boxed()
}

impl SelfSigned {
    /// Syncs on every watched change, role change and fallback resync (`poll_interval`) until
    /// the task is dropped. `role` (a [`WriterRole`], or `bool`: leading or not) is asked on each
    /// pass so leadership changes and shutdown take effect without restarting. Errors are
    /// logged once per change.
    pub async fn run<R: Into<WriterRole>>(self, role: impl Fn() -> R + Send + 'static) {
        let client = &self.client;
        let secrets =
            Api::<PartialObjectMeta<Secret>>::namespaced(client.clone(), &self.config.namespace);
        let mut watches = vec![changes(secrets, &self.config.secret_name)];
        if let Some(name) = &self.config.mutating_webhook_configuration {
            let api = Api::<PartialObjectMeta<MutatingWebhookConfiguration>>::all(client.clone());
            watches.push(changes(api, name));
        }
        if let Some(name) = &self.config.validating_webhook_configuration {
            let api = Api::<PartialObjectMeta<ValidatingWebhookConfiguration>>::all(client.clone());
            watches.push(changes(api, name));
        }
        let mut watches = stream::select_all(watches);
        let mut resync = tokio::time::interval(self.config.poll_interval);
        resync.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut leadership = tokio::time::interval(LEADERSHIP_CHECK);
        leadership.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut was: Option<WriterRole> = None;
        let mut last_error: Option<String> = None;
        loop {
            tokio::select! {
                _ = resync.tick() => {}
                Some(()) = watches.next() => {
                    // One pass covers a burst (our own writes echo back as several events).
                    while let Some(Some(())) = watches.next().now_or_never() {}
                }
                _ = leadership.tick() => {
                    if was == Some(role().into()) {
                        continue;
                    }
                }
            }
            let now_role = role().into();
            was = Some(now_role);
            self.pass(now_role, &mut last_error).await;
            // The fallback counts from the last pass, whatever triggered it.
            resync.reset();
        }
    }

    async fn pass(&self, role: WriterRole, last_error: &mut Option<String>) {
        let now = jiff::Timestamp::now().as_second();
        match self.sync_once(role, now).await {
            Ok(sync) => {
                *last_error = None;
                if sync.created || sync.renewed || !sync.patched.is_empty() {
                    tracing::info!(
                        created = sync.created,
                        renewed = sync.renewed,
                        patched = ?sync.patched,
                        "self-signed webhook certificate updated"
                    );
                }
            }
            Err(err) => {
                let text = err.to_string();
                if last_error.as_deref() != Some(text.as_str()) {
                    tracing::error!(error = %text, "self-signed certificate sync failed");
                    *last_error = Some(text);
                }
            }
        }
    }
}
