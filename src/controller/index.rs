//! Reverse indexes kept beside the reflector stores and fed by the same watch events, so watch
//! mappers and the stale-Secret cleanup find the objects concerned directly instead of scanning
//! every cached object (those scans made fleet convergence O(N²); see docs/benchmarks-history.md).
//!
//! An index maps each object to a set of [`IndexKey`]s (computed by a key function when the object
//! is applied) and answers "which objects have this key". It follows the reflector's semantics: a
//! relist (`Init` … `InitDone`) replaces the whole index at once.

use std::collections::hash_map::Entry;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use kube::runtime::watcher;
use kube::{Resource, ResourceExt};
use tokio::sync::watch;

/// What an object is indexed under: another object (kind, namespace, name) it points at.
///
/// One shared string (`kind/namespace/name`: Kubernetes names never contain `/`), so the many
/// apps naming one executor share one allocation, and the two maps share each key.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct IndexKey(Arc<str>);

impl IndexKey {
    pub fn new(kind: &'static str, namespace: &str, name: &str) -> Self {
        IndexKey(format!("{kind}/{namespace}/{name}").into())
    }
}

/// (namespace, name) of an indexed object.
pub type ObjectKey = (String, String);

/// An indexed object inside the maps: `namespace/name`, shared by both maps.
type Member = Arc<str>;

fn member(namespace: &str, name: &str) -> Member {
    format!("{namespace}/{name}").into()
}

fn object_key(member: &Member) -> ObjectKey {
    let (namespace, name) = member.split_once('/').unwrap_or_default();
    (namespace.to_string(), name.to_string())
}

type KeyFn<K> = dyn Fn(&K) -> Vec<IndexKey> + Send + Sync;

/// The objects under one key. Most keys (an app's own Secret, a ConfigMap one app reads) have
/// a single object: kept inline, since the smallest set costs a 200–550-byte allocation each.
enum Members {
    One(Member),
    Many(HashSet<Member>),
}

impl Members {
    fn insert(&mut self, object: Member) {
        match self {
            Members::One(only) if *only == object => {}
            Members::One(only) => {
                let first = only.clone();
                *self = Members::Many(HashSet::from([first, object]));
            }
            Members::Many(set) => {
                set.insert(object);
            }
        }
    }

    /// Removes `object`; false when nothing is left.
    fn remove(&mut self, object: &Member) -> bool {
        match self {
            Members::One(only) => only != object,
            Members::Many(set) => {
                set.remove(object);
                !set.is_empty()
            }
        }
    }

    fn sorted(&self) -> Vec<ObjectKey> {
        let mut all: Vec<ObjectKey> = match self {
            Members::One(only) => vec![object_key(only)],
            Members::Many(set) => set.iter().map(object_key).collect(),
        };
        all.sort_unstable();
        all
    }
}

#[derive(Default)]
struct Maps {
    keys_of: HashMap<Member, Box<[IndexKey]>>,
    objects_of: HashMap<IndexKey, Members>,
}

impl Maps {
    fn remove(&mut self, object: &Member) {
        for key in self.keys_of.remove(object).into_iter().flatten() {
            if let Some(members) = self.objects_of.get_mut(&key)
                && !members.remove(object)
            {
                self.objects_of.remove(&key);
            }
        }
    }

    fn insert(&mut self, object: Member, keys: Vec<IndexKey>) {
        self.remove(&object);
        if keys.is_empty() {
            return;
        }
        let keys: Box<[IndexKey]> = keys
            .into_iter()
            .map(|key| match self.objects_of.entry(key) {
                // Already indexed: share the existing key's string.
                Entry::Occupied(mut entry) => {
                    entry.get_mut().insert(object.clone());
                    entry.key().clone()
                }
                Entry::Vacant(entry) => {
                    let key = entry.key().clone();
                    entry.insert(Members::One(object.clone()));
                    key
                }
            })
            .collect();
        self.keys_of.insert(object, keys);
    }
}

struct Inner {
    live: Maps,
    /// Filled during a relist, swapped in at `InitDone`.
    relisting: Option<Maps>,
}

/// A reverse index over objects of kind `K`. Clones share the index.
pub struct Index<K> {
    inner: Arc<RwLock<Inner>>,
    key_fn: Arc<KeyFn<K>>,
    ready: watch::Sender<bool>,
}

impl<K> Clone for Index<K> {
    fn clone(&self) -> Self {
        Index {
            inner: self.inner.clone(),
            key_fn: self.key_fn.clone(),
            ready: self.ready.clone(),
        }
    }
}

impl<K: Resource> Index<K> {
    /// An empty index computing each object's keys with `key_fn`.
    pub fn new(key_fn: impl Fn(&K) -> Vec<IndexKey> + Send + Sync + 'static) -> Self {
        Index {
            inner: Arc::new(RwLock::new(Inner {
                live: Maps::default(),
                relisting: None,
            })),
            key_fn: Arc::new(key_fn),
            ready: watch::Sender::new(false),
        }
    }

