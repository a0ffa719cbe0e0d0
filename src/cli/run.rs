//! `spin-operator run`: builds the shared pieces (kube client, shutdown signal, readiness,
//! metrics registry), then starts the components: health server, admission webhooks and the
//! controllers. Every component gets the same shutdown signal and drains on it.

use std::io::Stdout;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use anyhow::Context;
use prometheus_client::registry::Registry;
use spin_operator::admission::audit::{self, AuditLog, LogWriter};
use spin_operator::admission::cache::{self, CacheConfig};
use spin_operator::admission::executor_fetch::ExecutorFetch;
use spin_operator::admission::health::{METRICS_PATH, MetricsAuth};
use spin_operator::admission::{
    AdmissionState, Budget, HttpsServer, MAX_BODY_BYTES, Readiness, ReadinessCheck, Server,
    ServerLimits, budget, deadline_for, health_router, router,
};
use spin_operator::controller::{self, ControllerConfig, LeaderElector, Metrics};
use spin_operator::metrics::OperatorMetrics;
use spin_operator::namespaces::WatchNamespaces;
use spin_operator::rules::Options;
use spin_operator::tls::{self, ReloadingResolver};
use tokio::task::JoinSet;

use super::shutdown::Shutdown;

/// The readiness check that goes false as soon as shutdown begins.
const SERVING_CHECK: &str = "not-shutting-down";

/// Log output format.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    /// One JSON object per line (for log pipelines).
    Json,
    /// Human-readable.
    Text,
}

