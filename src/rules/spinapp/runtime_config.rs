//! `spec.runtimeConfig`: a Secret with a whole `runtime-config.toml`, or typed provider tables
//! whose option keys must be ones Spin reads.

use std::collections::BTreeSet;

use super::AppCtx;
use super::refs::{self, Kind};
use crate::api::RuntimeConfigOption;
use crate::rules::findings::Findings;
use crate::rules::runtime_config_keys::{self as known, Section};

const AT: &str = "spec.runtimeConfig";

pub fn check(cx: &AppCtx, out: &mut Findings) {
    let Some(rc) = &cx.spec.runtime_config else {
        return;
    };
    if let Some(secret) = &rc.load_from_secret {
        refs::check(
            cx,
            out,
            Kind::Secret,
            &format!("{AT}.loadFromSecret"),
            secret,
            false,
        );
        let typed = [
            (
                "sqliteDatabases",
                rc.sqlite_databases.as_ref().is_some_and(|v| !v.is_empty()),
            ),
            (
                "keyValueStores",
                rc.key_value_stores.as_ref().is_some_and(|v| !v.is_empty()),
            ),
            ("llmCompute", rc.llm_compute.is_some()),
        ];
        for (field, set) in typed {
            if set {
                out.forbidden(
                    "SA-RC-EXCLUSIVE",
                    format!("{AT}.{field}"),
                    "may not be set together with loadFromSecret (the Secret's \
                     runtime-config.toml is used as is)",
                );
            }
        }
    }
    let mut names = BTreeSet::new();
    for (i, db) in rc.sqlite_databases.iter().flatten().enumerate() {
        let at = format!("{AT}.sqliteDatabases[{i}]");
        table_name(out, &at, &db.name, &mut names);
        table(
            cx,
            out,
            &at,
            Section::SqliteDatabase,
            &db.type_,
            db.options.as_deref(),
        );
    }
    let mut names = BTreeSet::new();
    for (i, kv) in rc.key_value_stores.iter().flatten().enumerate() {
        let at = format!("{AT}.keyValueStores[{i}]");
        table_name(out, &at, &kv.name, &mut names);
        table(
            cx,
            out,
            &at,
            Section::KeyValueStore,
            &kv.type_,
            kv.options.as_deref(),
        );
    }
    if let Some(llm) = &rc.llm_compute {
        let at = format!("{AT}.llmCompute");
        table(
            cx,
            out,
            &at,
            Section::LlmCompute,
            &llm.type_,
            llm.options.as_deref(),
        );
    }
}

fn table_name<'a>(out: &mut Findings, at: &str, name: &'a str, seen: &mut BTreeSet<&'a str>) {
    if name.is_empty() {
        out.required("SA-RC-NAME", format!("{at}.name"), "");
    } else if !seen.insert(name) {
        out.duplicate("SA-RC-NAME", format!("{at}.name"), name);
    }
}

fn table(
    cx: &AppCtx,
    out: &mut Findings,
    at: &str,
    section: Section,
    type_: &str,
    options: Option<&[RuntimeConfigOption]>,
) {
    let known_keys = if type_.is_empty() {
        out.required("SA-RC-TYPE", format!("{at}.type"), "");
        None
    } else {
        let keys = known::keys(section, type_);
        if keys.is_none() {
            out.warn(
                "SA-RC-TYPE-UNKNOWN",
                format!(
                    "{at}.type: {type_:?} is not a {} type this operator knows (known: {}); its \
                     options are passed through unchecked",
                    section.toml_name(),
                    known::types(section).join(", ")
                ),
            );
        }
        keys
    };
    let mut seen = BTreeSet::new();
    for (j, opt) in options.unwrap_or_default().iter().enumerate() {
        let at = format!("{at}.options[{j}]");
        option_source(cx, out, &at, opt);
        if opt.name.is_empty() {
            out.required("SA-RC-OPTION", format!("{at}.name"), "");
            continue;
        }
        if !seen.insert(opt.name.as_str()) {
            out.duplicate("SA-RC-OPTION", format!("{at}.name"), opt.name.as_str());
            continue;
        }
        let Some(keys) = known_keys else {
            continue;
        };
        if keys.contains(&opt.name.as_str()) {
            continue;
        }
        let known_list = if keys.is_empty() {
            "it takes no options".to_string()
        } else {
            format!("known: {}", keys.join(", "))
        };
        match known::likely_meant(&opt.name, keys) {
            Some(meant) => out.invalid(
                "SA-RC-KEY-MISSPELLED",
                format!("{at}.name"),
                opt.name.as_str(),
                format!(
                    "not an option of {} type {type_:?}; did you mean {meant:?}? ({known_list})",
                    section.toml_name()
                ),
            ),
            None => out.warn(
                "SA-RC-KEY-UNKNOWN",
                format!(
                    "{at}.name: {:?} is not an option Spin reads for {} type {type_:?} \
                     ({known_list}); it will be ignored",
                    opt.name,
                    section.toml_name()
                ),
            ),
        }
    }
}

/// Exactly one of `value`/`valueFrom`, and a `valueFrom` with exactly one reference.
fn option_source(cx: &AppCtx, out: &mut Findings, at: &str, opt: &RuntimeConfigOption) {
    match (&opt.value, &opt.value_from) {
        (Some(_), Some(_)) => out.forbidden(
            "SA-RC-OPTION-SOURCE",
            format!("{at}.valueFrom"),
            "may not be specified when `value` is set",
        ),
        (None, None) => out.required(
            "SA-RC-OPTION-SOURCE",
            at.to_string(),
            "exactly one of `value` or `valueFrom` must be set",
        ),
        (Some(_), None) => {}
        (None, Some(from)) => {
            let at = format!("{at}.valueFrom");
            match (&from.secret_key_ref, &from.config_map_key_ref) {
                (Some(s), None) => {
                    if s.key.is_empty() {
                        out.required("SA-REF-NAME", format!("{at}.secretKeyRef.key"), "");
                    }
                    let field = format!("{at}.secretKeyRef.name");
                    let optional = s.optional.unwrap_or(false);
                    refs::check(cx, out, Kind::Secret, &field, &s.name, optional);
                }
                (None, Some(c)) => {
                    if c.key.is_empty() {
                        out.required("SA-REF-NAME", format!("{at}.configMapKeyRef.key"), "");
                    }
                    let field = format!("{at}.configMapKeyRef.name");
                    let optional = c.optional.unwrap_or(false);
                    refs::check(cx, out, Kind::ConfigMap, &field, &c.name, optional);
                }
                _ => out.invalid(
                    "SA-RC-OPTION-SOURCE",
                    at,
                    serde_json::to_value(from).unwrap_or_default(),
                    "must specify exactly one of secretKeyRef or configMapKeyRef",
                ),
            }
        }
    }
}
