//! The route table: every webhook endpoint the server answers and the webhook configurations
//! register. One list, so the server, the generated configurations and the tests cannot disagree.

use kube::core::admission::Operation;

/// Whether a webhook may change the object or only judge it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WebhookKind {
    Mutating,
    Validating,
}

/// The resource a webhook is registered for (group `core.spinkube.dev`, version `v1alpha1`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WebhookResource {
    SpinApps,
    SpinAppExecutors,
}

impl WebhookResource {
    /// Plural resource name, as in `AdmissionRequest.resource.resource`.
    pub fn plural(self) -> &'static str {
        match self {
            Self::SpinApps => "spinapps",
            Self::SpinAppExecutors => "spinappexecutors",
        }
    }

    /// Kind, as in `AdmissionRequest.kind.kind`.
    pub fn kind(self) -> &'static str {
        match self {
            Self::SpinApps => "SpinApp",
            Self::SpinAppExecutors => "SpinAppExecutor",
        }
    }
}

/// What the server does with a request on a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Apply the SpinApp defaulting rules (JSON patch).
    MutateSpinApp,
    /// Apply the SpinApp validation rules.
    ValidateSpinApp,
    /// Apply the SpinAppExecutor validation rules, including the DELETE in-use check.
    ValidateExecutor,
    /// Allow without a patch. Kept for clusters upgraded from upstream, whose configuration
    /// still points at the old no-op executor defaulting webhook.
    AllowUnchanged,
}

/// One webhook endpoint.
#[derive(Debug, Clone, Copy)]
pub struct Route {
    /// URL path, identical to upstream's.
    pub path: &'static str,
    /// Webhook name in the configurations (upstream's kubebuilder names, kept for drop-in upgrades).
    pub name: &'static str,
    pub kind: WebhookKind,
    pub resource: WebhookResource,
    /// Operations registered in the webhook configuration.
    pub operations: &'static [Operation],
    pub action: Action,
    /// Whether our webhook configurations list this route. Unlisted routes are still served.
    pub registered: bool,
}

/// Every route the admission server serves.
pub const ROUTES: &[Route] = &[
    Route {
        path: "/mutate-core-spinkube-dev-v1alpha1-spinapp",
        name: "mspinapp.kb.io",
        kind: WebhookKind::Mutating,
        resource: WebhookResource::SpinApps,
        operations: &[Operation::Create, Operation::Update],
        action: Action::MutateSpinApp,
        registered: true,
    },
    Route {
        path: "/validate-core-spinkube-dev-v1alpha1-spinapp",
        name: "vspinapp.kb.io",
        kind: WebhookKind::Validating,
        resource: WebhookResource::SpinApps,
        operations: &[Operation::Create, Operation::Update],
        action: Action::ValidateSpinApp,
        registered: true,
    },
    Route {
        path: "/validate-core-spinkube-dev-v1alpha1-spinappexecutor",
        name: "vspinappexecutor.kb.io",
        kind: WebhookKind::Validating,
        resource: WebhookResource::SpinAppExecutors,
        operations: &[Operation::Create, Operation::Update, Operation::Delete],
        action: Action::ValidateExecutor,
        registered: true,
    },
    Route {
        // Not registered: a mutating webhook on executors that changes nothing only adds a
        // failure point (install deadlocks when the operator is down).
        path: "/mutate-core-spinkube-dev-v1alpha1-spinappexecutor",
        name: "mspinappexecutor.kb.io",
        kind: WebhookKind::Mutating,
        resource: WebhookResource::SpinAppExecutors,
        operations: &[Operation::Create, Operation::Update],
        action: Action::AllowUnchanged,
        registered: false,
    },
];

/// The route serving `path`, if any.
pub fn route_for_path(path: &str) -> Option<&'static Route> {
    ROUTES.iter().find(|r| r.path == path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_and_names_are_unique() {
        for (i, a) in ROUTES.iter().enumerate() {
            for b in &ROUTES[i + 1..] {
                assert_ne!(a.path, b.path);
                assert_ne!(a.name, b.name);
            }
        }
    }

    #[test]
    fn paths_follow_the_kubebuilder_scheme() {
        for r in ROUTES {
            let prefix = match r.kind {
                WebhookKind::Mutating => "/mutate-",
                WebhookKind::Validating => "/validate-",
            };
            let expected = format!(
                "{prefix}core-spinkube-dev-v1alpha1-{}",
                r.resource.kind().to_lowercase()
            );
            assert_eq!(r.path, expected);
        }
    }

    #[test]
    fn executor_mutation_is_served_but_not_registered() {
        let r = route_for_path("/mutate-core-spinkube-dev-v1alpha1-spinappexecutor").unwrap();
        assert_eq!(r.action, Action::AllowUnchanged);
        assert!(!r.registered);
        assert!(route_for_path("/nope").is_none());
    }
}
