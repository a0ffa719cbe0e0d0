//! What checks write into: field errors and warnings, built with Kubernetes' vocabulary.

use serde_json::Value;

use super::{ErrorType, FieldError, Warning};

/// Errors and warnings collected by the checks of one request.
#[derive(Debug, Default)]
pub(crate) struct Findings {
    pub errors: Vec<FieldError>,
    pub warnings: Vec<Warning>,
}

impl Findings {
    fn push(
        &mut self,
        rule: &'static str,
        field: impl Into<String>,
        error_type: ErrorType,
        bad_value: Option<Value>,
        detail: impl Into<String>,
    ) {
        self.errors.push(FieldError {
            rule,
            field: field.into(),
            error_type,
            bad_value,
            detail: detail.into(),
        });
    }

    /// `field: Invalid value: <value>: <detail>`.
    pub fn invalid(
        &mut self,
        rule: &'static str,
        field: impl Into<String>,
        value: impl Into<Value>,
        detail: impl Into<String>,
    ) {
        self.push(rule, field, ErrorType::Invalid, Some(value.into()), detail);
    }

    /// `field: Required value: <detail>`.
    pub fn required(
        &mut self,
        rule: &'static str,
        field: impl Into<String>,
        detail: impl Into<String>,
    ) {
        self.push(rule, field, ErrorType::Required, None, detail);
    }

    /// `field: Forbidden: <detail>`.
    pub fn forbidden(
        &mut self,
        rule: &'static str,
        field: impl Into<String>,
        detail: impl Into<String>,
    ) {
        self.push(rule, field, ErrorType::Forbidden, None, detail);
    }

    /// `field: Duplicate value: <value>`.
    pub fn duplicate(
        &mut self,
        rule: &'static str,
        field: impl Into<String>,
        value: impl Into<Value>,
    ) {
        self.push(rule, field, ErrorType::Duplicate, Some(value.into()), "");
    }

    /// `field: Not found: <value>: <detail>`.
    pub fn not_found(
        &mut self,
        rule: &'static str,
        field: impl Into<String>,
        value: impl Into<Value>,
        detail: impl Into<String>,
    ) {
        self.push(rule, field, ErrorType::NotFound, Some(value.into()), detail);
    }

    /// `field: Unsupported value: <value>: supported values: "a", "b"`.
    pub fn not_supported(
        &mut self,
        rule: &'static str,
        field: impl Into<String>,
        value: impl Into<Value>,
        supported: &[&str],
    ) {
        let list: Vec<String> = supported.iter().map(|s| format!("{s:?}")).collect();
        self.push(
            rule,
            field,
            ErrorType::NotSupported,
            Some(value.into()),
            format!("supported values: {}", list.join(", ")),
        );
    }

    /// A warning kubectl prints as `Warning: <message>`.
    pub fn warn(&mut self, rule: &'static str, message: impl Into<String>) {
        self.warnings.push(Warning {
            rule,
            message: message.into(),
        });
    }
}
