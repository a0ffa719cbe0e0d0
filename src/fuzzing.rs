//! Fuzz harnesses: one plain function per `cargo fuzz` target (`fuzz/fuzz_targets/`), so that
//! `tests/fuzz_regressions.rs` replays saved inputs through exactly the code the fuzzers run,
//! on stable and without libFuzzer.
//!
//! Each function takes arbitrary bytes, drives the library and panics only when an oracle
//! fails (a panic is how libFuzzer learns of a finding). Library code never panics on input:
//! a panic inside the admission rules is caught by the handler, so the harness also fails on
//! the "internal error" denial that catch turns it into.

use std::cmp::Ordering;
use std::sync::{Arc, LazyLock};
use std::time::Instant;

use base64::Engine;
use serde_json::{Map, Value, json};

use crate::admission::AdmissionMetrics;
use crate::admission::handler::{self, AdmissionState};
use crate::admission::routes::{ROUTES, Route, WebhookKind};
use crate::api::{RuntimeConfig, SpinApp};
use crate::inventory::Inventory;
use crate::rules::quantity::{Quantity, QuantityError};
use crate::rules::{self, Options, reference};

mod http;
pub use http::http;

/// Namespace with executors, a Secret and a ConfigMap; `empty` has nothing.
const NS: &str = "apps";

/// The cluster the harnesses judge against: the `examples/executors.yaml` executors (one without
/// a Deployment), a Secret and a ConfigMap for `valueFrom` references.
fn inventory() -> Inventory {
    let mut inv = Inventory {
        complete: true,
        ..Inventory::default()
    };
    for (name, create_deployment, config) in [
        (
            "containerd-shim-spin",
            true,
            json!({"runtimeClassName": "wasmtime-spin-v2", "installDefaultCACerts": true}),
        ),
        (
            "spintainer",
            false,
            json!({"spinImage": "ghcr.io/spinframework/spin:v3.4.1"}),
        ),
    ] {
        for ns in [NS, "default"] {
            let executor = json!({
                "apiVersion": "core.spinkube.dev/v1alpha1", "kind": "SpinAppExecutor",
                "metadata": {"name": name, "namespace": ns},
                "spec": {"createDeployment": create_deployment, "deploymentConfig": config},
            });
            if let Ok(e) = serde_json::from_value(executor) {
                inv.add_executor(e);
            }
        }
    }
    if let Ok(secret) = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": "creds", "namespace": NS},
        "stringData": {"url": "redis://r:6379", "token": "t0k'\"\n"},
        "data": {"bin": "/w=="},
    })) {
        inv.add_secret(secret);
    }
    if let Ok(cm) = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "settings", "namespace": NS},
        "data": {"path": "/data/db.sqlite", "weird": "a]b\\c\u{7f}"},
    })) {
        inv.add_config_map(cm);
    }
    inv
}

static STATE: LazyLock<AdmissionState> = LazyLock::new(|| {
    AdmissionState::new(
        Arc::new(inventory()),
        Options::default(),
        AdmissionMetrics::default(),
    )
});

static INVENTORY: LazyLock<Inventory> = LazyLock::new(inventory);

/// Target `admission`: a request body through every webhook route, as the server answers it.
///
/// Oracles: the answer is an AdmissionReview v1 response with the request's uid (status 200)
/// exactly when the body is JSON with a non-empty `request.uid`, otherwise a plain 400; a
/// denial has a Kubernetes status code and never comes from a caught panic; a mutating patch
/// decodes and applies to the request's object; and on the SpinApp routes the fast view path,
/// whenever it answers, answers byte for byte as the reference `Value` path.
pub fn admission(body: &[u8]) {
    let expect = Expect::new(body);
    for route in ROUTES {
        let view = handler::handle_view(&STATE, route, body, Instant::now()).map(collect);
        let value = collect(handler::handle_value(&STATE, route, body, Instant::now()));
        if let Some(view) = &view {
            assert!(
                *view == value,
                "{}: view path answered {:?}, value path {:?}",
                route.path,
                lossy(view),
                lossy(&value)
            );
        }
        expect.check(route, &value);
    }
}

/// What a request body lets the oracles expect of any route's answer.
struct Expect {
    parsed: Option<Value>,
    /// In a lenient body the object is read as the server read it, bad bytes replaced.
    repaired: Option<Value>,
}

impl Expect {
    fn new(body: &[u8]) -> Self {
        let parsed: Option<Value> = serde_json::from_slice(body).ok();
        let repaired = match parsed {
            None => serde_json::from_str(&String::from_utf8_lossy(body)).ok(),
            Some(_) => None,
        };
        Self { parsed, repaired }
    }

