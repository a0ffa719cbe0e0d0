//! `spec.volumes` and `spec.volumeMounts`.

use std::collections::BTreeSet;

use super::AppCtx;
use crate::api::{CA_BUNDLE_PATH, RESERVED_VOLUME_PREFIX, RUNTIME_CONFIG_PATH};
use crate::rules::findings::Findings;
use crate::rules::names;

/// Paths where the operator mounts files of its own.
const RESERVED_PATHS: &[&str] = &[RUNTIME_CONFIG_PATH, CA_BUNDLE_PATH];

pub fn check(cx: &AppCtx, out: &mut Findings) {
    let mut declared = BTreeSet::new();
    for (i, v) in cx.spec.volumes.iter().flatten().enumerate() {
        let field = format!("spec.volumes[{i}].name");
        if let Err(e) = names::dns1123_label(&v.name) {
            out.invalid("SA-VOLUME-NAME", field, v.name.as_str(), e);
        } else if v.name.starts_with(RESERVED_VOLUME_PREFIX) {
            out.invalid(
                "SA-VOLUME-RESERVED",
                field,
                v.name.as_str(),
                format!(
                    "names starting with {RESERVED_VOLUME_PREFIX:?} are reserved for the volumes \
                     the operator adds"
                ),
            );
        } else if !declared.insert(v.name.as_str()) {
            out.duplicate("SA-VOLUME-DUPLICATE", field, v.name.as_str());
        }
    }
    let mut paths = BTreeSet::new();
    for (i, m) in cx.spec.volume_mounts.iter().flatten().enumerate() {
        let at = format!("spec.volumeMounts[{i}]");
        if m.name.is_empty() {
            out.required("SA-VOLUMEMOUNT-VOLUME", format!("{at}.name"), "");
        } else if !declared.contains(m.name.as_str())
            && !cx.spec.volumes.iter().flatten().any(|v| v.name == m.name)
        {
            out.not_found(
                "SA-VOLUMEMOUNT-VOLUME",
                format!("{at}.name"),
                m.name.as_str(),
                "must name a volume declared in spec.volumes",
            );
        }
        let path = m.mount_path.trim_end_matches('/');
        if m.mount_path.is_empty() {
            out.required("SA-VOLUMEMOUNT-PATH", format!("{at}.mountPath"), "");
        } else if let Some(reserved) = RESERVED_PATHS
            .iter()
            .find(|r| path == **r || path.starts_with(&format!("{r}/")))
        {
            out.invalid(
                "SA-VOLUMEMOUNT-PATH",
                format!("{at}.mountPath"),
                m.mount_path.as_str(),
                format!("collides with {reserved}, which the operator mounts"),
            );
        } else if !paths.insert(path.to_string()) {
            out.invalid(
                "SA-VOLUMEMOUNT-PATH",
                format!("{at}.mountPath"),
                m.mount_path.as_str(),
                "must be unique",
            );
        }
    }
}
