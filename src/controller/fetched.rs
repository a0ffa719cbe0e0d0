//! [`Fetched`]: objects the controller reads by name (the Secrets and ConfigMaps apps reference,
//! the executors' CA Secrets), fetched by a GET when a reconcile first needs one and kept until
//! the metadata watch of their kind says they changed.
//!
//! The controllers watch Secrets and ConfigMaps as metadata only (`PartialObjectMetadata`): that
//! is enough to re-trigger the apps that reference an object, and it keeps the data of every
//! Secret nobody references out of this process (a shared cluster holds thousands). An entry
//! exists only for an object some reconcile asked for, and [`Fetched::retain`] drops entries once
//! nothing references the object.
//!
//! Consistency: a GET may race with a change the watch reports while the GET is in flight. Each
//! entry carries a generation bumped by every change the watch reports for it, and a fetch keeps
//! its answer only if the generation did not move meanwhile. A change reported before the entry
//! existed needs no bump: the GET was sent after it and sees it.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard};

use kube::Resource;
use kube::runtime::watcher::Event;

/// (namespace, name).
type Key = (String, String);

/// What a GET found.
enum Found<T> {
    Present {
        resource_version: Option<String>,
        object: Arc<T>,
    },
    Absent,
}

impl<T> Found<T> {
    fn object(&self) -> Option<Arc<T>> {
        match self {
            Found::Present { object, .. } => Some(object.clone()),
            Found::Absent => None,
        }
    }
}

struct Entry<T> {
    /// Bumped by every change the watch reports; a fetch started before a bump is not kept.
    generation: u64,
    /// `None` until fetched, and again after a change.
    found: Option<Found<T>>,
    /// Listed by the relist in progress (objects not listed were deleted meanwhile).
    relisted: bool,
}

/// Objects of one kind fetched on demand; see the module docs. Clones share the entries.
pub struct Fetched<T> {
    entries: Arc<Mutex<HashMap<Key, Entry<T>>>>,
}

impl<T> Clone for Fetched<T> {
    fn clone(&self) -> Self {
        Fetched {
            entries: self.entries.clone(),
        }
    }
}

impl<T> Default for Fetched<T> {
    fn default() -> Self {
        Fetched {
            entries: Arc::default(),
        }
    }
}

impl<T> Fetched<T> {
    fn lock(&self) -> MutexGuard<'_, HashMap<Key, Entry<T>>> {
        // A panic while holding the lock cannot leave an entry half-written (every update is
        // one assignment), so a poisoned map is still sound.
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Object `namespace/name`: from the entry when it is current, else by `fetch` (a GET that
    /// answers `None` for 404 and the object with its `resourceVersion` otherwise).
    pub async fn get<F, Fut, E>(
        &self,
        namespace: &str,
        name: &str,
        fetch: F,
    ) -> Result<Option<Arc<T>>, E>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Option<(Option<String>, T)>, E>>,
    {
        let key = (namespace.to_string(), name.to_string());
        let generation = {
            let mut entries = self.lock();
            let entry = entries.entry(key.clone()).or_insert(Entry {
                generation: 0,
                found: None,
                relisted: false,
            });
            if let Some(found) = &entry.found {
                return Ok(found.object());
            }
            entry.generation
        };
        let found = match fetch().await? {
            Some((resource_version, object)) => Found::Present {
                resource_version,
                object: Arc::new(object),
            },
            None => Found::Absent,
        };
        let object = found.object();
        if let Some(entry) = self.lock().get_mut(&key)
            && entry.generation == generation
        {
            entry.found = Some(found);
        }
        Ok(object)
    }

    /// Applies one event of the kind's metadata watch.
    pub fn observe<R: Resource>(&self, event: &Event<R>) {
        let mut entries = self.lock();
        match event {
            Event::Init => {
                // Changes may have been missed while the watch was down: no fetch in flight
                // may keep its answer, and the relist decides what stays.
                for entry in entries.values_mut() {
                    entry.generation += 1;
                    entry.relisted = false;
                }
            }
            Event::InitApply(obj) | Event::Apply(obj) => {
                let Some(entry) = entries.get_mut(&key_of(obj)) else {
                    return;
                };
                entry.relisted = true;
                let unchanged = matches!(
                    &entry.found,
                    Some(Found::Present { resource_version: Some(cached), .. })
                        if obj.meta().resource_version.as_ref() == Some(cached)
                );
                if !unchanged {
                    entry.generation += 1;
                    entry.found = None;
                }
            }
            Event::Delete(obj) => {
                if let Some(entry) = entries.get_mut(&key_of(obj)) {
                    entry.generation += 1;
                    entry.found = Some(Found::Absent);
                }
            }
            Event::InitDone => {
                for entry in entries.values_mut().filter(|e| !e.relisted) {
                    // Deleted while the watch was down (or never existed: then no change).
                    if !matches!(entry.found, Some(Found::Absent)) {
                        entry.generation += 1;
                        entry.found = None;
                    }
                }
            }
        }
    }

    /// Keeps only the entries `keep(namespace, name)` still wants (the objects some app or
    /// executor references).
    pub fn retain(&self, keep: impl Fn(&str, &str) -> bool) {
        self.lock()
            .retain(|(namespace, name), _| keep(namespace, name));
    }

    /// Number of entries (present, absent or not yet fetched).
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// True when there are no entries.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn key_of<R: Resource>(obj: &R) -> Key {
    let meta = obj.meta();
    (
        meta.namespace.clone().unwrap_or_default(),
        meta.name.clone().unwrap_or_default(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::Secret;
    use kube::core::PartialObjectMeta;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn meta(name: &str, rv: &str) -> PartialObjectMeta<Secret> {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": name, "namespace": "ns", "resourceVersion": rv},
        }))
        .unwrap()
    }