    // A panic while holding the lock cannot leave the maps half-updated in a way that matters
    // more than stopping would: recover the guard instead of propagating the poison.
    fn read(&self) -> RwLockReadGuard<'_, Inner> {
        self.inner.read().unwrap_or_else(|e| e.into_inner())
    }
    fn write(&self) -> RwLockWriteGuard<'_, Inner> {
        self.inner.write().unwrap_or_else(|e| e.into_inner())
    }

    fn member(obj: &K) -> Member {
        member(&obj.namespace().unwrap_or_default(), &obj.name_any())
    }

    /// Applies one watch event (call it for every event, before or after the reflector).
    pub fn apply_watcher_event(&self, event: &watcher::Event<K>) {
        match event {
            watcher::Event::Apply(obj) => {
                let keys = (self.key_fn)(obj);
                self.write().live.insert(Self::member(obj), keys);
            }
            watcher::Event::Delete(obj) => self.write().live.remove(&Self::member(obj)),
            watcher::Event::Init => self.write().relisting = Some(Maps::default()),
            watcher::Event::InitApply(obj) => {
                let keys = (self.key_fn)(obj);
                let mut inner = self.write();
                let maps = inner.relisting.get_or_insert_with(Maps::default);
                maps.insert(Self::member(obj), keys);
            }
            watcher::Event::InitDone => {
                let mut inner = self.write();
                if let Some(maps) = inner.relisting.take() {
                    inner.live = maps;
                }
                drop(inner);
                self.ready.send_replace(true);
            }
        }
    }

    /// Objects indexed under `key`, sorted by (namespace, name).
    pub fn get(&self, key: &IndexKey) -> Vec<ObjectKey> {
        self.read()
            .live
            .objects_of
            .get(key)
            .map(Members::sorted)
            .unwrap_or_default()
    }

    /// Waits until the first full list was indexed.
    pub async fn wait_until_ready(&self) {
        let mut rx = self.ready.subscribe();
        let _ = rx.wait_for(|r| *r).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::ConfigMap;

    fn cm(ns: &str, name: &str, points_at: &[&str]) -> ConfigMap {
        let mut c = ConfigMap::default();
        c.metadata.namespace = Some(ns.into());
        c.metadata.name = Some(name.into());
        c.data = Some(
            points_at
                .iter()
                .map(|p| (p.to_string(), String::new()))
                .collect(),
        );
        c
    }

    fn index() -> Index<ConfigMap> {
        Index::new(|c: &ConfigMap| {
            let ns = c.namespace().unwrap_or_default();
            c.data
                .iter()
                .flatten()
                .map(|(k, _)| IndexKey::new("Target", &ns, k))
                .collect()
        })
    }

    fn key(ns: &str, name: &str) -> IndexKey {
        IndexKey::new("Target", ns, name)
    }

    fn obj(ns: &str, name: &str) -> ObjectKey {
        (ns.into(), name.into())
    }

    #[test]
    fn apply_update_and_delete_move_entries() {
        let idx = index();
        idx.apply_watcher_event(&watcher::Event::Apply(cm("a", "one", &["x", "y"])));
        idx.apply_watcher_event(&watcher::Event::Apply(cm("a", "two", &["x"])));
        idx.apply_watcher_event(&watcher::Event::Apply(cm("b", "three", &["x"])));
        assert_eq!(
            idx.get(&key("a", "x")),
            vec![obj("a", "one"), obj("a", "two")]
        );
        assert_eq!(idx.get(&key("a", "y")), vec![obj("a", "one")]);
        assert_eq!(idx.get(&key("b", "x")), vec![obj("b", "three")]);

        // An update drops keys the object no longer has.
        idx.apply_watcher_event(&watcher::Event::Apply(cm("a", "one", &["z"])));
        assert_eq!(idx.get(&key("a", "x")), vec![obj("a", "two")]);
        assert!(idx.get(&key("a", "y")).is_empty());
        assert_eq!(idx.get(&key("a", "z")), vec![obj("a", "one")]);

        idx.apply_watcher_event(&watcher::Event::Delete(cm("a", "two", &[])));
        assert!(idx.get(&key("a", "x")).is_empty());
        assert!(!idx.read().live.objects_of.contains_key(&key("a", "x")));
    }

    #[test]
    fn objects_naming_one_key_share_its_string_and_empty_keys_go() {
        let idx = index();
        for name in ["one", "two", "three"] {
            idx.apply_watcher_event(&watcher::Event::Apply(cm("a", name, &["x"])));
        }
        {
            let inner = idx.read();
            let (shared, _) = inner.live.objects_of.get_key_value(&key("a", "x")).unwrap();
            assert_eq!(inner.live.keys_of.len(), 3);
            for keys in inner.live.keys_of.values() {
                assert!(Arc::ptr_eq(&keys[0].0, &shared.0));
            }
        }
        for name in ["two", "one", "three"] {
            idx.apply_watcher_event(&watcher::Event::Delete(cm("a", name, &[])));
        }
        assert!(idx.read().live.objects_of.is_empty());
        assert!(idx.read().live.keys_of.is_empty());
        idx.apply_watcher_event(&watcher::Event::Apply(cm("", "cluster-wide", &["x"])));
        assert_eq!(idx.get(&key("", "x")), vec![obj("", "cluster-wide")]);
    }

    #[tokio::test]
    async fn relist_replaces_the_index_at_init_done() {
        let idx = index();
        idx.apply_watcher_event(&watcher::Event::Apply(cm("a", "gone", &["x"])));
        idx.apply_watcher_event(&watcher::Event::Init);
        idx.apply_watcher_event(&watcher::Event::InitApply(cm("a", "new", &["x"])));
        // Until the relist completes, answers come from the previous full list.
        assert_eq!(idx.get(&key("a", "x")), vec![obj("a", "gone")]);
        idx.apply_watcher_event(&watcher::Event::InitDone);
        assert_eq!(idx.get(&key("a", "x")), vec![obj("a", "new")]);
        // Ready after the first complete list.
        tokio::time::timeout(std::time::Duration::from_secs(5), idx.wait_until_ready())
            .await
            .unwrap();
    }
}
