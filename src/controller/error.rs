//! Typed controller errors.

/// Errors of the controllers and the leader elector.
#[derive(Debug, thiserror::Error)]
pub enum ControllerError {
    /// A Kubernetes API call failed (transient errors are retried with backoff).
    #[error("kubernetes API {action} failed: {source}")]
    Api {
        /// What the controller was doing, e.g. "apply Deployment default/hello".
        action: String,
        /// The client error.
        #[source]
        source: kube::Error,
    },
    /// An object lacks a field the controller needs (e.g. namespace); never retried usefully.
    #[error("object {0} is missing metadata.namespace or metadata.name")]
    MissingMetadata(String),
    /// A child object could not be serialized for comparison or apply.
    #[error("serializing {kind}: {source}")]
    Serialize {
        /// Kind of the object.
        kind: &'static str,
        /// The serde error.
        #[source]
        source: serde_json::Error,
    },
    /// A cached object does not decode as its kind. The serde message is withheld: it may quote
    /// Secret data.
    #[error("cached {kind} {name} does not decode as a {kind}")]
    Decode {
        /// Kind of the object.
        kind: String,
        /// namespace/name of the object.
        name: String,
    },
    /// A SpinAppExecutor cannot be deleted yet: SpinApps in its namespace still use it.
    #[error("executor is still used by {count} SpinApp(s): {apps}")]
    ExecutorInUse {
        /// Number of apps using the executor.
        count: usize,
        /// Names of (up to a few of) those apps.
        apps: String,
    },
    /// A child's name is taken by an object this SpinApp does not own: nothing was written
    /// (see `ownership`). Retried with backoff: the object may not be watched.
    #[error("{kind} {name} exists and is not owned by this SpinApp: {reason}")]
    NotOwned {
        /// Kind of the object.
        kind: &'static str,
        /// namespace/name of the object.
        name: String,
        /// Why it is not the app's.
        reason: super::ownership::NotOwned,
    },
    /// The finalizer helper failed (adding/removing the finalizer or the cleanup itself).
    #[error("executor finalizer: {0}")]
    Finalizer(#[source] Box<kube::runtime::finalizer::Error<ControllerError>>),
    /// A leader-election round got no answer within the renew deadline.
    #[error("leader election round timed out after {0:?}")]
    LeaseTimeout(std::time::Duration),
    /// The controller's watch streams ended unexpectedly.
    #[error("controller {0} stopped unexpectedly")]
    Stopped(&'static str),
}

impl ControllerError {
    pub(crate) fn api(action: impl Into<String>, source: kube::Error) -> Self {
        ControllerError::Api {
            action: action.into(),
            source,
        }
    }

    /// Whether the error is an optimistic-concurrency conflict (HTTP 409), worth retrying soon.
    pub fn is_conflict(&self) -> bool {
        matches!(self, ControllerError::Api { source: kube::Error::Api(s), .. } if s.code == 409)
    }

    /// Short label for metrics.
    pub fn metric_label(&self) -> &'static str {
        match self {
            ControllerError::Api { .. } if self.is_conflict() => "conflict",
            ControllerError::Api { .. } => "api_error",
            ControllerError::MissingMetadata(_) => "invalid_object",
            ControllerError::Serialize { .. } => "serialize_error",
            ControllerError::Decode { .. } => "decode_error",
            ControllerError::ExecutorInUse { .. } => "deletion_blocked",
            ControllerError::NotOwned { .. } => "not_owned",
            ControllerError::Finalizer(_) => "finalizer_error",
            ControllerError::LeaseTimeout(_) => "lease_timeout",
            ControllerError::Stopped(_) => "stopped",
        }
    }
}

/// True when a client error is a 404.
pub(crate) fn is_not_found(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 404)
}

/// True when a client error is a 409.
pub(crate) fn is_conflict(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 409)
}
