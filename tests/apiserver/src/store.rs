//! The object store: versioned objects, change history for watches, and the write semantics
//! (create/update/patch/apply/delete, finalizers, garbage collection).

use std::collections::{BTreeMap, VecDeque};

use serde_json::{Map, Value, json};
use tokio::sync::mpsc;

use crate::error::ApiError;
use crate::managed::{Ownership, Scope, display_path};
use crate::resource::{self, ResourceKey, ResourceType};
use crate::selector::Selectors;
use crate::{defaults, validate};

/// Store key: resource, namespace ("" when cluster-scoped), name.
pub(crate) type ObjKey = (ResourceKey, String, String);

/// How many changes are kept for watches resuming from an older resourceVersion.
pub(crate) const DEFAULT_HISTORY: usize = 10_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ChangeKind {
    Added,
    Modified,
    Deleted,
}

#[derive(Debug, Clone)]
struct Change {
    rv: u64,
    key: ResourceKey,
    namespace: String,
    kind: ChangeKind,
    object: Value,
    old: Option<Value>,
}

/// One event for one watch stream: `ADDED`/`MODIFIED`/`DELETED` and the object.
#[derive(Debug, Clone)]
pub(crate) struct WatchMsg {
    pub event: &'static str,
    pub object: Value,
}

pub(crate) struct WatchFilter {
    pub key: ResourceKey,
    pub namespace: Option<String>,
    pub selectors: Selectors,
}

impl WatchFilter {
    fn translate(&self, c: &Change) -> Option<WatchMsg> {
        if c.key != self.key || self.namespace.as_ref().is_some_and(|ns| *ns != c.namespace) {
            return None;
        }
        let now = self.selectors.matches(&c.object);
        let event = match c.kind {
            ChangeKind::Added => now.then_some("ADDED"),
            ChangeKind::Deleted => now.then_some("DELETED"),
            ChangeKind::Modified => {
                let before = c.old.as_ref().is_some_and(|o| self.selectors.matches(o));
                match (before, now) {
                    (true, true) => Some("MODIFIED"),
                    (false, true) => Some("ADDED"),
                    (true, false) => Some("DELETED"),
                    (false, false) => None,
                }
            }
        }?;
        Some(WatchMsg {
            event,
            object: c.object.clone(),
        })
    }
}

struct Watcher {
    filter: WatchFilter,
    tx: mpsc::UnboundedSender<WatchMsg>,
}

/// Options of a DELETE request.
#[derive(Debug, Clone, Default)]
pub(crate) struct DeleteOpts {
    pub precondition_uid: Option<String>,
    pub precondition_rv: Option<String>,
    pub orphan: bool,
}

/// The kind of PATCH body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PatchKind {
    Json,
    Merge,
    StrategicMerge,
    Apply,
}

impl PatchKind {
    pub fn from_content_type(ct: &str) -> Option<Self> {
        let ct = ct.split(';').next().unwrap_or("").trim();
        match ct {
            "application/json-patch+json" => Some(Self::Json),
            "application/merge-patch+json" => Some(Self::Merge),
            "application/strategic-merge-patch+json" => Some(Self::StrategicMerge),
            "application/apply-patch+yaml" | "application/apply-patch+json" => Some(Self::Apply),
            _ => None,
        }
    }
}

pub(crate) struct State {
    objects: BTreeMap<ObjKey, Value>,
    rv: u64,
    history: VecDeque<Change>,
    /// Changes with rv <= compacted are no longer in `history`.
    compacted: u64,
    pub history_limit: usize,
    watchers: Vec<Watcher>,
    seed: u64,
}

pub(crate) fn now() -> String {
    let secs = jiff::Timestamp::now().as_second();
    jiff::Timestamp::from_second(secs)
        .map(|t| t.to_string())
        .unwrap_or_default()
}

fn meta(obj: &Value, field: &str) -> Option<String> {
    obj.get("metadata")?
        .get(field)?
        .as_str()
        .map(str::to_string)
}

fn meta_mut(obj: &mut Value) -> &mut Map<String, Value> {
    if !obj.is_object() {
        *obj = Value::Object(Map::new());
    }
    if !obj.get("metadata").is_some_and(Value::is_object) {
        obj["metadata"] = Value::Object(Map::new());
    }
    match obj.get_mut("metadata") {
        Some(Value::Object(m)) => m,
        // Just ensured above; unreachable, but never panic.
        _ => unreachable!("metadata is an object"),
    }
}