/// Arguments of `spin-operator run`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Address of the HTTPS admission webhook server.
    #[arg(
        long,
        env = "SPIN_OPERATOR_WEBHOOK_ADDR",
        default_value = "0.0.0.0:9443"
    )]
    pub webhook_addr: SocketAddr,
    /// Directory holding the serving certificate (`tls.crt`, `tls.key`).
    #[arg(
        long,
        env = "SPIN_OPERATOR_CERT_DIR",
        default_value = "/tmp/k8s-webhook-server/serving-certs"
    )]
    pub cert_dir: PathBuf,
    /// Address of the plain-HTTP health and metrics server (/healthz, /readyz, /metrics).
    #[arg(
        long,
        env = "SPIN_OPERATOR_HEALTH_ADDR",
        default_value = "0.0.0.0:8080"
    )]
    pub health_addr: SocketAddr,
    /// Admit SpinApps whose executor does not exist yet, with a warning (for GitOps tools that
    /// apply apps before executors).
    #[arg(long, env = "SPIN_OPERATOR_ALLOW_MISSING_EXECUTOR")]
    pub allow_missing_executor: bool,
    /// Do not watch Secret/ConfigMap metadata; "referenced object missing" warnings are then off.
    #[arg(long, env = "SPIN_OPERATOR_SKIP_REFERENCE_WATCH")]
    pub skip_reference_watch: bool,
    /// Never tell admission users whether a Secret exists: no "referenced Secret not found"
    /// warnings, and the webhooks do not watch Secrets (ConfigMap warnings stay). For clusters
    /// where users who create SpinApps may not read Secrets.
    #[arg(long, env = "SPIN_OPERATOR_HIDE_SECRET_EXISTENCE")]
    pub hide_secret_existence: bool,
    /// Publish a Normal Event for each new SpinApp (its first Ready condition, e.g.
    /// DeploymentUnavailable while its pods start): one request per new app. Off, `kubectl
    /// describe spinapp` shows the same in the Ready condition and its lastTransitionTime, and
    /// Events still mark every later change of Ready (becoming available, failures).
    #[arg(long, env = "SPIN_OPERATOR_CREATION_EVENTS")]
    pub creation_events: bool,
    /// Do not serve the admission webhooks.
    #[arg(long, env = "SPIN_OPERATOR_DISABLE_WEBHOOKS")]
    pub disable_webhooks: bool,
    /// Do not run the controllers.
    #[arg(long, env = "SPIN_OPERATOR_DISABLE_CONTROLLERS")]
    pub disable_controllers: bool,
    /// Run the controllers without a leader Lease (a single replica only).
    #[arg(long, env = "SPIN_OPERATOR_NO_LEADER_ELECTION")]
    pub no_leader_election: bool,
    /// Generate and rotate the serving certificate ourselves (for clusters without
    /// cert-manager): CA and pair in a Secret, caBundle patched into our webhook configurations.
    #[arg(long, env = "SPIN_OPERATOR_SELF_SIGNED")]
    pub self_signed: bool,
    /// Keep the caBundle of both webhook configurations equal to this PEM file, as `--self-signed`
    /// does with its own CA (the chart's `tls.existingSecret` mode: the Secret's `ca.crt`, or
    /// `tls.caBundle`). Implies `--webhook-ca-bundle-readiness`.
    #[arg(
        long,
        env = "SPIN_OPERATOR_CA_BUNDLE_FILE",
        conflicts_with = "self_signed"
    )]
    pub ca_bundle_file: Option<PathBuf>,
    /// Ready only while both webhook configurations carry a caBundle that verifies the
    /// certificate this replica serves for the webhook Service, so `helm install --wait` returns
    /// once the webhooks can be called (always on with `--self-signed` and `--ca-bundle-file`;
    /// the chart sets it in every mode).
    #[arg(long, env = "SPIN_OPERATOR_WEBHOOK_CA_BUNDLE_READINESS")]
    pub webhook_ca_bundle_readiness: bool,
    /// Webhook Service name (the self-signed certificate's DNS names derive from it).
    #[arg(
        long,
        env = "SPIN_OPERATOR_WEBHOOK_SERVICE",
        default_value = "spin-operator-webhook"
    )]
    pub webhook_service: String,
    /// Cluster DNS domain: the self-signed certificate also names
    /// `<service>.<namespace>.svc.<domain>` (chart value `kubernetesClusterDomain`).
    #[arg(
        long,
        env = "SPIN_OPERATOR_CLUSTER_DOMAIN",
        default_value = spin_operator::tls::selfsigned::DEFAULT_CLUSTER_DOMAIN,
        value_parser = cluster_domain
    )]
    pub cluster_domain: String,
    /// Namespace of the operator (webhook Service, certificate Secret, leader Lease).
    #[arg(long, env = "POD_NAMESPACE", default_value = "spin-operator")]
    pub namespace: String,
    /// Secret holding the self-signed CA and serving pair.
    #[arg(
        long,
        env = "SPIN_OPERATOR_WEBHOOK_SECRET",
        default_value = "spin-operator-webhook-cert"
    )]
    pub webhook_secret: String,
    /// MutatingWebhookConfiguration whose caBundle is kept current and checked.
    #[arg(
        long,
        env = "SPIN_OPERATOR_MUTATING_WEBHOOK_CONFIGURATION",
        default_value = "spin-operator-mutating-webhook-configuration"
    )]
    pub mutating_webhook_configuration: String,
    /// ValidatingWebhookConfiguration whose caBundle is kept current and checked.
    #[arg(
        long,
        env = "SPIN_OPERATOR_VALIDATING_WEBHOOK_CONFIGURATION",
        default_value = "spin-operator-validating-webhook-configuration"
    )]
    pub validating_webhook_configuration: String,
    /// Seconds between re-reconciles of a converged SpinApp (each spread by up to +10 %). A
    /// converged app makes no write on resync; a shorter period repairs drift sooner.
    #[arg(
        long,
        env = "SPIN_OPERATOR_RESYNC_SECONDS",
        default_value_t = 300,
        value_parser = clap::value_parser!(u64).range(1..)
    )]
    pub resync_seconds: u64,
    /// Watch, admit and reconcile only these namespaces (comma-separated; default: all).
    /// SpinApps elsewhere are neither reconciled nor found in the webhooks' caches.
    #[arg(
        long,
        env = "SPIN_OPERATOR_WATCH_NAMESPACES",
        value_delimiter = ',',
        value_name = "NAMESPACE,..."
    )]
    pub watch_namespaces: Vec<String>,
    /// Name of the leader-election Lease (in the operator's namespace). Operators sharing a
    /// namespace need different names, or only one of them leads; the chart passes
    /// `<release fullname>-leader`.
    #[arg(
        long,
        env = "SPIN_OPERATOR_LEADER_ELECTION_LEASE",
        default_value = controller::DEFAULT_LEASE_NAME,
        value_parser = lease_name
    )]
    pub leader_election_lease: String,
    /// The webhook configurations' `timeoutSeconds` (the chart passes `webhooks.timeoutSeconds`):
    /// requests are answered (or given up with 408) a margin before the API server gives up.
    #[arg(
        long,
        env = "SPIN_OPERATOR_WEBHOOK_TIMEOUT_SECONDS",
        default_value_t = 5,
        value_parser = clap::value_parser!(u64).range(1..=30)
    )]
    pub webhook_timeout_seconds: u64,
    /// Memory the admission requests in flight may take at once (a Kubernetes quantity, e.g.
    /// `128Mi`); past it requests are answered 429 with Retry-After. Default: half the
    /// container's cgroup memory limit, or 128Mi without one.
    #[arg(
        long,
        env = "SPIN_OPERATOR_WEBHOOK_MEMORY_BUDGET",
        value_name = "QUANTITY",
        value_parser = memory_quantity
    )]
    pub webhook_memory_budget: Option<usize>,
    /// Seconds to keep serving after SIGTERM with /readyz answering 503, so that Endpoints drop
    /// the pod before its servers stop accepting (the lame-duck period). A second signal ends it.
    #[arg(
        long,
        env = "SPIN_OPERATOR_SHUTDOWN_LAME_DUCK_SECONDS",
        default_value_t = 10
    )]
    pub shutdown_lame_duck_seconds: u64,
    /// Seconds in-flight requests may still run once the servers stop accepting (after the
    /// lame-duck period). Lame duck + drain must fit the pod's terminationGracePeriodSeconds.
    #[arg(
        long,
        env = "SPIN_OPERATOR_SHUTDOWN_DRAIN_SECONDS",
        default_value_t = 15
    )]
    pub shutdown_drain_seconds: u64,
    #[command(flatten)]
    pub tls: TlsArgs,
    /// Serve /metrics only to callers whose bearer token the API server authenticates
    /// (TokenReview) and authorizes for `get` on the non-resource URL /metrics
    /// (SubjectAccessReview), as controller-runtime's metrics filter does. /healthz and /readyz
    /// stay open for the kubelet's probes.
    #[arg(long, env = "SPIN_OPERATOR_METRICS_AUTH")]
    pub metrics_auth: bool,
    /// Log format.
    #[arg(
        long,
        env = "SPIN_OPERATOR_LOG_FORMAT",
        value_enum,
        default_value = "json"
    )]
    pub log_format: LogFormat,
}

