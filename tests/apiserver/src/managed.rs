//! Field ownership (`metadata.managedFields`) and server-side apply.
//!
//! Simplifications against the real structured-merge-diff: lists are atomic (a list is one
//! field, owned and replaced as a whole) and ownership is tracked for leaf fields only.

use std::collections::BTreeSet;

use serde_json::{Map, Value, json};

/// A field path, e.g. `["spec", "replicas"]`.
pub(crate) type Path = Vec<String>;
pub(crate) type FieldSet = BTreeSet<Path>;

/// Metadata fields the server owns; they never appear in field sets.
const SYSTEM_METADATA: &[&str] = &[
    "name",
    "namespace",
    "generateName",
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "managedFields",
    "selfLink",
];

/// Which part of an object a request may touch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Scope {
    /// The main resource; `status_separate` when the type has a status subresource.
    Main {
        status_separate: bool,
    },
    Status,
}

impl Scope {
    fn contains(self, path: &[String]) -> bool {
        let is_status = path.first().is_some_and(|p| p == "status");
        match self {
            Scope::Main { status_separate } => !(status_separate && is_status),
            Scope::Status => is_status,
        }
    }

    fn subresource(self) -> Option<&'static str> {
        match self {
            Scope::Main { .. } => None,
            Scope::Status => Some("status"),
        }
    }
}

fn collect(v: &Value, prefix: &mut Path, out: &mut FieldSet) {
    match v {
        Value::Object(map) if !map.is_empty() => {
            for (k, child) in map {
                if prefix.len() == 1
                    && prefix[0] == "metadata"
                    && SYSTEM_METADATA.contains(&k.as_str())
                {
                    continue;
                }
                prefix.push(k.clone());
                collect(child, prefix, out);
                prefix.pop();
            }
        }
        _ => {
            out.insert(prefix.clone());
        }
    }
}

/// The leaf fields an object sets, restricted to `scope`.
pub(crate) fn leaves(obj: &Value, scope: Scope) -> FieldSet {
    let mut out = FieldSet::new();
    if let Value::Object(map) = obj {
        for (k, child) in map {
            if k == "apiVersion" || k == "kind" {
                continue;
            }
            let mut prefix = vec![k.clone()];
            collect(child, &mut prefix, &mut out);
        }
    }
    out.retain(|p| scope.contains(p));
    out
}

pub(crate) fn get_path<'a>(obj: &'a Value, path: &[String]) -> Option<&'a Value> {
    path.iter().try_fold(obj, |v, k| v.get(k))
}

/// Removes a field and then any parent maps it leaves empty (below the top level).
pub(crate) fn remove_path(obj: &mut Value, path: &[String]) {
    fn rec(v: &mut Value, path: &[String], depth: usize) {
        let Some(map) = v.as_object_mut() else { return };
        match path {
            [] => {}
            [last] => {
                map.remove(last);
            }
            [head, rest @ ..] => {
                if let Some(child) = map.get_mut(head) {
                    rec(child, rest, depth + 1);
                    if depth >= 1 && child.as_object().is_some_and(Map::is_empty) {
                        map.remove(head);
                    }
                }
            }
        }
    }
    rec(obj, path, 0);
}

fn overlaps(a: &[String], b: &[String]) -> bool {
    a.starts_with(b) || b.starts_with(a)
}

/// Deep-merges `patch` into `target`: maps merge, everything else replaces. Nulls delete.
pub(crate) fn deep_merge(target: &mut Value, patch: &Value) {
    match (target, patch) {
        (Value::Object(t), Value::Object(p)) => {
            for (k, v) in p {
                if v.is_null() {
                    t.remove(k);
                } else if let Some(existing) = t.get_mut(k)
                    && existing.is_object()
                    && v.is_object()
                {
                    deep_merge(existing, v);
                } else {
                    t.insert(k.clone(), v.clone());
                }
            }
        }
        (t, p) => *t = p.clone(),
    }
}

/// One `metadata.managedFields` entry.
#[derive(Debug, Clone, PartialEq)]
struct Entry {
    manager: String,
    operation: String,
    subresource: Option<String>,
    api_version: String,
    time: String,
    fields: FieldSet,
}