/// Everything except metadata and status: what `generation` tracks.
fn spec_part(obj: &Value) -> Value {
    let mut v = obj.clone();
    if let Some(m) = v.as_object_mut() {
        m.remove("metadata");
        m.remove("status");
        m.remove("apiVersion");
        m.remove("kind");
    }
    v
}

fn has_finalizers(obj: &Value) -> bool {
    obj.pointer("/metadata/finalizers")
        .and_then(Value::as_array)
        .is_some_and(|f| !f.is_empty())
}

impl Default for State {
    fn default() -> Self {
        Self {
            objects: BTreeMap::new(),
            rv: 1,
            history: VecDeque::new(),
            compacted: 0,
            history_limit: DEFAULT_HISTORY,
            watchers: Vec::new(),
            seed: 0x5eed,
        }
    }
}

impl State {
    fn next_rv(&mut self) -> u64 {
        self.rv += 1;
        self.rv
    }

    pub fn current_rv(&self) -> u64 {
        self.rv
    }

    fn random(&mut self) -> u64 {
        // splitmix64: deterministic, good enough for uids and generated names.
        self.seed = self.seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.seed;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn new_uid(&mut self) -> String {
        let a = self.random();
        let b = self.random();
        format!(
            "{:08x}-{:04x}-4{:03x}-8{:03x}-{:012x}",
            a >> 32,
            (a >> 16) & 0xffff,
            a & 0xfff,
            b >> 52,
            b & 0xffff_ffff_ffff
        )
    }

    fn name_suffix(&mut self) -> String {
        const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
        let mut r = self.random();
        (0..5)
            .map(|_| {
                let c = ALPHABET[(r % ALPHABET.len() as u64) as usize] as char;
                r /= ALPHABET.len() as u64;
                c
            })
            .collect()
    }

    fn record(&mut self, change: Change) {
        self.watchers.retain(|w| {
            if let Some(msg) = w.filter.translate(&change) {
                w.tx.send(msg).is_ok()
            } else {
                !w.tx.is_closed()
            }
        });
        self.history.push_back(change);
        while self.history.len() > self.history_limit {
            if let Some(old) = self.history.pop_front() {
                self.compacted = old.rv;
            }
        }
    }

    /// A throwaway copy for `dryRun=All`: same objects and versions, no watchers or history.
    pub fn dry_run_copy(&self) -> State {
        State {
            objects: self.objects.clone(),
            rv: self.rv,
            history: VecDeque::new(),
            compacted: self.compacted,
            history_limit: self.history_limit,
            watchers: Vec::new(),
            seed: self.seed,
        }
    }

    pub fn drop_watches(&mut self) {
        self.watchers.clear();
    }

    pub fn expire_history(&mut self) {
        self.history.clear();
        self.compacted = self.rv;
    }

    pub fn get(&self, key: &ResourceKey, ns: &str, name: &str) -> Option<&Value> {
        self.objects
            .get(&(key.clone(), ns.to_string(), name.to_string()))
    }

    pub fn list(&self, key: &ResourceKey, ns: Option<&str>, sel: &Selectors) -> Vec<Value> {
        self.objects_of(key, ns)
            .filter(|obj| sel.matches(obj))
            .cloned()
            .collect()
    }

    /// Objects of one resource (optionally in one namespace), in key order: a range of the map,
    /// not a walk over every stored object.
    pub fn objects_of<'a>(
        &'a self,
        key: &'a ResourceKey,
        ns: Option<&'a str>,
    ) -> impl Iterator<Item = &'a Value> + 'a {
        self.entries_of(key, ns, None).map(|(_, v)| v)
    }