    /// [`check_answer`] for this body on `route`.
    fn check(&self, route: &Route, answer: &(u16, Vec<u8>)) {
        // The typed fast parse skips the fields it does not read without checking their
        // strings (invalid UTF-8, lone surrogate escapes), so a body that is not quite JSON
        // may still be answered with its uid; the apiserver never sends one.
        let lenient = self.parsed.is_none();
        let uid = self
            .parsed
            .as_ref()
            .and_then(|v| v.get("request")?.get("uid")?.as_str())
            .filter(|u| !u.is_empty());
        let object = self
            .parsed
            .as_ref()
            .or(self.repaired.as_ref())
            .and_then(|v| v.get("request")?.get("object"))
            .filter(|o| !o.is_null());
        check_answer(route, uid, lenient, object, answer);
    }
}

/// Target `admission_structured`: a well-formed AdmissionReview whose object is a SpinApp (or
/// SpinAppExecutor) assembled from the bytes, so the fuzzer spends its time in the rules rather
/// than in JSON syntax. Runs [`admission`] on it, and checks that defaulting's patch applies
/// and that defaulting the defaulted object changes nothing.
pub fn admission_structured(data: &[u8]) {
    let mut u = Unstructured::new(data);
    let route = &ROUTES[u.choose(ROUTES.len())];
    let spinapp = route.resource.kind() == "SpinApp";
    let operation = *u.pick(&["CREATE", "UPDATE", "UPDATE", "DELETE", "CONNECT"]);
    let namespace = *u.pick(&[NS, NS, "default", "empty", ""]);
    let object = if spinapp {
        spinapp_object(&mut u, namespace)
    } else {
        executor_object(&mut u, namespace)
    };
    let old = match u.choose(3) {
        0 => object.clone(),
        1 if spinapp => spinapp_object(&mut u, namespace),
        1 => executor_object(&mut u, namespace),
        _ => Value::Null,
    };
    let name = match u.choose(3) {
        0 => Value::from(""),
        1 => object
            .pointer("/metadata/name")
            .cloned()
            .unwrap_or(Value::Null),
        _ => Value::from(u.string(12)),
    };
    let gvk =
        json!({"group": "core.spinkube.dev", "version": "v1alpha1", "kind": route.resource.kind()});
    let gvr = json!({"group": "core.spinkube.dev", "version": "v1alpha1", "resource": route.resource.plural()});
    let review = json!({
        "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "request": {
            "uid": "fuzz-uid", "kind": gvk, "resource": gvr, "requestKind": gvk,
            "name": name, "namespace": namespace, "operation": operation,
            "userInfo": {"username": "fuzzer"},
            "object": if operation == "DELETE" { Value::Null } else { object.clone() },
            "oldObject": old, "dryRun": u.choose(2) == 1,
        }
    });
    admission(review.to_string().as_bytes());

    if spinapp && object.is_object() {
        let opts = Options::default();
        let request = rules::Request {
            operation: rules::Operation::Create,
            namespace,
            name: "",
            object: Some(&object),
            old_object: None,
        };
        let first = rules::mutate_spinapp(&request, &*INVENTORY, &opts);
        assert!(first.allowed(), "defaulting denied {object}");
        let mut defaulted = object.clone();
        if let Err(e) = json_patch::patch(&mut defaulted, &first.patch) {
            panic!(
                "defaulting patch {:?} does not apply to {object}: {e}",
                first.patch
            );
        }
        let again = rules::mutate_spinapp(
            &rules::Request {
                object: Some(&defaulted),
                ..request
            },
            &*INVENTORY,
            &opts,
        );
        assert!(
            again.patch.0.is_empty(),
            "defaulting is not idempotent: {object} defaulted to {defaulted}, then patched {:?}",
            again.patch
        );
        let validated = rules::validate_spinapp(
            &rules::Request {
                object: Some(&defaulted),
                ..request
            },
            &*INVENTORY,
            &opts,
        );
        check_catalogued(&validated);
    }
}

/// Target `quantity`: one or two quantities (split at the first newline).
///
/// Oracles: comparison is a consistent total order on what parses; spellings of the same value
/// (`+` sign, a leading zero, a trailing fractional zero, a decimal suffix as an exponent)
/// compare equal; the whole-unit value re-serializes to a quantity that brackets the original
/// (`w - 1 < q <= w`, rounding up); and comparisons (with each other and with fixed anchors),
/// sign and whole units agree with [`ReferenceQuantity`], an independent model of
/// apimachinery's value in unbounded decimal digits.
pub fn quantity(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (a, b) = text.split_once('\n').unwrap_or((text, ""));
    let qa = check_quantity(a);
    let qb = check_quantity(b);
    if let (Some(x), Some(y)) = (qa, qb) {
        assert_eq!(x.cmp(&y), y.cmp(&x).reverse(), "{a:?} vs {b:?}");
        assert_eq!(
            x.cmp(&y),
            ReferenceQuantity::new(a).cmp(&ReferenceQuantity::new(b)),
            "{a:?} vs {b:?} differs from the reference model"
        );
        if let (Some(wx), Some(wy)) = (x.to_whole_units(), y.to_whole_units()) {
            // Rounding up is monotone.
            if x < y {
                assert!(wx <= wy, "{a:?} < {b:?} but whole units {wx} > {wy}");
            }
            if wx < wy {
                assert!(x < y, "whole units {wx} < {wy} but {a:?} >= {b:?}");
            }
        }
    }
}