fn fields_from_v1(v: &Value, prefix: &mut Path, out: &mut FieldSet) {
    let Some(map) = v.as_object() else { return };
    for (k, child) in map {
        if k == "." {
            continue;
        }
        let name = k.strip_prefix("f:").unwrap_or(k).to_string();
        prefix.push(name);
        if child
            .as_object()
            .is_none_or(|m| m.is_empty() || (m.len() == 1 && m.contains_key(".")))
        {
            out.insert(prefix.clone());
        } else {
            fields_from_v1(child, prefix, out);
        }
        prefix.pop();
    }
}

fn fields_to_v1(fields: &FieldSet) -> Value {
    let mut root = Map::new();
    for path in fields {
        let mut cur = &mut root;
        for part in path {
            let entry = cur
                .entry(format!("f:{part}"))
                .or_insert_with(|| Value::Object(Map::new()));
            // A leaf already recorded as a parent (or vice versa) stays a map.
            if !entry.is_object() {
                *entry = Value::Object(Map::new());
            }
            cur = match entry.as_object_mut() {
                Some(m) => m,
                None => break,
            };
        }
    }
    Value::Object(root)
}

fn read_entries(obj: &Value) -> Vec<Entry> {
    let Some(list) = obj
        .pointer("/metadata/managedFields")
        .and_then(Value::as_array)
    else {
        return Vec::new();
    };
    list.iter()
        .filter_map(|e| {
            let s = |k: &str| e.get(k).and_then(Value::as_str).map(str::to_string);
            let mut fields = FieldSet::new();
            if let Some(f) = e.get("fieldsV1") {
                fields_from_v1(f, &mut Vec::new(), &mut fields);
            }
            Some(Entry {
                manager: s("manager")?,
                operation: s("operation").unwrap_or_else(|| "Update".into()),
                subresource: s("subresource"),
                api_version: s("apiVersion").unwrap_or_default(),
                time: s("time").unwrap_or_default(),
                fields,
            })
        })
        .collect()
}

fn write_entries(obj: &mut Value, mut entries: Vec<Entry>) {
    entries.retain(|e| !e.fields.is_empty());
    let list: Vec<Value> = entries
        .into_iter()
        .map(|e| {
            let mut v = json!({
                "manager": e.manager,
                "operation": e.operation,
                "apiVersion": e.api_version,
                "time": e.time,
                "fieldsType": "FieldsV1",
                "fieldsV1": fields_to_v1(&e.fields),
            });
            if let Some(sub) = e.subresource {
                v["subresource"] = Value::String(sub);
            }
            v
        })
        .collect();
    if let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
        if list.is_empty() {
            meta.remove("managedFields");
        } else {
            meta.insert("managedFields".into(), Value::Array(list));
        }
    }
}

fn in_scope(e: &Entry, scope: Scope) -> bool {
    e.subresource.as_deref() == scope.subresource()
}

/// Who owns what, for the request being served.
pub(crate) struct Ownership<'a> {
    pub manager: &'a str,
    pub scope: Scope,
    pub api_version: String,
    pub now: &'a str,
    /// Server-side defaulting, applied to an apply result before values are compared.
    pub normalize: Option<&'a dyn Fn(&mut Value)>,
}

