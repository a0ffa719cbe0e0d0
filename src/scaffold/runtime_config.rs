//! A `runtime-config.toml` file: read into the typed `spec.runtimeConfig` sections so the
//! webhook's runtime-config rules can judge it, then shipped verbatim in a Secret.
//!
//! Values of the file never reach a message: errors name tables and keys only, and a TOML
//! syntax error is reported by position and parser message, without the source excerpt.

use std::collections::BTreeMap;

use super::{RuntimeConfigFile, ScaffoldError};
use crate::api::{
    KeyValueStoreConfig, LlmComputeConfig, RUNTIME_CONFIG_KEY, RuntimeConfig, RuntimeConfigOption,
    SpinApp, SqliteDatabaseConfig,
};
use crate::inventory::Inventory;
use crate::rules::{self, ErrorType, FieldError};
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

/// The Secret `spin kube scaffold` names for an app's runtime config.
pub fn secret_name(app: &str) -> String {
    format!("{app}-runtime-config")
}

/// Top-level tables the typed rules check, and ones passed through without a warning
/// (`config_provider` is the fourth table of upstream's runtime-config struct).
const CHECKED: [&str; 3] = ["key_value_store", "sqlite_database", "llm_compute"];
const PASSED: [&str; 1] = ["config_provider"];

/// The file as typed sections, and how their field paths map back to the file.
#[derive(Debug)]
pub(super) struct Parsed {
    typed: RuntimeConfig,
    /// `spec.runtimeConfig...` prefix → TOML path, longest first.
    paths: Vec<(String, String)>,
    /// Shape errors the typed form cannot express (a table that is not a table, ...).
    shape: Vec<FieldError>,
    unchecked: Vec<String>,
}

pub(super) fn parse(file: &RuntimeConfigFile) -> Result<Parsed, ScaffoldError> {
    let table: toml::Table = file.text.parse().map_err(|e: toml::de::Error| {
        let (line, column) = position(&file.text, e.span().map_or(0, |s| s.start));
        ScaffoldError::RuntimeConfigToml {
            file: file.file.clone(),
            line,
            column,
            message: e.message().trim_end().to_string(),
        }
    })?;
    let mut parsed = Parsed {
        typed: RuntimeConfig::default(),
        paths: Vec::new(),
        shape: Vec::new(),
        unchecked: Vec::new(),
    };
    for (key, value) in &table {
        match key.as_str() {
            "key_value_store" => {
                let stores = parsed.named_tables(key, value, "keyValueStores");
                parsed.typed.key_value_stores = stores.map(|tables| {
                    tables
                        .into_iter()
                        .map(|(name, type_, options)| KeyValueStoreConfig {
                            name,
                            type_,
                            options,
                        })
                        .collect()
                });
            }
            "sqlite_database" => {
                let dbs = parsed.named_tables(key, value, "sqliteDatabases");
                parsed.typed.sqlite_databases = dbs.map(|tables| {
                    tables
                        .into_iter()
                        .map(|(name, type_, options)| SqliteDatabaseConfig {
                            name,
                            type_,
                            options,
                        })
                        .collect()
                });
            }
            "llm_compute" => {
                let llm = parsed.provider(key.to_string(), value, "spec.runtimeConfig.llmCompute");
                parsed.typed.llm_compute =
                    llm.map(|(type_, options)| LlmComputeConfig { type_, options });
            }
            other if PASSED.contains(&other) => {}
            other => parsed.unchecked.push(other.to_string()),
        }
    }
    // Longest first, so `options[1].name` wins over `options[1]`.
    parsed
        .paths
        .sort_by_key(|(from, _)| std::cmp::Reverse(from.len()));
    Ok(parsed)
}

/// One `(name, type, options)` per provider table.
type Tables = Vec<(String, String, Option<Vec<RuntimeConfigOption>>)>;

impl Parsed {
    /// `[<key>.<name>]` tables (key_value_store, sqlite_database).
    fn named_tables(&mut self, key: &str, value: &toml::Value, field: &str) -> Option<Tables> {
        let Some(tables) = value.as_table() else {
            self.not_a_table(key.to_string());
            return None;
        };
        let mut out = Vec::new();
        for (name, provider) in tables {
            let at = format!("spec.runtimeConfig.{field}[{}]", out.len());
            let toml_at = format!("{key}.{}", toml_key(name));
            if let Some((type_, options)) = self.provider(toml_at.clone(), provider, &at) {
                self.paths.push((format!("{at}.name"), toml_at));
                out.push((name.clone(), type_, options));
            }
        }
        Some(out)
    }