/// Quantities `check_quantity` compares every input with, through both models: zero, the
/// nano boundary, the binary cap and its decimal neighbours.
const QUANTITY_ANCHORS: &[&str] = &[
    "0",
    "1n",
    "-1n",
    "999999999n",
    "1",
    "1Ki",
    "1k",
    "9223372036854775807",
    "8Ei",
    "1e19",
];

fn check_quantity(s: &str) -> Option<Quantity> {
    let q = Quantity::parse(s).ok()?;
    let parse = |t: &str| Quantity::parse(t);
    assert_eq!(q.cmp(&q), Ordering::Equal, "{s:?}");
    let model = ReferenceQuantity::new(s);
    assert_eq!(q.is_negative(), model.negative, "{s:?}: sign");
    assert_eq!(q.is_zero(), model.digits.is_empty(), "{s:?}: zero");
    assert_eq!(
        q.to_whole_units(),
        model.whole_units(),
        "{s:?}: whole units differ from the reference model"
    );
    for anchor in QUANTITY_ANCHORS {
        let (Ok(other), reference) = (parse(anchor), ReferenceQuantity::new(anchor)) else {
            panic!("{anchor:?} does not parse");
        };
        assert_eq!(
            q.cmp(&other),
            model.cmp(&reference),
            "{s:?} vs {anchor:?} differs from the reference model"
        );
    }
    assert!(
        !(q.is_negative() && q.is_zero()),
        "{s:?} is a negative zero"
    );
    let same = |t: String| match parse(&t) {
        Ok(v) => assert_eq!(v.cmp(&q), Ordering::Equal, "{t:?} vs {s:?}"),
        // A longer spelling may run out of digits; anything else must parse.
        Err(QuantityError::TooLarge) => {}
        Err(e) => panic!("{t:?} (a spelling of {s:?}) does not parse: {e}"),
    };
    let unsigned = !s.starts_with(['+', '-']);
    let (sign, rest) = if unsigned { ("", s) } else { s.split_at(1) };
    if unsigned {
        same(format!("+{s}"));
        let negated = match parse(&format!("-{s}")) {
            Ok(n) => n,
            Err(e) => panic!("-{s:?} does not parse: {e}"),
        };
        assert_eq!(negated.is_negative(), !q.is_zero(), "-{s:?}");
        assert_eq!(
            negated.cmp(&q),
            if q.is_zero() {
                Ordering::Equal
            } else {
                Ordering::Less
            },
            "-{s:?} vs {s:?}"
        );
    }
    same(format!("{sign}0{rest}"));
    let number_len = rest
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(rest.len());
    let (number, suffix) = rest.split_at(number_len);
    if number.contains('.') {
        same(format!("{sign}{number}0{suffix}"));
    }
    let exponent = match suffix {
        "n" => Some(-9),
        "u" => Some(-6),
        "m" => Some(-3),
        "k" => Some(3),
        "M" => Some(6),
        "G" => Some(9),
        "T" => Some(12),
        "P" => Some(15),
        "E" => Some(18),
        _ => None,
    };
    if let Some(e) = exponent {
        same(format!("{sign}{number}e{e}"));
    }
    match q.to_whole_units() {
        Some(w) => {
            assert!(
                !q.is_negative(),
                "{s:?} is negative yet has whole units {w}"
            );
            let up = parse(&w.to_string()).ok();
            assert!(
                up.is_some_and(|up| up >= q),
                "{s:?} rounds up to {w}, below it"
            );
            if w > 0 {
                let below = parse(&(w - 1).to_string()).ok();
                assert!(
                    below.is_some_and(|b| b < q),
                    "{s:?} rounds up to {w}, too far"
                );
            }
            // The serialized value reads back as itself.
            assert_eq!(
                parse(&w.to_string()).ok().and_then(|p| p.to_whole_units()),
                Some(w)
            );
        }
        None if !q.is_negative() => {
            let max = parse(&i64::MAX.to_string()).ok();
            assert!(
                max.is_some_and(|m| m < q),
                "{s:?} has no whole units yet is not above i64::MAX"
            );
        }
        None => {}
    }
    Some(q)
}

/// An independent model of the value k8s.io/apimachinery's `ParseQuantity` gives a string
/// `Quantity::parse` accepts, in unbounded decimal digits (slow and simple, no fixed width):
/// the exact value, rounded away from zero to a whole number of nanos, and a binary-suffixed
/// magnitude capped at `2^63 - 1`. Magnitude is `digits × 10^exp10`, digits most significant
/// first with no leading or trailing zeros (none for zero).
#[derive(Debug)]
struct ReferenceQuantity {
    negative: bool,
    digits: Vec<u8>,
    exp10: i64,
}