/// TLS settings of the webhook server.
#[derive(clap::Args, Debug)]
pub struct TlsArgs {
    /// Lowest TLS version the webhook server accepts: VersionTLS12 or VersionTLS13 (also 1.2, 1.3).
    #[arg(
        long,
        env = "SPIN_OPERATOR_TLS_MIN_VERSION",
        default_value = "VersionTLS12"
    )]
    pub tls_min_version: String,
    /// Cipher suites the webhook server offers (comma-separated IANA names, e.g.
    /// TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, TLS_AES_128_GCM_SHA256); default: all that rustls
    /// supports. TLS 1.3 suites listed here apply to TLS 1.3.
    #[arg(
        long,
        env = "SPIN_OPERATOR_TLS_CIPHER_SUITES",
        value_delimiter = ',',
        value_name = "SUITE,..."
    )]
    pub tls_cipher_suites: Vec<String>,
    /// Serve only clients whose certificate chains to a CA in this PEM file (the API server
    /// presents one through its AdmissionConfiguration kubeconfig). Re-read when it changes.
    /// Without it every caller is unauthenticated, and the audit line says so.
    #[arg(long, env = "SPIN_OPERATOR_CLIENT_CA_FILE")]
    pub client_ca_file: Option<PathBuf>,
}

impl TlsArgs {
    fn options(&self) -> Result<tls::TlsOptions, tls::TlsError> {
        tls::TlsOptions::parse(&self.tls_min_version, &self.tls_cipher_suites)
    }
}

