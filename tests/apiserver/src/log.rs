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
    /// The client asked for metadata only (`Accept: ...;as=PartialObjectMetadata`).
    pub metadata_only: bool,
    /// The client's `X-Client-Id` header (see [`crate::TestApiServer::client_named`]), so a
    /// test can tell which of several clients made a request.
    pub client: Option<String>,
    /// Position in the server's request sequence when the request arrived (before any injected
    /// delay and before it was served). Shares one counter with `completion_seq`.
    pub arrival_seq: u64,
    /// Position in the same sequence once the request was served (its effect, if any, happened
    /// in between). `a.completion_seq < b.arrival_seq` means `a` took effect before `b`.
    pub completion_seq: u64,
    /// When the request arrived (for reports of retry gaps and latencies, not for ordering:
    /// use the sequence numbers for that).
    pub arrived_at: std::time::Instant,
    /// Whether the response was an injected failure (see [`crate::Faults`]).
    pub injected: bool,
    /// Injected delay before the request was served.
    pub delay: std::time::Duration,
    /// HTTP status of the response (200 for a watch that was started).
    pub status: u16,
}

impl RequestRecord {
    /// A served request for `verb` on core `resource` in `default`, for tests of code that reads
    /// the log; override fields with struct update syntax.
    pub fn synthetic(verb: Verb, resource: &str) -> Self {
        RequestRecord {
            method: String::new(),
            verb,
            group: String::new(),
            version: "v1".into(),
            resource: resource.into(),
            subresource: None,
            namespace: Some("default".into()),
            name: Some("x".into()),
            patch_type: None,
            field_manager: None,
            label_selector: None,
            field_selector: None,
            metadata_only: false,
            client: None,
            arrival_seq: 0,
            completion_seq: 0,
            arrived_at: std::time::Instant::now(),
            injected: false,
            delay: std::time::Duration::ZERO,
            status: 0,
        }
    }

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
    /// The client's `X-Client-Id`.
    pub client: Option<String>,
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

    /// Requests of the client named `id` (see [`crate::TestApiServer::client_named`]).
    pub fn client(mut self, id: &str) -> Self {
        self.client = Some(id.to_string());
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
            && opt_eq(&self.client, &r.client)
    }
}
