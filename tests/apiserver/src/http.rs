//! HTTP front end: URL routing, verbs, query parameters, watch streaming, request logging.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::Shared;
use crate::error::ApiError;
use crate::log::{RequestRecord, Verb};
use crate::managed::Scope;
use crate::resource::{self, ResourceType, TYPES};
use crate::selector::{FieldSelector, LabelSelector, Selectors};
use crate::store::{DeleteOpts, PatchKind, WatchFilter, WatchMsg, parse_rv};

/// Header naming the client in the request log (set by `TestApiServer::client_named`).
pub(crate) const CLIENT_ID_HEADER: &str = "x-client-id";

pub(crate) fn router(shared: Arc<Shared>) -> Router {
    Router::new().fallback(handle).with_state(shared)
}

/// A parsed resource URL.
struct Target {
    group: String,
    version: String,
    plural: String,
    namespace: Option<String>,
    name: Option<String>,
    subresource: Option<String>,
}

fn parse_path(path: &str) -> Option<Target> {
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (group, version, rest) = match segs.as_slice() {
        ["api", v, rest @ ..] => ("", *v, rest),
        ["apis", g, v, rest @ ..] => (*g, *v, rest),
        _ => return None,
    };
    let is_plural = |p: &str| resource::lookup(group, version, p).is_some();
    let (namespace, rest) = match rest {
        ["namespaces", ns, plural, more @ ..]
            if is_plural(plural) && !(group.is_empty() && *plural == "status") =>
        {
            (Some(ns.to_string()), {
                let mut v = vec![*plural];
                v.extend_from_slice(more);
                v
            })
        }
        _ => (None, rest.to_vec()),
    };
    let (plural, name, subresource) = match rest.as_slice() {
        [p] => (*p, None, None),
        [p, n] => (*p, Some(n.to_string()), None),
        [p, n, s] => (*p, Some(n.to_string()), Some(s.to_string())),
        _ => return None,
    };
    Some(Target {
        group: group.to_string(),
        version: version.to_string(),
        plural: plural.to_string(),
        namespace,
        name,
        subresource,
    })
}

fn status_response(err: &ApiError) -> Response {
    let code = StatusCode::from_u16(err.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut resp = (code, axum::Json(err.to_status())).into_response();
    if err.code == 429 {
        resp.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    }
    resp
}

fn json_response(code: StatusCode, v: &Value) -> Response {
    (code, axum::Json(v.clone())).into_response()
}

fn meta_only(obj: &Value) -> Value {
    json!({"apiVersion": "meta.k8s.io/v1", "kind": "PartialObjectMetadata",
           "metadata": obj.get("metadata").cloned().unwrap_or_else(|| json!({}))})
}

/// A list item of a built-in kind as the real API server sends it: without `apiVersion` and
/// `kind` (kube-apiserver v1.37 omits them; custom resources keep them).
fn untyped(mut item: Value) -> Value {
    if let Some(obj) = item.as_object_mut() {
        obj.remove("apiVersion");
        obj.remove("kind");
    }
    item
}

fn wants_meta(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("as=PartialObjectMetadata"))
}

fn selectors(q: &HashMap<String, String>) -> Result<Selectors, ApiError> {
    Ok(Selectors {
        labels: LabelSelector::parse(q.get("labelSelector").map_or("", String::as_str))?,
        fields: FieldSelector::parse(q.get("fieldSelector").map_or("", String::as_str))?,
    })
}

