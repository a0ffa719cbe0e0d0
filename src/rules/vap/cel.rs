//! Small builders for the CEL of the policy: string literals, field presence, and the ratchet
//! guards that mirror the webhooks' "an unchanged field never blocks an UPDATE".
//!
//! Paths are CEL selections rooted at `object` (e.g. `object.spec.checks.liveness`); the same
//! path under `oldObject` is derived from them, so each rule names its fields once.

/// A CEL single-quoted string literal.
pub fn lit(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('\'');
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\'' => out.push_str("\\'"),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out.push('\'');
    out
}

/// `s.matches('<regex>')`.
pub fn matches(s: &str, regex: &str) -> String {
    format!("{s}.matches({})", lit(regex))
}

/// The same selection under `oldObject`.
pub fn old(path: &str) -> String {
    match path.strip_prefix("object") {
        Some(rest) => format!("oldObject{rest}"),
        None => path.to_string(),
    }
}

/// `has()` for every step below the root: a selection on an absent field is an error in CEL,
/// so `has(a.b.c)` needs `has(a.b)` first. `spec` is required by the CRDs, so always there.
pub fn present(path: &str) -> String {
    let mut parts = path.split('.');
    let mut at = parts.next().unwrap_or_default().to_string();
    let mut checks = Vec::new();
    for part in parts {
        at = format!("{at}.{part}");
        let parent_is_root = !at[..at.len() - part.len() - 1].contains('.');
        if part != "spec" || !parent_is_root {
            checks.push(format!("has({at})"));
        }
    }
    if checks.is_empty() {
        return "true".to_string();
    }
    checks.join(" && ")
}

/// Every `has(p)` of `expression` as `(has(p) && p != null)`: the CRD's optional fields are
/// nullable, the API server keeps an explicit `null` (has() is then true), and the webhooks read
/// it as unset; without this a comparison on it would fail the whole request.
pub fn null_safe(expression: &str) -> String {
    let mut out = String::with_capacity(expression.len() * 2);
    let mut rest = expression;
    while let Some(at) = rest.find("has(") {
        let (before, after) = rest.split_at(at);
        out.push_str(before);
        let inner = &after["has(".len()..];
        match inner.find(')') {
            Some(end) => {
                let path = &inner[..end];
                out.push_str(&format!("(has({path}) && {path} != null)"));
                rest = &inner[end + 1..];
            }
            None => {
                out.push_str(after);
                rest = "";
            }
        }
    }
    out.push_str(rest);
    out
}

/// True when `path` has the same value (or is absent in both) in the old object.
fn same(path: &str) -> String {
    let old_path = old(path);
    format!(
        "(({}) ? ({} && {path} == {old_path}) : !({}))",
        present(path),
        present(&old_path),
        present(&old_path)
    )
}

/// Prefix of the policy variables that tell whether a field is unchanged by an UPDATE. (Not
/// `__`: the API server escapes `__` in names, so `variables.a__b` would not be found.)
const UNCHANGED: &str = "unchanged_";

/// The variable name for `path` (`object.spec.image` → `unchanged_spec_image`).
fn variable_name(path: &str) -> String {
    let rel = path.strip_prefix("object.").unwrap_or(path);
    format!("{UNCHANGED}{}", rel.replace('.', "_"))
}

/// True on UPDATE when every path is unchanged: then an error on them is only a warning in the
/// webhooks (ratcheting), so the policy admits it. Each path is a policy variable (see
/// [`unchanged_variables`]), so a validation reads `<rule> || variables.unchanged_spec_image`.
pub fn unchanged(paths: &[&str]) -> String {
    let all: Vec<String> = paths
        .iter()
        .map(|p| format!("variables.{}", variable_name(p)))
        .collect();
    match all.as_slice() {
        [one] => one.clone(),
        _ => format!("({})", all.join(" && ")),
    }
}

/// Every `object.` selection of `expression` and its prefixes, by variable name: the fields an
/// expression ratchets on are ones it reads (or their parents).
fn paths_in(expression: &str) -> std::collections::BTreeMap<String, String> {
    let mut out = std::collections::BTreeMap::new();
    let bytes = expression.as_bytes();
    for (at, _) in expression.match_indices("object.") {
        let preceded = at > 0 && (bytes[at - 1].is_ascii_alphanumeric() || bytes[at - 1] == b'_');
        if preceded {
            continue;
        }
        let tail = &expression[at..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '.'))
            .unwrap_or(tail.len());
        let mut path = String::new();
        for part in tail[..end].trim_end_matches('.').split('.') {
            if !path.is_empty() {
                path.push('.');
            }
            path.push_str(part);
            out.insert(variable_name(&path), path.clone());
        }
    }
    out
}