impl Ownership<'_> {
    fn upsert<'e>(&self, entries: &'e mut Vec<Entry>, operation: &str) -> &'e mut Entry {
        let pos = entries.iter().position(|e| {
            e.manager == self.manager && e.operation == operation && in_scope(e, self.scope)
        });
        let idx = match pos {
            Some(i) => i,
            None => {
                entries.push(Entry {
                    manager: self.manager.to_string(),
                    operation: operation.to_string(),
                    subresource: self.scope.subresource().map(str::to_string),
                    api_version: self.api_version.clone(),
                    time: self.now.to_string(),
                    fields: FieldSet::new(),
                });
                entries.len() - 1
            }
        };
        &mut entries[idx]
    }

    /// Records a non-apply write (create/update/patch): the manager takes every field it changed,
    /// other managers lose them (updates never conflict).
    pub fn record_update(&self, old: Option<&Value>, new: &mut Value) {
        let mut entries = old.map(read_entries).unwrap_or_default();
        let empty = Value::Null;
        let old = old.unwrap_or(&empty);
        let all: FieldSet = leaves(old, self.scope)
            .union(&leaves(new, self.scope))
            .cloned()
            .collect();
        let changed: FieldSet = all
            .into_iter()
            .filter(|p| get_path(old, p) != get_path(new, p))
            .collect();
        if !changed.is_empty() {
            for e in entries.iter_mut().filter(|e| in_scope(e, self.scope)) {
                e.fields.retain(|f| !changed.iter().any(|c| overlaps(c, f)));
            }
            let present: FieldSet = changed
                .into_iter()
                .filter(|p| get_path(new, p).is_some())
                .collect();
            if !present.is_empty() {
                let entry = self.upsert(&mut entries, "Update");
                entry.fields.extend(present);
                entry.time = self.now.to_string();
                entry.api_version = self.api_version.clone();
            }
        }
        write_entries(new, entries);
    }

    /// Server-side apply of `config` onto `current` (which may be an empty shell for a create).
    /// Returns the new object, or the conflicting (manager, field) pairs.
    pub fn apply(
        &self,
        current: &Value,
        config: &Value,
        force: bool,
    ) -> Result<Value, Vec<(String, Path)>> {
        let mut entries = read_entries(current);
        let applied = leaves(config, self.scope);
        let previous = entries
            .iter()
            .find(|e| {
                e.manager == self.manager && e.operation == "Apply" && in_scope(e, self.scope)
            })
            .map(|e| e.fields.clone())
            .unwrap_or_default();
        let others_own = |p: &Path, entries: &[Entry]| {
            entries.iter().any(|e| {
                in_scope(e, self.scope)
                    && !(e.manager == self.manager && e.operation == "Apply")
                    && e.fields.iter().any(|f| overlaps(f, p))
            })
        };

        let mut candidate = current.clone();
        // Fields this manager applied before and dropped now are removed unless someone else owns them.
        for p in previous.difference(&applied) {
            if !others_own(p, &entries) {
                remove_path(&mut candidate, p);
            }
        }
        // Merge only the in-scope, non-system part of the configuration.
        let mut scoped = Value::Object(Map::new());
        for p in &applied {
            if let Some(v) = get_path(config, p) {
                set_path(&mut scoped, p, v.clone());
            }
        }
        deep_merge(&mut candidate, &scoped);
        if let Some(normalize) = self.normalize {
            normalize(&mut candidate);
        }

        let mut conflicts = Vec::new();
        for e in entries.iter_mut() {
            if !in_scope(e, self.scope) || e.manager == self.manager {
                continue;
            }
            let mut lost = Vec::new();
            for owned in &e.fields {
                for p in &applied {
                    if !overlaps(owned, p) {
                        continue;
                    }
                    let longer = if owned.len() >= p.len() { owned } else { p };
                    if get_path(current, longer) != get_path(&candidate, longer) {
                        conflicts.push((e.manager.clone(), longer.clone()));
                        lost.push(owned.clone());
                    }
                }
            }
            if force {
                for l in lost {
                    e.fields.remove(&l);
                }
            }
        }
        if !conflicts.is_empty() && !force {
            conflicts.sort();
            conflicts.dedup();
            return Err(conflicts);
        }

        let entry = self.upsert(&mut entries, "Apply");
        if entry.fields != applied || *current != candidate {
            entry.time = self.now.to_string();
        }
        entry.fields = applied;
        entry.api_version = self.api_version.clone();
        write_entries(&mut candidate, entries);
        Ok(candidate)
    }
}

fn set_path(obj: &mut Value, path: &[String], v: Value) {
    let Some((last, parents)) = path.split_last() else {
        return;
    };
    let mut cur = obj;
    for part in parents {
        if !cur.is_object() {
            *cur = Value::Object(Map::new());
        }
        let Value::Object(m) = cur else { return };
        cur = m
            .entry(part.clone())
            .or_insert_with(|| Value::Object(Map::new()));
    }
    if let Value::Object(m) = cur {
        m.insert(last.clone(), v);
    }
}

