//! runtime-config.toml rendering: content (parsed back with `toml`), byte layout (upstream's),
//! determinism, hash naming, reference errors and that secret values never reach an error.

use pretty_assertions::assert_eq;
use spin_operator::api::{SpinApp, SpinAppExecutor};
use spin_operator::desired::{self, DesiredError, render_runtime_config, runtime_config_hash};
use spin_operator::inventory::Inventory;
use toml::Table;

const SECRET_VALUE: &str = "s3cr3t-p4ssw0rd";

fn app(runtime_config: &str) -> SpinApp {
    let text = format!(
        "apiVersion: core.spinkube.dev/v1alpha1\nkind: SpinApp\nmetadata: {{name: app, namespace: ns}}\nspec:\n  image: i\n  executor: shim\n  runtimeConfig:\n{}",
        runtime_config
            .lines()
            .map(|l| format!("    {l}\n"))
            .collect::<String>()
    );
    serde_yaml::from_str(&text).unwrap()
}

fn shim() -> SpinAppExecutor {
    serde_yaml::from_str(
        "apiVersion: core.spinkube.dev/v1alpha1\nkind: SpinAppExecutor\nmetadata: {name: shim, namespace: ns}\nspec: {createDeployment: true, deploymentConfig: {runtimeClassName: rc}}",
    )
    .unwrap()
}

fn inventory() -> Inventory {
    let mut inv = Inventory::default();
    // One Secret with base64 `data` (as read from a cluster), one with `stringData` (manifests).
    inv.add_secret(
        serde_yaml::from_str(&format!(
            "apiVersion: v1\nkind: Secret\nmetadata: {{name: creds, namespace: ns}}\ndata: {{password: {}}}",
            "czNjcjN0LXA0c3N3MHJk" // base64 of SECRET_VALUE
        ))
        .unwrap(),
    );
    inv.add_secret(
        serde_yaml::from_str(&format!(
            "apiVersion: v1\nkind: Secret\nmetadata: {{name: plain, namespace: ns}}\nstringData: {{token: {SECRET_VALUE}}}"
        ))
        .unwrap(),
    );
    inv.add_config_map(
        serde_yaml::from_str(
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: endpoints, namespace: ns}\ndata: {url: 'https://llm.example.com'}",
        )
        .unwrap(),
    );
    inv
}

const FULL: &str = r#"keyValueStores:
  - name: default
    type: redis
    options:
      - {name: url, value: "redis://localhost:9000"}
  - name: cache
    type: spin
    options:
      - {name: path, value: /data/cache.db}
sqliteDatabases:
  - name: default
    type: libsql
    options:
      - {name: url, value: "https://db.example.com"}
      - {name: token, valueFrom: {secretKeyRef: {name: creds, key: password}}}
llmCompute:
  type: remote_http
  options:
    - {name: url, valueFrom: {configMapKeyRef: {name: endpoints, key: url}}}
    - {name: auth_token, valueFrom: {secretKeyRef: {name: plain, key: token}}}"#;

#[test]
fn tables_and_resolved_values_parse_back() {
    let text = render_runtime_config(&app(FULL), &inventory())
        .unwrap()
        .unwrap();
    let doc: Table = text.parse().unwrap();

    let providers = doc["config_provider"].as_array().unwrap();
    assert_eq!(providers.len(), 1);
    assert_eq!(providers[0]["type"].as_str(), Some("env"));
    assert_eq!(providers[0]["prefix"].as_str(), Some("SPIN_VARIABLE_"));

    let kv = doc["key_value_store"].as_table().unwrap();
    assert_eq!(kv["default"]["type"].as_str(), Some("redis"));
    assert_eq!(
        kv["default"]["url"].as_str(),
        Some("redis://localhost:9000")
    );
    assert_eq!(kv["cache"]["type"].as_str(), Some("spin"));
    assert_eq!(kv["cache"]["path"].as_str(), Some("/data/cache.db"));

    let db = doc["sqlite_database"]["default"].as_table().unwrap();
    assert_eq!(db["type"].as_str(), Some("libsql"));
    assert_eq!(db["token"].as_str(), Some(SECRET_VALUE), "from base64 data");

    let llm = doc["llm_compute"].as_table().unwrap();
    assert_eq!(llm["type"].as_str(), Some("remote_http"));
    assert_eq!(llm["url"].as_str(), Some("https://llm.example.com"));
    assert_eq!(
        llm["auth_token"].as_str(),
        Some(SECRET_VALUE),
        "from stringData"
    );
}

