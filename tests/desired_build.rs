//! Builder details of `desired::build`: every field upstream sets, asserted on the real objects.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Container, PodSpec};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use pretty_assertions::assert_eq;
use spin_operator::api::{SpinApp, SpinAppExecutor};
use spin_operator::desired::{self, Children, DesiredError};
use spin_operator::inventory::Inventory;

const SHIM: &str = r#"
apiVersion: core.spinkube.dev/v1alpha1
kind: SpinAppExecutor
metadata: {name: shim, namespace: ns}
spec:
  createDeployment: true
  deploymentConfig: {runtimeClassName: wasmtime-spin-v2}
"#;

const SPINTAINER: &str = r#"
apiVersion: core.spinkube.dev/v1alpha1
kind: SpinAppExecutor
metadata: {name: spintainer, namespace: ns}
spec:
  createDeployment: true
  deploymentConfig: {spinImage: "ghcr.io/spinframework/spin:v3.4.1"}
"#;

fn app(yaml_spec: &str) -> SpinApp {
    let text = format!(
        "apiVersion: core.spinkube.dev/v1alpha1\nkind: SpinApp\nmetadata:\n  name: myapp\n  namespace: ns\n  uid: 1234-abcd\nspec:\n{}",
        yaml_spec
            .lines()
            .map(|l| format!("  {l}\n"))
            .collect::<String>()
    );
    serde_yaml::from_str(&text).unwrap()
}

fn executor(yaml: &str) -> SpinAppExecutor {
    serde_yaml::from_str(yaml).unwrap()
}

fn build(app: &SpinApp, exec: &str) -> Children {
    desired::build(app, &executor(exec), &Inventory::default()).unwrap()
}

fn deployment(c: &Children) -> &Deployment {
    c.deployment.as_ref().unwrap()
}

fn pod(c: &Children) -> &PodSpec {
    deployment(c).spec.template.spec.as_ref().unwrap()
}

fn container(c: &Children) -> &Container {
    &pod(c).containers[0]
}

fn env(c: &Children) -> Vec<(String, Option<String>)> {
    container(c)
        .env
        .clone()
        .unwrap_or_default()
        .into_iter()
        .map(|e| (e.name, e.value))
        .collect()
}

fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn labels_selector_and_pod_labels() {
    let a = app(
        "image: ghcr.io/x/app:v1\nexecutor: shim\npodLabels: {tier: web, core.spinkube.dev/app.myapp.status: hijack}",
    );
    let c = build(&a, SHIM);
    let d = deployment(&c);
    assert_eq!(d.metadata.name.as_deref(), Some("myapp"));
    assert_eq!(d.metadata.namespace.as_deref(), Some("ns"));
    assert_eq!(
        d.metadata.labels,
        Some(map(&[("core.spinkube.dev/app-name", "myapp")]))
    );
    let selector = map(&[
        ("core.spinkube.dev/app-name", "myapp"),
        ("core.spinkube.dev/app.myapp.status", "ready"),
    ]);
    assert_eq!(d.spec.selector.match_labels, Some(selector.clone()));
    let mut pod_labels = selector;
    pod_labels.insert("tier".into(), "web".into());
    // The operator's ready label wins over a user pod label of the same key.
    assert_eq!(
        d.spec.template.metadata.as_ref().unwrap().labels,
        Some(pod_labels)
    );
}

#[test]
fn annotations_go_to_their_objects() {
    let a = app(
        "image: i\nexecutor: shim\ndeploymentAnnotations: {a: d}\npodAnnotations: {p: q}\nserviceAnnotations: {s: t}",
    );
    let c = build(&a, SHIM);
    assert_eq!(
        deployment(&c).metadata.annotations,
        Some(map(&[("a", "d")]))
    );
    assert_eq!(
        deployment(&c)
            .spec
            .template
            .metadata
            .as_ref()
            .unwrap()
            .annotations,
        Some(map(&[("p", "q")]))
    );
    assert_eq!(c.service.metadata.annotations, Some(map(&[("s", "t")])));
    let plain = build(&app("image: i\nexecutor: shim"), SHIM);
    assert_eq!(deployment(&plain).metadata.annotations, None);
    assert_eq!(plain.service.metadata.annotations, None);
}