    /// Like [`Self::objects_of`] with keys, starting after (namespace, name) `after`.
    fn entries_of<'a>(
        &'a self,
        key: &'a ResourceKey,
        ns: Option<&'a str>,
        after: Option<(&str, &str)>,
    ) -> impl Iterator<Item = ((&'a str, &'a str), &'a Value)> + 'a {
        use std::ops::Bound;
        let start = match after {
            Some((n, name)) => Bound::Excluded((key.clone(), n.to_string(), name.to_string())),
            None => Bound::Included((
                key.clone(),
                ns.unwrap_or_default().to_string(),
                String::new(),
            )),
        };
        self.objects
            .range((start, Bound::Unbounded))
            .take_while(move |((k, n, _), _)| k == key && ns.is_none_or(|ns| ns == n))
            .map(|((_, n, name), v)| ((n.as_str(), name.as_str()), v))
    }

    /// One page of a list: at most `limit` matching objects after `after`, and the (namespace,
    /// name) to continue after when more match.
    pub fn list_page(
        &self,
        key: &ResourceKey,
        ns: Option<&str>,
        sel: &Selectors,
        after: Option<(&str, &str)>,
        limit: usize,
    ) -> (Vec<Value>, Option<(String, String)>) {
        let mut matching = self
            .entries_of(key, ns, after)
            .filter(|(_, obj)| sel.matches(obj));
        let page: Vec<((&str, &str), &Value)> = matching.by_ref().take(limit).collect();
        let more = matching.next().is_some();
        let last = page
            .last()
            .filter(|_| more)
            .map(|((n, name), _)| (n.to_string(), name.to_string()));
        (page.into_iter().map(|(_, v)| v.clone()).collect(), last)
    }

    /// Starts a watch. Returns the receiver, with the initial events already queued.
    pub fn watch(
        &mut self,
        filter: WatchFilter,
        from: Option<u64>,
        send_initial: bool,
    ) -> Result<mpsc::UnboundedReceiver<WatchMsg>, ApiError> {
        let (tx, rx) = mpsc::unbounded_channel();
        match from {
            Some(r) if r > 0 && !send_initial => {
                if r < self.compacted {
                    return Err(ApiError::expired(format!(
                        "too old resource version: {r} ({})",
                        self.compacted + 1
                    )));
                }
                for c in self.history.iter().filter(|c| c.rv > r) {
                    if let Some(msg) = filter.translate(c) {
                        let _ = tx.send(msg);
                    }
                }
            }
            _ => {
                let ns = filter.namespace.as_deref();
                for obj in self.list(&filter.key, ns, &filter.selectors) {
                    let _ = tx.send(WatchMsg {
                        event: "ADDED",
                        object: obj,
                    });
                }
                if send_initial && let Some(rt) = resource::lookup_key(&filter.key) {
                    // Streaming lists: a bookmark marks the end of the initial state.
                    let _ = tx.send(WatchMsg {
                        event: "BOOKMARK",
                        object: json!({"apiVersion": rt.api_version(), "kind": rt.kind, "metadata": {
                            "resourceVersion": self.rv.to_string(),
                            "annotations": {"k8s.io/initial-events-end": "true"}}}),
                    });
                }
            }
        }
        self.watchers.push(Watcher { filter, tx });
        Ok(rx)
    }

    /// Validates a new object against the request and fills identity fields.
    fn prepare_new(
        &mut self,
        rt: &ResourceType,
        ns: &str,
        mut obj: Value,
    ) -> Result<Value, ApiError> {
        if !obj.is_object() {
            return Err(ApiError::bad_request(
                "the body of the request must be an object",
            ));
        }
        let key = rt.key();
        check_type(rt, &obj)?;
        obj["apiVersion"] = json!(rt.api_version());
        obj["kind"] = json!(rt.kind);
        let body_ns = meta(&obj, "namespace").unwrap_or_default();
        let m = meta_mut(&mut obj);
        if rt.namespaced {
            if !body_ns.is_empty() && body_ns != ns {
                return Err(ApiError::bad_request(
                    "the namespace of the provided object does not match the namespace sent on the request",
                ));
            }
            m.insert("namespace".into(), json!(ns));
        } else {
            m.remove("namespace");
        }
        let mut name = m
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        if name.is_empty() {
            let prefix = m
                .get("generateName")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string();
            if prefix.is_empty() {
                return Err(ApiError::invalid(
                    &key,
                    "",
                    "metadata.name: Required value: name or generateName is required",
                ));
            }
            name = format!("{prefix}{}", self.name_suffix());
            meta_mut(&mut obj).insert("name".into(), json!(name));
        }
        if self
            .get(&key, if rt.namespaced { ns } else { "" }, &name)
            .is_some()
        {
            return Err(ApiError::already_exists(&key, &name));
        }
        Ok(obj)
    }

    /// Stores a prepared new object: uid, timestamps, generation, resourceVersion, defaults.
    fn insert_new(&mut self, rt: &ResourceType, mut obj: Value) -> Result<Value, ApiError> {
        defaults::apply(rt, &mut obj, None);
        validate::check(rt, &mut obj)?;
        let uid = self.new_uid();
        let rv = self.next_rv();
        let m = meta_mut(&mut obj);
        m.insert("uid".into(), json!(uid));
        m.insert("creationTimestamp".into(), json!(now()));
        m.insert("resourceVersion".into(), json!(rv.to_string()));
        m.remove("deletionTimestamp");
        m.remove("deletionGracePeriodSeconds");
        if rt.generation {
            m.insert("generation".into(), json!(1));
        } else {
            m.remove("generation");
        }
        let ns = meta(&obj, "namespace").unwrap_or_default();
        let name = meta(&obj, "name").unwrap_or_default();
        self.objects
            .insert((rt.key(), ns.clone(), name), obj.clone());
        self.record(Change {
            rv,
            key: rt.key(),
            namespace: ns,
            kind: ChangeKind::Added,
            object: obj.clone(),
            old: None,
        });
        Ok(obj)
    }

    pub fn create(
        &mut self,
        rt: &ResourceType,
        ns: &str,
        body: Value,
        manager: &str,
    ) -> Result<Value, ApiError> {
        let mut obj = self.prepare_new(rt, ns, body)?;
        if rt.status_subresource
            && let Some(m) = obj.as_object_mut()
        {
            m.remove("status");
        }
        if let Some(m) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
            m.remove("managedFields");
        }
        let now = now();
        ownership(
            rt,
            manager,
            Scope::Main {
                status_separate: rt.status_subresource,
            },
            &now,
        )
        .record_update(None, &mut obj);
        self.insert_new(rt, obj)
    }

    fn current(&self, rt: &ResourceType, ns: &str, name: &str) -> Result<Value, ApiError> {
        self.get(&rt.key(), ns, name)
            .cloned()
            .ok_or_else(|| ApiError::not_found(&rt.key(), name))
    }

    /// PUT on the main resource or `/status`.
    pub fn update(
        &mut self,
        rt: &ResourceType,
        ns: &str,
        name: &str,
        body: Value,
        scope: Scope,
        manager: &str,
    ) -> Result<Value, ApiError> {
        let current = self.current(rt, ns, name)?;
        if !body.is_object() {
            return Err(ApiError::bad_request(
                "the body of the request must be an object",
            ));
        }
        check_type(rt, &body)?;
        let body_name = meta(&body, "name").unwrap_or_default();
        if body_name != name {
            return Err(ApiError::bad_request(format!(
                "the name of the object ({body_name}) does not match the name on the URL ({name})"
            )));
        }
        let body_ns = meta(&body, "namespace").unwrap_or_default();
        if rt.namespaced && !body_ns.is_empty() && body_ns != ns {
            return Err(ApiError::bad_request(
                "the namespace of the provided object does not match the namespace sent on the request",
            ));
        }
        match meta(&body, "resourceVersion").filter(|s| !s.is_empty()) {
            None if !rt.unconditional_update => {
                return Err(ApiError::invalid(
                    &rt.key(),
                    name,
                    "metadata.resourceVersion: Invalid value: 0x0: must be specified for an update",
                ));
            }
            Some(rv) if rv != meta(&current, "resourceVersion").unwrap_or_default() => {
                return Err(ApiError::conflict(&rt.key(), name));
            }
            _ => {}
        }
        // A replace carries its uid as a precondition.
        let uid = meta(&current, "uid").unwrap_or_default();
        if let Some(want) = meta(&body, "uid").filter(|s| !s.is_empty() && *s != uid) {
            return Err(ApiError::new(
                409,
                "Conflict",
                format!(
                    "Operation cannot be fulfilled on {} \"{name}\": Precondition failed: UID in precondition: {want}, UID in object meta: {uid}",
                    rt.key().qualified()
                ),
            ));
        }
        let candidate = scoped_candidate(rt, &current, body, scope);
        let now = now();
        let own = ownership(rt, manager, scope, &now);
        self.commit(rt, &current, candidate, Some(&own))
    }

    /// PATCH (any kind) on the main resource or `/status`. Returns the object and whether it was created.
    #[allow(clippy::too_many_arguments)]
    pub fn patch(
        &mut self,
        rt: &ResourceType,
        ns: &str,
        name: &str,
        kind: PatchKind,
        body: &[u8],
        scope: Scope,
        manager: &str,
        force: bool,
    ) -> Result<(Value, bool), ApiError> {
        let key = rt.key();
        let now = now();
        let existing = self.get(&key, ns, name).cloned();
        let previous = existing.clone();
        let normalize = |v: &mut Value| defaults::apply(rt, v, previous.as_ref());
        let own = Ownership {
            normalize: Some(&normalize),
            ..ownership(rt, manager, scope, &now)
        };
        if kind == PatchKind::Apply {
            let config: Value = serde_yaml::from_slice(body)
                .map_err(|e| ApiError::bad_request(format!("error decoding YAML: {e}")))?;
            if !config.is_object() {
                return Err(ApiError::bad_request(
                    "apply configuration must be an object",
                ));
            }
            check_type(rt, &config)?;
            if config.get("apiVersion").is_none() || config.get("kind").is_none() {
                return Err(ApiError::bad_request(
                    "apiVersion and kind must be set in an apply configuration",
                ));
            }
            let cfg_name = meta(&config, "name").unwrap_or_default();
            if cfg_name != name {
                return Err(ApiError::bad_request(format!(
                    "the name of the object ({cfg_name}) does not match the name on the URL ({name})"
                )));
            }
            let cfg_ns = meta(&config, "namespace").unwrap_or_default();
            if rt.namespaced && !cfg_ns.is_empty() && cfg_ns != ns {
                return Err(ApiError::bad_request(
                    "the namespace of the provided object does not match the namespace sent on the request",
                ));
            }
            let Some(current) = existing else {
                if scope == Scope::Status {
                    return Err(ApiError::not_found(&key, name));
                }
                // A uid names an object; the apiserver creates none for it (while a
                // resourceVersion is ignored on create).
                if let Some(uid) = meta(&config, "uid").filter(|s| !s.is_empty()) {
                    return Err(ApiError::uid_mismatch_absent(&key, name, &uid));
                }
                let shell = json!({"apiVersion": rt.api_version(), "kind": rt.kind,
                    "metadata": {"name": name, "namespace": ns}});
                let shell = self.prepare_new(rt, ns, shell)?;
                let obj = own
                    .apply(&shell, &config, force)
                    .map_err(|c| apply_conflict(&c))?;
                return Ok((self.insert_new(rt, obj)?, true));
            };
            if let Some(rv) = meta(&config, "resourceVersion").filter(|s| !s.is_empty())
                && rv != meta(&current, "resourceVersion").unwrap_or_default()
            {
                return Err(ApiError::conflict(&key, name));
            }
            if let Some(uid) = meta(&config, "uid").filter(|s| !s.is_empty())
                && Some(&uid) != meta(&current, "uid").as_ref()
            {
                return Err(ApiError::uid_immutable(&key, name, &uid));
            }
            let applied = own
                .apply(&current, &config, force)
                .map_err(|c| apply_conflict(&c))?;
            return Ok((self.commit(rt, &current, applied, None)?, false));
        }

        let current = existing.ok_or_else(|| ApiError::not_found(&key, name))?;
        let mut patched = current.clone();
        match kind {
            PatchKind::Json => {
                let mut p: json_patch::Patch = serde_json::from_slice(body)
                    .map_err(|e| ApiError::bad_request(format!("invalid JSON patch: {e}")))?;
                // Like the real apiserver (evanphx/json-patch), `test` of null passes on a
                // missing path; kube's finalizer helper relies on it to add the first finalizer.
                p.0.retain(|op| match op {
                    json_patch::PatchOperation::Test(t) => {
                        !(t.value.is_null() && patched.pointer(t.path.as_str()).is_none())
                    }
                    _ => true,
                });
                json_patch::patch(&mut patched, &p)
                    .map_err(|e| ApiError::invalid(&key, name, e.to_string()))?;
                if !patched.is_object() {
                    return Err(ApiError::invalid(&key, name, "patch must leave an object"));
                }
            }
            _ => {
                let p: Value = serde_json::from_slice(body)
                    .map_err(|e| ApiError::bad_request(format!("invalid merge patch: {e}")))?;
                if !p.is_object() {
                    return Err(ApiError::bad_request("merge patch must be an object"));
                }
                json_patch::merge(&mut patched, &p);
            }
        }
        if let Some(rv) = meta(&patched, "resourceVersion").filter(|s| !s.is_empty())
            && rv != meta(&current, "resourceVersion").unwrap_or_default()
        {
            return Err(ApiError::conflict(&key, name));
        }
        let candidate = scoped_candidate(rt, &current, patched, scope);
        Ok((self.commit(rt, &current, candidate, Some(&own))?, false))
    }

    /// Finishes any update: keeps server-owned metadata, bumps generation/resourceVersion,
    /// records field ownership, removes the object once deleted and finalizer-free.
    fn commit(
        &mut self,
        rt: &ResourceType,
        current: &Value,
        mut candidate: Value,
        own: Option<&Ownership>,
    ) -> Result<Value, ApiError> {
        candidate["apiVersion"] = json!(rt.api_version());
        candidate["kind"] = json!(rt.kind);
        // Object-meta update validation: the uid never changes (a patch or apply that names
        // another object's uid is refused, not silently applied to this one).
        if let Some(uid) = meta(&candidate, "uid").filter(|s| !s.is_empty())
            && Some(&uid) != meta(current, "uid").as_ref()
        {
            let name = meta(current, "name").unwrap_or_default();
            return Err(ApiError::uid_immutable(&rt.key(), &name, &uid));
        }
        {
            let cur_meta = current
                .get("metadata")
                .cloned()
                .unwrap_or_else(|| json!({}));
            let m = meta_mut(&mut candidate);
            for k in [
                "name",
                "namespace",
                "uid",
                "creationTimestamp",
                "deletionTimestamp",
                "deletionGracePeriodSeconds",
                "generation",
                "resourceVersion",
            ] {
                match cur_meta.get(k) {
                    Some(v) => m.insert(k.to_string(), v.clone()),
                    None => m.remove(k),
                };
            }
            if own.is_some() {
                // Clients cannot rewrite ownership through plain updates here.
                match cur_meta.get("managedFields") {
                    Some(v) => m.insert("managedFields".into(), v.clone()),
                    None => m.remove("managedFields"),
                };
            }
        }
        defaults::apply(rt, &mut candidate, Some(current));
        validate::check(rt, &mut candidate)?;
        if let Some(own) = own {
            own.record_update(Some(current), &mut candidate);
        }
        let key = rt.key();
        let ns = meta(current, "namespace").unwrap_or_default();
        let name = meta(current, "name").unwrap_or_default();

        if candidate.pointer("/metadata/deletionTimestamp").is_some() && !has_finalizers(&candidate)
        {
            self.remove(&(key, ns, name), candidate.clone(), true);
            return Ok(candidate);
        }
        if rt.generation && spec_part(current) != spec_part(&candidate) {
            let generation = current
                .pointer("/metadata/generation")
                .and_then(Value::as_i64)
                .unwrap_or(0);
            meta_mut(&mut candidate).insert("generation".into(), json!(generation + 1));
        }
        if candidate == *current {
            return Ok(candidate);
        }
        let rv = self.next_rv();
        meta_mut(&mut candidate).insert("resourceVersion".into(), json!(rv.to_string()));
        self.objects
            .insert((key.clone(), ns.clone(), name), candidate.clone());
        self.record(Change {
            rv,
            key,
            namespace: ns,
            kind: ChangeKind::Modified,
            object: candidate.clone(),
            old: Some(current.clone()),
        });
        Ok(candidate)
    }

    /// Actually removes an object (DELETED event) and garbage-collects its dependents.
    fn remove(&mut self, key: &ObjKey, mut obj: Value, gc: bool) {
        let Some(old) = self.objects.remove(key) else {
            return;
        };
        let rv = self.next_rv();
        meta_mut(&mut obj).insert("resourceVersion".into(), json!(rv.to_string()));
        self.record(Change {
            rv,
            key: key.0.clone(),
            namespace: key.1.clone(),
            kind: ChangeKind::Deleted,
            object: obj,
            old: Some(old.clone()),
        });
        if key.0.group.is_empty() && key.0.plural == "namespaces" {
            let inside: Vec<ObjKey> = self
                .objects
                .keys()
                .filter(|k| k.1 == key.2)
                .cloned()
                .collect();
            for k in inside {
                let _ = self.delete_key(&k, &DeleteOpts::default());
            }
        }
        if gc {
            self.collect_garbage();
        }
    }

    /// Deletes every object whose owners (by uid) are all gone.
    fn collect_garbage(&mut self) {
        loop {
            let uids: std::collections::HashSet<String> = self
                .objects
                .values()
                .filter_map(|o| meta(o, "uid"))
                .collect();
            let orphans: Vec<ObjKey> = self
                .objects
                .iter()
                .filter(|(_, o)| o.pointer("/metadata/deletionTimestamp").is_none())
                .filter(|(_, o)| {
                    let owners: Vec<&str> = o
                        .pointer("/metadata/ownerReferences")
                        .and_then(Value::as_array)
                        .map(|refs| refs.iter().filter_map(|r| r.get("uid")?.as_str()).collect())
                        .unwrap_or_default();
                    !owners.is_empty() && owners.iter().all(|u| !uids.contains(*u))
                })
                .map(|(k, _)| k.clone())
                .collect();
            if orphans.is_empty() {
                return;
            }
            for k in orphans {
                let _ = self.delete_key_inner(&k, &DeleteOpts::default(), false);
            }
        }
    }

    fn delete_key(&mut self, key: &ObjKey, opts: &DeleteOpts) -> Result<Value, ApiError> {
        self.delete_key_inner(key, opts, true)
    }

    fn delete_key_inner(
        &mut self,
        key: &ObjKey,
        opts: &DeleteOpts,
        gc: bool,
    ) -> Result<Value, ApiError> {
        let current = self
            .objects
            .get(key)
            .cloned()
            .ok_or_else(|| ApiError::not_found(&key.0, &key.2))?;
        let uid = meta(&current, "uid").unwrap_or_default();
        if let Some(want) = &opts.precondition_uid
            && *want != uid
        {
            return Err(ApiError::new(
                409,
                "Conflict",
                format!(
                    "Operation cannot be fulfilled on {} \"{}\": Precondition failed: UID in precondition: {want}, UID in object meta: {uid}",
                    key.0.qualified(),
                    key.2
                ),
            ));
        }
        if let Some(want) = &opts.precondition_rv
            && Some(want) != meta(&current, "resourceVersion").as_ref()
        {
            return Err(ApiError::conflict(&key.0, &key.2));
        }
        if has_finalizers(&current) {
            if current.pointer("/metadata/deletionTimestamp").is_some() {
                return Ok(current);
            }
            let mut obj = current.clone();
            let m = meta_mut(&mut obj);
            m.insert("deletionTimestamp".into(), json!(now()));
            m.insert("deletionGracePeriodSeconds".into(), json!(0));
            // Like the apiserver's BeforeDelete: a graceful deletion bumps generation.
            if let Some(generation) = m.get("generation").and_then(Value::as_i64) {
                m.insert("generation".into(), json!(generation + 1));
            }
            let rv = self.next_rv();
            meta_mut(&mut obj).insert("resourceVersion".into(), json!(rv.to_string()));
            self.objects.insert(key.clone(), obj.clone());
            self.record(Change {
                rv,
                key: key.0.clone(),
                namespace: key.1.clone(),
                kind: ChangeKind::Modified,
                object: obj.clone(),
                old: Some(current),
            });
            return Ok(obj);
        }
        let mut obj = current;
        if obj.pointer("/metadata/deletionTimestamp").is_none() {
            meta_mut(&mut obj).insert("deletionTimestamp".into(), json!(now()));
            meta_mut(&mut obj).insert("deletionGracePeriodSeconds".into(), json!(0));
        }
        self.remove(key, obj.clone(), gc && !opts.orphan);
        Ok(obj)
    }

    pub fn delete(
        &mut self,
        rt: &ResourceType,
        ns: &str,
        name: &str,
        opts: &DeleteOpts,
    ) -> Result<Value, ApiError> {
        self.delete_key(&(rt.key(), ns.to_string(), name.to_string()), opts)
    }

    pub fn delete_collection(
        &mut self,
        rt: &ResourceType,
        ns: Option<&str>,
        sel: &Selectors,
        opts: &DeleteOpts,
    ) -> Vec<Value> {
        let items = self.list(&rt.key(), ns, sel);
        items
            .into_iter()
            .filter_map(|o| {
                let key = (
                    rt.key(),
                    meta(&o, "namespace").unwrap_or_default(),
                    meta(&o, "name")?,
                );
                self.delete_key(&key, opts).ok()
            })
            .collect()
    }

    /// Test-side create-or-replace: keeps status as given, skips optimistic locking.
    pub fn put(&mut self, obj: Value) -> Result<Value, ApiError> {
        let api_version = obj.get("apiVersion").and_then(Value::as_str).unwrap_or("");
        let kind = obj.get("kind").and_then(Value::as_str).unwrap_or("");
        let rt = resource::lookup_kind(api_version, kind)
            .ok_or_else(|| ApiError::bad_request(format!("unknown type {api_version}/{kind}")))?;
        let ns = if rt.namespaced {
            meta(&obj, "namespace")
                .filter(|s| !s.is_empty())
                .unwrap_or_else(|| "default".into())
        } else {
            String::new()
        };
        let name = meta(&obj, "name").unwrap_or_default();
        let now = now();
        let own = ownership(
            rt,
            "test",
            Scope::Main {
                status_separate: false,
            },
            &now,
        );
        match self.get(&rt.key(), &ns, &name).cloned() {
            Some(current) => self.commit(rt, &current, obj, Some(&own)),
            None => {
                let mut obj = self.prepare_new(rt, &ns, obj)?;
                own.record_update(None, &mut obj);
                self.insert_new(rt, obj)
            }
        }
    }

    /// Test-side status write (e.g. playing the Deployment controller).
    pub fn set_status(
        &mut self,
        key: &ResourceKey,
        ns: &str,
        name: &str,
        status: Value,
    ) -> Result<Value, ApiError> {
        let rt = resource::lookup_key(key).ok_or_else(|| ApiError::not_found(key, name))?;
        let current = self.current(rt, ns, name)?;
        let mut candidate = current.clone();
        candidate["status"] = status;
        let now = now();
        let own = ownership(rt, "test", Scope::Status, &now);
        self.commit(rt, &current, candidate, Some(&own))
    }
}