#[test]
fn layout_matches_upstream_go_toml_output() {
    // Upstream's integration test expects exactly this text for one redis store.
    let a = app(
        "keyValueStores:\n  - name: default\n    type: redis\n    options: [{name: url, value: \"redis://localhost:9000\"}]",
    );
    let text = render_runtime_config(&a, &Inventory::default())
        .unwrap()
        .unwrap();
    assert_eq!(
        text,
        "[[config_provider]]\ntype = 'env'\nprefix = 'SPIN_VARIABLE_'\n\n[key_value_store]\n[key_value_store.default]\ntype = 'redis'\nurl = 'redis://localhost:9000'\n"
    );
}

#[test]
fn full_layout_sorted_and_deterministic() {
    let text = render_runtime_config(&app(FULL), &inventory())
        .unwrap()
        .unwrap();
    let expected = format!(
        "[[config_provider]]
type = 'env'
prefix = 'SPIN_VARIABLE_'

[key_value_store]
[key_value_store.cache]
path = '/data/cache.db'
type = 'spin'

[key_value_store.default]
type = 'redis'
url = 'redis://localhost:9000'

[sqlite_database]
[sqlite_database.default]
token = '{SECRET_VALUE}'
type = 'libsql'
url = 'https://db.example.com'

[llm_compute]
auth_token = '{SECRET_VALUE}'
type = 'remote_http'
url = 'https://llm.example.com'
"
    );
    assert_eq!(text, expected);
    for _ in 0..5 {
        assert_eq!(
            render_runtime_config(&app(FULL), &inventory())
                .unwrap()
                .unwrap(),
            text
        );
    }
}

#[test]
fn no_runtime_config_still_has_the_env_provider() {
    let a: SpinApp = serde_yaml::from_str(
        "apiVersion: core.spinkube.dev/v1alpha1\nkind: SpinApp\nmetadata: {name: app, namespace: ns}\nspec: {image: i, executor: shim}",
    )
    .unwrap();
    let text = render_runtime_config(&a, &Inventory::default())
        .unwrap()
        .unwrap();
    assert_eq!(
        text,
        "[[config_provider]]\ntype = 'env'\nprefix = 'SPIN_VARIABLE_'\n"
    );
    let c = desired::build(&a, &shim(), &Inventory::default()).unwrap();
    let secret = c.runtime_config_secret.unwrap();
    assert_eq!(
        secret.metadata.name.unwrap(),
        format!("app-{}", runtime_config_hash(text.as_bytes()))
    );
    assert_eq!(
        secret.data.unwrap()["runtime-config.toml"].0,
        text.as_bytes()
    );
}

