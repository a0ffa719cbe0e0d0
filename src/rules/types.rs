//! The public vocabulary of the rule table: rules, requests, field errors, warnings, decisions.

use std::fmt;

use serde::Serialize;

/// Admission operation (as in `AdmissionRequest.operation`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Operation {
    Create,
    Update,
    Delete,
    Connect,
}

impl Operation {
    /// The apiserver's spelling (`CREATE`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::Create => "CREATE",
            Operation::Update => "UPDATE",
            Operation::Delete => "DELETE",
            Operation::Connect => "CONNECT",
        }
    }
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Kind a rule applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub enum Target {
    SpinApp,
    SpinAppExecutor,
}

impl Target {
    pub fn as_str(self) -> &'static str {
        match self {
            Target::SpinApp => "SpinApp",
            Target::SpinAppExecutor => "SpinAppExecutor",
        }
    }
}

/// Whether a rule rewrites the object (mutating webhook) or judges it (validating webhook).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub enum Phase {
    Defaulting,
    Validation,
}

impl Phase {
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Defaulting => "defaulting",
            Phase::Validation => "validation",
        }
    }
}

/// What a rule does when it fires: an error denies, a warning is allowed and shown by kubectl.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub enum Severity {
    Error,
    Warning,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Error => "error",
            Severity::Warning => "warning",
        }
    }
}

/// One row of the catalogue.
#[derive(Debug, Clone, Serialize)]
pub struct Rule {
    /// Stable id, e.g. `SA-REPLICAS-MIN`.
    pub id: &'static str,
    pub target: Target,
    pub phase: Phase,
    pub severity: Severity,
    pub operations: &'static [Operation],
    /// Field path the rule is about, e.g. `spec.replicas`.
    pub field: &'static str,
    pub description: &'static str,
}

/// Kubernetes `field.ErrorType`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub enum ErrorType {
    Invalid,
    Required,
    Forbidden,
    Duplicate,
    NotFound,
    NotSupported,
}

impl ErrorType {
    /// The `StatusCause.reason` Kubernetes uses for this type.
    pub fn cause_reason(self) -> &'static str {
        match self {
            ErrorType::Invalid => "FieldValueInvalid",
            ErrorType::Required => "FieldValueRequired",
            ErrorType::Forbidden => "FieldValueForbidden",
            ErrorType::Duplicate => "FieldValueDuplicate",
            ErrorType::NotFound => "FieldValueNotFound",
            ErrorType::NotSupported => "FieldValueNotSupported",
        }
    }

    /// The phrase Kubernetes prints after the field path.
    pub fn phrase(self) -> &'static str {
        match self {
            ErrorType::Invalid => "Invalid value",
            ErrorType::Required => "Required value",
            ErrorType::Forbidden => "Forbidden",
            ErrorType::Duplicate => "Duplicate value",
            ErrorType::NotFound => "Not found",
            ErrorType::NotSupported => "Unsupported value",
        }
    }
}

/// One field error, displayed exactly like Kubernetes' `field.Error`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FieldError {
    /// Id of the catalogue rule that produced it.
    pub rule: &'static str,
    /// Field path, e.g. `spec.variables[1].name`.
    pub field: String,
    pub error_type: ErrorType,
    pub bad_value: Option<serde_json::Value>,
    pub detail: String,
}

impl FieldError {
    /// The `StatusCause.reason` of this error (`FieldValueInvalid`, ...).
    pub fn cause_reason(&self) -> &'static str {
        self.error_type.cause_reason()
    }

    /// The message without the field path (`Invalid value: -1: must be ...`), as in a
    /// `StatusCause.message`.
    pub fn body(&self) -> String {
        let phrase = self.error_type.phrase();
        let value = self.bad_value.as_ref().map(format_value);
        match (self.error_type, value) {
            // Kubernetes prints no value for these.
            (ErrorType::Required | ErrorType::Forbidden, _) | (_, None) => {
                if self.detail.is_empty() {
                    phrase.to_string()
                } else {
                    format!("{phrase}: {}", self.detail)
                }
            }
            (_, Some(v)) => {
                if self.detail.is_empty() {
                    format!("{phrase}: {v}")
                } else {
                    format!("{phrase}: {v}: {}", self.detail)
                }
            }
        }
    }
}