impl ReferenceQuantity {
    fn new(s: &str) -> Self {
        let (negative, rest) = match s.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, s.strip_prefix('+').unwrap_or(s)),
        };
        let split = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let (number, suffix) = rest.split_at(split);
        let (int_part, frac_part) = number.split_once('.').unwrap_or((number, ""));
        let mut digits: Vec<u8> = int_part
            .bytes()
            .chain(frac_part.bytes())
            .map(|b| b - b'0')
            .skip_while(|&d| d == 0)
            .collect();
        let mut exp10 = -(frac_part.len() as i64);
        let doublings = match suffix {
            "Ki" => 10,
            "Mi" => 20,
            "Gi" => 30,
            "Ti" => 40,
            "Pi" => 50,
            "Ei" => 60,
            _ => 0,
        };
        exp10 += match suffix {
            "" => 0,
            "n" => -9,
            "u" => -6,
            "m" => -3,
            "k" => 3,
            "M" => 6,
            "G" => 9,
            "T" => 12,
            "P" => 15,
            "E" => 18,
            _ if doublings > 0 => 0,
            e => e[1..].parse::<i64>().expect("a parsed quantity's exponent"),
        };
        for _ in 0..doublings {
            let mut carry = 0;
            for d in digits.iter_mut().rev() {
                let v = *d * 2 + carry;
                *d = v % 10;
                carry = v / 10;
            }
            if carry > 0 {
                digits.insert(0, carry);
            }
        }
        // Round away from zero to nanos: drop the digits below 1n, add one if any was not zero.
        if exp10 < -9 {
            let drop = usize::try_from(-9 - exp10).unwrap_or(usize::MAX);
            let keep = digits.len().saturating_sub(drop);
            let inexact = digits[keep..].iter().any(|&d| d != 0);
            digits.truncate(keep);
            exp10 = -9;
            if inexact {
                let mut i = digits.len();
                loop {
                    if i == 0 {
                        digits.insert(0, 1);
                        break;
                    }
                    i -= 1;
                    if digits[i] == 9 {
                        digits[i] = 0;
                    } else {
                        digits[i] += 1;
                        break;
                    }
                }
            }
        }
        let mut model = ReferenceQuantity {
            negative,
            digits,
            exp10,
        };
        model.normalize();
        let cap = ReferenceQuantity {
            negative: false,
            digits: i64::MAX.to_string().bytes().map(|b| b - b'0').collect(),
            exp10: 0,
        };
        if doublings > 0 && model.cmp_magnitude(&cap) == Ordering::Greater {
            model.digits = cap.digits;
            model.exp10 = 0;
        }
        model
    }

    fn normalize(&mut self) {
        let leading = self.digits.iter().take_while(|&&d| d == 0).count();
        self.digits.drain(..leading);
        while self.digits.last() == Some(&0) {
            self.digits.pop();
            self.exp10 += 1;
        }
        if self.digits.is_empty() {
            self.negative = false;
            self.exp10 = 0;
        }
    }

    fn cmp_magnitude(&self, other: &Self) -> Ordering {
        match (self.digits.is_empty(), other.digits.is_empty()) {
            (true, true) => Ordering::Equal,
            (true, false) => Ordering::Less,
            (false, true) => Ordering::Greater,
            // Without leading zeros, the position of the first digit decides; then the digits
            // (without trailing zeros, a proper prefix is the smaller value).
            (false, false) => (self.digits.len() as i64 + self.exp10)
                .cmp(&(other.digits.len() as i64 + other.exp10))
                .then_with(|| self.digits.cmp(&other.digits)),
        }
    }

    fn cmp(&self, other: &Self) -> Ordering {
        match (self.negative, other.negative) {
            (false, true) => Ordering::Greater,
            (true, false) => Ordering::Less,
            (false, false) => self.cmp_magnitude(other),
            (true, true) => other.cmp_magnitude(self),
        }
    }

    /// The value rounded up to a whole number, when not negative and within `i64`.
    fn whole_units(&self) -> Option<u64> {
        if self.negative {
            return None;
        }
        let int_len = self.digits.len() as i64 + self.exp10;
        if int_len > 19 {
            return None;
        }
        let mut whole: u64 = 0;
        for i in 0..int_len.max(0) {
            let d = usize::try_from(i)
                .ok()
                .and_then(|i| self.digits.get(i))
                .copied()
                .unwrap_or(0);
            whole = whole.checked_mul(10)?.checked_add(u64::from(d))?;
        }
        // Without trailing zeros, any digit past the integer part is a non-zero fraction.
        if self.exp10 < 0 {
            whole = whole.checked_add(1)?;
        }
        Some(whole).filter(|w| i64::try_from(*w).is_ok())
    }
}

