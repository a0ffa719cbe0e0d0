//! Events (`events.k8s.io/v1`) about SpinApps and executors.
//!
//! Publishes what kube's `Recorder` publishes: the same Event fields and names, and a repeat of
//! the same event within six minutes patched into the first one's `series` instead of creating
//! another. Only the de-duplication memory differs. kube's `Recorder` keeps every Event object it
//! published for six minutes and scans them all on each publish: about 27 MiB while 10,000 apps
//! converge (docs/benchmarks-history.md, run G). This keeps, per event, a 64-bit hash of its identity, the Event's
//! name and its count, and drops expired entries at most once a minute.

use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::events::v1::Event as K8sEvent;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::runtime::events::{Event, EventType, Reporter};
use kube::{Client, ResourceExt};
use serde_json::json;

use super::error::is_not_found;

/// How long a published event is remembered for its series (kube's `Recorder`: 6 minutes).
const SERIES_WINDOW: Duration = Duration::from_secs(6 * 60);
/// Expired entries are dropped at most this often (kube's scans on every publish).
const SWEEP_EVERY: Duration = Duration::from_secs(60);

/// Publishes Events as a reporting controller; cheap to clone (the memory is shared).
#[derive(Clone)]
pub struct Recorder {
    client: Client,
    reporter: Reporter,
    seen: Arc<Mutex<Seen>>,
}

/// The events published within the series window, by identity hash.
struct Seen {
    events: HashMap<u64, Published>,
    swept: Instant,
}

struct Published {
    name: Box<str>,
    count: i32,
    last: Instant,
}

impl Seen {
    /// The Event to patch and its next count when `key` was published within the window.
    fn repeat_of(&mut self, key: u64, now: Instant) -> Option<(Box<str>, i32)> {
        if now.duration_since(self.swept) >= SWEEP_EVERY {
            self.events
                .retain(|_, p| now.duration_since(p.last) < SERIES_WINDOW);
            self.swept = now;
        }
        let p = self.events.get(&key)?;
        (now.duration_since(p.last) < SERIES_WINDOW).then(|| (p.name.clone(), p.count + 1))
    }
}

impl Recorder {
    pub fn new(client: Client, reporter: Reporter) -> Self {
        Self {
            client,
            reporter,
            seen: Arc::new(Mutex::new(Seen {
                events: HashMap::new(),
                swept: Instant::now(),
            })),
        }
    }

    fn seen(&self) -> MutexGuard<'_, Seen> {
        // Plain bookkeeping: consistent even if a holder panicked.
        self.seen.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Creates the Event `ev` about `regarding`, or, when the same event (same type, action,
    /// reason, reporter, regarding object including its resourceVersion, and related object)
    /// was published in the last six minutes, counts it in that Event's `series`.
    pub async fn publish(
        &self,
        ev: &Event,
        regarding: &ObjectReference,
    ) -> Result<(), kube::Error> {
        let key = identity(&self.reporter, ev, regarding);
        let repeat = self.seen().repeat_of(key, Instant::now());
        let namespace = regarding.namespace.as_deref().unwrap_or("default");
        let api: Api<K8sEvent> = Api::namespaced(self.client.clone(), namespace);
        let published = match repeat {
            Some((name, count)) => {
                let series = json!({"series": {
                    "count": count,
                    "lastObservedTime": MicroTime(Timestamp::now()),
                }});
                match api
                    .patch(&name, &PatchParams::default(), &Patch::Merge(&series))
                    .await
                {
                    Ok(_) => Published {
                        name,
                        count,
                        last: Instant::now(),
                    },
                    // Deleted meanwhile (the apiserver expires Events): start a new one.
                    Err(e) if is_not_found(&e) => self.create(&api, ev, regarding).await?,
                    Err(e) => return Err(e),
                }
            }
            None => self.create(&api, ev, regarding).await?,
        };
        self.seen().events.insert(key, published);
        Ok(())
    }

    async fn create(
        &self,
        api: &Api<K8sEvent>,
        ev: &Event,
        regarding: &ObjectReference,
    ) -> Result<Published, kube::Error> {
        let created = api
            .create(&PostParams::default(), &self.event(ev, regarding))
            .await?;
        Ok(Published {
            name: created.name_any().into(),
            count: 1,
            last: Instant::now(),
        })
    }

    /// The Event object, field for field as kube's `Recorder` builds it.
    fn event(&self, ev: &Event, regarding: &ObjectReference) -> K8sEvent {
        let now = Timestamp::now();
        let controller = &self.reporter.controller;
        K8sEvent {
            action: Some(ev.action.clone()),
            reason: Some(ev.reason.clone()),
            event_time: Some(MicroTime(now)),
            regarding: Some(regarding.clone()),
            note: ev.note.as_deref().map(fit_note),
            metadata: ObjectMeta {
                namespace: regarding.namespace.clone(),
                name: Some(format!(
                    "{}.{:x}",
                    regarding.name.as_ref().unwrap_or(controller),
                    now.as_nanosecond()
                )),
                ..Default::default()
            },
            reporting_controller: Some(controller.clone()),
            reporting_instance: Some(
                self.reporter
                    .instance
                    .clone()
                    .unwrap_or_else(|| controller.clone()),
            ),
            type_: Some(
                match ev.type_ {
                    EventType::Normal => "Normal",
                    EventType::Warning => "Warning",
                }
                .to_string(),
            ),
            related: ev.secondary.clone(),
            ..Default::default()
        }
    }
}

/// The API server refuses an Event whose note is over 1,024 bytes (422): a long API error in a
/// note (an apply failure quoting the whole object in the way) lost the Event altogether.
const NOTE_LIMIT: usize = 1024;

/// `note` cut to [`NOTE_LIMIT`] bytes at a character boundary, marked with an ellipsis.
fn fit_note(note: &str) -> String {
    if note.len() <= NOTE_LIMIT {
        return note.to_string();
    }
    const MORE: &str = "…";
    let mut end = NOTE_LIMIT - MORE.len();
    while !note.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}{MORE}", &note[..end])
}