#[test]
fn awkward_strings_are_escaped_and_round_trip() {
    let a = app(r#"keyValueStores:
  - name: "my store"
    type: redis
    options:
      - {name: url, value: "it's \"quoted\"\tand\\slashed"}
      - {name: "odd key", value: "line1\nline2"}"#);
    let text = render_runtime_config(&a, &Inventory::default())
        .unwrap()
        .unwrap();
    let doc: Table = text.parse().unwrap();
    let store = doc["key_value_store"]["my store"].as_table().unwrap();
    assert_eq!(store["url"].as_str(), Some("it's \"quoted\"\tand\\slashed"));
    assert_eq!(store["odd key"].as_str(), Some("line1\nline2"));
    assert!(text.contains("[key_value_store.'my store']"), "{text}");
}

#[test]
fn hash_names_change_with_content_only() {
    let inv = inventory();
    let first = desired::build(&app(FULL), &shim(), &inv).unwrap();
    let again = desired::build(&app(FULL), &shim(), &inv).unwrap();
    let name = first
        .runtime_config_secret
        .as_ref()
        .unwrap()
        .metadata
        .name
        .clone()
        .unwrap();
    assert_eq!(
        Some(name.clone()),
        again.runtime_config_secret.unwrap().metadata.name
    );
    assert!(name.starts_with("app-"));
    let hash = &name["app-".len()..];
    assert!(!hash.is_empty() && hash.len() <= 8);
    assert!(
        hash.chars()
            .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
    );

    // A changed referenced value changes the name, and the Deployment follows it.
    let mut changed = inv.clone();
    changed.add_secret(
        serde_yaml::from_str(
            "apiVersion: v1\nkind: Secret\nmetadata: {name: plain, namespace: ns}\nstringData: {token: rotated}",
        )
        .unwrap(),
    );
    let after = desired::build(&app(FULL), &shim(), &changed).unwrap();
    let new_name = after.runtime_config_secret.unwrap().metadata.name.unwrap();
    assert_ne!(new_name, name);
    let mounted = after
        .deployment
        .unwrap()
        .spec
        .template
        .spec
        .unwrap()
        .volumes
        .unwrap()[0]
        .secret
        .clone()
        .unwrap()
        .secret_name;
    assert_eq!(mounted, Some(new_name));
}

#[test]
fn stable_hash_values() {
    // Pinned: a change here renames every generated Secret and rolls every app.
    assert_eq!(
        runtime_config_hash(b"[[config_provider]]\ntype = 'env'\nprefix = 'SPIN_VARIABLE_'\n"),
        format!(
            "{:x}",
            adler32_reference(b"[[config_provider]]\ntype = 'env'\nprefix = 'SPIN_VARIABLE_'\n")
        )
    );
    assert_eq!(runtime_config_hash(b"Wikipedia"), "11e60398");
}

/// Textbook Adler-32, independent of the implementation under test.
fn adler32_reference(data: &[u8]) -> u32 {
    let (mut a, mut b) = (1u32, 0u32);
    for &x in data {
        a = (a + u32::from(x)) % 65521;
        b = (b + a) % 65521;
    }
    (b << 16) | a
}

fn assert_no_secret(err: &DesiredError) {
    let text = format!("{err} {err:?}");
    assert!(!text.contains(SECRET_VALUE), "secret leaked: {text}");
}

#[test]
fn missing_secret_configmap_and_keys_are_typed_errors() {
    let cases = [
        (
            "llmCompute: {type: t, options: [{name: a, valueFrom: {secretKeyRef: {name: nope, key: k}}}]}",
            DesiredError::MissingSecret {
                name: "nope".into(),
            },
        ),
        (
            "llmCompute: {type: t, options: [{name: a, valueFrom: {configMapKeyRef: {name: nope, key: k}}}]}",
            DesiredError::MissingConfigMap {
                name: "nope".into(),
            },
        ),
        (
            "llmCompute: {type: t, options: [{name: a, valueFrom: {secretKeyRef: {name: creds, key: nokey}}}]}",
            DesiredError::MissingKey {
                kind: "Secret",
                name: "creds".into(),
                key: "nokey".into(),
            },
        ),
        (
            "llmCompute: {type: t, options: [{name: a, valueFrom: {configMapKeyRef: {name: endpoints, key: nokey}}}]}",
            DesiredError::MissingKey {
                kind: "ConfigMap",
                name: "endpoints".into(),
                key: "nokey".into(),
            },
        ),
    ];
    for (rc, expected) in cases {
        let err = desired::build(&app(rc), &shim(), &inventory()).unwrap_err();
        assert_eq!(err, expected);
        assert_no_secret(&err);
    }
    assert_eq!(
        DesiredError::MissingSecret { name: "x".into() }.reason(),
        "MissingSecret"
    );
    assert_eq!(
        DesiredError::MissingConfigMap { name: "x".into() }.reason(),
        "MissingConfigMap"
    );
}

#[test]
fn optional_references_resolve_to_empty() {
    let rc = "llmCompute: {type: t, options: [{name: a, valueFrom: {secretKeyRef: {name: nope, key: k, optional: true}}}]}";
    let text = render_runtime_config(&app(rc), &inventory())
        .unwrap()
        .unwrap();
    let doc: Table = text.parse().unwrap();
    assert_eq!(doc["llm_compute"]["a"].as_str(), Some(""));
}

#[test]
fn duplicates_are_invalid_without_values() {
    let rc = format!(
        "keyValueStores:\n  - {{name: d, type: redis, options: [{{name: url, value: {SECRET_VALUE}}}]}}\n  - {{name: d, type: spin}}"
    );
    let err = desired::build(&app(&rc), &shim(), &inventory()).unwrap_err();
    assert_eq!(err.reason(), "InvalidRuntimeConfig");
    assert!(err.to_string().contains("duplicate"), "{err}");
    assert_no_secret(&err);
}

#[test]
fn non_utf8_secret_is_invalid_without_values() {
    let mut inv = inventory();
    inv.add_secret(
        serde_yaml::from_str(
            "apiVersion: v1\nkind: Secret\nmetadata: {name: bin, namespace: ns}\ndata: {k: '/w=='}",
        )
        .unwrap(),
    );
    let rc = "llmCompute: {type: t, options: [{name: a, valueFrom: {secretKeyRef: {name: bin, key: k}}}]}";
    let err = desired::build(&app(rc), &shim(), &inv).unwrap_err();
    assert_eq!(err.reason(), "InvalidRuntimeConfig");
    assert!(!format!("{err:?}").contains("\\xff"));
}

#[test]
fn literal_value_wins_over_reference_and_last_option_wins() {
    let rc = "llmCompute:\n  type: t\n  options:\n    - {name: a, value: literal, valueFrom: {secretKeyRef: {name: nope, key: k}}}\n    - {name: b, value: first}\n    - {name: b, value: second}";
    let text = render_runtime_config(&app(rc), &inventory())
        .unwrap()
        .unwrap();
    let doc: Table = text.parse().unwrap();
    assert_eq!(doc["llm_compute"]["a"].as_str(), Some("literal"));
    assert_eq!(doc["llm_compute"]["b"].as_str(), Some("second"));
}

mod roundtrip {
    use proptest::prelude::*;
    use spin_operator::api::{KeyValueStoreConfig, RuntimeConfig, RuntimeConfigOption, SpinApp};
    use spin_operator::desired::render_runtime_config;
    use spin_operator::inventory::Inventory;
    use toml::Table;

    proptest! {
        // Any store name, option name and value (quotes, backslashes, control characters,
        // non-ASCII) must come back unchanged from a real TOML parser.
        #[test]
        fn any_names_and_values_round_trip(
            store in "\\PC{0,12}|[a-z_-]{1,8}",
            key in "\\PC{1,12}|[\\x00-\\x7f]{1,8}",
            value in "\\PC{0,24}|[\\x00-\\x7f]{0,16}",
        ) {
            prop_assume!(key != "type");
            let mut app = SpinApp::default();
            app.metadata.name = Some("app".into());
            app.spec.runtime_config = Some(RuntimeConfig {
                key_value_stores: Some(vec![KeyValueStoreConfig {
                    name: store.clone(),
                    type_: "redis".into(),
                    options: Some(vec![RuntimeConfigOption {
                        name: key.clone(),
                        value: Some(value.clone()),
                        value_from: None,
                    }]),
                }]),
                ..RuntimeConfig::default()
            });
            let text = render_runtime_config(&app, &Inventory::default()).unwrap().unwrap();
            let doc: Table = text.parse().unwrap();
            let table = doc["key_value_store"][store.as_str()].as_table().unwrap();
            prop_assert_eq!(table["type"].as_str(), Some("redis"));
            prop_assert_eq!(table[key.as_str()].as_str(), Some(value.as_str()));
        }
    }
}