/// Target `reference`: an image reference.
///
/// Oracles: the one-pass fast path accepts only what the explaining parse accepts, with the
/// same parts; an accepted reference is its parts joined again; its parts obey the grammar's
/// basic shape (non-empty lowercase path, name within 255 characters); a rejection says why.
pub fn reference(data: &[u8]) {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    let fast = reference::accept(s);
    let full = reference::parse_and_explain(s);
    if let Some(fast) = &fast {
        assert_eq!(
            Ok(fast),
            full.as_ref(),
            "{s:?}: fast path accepts, full parse differs"
        );
    }
    assert_eq!(reference::parse(s), full, "{s:?}");
    match full {
        Ok(r) => {
            let mut joined = String::new();
            if let Some(d) = r.domain {
                joined.push_str(d);
                joined.push('/');
            }
            joined.push_str(r.path);
            if let Some(t) = r.tag {
                joined.push(':');
                joined.push_str(t);
            }
            if let Some(d) = r.digest {
                joined.push('@');
                joined.push_str(d);
            }
            assert_eq!(joined, s, "parts of {s:?} do not join back");
            assert!(!r.path.is_empty(), "{s:?}: empty path accepted");
            assert!(
                !r.path.bytes().any(|b| b.is_ascii_uppercase()),
                "{s:?}: uppercase path accepted"
            );
            let name_len = r.domain.map_or(0, |d| d.len() + 1) + r.path.len();
            assert!(
                name_len <= 255,
                "{s:?}: name of {name_len} characters accepted"
            );
            assert!(
                !s.chars().any(char::is_whitespace),
                "{s:?}: whitespace accepted"
            );
        }
        Err(why) => assert!(!why.is_empty(), "{s:?}: rejected without a reason"),
    }
}

/// Target `runtime_config`: `spec.runtimeConfig` as JSON (when the bytes are one) and as built
/// from the bytes, and the bytes as a `runtime-config.toml` for `scaffold`.
///
/// Oracles: the rules name only catalogued rules; the rendered `runtime-config.toml` is always
/// TOML (the renderer's own guard never trips) and reads back as the tables the spec defines.
pub fn runtime_config(data: &[u8]) {
    if let Ok(rc) = serde_json::from_slice::<RuntimeConfig>(data) {
        check_runtime_config(&rc);
    }
    let mut u = Unstructured::new(data);
    let rc = runtime_config_value(&mut u);
    if let Ok(rc) = serde_json::from_value::<RuntimeConfig>(rc) {
        check_runtime_config(&rc);
    }
    if let Ok(text) = std::str::from_utf8(data) {
        let mut spec = crate::scaffold::Spec::new("ghcr.io/fuzz/app:v1");
        spec.runtime_config = Some(crate::scaffold::RuntimeConfigFile {
            file: "runtime-config.toml".to_string(),
            text: text.to_string(),
        });
        // Typed result either way; a panic is the finding.
        let _ = crate::scaffold::scaffold(&spec);
    }
}

fn check_runtime_config(rc: &RuntimeConfig) {
    let opts = Options::default();
    let decision = rules::validate_runtime_config(NS, rc, &*INVENTORY, &opts);
    check_catalogued(&decision);
    let app = json!({
        "apiVersion": "core.spinkube.dev/v1alpha1", "kind": "SpinApp",
        "metadata": {"name": "app", "namespace": NS},
        "spec": {"image": "ghcr.io/fuzz/app:v1", "executor": "containerd-shim-spin",
                 "replicas": 1, "runtimeConfig": rc},
    });
    let request = rules::Request {
        operation: rules::Operation::Create,
        namespace: NS,
        name: "app",
        object: Some(&app),
        old_object: None,
    };
    check_catalogued(&rules::validate_spinapp(&request, &*INVENTORY, &opts));
    let Ok(app) = serde_json::from_value::<SpinApp>(app) else {
        return;
    };
    match crate::desired::render_runtime_config(&app, &*INVENTORY) {
        Ok(Some(text)) => check_rendered(rc, &text),
        Ok(None) => assert!(
            rc.load_from_secret
                .as_deref()
                .is_some_and(|s| !s.is_empty())
        ),
        Err(crate::desired::DesiredError::InvalidRuntimeConfig { reason })
            if reason.contains("not valid TOML") =>
        {
            panic!("rendered runtime config is not TOML for {rc:?}")
        }
        Err(_) => {}
    }
}

/// The rendered TOML read back: every named table with its `type` and literal options.
fn check_rendered(rc: &RuntimeConfig, text: &str) {
    let table: toml::Table = match text.parse() {
        Ok(t) => t,
        Err(e) => panic!("rendered runtime config is not TOML ({e}): {text}"),
    };
    let sections = [
        (
            "key_value_store",
            rc.key_value_stores
                .iter()
                .flatten()
                .map(|s| (s.name.as_str(), s.type_.as_str(), s.options.as_deref()))
                .collect::<Vec<_>>(),
        ),
        (
            "sqlite_database",
            rc.sqlite_databases
                .iter()
                .flatten()
                .map(|s| (s.name.as_str(), s.type_.as_str(), s.options.as_deref()))
                .collect(),
        ),
    ];
    for (section, tables) in sections {
        for (name, type_, options) in tables {
            let Some(got) = table
                .get(section)
                .and_then(|s| s.get(name))
                .and_then(toml::Value::as_table)
            else {
                panic!("[{section}.{name:?}] missing from {text}");
            };
            check_options(type_, options, got, text);
        }
    }
    if let Some(llm) = &rc.llm_compute {
        let Some(got) = table.get("llm_compute").and_then(toml::Value::as_table) else {
            panic!("[llm_compute] missing from {text}");
        };
        check_options(&llm.type_, llm.options.as_deref(), got, text);
    }
}

