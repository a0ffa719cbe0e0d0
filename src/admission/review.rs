//! AdmissionReview v1 in and out: envelope parsing, the route's kind check, and turning a rules
//! [`Decision`] into an `AdmissionResponse`. Pure (no I/O) so the handler stays thin.

use k8s_openapi::api::authentication::v1::UserInfo;
use kube::core::admission::{
    AdmissionResponse, AdmissionReview, META_API_VERSION_V1, META_KIND, Operation,
};
use kube::core::response::{StatusCause, StatusDetails};
use kube::core::{DynamicObject, GroupVersionKind, GroupVersionResource, Status};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::routes::{Route, WebhookKind};
use crate::api::{GROUP, VERSION};
use crate::rules::{self, Decision};

/// The request fields the webhooks read. kube's `AdmissionRequest<T>` needs a typed object;
/// the rules take raw JSON so that an object that does not decode still gets field errors.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RawRequest {
    pub uid: String,
    pub kind: GroupVersionKind,
    pub resource: GroupVersionResource,
    #[serde(default)]
    pub sub_resource: Option<String>,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub namespace: Option<String>,
    pub operation: Operation,
    #[serde(default)]
    pub user_info: UserInfo,
    #[serde(default)]
    pub object: Option<Value>,
    #[serde(default)]
    pub old_object: Option<Value>,
    #[serde(default)]
    pub dry_run: Option<bool>,
}

/// What the handler reads of a request, however it was decoded: a [`RawRequest`], or a
/// [`RequestView`](super::view::RequestView) on the fast path.
pub trait Reviewed {
    fn uid(&self) -> &str;
    /// `kind` as (group, version, kind).
    fn kind(&self) -> (&str, &str, &str);
    /// `resource` as (group, resource).
    fn resource(&self) -> (&str, &str);
    fn sub_resource(&self) -> Option<&str>;
    fn operation(&self) -> &Operation;
    fn has_object(&self) -> bool;
    fn has_old_object(&self) -> bool;
    /// `namespace` as sent.
    fn request_namespace(&self) -> Option<&str>;
    /// `name` as sent.
    fn request_name(&self) -> &str;
    /// `metadata.<field>` (`name`, `generateName`, `namespace`) of the object, or else of the
    /// old object, when it is a string.
    fn object_meta(&self, field: &str) -> Option<&str>;
    /// The requesting user's name, for the audit log line.
    fn user(&self) -> &str;
    fn dry_run(&self) -> bool;

    /// Namespace of the request, falling back to the object's own metadata.
    fn namespace(&self) -> Option<&str> {
        self.request_namespace()
            .filter(|ns| !ns.is_empty())
            .or_else(|| self.object_meta("namespace"))
    }

    /// Name of the object; on CREATE with `generateName` the apiserver sends an empty name.
    fn name(&self) -> &str {
        let name = self.request_name();
        if !name.is_empty() {
            return name;
        }
        self.object_meta("name")
            .or_else(|| self.object_meta("generateName"))
            .unwrap_or("")
    }
}

impl RawRequest {
    /// Namespace of the request, falling back to the object's own metadata.
    pub fn namespace(&self) -> Option<&str> {
        Reviewed::namespace(self)
    }

    /// Name of the object; on CREATE with `generateName` the apiserver sends an empty name.
    pub fn name(&self) -> &str {
        Reviewed::name(self)
    }

    /// The requesting user's name, for the audit log line.
    pub fn user(&self) -> &str {
        Reviewed::user(self)
    }
}