impl Args {
    /// Limits of both servers: the defaults, with the drain period of `--shutdown-drain-seconds`.
    fn server_limits(&self) -> ServerLimits {
        ServerLimits {
            drain_timeout: Duration::from_secs(self.shutdown_drain_seconds),
            ..ServerLimits::default()
        }
    }

    /// `--watch-namespaces`, validated.
    fn namespaces(&self) -> anyhow::Result<WatchNamespaces> {
        Ok(WatchNamespaces::only(&self.watch_namespaces)?)
    }
}

/// The JSON log's output, once `init_logging` installed that format: the audit writer thread
/// writes its lines there itself (`AuditLog::start_json`).
static JSON_LOG: OnceLock<LogWriter<Stdout>> = OnceLock::new();

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Audit lines of admission decisions are written in batches by their writer thread.
    let out = LogWriter::new(std::io::stdout());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(out.clone());
    // Ignore "already set" (e.g. when embedded in tests): then this format is not the one in use.
    match format {
        LogFormat::Json => {
            if builder.json().flatten_event(true).try_init().is_ok() {
                let _ = JSON_LOG.set(out);
            }
        }
        LogFormat::Text => {
            let _ = builder.try_init();
        }
    }
}

pub async fn run(args: Args) -> anyhow::Result<ExitCode> {
    init_logging(args.log_format);
    let namespaces = args.namespaces()?;
    // Checked before any API call: a typo in a suite name fails fast and says which.
    args.tls.options()?;
    if !namespaces.is_cluster_wide() {
        tracing::info!(namespaces = ?namespaces.namespaces(), "watching only these namespaces");
    }
    let client = kube::Client::try_default()
        .await
        .context("building the Kubernetes client (in-cluster or kubeconfig)")?;
    let readiness = Readiness::new();
    let shutdown = Shutdown::install(
        Duration::from_secs(args.shutdown_lame_duck_seconds),
        readiness.register(SERVING_CHECK),
    );
    let mut registry = Registry::default();
    let metrics = spin_operator::metrics::register(
        &mut registry,
        !args.disable_controllers,
        !args.disable_webhooks,
    );
    let mut components: JoinSet<anyhow::Result<()>> = JoinSet::new();

    let controllers = metrics.controllers.clone().map(|controller_metrics| {
        let mut config = ControllerConfig::from_env();
        config.metrics = controller_metrics;
        config.settings.resync = std::time::Duration::from_secs(args.resync_seconds);
        config.settings.creation_events = args.creation_events;
        config.namespaces = namespaces.clone();
        if args.no_leader_election {
            config.leader_election = None;
        }
        name_lease(&mut config, &args);
        config
    });
    let is_leader = leader_flag(
        &args,
        &client,
        controllers.as_ref(),
        &shutdown,
        &mut components,
    );

    if !args.disable_webhooks {
        start_webhooks(
            &args,
            client.clone(),
            is_leader,
            &shutdown,
            &readiness,
            &metrics,
            &mut components,
        )
        .await?;
    }
    if let Some(config) = controllers {
        let state = config.state.clone();
        follow(readiness.register("controllers"), move || state.is_ready());
        // The controllers serve no clients: they stop (and hand the Lease over) at once.
        let stop = shutdown.begun();
        let client = client.clone();
        components.spawn(async move {
            controller::run(client, config, stop)
                .await
                .context("controllers")
        });
    } else {
        // The controllers trim the heap while they run; without them the webhook caches'
        // initial lists would stay as RSS (BENCHMARKS.md, "Unrelated Secrets").
        let stop = shutdown.wait();
        components.spawn(async move {
            tokio::select! {
                _ = stop => {}
                _ = controller::heap::release_free_memory_every(controller::HEAP_TRIM_INTERVAL) => {}
            }
            Ok(())
        });
    }
    // The health server starts last so /metrics sees every registered metric. Same accept
    // loop and limits as the webhook server: a slowloris here must not exhaust descriptors.
    let registry = Arc::new(registry);
    let metrics_auth = args
        .metrics_auth
        .then(|| MetricsAuth::new(client.clone(), METRICS_PATH));
    let health = health_router(readiness.clone(), registry, metrics_auth);
    let server = Server::bind_plain(args.health_addr, health, args.server_limits())
        .await
        .with_context(|| format!("binding the health server on {}", args.health_addr))?;
    tracing::info!(addr = %server.local_addr()?, metrics_auth = args.metrics_auth, "health and metrics server listening");
    spawn_server(server, &shutdown, &mut components);

    // Run until shutdown; a component failing on its own is fatal.
    let mut failed = false;
    while let Some(joined) = components.join_next().await {
        match joined {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                tracing::error!(error = format!("{e:#}"), "component failed");
                failed = true;
            }
            Err(e) => {
                tracing::error!(error = %e, "component panicked");
                failed = true;
            }
        }
        if failed {
            break;
        }
    }
    components.shutdown().await;
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// Serves through the lame-duck period (every response then sends its client elsewhere:
/// `Connection: close`, or a GOAWAY), then drains.
fn spawn_server(server: Server, shutdown: &Shutdown, components: &mut JoinSet<anyhow::Result<()>>) {
    let (lame_duck, stop) = (shutdown.begun(), shutdown.wait());
    components.spawn(async move {
        server.serve_with_lame_duck(lame_duck, stop).await;
        Ok(())
    });
}

