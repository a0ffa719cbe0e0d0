use super::*;

fn denials(spec: &Spec) -> Vec<Denial> {
    match scaffold(spec) {
        Err(ScaffoldError::Invalid(d)) => d,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

fn error_lines(spec: &Spec) -> Vec<String> {
    denials(spec)
        .iter()
        .flat_map(|d| d.errors.iter().map(ToString::to_string))
        .collect()
}

fn docs(yaml: &str) -> Vec<serde_yaml::Value> {
    serde_yaml::Deserializer::from_str(yaml)
        .map(|d| serde::Deserialize::deserialize(d).unwrap())
        .collect()
}

fn with_rc(text: &str) -> Spec {
    Spec {
        runtime_config: Some(RuntimeConfigFile {
            file: "rc.toml".into(),
            text: text.into(),
        }),
        ..Spec::new("ghcr.io/acme/hello:v1")
    }
}

#[test]
fn names_the_app_after_the_image() {
    assert_eq!(app_name("ghcr.io/acme/hello:v1"), "hello");
    assert_eq!(app_name("localhost:5000/a/b/web-app@sha256:abc"), "web-app");
    assert_eq!(app_name("hello"), "hello");
    assert_eq!(app_name("registry:5000/hello:1.0@sha256:abc"), "hello");
}

#[test]
fn plain_app_is_a_single_valid_spinapp() {
    let out = scaffold(&Spec::new("ghcr.io/acme/hello:v1")).unwrap();
    let docs = docs(&out.yaml);
    assert_eq!(docs.len(), 1);
    assert_eq!(docs[0]["kind"], "SpinApp");
    assert_eq!(docs[0]["metadata"]["name"], "hello");
    assert_eq!(docs[0]["spec"]["replicas"], 2);
    assert_eq!(docs[0]["spec"]["executor"], DEFAULT_EXECUTOR);
    assert!(docs[0]["spec"].get("enableAutoscaling").is_none());
    assert!(out.warnings.is_empty(), "{:?}", out.warnings);
}

#[test]
fn latest_tag_is_a_warning_not_a_refusal() {
    let out = scaffold(&Spec::new("ghcr.io/acme/hello")).unwrap();
    assert!(out.warnings.iter().any(|w| w.contains("\"latest\"")));
}

#[test]
fn zero_replicas_get_the_webhooks_error() {
    let spec = Spec {
        replicas: 0,
        ..Spec::new("ghcr.io/acme/hello:v1")
    };
    let d = denials(&spec);
    assert_eq!(d.len(), 1);
    assert_eq!(d[0].object, "SpinApp.core.spinkube.dev \"hello\"");
    assert_eq!(
        d[0].errors[0].to_string(),
        "spec.replicas: Invalid value: 0: must be greater than or equal to 1"
    );
    assert_eq!(d[0].errors[0].rule, "SA-REPLICAS-MIN");
}

#[test]
fn every_error_is_listed_at_once() {
    let spec = Spec {
        replicas: -1,
        cpu_limit: Some("100m".into()),
        cpu_request: Some("200m".into()),
        variables: vec![("Bad".into(), "x".into())],
        namespace: Some("Not_A_Namespace".into()),
        ..Spec::new("ghcr.io/acme/hello:v1")
    };
    let lines = error_lines(&spec);
    assert_eq!(lines.len(), 4, "{lines:#?}");
    assert!(lines[0].starts_with("spec.replicas: Invalid value: -1"));
    assert!(lines[1].starts_with("spec.variables[0].name: Invalid value: \"Bad\""));
    assert_eq!(
        lines[2],
        "spec.resources.requests[cpu]: Invalid value: \"200m\": must be less than or equal to cpu limit of 100m"
    );
    assert!(lines[3].starts_with("metadata.namespace: Invalid value: \"Not_A_Namespace\""));
}

#[test]
fn autoscaled_app_has_no_replicas_and_targets_the_deployment() {
    for (kind, api, min, max) in [
        (
            Autoscaler::Hpa,
            "autoscaling/v2",
            "minReplicas",
            "maxReplicas",
        ),
        (
            Autoscaler::Keda,
            "keda.sh/v1alpha1",
            "minReplicaCount",
            "maxReplicaCount",
        ),
    ] {
        let spec = Spec {
            autoscaler: Some(kind),
            cpu_limit: Some("100m".into()),
            memory_request: Some("64Mi".into()),
            replicas: 1,
            max_replicas: 5,
            ..Spec::new("ghcr.io/acme/hello:v1")
        };
        let docs = docs(&scaffold(&spec).unwrap().yaml);
        assert_eq!(docs.len(), 2);
        assert_eq!(docs[0]["spec"]["enableAutoscaling"], true);
        assert!(docs[0]["spec"].get("replicas").is_none());
        assert_eq!(docs[1]["apiVersion"], api);
        assert_eq!(docs[1]["metadata"]["name"], "hello-autoscaler");
        assert_eq!(docs[1]["spec"]["scaleTargetRef"]["kind"], "Deployment");
        assert_eq!(docs[1]["spec"]["scaleTargetRef"]["name"], "hello");
        assert_eq!(docs[1]["spec"][min], 1);
        assert_eq!(docs[1]["spec"][max], 5);
    }
}

#[test]
fn autoscaler_limits_are_checked() {
    let spec = Spec {
        autoscaler: Some(Autoscaler::Hpa),
        replicas: 0,
        max_replicas: 0,
        target_memory_utilization: 101,
        ..Spec::new("ghcr.io/acme/hello:v1")
    };
    let d = denials(&spec);
    assert_eq!(d.len(), 2);
    let app: Vec<String> = d[0].errors.iter().map(ToString::to_string).collect();
    assert!(app[0].starts_with("spec.resources.limits[cpu]: Required value:"));
    assert!(app[1].starts_with("spec.resources.limits[memory]: Required value:"));
    assert_eq!(
        d[1].to_string(),
        "HorizontalPodAutoscaler.autoscaling \"hello-autoscaler\" is invalid:\n  \
         * spec.minReplicas: Invalid value: 0: must be greater than or equal to 1\n  \
         * spec.maxReplicas: Invalid value: 0: must be greater than or equal to `minReplicas` (0)\n  \
         * spec.metrics[1].resource.target.averageUtilization: Invalid value: 101: must be between 1 and 100 (percent of the request)"
    );
}

#[test]
fn runtime_config_becomes_a_secret_verbatim() {
    let text = "[key_value_store.default]\ntype = \"redis\"\nurl = \"redis://secret@host\"\n";
    let out = scaffold(&with_rc(text)).unwrap();
    let docs = docs(&out.yaml);
    assert_eq!(
        docs[0]["spec"]["runtimeConfig"]["loadFromSecret"],
        "hello-runtime-config"
    );
    assert_eq!(docs[1]["kind"], "Secret");
    assert_eq!(docs[1]["metadata"]["name"], "hello-runtime-config");
    let data = docs[1]["data"]["runtime-config.toml"].as_str().unwrap();
    let secret: k8s_openapi::ByteString =
        serde_json::from_value(serde_json::Value::from(data)).unwrap();
    assert_eq!(secret.0, text.as_bytes());
}

#[test]
fn runtime_config_keys_are_judged_in_the_files_paths() {
    let text = "[key_value_store.default]\ntype = \"redis\"\nurll = \"hunter2\"\n\
                [sqlite_database.\"my db\"]\npath = \"/x\"\n\
                [llm_compute]\ntype = \"remote_http\"\nurl = \"u\"\ntoken = \"hunter2\"\n";
    let d = denials(&with_rc(text));
    assert_eq!(d.len(), 1);
    assert_eq!(d[0].object, "runtime config \"rc.toml\"");
    let lines: Vec<String> = d[0].errors.iter().map(ToString::to_string).collect();
    assert_eq!(
        lines,
        [
            "sqlite_database.\"my db\".type: Required value",
            "key_value_store.default.urll: Invalid value: \"urll\": not an option of \
             key_value_store type \"redis\"; did you mean \"url\"? (known: url)",
            "llm_compute.token: Invalid value: \"token\": not an option of llm_compute type \
             \"remote_http\"; did you mean \"auth_token\"? (known: url, auth_token)",
        ]
    );
    assert!(!d[0].to_string().contains("hunter2"));
}

#[test]
fn runtime_config_shape_and_syntax_errors_keep_values_out() {
    let lines = error_lines(&with_rc("key_value_store = \"hunter2\"\n"));
    assert_eq!(lines, ["key_value_store: Invalid value: must be a table"]);
    let lines = error_lines(&with_rc("[llm_compute]\ntype = 3\n"));
    assert_eq!(lines, ["llm_compute.type: Invalid value: must be a string"]);
    let err = scaffold(&with_rc(
        "[llm_compute]\ntype = \"spin\"\nurl = \"hunter2\n",
    ))
    .unwrap_err();
    let text = err.to_string();
    assert!(
        matches!(err, ScaffoldError::RuntimeConfigToml { line: 3, .. }),
        "{text}"
    );
    assert!(
        text.starts_with("runtime config rc.toml: not valid TOML (line 3,"),
        "{text}"
    );
    assert!(!text.contains("hunter2"), "{text}");
}

#[test]
fn unknown_runtime_config_tables_and_keys_warn() {
    let text =
        "[outbound]\nx = 1\n[key_value_store.cache]\ntype = \"spin\"\npath = \"/d\"\nsize = 3\n";
    let out = scaffold(&with_rc(text)).unwrap();
    assert_eq!(out.warnings.len(), 2, "{:?}", out.warnings);
    assert!(out.warnings[0].contains("top-level key \"outbound\" is passed through unchecked"));
    assert!(
        out.warnings[1].starts_with(
            "runtime config rc.toml: key_value_store.cache.size: \"size\" is not an option"
        ),
        "{}",
        out.warnings[1]
    );
}
