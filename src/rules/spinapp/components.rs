//! `spec.components`: the subset of the app's components to run.

use std::collections::BTreeSet;

use super::AppCtx;
use crate::rules::findings::Findings;
use crate::rules::names;

pub fn check(cx: &AppCtx, out: &mut Findings) {
    let Some(components) = &cx.spec.components else {
        return;
    };
    if components.is_empty() {
        out.invalid(
            "SA-COMPONENTS-EMPTY",
            "spec.components",
            serde_json::json!([]),
            "must contain at least one component; omit the field to run all components",
        );
        return;
    }
    let mut seen = BTreeSet::new();
    for (i, id) in components.iter().enumerate() {
        let field = format!("spec.components[{i}]");
        if let Err(e) = names::spin_component_id(id) {
            out.invalid(
                "SA-COMPONENTS-ID",
                field,
                id.as_str(),
                format!("must be a Spin component id (kebab-case): {e}"),
            );
        } else if !seen.insert(id.as_str()) {
            out.duplicate("SA-COMPONENTS-DUPLICATE", field, id.as_str());
        }
    }
}