fn name_lease(config: &mut ControllerConfig, args: &Args) {
    if let Some(election) = config.leader_election.as_mut() {
        election.lease_name = args.leader_election_lease.clone();
    }
}

/// A Lease name: a DNS-1123 subdomain (lowercase alphanumerics, '-' and '.', at most 253).
fn cluster_domain(s: &str) -> Result<String, String> {
    spin_operator::rules::names::dns1123_subdomain(s)
        .map(|()| s.to_string())
        .map_err(|e| format!("{s:?} is not a valid cluster domain: {e}"))
}

fn lease_name(s: &str) -> Result<String, String> {
    let valid = !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|label| {
            !label.is_empty()
                && label
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        });
    if valid {
        Ok(s.to_string())
    } else {
        Err(format!(
            "{s:?} is not a valid Lease name: lowercase letters, digits, '-' and '.', at most 253 characters, starting and ending with a letter or digit"
        ))
    }
}

/// A memory size as a Kubernetes quantity (`128Mi`, `200M`, `134217728`); at least what one
/// largest admission request may cost.
fn memory_quantity(s: &str) -> Result<usize, String> {
    let bytes = spin_operator::rules::quantity::Quantity::parse(s)
        .ok()
        .filter(|q| !q.is_negative())
        .and_then(|q| q.to_whole_units())
        .and_then(|n| usize::try_from(n).ok())
        .ok_or_else(|| format!("{s:?} is not a memory quantity such as 128Mi"))?;
    let least = budget::body_cost(MAX_BODY_BYTES);
    if bytes < least {
        return Err(format!(
            "{s:?} is below what reading one largest admission request takes ({} Mi)",
            least.div_ceil(1 << 20)
        ));
    }
    Ok(bytes)
}

/// The admission memory budget: the flag, else half the cgroup memory limit, else the default.
fn memory_budget(args: &Args) -> Budget {
    let bytes = args.webhook_memory_budget.unwrap_or_else(|| {
        budget::cgroup_memory_limit().map_or(budget::DEFAULT_BUDGET_BYTES, |limit| {
            budget::budget_for_limit(limit, MAX_BODY_BYTES)
        })
    });
    Budget::new(bytes)
}

