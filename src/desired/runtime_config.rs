//! runtime-config.toml rendering.

use super::{DesiredError, References, Referenced};
use crate::api::SpinApp;

pub(super) fn referenced(app: &SpinApp) -> Referenced {
    let _ = app;
    Referenced::default()
}

/// Renders the app's runtime config (None with `loadFromSecret`).
pub fn render_runtime_config(
    app: &SpinApp,
    refs: &dyn References,
) -> Result<Option<String>, DesiredError> {
    let _ = (app, refs);
    Ok(None)
}
