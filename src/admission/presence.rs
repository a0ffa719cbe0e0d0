//! [`Names`]: which objects of one kind exist, by namespace and name, fed by a metadata watch.
//!
//! The webhooks only ask "does Secret `ns/name` exist?" (for the "referenced object missing"
//! warnings), and a shared cluster holds thousands of Secrets nobody references. A reflector
//! store keeps a decoded `ObjectMeta` and an `ObjectRef` key per object (≈ 1 KiB measured);
//! this keeps a 64-bit keyed hash of `namespace/name` per object in one table, ≈ 10 bytes and no
//! allocation of its own. Small allocations made during the initial list would sit between the
//! list's freed pages and keep them from being returned to the OS (BENCHMARKS.md, "Unrelated
//! Secrets").
//!
//! Hashes can collide: the chance that a missing object reads as present is about n / 2^64 per
//! lookup (≈ 5 · 10^-16 with 10,000 objects), and the cost is one warning not shown (or, if a
//! colliding object is deleted, one warning too many). The hash
//! is SipHash with per-process random keys, so names cannot be chosen to collide.

use std::collections::HashSet;
use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::sync::{Arc, RwLock};

use kube::Resource;
use kube::runtime::watcher::Event;
use tokio::sync::watch;

/// The names present, shared by clones (the watch task writes, lookups read).
#[derive(Clone)]
pub struct Names {
    state: Arc<RwLock<State>>,
    listed: Arc<watch::Sender<bool>>,
    hasher: RandomState,
}

/// Hashes of the `namespace/name`s present.
type Counts = HashSet<u64, IdentityHash>;

#[derive(Default)]
struct State {
    present: Counts,
    /// The relist in progress (`Init` … `InitDone`), replacing `present` when done.
    relisting: Option<Counts>,
}

/// The keys are already SipHash outputs: hashing them again would only cost time.
#[derive(Clone, Default)]
struct IdentityHash;

impl BuildHasher for IdentityHash {
    type Hasher = IdentityHasher;
    fn build_hasher(&self) -> IdentityHasher {
        IdentityHasher(0)
    }
}

#[derive(Default)]
struct IdentityHasher(u64);

impl std::hash::Hasher for IdentityHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        // Only `write_u64` is used (the keys are u64); fold anything else in for completeness.
        for b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

impl Default for Names {
    fn default() -> Self {
        Names {
            state: Arc::default(),
            listed: Arc::new(watch::channel(false).0),
            hasher: RandomState::new(),
        }
    }
}

impl Names {
    fn key(&self, namespace: &str, name: &str) -> u64 {
        // Kubernetes names never contain '/', so the joined form is unambiguous.
        self.hasher.hash_one((namespace, '/', name))
    }

    fn key_of<R: Resource>(&self, obj: &R) -> u64 {
        let meta = obj.meta();
        self.key(
            meta.namespace.as_deref().unwrap_or_default(),
            meta.name.as_deref().unwrap_or_default(),
        )
    }

    /// Whether `namespace/name` exists (as of the watch).
    pub fn contains(&self, namespace: &str, name: &str) -> bool {
        self.read().present.contains(&self.key(namespace, name))
    }

    /// Number of names present.
    pub fn len(&self) -> usize {
        self.read().present.len()
    }

    /// True when no name is present.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Resolves once the first list has completed.
    pub async fn wait_until_listed(&self) {
        let mut listed = self.listed.subscribe();
        // The sender lives as long as `self`, so this cannot fail.
        let _ = listed.wait_for(|l| *l).await;
    }

    /// Applies one watch event, with the semantics of a reflector store: a relist replaces the
    /// whole set once it is complete.
    pub fn apply<R: Resource>(&self, event: &Event<R>) {
        let mut state = self.state.write().unwrap_or_else(|e| e.into_inner());
        match event {
            Event::Init => state.relisting = Some(Counts::default()),
            Event::InitApply(obj) => {
                let key = self.key_of(obj);
                state
                    .relisting
                    .get_or_insert_with(Counts::default)
                    .insert(key);
            }
            Event::InitDone => {
                let mut listed = state.relisting.take().unwrap_or_default();
                listed.shrink_to_fit();
                state.present = listed;
                drop(state);
                self.listed.send_replace(true);
            }
            Event::Apply(obj) => {
                let key = self.key_of(obj);
                state.present.insert(key);
            }
            Event::Delete(obj) => {
                let key = self.key_of(obj);
                state.present.remove(&key);
            }
        }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, State> {
        // Every update is a single insert, remove or swap: a poisoned lock holds a valid set.
        self.state.read().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::Secret;
    use kube::core::PartialObjectMeta;

    fn secret(ns: &str, name: &str) -> PartialObjectMeta<Secret> {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "v1", "kind": "Secret", "metadata": {"name": name, "namespace": ns},
        }))
        .unwrap()
    }

    #[tokio::test]
    async fn follows_lists_changes_and_relists() {
        let names = Names::default();
        let waiting = {
            let names = names.clone();
            tokio::spawn(async move { names.wait_until_listed().await })
        };
        names.apply(&Event::<PartialObjectMeta<Secret>>::Init);
        names.apply(&Event::InitApply(secret("a", "db")));
        names.apply(&Event::InitApply(secret("b", "db")));
        assert!(
            !names.contains("a", "db"),
            "not visible before the list completes"
        );
        names.apply(&Event::<PartialObjectMeta<Secret>>::InitDone);
        waiting.await.unwrap();
        assert!(names.contains("a", "db") && names.contains("b", "db"));
        assert!(!names.contains("a", "other") && !names.contains("c", "db"));

        names.apply(&Event::Apply(secret("a", "new")));
        names.apply(&Event::Delete(secret("b", "db")));
        assert!(names.contains("a", "new") && !names.contains("b", "db"));

        // A relist keeps serving the old set until it completes, then replaces it.
        names.apply(&Event::<PartialObjectMeta<Secret>>::Init);
        names.apply(&Event::InitApply(secret("a", "new")));
        assert!(names.contains("a", "db"));
        names.apply(&Event::<PartialObjectMeta<Secret>>::InitDone);
        assert!(!names.contains("a", "db") && names.contains("a", "new"));
        assert_eq!(names.len(), 1);
    }

    #[test]
    fn names_cannot_collide_across_namespaces() {
        // Kubernetes names never contain '/', so "a/b" + "c" and "a" + "b/c" cannot both exist.
        let names = Names::default();
        names.apply(&Event::Apply(secret("team-a", "db")));
        assert!(!names.contains("team", "a-db") && names.contains("team-a", "db"));
    }
}
