//! Which namespaces the operator watches (`run --watch-namespaces`): all of them (the default)
//! or a fixed list, with one watch per namespace and kind.
//!
//! A kube reflector store expects the event semantics of one watch: a relist (`Init` …
//! `InitDone`) replaces the whole store. Several namespaced watches feeding one store would wipe
//! each other's objects on every relist, so [`WatchNamespaces::watch`] merges them into one
//! stream with single-watch semantics (see [`Merge`]).

use std::collections::{HashSet, VecDeque};
use std::fmt::Debug;

use futures::StreamExt;
use futures::stream::{self, BoxStream};
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use kube::{Api, Resource, ResourceExt};
use serde::de::DeserializeOwned;

/// An invalid `--watch-namespaces` entry.
#[derive(Debug, thiserror::Error)]
#[error("invalid namespace {0:?} in the watch namespaces: not a DNS-1123 label")]
pub struct InvalidNamespace(pub String);

/// The namespaces watched: empty means cluster-wide.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WatchNamespaces(Vec<String>);

impl WatchNamespaces {
    /// Cluster-wide (the default).
    pub fn all() -> Self {
        Self::default()
    }

    /// Only `namespaces` (sorted, deduplicated; blank entries ignored, so `""` is cluster-wide).
    pub fn only<I, S>(namespaces: I) -> Result<Self, InvalidNamespace>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut list = Vec::new();
        for ns in namespaces {
            let ns = ns.as_ref().trim();
            if ns.is_empty() {
                continue;
            }
            if !is_dns_label(ns) {
                return Err(InvalidNamespace(ns.to_string()));
            }
            list.push(ns.to_string());
        }
        list.sort();
        list.dedup();
        Ok(Self(list))
    }

    /// Whether every namespace is watched.
    pub fn is_cluster_wide(&self) -> bool {
        self.0.is_empty()
    }

    /// The watched namespaces (empty when cluster-wide).
    pub fn namespaces(&self) -> &[String] {
        &self.0
    }

    /// Whether objects in `namespace` are watched.
    pub fn contains(&self, namespace: &str) -> bool {
        self.is_cluster_wide() || self.0.iter().any(|n| n == namespace)
    }

    /// Watch events of one kind in the watched namespaces, as one watch's events. `api` builds
    /// the Api of a namespace (`None`: cluster-wide). Each namespace's watch retries with the
    /// watcher's default backoff, so one failing namespace does not hold up the others.
    pub fn watch<K>(
        &self,
        api: impl Fn(Option<&str>) -> Api<K>,
        wc: watcher::Config,
        dyntype: K::DynamicType,
    ) -> BoxStream<'static, Result<Event<K>, watcher::Error>>
    where
        K: Resource + Clone + DeserializeOwned + Debug + Send + 'static,
        K::DynamicType: Clone + Send + Sync + 'static,
    {
        match self.0.as_slice() {
            [] => watcher::watcher(api(None), wc).default_backoff().boxed(),
            [one] => watcher::watcher(api(Some(one)), wc)
                .default_backoff()
                .boxed(),
            many => {
                let streams = many.iter().enumerate().map(|(i, ns)| {
                    watcher::watcher(api(Some(ns)), wc.clone())
                        .default_backoff()
                        .map(move |event| (i, event))
                        .boxed()
                });
                let mut merge = Merge::new(many.to_vec(), dyntype);
                stream::select_all(streams)
                    .flat_map(move |(i, event)| stream::iter(merge.on(i, event)))
                    .boxed()
            }
        }
    }
}

