//! The request log: what every client request was and how it was answered.

/// The Kubernetes verb of a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Verb {
    Get,
    List,
    Watch,
    Create,
    Update,
    Patch,
    Delete,
    DeleteCollection,
    /// Discovery and anything that is not a resource request.
    Other,
}

impl Verb {
    /// Verbs that change state.
    pub fn is_write(self) -> bool {
        matches!(
            self,
            Verb::Create | Verb::Update | Verb::Patch | Verb::Delete | Verb::DeleteCollection
        )
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Verb::Get => "get",
            Verb::List => "list",
            Verb::Watch => "watch",
            Verb::Create => "create",
            Verb::Update => "update",
            Verb::Patch => "patch",
            Verb::Delete => "delete",
            Verb::DeleteCollection => "deletecollection",
            Verb::Other => "other",
        }
    }
}

/// One served request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestRecord {
    pub method: String,
    pub verb: Verb,
    pub group: String,
    pub version: String,
    /// Plural resource name, e.g. `deployments`.
    pub resource: String,
    pub subresource: Option<String>,
    pub namespace: Option<String>,
    pub name: Option<String>,
    /// Content type of a PATCH body, e.g. `application/apply-patch+yaml`.
    pub patch_type: Option<String>,
    pub field_manager: Option<String>,
    /// `labelSelector` of a list, watch or deletecollection.
    pub label_selector: Option<String>,
    /// `fieldSelector` of a list, watch or deletecollection.
    pub field_selector: Option<String>,
    /// HTTP status of the response (200 for a watch that was started).
    pub status: u16,
}

impl RequestRecord {
    pub fn is_write(&self) -> bool {
        self.verb.is_write()
    }
}

/// Selects requests, for fault injection and for counting. Unset fields match anything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RequestMatcher {
    pub verb: Option<Verb>,
    pub writes_only: bool,
    pub group: Option<String>,
    pub resource: Option<String>,
    /// `Some("")` matches only requests without a subresource.
    pub subresource: Option<String>,
    pub namespace: Option<String>,
    pub name: Option<String>,
}

impl RequestMatcher {
    /// Matches every request.
    pub fn any() -> Self {
        Self::default()
    }

    /// Matches create/update/patch/delete/deletecollection.
    pub fn writes() -> Self {
        Self {
            writes_only: true,
            ..Self::default()
        }
    }

    pub fn verb(mut self, verb: Verb) -> Self {
        self.verb = Some(verb);
        self
    }

    pub fn group(mut self, group: &str) -> Self {
        self.group = Some(group.to_string());
        self
    }

    /// Plural resource name, e.g. `deployments`.
    pub fn resource(mut self, plural: &str) -> Self {
        self.resource = Some(plural.to_string());
        self
    }

    pub fn subresource(mut self, sub: &str) -> Self {
        self.subresource = Some(sub.to_string());
        self
    }

    pub fn namespace(mut self, ns: &str) -> Self {
        self.namespace = Some(ns.to_string());
        self
    }

    pub fn name(mut self, name: &str) -> Self {
        self.name = Some(name.to_string());
        self
    }

    pub fn matches(&self, r: &RequestRecord) -> bool {
        let opt_eq = |want: &Option<String>, got: &Option<String>| {
            want.as_ref()
                .is_none_or(|w| got.as_deref().unwrap_or("") == w)
        };
        self.verb.is_none_or(|v| v == r.verb)
            && (!self.writes_only || r.verb.is_write())
            && self.group.as_ref().is_none_or(|g| *g == r.group)
            && self.resource.as_ref().is_none_or(|p| *p == r.resource)
            && opt_eq(&self.subresource, &r.subresource)
            && opt_eq(&self.namespace, &r.namespace)
            && opt_eq(&self.name, &r.name)
    }
}