#[test]
fn replicas_default_set_and_omitted_when_autoscaling() {
    let c = build(&app("image: i\nexecutor: shim"), SHIM);
    assert_eq!(deployment(&c).spec.replicas, Some(1));
    let c = build(&app("image: i\nexecutor: shim\nreplicas: 3"), SHIM);
    assert_eq!(deployment(&c).spec.replicas, Some(3));
    let c = build(
        &app("image: i\nexecutor: shim\nenableAutoscaling: true"),
        SHIM,
    );
    assert_eq!(deployment(&c).spec.replicas, None);
}

#[test]
fn runtime_class_executor_container() {
    let c = build(&app("image: ghcr.io/x/app:v1\nexecutor: shim"), SHIM);
    let k = container(&c);
    assert_eq!(k.name, "myapp");
    assert_eq!(k.image.as_deref(), Some("ghcr.io/x/app:v1"));
    assert_eq!(k.command, Some(vec!["/".to_string()]));
    assert_eq!(k.args, None);
    assert_eq!(
        pod(&c).runtime_class_name.as_deref(),
        Some("wasmtime-spin-v2")
    );
    let ports = k.ports.as_ref().unwrap();
    assert_eq!(ports.len(), 1);
    assert_eq!(ports[0].name.as_deref(), Some("http-app"));
    assert_eq!(ports[0].container_port, 80);
    assert_eq!(pod(&c).containers.len(), 1);
}

#[test]
fn spin_image_executor_container() {
    let c = build(
        &app("image: ghcr.io/x/app:v1\nexecutor: spintainer\ncomponents: [hello, goodbye]"),
        SPINTAINER,
    );
    let k = container(&c);
    assert_eq!(
        k.image.as_deref(),
        Some("ghcr.io/spinframework/spin:v3.4.1")
    );
    assert_eq!(k.command, None);
    assert_eq!(
        k.args.clone().unwrap(),
        [
            "up",
            "--listen",
            "0.0.0.0:80",
            "-f",
            "ghcr.io/x/app:v1",
            "--runtime-config-file",
            "/runtime-config.toml",
            "--component-id",
            "hello",
            "--component-id",
            "goodbye"
        ]
    );
    assert_eq!(pod(&c).runtime_class_name, None);
}