/// RFC 1123 label, as namespace names are.
fn is_dns_label(s: &str) -> bool {
    s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// Turns the events of several namespaced watches into the events of one watch:
///
/// - Initial list: each namespace's list is held until every namespace has listed, then emitted
///   as one `Init`, `InitApply`…, `InitDone` (the store becomes ready once, complete). Changes
///   seen meanwhile in namespaces already listed are queued and follow.
/// - A later relist of one namespace (e.g. after 410 Gone) is emitted as `Apply` of each listed
///   object and `Delete` of the objects that namespace had before and no longer lists, so the
///   other namespaces' objects stay.
struct Merge<K: Resource> {
    namespaces: Vec<String>,
    dyntype: K::DynamicType,
    /// Until the first complete list of every namespace.
    initial: bool,
    /// Initial phase: each namespace's list so far, `None` until its `Init`.
    lists: Vec<Option<Vec<K>>>,
    listed: Vec<bool>,
    queued: VecDeque<(usize, Event<K>)>,
    /// After the initial phase: the names currently in the store, per namespace.
    live: Vec<HashSet<String>>,
    /// A relist in progress: the names listed so far.
    relisting: Vec<Option<HashSet<String>>>,
}

type Item<K> = Result<Event<K>, watcher::Error>;

impl<K> Merge<K>
where
    K: Resource + Clone + DeserializeOwned,
    K::DynamicType: Clone,
{
    fn new(namespaces: Vec<String>, dyntype: K::DynamicType) -> Self {
        let n = namespaces.len();
        Merge {
            namespaces,
            dyntype,
            initial: true,
            lists: vec![None; n],
            listed: vec![false; n],
            queued: VecDeque::new(),
            live: vec![HashSet::new(); n],
            relisting: vec![None; n],
        }
    }

    fn on(&mut self, i: usize, event: Item<K>) -> Vec<Item<K>> {
        let event = match event {
            Ok(event) => event,
            Err(e) => return vec![Err(e)],
        };
        if self.initial {
            self.on_initial(i, event)
        } else {
            self.on_live(i, event)
        }
    }

    fn on_initial(&mut self, i: usize, event: Event<K>) -> Vec<Item<K>> {
        match event {
            Event::Init => {
                // A restarted list supersedes what this namespace sent before.
                self.lists[i] = Some(Vec::new());
                self.listed[i] = false;
                self.queued.retain(|(from, _)| *from != i);
            }
            Event::InitApply(obj) => self.lists[i].get_or_insert_with(Vec::new).push(obj),
            Event::InitDone => {
                self.listed[i] = true;
                if self.listed.iter().all(|l| *l) {
                    return self.finish_initial();
                }
            }
            change @ (Event::Apply(_) | Event::Delete(_)) => self.queued.push_back((i, change)),
        }
        Vec::new()
    }

    fn finish_initial(&mut self) -> Vec<Item<K>> {
        self.initial = false;
        let mut out = vec![Ok(Event::Init)];
        for (i, list) in self.lists.iter_mut().enumerate() {
            for obj in list.take().unwrap_or_default() {
                self.live[i].insert(obj.name_any());
                out.push(Ok(Event::InitApply(obj)));
            }
        }
        out.push(Ok(Event::InitDone));
        while let Some((i, change)) = self.queued.pop_front() {
            out.extend(self.on_live(i, change));
        }
        out
    }

    fn on_live(&mut self, i: usize, event: Event<K>) -> Vec<Item<K>> {
        match event {
            Event::Init => {
                self.relisting[i] = Some(HashSet::new());
                Vec::new()
            }
            Event::InitApply(obj) => {
                let name = obj.name_any();
                self.live[i].insert(name.clone());
                self.relisting[i]
                    .get_or_insert_with(HashSet::new)
                    .insert(name);
                vec![Ok(Event::Apply(obj))]
            }
            Event::InitDone => {
                let listed = self.relisting[i].take().unwrap_or_default();
                let gone: Vec<String> = self.live[i].difference(&listed).cloned().collect();
                self.live[i] = listed;
                gone.into_iter()
                    .filter_map(|name| self.stub(i, &name))
                    .map(|obj| Ok(Event::Delete(obj)))
                    .collect()
            }
            Event::Apply(obj) => {
                self.live[i].insert(obj.name_any());
                vec![Ok(Event::Apply(obj))]
            }
            Event::Delete(obj) => {
                self.live[i].remove(&obj.name_any());
                vec![Ok(Event::Delete(obj))]
            }
        }
    }

    /// An object deleted while a namespace's watch was down is known by name only: a stub with
    /// its identity (and an empty spec, for kinds that require one) stands for it in `Delete`.
    fn stub(&self, i: usize, name: &str) -> Option<K> {
        let value = serde_json::json!({
            "apiVersion": K::api_version(&self.dyntype),
            "kind": K::kind(&self.dyntype),
            "metadata": { "name": name, "namespace": self.namespaces[i] },
            "spec": {},
        });
        match serde_json::from_value(value) {
            Ok(obj) => Some(obj),
            Err(e) => {
                tracing::warn!(
                    kind = K::kind(&self.dyntype).as_ref(),
                    namespace = %self.namespaces[i],
                    error = %e,
                    "cannot represent an object deleted during a relist"
                );
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::ConfigMap;
    use kube::runtime::reflector::{self, ObjectRef};

    fn cm(ns: &str, name: &str) -> ConfigMap {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": name, "namespace": ns},
        }))
        .unwrap()
    }

    fn names(store: &reflector::Store<ConfigMap>) -> Vec<String> {
        let mut all: Vec<String> = store
            .state()
            .iter()
            .map(|c| format!("{}/{}", c.namespace().unwrap_or_default(), c.name_any()))
            .collect();
        all.sort();
        all
    }

    fn feed(
        merge: &mut Merge<ConfigMap>,
        writer: &mut reflector::store::Writer<ConfigMap>,
        i: usize,
        event: Event<ConfigMap>,
    ) {
        for out in merge.on(i, Ok(event)) {
            writer.apply_watcher_event(&out.unwrap());
        }
    }

    #[test]
    fn parses_and_validates_namespaces() {
        let ns = WatchNamespaces::only(["b", " a", "", "a"]).unwrap();
        assert_eq!(ns.namespaces(), ["a", "b"]);
        assert!(ns.contains("a") && !ns.contains("c"));
        assert!(WatchNamespaces::only([""]).unwrap().is_cluster_wide());
        assert!(WatchNamespaces::all().contains("anything"));
        assert!(WatchNamespaces::only(["Team-A"]).is_err());
        assert!(WatchNamespaces::only(["a/b"]).is_err());
        assert!(WatchNamespaces::only(["-a"]).is_err());
    }

    #[test]
    fn store_is_ready_once_every_namespace_listed_and_keeps_both() {
        let (store, mut writer) = reflector::store::<ConfigMap>();
        let mut merge = Merge::new(vec!["a".into(), "b".into()], ());
        feed(&mut merge, &mut writer, 0, Event::Init);
        feed(&mut merge, &mut writer, 0, Event::InitApply(cm("a", "x")));
        feed(&mut merge, &mut writer, 0, Event::InitDone);
        // A change in `a` while `b` still lists is queued, not lost in the swap.
        feed(&mut merge, &mut writer, 0, Event::Apply(cm("a", "y")));
        feed(&mut merge, &mut writer, 1, Event::Init);
        feed(&mut merge, &mut writer, 1, Event::InitApply(cm("b", "z")));
        assert!(
            names(&store).is_empty(),
            "not ready before every namespace listed"
        );
        feed(&mut merge, &mut writer, 1, Event::InitDone);
        assert_eq!(names(&store), ["a/x", "a/y", "b/z"]);
    }

    #[test]
    fn relist_of_one_namespace_keeps_the_others_and_drops_its_deleted() {
        let (store, mut writer) = reflector::store::<ConfigMap>();
        let mut merge = Merge::new(vec!["a".into(), "b".into()], ());
        for (i, ns) in [(0, "a"), (1, "b")] {
            feed(&mut merge, &mut writer, i, Event::Init);
            feed(&mut merge, &mut writer, i, Event::InitApply(cm(ns, "one")));
            feed(&mut merge, &mut writer, i, Event::InitApply(cm(ns, "two")));
            feed(&mut merge, &mut writer, i, Event::InitDone);
        }
        // `a` relists: `two` was deleted while its watch was down, `three` created.
        feed(&mut merge, &mut writer, 0, Event::Init);
        feed(&mut merge, &mut writer, 0, Event::InitApply(cm("a", "one")));
        feed(
            &mut merge,
            &mut writer,
            0,
            Event::InitApply(cm("a", "three")),
        );
        feed(&mut merge, &mut writer, 0, Event::InitDone);
        assert_eq!(names(&store), ["a/one", "a/three", "b/one", "b/two"]);
        feed(&mut merge, &mut writer, 1, Event::Delete(cm("b", "one")));
        assert_eq!(names(&store), ["a/one", "a/three", "b/two"]);
        assert!(store.get(&ObjectRef::new("two").within("b")).is_some());
    }

    #[test]
    fn a_restarted_initial_list_replaces_that_namespaces_first_attempt() {
        let (store, mut writer) = reflector::store::<ConfigMap>();
        let mut merge = Merge::new(vec!["a".into(), "b".into()], ());
        feed(&mut merge, &mut writer, 0, Event::Init);
        feed(&mut merge, &mut writer, 0, Event::InitApply(cm("a", "old")));
        feed(&mut merge, &mut writer, 0, Event::InitDone);
        feed(
            &mut merge,
            &mut writer,
            0,
            Event::Apply(cm("a", "older-change")),
        );
        feed(&mut merge, &mut writer, 0, Event::Init);
        feed(&mut merge, &mut writer, 0, Event::InitApply(cm("a", "new")));
        feed(&mut merge, &mut writer, 0, Event::InitDone);
        feed(&mut merge, &mut writer, 1, Event::Init);
        feed(&mut merge, &mut writer, 1, Event::InitDone);
        assert_eq!(names(&store), ["a/new"]);
    }

    #[test]
    fn every_cached_kind_has_a_stub_for_deletes_seen_only_by_a_relist() {
        use crate::api::{SpinApp, SpinAppExecutor};
        use crate::controller::slim::Slim;
        use k8s_openapi::api::core::v1::Secret;
        use kube::core::{DynamicObject, PartialObjectMeta};

        fn check<K>(dyntype: K::DynamicType)
        where
            K: Resource + Clone + DeserializeOwned,
            K::DynamicType: Clone,
        {
            let merge = Merge::<K>::new(vec!["a".into()], dyntype);
            let stub = merge.stub(0, "gone").expect("stub decodes");
            assert_eq!(stub.name_any(), "gone");
            assert_eq!(stub.namespace().as_deref(), Some("a"));
        }
        check::<SpinAppExecutor>(());
        check::<Slim<SpinApp>>(());
        check::<Slim<Secret>>(());
        check::<PartialObjectMeta<Secret>>(());
        check::<DynamicObject>(crate::admission::cache::spinapp_resource());
    }
}