/// The [`Reviewed`] accessors that read a request's own fields: the same for every request
/// shape with the envelope's field names (`RawRequest`, the view path's `RequestView`).
macro_rules! request_field_accessors {
    () => {
        fn uid(&self) -> &str {
            &self.uid
        }
        fn kind(&self) -> (&str, &str, &str) {
            (&self.kind.group, &self.kind.version, &self.kind.kind)
        }
        fn resource(&self) -> (&str, &str) {
            (&self.resource.group, &self.resource.resource)
        }
        fn sub_resource(&self) -> Option<&str> {
            self.sub_resource.as_deref()
        }
        fn operation(&self) -> &Operation {
            &self.operation
        }
        fn has_object(&self) -> bool {
            self.object.is_some()
        }
        fn has_old_object(&self) -> bool {
            self.old_object.is_some()
        }
        fn request_namespace(&self) -> Option<&str> {
            self.namespace.as_deref()
        }
        fn request_name(&self) -> &str {
            &self.name
        }
        fn user(&self) -> &str {
            self.user_info.username.as_deref().unwrap_or("")
        }
        fn dry_run(&self) -> bool {
            self.dry_run.unwrap_or(false)
        }
    };
}
pub(crate) use request_field_accessors;

impl Reviewed for RawRequest {
    request_field_accessors!();
    fn object_meta(&self, field: &str) -> Option<&str> {
        self.object
            .as_ref()
            .or(self.old_object.as_ref())
            .and_then(|o| o.get("metadata"))
            .and_then(|m| m.get(field))
            .and_then(Value::as_str)
    }
}

/// Input that cannot be judged. With a uid it is answered as an AdmissionReview denial,
/// without one the apiserver could not match an answer, so it gets a plain HTTP 400.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    pub uid: Option<String>,
    pub reason: String,
}

/// Longest rejection reason: they quote envelope fields and serde's errors (which quote a
/// mistyped string whole), and a hostile body must not be echoed back at length.
const MAX_REASON_CHARS: usize = 512;

impl Rejection {
    fn new(uid: Option<&str>, reason: impl Into<String>) -> Self {
        let mut reason = reason.into();
        if let Some((cut, _)) = reason.char_indices().nth(MAX_REASON_CHARS) {
            reason.truncate(cut);
            reason.push_str("...");
        }
        Self {
            uid: uid.map(str::to_string),
            reason,
        }
    }
}

/// The envelope decoded in one pass straight from the bytes (the common, well-formed case).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Envelope {
    #[serde(default)]
    api_version: Option<String>,
    #[serde(default)]
    kind: Option<String>,
    #[serde(default)]
    request: Option<RawRequest>,
}

/// Parse an AdmissionReview v1 body. Recovers the uid whenever the body is JSON with one.
pub fn parse(body: &[u8]) -> Result<RawRequest, Rejection> {
    // Fast path: one typed pass over the bytes. Building a `Value` of the whole review first
    // and then deserializing the request out of it (which deep-copies the objects) was half of
    // a review's CPU. Anything the fast path does not accept goes through `parse_slow`, which
    // decides with the same checks and words the rejection.
    if let Ok(Envelope {
        api_version: Some(api_version),
        kind: Some(kind),
        request: Some(request),
    }) = serde_json::from_slice::<Envelope>(body)
        && api_version == META_API_VERSION_V1
        && kind == META_KIND
        && !request.uid.is_empty()
    {
        return Ok(request);
    }
    parse_slow(body)
}

/// The reference parse: through a `Value`, so that the uid is recovered for the answer whenever
/// the body is JSON with one, whatever else is wrong with it.
fn parse_slow(body: &[u8]) -> Result<RawRequest, Rejection> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| Rejection::new(None, format!("request body is not JSON: {e}")))?;
    let uid = value
        .get("request")
        .and_then(|r| r.get("uid"))
        .and_then(Value::as_str)
        .filter(|u| !u.is_empty());
    let api_version = value.get("apiVersion").and_then(Value::as_str);
    let kind = value.get("kind").and_then(Value::as_str);
    if api_version != Some(META_API_VERSION_V1) || kind != Some(META_KIND) {
        return Err(Rejection::new(
            uid,
            format!(
                "expected an {META_KIND} of apiVersion {META_API_VERSION_V1}, got kind {:?} apiVersion {:?}",
                kind.unwrap_or(""),
                api_version.unwrap_or("")
            ),
        ));
    }
    let Some(request) = value.get("request").filter(|r| !r.is_null()) else {
        return Err(Rejection::new(uid, "AdmissionReview has no request"));
    };
    let Some(uid) = uid else {
        return Err(Rejection::new(None, "AdmissionReview request has no uid"));
    };
    // Only the envelope can fail here: objects stay raw JSON, so no object content leaks
    // into the error message.
    RawRequest::deserialize(request)
        .map_err(|e| Rejection::new(Some(uid), format!("malformed AdmissionReview request: {e}")))
}