/// What makes two events the same for a series (kube's `EventKey`), hashed.
fn identity(reporter: &Reporter, ev: &Event, regarding: &ObjectReference) -> u64 {
    let mut h = DefaultHasher::new();
    ev.type_.hash(&mut h);
    ev.action.hash(&mut h);
    ev.reason.hash(&mut h);
    reporter.hash(&mut h);
    hash_reference(regarding, &mut h);
    match &ev.secondary {
        Some(related) => {
            1u8.hash(&mut h);
            hash_reference(related, &mut h);
        }
        None => 0u8.hash(&mut h),
    }
    h.finish()
}

/// Every field, as kube's key compares them (its `Reference` equality is the whole reference).
fn hash_reference(r: &ObjectReference, h: &mut impl Hasher) {
    r.api_version.hash(h);
    r.kind.hash(h);
    r.name.hash(h);
    r.namespace.hash(h);
    r.uid.hash(h);
    r.resource_version.hash(h);
    r.field_path.hash(h);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seen() -> Seen {
        Seen {
            events: HashMap::new(),
            swept: Instant::now(),
        }
    }

    #[test]
    fn notes_are_cut_to_what_the_api_server_accepts() {
        assert_eq!(fit_note("short"), "short");
        let exact = "x".repeat(NOTE_LIMIT);
        assert_eq!(fit_note(&exact), exact);
        // Multi-byte characters across the limit: cut before them, never inside one.
        let long = format!("{}{}", "x".repeat(NOTE_LIMIT - 4), "é".repeat(10));
        let cut = fit_note(&long);
        assert!(cut.len() <= NOTE_LIMIT, "{}", cut.len());
        assert!(cut.ends_with('…') && cut.starts_with("xxx"), "{cut}");
    }

    #[test]
    fn a_repeat_within_the_window_counts_on() {
        let mut s = seen();
        let t0 = Instant::now();
        assert!(s.repeat_of(7, t0).is_none());
        s.events.insert(
            7,
            Published {
                name: "web.1".into(),
                count: 1,
                last: t0,
            },
        );
        assert_eq!(
            s.repeat_of(7, t0 + Duration::from_secs(10)),
            Some(("web.1".into(), 2))
        );
        assert!(s.repeat_of(8, t0).is_none(), "another identity");
    }

    #[test]
    fn expired_entries_are_new_events_and_get_swept() {
        let mut s = seen();
        let t0 = s.swept;
        s.events.insert(
            7,
            Published {
                name: "web.1".into(),
                count: 3,
                last: t0,
            },
        );
        let later = t0 + SERIES_WINDOW;
        assert!(s.repeat_of(7, later).is_none());
        assert!(s.events.is_empty(), "swept once a minute has passed");
    }

    #[test]
    fn identity_covers_the_resource_version_and_the_reason() {
        let reporter = Reporter {
            controller: "spin-operator".into(),
            instance: Some("pod-a".into()),
        };
        let ev = |reason: &str| Event {
            type_: EventType::Normal,
            reason: reason.into(),
            note: Some("a note is not part of the identity".into()),
            action: "Reconcile".into(),
            secondary: None,
        };
        let reference = |rv: &str| ObjectReference {
            api_version: Some("core.spinkube.dev/v1alpha1".into()),
            kind: Some("SpinApp".into()),
            name: Some("web".into()),
            namespace: Some("apps".into()),
            uid: Some("u1".into()),
            resource_version: Some(rv.into()),
            field_path: None,
        };
        let id = |ev: &Event, r: &ObjectReference| identity(&reporter, ev, r);
        let base = id(&ev("Ready"), &reference("1"));
        assert_eq!(base, id(&ev("Ready"), &reference("1")));
        assert_ne!(base, id(&ev("Ready"), &reference("2")));
        assert_ne!(base, id(&ev("Progressing"), &reference("1")));
        let other = Reporter {
            instance: Some("pod-b".into()),
            ..reporter.clone()
        };
        assert_ne!(base, identity(&other, &ev("Ready"), &reference("1")));
        let mut related = ev("Ready");
        related.secondary = Some(reference("1"));
        assert_ne!(base, id(&related, &reference("1")));
    }
}
