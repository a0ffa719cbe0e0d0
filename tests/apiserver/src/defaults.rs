//! The defaulting a real apiserver applies, for the built-in types whose defaults a controller
//! will see come back (so "compare before write" logic is tested against realistic objects).

use base64::Engine as _;
use serde_json::{Map, Value, json};

use crate::resource::ResourceType;

fn set_default(obj: &mut Map<String, Value>, key: &str, value: Value) {
    if obj.get(key).is_none_or(Value::is_null) {
        obj.insert(key.to_string(), value);
    }
}

fn object_at<'a>(v: &'a mut Value, key: &str) -> Option<&'a mut Map<String, Value>> {
    v.get_mut(key).and_then(Value::as_object_mut)
}

pub(crate) fn apply(rt: &ResourceType, obj: &mut Value, current: Option<&Value>) {
    match (rt.group, rt.kind) {
        ("apps", "Deployment") => deployment(obj),
        ("", "Service") => service(obj, current),
        ("", "Secret") => secret(obj),
        ("", "Namespace") => namespace(obj),
        _ => {}
    }
}

fn deployment(obj: &mut Value) {
    let Some(spec) = object_at(obj, "spec") else {
        return;
    };
    set_default(spec, "replicas", json!(1));
    set_default(spec, "revisionHistoryLimit", json!(10));
    set_default(spec, "progressDeadlineSeconds", json!(600));
    set_default(spec, "strategy", json!({"type": "RollingUpdate"}));
    if let Some(strategy) = spec.get_mut("strategy").and_then(Value::as_object_mut) {
        set_default(strategy, "type", json!("RollingUpdate"));
        if strategy.get("type").and_then(Value::as_str) == Some("RollingUpdate") {
            set_default(strategy, "rollingUpdate", json!({}));
            if let Some(ru) = strategy
                .get_mut("rollingUpdate")
                .and_then(Value::as_object_mut)
            {
                set_default(ru, "maxUnavailable", json!("25%"));
                set_default(ru, "maxSurge", json!("25%"));
            }
        }
    }
    if let Some(pod) = spec
        .get_mut("template")
        .and_then(|t| t.get_mut("spec"))
        .and_then(Value::as_object_mut)
    {
        pod_spec(pod);
    }
}

fn pod_spec(pod: &mut Map<String, Value>) {
    set_default(pod, "restartPolicy", json!("Always"));
    set_default(pod, "terminationGracePeriodSeconds", json!(30));
    set_default(pod, "dnsPolicy", json!("ClusterFirst"));
    set_default(pod, "securityContext", json!({}));
    set_default(pod, "schedulerName", json!("default-scheduler"));
    if let Some(sa) = pod.get("serviceAccountName").cloned() {
        set_default(pod, "serviceAccount", sa);
    }
    for list in ["containers", "initContainers"] {
        for c in pod
            .get_mut(list)
            .and_then(Value::as_array_mut)
            .into_iter()
            .flatten()
        {
            if let Some(c) = c.as_object_mut() {
                container(c);
            }
        }
    }
    for v in pod
        .get_mut("volumes")
        .and_then(Value::as_array_mut)
        .into_iter()
        .flatten()
    {
        for source in ["secret", "configMap"] {
            if let Some(s) = v.get_mut(source).and_then(Value::as_object_mut) {
                set_default(s, "defaultMode", json!(420));
            }
        }
    }
}

fn container(c: &mut Map<String, Value>) {
    set_default(c, "terminationMessagePath", json!("/dev/termination-log"));
    set_default(c, "terminationMessagePolicy", json!("File"));
    let image = c.get("image").and_then(Value::as_str).unwrap_or("");
    let last = image.rsplit('/').next().unwrap_or("");
    let latest = !image.contains('@') && (!last.contains(':') || last.ends_with(":latest"));
    set_default(
        c,
        "imagePullPolicy",
        json!(if latest { "Always" } else { "IfNotPresent" }),
    );
    for p in c
        .get_mut("ports")
        .and_then(Value::as_array_mut)
        .into_iter()
        .flatten()
    {
        if let Some(p) = p.as_object_mut() {
            set_default(p, "protocol", json!("TCP"));
        }
    }
    for probe in ["livenessProbe", "readinessProbe", "startupProbe"] {
        if let Some(p) = c.get_mut(probe).and_then(Value::as_object_mut) {
            set_default(p, "timeoutSeconds", json!(1));
            set_default(p, "periodSeconds", json!(10));
            set_default(p, "successThreshold", json!(1));
            set_default(p, "failureThreshold", json!(3));
            if let Some(h) = p.get_mut("httpGet").and_then(Value::as_object_mut) {
                set_default(h, "scheme", json!("HTTP"));
            }
        }
    }
}