/// `.spec.replicas` style rendering for conflict messages.
pub(crate) fn display_path(p: &Path) -> String {
    p.iter().map(|s| format!(".{s}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn own<'a>(manager: &'a str) -> Ownership<'a> {
        Ownership {
            manager,
            scope: Scope::Main {
                status_separate: true,
            },
            api_version: "v1".into(),
            now: "t",
            normalize: None,
        }
    }

    #[test]
    fn leaves_skip_system_metadata_and_status() {
        let obj = json!({"apiVersion": "v1", "kind": "X", "metadata": {"name": "a", "labels": {"x": "1"}},
            "spec": {"a": 1, "b": {"c": [1]}}, "status": {"s": 1}});
        let l = leaves(
            &obj,
            Scope::Main {
                status_separate: true,
            },
        );
        let want: FieldSet = [
            vec!["metadata", "labels", "x"],
            vec!["spec", "a"],
            vec!["spec", "b", "c"],
        ]
        .into_iter()
        .map(|p| p.into_iter().map(String::from).collect())
        .collect();
        assert_eq!(l, want);
    }

    #[test]
    fn fields_v1_roundtrip() {
        let obj = json!({"metadata": {"labels": {"x": "1"}}, "spec": {"a": 1, "b": {"c": 2}}});
        let set = leaves(
            &obj,
            Scope::Main {
                status_separate: false,
            },
        );
        let mut back = FieldSet::new();
        fields_from_v1(&fields_to_v1(&set), &mut Vec::new(), &mut back);
        assert_eq!(set, back);
    }

    #[test]
    fn apply_conflicts_with_other_manager_unless_forced() {
        let base = json!({"metadata": {"name": "a"}, "spec": {}});
        let a = own("a")
            .apply(&base, &json!({"spec": {"replicas": 1, "x": 1}}), false)
            .unwrap();
        let err = own("b")
            .apply(&a, &json!({"spec": {"replicas": 2}}), false)
            .unwrap_err();
        assert_eq!(
            err,
            vec![(
                "a".to_string(),
                vec!["spec".to_string(), "replicas".to_string()]
            )]
        );
        // Same value: shared ownership, no conflict.
        let shared = own("b")
            .apply(&a, &json!({"spec": {"replicas": 1}}), false)
            .unwrap();
        assert_eq!(shared["spec"]["replicas"], 1);
        let forced = own("b")
            .apply(&a, &json!({"spec": {"replicas": 2}}), true)
            .unwrap();
        assert_eq!(forced["spec"]["replicas"], 2);
        // a no longer owns replicas, so a re-apply of only x does not remove it.
        let again = own("a")
            .apply(&forced, &json!({"spec": {"x": 1}}), false)
            .unwrap();
        assert_eq!(again["spec"]["replicas"], 2);
    }

    #[test]
    fn apply_removes_fields_dropped_by_the_same_manager() {
        let base = json!({"metadata": {"name": "a"}});
        let a = own("a")
            .apply(
                &base,
                &json!({"metadata": {"labels": {"x": "1", "y": "2"}}}),
                false,
            )
            .unwrap();
        let b = own("a")
            .apply(&a, &json!({"metadata": {"labels": {"x": "1"}}}), false)
            .unwrap();
        assert_eq!(b["metadata"]["labels"], json!({"x": "1"}));
    }

    #[test]
    fn update_takes_ownership_without_conflict() {
        let base = json!({"metadata": {"name": "a"}});
        let a = own("a")
            .apply(&base, &json!({"spec": {"r": 1}}), false)
            .unwrap();
        let mut upd = a.clone();
        upd["spec"]["r"] = json!(5);
        own("kubectl").record_update(Some(&a), &mut upd);
        let err = own("a")
            .apply(&upd, &json!({"spec": {"r": 1}}), false)
            .unwrap_err();
        assert_eq!(err[0].0, "kubectl");
    }
}