fn ownership<'a>(rt: &ResourceType, manager: &'a str, scope: Scope, now: &'a str) -> Ownership<'a> {
    Ownership {
        manager,
        scope,
        api_version: rt.api_version(),
        now,
        normalize: None,
    }
}

fn check_type(rt: &ResourceType, obj: &Value) -> Result<(), ApiError> {
    let api_version = obj.get("apiVersion").and_then(Value::as_str);
    let kind = obj.get("kind").and_then(Value::as_str);
    if api_version.is_some_and(|a| a != rt.api_version()) || kind.is_some_and(|k| k != rt.kind) {
        return Err(ApiError::bad_request(format!(
            "the API version in the data ({}) does not match the expected API version ({}) or kind ({}) does not match {}",
            api_version.unwrap_or(""),
            rt.api_version(),
            kind.unwrap_or(""),
            rt.kind
        )));
    }
    Ok(())
}

/// What a write may change: the main resource never changes status (when separate), `/status`
/// changes only status.
fn scoped_candidate(rt: &ResourceType, current: &Value, mut body: Value, scope: Scope) -> Value {
    match scope {
        Scope::Main { .. } if rt.status_subresource => {
            match current.get("status") {
                Some(s) => body["status"] = s.clone(),
                None => {
                    if let Some(m) = body.as_object_mut() {
                        m.remove("status");
                    }
                }
            }
            body
        }
        Scope::Main { .. } => body,
        Scope::Status => {
            let mut c = current.clone();
            match body.get("status") {
                Some(s) => c["status"] = s.clone(),
                None => {
                    if let Some(m) = c.as_object_mut() {
                        m.remove("status");
                    }
                }
            }
            c
        }
    }
}

fn apply_conflict(conflicts: &[(String, crate::managed::Path)]) -> ApiError {
    let causes: Vec<Value> = conflicts
        .iter()
        .map(|(m, p)| {
            json!({"type": "FieldManagerConflict", "message": format!("conflict with \"{m}\""),
                   "field": display_path(p)})
        })
        .collect();
    let lines: Vec<String> = conflicts
        .iter()
        .map(|(m, p)| format!("conflict with \"{m}\": {}", display_path(p)))
        .collect();
    let mut err = ApiError::new(
        409,
        "Conflict",
        format!(
            "Apply failed with {} conflict(s): {}",
            conflicts.len(),
            lines.join(", ")
        ),
    );
    err.details = Some(json!({"causes": causes}));
    err
}

/// Parses a `resourceVersion` query parameter ("" means unset).
pub(crate) fn parse_rv(s: &str) -> Option<u64> {
    if s.is_empty() { None } else { s.parse().ok() }
}