    /// A fake API: the current version of each object and a count of GETs.
    #[derive(Default)]
    struct Api {
        objects: Mutex<HashMap<String, String>>,
        gets: AtomicUsize,
    }

    impl Api {
        fn set(&self, name: &str, rv: &str) {
            self.objects.lock().unwrap().insert(name.into(), rv.into());
        }
        fn delete(&self, name: &str) {
            self.objects.lock().unwrap().remove(name);
        }
        async fn get(&self, name: &str) -> Result<Option<(Option<String>, String)>, ()> {
            self.gets.fetch_add(1, Ordering::SeqCst);
            Ok(self
                .objects
                .lock()
                .unwrap()
                .get(name)
                .map(|rv| (Some(rv.clone()), format!("{name}@{rv}"))))
        }
    }

    async fn read(cache: &Fetched<String>, api: &Api, name: &str) -> Option<String> {
        cache
            .get("ns", name, || api.get(name))
            .await
            .unwrap()
            .map(|s| s.as_ref().clone())
    }

    #[tokio::test]
    async fn fetches_once_and_again_only_after_a_change() {
        let (cache, api) = (Fetched::default(), Api::default());
        api.set("db", "1");
        assert_eq!(read(&cache, &api, "db").await.as_deref(), Some("db@1"));
        assert_eq!(read(&cache, &api, "db").await.as_deref(), Some("db@1"));
        assert_eq!(api.gets.load(Ordering::SeqCst), 1);

        // The watch repeating the cached version (a relist) keeps the entry.
        cache.observe(&Event::Apply(meta("db", "1")));
        read(&cache, &api, "db").await;
        assert_eq!(api.gets.load(Ordering::SeqCst), 1);

        api.set("db", "2");
        cache.observe(&Event::Apply(meta("db", "2")));
        assert_eq!(read(&cache, &api, "db").await.as_deref(), Some("db@2"));
        assert_eq!(api.gets.load(Ordering::SeqCst), 2);

        // Changes of objects nobody asked for create no entry.
        cache.observe(&Event::Apply(meta("unrelated", "9")));
        assert_eq!(cache.len(), 1);
    }

    #[tokio::test]
    async fn absence_is_cached_until_the_object_appears() {
        let (cache, api) = (Fetched::default(), Api::default());
        assert_eq!(read(&cache, &api, "later").await, None);
        assert_eq!(read(&cache, &api, "later").await, None);
        assert_eq!(api.gets.load(Ordering::SeqCst), 1);
        api.set("later", "5");
        cache.observe(&Event::Apply(meta("later", "5")));
        assert_eq!(
            read(&cache, &api, "later").await.as_deref(),
            Some("later@5")
        );

        api.delete("later");
        cache.observe(&Event::Delete(meta("later", "5")));
        assert_eq!(read(&cache, &api, "later").await, None);
        assert_eq!(api.gets.load(Ordering::SeqCst), 2, "a delete needs no GET");
    }

    #[tokio::test]
    async fn a_change_during_the_get_is_not_lost() {
        let (cache, api) = (Fetched::<String>::default(), Api::default());
        api.set("db", "1");
        // The GET answers the old version; the watch reports the new one before it returns.
        let got = cache
            .get("ns", "db", || async {
                let old = api.get("db").await;
                api.set("db", "2");
                cache.observe(&Event::Apply(meta("db", "2")));
                old
            })
            .await
            .unwrap();
        assert_eq!(got.as_deref().map(String::as_str), Some("db@1"));
        assert_eq!(read(&cache, &api, "db").await.as_deref(), Some("db@2"));
    }

    #[tokio::test]
    async fn a_relist_drops_what_it_no_longer_lists_and_keeps_the_unchanged() {
        let (cache, api) = (Fetched::default(), Api::default());
        api.set("kept", "1");
        api.set("gone", "1");
        api.set("changed", "1");
        for name in ["kept", "gone", "changed"] {
            read(&cache, &api, name).await;
        }
        api.delete("gone");
        api.set("changed", "2");
        cache.observe(&Event::<PartialObjectMeta<Secret>>::Init);
        cache.observe(&Event::InitApply(meta("kept", "1")));
        cache.observe(&Event::InitApply(meta("changed", "2")));
        cache.observe(&Event::<PartialObjectMeta<Secret>>::InitDone);
        assert_eq!(read(&cache, &api, "kept").await.as_deref(), Some("kept@1"));
        assert_eq!(read(&cache, &api, "gone").await, None);
        assert_eq!(
            read(&cache, &api, "changed").await.as_deref(),
            Some("changed@2")
        );
        assert_eq!(api.gets.load(Ordering::SeqCst), 3 + 2);
    }

    #[tokio::test]
    async fn retain_drops_entries_nothing_references() {
        let (cache, api) = (Fetched::default(), Api::default());
        api.set("a", "1");
        api.set("b", "1");
        read(&cache, &api, "a").await;
        read(&cache, &api, "b").await;
        cache.retain(|_, name| name == "a");
        assert_eq!(cache.len(), 1);
        read(&cache, &api, "b").await;
        assert_eq!(api.gets.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn a_failed_get_caches_nothing() {
        let cache = Fetched::<String>::default();
        let failed: Result<_, &str> = cache.get("ns", "db", || async { Err("boom") }).await;
        assert_eq!(failed.unwrap_err(), "boom");
        let api = Api::default();
        api.set("db", "3");
        assert_eq!(read(&cache, &api, "db").await.as_deref(), Some("db@3"));
    }
}
