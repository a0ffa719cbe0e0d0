//! `runtime-config.toml` rendered from the typed `spec.runtimeConfig`.
//!
//! The text is byte-identical to what upstream produces with go-toml v2 (`toml.Marshal` of its
//! `runtimeconfig.Spin` struct): same table order, map keys sorted, strings as TOML literal
//! strings unless they need escaping, an empty `[key_value_store]` parent header before each
//! group. Identical bytes give the identical `<app>-<hash>` Secret name (see [`super::hash`]), so
//! switching operators does not roll pods. The output is parsed back with the `toml` crate before
//! it is used, so it is always valid TOML.
//!
//! Option values may come from Secrets: nothing here logs them or puts them in an error.

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{ConfigMapKeySelector, Secret, SecretKeySelector};
use kube::ResourceExt;

use super::hash::runtime_config_hash;
use super::labels::child_meta;
use super::{DesiredError, Referenced, References};
use crate::api::{RUNTIME_CONFIG_KEY, RuntimeConfigOption, SpinApp};
use crate::inventory::DEFAULT_NAMESPACE;

/// Prefix of the env variables the `env` config provider reads (upstream sets it explicitly).
const VARIABLE_PREFIX: &str = "SPIN_VARIABLE_";

/// A resolved table: option name → value, including `type`.
type Options = BTreeMap<String, String>;

pub(super) fn namespace_of(app: &SpinApp) -> String {
    app.namespace()
        .unwrap_or_else(|| DEFAULT_NAMESPACE.to_string())
}

/// The user's own runtime-config Secret, if `loadFromSecret` names one.
pub(super) fn load_from_secret(app: &SpinApp) -> Option<&str> {
    app.spec
        .runtime_config
        .as_ref()
        .and_then(|rc| rc.load_from_secret.as_deref())
        .filter(|s| !s.is_empty())
}

fn all_options(app: &SpinApp) -> impl Iterator<Item = &RuntimeConfigOption> {
    let rc = app.spec.runtime_config.as_ref();
    let kv = rc
        .and_then(|rc| rc.key_value_stores.as_deref())
        .unwrap_or_default()
        .iter()
        .flat_map(|s| s.options.as_deref().unwrap_or_default());
    let sql = rc
        .and_then(|rc| rc.sqlite_databases.as_deref())
        .unwrap_or_default()
        .iter()
        .flat_map(|s| s.options.as_deref().unwrap_or_default());
    let llm = rc
        .and_then(|rc| rc.llm_compute.as_ref())
        .into_iter()
        .flat_map(|l| l.options.as_deref().unwrap_or_default());
    kv.chain(sql).chain(llm)
}

pub(super) fn referenced(app: &SpinApp) -> Referenced {
    let mut out = Referenced::default();
    if let Some(name) = load_from_secret(app) {
        out.secrets.insert(name.to_string());
        return out;
    }
    for opt in all_options(app) {
        let Some(from) = &opt.value_from else {
            continue;
        };
        if let Some(cm) = &from.config_map_key_ref {
            out.config_maps.insert(cm.name.clone());
        } else if let Some(s) = &from.secret_key_ref {
            out.secrets.insert(s.name.clone());
        }
    }
    out
}

/// Value of `key` in a Secret: `stringData` wins over `data`, as the API server merges them
/// (manifests read offline often only have `stringData`).
pub(super) fn secret_value(
    refs: &dyn References,
    namespace: &str,
    name: &str,
    key: &str,
) -> Result<Option<Vec<u8>>, DesiredError> {
    let secret = refs
        .secret(namespace, name)
        .ok_or_else(|| DesiredError::MissingSecret {
            name: name.to_string(),
        })?;
    let from_string = secret
        .string_data
        .as_ref()
        .and_then(|d| d.get(key))
        .map(|v| v.as_bytes().to_vec());
    Ok(from_string.or_else(|| {
        secret
            .data
            .as_ref()
            .and_then(|d| d.get(key))
            .map(|v| v.0.clone())
    }))
}

