//! Every Kubernetes API call the controllers and the leader elector make, as RBAC rules.
//!
//! The Helm chart renders its ClusterRole/Role from [`PERMISSIONS`]; the controller tests record
//! every request against the test API server and check it is covered here (and that every entry
//! is exercised).

/// Where a permission applies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    /// In every namespace (ClusterRole + ClusterRoleBinding).
    Cluster,
    /// In the namespaces the operator watches: every namespace by default (ClusterRole), or a
    /// Role + RoleBinding in each namespace of `run --watch-namespaces` (chart `watchNamespaces`).
    WatchedNamespaces,
    /// Only in the operator's own namespace (Role + RoleBinding), e.g. the leader Lease.
    OperatorNamespace,
}

/// One RBAC rule: verbs on a resource (or subresource) of an API group.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Permission {
    /// API group (`""` for core).
    pub group: &'static str,
    /// Plural resource name.
    pub resource: &'static str,
    /// Subresource (`status`), if any; RBAC spells it `resource/subresource`.
    pub subresource: Option<&'static str>,
    /// Kubernetes verbs (get, list, watch, create, update, patch, delete).
    pub verbs: &'static [&'static str],
    /// The only objects it applies to, by their default names (the chart grants the release's
    /// names); empty: all. RBAC cannot limit `create` (or `list`/`watch` without a field
    /// selector) by name, so those stay in a rule without names.
    pub resource_names: &'static [&'static str],
    /// Watched namespaces, cluster-wide or operator namespace only.
    pub scope: Scope,
    /// Why the operator needs it.
    pub reason: &'static str,
}

impl Permission {
    /// The RBAC `resources` entry (`spinapps/status` for a subresource).
    pub fn rbac_resource(&self) -> String {
        match self.subresource {
            Some(sub) => format!("{}/{sub}", self.resource),
            None => self.resource.to_string(),
        }
    }
}

/// Every API call of the controllers and leader election.
pub const PERMISSIONS: &[Permission] = &[
    Permission {
        group: "core.spinkube.dev",
        resource: "spinapps",
        subresource: None,
        verbs: &["list", "watch"],
        resource_names: &[],
        scope: Scope::WatchedNamespaces,
        reason: "SpinApp controller cache and executor in-use checks",
    },
    Permission {
        group: "core.spinkube.dev",
        resource: "spinapps",
        subresource: Some("status"),
        verbs: &["patch"],
        resource_names: &[],
        scope: Scope::WatchedNamespaces,
        reason: "SpinApp status (merge patch, only when changed)",
    },
    Permission {
        group: "core.spinkube.dev",
        resource: "spinapps",
        subresource: Some("finalizers"),
        verbs: &["update"],
        resource_names: &[],
        scope: Scope::WatchedNamespaces,
        reason: "children's owner references set blockOwnerDeletion, which the OwnerReferencesPermissionEnforcement admission plugin (OpenShift) allows only with update on the owner's finalizers; never called",
    },
    Permission {
        group: "core.spinkube.dev",
        resource: "spinappexecutors",
        subresource: None,
        verbs: &["list", "watch", "patch"],
        resource_names: &[],
        scope: Scope::WatchedNamespaces,
        reason: "executor cache; finalizer add/remove (JSON patch)",
    },
    Permission {
        group: "apps",
        resource: "deployments",
        subresource: None,
        verbs: &["get", "list", "watch", "create", "patch", "delete"],
        resource_names: &[],
        scope: Scope::WatchedNamespaces,
        reason: "app Deployments: server-side apply (create: an apply that creates the object is authorized as create too), delete when the executor creates none; get: the owner of an object of the child's name the (labelled) cache lacks, before creating",
    },
    Permission {
        group: "",
        resource: "services",
        subresource: None,
        verbs: &["get", "list", "watch", "create", "patch"],
        resource_names: &[],
        scope: Scope::WatchedNamespaces,
        reason: "app Services: server-side apply (creating ones needs create); get: the owner of an object of the child's name the (labelled) cache lacks, before creating",
    },
    Permission {
        group: "",
        resource: "secrets",
        subresource: None,
        verbs: &["get", "list", "watch", "create", "patch", "delete"],
        resource_names: &[],
        scope: Scope::WatchedNamespaces,
        reason: "metadata-only watch (change triggers); get: data of a Secret an app references, fetched when its reconcile needs it, and the CA Secret's existence; runtime-config Secrets (apply, delete stale); CA Secret (create if absent)",
    },
    Permission {
        group: "",
        resource: "configmaps",
        subresource: None,
        verbs: &["get", "list", "watch"],
        resource_names: &[],
        scope: Scope::WatchedNamespaces,
        reason: "metadata-only watch (change triggers); get: data of a ConfigMap an app's runtime config references, fetched when its reconcile needs it",
    },
    Permission {
        group: "events.k8s.io",
        resource: "events",
        subresource: None,
        verbs: &["create", "patch"],
        resource_names: &[],
        scope: Scope::WatchedNamespaces,
        reason: "Events on SpinApps and SpinAppExecutors (patch updates a repeated event's series)",
    },
    Permission {
        group: "coordination.k8s.io",
        resource: "leases",
        subresource: None,
        verbs: &["get", "update"],
        resource_names: &[crate::controller::DEFAULT_LEASE_NAME],
        scope: Scope::OperatorNamespace,
        reason: "leader election: read and renew the release's Lease (by name)",
    },
    Permission {
        group: "coordination.k8s.io",
        resource: "leases",
        subresource: None,
        verbs: &["create"],
        resource_names: &[],
        scope: Scope::OperatorNamespace,
        reason: "leader election: create the Lease when absent (create cannot be limited by name)",
    },
];

