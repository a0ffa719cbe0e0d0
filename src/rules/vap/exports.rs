//! How each catalogue rule is enforced by the ValidatingAdmissionPolicy: CEL checks, the policy's
//! own structure, or not at all (webhook-only, with the reason). Keyed by rule id; a test keeps
//! it in step with the catalogue, so adding a rule forces a decision here.
//!
//! Every check is written as "the object passes": an absent optional field passes, and on
//! UPDATE so does a value the old object already had (see [`super::cel::unchanged`]).

use super::cel::{
    absent_or, in_old_list, lit, matches, null_safe, old_duplicate, present, same_entry, same_key,
    unchanged, unset_or,
};
use crate::api::{APP_NAME_LABEL, CA_BUNDLE_PATH, RESERVED_VOLUME_PREFIX, RUNTIME_CONFIG_PATH};
use crate::rules::names::DNS1123_SUBDOMAIN_MAX;
use crate::rules::spinapp::{APP_NAME_MAX, PULL_POLICIES};

/// One CEL validation of a rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    /// True when the object passes (ratcheting included).
    pub expression: String,
    /// The field the message names (a VAP validation has no `fieldPath`).
    pub field: &'static str,
}

/// How the policy enforces a rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Export {
    /// CEL validations, each denying with the rule id.
    Cel(Vec<Check>),
    /// Enforced by the policy's match constraints or conditions, not by a validation.
    Policy(&'static str),
    /// Only the webhook enforces it, for this reason.
    WebhookOnly(&'static str),
}

const SPEC: &str = "object.spec";
const APP_NAME: &str = "object.metadata.name";

// Regular expressions (RE2 and Rust's regex agree on this subset). Lengths are bounded inside
// the expressions where the grammar allows, so no separate size() check is needed.
const DNS1123_LABEL: &str = "^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$";
const DNS1123_SUBDOMAIN: &str =
    r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$";
const QUALIFIED_NAME: &str = r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$";
const LABEL_VALUE: &str = "^(([A-Za-z0-9][-A-Za-z0-9_.]{0,61})?[A-Za-z0-9])?$";
const VARIABLE_NAME: &str = "^[a-z][a-z0-9]*(_[a-z0-9]+)*$";
const COMPONENT_ID: &str = "^([a-z][a-z0-9]*|[A-Z][A-Z0-9]*)(-([a-z][a-z0-9]*|[A-Z][A-Z0-9]*))*$";
const HEADER_NAME: &str = "^[A-Za-z0-9-]+$";

// The OCI reference grammar of `rules::reference`.
const DOMAIN: &str = r"(([a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])(\.([a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9]))+(:[0-9]+)?|([a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9]):[0-9]+|localhost|\[[0-9a-fA-F:]+\](:[0-9]+)?)";
const PATH_COMPONENT: &str = "[a-z0-9]+(([._]|__|-+)[a-z0-9]+)*";
const TAG: &str = "[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}";
const DIGEST: &str = "[A-Za-z][A-Za-z0-9]*([-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}";
/// A first component with '.', ':' or '[' is a registry and must be a valid one (otherwise it
/// would be read as a path component).
const FIRST_IS_DOMAIN: &str = r"^[^/@]*[.:\[][^/@]*/";
/// Registry and path: everything before the tag and digest.
const REPOSITORY: &str = "^([^/@]*/)*[^/:@]*";
const REPOSITORY_MAX: usize = 255;

fn image_reference(s: &str) -> String {
    let full = format!("^({DOMAIN}/)?{PATH_COMPONENT}(/{PATH_COMPONENT})*(:{TAG})?(@{DIGEST})?$");
    let mut parts = vec![
        matches(s, &full),
        format!(
            "(!{} || {})",
            matches(s, FIRST_IS_DOMAIN),
            matches(s, &format!("^{DOMAIN}/"))
        ),
        format!("size({s}.find({})) <= {REPOSITORY_MAX}", lit(REPOSITORY)),
    ];
    for (algorithm, hex) in [("sha256", 64), ("sha384", 96), ("sha512", 128)] {
        parts.push(format!(
            "(!{} || {})",
            matches(s, &format!("@{algorithm}:")),
            matches(s, &format!("@{algorithm}:[0-9a-fA-F]{{{hex}}}$"))
        ));
    }
    parts.join(" && ")
}

fn subdomain(s: &str) -> String {
    format!(
        "size({s}) <= {DNS1123_SUBDOMAIN_MAX} && {}",
        matches(s, DNS1123_SUBDOMAIN)
    )
}

fn qualified_name(s: &str) -> String {
    // The prefix is a subdomain of at most 253 characters.
    let long_prefix = format!("^[^/]{{{},}}/", DNS1123_SUBDOMAIN_MAX + 1);
    format!(
        "{} && !{}",
        matches(s, QUALIFIED_NAME),
        matches(s, &long_prefix)
    )
}

fn check(field: &'static str, expression: String) -> Check {
    Check {
        expression: null_safe(&expression),
        field,
    }
}

fn path(rel: &str) -> String {
    format!("{SPEC}.{rel}")
}

/// `rule || unchanged(paths)` over the optional field at `rel`.
fn field_rule(rel: &str, ok: impl Fn(&str) -> String, related: &[&str]) -> String {
    let p = path(rel);
    let mut paths = vec![p.clone()];
    paths.extend(related.iter().map(|r| path(r)));
    let refs: Vec<&str> = paths.iter().map(String::as_str).collect();
    format!("{} || {}", absent_or(&p, &ok(&p)), unchanged(&refs))
}

/// `<list>.all(x, ok(x) || old(x))` over the optional list at `rel`.
fn each(rel: &str, ok: &str, old: &str) -> String {
    let p = path(rel);
    absent_or(&p, &format!("{p}.all(x, {ok} || {old})"))
}

/// `<map>.all(k, ok(k) || the same entry was there before)`.
fn each_entry(rel: &str, ok: impl Fn(&str) -> String) -> String {
    let p = path(rel);
    let value = format!("{p}[k]");
    absent_or(
        &p,
        &format!("{p}.all(k, {} || {})", ok(&value), same_entry(&p)),
    )
}

/// A key reference (`secretKeyRef`, `configMapKeyRef`) of `from` names an object and a key.
fn key_ref_ok(from: &str, which: &str) -> String {
    let r = format!("{from}.{which}");
    format!(
        "(!has({r}) || (has({r}.name) && {} && has({r}.key) && {r}.key != ''))",
        subdomain(&format!("{r}.name"))
    )
}

/// `ok(t)` for every runtime-config table (SQLite databases, key-value stores, LLM compute);
/// a table identical to one of the old object's is admitted.
fn rc_tables(ok: impl Fn(&str) -> String) -> String {
    let rc = path("runtimeConfig");
    let lists = ["sqliteDatabases", "keyValueStores"].map(|l| {
        let list = format!("{rc}.{l}");
        format!(
            "(!has({list}) || {list}.all(t, {} || {}))",
            ok("t"),
            in_old_list(&list, "o == t")
        )
    });
    let llm = format!("{rc}.llmCompute");
    let llm = format!(
        "(!has({llm}) || {} || {})",
        ok(&llm),
        unchanged(&[llm.as_str()])
    );
    absent_or(&rc, &format!("({} && {} && {llm})", lists[0], lists[1]))
}

/// `ok(p)` for every option of table `t`.
fn options(t: &str, ok: &str) -> String {
    format!("(!has({t}.options) || {t}.options.all(p, {ok}))")
}

/// Every map of `fields` (optional, at `spec.<field>`) passes `ok`, or is unchanged.
fn maps(fields: &[&str], ok: impl Fn(&str) -> String) -> String {
    each_ok_or_unchanged(fields.iter().map(|f| path(f)), ok)
}

/// For every optional field path: it passes `ok`, or it is unchanged (ratcheting).
fn each_ok_or_unchanged(
    paths: impl Iterator<Item = String>,
    ok: impl Fn(&str) -> String,
) -> String {
    paths
        .map(|p| {
            format!(
                "({} || {})",
                absent_or(&p, &ok(&p)),
                unchanged(&[p.as_str()])
            )
        })
        .collect::<Vec<_>>()
        .join(" && ")
}

/// A quantity of a resources map: valid and not negative (int-or-string, so via `string()`;
/// Kubernetes' Quantity has `compareTo`, not `sign`).
fn quantity_ok(q: &str) -> String {
    format!("(isQuantity(string({q})) && quantity(string({q})).compareTo(quantity('0')) >= 0)")
}

const PROBES: [&str; 2] = ["liveness", "readiness"];

/// `ok(probe)` for each configured probe, or the probe is unchanged.
fn probes(ok: impl Fn(&str) -> String, which: &[&str]) -> String {
    each_ok_or_unchanged(which.iter().map(|name| path(&format!("checks.{name}"))), ok)
}

/// The mount path without trailing slashes (as the webhook compares them).
fn trimmed(s: &str) -> String {
    format!("{s}.find('^.*[^/]')")
}

/// How the policy enforces rule `id`, or `None` for an id this table does not know.
pub fn export(id: &str) -> Option<Export> {
    use Export::{Cel, Policy, WebhookOnly};
    let one = |field, expression| Cel(vec![check(field, expression)]);
    Some(match id {
        "SA-DEFAULT-EXECUTOR" | "SA-DEFAULT-REPLICAS" => {
            WebhookOnly("defaulting: a ValidatingAdmissionPolicy cannot change objects")
        }
        "SA-DECODE" | "SAE-DECODE" => WebhookOnly(
            "the API server's CRD schema rejects wrongly typed fields before any policy runs",
        ),
        "SA-NAME" => one(
            "metadata.name",
            format!(
                "!has({APP_NAME}) || {APP_NAME} == '' || (size({APP_NAME}) <= {APP_NAME_MAX} && {}) || {}",
                matches(APP_NAME, "^[a-z]([-a-z0-9]*[a-z0-9])?$"),
                unchanged(&[APP_NAME])
            ),
        ),
        "SA-EXECUTOR-REQUIRED" => {
            let p = path("executor");
            one(
                "spec.executor",
                format!("(has({p}) && {p} != '') || {}", unchanged(&[p.as_str()])),
            )
        }
        "SA-EXECUTOR-EXISTS" => WebhookOnly(
            "needs a lookup of the named SpinAppExecutor (a paramRef cannot follow a field of the object)",
        ),
        "SA-EXECUTOR-PENDING" => WebhookOnly("a warning under a webhook option"),
        "SA-REPLICAS-MIN" => one(
            "spec.replicas",
            field_rule(
                "replicas",
                |p| {
                    format!(
                        "(has({SPEC}.enableAutoscaling) && {SPEC}.enableAutoscaling) || {p} >= 1"
                    )
                },
                &["enableAutoscaling"],
            ),
        ),
        "SA-REPLICAS-AUTOSCALING" => one(
            "spec.replicas",
            field_rule(
                "replicas",
                |_| format!("!(has({SPEC}.enableAutoscaling) && {SPEC}.enableAutoscaling)"),
                &["enableAutoscaling"],
            ),
        ),
        "SA-ANNOTATIONS-NO-DEPLOYMENT" => {
            WebhookOnly("needs the named executor's createDeployment (a lookup)")
        }
        "SA-IMAGE-REQUIRED" => {
            let p = path("image");
            one(
                "spec.image",
                format!("(has({p}) && {p} != '') || {}", unchanged(&[p.as_str()])),
            )
        }
        "SA-IMAGE-REFERENCE" => {
            let p = path("image");
            one(
                "spec.image",
                format!(
                    "{} || {}",
                    unset_or(&p, &format!("({})", image_reference(&p))),
                    unchanged(&[p.as_str()])
                ),
            )
        }
        "SA-IMAGE-LATEST"
        | "SA-INVOCATION-UNKNOWN"
        | "SA-RC-TYPE-UNKNOWN"
        | "SA-RC-KEY-UNKNOWN"
        | "SAE-DEPLOYMENT-CONFIG-UNUSED" => WebhookOnly(
            "a warning: a policy binding's validationActions apply to all of its validations, so \
             warnings would need a second binding",
        ),
        "SA-IMAGE-PULL-POLICY" => {
            let allowed: Vec<String> = PULL_POLICIES.iter().map(|p| lit(p)).collect();
            one(
                "spec.imagePullPolicy",
                field_rule(
                    "imagePullPolicy",
                    |p| format!("{p} in [{}]", allowed.join(", ")),
                    &[],
                ),
            )
        }
        "SA-SERVICE-ACCOUNT-NAME" => {
            let p = path("serviceAccountName");
            one(
                "spec.serviceAccountName",
                format!(
                    "{} || {}",
                    unset_or(&p, &format!("({})", subdomain(&p))),
                    unchanged(&[p.as_str()])
                ),
            )
        }
        "SA-REF-NAME" => {
            let secrets = each(
                "imagePullSecrets",
                &format!("(has(x.name) && {})", subdomain("x.name")),
                &in_old_list(&path("imagePullSecrets"), "o == x"),
            );
            let variables = each(
                "variables",
                &format!(
                    "has(x.value) || !has(x.valueFrom) || ({} && {})",
                    key_ref_ok("x.valueFrom", "secretKeyRef"),
                    key_ref_ok("x.valueFrom", "configMapKeyRef")
                ),
                &in_old_list(&path("variables"), "o == x"),
            );
            let secret = path("runtimeConfig.loadFromSecret");
            let load = format!(
                "{} || {}",
                absent_or(&secret, &format!("({})", subdomain(&secret))),
                unchanged(&[secret.as_str()])
            );
            let rc_options = rc_tables(|t| {
                options(
                    t,
                    &format!(
                        "has(p.value) || !has(p.valueFrom) || \
                         has(p.valueFrom.secretKeyRef) == has(p.valueFrom.configMapKeyRef) || \
                         ({} && {})",
                        key_ref_ok("p.valueFrom", "secretKeyRef"),
                        key_ref_ok("p.valueFrom", "configMapKeyRef")
                    ),
                )
            });
            Cel(vec![
                check("spec.imagePullSecrets", secrets),
                check("spec.variables", variables),
                check("spec.runtimeConfig.loadFromSecret", load),
                check("spec.runtimeConfig", rc_options),
            ])
        }
        "SA-REF-MISSING" => WebhookOnly(
            "a warning, and needs lookups of Secrets and ConfigMaps in the app's namespace",
        ),
        "SA-VARIABLE-NAME" => one(
            "spec.variables",
            each(
                "variables",
                &matches("x.name", VARIABLE_NAME),
                &in_old_list(&path("variables"), "o.name == x.name"),
            ),
        ),
        "SA-VARIABLE-DUPLICATE" => {
            let list = path("variables");
            one(
                "spec.variables",
                each(
                    "variables",
                    &format!(
                        "!{} || {list}.exists_one(y, y.name == x.name)",
                        matches("x.name", VARIABLE_NAME)
                    ),
                    &old_duplicate(&list, ".name"),
                ),
            )
        }
        "SA-VARIABLE-SOURCE" => {
            let sources = [
                "configMapKeyRef",
                "secretKeyRef",
                "fieldRef",
                "resourceFieldRef",
                "fileKeyRef",
            ]
            .map(|s| format!("(has(x.valueFrom.{s}) ? 1 : 0)"))
            .join(" + ");
            // As the webhook reports it: at valueFrom when one is set (so an unchanged valueFrom
            // is ratcheted), else at the variable.
            let list = path("variables");
            one(
                "spec.variables",
                absent_or(
                    &list,
                    &format!(
                        "{list}.all(x, has(x.valueFrom) ? ((!has(x.value) && {sources} == 1) || {}) : \
                         (has(x.value) || {}))",
                        in_old_list(&list, "has(o.valueFrom) && o.valueFrom == x.valueFrom"),
                        in_old_list(&list, "o == x")
                    ),
                ),
            )
        }
        "SA-VOLUME-NAME" => one(
            "spec.volumes",
            each(
                "volumes",
                &matches("x.name", DNS1123_LABEL),
                &in_old_list(&path("volumes"), "o.name == x.name"),
            ),
        ),
        "SA-VOLUME-RESERVED" => one(
            "spec.volumes",
            each(
                "volumes",
                &format!(
                    "!{} || !x.name.startsWith({})",
                    matches("x.name", DNS1123_LABEL),
                    lit(RESERVED_VOLUME_PREFIX)
                ),
                &in_old_list(&path("volumes"), "o.name == x.name"),
            ),
        ),
        "SA-VOLUME-DUPLICATE" => {
            let list = path("volumes");
            one(
                "spec.volumes",
                each(
                    "volumes",
                    &format!(
                        "!{} || x.name.startsWith({}) || {list}.exists_one(y, y.name == x.name)",
                        matches("x.name", DNS1123_LABEL),
                        lit(RESERVED_VOLUME_PREFIX)
                    ),
                    &old_duplicate(&list, ".name"),
                ),
            )
        }
        "SA-VOLUMEMOUNT-VOLUME" => {
            let volumes = path("volumes");
            one(
                "spec.volumeMounts",
                each(
                    "volumeMounts",
                    &format!(
                        "(x.name != '' && has({volumes}) && {volumes}.exists(v, v.name == x.name))"
                    ),
                    &format!(
                        "({} && {})",
                        in_old_list(&path("volumeMounts"), "o.name == x.name"),
                        unchanged(&[volumes.as_str()])
                    ),
                ),
            )
        }
        "SA-VOLUMEMOUNT-PATH" => {
            let list = path("volumeMounts");
            let t = trimmed("x.mountPath");
            let reserved = [RUNTIME_CONFIG_PATH, CA_BUNDLE_PATH]
                .map(|r| {
                    format!(
                        "{t} == {} || {t}.startsWith({})",
                        lit(r),
                        lit(&format!("{r}/"))
                    )
                })
                .join(" || ");
            one(
                "spec.volumeMounts",
                each(
                    "volumeMounts",
                    &format!(
                        "(x.mountPath != '' && !({reserved}) && {list}.exists_one(y, {} == {t}))",
                        trimmed("y.mountPath")
                    ),
                    &in_old_list(&list, "o.mountPath == x.mountPath"),
                ),
            )
        }
        "SA-PROBE-HTTPGET" => one(
            "spec.checks",
            probes(|p| format!("has({p}.httpGet)"), &PROBES),
        ),
        "SA-PROBE-PATH" => one(
            "spec.checks",
            probes(
                |p| {
                    format!(
                        "(!has({p}.httpGet) || (has({p}.httpGet.path) && {p}.httpGet.path.startsWith('/')))"
                    )
                },
                &PROBES,
            ),
        ),
        "SA-PROBE-HEADER" => one(
            "spec.checks",
            probes(
                |p| {
                    let h = format!("{p}.httpGet.httpHeaders");
                    format!(
                        "(!has({p}.httpGet) || !has({h}) || {h}.all(h, has(h.name) && {}))",
                        matches("h.name", HEADER_NAME)
                    )
                },
                &PROBES,
            ),
        ),
        "SA-PROBE-THRESHOLDS" => one(
            "spec.checks",
            probes(
                |p| {
                    let mut parts = vec![format!(
                        "(!has({p}.initialDelaySeconds) || {p}.initialDelaySeconds >= 0)"
                    )];
                    for f in [
                        "timeoutSeconds",
                        "periodSeconds",
                        "successThreshold",
                        "failureThreshold",
                    ] {
                        parts.push(format!("(!has({p}.{f}) || {p}.{f} >= 1)"));
                    }
                    format!("({})", parts.join(" && "))
                },
                &PROBES,
            ),
        ),
        "SA-PROBE-LIVENESS-SUCCESS" => one(
            "spec.checks.liveness.successThreshold",
            probes(
                |p| format!("(!has({p}.successThreshold) || {p}.successThreshold == 1)"),
                &["liveness"],
            ),
        ),
        "SA-RESOURCES-QUANTITY" => {
            let parts = ["limits", "requests"]
                .map(|m| format!("({})", each_entry(&format!("resources.{m}"), quantity_ok)));
            one("spec.resources", parts.join(" && "))
        }
        "SA-RESOURCES-REQUESTS-LE-LIMITS" => {
            let (limits, requests) = (path("resources.limits"), path("resources.requests"));
            let (l, r) = (format!("{limits}[k]"), format!("{requests}[k]"));
            one(
                "spec.resources.requests",
                format!(
                    "!({}) || !({}) || {requests}.all(k, !(k in {limits}) || !{} || !{} || \
                     quantity(string({r})).compareTo(quantity(string({l}))) <= 0) || {}",
                    present(&limits),
                    present(&requests),
                    quantity_ok(&r),
                    quantity_ok(&l),
                    unchanged(&[path("resources").as_str()])
                ),
            )
        }
        "SA-INVOCATION-MEMORY" => {
            let limits = path("invocationLimits");
            let m = format!("{limits}['memory']");
            one(
                "spec.invocationLimits",
                absent_or(
                    &limits,
                    &format!(
                        "!('memory' in {limits}) || (isQuantity({m}) && quantity({m}).isGreaterThan(quantity('0'))) || {}",
                        same_key(&limits, "'memory'")
                    ),
                ),
            )
        }
        "SA-INVOCATION-MEMORY-LIMIT" => {
            let limits = path("invocationLimits");
            let m = format!("{limits}['memory']");
            // The bound: the container memory limit, else its request (as the webhook).
            let bound = |which: &str, otherwise: &str| {
                let map = path(&format!("resources.{which}"));
                let b = format!("string({map}['memory'])");
                format!(
                    "(({}) && 'memory' in {map} && isQuantity({b})) ? quantity({m}).compareTo(quantity({b})) <= 0 : {otherwise}",
                    present(&map)
                )
            };
            one(
                "spec.invocationLimits",
                format!(
                    "{} || {}",
                    absent_or(
                        &limits,
                        &format!(
                            "!('memory' in {limits}) || !(isQuantity({m}) && quantity({m}).isGreaterThan(quantity('0'))) || ({})",
                            bound("limits", &format!("({})", bound("requests", "true")))
                        ),
                    ),
                    unchanged(&[limits.as_str(), path("resources").as_str()])
                ),
            )
        }
        "SA-COMPONENTS-EMPTY" => one(
            "spec.components",
            field_rule("components", |p| format!("size({p}) > 0"), &[]),
        ),
        "SA-COMPONENTS-ID" => one(
            "spec.components",
            each(
                "components",
                &matches("x", COMPONENT_ID),
                &in_old_list(&path("components"), "o == x"),
            ),
        ),
        "SA-COMPONENTS-DUPLICATE" => {
            let list = path("components");
            one(
                "spec.components",
                each(
                    "components",
                    &format!(
                        "!{} || {list}.exists_one(y, y == x)",
                        matches("x", COMPONENT_ID)
                    ),
                    &old_duplicate(&list, ""),
                ),
            )
        }
        "SA-RC-EXCLUSIVE" => {
            let rc = path("runtimeConfig");
            one(
                "spec.runtimeConfig",
                format!(
                    "{} || {}",
                    absent_or(
                        &rc,
                        &format!(
                            "!has({rc}.loadFromSecret) || ((!has({rc}.sqliteDatabases) || size({rc}.sqliteDatabases) == 0) && \
                             (!has({rc}.keyValueStores) || size({rc}.keyValueStores) == 0) && !has({rc}.llmCompute))"
                        ),
                    ),
                    unchanged(&[rc.as_str()])
                ),
            )
        }
        "SA-RC-NAME" => {
            let rc = path("runtimeConfig");
            let lists = ["sqliteDatabases", "keyValueStores"].map(|l| {
                let list = format!("{rc}.{l}");
                format!(
                    "(!has({list}) || {list}.all(t, (has(t.name) && t.name != '' && \
                     {list}.exists_one(u, has(u.name) && u.name == t.name)) || {}))",
                    in_old_list(&list, "o == t")
                )
            });
            one(
                "spec.runtimeConfig",
                absent_or(&rc, &format!("({} && {})", lists[0], lists[1])),
            )
        }
        "SA-RC-TYPE" => one(
            "spec.runtimeConfig",
            rc_tables(|t| format!("(has({t}.type) && {t}.type != '')")),
        ),
        "SA-RC-OPTION" => one(
            "spec.runtimeConfig",
            rc_tables(|t| {
                options(
                    t,
                    &format!(
                        "has(p.name) && p.name != '' && {t}.options.exists_one(q, has(q.name) && q.name == p.name)"
                    ),
                )
            }),
        ),
        "SA-RC-OPTION-SOURCE" => one(
            "spec.runtimeConfig",
            rc_tables(|t| {
                options(
                    t,
                    "(has(p.value) ? !has(p.valueFrom) : (has(p.valueFrom) && \
                     has(p.valueFrom.secretKeyRef) != has(p.valueFrom.configMapKeyRef)))",
                )
            }),
        ),
        "SA-RC-KEY-MISSPELLED" => WebhookOnly(
            "an edit-distance and substring comparison against each provider's option names; \
             CEL has no edit distance",
        ),
        "SA-PODLABELS-SELECTOR" => one(
            "spec.podLabels",
            each_entry("podLabels", |_| {
                format!(
                    "(k != {} && (!has({APP_NAME}) || k != 'core.spinkube.dev/app.' + {APP_NAME} + '.status'))",
                    lit(APP_NAME_LABEL)
                )
            }),
        ),
        "SA-LABEL-KEY" => one(
            "spec.podLabels, spec.nodeSelector",
            maps(&["podLabels", "nodeSelector"], |m| {
                format!("{m}.all(k, {})", qualified_name("k"))
            }),
        ),
        "SA-LABEL-VALUE" => {
            let parts = ["podLabels", "nodeSelector"]
                .map(|m| format!("({})", each_entry(m, |v| matches(v, LABEL_VALUE))));
            one("spec.podLabels, spec.nodeSelector", parts.join(" && "))
        }
        "SA-ANNOTATION-KEY" => one(
            "spec.serviceAnnotations, spec.deploymentAnnotations, spec.podAnnotations",
            maps(ANNOTATION_MAPS, |m| {
                format!("{m}.all(k, {})", qualified_name("k"))
            }),
        ),
        "SA-ANNOTATION-SIZE" => one(
            "spec.serviceAnnotations, spec.deploymentAnnotations, spec.podAnnotations",
            maps(ANNOTATION_MAPS, |m| {
                format!(
                    "{m}.map(k, size(bytes(k)) + size(bytes({m}[k]))).sum() <= {ANNOTATIONS_MAX_BYTES}"
                )
            }),
        ),
        "SA-RATCHET" | "SAE-RATCHET" => Policy(
            "each validation admits an UPDATE whose fields (and related fields) keep the old \
             object's values; list items count as unchanged when the old list has the same item",
        ),
        "SA-FINALIZING" | "SAE-FINALIZING" => Policy(
            "matchCondition not-being-deleted: objects with a deletionTimestamp are not evaluated",
        ),
        "SAE-DEPLOYMENT-CONFIG-REQUIRED" => one(
            "spec.deploymentConfig",
            format!(
                "!(has({SPEC}.createDeployment) && {SPEC}.createDeployment) || has({SPEC}.deploymentConfig) || {}",
                unchanged(&[SPEC])
            ),
        ),
        "SAE-RUNTIME-XOR" => {
            let dc = path("deploymentConfig");
            one(
                "spec.deploymentConfig",
                format!(
                    "{} || {}",
                    absent_or(
                        &dc,
                        &format!(
                            "(has({dc}.runtimeClassName) && {dc}.runtimeClassName != '') != \
                             (has({dc}.spinImage) && {dc}.spinImage != '')"
                        ),
                    ),
                    unchanged(&[SPEC])
                ),
            )
        }
        "SAE-RUNTIME-CLASS-NAME" => {
            executor_field("spec.deploymentConfig.runtimeClassName", subdomain)
        }
        "SAE-SPIN-IMAGE" => executor_field("spec.deploymentConfig.spinImage", image_reference),
        "SAE-CA-SECRET-NAME" => executor_field("spec.deploymentConfig.caCertSecret", subdomain),
        "SAE-OTEL-ENDPOINT" => {
            let parts = [
                "exporter_otlp_endpoint",
                "exporter_otlp_traces_endpoint",
                "exporter_otlp_metrics_endpoint",
                "exporter_otlp_logs_endpoint",
            ]
            .map(|key| {
                let p = path(&format!("deploymentConfig.otel.{key}"));
                format!(
                    "({} || {})",
                    unset_or(
                        &p,
                        &format!(
                            "(isURL({p}) && url({p}).getScheme() in ['http', 'https'] && url({p}).getHostname() != '')"
                        )
                    ),
                    unchanged(&[p.as_str()])
                )
            });
            one("spec.deploymentConfig.otel", parts.join(" && "))
        }
        "SAE-IN-USE" => {
            WebhookOnly("DELETE of an executor needs the list of SpinApps naming it (a lookup)")
        }
        _ => return None,
    })
}

const ANNOTATION_MAPS: &[&str] = &[
    "serviceAnnotations",
    "deploymentAnnotations",
    "podAnnotations",
];
/// Kubernetes' limit on the total size of an object's annotations (as `SA-ANNOTATION-SIZE`).
const ANNOTATIONS_MAX_BYTES: usize = 256 * 1024;

/// An optional non-empty string of the executor's deploymentConfig passes `ok`.
fn executor_field(field: &'static str, ok: fn(&str) -> String) -> Export {
    let p = format!("object.{field}");
    Export::Cel(vec![check(
        field,
        format!(
            "{} || {}",
            unset_or(&p, &format!("({})", ok(&p))),
            unchanged(&[p.as_str()])
        ),
    )])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::names::LABEL_MAX;

    #[test]
    fn label_bounds_match_the_name_checks() {
        // The regexes carry the lengths of `rules::names`.
        assert!(DNS1123_LABEL.contains(&format!("{{0,{}}}", LABEL_MAX - 2)));
        assert!(QUALIFIED_NAME.ends_with(&format!("{{0,{}}}[A-Za-z0-9])?$", LABEL_MAX - 2)));
        assert!(LABEL_VALUE.contains(&format!("{{0,{}}}", LABEL_MAX - 2)));
    }

    #[test]
    fn unknown_ids_have_no_export() {
        assert!(export("SA-NOPE").is_none());
    }
}