fn resolve_secret(
    refs: &dyn References,
    namespace: &str,
    sel: &SecretKeySelector,
) -> Result<String, DesiredError> {
    let optional = sel.optional == Some(true);
    let bytes = match secret_value(refs, namespace, &sel.name, &sel.key) {
        Ok(Some(bytes)) => bytes,
        // Optional references resolve to an empty value, as the kubelet does for env vars.
        Ok(None) | Err(DesiredError::MissingSecret { .. }) if optional => return Ok(String::new()),
        Ok(None) => {
            return Err(DesiredError::MissingKey {
                kind: "Secret",
                name: sel.name.clone(),
                key: sel.key.clone(),
            });
        }
        Err(e) => return Err(e),
    };
    String::from_utf8(bytes).map_err(|_| DesiredError::InvalidRuntimeConfig {
        reason: format!(
            "Secret {:?} key {:?} is not valid UTF-8 text",
            sel.name, sel.key
        ),
    })
}

fn resolve_config_map(
    refs: &dyn References,
    namespace: &str,
    sel: &ConfigMapKeySelector,
) -> Result<String, DesiredError> {
    let optional = sel.optional == Some(true);
    let Some(cm) = refs.config_map(namespace, &sel.name) else {
        if optional {
            return Ok(String::new());
        }
        return Err(DesiredError::MissingConfigMap {
            name: sel.name.clone(),
        });
    };
    if let Some(v) = cm.data.as_ref().and_then(|d| d.get(&sel.key)) {
        return Ok(v.clone());
    }
    if let Some(v) = cm.binary_data.as_ref().and_then(|d| d.get(&sel.key)) {
        return String::from_utf8(v.0.clone()).map_err(|_| DesiredError::InvalidRuntimeConfig {
            reason: format!(
                "ConfigMap {:?} key {:?} is not valid UTF-8 text",
                sel.name, sel.key
            ),
        });
    }
    if optional {
        return Ok(String::new());
    }
    Err(DesiredError::MissingKey {
        kind: "ConfigMap",
        name: sel.name.clone(),
        key: sel.key.clone(),
    })
}

/// Upstream `renderOptionsIntoMap`: `type` plus each option; a literal value wins, then a
/// ConfigMap reference, then a Secret reference; later options of the same name win.
fn render_options(
    type_: &str,
    options: Option<&[RuntimeConfigOption]>,
    namespace: &str,
    refs: &dyn References,
) -> Result<Options, DesiredError> {
    let mut out = Options::from([("type".to_string(), type_.to_string())]);
    for opt in options.unwrap_or_default() {
        let value = match (&opt.value, &opt.value_from) {
            (Some(v), _) if !v.is_empty() => v.clone(),
            (_, Some(from)) => match (&from.config_map_key_ref, &from.secret_key_ref) {
                (Some(cm), _) => resolve_config_map(refs, namespace, cm)?,
                (None, Some(s)) => resolve_secret(refs, namespace, s)?,
                (None, None) => String::new(),
            },
            _ => String::new(),
        };
        out.insert(opt.name.clone(), value);
    }
    Ok(out)
}

fn add_named(
    tables: &mut BTreeMap<String, Options>,
    what: &str,
    name: &str,
    options: Options,
) -> Result<(), DesiredError> {
    if tables.insert(name.to_string(), options).is_some() {
        return Err(DesiredError::InvalidRuntimeConfig {
            reason: format!("duplicate definition for {what} with name: {name}"),
        });
    }
    Ok(())
}

