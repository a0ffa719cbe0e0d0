//! Field paths (`spec.variables[1].name`, `spec.podLabels[app.kubernetes.io/name]`): building
//! them, and finding the value a path names inside a JSON object (for ratcheting).

use serde_json::Value;

/// One step of a path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Seg {
    Key(String),
    Index(usize),
}

/// Formats segments as Kubernetes prints field paths: `.field` for identifiers, `[i]` for list
/// indices, `[key]` for map keys that are not plain identifiers.
pub(crate) fn format(root: &str, segs: &[Seg]) -> String {
    let mut out = root.to_string();
    for seg in segs {
        match seg {
            Seg::Index(i) => out.push_str(&format!("[{i}]")),
            Seg::Key(k) if is_ident(k) => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(k);
            }
            Seg::Key(k) => out.push_str(&format!("[{k}]")),
        }
    }
    out
}

fn is_ident(k: &str) -> bool {
    !k.is_empty()
        && k.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
        && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Parses a printed field path back into segments (brackets hold an index or a map key).
pub(crate) fn parse(path: &str) -> Vec<String> {
    let mut segs = Vec::new();
    let mut cur = String::new();
    let mut chars = path.chars();
    while let Some(c) = chars.next() {
        match c {
            '.' => {
                if !cur.is_empty() {
                    segs.push(std::mem::take(&mut cur));
                }
            }
            '[' => {
                if !cur.is_empty() {
                    segs.push(std::mem::take(&mut cur));
                }
                let inner: String = chars.by_ref().take_while(|&c| c != ']').collect();
                segs.push(inner);
            }
            c => cur.push(c),
        }
    }
    if !cur.is_empty() {
        segs.push(cur);
    }
    segs
}

/// The value at a printed field path, if present.
pub(crate) fn lookup<'v>(root: &'v Value, path: &str) -> Option<&'v Value> {
    let mut cur = root;
    for seg in parse(path) {
        cur = match cur {
            Value::Array(items) => items.get(seg.parse::<usize>().ok()?)?,
            Value::Object(map) => map.get(&seg)?,
            _ => return None,
        };
    }
    Some(cur)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn formats_and_parses_round_trip() {
        let segs = [
            Seg::Key("variables".into()),
            Seg::Index(1),
            Seg::Key("name".into()),
        ];
        assert_eq!(format("spec", &segs), "spec.variables[1].name");
        let labels = [
            Seg::Key("podLabels".into()),
            Seg::Key("core.spinkube.dev/app-name".into()),
        ];
        let printed = format("spec", &labels);
        assert_eq!(printed, "spec.podLabels[core.spinkube.dev/app-name]");
        assert_eq!(
            parse(&printed),
            vec!["spec", "podLabels", "core.spinkube.dev/app-name"]
        );
    }

    #[test]
    fn looks_up_values() {
        let v = json!({"spec": {"variables": [{"name": "a"}, {"name": "b"}],
                                "podLabels": {"a.b/c": "x"}}});
        assert_eq!(lookup(&v, "spec.variables[1].name"), Some(&json!("b")));
        assert_eq!(lookup(&v, "spec.podLabels[a.b/c]"), Some(&json!("x")));
        assert_eq!(lookup(&v, "spec.variables[2].name"), None);
        assert_eq!(lookup(&v, "spec.replicas"), None);
    }
}