/// Who may write shared state (the self-signed certificate, the caBundle): the controllers' leader, a
/// stand-alone Lease holder when the controllers are off, or this replica alone without election.
fn leader_flag(
    args: &Args,
    client: &kube::Client,
    controllers: Option<&ControllerConfig>,
    shutdown: &Shutdown,
    components: &mut JoinSet<anyhow::Result<()>>,
) -> Arc<dyn Fn() -> bool + Send + Sync> {
    if let Some(config) = controllers {
        let state = config.state.clone();
        return Arc::new(move || state.is_leader());
    }
    if args.no_leader_election || !(args.self_signed || args.ca_bundle_file.is_some()) {
        return Arc::new(|| true);
    }
    let mut config = ControllerConfig::from_env();
    name_lease(&mut config, args);
    let Some(election) = config.leader_election else {
        return Arc::new(|| true);
    };
    let elector = LeaderElector::new(client.clone(), election, Metrics::default());
    let leading = elector.subscribe();
    let stop = shutdown.begun();
    components.spawn(async move {
        elector.run(stop).await;
        Ok(())
    });
    Arc::new(move || *leading.borrow())
}

/// Keeps a readiness check in step with a condition owned by another component.
pub(super) fn follow(check: ReadinessCheck, condition: impl Fn() -> bool + Send + 'static) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(std::time::Duration::from_millis(500));
        loop {
            tick.tick().await;
            check.set_ready(condition());
        }
    });
}

