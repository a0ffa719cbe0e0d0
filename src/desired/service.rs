//! The app's Service (upstream `constructService`).

use k8s_openapi::api::core::v1::{Service, ServicePort, ServiceSpec};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::ResourceExt;

use super::deployment::{HTTP_PORT, HTTP_PORT_NAME};
use super::labels::{child_meta, ready_selector};
use crate::api::SpinApp;

/// ClusterIP Service `<app>`: port 80 → the container's `http-app` port, selecting ready pods.
pub(super) fn service(app: &SpinApp) -> Service {
    Service {
        metadata: child_meta(app, app.name_any(), app.spec.service_annotations.as_ref()),
        spec: Some(ServiceSpec {
            type_: Some("ClusterIP".to_string()),
            ports: Some(vec![ServicePort {
                protocol: Some("TCP".to_string()),
                port: HTTP_PORT,
                target_port: Some(IntOrString::String(HTTP_PORT_NAME.to_string())),
                ..ServicePort::default()
            }]),
            selector: Some(ready_selector(app)),
            ..ServiceSpec::default()
        }),
        status: None,
    }
}