fn check_options(
    type_: &str,
    options: Option<&[crate::api::RuntimeConfigOption]>,
    got: &toml::Table,
    text: &str,
) {
    // Later options of the same name win, and an option may be called `type`.
    let mut want = std::collections::BTreeMap::from([("type", Some(type_))]);
    for o in options.unwrap_or_default() {
        let literal = match (&o.value, &o.value_from) {
            (Some(v), _) if !v.is_empty() => Some(v.as_str()),
            (_, Some(_)) => None,
            _ => Some(""),
        };
        want.insert(o.name.as_str(), literal);
    }
    assert_eq!(got.len(), want.len(), "options {want:?} rendered as {text}");
    for (k, v) in want {
        let value = got.get(k).and_then(toml::Value::as_str);
        assert!(value.is_some(), "option {k:?} missing from {text}");
        if let Some(v) = v {
            assert_eq!(value, Some(v), "option {k:?} in {text}");
        }
    }
}

/// Every rule a decision fired is a row of the catalogue.
fn check_catalogued(decision: &rules::Decision) {
    for e in &decision.errors {
        assert!(
            rules::catalogue().iter().any(|r| r.id == e.rule),
            "uncatalogued rule {}",
            e.rule
        );
    }
}

/// A response's status and body, read synchronously (the body is already in memory).
fn collect(response: axum::response::Response) -> (u16, Vec<u8>) {
    let status = response.status().as_u16();
    let body = futures::executor::block_on(axum::body::to_bytes(response.into_body(), usize::MAX))
        .map(|b| b.to_vec())
        .unwrap_or_else(|e| panic!("response body unreadable: {e}"));
    (status, body)
}

fn lossy(answer: &(u16, Vec<u8>)) -> (u16, String) {
    (answer.0, String::from_utf8_lossy(&answer.1).into_owned())
}

fn check_answer(
    route: &Route,
    uid: Option<&str>,
    lenient: bool,
    object: Option<&Value>,
    answer: &(u16, Vec<u8>),
) {
    let (status, body) = answer;
    let answered_uid = serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|v| Some(v.get("response")?.get("uid")?.as_str()?.to_string()));
    let uid = match (uid, &answered_uid) {
        (None, Some(answered)) if lenient && *status == 200 && !answered.is_empty() => {
            Some(answered.as_str())
        }
        _ => uid,
    };
    let Some(uid) = uid else {
        assert_eq!(
            *status,
            400,
            "{}: no uid yet answered {:?}",
            route.path,
            lossy(answer)
        );
        assert!(
            !body.starts_with(b"could not encode"),
            "{:?}",
            lossy(answer)
        );
        return;
    };
    assert_eq!(
        *status,
        200,
        "{}: uid {uid:?} yet answered {:?}",
        route.path,
        lossy(answer)
    );
    let review: Value = match serde_json::from_slice(body) {
        Ok(v) => v,
        Err(e) => panic!(
            "{}: answer is not JSON ({e}): {:?}",
            route.path,
            lossy(answer)
        ),
    };
    assert_eq!(review["apiVersion"], "admission.k8s.io/v1", "{review}");
    assert_eq!(review["kind"], "AdmissionReview", "{review}");
    let response = &review["response"];
    assert_eq!(response["uid"], uid, "{review}");
    let Some(allowed) = response["allowed"].as_bool() else {
        panic!("{}: no `allowed` in {review}", route.path);
    };
    let message = response["status"]["message"].as_str().unwrap_or("");
    assert!(
        !message.contains("internal error"),
        "{}: the rules panicked: {review}",
        route.path
    );
    if !allowed {
        let code = response["status"]["code"].as_i64();
        assert!(
            matches!(code, Some(400 | 422)),
            "{}: denial code {code:?}",
            route.path
        );
        assert!(
            response.get("patch").is_none(),
            "{}: denial with a patch",
            route.path
        );
        return;
    }
    let Some(patch) = response.get("patch") else {
        return;
    };
    if lenient && object.is_none() {
        // The object is unknown here (a body with a lone surrogate escape).
        return;
    }
    assert_eq!(
        route.kind,
        WebhookKind::Mutating,
        "{}: validating webhook patched",
        route.path
    );
    assert_eq!(response["patchType"], "JSONPatch", "{review}");
    let bytes = match patch
        .as_str()
        .map(|p| base64::engine::general_purpose::STANDARD.decode(p))
    {
        Some(Ok(b)) => b,
        _ => panic!("{}: patch is not base64: {review}", route.path),
    };
    let patch: json_patch::Patch = match serde_json::from_slice(&bytes) {
        Ok(p) => p,
        Err(e) => panic!("{}: patch is not a JSON patch ({e}): {review}", route.path),
    };
    let mut target = object.cloned().unwrap_or(Value::Null);
    if let Err(e) = json_patch::patch(&mut target, &patch) {
        panic!(
            "{}: patch {patch:?} does not apply to the object ({e})",
            route.path
        );
    }
}