fn service(obj: &mut Value, current: Option<&Value>) {
    let name = obj
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let ns = obj
        .pointer("/metadata/namespace")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    if let Some(m) = obj.as_object_mut() {
        set_default(m, "spec", json!({}));
        set_default(m, "status", json!({"loadBalancer": {}}));
    }
    let Some(spec) = object_at(obj, "spec") else {
        return;
    };
    set_default(spec, "type", json!("ClusterIP"));
    set_default(spec, "sessionAffinity", json!("None"));
    if spec.get("type").and_then(Value::as_str) != Some("ExternalName") {
        // Allocated once and immutable: keep the current address across updates.
        let allocated = current
            .and_then(|c| c.pointer("/spec/clusterIP"))
            .cloned()
            .unwrap_or_else(|| {
                let h = format!("{ns}/{name}")
                    .bytes()
                    .fold(0u32, |h, b| h.wrapping_mul(31).wrapping_add(u32::from(b)));
                json!(format!("10.96.{}.{}", (h >> 8) & 0xff, (h & 0xff).max(1)))
            });
        set_default(spec, "clusterIP", allocated);
        let ip = spec.get("clusterIP").cloned().unwrap_or(Value::Null);
        set_default(spec, "clusterIPs", json!([ip]));
        set_default(spec, "ipFamilies", json!(["IPv4"]));
        set_default(spec, "ipFamilyPolicy", json!("SingleStack"));
        set_default(spec, "internalTrafficPolicy", json!("Cluster"));
    }
    for p in spec
        .get_mut("ports")
        .and_then(Value::as_array_mut)
        .into_iter()
        .flatten()
    {
        if let Some(p) = p.as_object_mut() {
            set_default(p, "protocol", json!("TCP"));
            if let Some(port) = p.get("port").cloned() {
                set_default(p, "targetPort", port);
            }
        }
    }
}

fn secret(obj: &mut Value) {
    let Some(m) = obj.as_object_mut() else { return };
    set_default(m, "type", json!("Opaque"));
    // stringData is write-only: merged into data (base64) and never stored.
    if let Some(Value::Object(string_data)) = m.remove("stringData") {
        set_default(m, "data", json!({}));
        if let Some(data) = m.get_mut("data").and_then(Value::as_object_mut) {
            for (k, v) in string_data {
                let text = v.as_str().unwrap_or_default();
                let encoded = base64::engine::general_purpose::STANDARD.encode(text);
                data.insert(k, json!(encoded));
            }
        }
    }
}

fn namespace(obj: &mut Value) {
    let name = obj
        .pointer("/metadata/name")
        .cloned()
        .unwrap_or(Value::Null);
    if let Some(meta) = object_at(obj, "metadata") {
        set_default(meta, "labels", json!({}));
        if let Some(labels) = meta.get_mut("labels").and_then(Value::as_object_mut) {
            labels.insert("kubernetes.io/metadata.name".into(), name);
        }
    }
    if let Some(m) = obj.as_object_mut() {
        set_default(m, "status", json!({"phase": "Active"}));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resource::lookup;

    #[test]
    fn deployment_defaults_match_apiserver() {
        let mut d = json!({"metadata": {"name": "a"}, "spec": {"template": {"spec": {"containers": [
            {"name": "a", "image": "ghcr.io/x/y:v1", "ports": [{"containerPort": 80}],
             "readinessProbe": {"httpGet": {"path": "/", "port": 80}}}]}}}});
        apply(lookup("apps", "v1", "deployments").unwrap(), &mut d, None);
        assert_eq!(d["spec"]["replicas"], 1);
        assert_eq!(d["spec"]["strategy"]["rollingUpdate"]["maxSurge"], "25%");
        let c = &d["spec"]["template"]["spec"]["containers"][0];
        assert_eq!(c["imagePullPolicy"], "IfNotPresent");
        assert_eq!(c["ports"][0]["protocol"], "TCP");
        assert_eq!(c["readinessProbe"]["httpGet"]["scheme"], "HTTP");
        assert_eq!(d["spec"]["template"]["spec"]["dnsPolicy"], "ClusterFirst");
    }

    #[test]
    fn secret_string_data_becomes_data() {
        let mut s = json!({"metadata": {"name": "s"}, "stringData": {"k": "v"}});
        apply(lookup("", "v1", "secrets").unwrap(), &mut s, None);
        assert_eq!(s["data"]["k"], "dg==");
        assert_eq!(s["type"], "Opaque");
        assert!(s.get("stringData").is_none());
    }

    #[test]
    fn service_keeps_allocated_cluster_ip() {
        let rt = lookup("", "v1", "services").unwrap();
        let mut s =
            json!({"metadata": {"name": "s", "namespace": "n"}, "spec": {"ports": [{"port": 80}]}});
        apply(rt, &mut s, None);
        let ip = s["spec"]["clusterIP"].clone();
        assert!(ip.as_str().unwrap().starts_with("10.96."));
        assert_eq!(s["spec"]["ports"][0]["targetPort"], 80);
        let mut updated = json!({"metadata": {"name": "other", "namespace": "n"}, "spec": {}});
        apply(rt, &mut updated, Some(&s));
        assert_eq!(updated["spec"]["clusterIP"], ip);
    }
}