/// Check the request is for the route's resource (a misregistered webhook must not judge
/// objects of another kind with the wrong rules), and carries the objects the operation implies.
pub fn check_route<R: Reviewed + ?Sized>(route: &Route, req: &R) -> Result<(), Rejection> {
    let uid = Some(req.uid());
    let want_kind = route.resource.kind();
    let want_resource = route.resource.plural();
    let (group, version, kind) = req.kind();
    if group != GROUP || version != VERSION || kind != want_kind {
        return Err(Rejection::new(
            uid,
            format!(
                "webhook {} handles {GROUP}/{VERSION} {want_kind}, got {group}/{version} {kind}",
                route.name
            ),
        ));
    }
    let (group, resource) = req.resource();
    if group != GROUP || resource != want_resource {
        return Err(Rejection::new(
            uid,
            format!(
                "webhook {} handles resource {want_resource}.{GROUP}, got {resource}.{group}",
                route.name
            ),
        ));
    }
    if let Some(sub) = req.sub_resource().filter(|s| !s.is_empty()) {
        return Err(Rejection::new(
            uid,
            format!("webhook {} does not handle subresource {sub:?}", route.name),
        ));
    }
    if req.namespace().is_none() {
        return Err(Rejection::new(uid, "request has no namespace"));
    }
    let needs = match req.operation() {
        Operation::Create | Operation::Update => req.has_object(),
        Operation::Delete => req.has_old_object(),
        Operation::Connect => true,
    };
    if !needs {
        return Err(Rejection::new(
            uid,
            format!("{:?} request carries no object", req.operation()),
        ));
    }
    Ok(())
}

/// Map kube's operation onto the rules' own enum.
pub fn rules_operation(op: &Operation) -> rules::Operation {
    match op {
        Operation::Create => rules::Operation::Create,
        Operation::Update => rules::Operation::Update,
        Operation::Delete => rules::Operation::Delete,
        Operation::Connect => rules::Operation::Connect,
    }
}

/// An allowed response for `uid`, nothing else set.
pub fn allowed(uid: &str) -> AdmissionResponse {
    // `AdmissionResponse` is non-exhaustive and its `From` wants a typed request; start from
    // `invalid` (which sets the v1 TypeMeta) and make it an allowance.
    let mut response = AdmissionResponse::invalid("");
    response.uid = uid.to_string();
    response.allowed = true;
    response.result = Status::success().with_code(200);
    response
}

/// The answer to a [`Rejection`] that has a uid: a denial with reason `BadRequest`.
pub fn rejected(uid: &str, reason: &str) -> AdmissionResponse {
    let mut response = allowed(uid);
    response.allowed = false;
    response.result = Status::failure(reason, "BadRequest").with_code(400);
    response
}

/// Turn a rules decision into the response: a Kubernetes `Invalid` status listing every field
/// error as a cause, warnings for kubectl, and the JSON patch for mutating webhooks.
pub fn respond<R: Reviewed + ?Sized>(
    route: &Route,
    req: &R,
    decision: &Decision,
) -> Result<AdmissionResponse, kube::core::admission::SerializePatchError> {
    let mut response = allowed(req.uid());
    if !decision.warnings.is_empty() {
        response.warnings = Some(
            decision
                .warnings
                .iter()
                .map(|w| w.message.clone())
                .collect(),
        );
    }
    if !decision.allowed() {
        let kind = route.resource.kind();
        let name = req.name();
        let causes = decision
            .errors
            .iter()
            .map(|e| StatusCause {
                reason: e.cause_reason().to_string(),
                // Kubernetes puts the field in its own member and the rest in the message.
                message: e.body(),
                field: e.field.clone(),
            })
            .collect();
        response.allowed = false;
        response.result = Status::failure(&decision.message(kind, name), "Invalid")
            .with_code(422)
            .with_details(StatusDetails {
                name: name.to_string(),
                group: GROUP.to_string(),
                kind: kind.to_string(),
                uid: String::new(),
                causes,
                retry_after_seconds: 0,
            });
        return Ok(response);
    }
    if route.kind == WebhookKind::Mutating && !decision.patch.0.is_empty() {
        response = response.with_patch(decision.patch.clone())?;
    }
    Ok(response)
}