/// Reads choices and values from the fuzzer's bytes; zeros once they run out, so every input
/// builds something.
struct Unstructured<'a> {
    data: &'a [u8],
}

impl<'a> Unstructured<'a> {
    fn new(data: &'a [u8]) -> Self {
        Self { data }
    }

    fn byte(&mut self) -> u8 {
        match self.data.split_first() {
            Some((&b, rest)) => {
                self.data = rest;
                b
            }
            None => 0,
        }
    }

    /// A number below `n` (`n > 0`).
    fn choose(&mut self, n: usize) -> usize {
        usize::from(self.byte()) % n
    }

    fn pick<'t, T>(&mut self, items: &'t [T]) -> &'t T {
        &items[self.choose(items.len())]
    }

    /// Up to `max` bytes of the input as text.
    fn string(&mut self, max: usize) -> String {
        let len = self.choose(max + 1).min(self.data.len());
        let (s, rest) = self.data.split_at(len);
        self.data = rest;
        String::from_utf8_lossy(s).into_owned()
    }

    /// A string from `dictionary`, or taken from the input.
    fn text(&mut self, dictionary: &[&str]) -> Value {
        match self.choose(dictionary.len() + 1) {
            i if i < dictionary.len() => Value::from(dictionary[i]),
            _ => Value::from(self.string(24)),
        }
    }

    /// Arbitrary JSON, at most `depth` levels deep.
    fn json(&mut self, depth: u32) -> Value {
        match self.choose(if depth == 0 { 5 } else { 7 }) {
            0 => Value::Null,
            1 => Value::Bool(self.byte() & 1 == 1),
            2 => Value::from(i64::from(self.byte() as i8)),
            3 => Value::from(f64::from(self.byte()) / 4.0),
            4 => Value::from(self.string(16)),
            5 => {
                let n = self.choose(4);
                Value::Array((0..n).map(|_| self.json(depth - 1)).collect())
            }
            _ => {
                let n = self.choose(4);
                Value::Object(
                    (0..n)
                        .map(|_| (self.string(8), self.json(depth - 1)))
                        .collect(),
                )
            }
        }
    }
}

const QUANTITIES: &[&str] = &[
    "100m", "1", "0", "128Mi", "1Gi", "500M", "1.5", "-1", "2e3", "1e999", "0.5Ki", "abc", "",
];
const IMAGES: &[&str] = &[
    "ghcr.io/spinframework/containerd-shim-spin/examples/spin-rust-hello:v0.23.0",
    "registry.example.com/app:latest",
    "localhost:5000/a/b@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
    "Not An Image",
    "",
];

fn spinapp_object(u: &mut Unstructured, namespace: &str) -> Value {
    let mut spec = Map::new();
    let fields = u.choose(8);
    for _ in 0..fields {
        let (field, value) = match u.choose(20) {
            0 => (
                "executor",
                u.text(&["containerd-shim-spin", "spintainer", "", "ghost"]),
            ),
            1 => ("replicas", Value::from(i64::from(u.byte() as i8) % 5)),
            2 => ("enableAutoscaling", Value::Bool(u.byte() & 1 == 1)),
            3 => ("image", u.text(IMAGES)),
            4 => ("resources", resources(u)),
            5 => (
                "variables",
                Value::Array(
                    (0..u.choose(4))
                        .map(|_| {
                            json!({"name": u.text(&["A", "a_b", "", "X-Y"]), "value": u.text(&["v"])})
                        })
                        .collect(),
                ),
            ),
            6 => ("runtimeConfig", runtime_config_value(u)),
            7 => (
                "podAnnotations",
                json!({u.string(12): u.text(&["x"])}),
            ),
            8 => (
                "podLabels",
                json!({u.string(12): u.text(&["x", "core.spinkube.dev/app-name"])}),
            ),
            9 => (
                "components",
                Value::Array((0..u.choose(3)).map(|_| u.text(&["hello", "A", ""])).collect()),
            ),
            10 => (
                "imagePullSecrets",
                Value::Array((0..u.choose(3)).map(|_| json!({"name": u.text(&["creds", "nope"])})).collect()),
            ),
            11 => (
                "volumes",
                json!([{"name": u.text(&["data", ""]), "emptyDir": {}}]),
            ),
            12 => (
                "volumeMounts",
                json!([{"name": u.text(&["data", "other"]), "mountPath": u.text(&["/data", "rel", ""])}]),
            ),
            13 => (
                "checks",
                json!({"liveness": {"httpGet": {"path": u.text(&["/health", ""])}},
                       "readiness": {"httpGet": {"path": u.text(&["/ready"])}}}),
            ),
            14 => (
                "invocationLimits",
                json!({u.text(&["memory", "cpu"]).as_str().unwrap_or(""): u.text(QUANTITIES)}),
            ),
            15 => ("serviceAccountName", u.text(&["default", "Bad_Name", ""])),
            16 => (
                "deploymentAnnotations",
                json!({u.string(12): u.text(&["x"])}),
            ),
            17 => ("imagePullPolicy", u.text(&["Always", "Never", "IfNotPresent", "Sometimes"])),
            18 => ("tolerations", json!([{"key": u.string(8), "effect": u.text(&["NoSchedule"])}])),
            _ => {
                let key = u.string(12);
                let value = u.json(3);
                spec.insert(key, value);
                continue;
            }
        };
        spec.insert(field.to_string(), value);
    }
    let mut metadata = json!({"name": u.text(&["web", "Web_App", ""]), "namespace": namespace});
    match u.choose(6) {
        0 => metadata["deletionTimestamp"] = json!("2026-11-26T10:00:00Z"),
        1 => metadata["generateName"] = json!("web-"),
        _ => {}
    }
    let spec = match u.choose(10) {
        0 => u.json(2),
        _ => Value::Object(spec),
    };
    json!({"apiVersion": "core.spinkube.dev/v1alpha1", "kind": "SpinApp",
           "metadata": metadata, "spec": spec})
}

