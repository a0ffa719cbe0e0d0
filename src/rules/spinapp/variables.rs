//! `spec.variables`: Spin variable names, uniqueness, and one source per variable.

use std::collections::BTreeSet;

use super::AppCtx;
use super::refs::{self, Kind};
use crate::rules::findings::Findings;
use crate::rules::names;

pub fn check(cx: &AppCtx, out: &mut Findings) {
    let mut seen = BTreeSet::new();
    for (i, var) in cx.spec.variables.iter().flatten().enumerate() {
        let at = format!("spec.variables[{i}]");
        if let Err(e) = names::spin_variable_name(&var.name) {
            out.invalid(
                "SA-VARIABLE-NAME",
                format!("{at}.name"),
                var.name.as_str(),
                e,
            );
        } else if !seen.insert(var.name.as_str()) {
            out.duplicate(
                "SA-VARIABLE-DUPLICATE",
                format!("{at}.name"),
                var.name.as_str(),
            );
        }
        match (&var.value, &var.value_from) {
            (Some(_), Some(_)) => out.forbidden(
                "SA-VARIABLE-SOURCE",
                format!("{at}.valueFrom"),
                "may not be specified when `value` is set",
            ),
            (None, None) => out.required(
                "SA-VARIABLE-SOURCE",
                at.clone(),
                "exactly one of `value` or `valueFrom` must be set",
            ),
            (None, Some(source)) => {
                let at = format!("{at}.valueFrom");
                let count = [
                    source.config_map_key_ref.is_some(),
                    source.secret_key_ref.is_some(),
                    source.field_ref.is_some(),
                    source.resource_field_ref.is_some(),
                    source.file_key_ref.is_some(),
                ]
                .into_iter()
                .filter(|set| *set)
                .count();
                if count != 1 {
                    out.invalid(
                        "SA-VARIABLE-SOURCE",
                        at.clone(),
                        serde_json::to_value(source).unwrap_or_default(),
                        "must specify exactly one of configMapKeyRef, secretKeyRef, fieldRef, \
                         resourceFieldRef or fileKeyRef",
                    );
                }
                if let Some(r) = &source.secret_key_ref {
                    key_ref(out, &format!("{at}.secretKeyRef"), &r.key);
                    let field = format!("{at}.secretKeyRef.name");
                    let optional = r.optional.unwrap_or(false);
                    refs::check(cx, out, Kind::Secret, &field, &r.name, optional);
                }
                if let Some(r) = &source.config_map_key_ref {
                    key_ref(out, &format!("{at}.configMapKeyRef"), &r.key);
                    let field = format!("{at}.configMapKeyRef.name");
                    let optional = r.optional.unwrap_or(false);
                    refs::check(cx, out, Kind::ConfigMap, &field, &r.name, optional);
                }
            }
            (Some(_), None) => {}
        }
    }
}

fn key_ref(out: &mut Findings, at: &str, key: &str) {
    if key.is_empty() {
        out.required("SA-REF-NAME", format!("{at}.key"), "");
    }
}