/// Longest echo of a bad value in a message; longer ones are cut, ending in `...`.
const MAX_VALUE_CHARS: usize = 256;

/// Formats a bad value as Kubernetes does: strings quoted, numbers and booleans bare, others JSON,
/// cut to [`MAX_VALUE_CHARS`] so that a huge value never makes a huge message.
fn format_value(v: &serde_json::Value) -> String {
    let text = match v {
        serde_json::Value::String(s) if s.chars().nth(MAX_VALUE_CHARS).is_some() => {
            let cut: String = s.chars().take(MAX_VALUE_CHARS).collect();
            return format!("{cut:?}...");
        }
        serde_json::Value::String(s) => format!("{s:?}"),
        serde_json::Value::Null => "null".to_string(),
        other => other.to_string(),
    };
    match text.char_indices().nth(MAX_VALUE_CHARS) {
        Some((end, _)) => format!("{}...", &text[..end]),
        None => text,
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.body())
    }
}

impl std::error::Error for FieldError {}

/// A warning: the request is allowed and kubectl prints `Warning: <message>`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Warning {
    pub rule: &'static str,
    pub message: String,
}

/// The outcome of running the rules on one request.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Decision {
    /// All errors, not just the first.
    pub errors: Vec<FieldError>,
    pub warnings: Vec<Warning>,
    /// RFC 6902 patch; empty when there is nothing to default (and always for validation).
    pub patch: json_patch::Patch,
    /// Ids of the rules that produced an error, warning or patch operation, in firing order,
    /// without repeats.
    pub rules_fired: Vec<&'static str>,
}

impl Decision {
    /// True when the request is admitted (warnings do not deny).
    pub fn allowed(&self) -> bool {
        self.errors.is_empty()
    }

    /// The Kubernetes `Invalid` status message:
    /// `SpinApp.core.spinkube.dev "name" is invalid: [err1, err2]` (no brackets for one error).
    pub fn message(&self, kind: &str, name: &str) -> String {
        let head = format!("{kind}.{} {name:?} is invalid", crate::api::GROUP);
        match self.errors.as_slice() {
            [] => format!("{head}: no errors"),
            [one] => format!("{head}: {one}"),
            many => {
                let all: Vec<String> = many.iter().map(ToString::to_string).collect();
                format!("{head}: [{}]", all.join(", "))
            }
        }
    }

    /// Records that `rule` fired (once).
    pub(crate) fn fired(&mut self, rule: &'static str) {
        if !self.rules_fired.contains(&rule) {
            self.rules_fired.push(rule);
        }
    }
}

/// Switches that change how strict the rules are.
#[derive(Debug, Default, Clone)]
pub struct Options {
    /// GitOps opt-in: a SpinApp whose executor does not exist (yet) is admitted with a warning.
    pub allow_missing_executor: bool,
}

/// One admission request, as much of it as the rules need. The objects are `Value`s, or
/// [`ObjectView`](crate::rules::ObjectView)s on the admission fast path.
#[derive(Debug)]
pub struct Request<'a, O = serde_json::Value> {
    pub operation: Operation,
    pub namespace: &'a str,
    pub name: &'a str,
    /// Absent on DELETE.
    pub object: Option<&'a O>,
    /// Present on UPDATE and DELETE.
    pub old_object: Option<&'a O>,
}

// By hand: derived, they would require `O: Clone`/`O: Copy`, and only references are copied.
impl<O> Clone for Request<'_, O> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<O> Copy for Request<'_, O> {}
