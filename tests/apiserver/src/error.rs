//! Kubernetes `Status` failures, as the apiserver returns them.

use serde_json::{Value, json};

use crate::resource::ResourceKey;

/// A failed request, rendered as a `kind: Status` body with the same HTTP code.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{code} {reason}: {message}")]
pub struct ApiError {
    pub code: u16,
    pub reason: String,
    pub message: String,
    pub details: Option<Value>,
}

impl ApiError {
    pub fn new(code: u16, reason: &str, message: impl Into<String>) -> Self {
        Self {
            code,
            reason: reason.to_string(),
            message: message.into(),
            details: None,
        }
    }

    /// The standard reason for an HTTP code, used by fault injection.
    pub fn from_code(code: u16) -> Self {
        let reason = match code {
            400 => "BadRequest",
            401 => "Unauthorized",
            403 => "Forbidden",
            404 => "NotFound",
            405 => "MethodNotAllowed",
            409 => "Conflict",
            410 => "Expired",
            422 => "Invalid",
            429 => "TooManyRequests",
            500 => "InternalError",
            503 => "ServiceUnavailable",
            504 => "Timeout",
            _ => "Unknown",
        };
        Self::new(code, reason, format!("injected fault: {reason}"))
    }

    fn with_details(mut self, key: &ResourceKey, name: &str) -> Self {
        self.details = Some(json!({"name": name, "group": key.group, "kind": key.plural}));
        self
    }

    pub fn not_found(key: &ResourceKey, name: &str) -> Self {
        Self::new(
            404,
            "NotFound",
            format!("{} \"{name}\" not found", key.qualified()),
        )
        .with_details(key, name)
    }

    pub fn already_exists(key: &ResourceKey, name: &str) -> Self {
        Self::new(
            409,
            "AlreadyExists",
            format!("{} \"{name}\" already exists", key.qualified()),
        )
        .with_details(key, name)
    }

    pub fn conflict(key: &ResourceKey, name: &str) -> Self {
        Self::new(
            409,
            "Conflict",
            format!(
                "Operation cannot be fulfilled on {} \"{name}\": the object has been modified; please apply your changes to the latest version and try again",
                key.qualified()
            ),
        )
        .with_details(key, name)
    }

    /// A write whose `metadata.uid` names no object: as the apiserver answers an apply (or a
    /// patch) that carries a uid for a name nothing has.
    pub fn uid_mismatch_absent(key: &ResourceKey, name: &str, uid: &str) -> Self {
        Self::new(
            409,
            "Conflict",
            format!(
                "Operation cannot be fulfilled on {} \"{name}\": uid mismatch: the provided object specified uid {uid}, and no existing object was found",
                key.qualified()
            ),
        )
        .with_details(key, name)
    }

    /// A write that would change `metadata.uid`: 422 with the field as its cause, as the
    /// apiserver's object-meta update validation answers.
    pub fn uid_immutable(key: &ResourceKey, name: &str, uid: &str) -> Self {
        let message = format!("Invalid value: \"{uid}\": field is immutable");
        let mut err = Self::invalid(key, name, format!("metadata.uid: {message}"));
        if let Some(details) = err.details.as_mut() {
            details["causes"] = json!([{"reason": "FieldValueInvalid", "message": message,
                "field": "metadata.uid"}]);
        }
        err
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(400, "BadRequest", message)
    }

    pub fn invalid(key: &ResourceKey, name: &str, message: impl Into<String>) -> Self {
        let message = message.into();
        Self::new(
            422,
            "Invalid",
            format!("{} \"{name}\" is invalid: {message}", key.qualified()),
        )
        .with_details(key, name)
    }

    pub fn expired(message: impl Into<String>) -> Self {
        Self::new(410, "Expired", message)
    }

    /// The `Status` object body.
    pub fn to_status(&self) -> Value {
        let mut status = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        });
        if let Some(details) = &self.details {
            status["details"] = details.clone();
        }
        status
    }
}