    /// A provider table: `type` and its options.
    fn provider(
        &mut self,
        toml_at: String,
        value: &toml::Value,
        at: &str,
    ) -> Option<(String, Option<Vec<RuntimeConfigOption>>)> {
        let Some(table) = value.as_table() else {
            self.not_a_table(toml_at);
            return None;
        };
        let type_ = match table.get("type") {
            None => String::new(),
            Some(toml::Value::String(t)) => t.clone(),
            Some(_) => {
                self.shape.push(FieldError {
                    rule: "SCAFFOLD-RC-SHAPE",
                    field: format!("{toml_at}.type"),
                    error_type: ErrorType::Invalid,
                    bad_value: None,
                    detail: "must be a string".to_string(),
                });
                return None;
            }
        };
        let mut options = Vec::new();
        for (name, value) in table.iter().filter(|(k, _)| *k != "type") {
            let option_at = format!("{at}.options[{}]", options.len());
            let option_toml = format!("{toml_at}.{}", toml_key(name));
            self.paths
                .push((format!("{option_at}.name"), option_toml.clone()));
            self.paths.push((option_at, option_toml));
            options.push(RuntimeConfigOption {
                name: name.clone(),
                // Only the option names are judged; the value just has to be present.
                value: Some(match value {
                    toml::Value::String(s) => s.clone(),
                    other => other.to_string(),
                }),
                value_from: None,
            });
        }
        self.paths.push((at.to_string(), toml_at));
        Some((type_, (!options.is_empty()).then_some(options)))
    }

    fn not_a_table(&mut self, toml_at: String) {
        self.shape.push(FieldError {
            rule: "SCAFFOLD-RC-SHAPE",
            field: toml_at,
            error_type: ErrorType::Invalid,
            bad_value: None,
            detail: "must be a table".to_string(),
        });
    }

    /// Runs the webhook's `spec.runtimeConfig` rules on the file, in the file's own paths.
    pub fn check(
        &self,
        namespace: &str,
        file: &str,
        warnings: &mut Vec<String>,
    ) -> Vec<FieldError> {
        let decision = rules::validate_runtime_config(
            namespace,
            &self.typed,
            &Inventory::default(),
            &rules::Options::default(),
        );
        for key in &self.unchecked {
            warnings.push(format!(
                "runtime config {file}: top-level key {key:?} is passed through unchecked \
                 (checked: {})",
                CHECKED.join(", ")
            ));
        }
        for w in &decision.warnings {
            let message = match w.message.split_once(": ") {
                Some((field, rest)) => format!("{}: {rest}", self.rewrite(field)),
                None => w.message.clone(),
            };
            warnings.push(format!("runtime config {file}: {message}"));
        }
        let mut errors = self.shape.clone();
        errors.extend(decision.errors.into_iter().map(|mut e| {
            e.field = self.rewrite(&e.field);
            e
        }));
        errors
    }

    /// `spec.runtimeConfig.keyValueStores[0].options[1].name` → `key_value_store.default.url`.
    fn rewrite(&self, field: &str) -> String {
        for (from, to) in &self.paths {
            if let Some(rest) = field.strip_prefix(from.as_str())
                && (rest.is_empty() || rest.starts_with(['.', '[']))
            {
                return format!("{to}{rest}");
            }
        }
        field.to_string()
    }
}

/// A TOML key as written in a dotted path: bare when it can be, quoted otherwise.
fn toml_key(key: &str) -> String {
    let bare = !key.is_empty()
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if bare {
        key.to_string()
    } else {
        format!("{key:?}")
    }
}

/// 1-based line and column of a byte offset.
fn position(text: &str, offset: usize) -> (usize, usize) {
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().unwrap_or("").chars().count() + 1;
    (line, column)
}

/// The Secret holding the file as is (upstream's shape: Opaque, base64 `data`).
pub(super) fn secret(app: &SpinApp, file: &RuntimeConfigFile) -> Secret {
    let name = app.metadata.name.as_deref().unwrap_or_default();
    Secret {
        metadata: ObjectMeta {
            name: Some(secret_name(name)),
            namespace: app.metadata.namespace.clone(),
            ..ObjectMeta::default()
        },
        type_: Some("Opaque".to_string()),
        data: Some(BTreeMap::from([(
            RUNTIME_CONFIG_KEY.to_string(),
            ByteString(file.text.clone().into_bytes()),
        )])),
        ..Secret::default()
    }
}