/// The API calls of `run --metrics-auth` (`MetricsAuth`): granted only with the chart's
/// `metrics.auth.enabled` (files/permissions.json, part "metrics-auth").
pub const METRICS_AUTH_PERMISSIONS: &[Permission] = &[
    Permission {
        group: "authentication.k8s.io",
        resource: "tokenreviews",
        subresource: None,
        resource_names: &[],
        verbs: &["create"],
        scope: Scope::Cluster,
        reason: "--metrics-auth: authenticate a /metrics caller's bearer token",
    },
    Permission {
        group: "authorization.k8s.io",
        resource: "subjectaccessreviews",
        subresource: None,
        resource_names: &[],
        verbs: &["create"],
        scope: Scope::Cluster,
        reason: "--metrics-auth: authorize a /metrics caller for get on the non-resource URL /metrics",
    },
];

impl Permission {
    /// True for a permission no request uses, which an admission plugin checks instead
    /// (`spinapps/finalizers`: see its reason).
    pub fn checked_by_admission_only(&self) -> bool {
        self.subresource == Some("finalizers")
    }
}

/// Whether [`PERMISSIONS`] allows `verb` on `group`/`resource`[/`subresource`] (any object).
pub fn allows(verb: &str, group: &str, resource: &str, subresource: Option<&str>) -> bool {
    allows_named(verb, group, resource, subresource, None)
}

/// [`allows`] for the object `name` (`None`: a request naming no object, e.g. a list or a
/// create, which a rule limited by name never allows).
pub fn allows_named(
    verb: &str,
    group: &str,
    resource: &str,
    subresource: Option<&str>,
    name: Option<&str>,
) -> bool {
    PERMISSIONS.iter().any(|p| {
        p.group == group
            && p.resource == resource
            && p.subresource == subresource
            && p.verbs.contains(&verb)
            && (p.resource_names.is_empty() || name.is_some_and(|n| p.resource_names.contains(&n)))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_wildcards_and_no_duplicates() {
        let mut seen = std::collections::BTreeSet::new();
        for p in PERMISSIONS {
            assert!(!p.verbs.contains(&"*") && p.resource != "*" && p.group != "*");
            assert!(
                seen.insert((p.group, p.rbac_resource(), p.resource_names)),
                "duplicate {p:?}"
            );
        }
    }

    #[test]
    fn owner_finalizers_are_granted_because_children_block_owner_deletion() {
        // desired::build sets blockOwnerDeletion on every child's SpinApp owner reference.
        let app: crate::api::SpinApp = serde_json::from_value(serde_json::json!({
            "apiVersion": "core.spinkube.dev/v1alpha1", "kind": "SpinApp",
            "metadata": {"name": "a", "namespace": "n", "uid": "u"},
            "spec": {"image": "i", "executor": "e", "replicas": 1}
        }))
        .unwrap();
        let service = crate::desired::build(
            &app,
            &serde_json::from_value(serde_json::json!({
                "apiVersion": "core.spinkube.dev/v1alpha1", "kind": "SpinAppExecutor",
                "metadata": {"name": "e", "namespace": "n"},
                "spec": {"createDeployment": false}
            }))
            .unwrap(),
            &crate::inventory::Inventory::default(),
        )
        .unwrap()
        .service;
        let owner = &service.metadata.owner_references.unwrap()[0];
        assert_eq!(owner.block_owner_deletion, Some(true));
        assert!(allows(
            "update",
            "core.spinkube.dev",
            "spinapps",
            Some("finalizers")
        ));
    }

    #[test]
    fn allows_matches_subresources_exactly() {
        assert!(allows(
            "patch",
            "core.spinkube.dev",
            "spinapps",
            Some("status")
        ));
        assert!(!allows("patch", "core.spinkube.dev", "spinapps", None));
        assert!(!allows(
            "update",
            "core.spinkube.dev",
            "spinapps",
            Some("status")
        ));
        assert_eq!(PERMISSIONS[1].rbac_resource(), "spinapps/status");
    }

    #[test]
    fn the_lease_is_read_and_renewed_by_name_and_created_unnamed() {
        let lease = crate::controller::DEFAULT_LEASE_NAME;
        for verb in ["get", "update"] {
            assert!(allows_named(
                verb,
                "coordination.k8s.io",
                "leases",
                None,
                Some(lease)
            ));
            assert!(!allows_named(
                verb,
                "coordination.k8s.io",
                "leases",
                None,
                Some("other")
            ));
        }
        // RBAC cannot limit create by name: the create request names no object.
        assert!(allows_named(
            "create",
            "coordination.k8s.io",
            "leases",
            None,
            None
        ));
        assert!(!allows_named(
            "list",
            "coordination.k8s.io",
            "leases",
            None,
            None
        ));
    }
}