#[test]
fn env_order_and_names() {
    let exec = r#"
apiVersion: core.spinkube.dev/v1alpha1
kind: SpinAppExecutor
metadata: {name: shim, namespace: ns}
spec:
  createDeployment: true
  deploymentConfig:
    runtimeClassName: rc
    otel:
      exporter_otlp_endpoint: http://c:4318
      exporter_otlp_logs_endpoint: http://c:4318/v1/logs
"#;
    let a = app(r#"image: i
executor: shim
components: [a, b]
invocationLimits: {memory: 64Mi}
variables:
  - {name: greetee, value: SpinKube}
  - name: db_password
    valueFrom: {secretKeyRef: {name: s, key: k}}"#);
    let c = build(&a, exec);
    assert_eq!(
        env(&c),
        vec![
            (
                "SPIN_VARIABLE_GREETEE".to_string(),
                Some("SpinKube".to_string())
            ),
            ("SPIN_VARIABLE_DB_PASSWORD".to_string(), None),
            (
                "SPIN_HTTP_LISTEN_ADDR".to_string(),
                Some("0.0.0.0:80".to_string())
            ),
            (
                "OTEL_EXPORTER_OTLP_ENDPOINT".to_string(),
                Some("http://c:4318".to_string())
            ),
            (
                "OTEL_EXPORTER_OTLP_LOGS_ENDPOINT".to_string(),
                Some("http://c:4318/v1/logs".to_string())
            ),
            (
                "SPIN_MAX_INSTANCE_MEMORY".to_string(),
                Some("67108864".to_string())
            ),
            (
                "SPIN_COMPONENTS_TO_RETAIN".to_string(),
                Some("a,b".to_string())
            ),
        ]
    );
    let from = container(&c).env.as_ref().unwrap()[1]
        .value_from
        .clone()
        .unwrap();
    let sel = from.secret_key_ref.unwrap();
    assert_eq!((sel.name.as_str(), sel.key.as_str()), ("s", "k"));
}

#[test]
fn all_four_otel_endpoints() {
    let exec = r#"
apiVersion: core.spinkube.dev/v1alpha1
kind: SpinAppExecutor
metadata: {name: shim, namespace: ns}
spec:
  createDeployment: true
  deploymentConfig:
    runtimeClassName: rc
    otel:
      exporter_otlp_endpoint: e
      exporter_otlp_traces_endpoint: t
      exporter_otlp_metrics_endpoint: m
      exporter_otlp_logs_endpoint: l
"#;
    let names: Vec<String> = env(&build(&app("image: i\nexecutor: shim"), exec))
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    assert_eq!(
        names,
        [
            "SPIN_HTTP_LISTEN_ADDR",
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
            "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT",
            "OTEL_EXPORTER_OTLP_LOGS_ENDPOINT"
        ]
    );
}

#[test]
fn bad_memory_limit_is_a_spec_error() {
    let a = app("image: i\nexecutor: shim\ninvocationLimits: {memory: lots}");
    let err = desired::build(&a, &executor(SHIM), &Inventory::default()).unwrap_err();
    assert_eq!(err.reason(), "InvalidSpec");
    assert!(err.to_string().contains("invocationLimits.memory"), "{err}");
}

#[test]
fn probes_have_upstream_shape() {
    let a = app(r#"image: i
executor: shim
checks:
  liveness:
    httpGet:
      path: /healthz
      httpHeaders: [{name: X-Probe, value: liveness}]
    initialDelaySeconds: 5
    periodSeconds: 15
  readiness:
    httpGet: {path: /ready}
    timeoutSeconds: 2
    failureThreshold: 5"#);
    let c = build(&a, SHIM);
    let live = container(&c).liveness_probe.clone().unwrap();
    let get = live.http_get.unwrap();
    assert_eq!(get.path.as_deref(), Some("/healthz"));
    assert_eq!(get.port, IntOrString::Int(80));
    let headers = get.http_headers.unwrap();
    assert_eq!(
        (headers[0].name.as_str(), headers[0].value.as_str()),
        ("X-Probe", "liveness")
    );
    assert_eq!(live.initial_delay_seconds, Some(5));
    assert_eq!(live.period_seconds, Some(15));
    assert_eq!(live.timeout_seconds, Some(1));
    assert_eq!(live.success_threshold, Some(1));
    assert_eq!(live.failure_threshold, Some(3));
    let ready = container(&c).readiness_probe.clone().unwrap();
    assert_eq!(ready.http_get.unwrap().http_headers, None);
    assert_eq!(ready.timeout_seconds, Some(2));
    assert_eq!(ready.failure_threshold, Some(5));
    assert_eq!(ready.initial_delay_seconds, Some(10));

    let none = build(&app("image: i\nexecutor: shim"), SHIM);
    assert_eq!(container(&none).liveness_probe, None);
    assert_eq!(container(&none).readiness_probe, None);
}

#[test]
fn probe_without_http_get_is_an_error() {
    let a = app("image: i\nexecutor: shim\nchecks: {liveness: {periodSeconds: 3}}");
    let err = desired::build(&a, &executor(SHIM), &Inventory::default()).unwrap_err();
    assert_eq!(err.reason(), "InvalidSpec");
}

#[test]
fn resources_pull_policy_and_scheduling() {
    let a = app(r#"image: i
executor: shim
imagePullPolicy: IfNotPresent
imagePullSecrets: [{name: regcred}]
serviceAccountName: runner
resources: {limits: {memory: 256Mi}, requests: {cpu: 250m}}
nodeSelector: {kubernetes.io/arch: arm64}
tolerations: [{key: wasm, operator: Exists, effect: NoSchedule}]
affinity:
  nodeAffinity:
    requiredDuringSchedulingIgnoredDuringExecution:
      nodeSelectorTerms: [{matchExpressions: [{key: k, operator: Exists}]}]"#);
    let c = build(&a, SHIM);
    let k = container(&c);
    assert_eq!(k.image_pull_policy.as_deref(), Some("IfNotPresent"));
    let r = k.resources.clone().unwrap();
    assert_eq!(r.limits.unwrap()["memory"].0, "256Mi");
    assert_eq!(r.requests.unwrap()["cpu"].0, "250m");
    let p = pod(&c);
    assert_eq!(p.service_account_name.as_deref(), Some("runner"));
    assert_eq!(p.image_pull_secrets.as_ref().unwrap()[0].name, "regcred");
    assert_eq!(
        p.node_selector,
        Some(map(&[("kubernetes.io/arch", "arm64")]))
    );
    assert_eq!(
        p.tolerations.as_ref().unwrap()[0].key.as_deref(),
        Some("wasm")
    );
    assert!(p.affinity.as_ref().unwrap().node_affinity.is_some());

    let plain = build(&app("image: i\nexecutor: shim"), SHIM);
    let p = pod(&plain);
    assert_eq!(p.service_account_name.as_deref(), Some("default"));
    assert_eq!(p.node_selector, None);
    assert_eq!(p.tolerations, None);
    assert_eq!(p.affinity, None);
    assert_eq!(p.image_pull_secrets, None);
    assert_eq!(container(&plain).image_pull_policy, None);
    // Upstream always sends the resources struct, empty or not.
    assert_eq!(container(&plain).resources, Some(Default::default()));
}

#[test]
fn volumes_order_runtime_config_user_ca() {
    let exec = r#"
apiVersion: core.spinkube.dev/v1alpha1
kind: SpinAppExecutor
metadata: {name: shim, namespace: ns}
spec:
  createDeployment: true
  deploymentConfig: {runtimeClassName: rc, caCertSecret: corp-ca}
"#;
    let a = app(r#"image: i
executor: shim
volumes: [{name: data, emptyDir: {}}]
volumeMounts: [{name: data, mountPath: /mnt/data}]"#);
    let c = build(&a, exec);
    let p = pod(&c);
    let volumes = p.volumes.as_ref().unwrap();
    let names: Vec<&str> = volumes.iter().map(|v| v.name.as_str()).collect();
    assert_eq!(names, ["spin-runtime-config", "data", "spin-ca"]);
    let rc = volumes[0].secret.as_ref().unwrap();
    let rc_name = c
        .runtime_config_secret
        .as_ref()
        .unwrap()
        .metadata
        .name
        .clone();
    assert_eq!(rc.secret_name, rc_name);
    assert_eq!(rc.optional, Some(true));
    let item = &rc.items.as_ref().unwrap()[0];
    assert_eq!(
        (item.key.as_str(), item.path.as_str()),
        ("runtime-config.toml", "runtime-config.toml")
    );
    let ca = volumes[2].secret.as_ref().unwrap();
    assert_eq!(ca.secret_name.as_deref(), Some("corp-ca"));
    assert_eq!(ca.items.as_ref().unwrap()[0].key, "ca-certificates.crt");

    let mounts = container(&c).volume_mounts.clone().unwrap();
    let got: Vec<(&str, &str, Option<&str>, Option<bool>)> = mounts
        .iter()
        .map(|m| {
            (
                m.name.as_str(),
                m.mount_path.as_str(),
                m.sub_path.as_deref(),
                m.read_only,
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            (
                "spin-runtime-config",
                "/runtime-config.toml",
                Some("runtime-config.toml"),
                Some(true)
            ),
            ("data", "/mnt/data", None, None),
            (
                "spin-ca",
                "/etc/ssl/certs/ca-certificates.crt",
                Some("ca-certificates.crt"),
                Some(true)
            ),
        ]
    );
    // caCertSecret alone is mounted, not created.
    assert!(c.ca_secret.is_none());
}

#[test]
fn default_ca_secret_when_installing() {
    let exec = r#"
apiVersion: core.spinkube.dev/v1alpha1
kind: SpinAppExecutor
metadata: {name: shim, namespace: ns}
spec:
  createDeployment: true
  deploymentConfig: {runtimeClassName: rc, installDefaultCACerts: true}
"#;
    let c = build(&app("image: i\nexecutor: shim"), exec);
    let ca = c.ca_secret.as_ref().unwrap().secret();
    assert_eq!(ca.metadata.name.as_deref(), Some("spin-ca"));
    assert_eq!(ca.metadata.namespace.as_deref(), Some("ns"));
    assert_eq!(ca.metadata.owner_references, None, "shared: no owner");
    let bundle = &ca.data.as_ref().unwrap()["ca-certificates.crt"].0;
    assert!(bundle.starts_with(b"-----BEGIN CERTIFICATE-----\n"));
    let volumes = pod(&c).volumes.clone().unwrap();
    assert_eq!(
        volumes
            .last()
            .unwrap()
            .secret
            .as_ref()
            .unwrap()
            .secret_name
            .as_deref(),
        Some("spin-ca")
    );
}

#[test]
fn service_shape() {
    let c = build(&app("image: i\nexecutor: shim"), SHIM);
    let s = &c.service;
    assert_eq!(s.metadata.name.as_deref(), Some("myapp"));
    assert_eq!(s.metadata.namespace.as_deref(), Some("ns"));
    assert_eq!(
        s.metadata.labels,
        Some(map(&[("core.spinkube.dev/app-name", "myapp")]))
    );
    let spec = s.spec.as_ref().unwrap();
    assert_eq!(spec.type_.as_deref(), Some("ClusterIP"));
    assert_eq!(
        spec.selector,
        Some(map(&[("core.spinkube.dev/app.myapp.status", "ready")]))
    );
    let port = &spec.ports.as_ref().unwrap()[0];
    assert_eq!(port.port, 80);
    assert_eq!(port.protocol.as_deref(), Some("TCP"));
    assert_eq!(
        port.target_port,
        Some(IntOrString::String("http-app".into()))
    );
}

#[test]
fn owner_references_on_owned_children() {
    let c = build(&app("image: i\nexecutor: shim"), SHIM);
    let owners = [
        deployment(&c).metadata.owner_references.clone(),
        c.service.metadata.owner_references.clone(),
        c.runtime_config_secret
            .as_ref()
            .unwrap()
            .metadata
            .owner_references
            .clone(),
    ];
    for owner in owners {
        let owner = owner.unwrap();
        assert_eq!(owner.len(), 1);
        let o = &owner[0];
        assert_eq!(o.api_version, "core.spinkube.dev/v1alpha1");
        assert_eq!(o.kind, "SpinApp");
        assert_eq!(o.name, "myapp");
        assert_eq!(o.uid, "1234-abcd");
        assert_eq!(o.controller, Some(true));
        assert_eq!(o.block_owner_deletion, Some(true));
    }
    // Offline (no uid): no owner reference rather than an invalid one.
    let mut offline = app("image: i\nexecutor: shim");
    offline.metadata.uid = None;
    let c = build(&offline, SHIM);
    assert_eq!(c.service.metadata.owner_references, None);
}

#[test]
fn external_executor_builds_only_the_service() {
    let exec = r#"
apiVersion: core.spinkube.dev/v1alpha1
kind: SpinAppExecutor
metadata: {name: ext, namespace: ns}
spec: {createDeployment: false}
"#;
    // Even a missing runtime-config Secret is no error: nothing mounts it.
    let a = app(r#"image: i
executor: ext
runtimeConfig:
  keyValueStores:
    - name: default
      type: redis
      options: [{name: url, valueFrom: {secretKeyRef: {name: absent, key: url}}}]"#);
    let c = build(&a, exec);
    assert!(c.deployment.is_none());
    assert!(c.runtime_config_secret.is_none());
    assert!(c.ca_secret.is_none());
    assert_eq!(c.service.metadata.name.as_deref(), Some("myapp"));
}

#[test]
fn executor_errors() {
    let no_config = r#"
apiVersion: core.spinkube.dev/v1alpha1
kind: SpinAppExecutor
metadata: {name: e, namespace: ns}
spec: {createDeployment: true}
"#;
    let neither = r#"
apiVersion: core.spinkube.dev/v1alpha1
kind: SpinAppExecutor
metadata: {name: e, namespace: ns}
spec: {createDeployment: true, deploymentConfig: {installDefaultCACerts: true}}
"#;
    let a = app("image: i\nexecutor: e");
    for exec in [no_config, neither] {
        let err = desired::build(&a, &executor(exec), &Inventory::default()).unwrap_err();
        assert!(matches!(err, DesiredError::InvalidExecutor { .. }), "{err}");
        assert_eq!(err.reason(), "InvalidExecutor");
    }
}

#[test]
fn load_from_secret_mounts_the_users_secret() {
    let a = app("image: i\nexecutor: shim\nruntimeConfig: {loadFromSecret: mine}");
    let mut inv = Inventory::default();
    let missing = desired::build(&a, &executor(SHIM), &inv).unwrap_err();
    assert_eq!(
        missing,
        DesiredError::MissingSecret {
            name: "mine".into()
        }
    );

    inv.add_secret(
        serde_yaml::from_str(
            "apiVersion: v1\nkind: Secret\nmetadata: {name: mine, namespace: ns}\nstringData: {other: x}",
        )
        .unwrap(),
    );
    let no_key = desired::build(&a, &executor(SHIM), &inv).unwrap_err();
    assert_eq!(no_key.reason(), "MissingKey");

    inv.add_secret(
        serde_yaml::from_str(
            "apiVersion: v1\nkind: Secret\nmetadata: {name: mine, namespace: ns}\nstringData: {runtime-config.toml: \"[key_value_store.default]\\ntype = 'spin'\\n\"}",
        )
        .unwrap(),
    );
    let c = desired::build(&a, &executor(SHIM), &inv).unwrap();
    assert!(c.runtime_config_secret.is_none());
    let volumes = pod(&c).volumes.clone().unwrap();
    assert_eq!(volumes[0].name, "spin-runtime-config");
    assert_eq!(
        volumes[0].secret.as_ref().unwrap().secret_name.as_deref(),
        Some("mine")
    );
}

#[test]
fn referenced_objects_lists_runtime_config_references() {
    let a = app(r#"image: i
executor: shim
variables:
  - name: v
    valueFrom: {secretKeyRef: {name: var-secret, key: k}}
runtimeConfig:
  sqliteDatabases:
    - name: default
      type: libsql
      options:
        - {name: url, valueFrom: {configMapKeyRef: {name: cm, key: url}}}
        - {name: token, valueFrom: {secretKeyRef: {name: creds, key: t}}}
  llmCompute:
    type: remote_http
    options: [{name: auth_token, valueFrom: {secretKeyRef: {name: llm, key: t}}}]"#);
    let r = desired::referenced_objects(&a);
    assert_eq!(r.secrets.into_iter().collect::<Vec<_>>(), ["creds", "llm"]);
    assert_eq!(r.config_maps.into_iter().collect::<Vec<_>>(), ["cm"]);

    let own = app("image: i\nexecutor: shim\nruntimeConfig: {loadFromSecret: mine}");
    let r = desired::referenced_objects(&own);
    assert_eq!(r.secrets.into_iter().collect::<Vec<_>>(), ["mine"]);
    assert!(r.config_maps.is_empty());
}