fn client_id(headers: &HeaderMap) -> Option<String> {
    headers
        .get(CLIENT_ID_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

fn field_manager(q: &HashMap<String, String>, headers: &HeaderMap) -> String {
    if let Some(m) = q.get("fieldManager").filter(|m| !m.is_empty()) {
        return m.clone();
    }
    // Like the apiserver: default to the user agent up to the first '/'.
    headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .and_then(|ua| ua.split('/').next())
        .filter(|s| !s.is_empty())
        .unwrap_or("unknown")
        .to_string()
}

async fn handle(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path();
    let arrival_seq = shared.next_seq();
    let arrived_at = std::time::Instant::now();
    let client = client_id(&headers);
    if let Some(resp) = discovery(path) {
        shared.log_request(RequestRecord {
            method: method.to_string(),
            verb: Verb::Other,
            group: String::new(),
            version: String::new(),
            resource: String::new(),
            subresource: None,
            namespace: None,
            name: None,
            patch_type: None,
            field_manager: None,
            label_selector: None,
            field_selector: None,
            metadata_only: false,
            client,
            arrival_seq,
            arrived_at,
            completion_seq: shared.next_seq(),
            injected: false,
            delay: Duration::ZERO,
            status: resp.status().as_u16(),
        });
        return resp;
    }
    let Some(t) = parse_path(path) else {
        return status_response(&ApiError::new(
            404,
            "NotFound",
            "the server could not find the requested resource",
        ));
    };
    let verb = match (&method, t.name.is_some()) {
        (&Method::GET, false)
            if matches!(q.get("watch").map(String::as_str), Some("true" | "1")) =>
        {
            Verb::Watch
        }
        (&Method::GET, false) => Verb::List,
        (&Method::GET, true) => Verb::Get,
        (&Method::POST, false) => Verb::Create,
        (&Method::PUT, true) => Verb::Update,
        (&Method::PATCH, true) => Verb::Patch,
        (&Method::DELETE, true) => Verb::Delete,
        (&Method::DELETE, false) => Verb::DeleteCollection,
        _ => Verb::Other,
    };
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let mut record = RequestRecord {
        method: method.to_string(),
        verb,
        group: t.group.clone(),
        version: t.version.clone(),
        resource: t.plural.clone(),
        subresource: t.subresource.clone(),
        namespace: t.namespace.clone(),
        name: t.name.clone(),
        patch_type: (verb == Verb::Patch).then(|| content_type.clone()),
        field_manager: q.get("fieldManager").cloned(),
        label_selector: q.get("labelSelector").cloned(),
        field_selector: q.get("fieldSelector").cloned(),
        metadata_only: wants_meta(&headers),
        client,
        arrival_seq,
        arrived_at,
        completion_seq: 0,
        injected: false,
        delay: Duration::ZERO,
        status: 0,
    };

    let delay = shared.faults().delay_for(&record);
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    let injected = shared.faults().take_failure(&record);
    let resp = match injected {
        Some(code) => status_response(&ApiError::from_code(code)),
        None => serve(&shared, &t, verb, &q, &headers, &content_type, &body),
    };
    record.completion_seq = shared.next_seq();
    record.injected = injected.is_some();
    record.delay = delay;
    record.status = resp.status().as_u16();
    shared.log_request(record);
    resp
}

fn serve(
    shared: &Arc<Shared>,
    t: &Target,
    verb: Verb,
    q: &HashMap<String, String>,
    headers: &HeaderMap,
    content_type: &str,
    body: &Bytes,
) -> Response {
    match serve_inner(shared, t, verb, q, headers, content_type, body) {
        Ok(resp) => resp,
        Err(err) => status_response(&err),
    }
}

fn serve_inner(
    shared: &Arc<Shared>,
    t: &Target,
    verb: Verb,
    q: &HashMap<String, String>,
    headers: &HeaderMap,
    content_type: &str,
    body: &Bytes,
) -> Result<Response, ApiError> {
    let not_found = || {
        ApiError::new(
            404,
            "NotFound",
            "the server could not find the requested resource",
        )
    };
    let rt = resource::lookup(&t.group, &t.version, &t.plural).ok_or_else(not_found)?;
    let scope = match t.subresource.as_deref() {
        None => Scope::Main {
            status_separate: rt.status_subresource,
        },
        Some("status") if rt.status_subresource => Scope::Status,
        Some(_) => return Err(not_found()),
    };
    if rt.namespaced && t.namespace.is_none() && !matches!(verb, Verb::List | Verb::Watch) {
        return Err(not_found());
    }
    if !rt.namespaced && t.namespace.is_some() {
        return Err(not_found());
    }
    let ns = t.namespace.clone().unwrap_or_default();
    let name = t.name.clone().unwrap_or_default();
    let meta = wants_meta(headers);
    let out = |v: Value| if meta { meta_only(&v) } else { v };
    let manager = field_manager(q, headers);
    let dry_run = q.get("dryRun").is_some_and(|v| v == "All");
    // Writes run against a copy under dryRun=All: full validation, nothing stored or watched.
    let write = |f: &mut dyn FnMut(&mut crate::store::State) -> Result<Response, ApiError>| {
        let mut guard = shared.state();
        if dry_run {
            f(&mut guard.dry_run_copy())
        } else {
            f(&mut guard)
        }
    };
    let parse_body = || -> Result<Value, ApiError> {
        serde_json::from_slice(body)
            .map_err(|e| ApiError::bad_request(format!("error decoding request body: {e}")))
    };

    match verb {
        Verb::Get => {
            let state = shared.state();
            let obj = state
                .get(&rt.key(), &ns, &name)
                .ok_or_else(|| ApiError::not_found(&rt.key(), &name))?;
            Ok(json_response(StatusCode::OK, &out(obj.clone())))
        }
        Verb::List => {
            let sel = selectors(q)?;
            let state = shared.state();
            // Pagination (`limit`/`continue`) as the real API server does. Deviation: later pages
            // read the current objects after the cursor, not a snapshot at the first page's
            // resourceVersion; a client that watches from that version still sees every change.
            let limit = q
                .get("limit")
                .and_then(|l| l.parse::<usize>().ok())
                .filter(|l| *l > 0)
                .unwrap_or(usize::MAX);
            let cursor = match q.get("continue").filter(|c| !c.is_empty()) {
                Some(token) => Some(
                    ContinueToken::parse(token)
                        .ok_or_else(|| ApiError::bad_request("invalid continue token"))?,
                ),
                None => None,
            };
            let list_rv = cursor.as_ref().map_or_else(|| state.current_rv(), |c| c.rv);
            let (items, next) = state.list_page(
                &rt.key(),
                t.namespace.as_deref(),
                &sel,
                cursor
                    .as_ref()
                    .map(|c| (c.namespace.as_str(), c.name.as_str())),
                limit,
            );
            let items: Vec<Value> = items
                .into_iter()
                .map(out)
                .map(|item| if rt.custom { item } else { untyped(item) })
                .collect();
            let mut list_meta = json!({"resourceVersion": list_rv.to_string()});
            if let Some((namespace, name)) = next {
                list_meta["continue"] = json!(
                    ContinueToken {
                        rv: list_rv,
                        namespace,
                        name
                    }
                    .encode()
                );
            }
            let (api_version, kind) = if meta {
                (
                    "meta.k8s.io/v1".to_string(),
                    "PartialObjectMetadataList".to_string(),
                )
            } else {
                (rt.api_version(), format!("{}List", rt.kind))
            };
            let list = json!({"apiVersion": api_version, "kind": kind,
                "metadata": list_meta, "items": items});
            Ok(json_response(StatusCode::OK, &list))
        }
        Verb::Watch => watch(shared, rt, t, q, headers, meta),
        Verb::Create => {
            let body = parse_body()?;
            write(&mut |state| {
                let obj = state.create(rt, &ns, body.clone(), &manager)?;
                Ok(json_response(StatusCode::CREATED, &out(obj)))
            })
        }
        Verb::Update => {
            let body = parse_body()?;
            write(&mut |state| {
                let obj = state.update(rt, &ns, &name, body.clone(), scope, &manager)?;
                Ok(json_response(StatusCode::OK, &out(obj)))
            })
        }
        Verb::Patch => {
            let kind = PatchKind::from_content_type(content_type).ok_or_else(|| {
                ApiError::new(
                    415,
                    "UnsupportedMediaType",
                    format!("the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml; got {content_type:?}"),
                )
            })?;
            if kind == PatchKind::Apply && q.get("fieldManager").is_none_or(String::is_empty) {
                return Err(ApiError::bad_request(
                    "PATCH, application/apply-patch+yaml requests must supply a fieldManager",
                ));
            }
            let force = q.get("force").is_some_and(|f| f == "true");
            write(&mut |state| {
                let (obj, created) =
                    state.patch(rt, &ns, &name, kind, body, scope, &manager, force)?;
                let code = if created {
                    StatusCode::CREATED
                } else {
                    StatusCode::OK
                };
                Ok(json_response(code, &out(obj)))
            })
        }
        Verb::Delete => {
            let opts = delete_opts(q, body)?;
            write(&mut |state| {
                let obj = state.delete(rt, &ns, &name, &opts)?;
                let gone = state.get(&rt.key(), &ns, &name).is_none();
                // Like the apiserver: built-in types answer an immediate delete with a success
                // Status, custom resources with the deleted object; pending finalizers return it.
                if gone && !rt.group.ends_with("spinkube.dev") {
                    let uid = obj.pointer("/metadata/uid").cloned().unwrap_or(Value::Null);
                    let status = json!({"kind": "Status", "apiVersion": "v1", "metadata": {},
                        "status": "Success",
                        "details": {"name": name, "group": rt.group, "kind": rt.plural, "uid": uid}});
                    return Ok(json_response(StatusCode::OK, &status));
                }
                Ok(json_response(StatusCode::OK, &out(obj)))
            })
        }
        Verb::DeleteCollection => {
            let opts = delete_opts(q, body)?;
            let sel = selectors(q)?;
            write(&mut |state| {
                let items: Vec<Value> = state
                    .delete_collection(rt, t.namespace.as_deref(), &sel, &opts)
                    .into_iter()
                    .map(out)
                    .collect();
                let list = json!({"apiVersion": rt.api_version(), "kind": format!("{}List", rt.kind),
                    "metadata": {"resourceVersion": state.current_rv().to_string()}, "items": items});
                Ok(json_response(StatusCode::OK, &list))
            })
        }
        Verb::Other => Err(ApiError::new(
            405,
            "MethodNotAllowed",
            "the server does not allow this method on the requested resource",
        )),
    }
}

fn delete_opts(q: &HashMap<String, String>, body: &Bytes) -> Result<DeleteOpts, ApiError> {
    let b: Value = if body.is_empty() {
        json!({})
    } else {
        serde_json::from_slice(body)
            .map_err(|e| ApiError::bad_request(format!("invalid DeleteOptions: {e}")))?
    };
    let policy = b
        .get("propagationPolicy")
        .and_then(Value::as_str)
        .map(str::to_string)
        .or_else(|| q.get("propagationPolicy").cloned());
    let orphan = policy.as_deref() == Some("Orphan")
        || b.get("orphanDependents").and_then(Value::as_bool) == Some(true);
    let pre = |k: &str| {
        b.get("preconditions")
            .and_then(|p| p.get(k))
            .and_then(Value::as_str)
            .map(str::to_string)
    };
    Ok(DeleteOpts {
        precondition_uid: pre("uid"),
        precondition_rv: pre("resourceVersion"),
        orphan,
    })
}

fn event_line(event: &str, object: &Value) -> Bytes {
    let mut line =
        serde_json::to_vec(&json!({"type": event, "object": object})).unwrap_or_default();
    line.push(b'\n');
    Bytes::from(line)
}

struct WatchStream {
    rx: mpsc::UnboundedReceiver<WatchMsg>,
    shared: Arc<Shared>,
    /// The watch request, for [`crate::Faults::hold_watch_events`].
    request: RequestRecord,
    held: tokio::sync::watch::Receiver<Vec<crate::RequestMatcher>>,
    deadline: Instant,
    bookmarks: Option<Duration>,
    meta: bool,
    api_version: String,
    kind: &'static str,
}

impl WatchStream {
    /// Returns once no hold matches this watch; `None` when the watch times out first.
    async fn wait_while_held(&mut self) -> Option<()> {
        let request = &self.request;
        let released = self
            .held
            .wait_for(|held| !held.iter().any(|m| m.matches(request)));
        tokio::select! {
            released = released => released.ok().map(|_| ()),
            _ = tokio::time::sleep_until(self.deadline) => None,
        }
    }

    async fn next_line(&mut self) -> Option<Bytes> {
        loop {
            let tick = self.bookmarks.unwrap_or(Duration::from_secs(3600));
            tokio::select! {
                msg = self.rx.recv() => {
                    let msg = msg?;
                    self.wait_while_held().await?;
                    let obj = if self.meta && msg.event != "BOOKMARK" { meta_only(&msg.object) } else { msg.object };
                    return Some(event_line(msg.event, &obj));
                }
                _ = tokio::time::sleep_until(self.deadline) => return None,
                _ = tokio::time::sleep(tick), if self.bookmarks.is_some() => {
                    // Only when nothing is queued: a bookmark promises every earlier event was sent.
                    let state = self.shared.state();
                    if self.rx.is_empty() {
                        let rv = state.current_rv().to_string();
                        drop(state);
                        let bm = json!({"apiVersion": self.api_version, "kind": self.kind,
                            "metadata": {"resourceVersion": rv}});
                        return Some(event_line("BOOKMARK", &bm));
                    }
                }
            }
        }
    }
}

fn watch(
    shared: &Arc<Shared>,
    rt: &'static ResourceType,
    t: &Target,
    q: &HashMap<String, String>,
    headers: &HeaderMap,
    meta: bool,
) -> Result<Response, ApiError> {
    let sel = selectors(q)?;
    // What a hold matches: the watch request as the log records it.
    let request = RequestRecord {
        method: Method::GET.to_string(),
        group: t.group.clone(),
        version: t.version.clone(),
        namespace: t.namespace.clone(),
        name: None,
        label_selector: q.get("labelSelector").cloned(),
        field_selector: q.get("fieldSelector").cloned(),
        metadata_only: meta,
        client: client_id(headers),
        ..RequestRecord::synthetic(Verb::Watch, &t.plural)
    };
    let from = parse_rv(q.get("resourceVersion").map_or("", String::as_str));
    let send_initial = q.get("sendInitialEvents").is_some_and(|v| v == "true");
    let allow_bookmarks = q.get("allowWatchBookmarks").is_some_and(|v| v == "true");
    let timeout = q
        .get("timeoutSeconds")
        .and_then(|s| s.parse::<u64>().ok())
        .unwrap_or(1800);
    let filter = WatchFilter {
        key: rt.key(),
        namespace: t.namespace.clone(),
        selectors: sel,
    };
    let started = shared.state().watch(filter, from, send_initial);
    let headers = [(header::CONTENT_TYPE, "application/json")];
    let rx = match started {
        Ok(rx) => rx,
        Err(err) => {
            // Like the apiserver: 200 and a single ERROR event carrying the Status.
            let line = event_line("ERROR", &err.to_status());
            return Ok((StatusCode::OK, headers, Body::from(line)).into_response());
        }
    };
    let stream = WatchStream {
        rx,
        shared: shared.clone(),
        request,
        held: shared.held_watches().subscribe(),
        deadline: Instant::now() + Duration::from_secs(timeout),
        bookmarks: allow_bookmarks.then(|| shared.bookmark_interval()),
        meta,
        api_version: if meta {
            "meta.k8s.io/v1".into()
        } else {
            rt.api_version()
        },
        kind: if meta {
            "PartialObjectMetadata"
        } else {
            rt.kind
        },
    };
    let body = futures::stream::unfold(stream, |mut s| async move {
        let line = s.next_line().await?;
        Some((Ok::<_, Infallible>(line), s))
    })
    .boxed();
    Ok((StatusCode::OK, headers, Body::from_stream(body)).into_response())
}

/// Minimal discovery documents so discovery-based clients work.
fn discovery(path: &str) -> Option<Response> {
    let path = path.trim_end_matches('/');
    let doc = match path {
        "/version" => {
            json!({"major": "1", "minor": "33", "gitVersion": "v1.33.0-spin-test", "platform": "linux/amd64"})
        }
        "/api" => {
            json!({"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": []})
        }
        "/apis" => {
            let mut groups: Vec<(&str, &str)> = TYPES
                .iter()
                .filter(|t| !t.group.is_empty())
                .map(|t| (t.group, t.version))
                .collect();
            groups.dedup();
            let groups: Vec<Value> = groups
                .iter()
                .map(|(g, v)| {
                    let gv = json!({"groupVersion": format!("{g}/{v}"), "version": v});
                    json!({"name": g, "versions": [gv.clone()], "preferredVersion": gv})
                })
                .collect();
            json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
        }
        _ => {
            let segs: Vec<&str> = path.trim_start_matches('/').split('/').collect();
            let (group, version) = match segs.as_slice() {
                ["api", v] => ("", *v),
                ["apis", g, v] => (*g, *v),
                _ => return None,
            };
            let mut resources = Vec::new();
            for t in TYPES
                .iter()
                .filter(|t| t.group == group && t.version == version)
            {
                resources.push(json!({"name": t.plural, "singularName": t.kind.to_lowercase(), "namespaced": t.namespaced,
                    "kind": t.kind, "verbs": ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"]}));
                if t.status_subresource {
                    resources.push(json!({"name": format!("{}/status", t.plural), "singularName": "", "namespaced": t.namespaced,
                        "kind": t.kind, "verbs": ["get", "patch", "update"]}));
                }
            }
            if resources.is_empty() {
                return None;
            }
            let gv = if group.is_empty() {
                version.to_string()
            } else {
                format!("{group}/{version}")
            };
            json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": resources})
        }
    };
    Some(json_response(StatusCode::OK, &doc))
}

/// The opaque `continue` token of a paginated list: the list's resourceVersion and the last
/// (namespace, name) served.
struct ContinueToken {
    rv: u64,
    namespace: String,
    name: String,
}

impl ContinueToken {
    // Names and namespaces are DNS labels/subdomains: they never contain '/'.
    fn encode(&self) -> String {
        format!("{}/{}/{}", self.rv, self.namespace, self.name)
    }

    fn parse(token: &str) -> Option<Self> {
        let mut parts = token.splitn(3, '/');
        let rv = parts.next()?.parse().ok()?;
        Some(ContinueToken {
            rv,
            namespace: parts.next()?.to_string(),
            name: parts.next()?.to_string(),
        })
    }
}