fn resources(u: &mut Unstructured) -> Value {
    let mut out = Map::new();
    for which in ["limits", "requests"] {
        if u.byte() & 1 == 1 {
            let mut m = Map::new();
            for _ in 0..u.choose(3) {
                let key = u.text(&["cpu", "memory", "ephemeral-storage"]);
                m.insert(key.as_str().unwrap_or("").to_string(), u.text(QUANTITIES));
            }
            out.insert(which.to_string(), Value::Object(m));
        }
    }
    Value::Object(out)
}

fn executor_object(u: &mut Unstructured, namespace: &str) -> Value {
    let mut spec = Map::new();
    for _ in 0..u.choose(5) {
        let (field, value) = match u.choose(5) {
            0 => ("createDeployment", Value::Bool(u.byte() & 1 == 1)),
            1 => (
                "deploymentConfig",
                json!({"runtimeClassName": u.text(&["wasmtime-spin-v2", ""]),
                       "spinImage": u.text(IMAGES),
                       "installDefaultCACerts": u.byte() & 1 == 1}),
            ),
            2 => ("deploymentConfig", u.json(2)),
            _ => {
                let key = u.string(12);
                let value = u.json(2);
                spec.insert(key, value);
                continue;
            }
        };
        spec.insert(field.to_string(), value);
    }
    json!({"apiVersion": "core.spinkube.dev/v1alpha1", "kind": "SpinAppExecutor",
           "metadata": {"name": u.text(&["containerd-shim-spin", "spintainer", "new"]),
                        "namespace": namespace},
           "spec": spec})
}

/// A `spec.runtimeConfig` built from the bytes: provider tables with known and unknown types
/// and keys, literal and referenced values.
fn runtime_config_value(u: &mut Unstructured) -> Value {
    let mut rc = Map::new();
    if u.choose(4) == 0 {
        rc.insert("loadFromSecret".into(), u.text(&["creds", "missing", ""]));
    }
    for (section, types) in [
        (
            "keyValueStores",
            &["redis", "spin", "azure_cosmos", "aws_dynamo"][..],
        ),
        ("sqliteDatabases", &["libsql", "spin"][..]),
    ] {
        if u.byte() & 1 == 1 {
            let tables: Vec<Value> = (0..u.choose(3))
                .map(|_| {
                    json!({"name": u.text(&["default", "cache", "a.b", "x'y"]),
                           "type": u.text(types),
                           "options": options(u)})
                })
                .collect();
            rc.insert(section.into(), Value::Array(tables));
        }
    }
    if u.choose(3) == 0 {
        rc.insert(
            "llmCompute".into(),
            json!({"type": u.text(&["remote_http", "spin"]), "options": options(u)}),
        );
    }
    Value::Object(rc)
}

fn options(u: &mut Unstructured) -> Value {
    let keys = &[
        "url",
        "path",
        "token",
        "type",
        "database",
        "auth_token",
        "uri",
    ][..];
    Value::Array(
        (0..u.choose(4))
            .map(|_| {
                let name = u.text(keys);
                match u.choose(4) {
                    0 => json!({"name": name, "valueFrom": {"secretKeyRef": {
                        "name": u.text(&["creds", "missing"]), "key": u.text(&["url", "token", "bin", "nope"]),
                        "optional": u.byte() & 1 == 1}}}),
                    1 => json!({"name": name, "valueFrom": {"configMapKeyRef": {
                        "name": u.text(&["settings", "missing"]), "key": u.text(&["path", "weird", "nope"])}}}),
                    _ => json!({"name": name, "value": u.text(&["redis://r:6379", "", "a\"b'c\n"])}),
                }
            })
            .collect(),
    )
}