async fn start_webhooks(
    args: &Args,
    client: kube::Client,
    is_leader: Arc<dyn Fn() -> bool + Send + Sync>,
    shutdown: &Shutdown,
    readiness: &Readiness,
    metrics: &OperatorMetrics,
    components: &mut JoinSet<anyhow::Result<()>>,
) -> anyhow::Result<()> {
    let caches_synced = readiness.register("webhook-caches");

    // One resolver serves every handshake; its certificate is swapped in place on rotation.
    let resolver = Arc::new(ReloadingResolver::new(metrics.tls.clone()));
    super::certificates::start(args, &client, &resolver, is_leader, shutdown, readiness);
    let has_certificate = resolver.clone();
    follow(readiness.register("webhook-certificate"), move || {
        has_certificate.has_certificate()
    });
    let mut tls_options = args.tls.options()?;
    if let Some(ca_file) = &args.tls.client_ca_file {
        let verifier = Arc::new(
            tls::ReloadingClientVerifier::load(ca_file.clone())
                .with_context(|| format!("loading --client-ca-file {}", ca_file.display()))?,
        );
        tokio::spawn(verifier.clone().watch(tls::DEFAULT_POLL_INTERVAL));
        tls_options.client_verifier = Some(verifier);
    }
    let tls = Arc::new(tls::server_config_with(resolver, &tls_options)?);

    let fetch = ExecutorFetch::new(client.clone());
    let (lookup, writers) = cache::stores(CacheConfig {
        watch_references: !args.skip_reference_watch,
        watch_secrets: !args.hide_secret_existence,
        namespaces: args.namespaces()?,
    });
    let stop = shutdown.wait();
    components.spawn(async move {
        // The watches never end on their own; they stop with the process.
        tokio::select! {
            () = writers.run(client) => {}
            () = stop => {}
        }
        Ok(())
    });
    let synced = lookup.clone();
    let stop = shutdown.wait();
    components.spawn(async move {
        tokio::select! {
            ready = synced.wait_until_ready() => {
                ready.context("webhook caches stopped before syncing")?;
                tracing::info!("webhook caches synced");
                caches_synced.set_ready(true);
            }
            () = stop => {}
        }
        Ok(())
    });

    let state = AdmissionState::new(
        cache::shared(lookup),
        Options {
            allow_missing_executor: args.allow_missing_executor,
        },
        metrics.admission.clone().unwrap_or_default(),
    )
    .with_budget(memory_budget(args))
    .with_deadline(deadline_for(args.webhook_timeout_seconds))
    // An executor created a moment before its app (`kubectl apply -f dir/`) may not be in the
    // cache yet: fetched once on a miss.
    .with_executor_fetch(fetch);
    let state = match JSON_LOG.get() {
        Some(out) => {
            let dropped = state.metrics.audit_dropped();
            state.with_audit(AuditLog::start_json(
                audit::QUEUE_LINES,
                dropped,
                out.clone(),
            ))
        }
        None => state,
    };
    tracing::info!(
        memory_budget_bytes = state.budget.total_bytes(),
        deadline_ms = state.deadline.as_millis() as u64,
        "admission limits"
    );
    let server =
        HttpsServer::bind(args.webhook_addr, tls, router(state), args.server_limits()).await?;
    tracing::info!(addr = %server.local_addr()?, "admission webhook server listening");
    spawn_server(server, shutdown, components);
    Ok(())
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    #[derive(Parser)]
    struct Run {
        #[command(flatten)]
        args: super::Args,
    }

    #[test]
    fn watch_namespaces_split_on_commas_and_are_validated() {
        let run = Run::try_parse_from(["run", "--watch-namespaces", "team-b,team-a"]).unwrap();
        assert_eq!(
            run.args.namespaces().unwrap().namespaces(),
            ["team-a", "team-b"]
        );
        let run =
            Run::try_parse_from(["run", "--watch-namespaces=a", "--watch-namespaces=b"]).unwrap();
        assert_eq!(run.args.namespaces().unwrap().namespaces(), ["a", "b"]);
        let run = Run::try_parse_from(["run", "--watch-namespaces=a,Not_A_Namespace"]).unwrap();
        let err = run.args.namespaces().unwrap_err().to_string();
        assert!(err.contains("\"Not_A_Namespace\""), "{err}");
    }

    #[test]
    fn webhook_timeout_and_memory_budget_are_validated() {
        let run = Run::try_parse_from(["run"]).unwrap();
        assert_eq!(run.args.webhook_timeout_seconds, 5);
        assert_eq!(run.args.webhook_memory_budget, None);
        let run = Run::try_parse_from([
            "run",
            "--webhook-timeout-seconds=10",
            "--webhook-memory-budget=200Mi",
        ])
        .unwrap();
        assert_eq!(run.args.webhook_timeout_seconds, 10);
        assert_eq!(run.args.webhook_memory_budget, Some(200 << 20));
        assert_eq!(super::memory_budget(&run.args).total_bytes(), 200 << 20);
        for bad in [
            "--webhook-timeout-seconds=0",
            "--webhook-timeout-seconds=31",
        ] {
            assert!(Run::try_parse_from(["run", bad]).is_err(), "{bad} accepted");
        }
        for bad in ["lots", "-1Gi", "1Mi"] {
            let err = Run::try_parse_from(["run", &format!("--webhook-memory-budget={bad}")])
                .err()
                .unwrap_or_else(|| panic!("{bad:?} accepted"))
                .to_string();
            assert!(err.contains(bad), "{bad:?}: {err}");
        }
    }

    #[test]
    fn the_lease_name_defaults_to_upstream_compatible_and_is_validated() {
        let run = Run::try_parse_from(["run"]).unwrap();
        assert_eq!(run.args.leader_election_lease, "spin-operator-leader");
        let run =
            Run::try_parse_from(["run", "--leader-election-lease=tenant-a.ops-leader"]).unwrap();
        assert_eq!(run.args.leader_election_lease, "tenant-a.ops-leader");
        for bad in ["", "Tenant", "-a", "a-", "a..b", &"a".repeat(254)] {
            let err = Run::try_parse_from(["run", &format!("--leader-election-lease={bad}")])
                .err()
                .unwrap_or_else(|| panic!("{bad:?} accepted"))
                .to_string();
            assert!(err.contains("not a valid Lease name"), "{bad:?}: {err}");
        }
    }

    #[test]
    fn the_cluster_domain_defaults_to_cluster_local_and_is_validated() {
        let run = Run::try_parse_from(["run"]).unwrap();
        assert_eq!(run.args.cluster_domain, "cluster.local");
        let run = Run::try_parse_from(["run", "--cluster-domain=corp.example"]).unwrap();
        assert_eq!(run.args.cluster_domain, "corp.example");
        for bad in ["", "Corp.Example", "corp..example", "-corp"] {
            let err = Run::try_parse_from(["run", &format!("--cluster-domain={bad}")])
                .err()
                .unwrap_or_else(|| panic!("{bad:?} accepted"))
                .to_string();
            assert!(err.contains("not a valid cluster domain"), "{bad:?}: {err}");
        }
    }
}