/// Wrap a response in its AdmissionReview envelope.
pub fn review(response: AdmissionResponse) -> AdmissionReview<DynamicObject> {
    response.into_review()
}

/// Serialize the answer for the apiserver. kube's `AdmissionResponse.patch` is a `Vec<u8>` that
/// serde writes as an array of numbers (kube-rs/kube#1781); the API's JSON form of `[]byte` is
/// base64, so the patch is written as a base64 string in its place.
pub fn encode(mut response: AdmissionResponse) -> Result<Vec<u8>, serde_json::Error> {
    use base64::Engine;
    // Written straight to bytes: going through a `Value` to swap the patch cost a copy of the
    // whole response and a sort of every key.
    let patch = response
        .patch
        .take()
        .map(|p| base64::engine::general_purpose::STANDARD.encode(p));
    let wire = WireReview {
        // The TypeMeta `allowed` set (`AdmissionResponse::into_review` copies the same).
        api_version: &response.types.api_version,
        kind: &response.types.kind,
        response: WireResponse {
            response: &response,
            patch,
        },
    };
    serde_json::to_vec(&wire)
}

/// [`encode`]`(`[`respond`]`(route, req, decision))` for an allowed decision, written directly
/// around fixed parts serialized once (no `AdmissionResponse` and `Status` to build, no
/// flattening, no key escaped per request); `None` when the decision denies or something does
/// not serialize (take the general path then).
pub fn encode_allowed(route: &Route, uid: &str, decision: &Decision) -> Option<Vec<u8>> {
    use base64::Engine;
    if !decision.allowed() {
        return None;
    }
    let template = ALLOWED.as_ref()?;
    let patch = match route.kind == WebhookKind::Mutating && !decision.patch.0.is_empty() {
        true => Some(
            base64::engine::general_purpose::STANDARD
                .encode(serde_json::to_vec(&decision.patch).ok()?),
        ),
        false => None,
    };
    // Sized once (growing a Vec from empty reallocated it three times).
    let mut out = Vec::with_capacity(
        template.head.len()
            + template.status.len()
            + uid.len()
            + 64
            + patch.as_ref().map_or(0, String::len)
            + decision
                .warnings
                .iter()
                .map(|w| w.message.len() + 8)
                .sum::<usize>(),
    );
    // Field order as kube's `AdmissionResponse` serializes (uid, allowed, status, patchType,
    // warnings), then the base64 patch `encode` appends.
    out.extend_from_slice(&template.head);
    serde_json::to_writer(&mut out, uid).ok()?;
    out.extend_from_slice(&template.status);
    if patch.is_some() {
        out.extend_from_slice(br#","patchType":"JSONPatch""#);
    }
    if !decision.warnings.is_empty() {
        out.extend_from_slice(br#","warnings":["#);
        for (i, warning) in decision.warnings.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            serde_json::to_writer(&mut out, warning.message.as_str()).ok()?;
        }
        out.push(b']');
    }
    if let Some(patch) = patch {
        // Base64 needs no escaping.
        out.extend_from_slice(br#","patch":""#);
        out.extend_from_slice(patch.as_bytes());
        out.push(b'"');
    }
    out.extend_from_slice(b"}}");
    Some(out)
}

/// The fixed parts of every allowance: up to the uid's value, and from after it to the end of
/// the status.
struct AllowedTemplate {
    head: Vec<u8>,
    status: Vec<u8>,
}

static ALLOWED: std::sync::LazyLock<Option<AllowedTemplate>> = std::sync::LazyLock::new(|| {
    let mut head = br#"{"apiVersion":"#.to_vec();
    serde_json::to_writer(&mut head, META_API_VERSION_V1).ok()?;
    head.extend_from_slice(br#","kind":"#);
    serde_json::to_writer(&mut head, META_KIND).ok()?;
    head.extend_from_slice(br#","response":{"uid":"#);
    let mut status = br#","allowed":true,"status":"#.to_vec();
    serde_json::to_writer(&mut status, &Status::success().with_code(200)).ok()?;
    Some(AllowedTemplate { head, status })
});

/// `AdmissionReview` as sent back: the v1 TypeMeta and the response, nothing else.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct WireReview<'a> {
    api_version: &'a str,
    kind: &'a str,
    response: WireResponse<'a>,
}

/// kube's response with its patch (taken out) written as base64.
#[derive(Serialize)]
struct WireResponse<'a> {
    #[serde(flatten)]
    response: &'a AdmissionResponse,
    #[serde(skip_serializing_if = "Option::is_none")]
    patch: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::admission::routes::route_for_path;

    fn body(request: Value) -> Vec<u8> {
        serde_json::to_vec(&serde_json::json!({
            "apiVersion": "admission.k8s.io/v1",
            "kind": "AdmissionReview",
            "request": request,
        }))
        .unwrap()
    }

    fn spinapp_request() -> Value {
        serde_json::json!({
            "uid": "u-1",
            "kind": {"group": "core.spinkube.dev", "version": "v1alpha1", "kind": "SpinApp"},
            "resource": {"group": "core.spinkube.dev", "version": "v1alpha1", "resource": "spinapps"},
            "namespace": "apps",
            "operation": "CREATE",
            "userInfo": {"username": "alice"},
            "object": {"metadata": {"generateName": "web-"}, "spec": {}},
        })
    }

    #[test]
    fn parses_and_recovers_name_and_user() {
        let req = parse(&body(spinapp_request())).unwrap();
        assert_eq!(req.uid, "u-1");
        assert_eq!(req.name(), "web-");
        assert_eq!(req.namespace(), Some("apps"));
        assert_eq!(req.user(), "alice");
        let route = route_for_path("/validate-core-spinkube-dev-v1alpha1-spinapp").unwrap();
        check_route(route, &req).unwrap();
    }

    #[test]
    fn not_json_has_no_uid() {
        let err = parse(b"{nope").unwrap_err();
        assert_eq!(err.uid, None);
        assert!(err.reason.contains("not JSON"), "{}", err.reason);
    }

    #[test]
    fn wrong_envelope_keeps_uid() {
        let mut v: Value = serde_json::from_slice(&body(spinapp_request())).unwrap();
        v["apiVersion"] = "admission.k8s.io/v1beta1".into();
        let err = parse(&serde_json::to_vec(&v).unwrap()).unwrap_err();
        assert_eq!(err.uid.as_deref(), Some("u-1"));
        assert!(err.reason.contains("v1beta1"));
    }

    #[test]
    fn a_huge_envelope_field_is_not_echoed_whole() {
        let huge = "X".repeat(1 << 20);
        for field in ["operation", "subResource"] {
            let mut r = spinapp_request();
            r[field] = huge.clone().into();
            let reason = match parse(&body(r)) {
                Err(rejection) => rejection.reason,
                Ok(req) => {
                    let route =
                        route_for_path("/validate-core-spinkube-dev-v1alpha1-spinapp").unwrap();
                    check_route(route, &req).unwrap_err().reason
                }
            };
            assert!(
                reason.len() <= MAX_REASON_CHARS + 3,
                "{field}: {} chars",
                reason.len()
            );
            assert!(reason.ends_with("..."), "{field}: {reason}");
        }
    }

    #[test]
    fn missing_request_and_bad_operation() {
        let err =
            parse(br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"}"#).unwrap_err();
        assert_eq!(err, Rejection::new(None, "AdmissionReview has no request"));
        let mut r = spinapp_request();
        r["operation"] = "EXPLODE".into();
        let err = parse(&body(r)).unwrap_err();
        assert_eq!(err.uid.as_deref(), Some("u-1"));
        assert!(err.reason.contains("malformed"), "{}", err.reason);
    }

    #[test]
    fn wrong_kind_for_route_is_rejected() {
        let req = parse(&body(spinapp_request())).unwrap();
        let route = route_for_path("/validate-core-spinkube-dev-v1alpha1-spinappexecutor").unwrap();
        let err = check_route(route, &req).unwrap_err();
        assert_eq!(err.uid.as_deref(), Some("u-1"));
        assert!(err.reason.contains("SpinAppExecutor"), "{}", err.reason);
    }

    #[test]
    fn subresource_and_missing_object_are_rejected() {
        let route = route_for_path("/validate-core-spinkube-dev-v1alpha1-spinapp").unwrap();
        let mut r = spinapp_request();
        r["subResource"] = "status".into();
        assert!(check_route(route, &parse(&body(r)).unwrap()).is_err());
        let mut r = spinapp_request();
        r["object"] = Value::Null;
        let err = check_route(route, &parse(&body(r)).unwrap()).unwrap_err();
        assert!(err.reason.contains("no object"), "{}", err.reason);
    }

    #[test]
    fn rejection_is_a_bad_request_denial_with_uid() {
        let r = serde_json::to_value(review(rejected("u-9", "nope"))).unwrap();
        assert_eq!(r["response"]["uid"], "u-9");
        assert_eq!(r["response"]["allowed"], false);
        assert_eq!(r["response"]["status"]["code"], 400);
        assert_eq!(r["kind"], "AdmissionReview");
        assert_eq!(r["apiVersion"], "admission.k8s.io/v1");
    }

    fn decision_with(errors: Vec<rules::FieldError>, warnings: Vec<rules::Warning>) -> Decision {
        Decision {
            errors,
            warnings,
            patch: serde_json::from_value(serde_json::json!([
                {"op": "add", "path": "/spec/replicas", "value": 1}
            ]))
            .unwrap(),
            rules_fired: vec!["SA-X"],
        }
    }

    #[test]
    fn denial_is_an_invalid_status_with_one_cause_per_field_error() {
        let req = parse(&body(spinapp_request())).unwrap();
        let route = route_for_path("/validate-core-spinkube-dev-v1alpha1-spinapp").unwrap();
        let errors = vec![
            rules::FieldError {
                rule: "SA-A",
                field: "spec.replicas".into(),
                error_type: rules::ErrorType::Invalid,
                bad_value: Some((-1).into()),
                detail: "must be greater than or equal to 1".into(),
            },
            rules::FieldError {
                rule: "SA-B",
                field: "spec.executor".into(),
                error_type: rules::ErrorType::Required,
                bad_value: None,
                detail: "no executor".into(),
            },
        ];
        let warnings = vec![rules::Warning {
            rule: "SA-W",
            message: "image uses :latest".into(),
        }];
        let decision = decision_with(errors, warnings);
        let r = serde_json::to_value(review(respond(route, &req, &decision).unwrap())).unwrap();
        let resp = &r["response"];
        assert_eq!(resp["uid"], "u-1");
        assert_eq!(resp["allowed"], false);
        assert_eq!(resp["status"]["code"], 422);
        assert_eq!(resp["status"]["reason"], "Invalid");
        assert_eq!(
            resp["status"]["message"],
            decision.message("SpinApp", "web-")
        );
        assert_eq!(resp["status"]["details"]["kind"], "SpinApp");
        let causes = resp["status"]["details"]["causes"].as_array().unwrap();
        assert_eq!(causes.len(), 2);
        assert_eq!(causes[0]["field"], "spec.replicas");
        assert_eq!(causes[0]["reason"], "FieldValueInvalid");
        assert_eq!(
            causes[0]["message"],
            "Invalid value: -1: must be greater than or equal to 1"
        );
        assert_eq!(causes[1]["reason"], "FieldValueRequired");
        assert_eq!(resp["warnings"][0], "image uses :latest");
        assert!(resp.get("patch").is_none(), "a denial carries no patch");
    }

    #[test]
    fn patch_is_base64_on_the_wire() {
        use base64::Engine;
        let req = parse(&body(spinapp_request())).unwrap();
        let decision = decision_with(vec![], vec![]);
        let mutate = route_for_path("/mutate-core-spinkube-dev-v1alpha1-spinapp").unwrap();
        let bytes = encode(respond(mutate, &req, &decision).unwrap()).unwrap();
        let v: Value = serde_json::from_slice(&bytes).unwrap();
        let raw = base64::engine::general_purpose::STANDARD
            .decode(v["response"]["patch"].as_str().unwrap())
            .unwrap();
        let patch: json_patch::Patch = serde_json::from_slice(&raw).unwrap();
        assert_eq!(patch, decision.patch);
    }

    /// The fast parse must accept exactly what the reference parse accepts, with the same
    /// request, and leave every rejection to it.
    #[test]
    fn fast_parse_agrees_with_the_reference_parse() {
        let good = spinapp_request();
        let mut bodies: Vec<Vec<u8>> = vec![
            body(good.clone()),
            b"{nope".to_vec(),
            b"[]".to_vec(),
            br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"}"#.to_vec(),
            br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":null}"#
                .to_vec(),
            br#"{"apiVersion":1,"kind":"AdmissionReview","request":{"uid":"u"}}"#.to_vec(),
        ];
        for (field, value) in [
            ("uid", Value::from("")),
            ("uid", Value::from(7)),
            ("operation", Value::from("EXPLODE")),
            ("object", Value::Null),
            ("object", Value::from("not an object")),
            ("namespace", Value::Null),
            ("dryRun", Value::from("yes")),
            ("userInfo", Value::from(3)),
        ] {
            let mut r = good.clone();
            r[field] = value;
            bodies.push(body(r));
        }
        let mut v1beta1: Value = serde_json::from_slice(&body(good.clone())).unwrap();
        v1beta1["apiVersion"] = "admission.k8s.io/v1beta1".into();
        bodies.push(serde_json::to_vec(&v1beta1).unwrap());
        // Duplicate keys: serde_json's `Value` keeps the last one, a derived struct refuses.
        let text = String::from_utf8(body(good)).unwrap();
        bodies.push(
            text.replacen(r#""uid":"u-1""#, r#""uid":"u-0","uid":"u-1""#, 1)
                .into(),
        );
        bodies.push(
            text.replacen(
                r#""kind":"AdmissionReview""#,
                r#""kind":"Nope","kind":"AdmissionReview""#,
                1,
            )
            .into(),
        );
        for b in &bodies {
            let fast = format!("{:?}", parse(b));
            let slow = format!("{:?}", parse_slow(b));
            assert_eq!(fast, slow, "{}", String::from_utf8_lossy(b));
        }
        assert!(parse(&bodies[0]).is_ok());
        assert!(parse(bodies.last().unwrap()).is_ok(), "last duplicate wins");
    }

    /// The direct encoding says the same as the former one (serialize to a `Value`, swap the
    /// patch for its base64 string, write the `Value`).
    #[test]
    fn encode_matches_the_value_round_trip() {
        use base64::Engine;
        fn reference(response: AdmissionResponse) -> Value {
            let patch = response.patch.clone();
            let mut value = serde_json::to_value(review(response)).unwrap();
            if let (Some(patch), Some(slot)) = (patch, value.pointer_mut("/response/patch")) {
                *slot = Value::String(base64::engine::general_purpose::STANDARD.encode(patch));
            }
            value
        }
        let req = parse(&body(spinapp_request())).unwrap();
        let mutate = route_for_path("/mutate-core-spinkube-dev-v1alpha1-spinapp").unwrap();
        let validate = route_for_path("/validate-core-spinkube-dev-v1alpha1-spinapp").unwrap();
        let denial = decision_with(
            vec![rules::FieldError {
                rule: "SA-A",
                field: "spec.replicas".into(),
                error_type: rules::ErrorType::Invalid,
                bad_value: Some((-1).into()),
                detail: "must be greater than or equal to 1".into(),
            }],
            vec![rules::Warning {
                rule: "SA-W",
                message: "image uses :latest".into(),
            }],
        );
        let responses = [
            allowed("u-1"),
            rejected("u-2", "nope \"quoted\""),
            respond(mutate, &req, &decision_with(vec![], vec![])).unwrap(),
            respond(validate, &req, &denial).unwrap(),
            respond(mutate, &req, &denial).unwrap(),
        ];
        for response in responses {
            let expected = reference(response.clone());
            let got: Value = serde_json::from_slice(&encode(response).unwrap()).unwrap();
            assert_eq!(got, expected);
        }
    }

    /// The direct encoding of an allowance is byte for byte the general one.
    #[test]
    fn encode_allowed_matches_encode() {
        let warn = |m: &str| rules::Warning {
            rule: "SA-W",
            message: m.into(),
        };
        let one_op = decision_with(vec![], vec![]).patch;
        let two_ops: json_patch::Patch = serde_json::from_value(serde_json::json!([
            {"op": "add", "path": "/spec/executor", "value": "containerd-shim-spin"},
            {"op": "add", "path": "/spec", "value": {"replicas": 1, "executor": "x\"y"}}
        ]))
        .unwrap();
        let decisions = [
            Decision::default(),
            Decision {
                warnings: vec![warn("image uses \"latest\""), warn("zwei ü € \u{1}")],
                ..Decision::default()
            },
            Decision {
                patch: one_op,
                ..Decision::default()
            },
            Decision {
                patch: two_ops,
                warnings: vec![warn("w")],
                ..Decision::default()
            },
        ];
        for path in [
            "/mutate-core-spinkube-dev-v1alpha1-spinapp",
            "/validate-core-spinkube-dev-v1alpha1-spinapp",
        ] {
            let route = route_for_path(path).unwrap();
            for uid in ["u-1", "u\"2\\ é"] {
                let mut r = spinapp_request();
                r["uid"] = uid.into();
                let req = parse(&body(r)).unwrap();
                for decision in &decisions {
                    let general = encode(respond(route, &req, decision).unwrap()).unwrap();
                    let direct = encode_allowed(route, uid, decision).unwrap();
                    assert_eq!(
                        String::from_utf8(direct).unwrap(),
                        String::from_utf8(general).unwrap()
                    );
                }
            }
            let denial = decision_with(
                vec![rules::FieldError {
                    rule: "SA-A",
                    field: "spec.replicas".into(),
                    error_type: rules::ErrorType::Invalid,
                    bad_value: None,
                    detail: String::new(),
                }],
                vec![],
            );
            assert!(encode_allowed(route, "u", &denial).is_none());
        }
    }

    #[test]
    fn patch_only_from_mutating_routes() {
        let req = parse(&body(spinapp_request())).unwrap();
        let decision = decision_with(vec![], vec![]);
        let mutate = route_for_path("/mutate-core-spinkube-dev-v1alpha1-spinapp").unwrap();
        let r = serde_json::to_value(review(respond(mutate, &req, &decision).unwrap())).unwrap();
        assert_eq!(r["response"]["allowed"], true);
        assert_eq!(r["response"]["patchType"], "JSONPatch");
        let validate = route_for_path("/validate-core-spinkube-dev-v1alpha1-spinapp").unwrap();
        let r = serde_json::to_value(review(respond(validate, &req, &decision).unwrap())).unwrap();
        assert!(r["response"].get("patch").is_none());
    }
}