/// Renders the app's runtime config; None when the app brings its own (`loadFromSecret`).
pub fn render_runtime_config(
    app: &SpinApp,
    refs: &dyn References,
) -> Result<Option<String>, DesiredError> {
    if load_from_secret(app).is_some() {
        return Ok(None);
    }
    let namespace = namespace_of(app);
    let rc = app.spec.runtime_config.clone().unwrap_or_default();

    let mut kv_stores = BTreeMap::new();
    for store in rc.key_value_stores.as_deref().unwrap_or_default() {
        let opts = render_options(&store.type_, store.options.as_deref(), &namespace, refs)?;
        add_named(&mut kv_stores, "key value store", &store.name, opts)?;
    }
    let mut databases = BTreeMap::new();
    for db in rc.sqlite_databases.as_deref().unwrap_or_default() {
        let opts = render_options(&db.type_, db.options.as_deref(), &namespace, refs)?;
        add_named(&mut databases, "sqlite database", &db.name, opts)?;
    }
    let llm = match &rc.llm_compute {
        Some(llm) => Some(render_options(
            &llm.type_,
            llm.options.as_deref(),
            &namespace,
            refs,
        )?),
        None => None,
    };

    let text = write_toml(&kv_stores, &databases, llm.as_ref());
    // Guard against any emitter mistake: the text must be TOML. The parser's message may quote
    // the offending (possibly secret) text, so it is not passed on.
    if text.parse::<toml::Table>().is_err() {
        return Err(DesiredError::InvalidRuntimeConfig {
            reason: "rendered runtime config is not valid TOML".into(),
        });
    }
    Ok(Some(text))
}

/// The generated Secret `<app>-<hash>` holding the rendered TOML. Content-addressed: a change of
/// content is a new Secret (and a new pod template), and stale ones can be deleted.
pub(super) fn secret(app: &SpinApp, toml: String) -> Secret {
    let name = format!(
        "{}-{}",
        app.name_any(),
        runtime_config_hash(toml.as_bytes())
    );
    Secret {
        metadata: child_meta(app, name, None),
        data: Some(BTreeMap::from([(
            RUNTIME_CONFIG_KEY.to_string(),
            ByteString(toml.into_bytes()),
        )])),
        ..Secret::default()
    }
}

/// go-toml v2 layout of upstream's `Spin` struct (fields: config_provider, key_value_store,
/// sqlite_database, llm_compute; empty ones omitted; tables separated by one blank line).
fn write_toml(
    kv_stores: &BTreeMap<String, Options>,
    databases: &BTreeMap<String, Options>,
    llm: Option<&Options>,
) -> String {
    let mut out = String::new();
    out.push_str("[[config_provider]]\n");
    push_kv(&mut out, "type", "env");
    push_kv(&mut out, "prefix", VARIABLE_PREFIX);
    for (section, tables) in [
        ("key_value_store", kv_stores),
        ("sqlite_database", databases),
    ] {
        if tables.is_empty() {
            continue;
        }
        out.push('\n');
        out.push('[');
        push_key(&mut out, section);
        out.push_str("]\n");
        for (i, (name, options)) in tables.iter().enumerate() {
            if i > 0 {
                out.push('\n');
            }
            out.push('[');
            push_key(&mut out, section);
            out.push('.');
            push_key(&mut out, name);
            out.push_str("]\n");
            for (k, v) in options {
                push_kv(&mut out, k, v);
            }
        }
    }
    if let Some(options) = llm {
        out.push_str("\n[llm_compute]\n");
        for (k, v) in options {
            push_kv(&mut out, k, v);
        }
    }
    out
}

fn push_kv(out: &mut String, key: &str, value: &str) {
    push_key(out, key);
    out.push_str(" = ");
    push_string(out, value);
    out.push('\n');
}

/// Bare key when it only has `A-Za-z0-9_-`, else a literal string, else a basic string.
fn push_key(out: &mut String, key: &str) {
    let bare = !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if bare {
        out.push_str(key);
    } else if key.contains('\'') || needs_escaping(key) {
        push_basic(out, key);
    } else {
        push_literal(out, key);
    }
}

/// go-toml v2 writes strings as literal strings (`'...'`) unless they contain a quote or a
/// control character.
fn push_string(out: &mut String, value: &str) {
    if value.contains('\'') || needs_escaping(value) {
        push_basic(out, value);
    } else {
        push_literal(out, value);
    }
}

fn needs_escaping(s: &str) -> bool {
    s.chars().any(|c| c.is_ascii_control())
}

fn push_literal(out: &mut String, s: &str) {
    out.push('\'');
    out.push_str(s);
    out.push('\'');
}

fn push_basic(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_ascii_control() => out.push_str(&format!("\\u{:04X}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
}
