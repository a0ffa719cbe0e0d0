//! The resource types the server knows, and how they behave (scope, subresources, generation).

use std::fmt;

/// Identifies a resource collection: API group (empty for core), version and plural name.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ResourceKey {
    pub group: String,
    pub version: String,
    pub plural: String,
}

impl ResourceKey {
    pub fn new(group: &str, version: &str, plural: &str) -> Self {
        Self {
            group: group.to_string(),
            version: version.to_string(),
            plural: plural.to_string(),
        }
    }

    /// The key of a statically typed kube resource, e.g. `ResourceKey::of::<Deployment>()`.
    pub fn of<K: kube::Resource<DynamicType = ()>>() -> Self {
        Self::new(&K::group(&()), &K::version(&()), &K::plural(&()))
    }

    /// `v1` for core, `group/version` otherwise.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// `plural` for core, `plural.group` otherwise, as used in apiserver error messages.
    pub fn qualified(&self) -> String {
        if self.group.is_empty() {
            self.plural.clone()
        } else {
            format!("{}.{}", self.plural, self.group)
        }
    }
}

impl fmt::Display for ResourceKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.api_version(), self.plural)
    }
}

/// Static description of a served resource type.
#[derive(Debug)]
pub(crate) struct ResourceType {
    pub group: &'static str,
    pub version: &'static str,
    pub plural: &'static str,
    pub kind: &'static str,
    pub namespaced: bool,
    /// Has a `/status` subresource: status is ignored on the main resource and vice versa.
    pub status_subresource: bool,
    /// Maintains `metadata.generation` (bumped when anything but metadata/status changes).
    pub generation: bool,
    /// PUT without `metadata.resourceVersion` is allowed (false for custom resources).
    pub unconditional_update: bool,
    /// A custom resource: list items keep `apiVersion` and `kind`. The real API server leaves
    /// them out of the items of built-in kinds (clients must not rely on them there).
    pub custom: bool,
}

impl ResourceType {
    pub fn key(&self) -> ResourceKey {
        ResourceKey::new(self.group, self.version, self.plural)
    }

    pub fn api_version(&self) -> String {
        self.key().api_version()
    }
}

const fn rt(
    group: &'static str,
    version: &'static str,
    plural: &'static str,
    kind: &'static str,
    namespaced: bool,
    status_subresource: bool,
    generation: bool,
) -> ResourceType {
    ResourceType {
        group,
        version,
        plural,
        kind,
        namespaced,
        status_subresource,
        generation,
        unconditional_update: true,
        custom: false,
    }
}

const fn custom(plural: &'static str, kind: &'static str) -> ResourceType {
    ResourceType {
        group: "core.spinkube.dev",
        version: "v1alpha1",
        plural,
        kind,
        namespaced: true,
        status_subresource: true,
        generation: true,
        unconditional_update: false,
        custom: true,
    }
}

pub(crate) static TYPES: &[ResourceType] = &[
    custom("spinapps", "SpinApp"),
    custom("spinappexecutors", "SpinAppExecutor"),
    rt("apps", "v1", "deployments", "Deployment", true, true, true),
    rt("", "v1", "services", "Service", true, true, false),
    rt("", "v1", "secrets", "Secret", true, false, false),
    rt("", "v1", "configmaps", "ConfigMap", true, false, false),
    rt("", "v1", "namespaces", "Namespace", false, true, false),
    rt("", "v1", "events", "Event", true, false, false),
    rt("events.k8s.io", "v1", "events", "Event", true, false, false),
    rt(
        "coordination.k8s.io",
        "v1",
        "leases",
        "Lease",
        true,
        false,
        false,
    ),
    rt(
        "admissionregistration.k8s.io",
        "v1",
        "mutatingwebhookconfigurations",
        "MutatingWebhookConfiguration",
        false,
        false,
        true,
    ),
    rt(
        "admissionregistration.k8s.io",
        "v1",
        "validatingwebhookconfigurations",
        "ValidatingWebhookConfiguration",
        false,
        false,
        true,
    ),
];

pub(crate) fn lookup(group: &str, version: &str, plural: &str) -> Option<&'static ResourceType> {
    TYPES
        .iter()
        .find(|t| t.group == group && t.version == version && t.plural == plural)
}

pub(crate) fn lookup_key(key: &ResourceKey) -> Option<&'static ResourceType> {
    lookup(&key.group, &key.version, &key.plural)
}

/// Finds the type of an object from its `apiVersion` and `kind`.
pub(crate) fn lookup_kind(api_version: &str, kind: &str) -> Option<&'static ResourceType> {
    TYPES
        .iter()
        .find(|t| t.api_version() == api_version && t.kind == kind)
}