/// The variables [`unchanged`] refers to in `expression`, in order of first use, as
/// `(name, expression)`; `Err(name)` for one whose field the expression does not read.
pub fn unchanged_variables(expression: &str) -> Result<Vec<(String, String)>, String> {
    let paths = paths_in(expression);
    let mut out: Vec<(String, String)> = Vec::new();
    let marker = format!("variables.{UNCHANGED}");
    let mut rest = expression;
    while let Some(at) = rest.find(&marker) {
        let tail = &rest[at + "variables.".len()..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        let name = &tail[..end];
        if !out.iter().any(|(n, _)| n == name) {
            let path = paths.get(name).ok_or_else(|| name.to_string())?;
            out.push((name.to_string(), unchanged_variable(path)));
        }
        rest = &tail[end..];
    }
    Ok(out)
}

/// The expression of the variable for `path`.
fn unchanged_variable(path: &str) -> String {
    null_safe(&format!("request.operation == 'UPDATE' && {}", same(path)))
}

/// Inside `<list>.all(x, ...)`: true on UPDATE when the old list has an element `o` with
/// `cond` (e.g. `o == x`, the same element, whatever its index).
pub fn in_old_list(list: &str, cond: &str) -> String {
    let old_list = old(list);
    format!(
        "(request.operation == 'UPDATE' && {} && {old_list}.exists(o, {cond}))",
        present(&old_list)
    )
}

/// Inside `<list>.all(x, ...)`: true on UPDATE when the old list also had `key` of `x` more
/// than once (an old duplicate stays admitted, as in the webhooks).
pub fn old_duplicate(list: &str, key: &str) -> String {
    let old_list = old(list);
    format!(
        "(request.operation == 'UPDATE' && {} && {old_list}.filter(o, o{key} == x{key}).size() > 1)",
        present(&old_list)
    )
}

/// Inside `<map>.all(k, ...)`: true on UPDATE when the old map has key `k` with the same value.
pub fn same_entry(map: &str) -> String {
    same_key(map, "k")
}

/// True on UPDATE when the old map has `key` (a CEL expression) with the same value.
pub fn same_key(map: &str, key: &str) -> String {
    let old_map = old(map);
    format!(
        "(request.operation == 'UPDATE' && {} && {key} in {old_map} && {old_map}[{key}] == {map}[{key}])",
        present(&old_map)
    )
}

/// `!present || cond`: a rule about an optional field.
pub fn absent_or(path: &str, cond: &str) -> String {
    format!("!({}) || {cond}", present(path))
}

/// The non-empty optional string at `path` satisfies `cond` (written with `path`).
pub fn unset_or(path: &str, cond: &str) -> String {
    format!("!({}) || {path} == '' || {cond}", present(path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literals_escape_quotes_and_backslashes() {
        assert_eq!(lit(r"a'b\."), r"'a\'b\\.'");
    }

    #[test]
    fn has_also_means_not_null() {
        assert_eq!(
            null_safe("!has(a.b) || has(a.c) ? 1 : 0"),
            "!(has(a.b) && a.b != null) || (has(a.c) && a.c != null) ? 1 : 0"
        );
    }

    #[test]
    fn unchanged_fields_are_variables_named_by_path() {
        let otel = "object.spec.deploymentConfig.otel.exporter_otlp_endpoint";
        let e = format!(
            "object.spec.image != '' && {otel} != '' || {}",
            unchanged(&["object.spec.image", otel])
        );
        let vars = unchanged_variables(&e).unwrap();
        let names: Vec<&str> = vars.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            [
                "unchanged_spec_image",
                "unchanged_spec_deploymentConfig_otel_exporter_otlp_endpoint"
            ]
        );
        assert!(
            vars[0]
                .1
                .contains("object.spec.image == oldObject.spec.image")
        );
        // A field the expression does not read cannot be named.
        assert_eq!(
            unchanged_variables(&unchanged(&["object.spec.x"])),
            Err("unchanged_spec_x".to_string())
        );
    }

    #[test]
    fn presence_checks_each_step() {
        assert_eq!(
            present("object.spec.checks.liveness"),
            "has(object.spec.checks) && has(object.spec.checks.liveness)"
        );
        assert_eq!(old("object.spec.x"), "oldObject.spec.x");
    }
}
