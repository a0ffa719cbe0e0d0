//! Admission load over HTTPS keep-alive on loopback.
//!
//! The production server (`HttpsServer` + `router`, rustls through `tls::ReloadingResolver`,
//! rcgen certificate) runs on its own Tokio runtime; its lookup is the reflector-backed
//! `CachedLookup` filled from the in-memory test API server, with the executor fetch on a cache
//! miss as in `run`. A separate load generator runtime
//! drives it with N keep-alive HTTP/1.1 connections (one reqwest client per connection, requests
//! back to back) for a fixed duration per point. The same `HttpsServer` with a one-route router
//! returning a fixed small JSON is the trivial endpoint for the throughput ratio. The floor is
//! nginx (Debian's package, `support/nginx.rs`; installed with apt-get when missing) answering the
//! webhook's own validate response as a fixed AdmissionReview over TLS 1.3 with keep-alive,
//! driven by the same load generator at the same connection counts.
//!
//! The server logs as `spin-operator run --log-format json` does (level info, one JSON line per
//! admission decision, queued to the audit writer thread, which serializes it itself), to
//! `/dev/null` (in a pod, stdout is a pipe). To price the audit line: `LOAD_LOG=off` runs without
//! a log subscriber, `LOAD_LOG=events` queues it as a `tracing` event formatted by the
//! subscriber's JSON format on the writer thread (before `AuditLog::start_json`),
//! `LOAD_LOG=inline` formats and writes each line on the request path (as before the queue).
//!
//! `cargo bench --bench admission_load`. Environment:
//! - `LOAD_SECS` (default 3) per point and endpoint; `LOAD_CONNS` (default `1,8,32,128`);
//!   `LOAD_ROUTES` (default `nginx,trivial,validate,mutate`; a subset is for profiling one
//!   endpoint, ratios need `nginx` or `trivial`).
//! - `LOAD_ROUNDS` (default 3): each point's time is split into this many rounds, and the
//!   endpoints take turns in every round, so that the machine's load changing during a run
//!   weighs on all of them alike. The ratio columns give the whole point's ratio and, in
//!   brackets, its lowest and highest in a round. `ratio to nginx at equal CPU` is nginx's CPU
//!   per request (its processes and the load generator's threads) over the webhook's (server
//!   threads, audit writer and load generator): the throughput ratio were both cores the
//!   bench's alone, steadier than req/s while other jobs share the cores.
//! - `LOAD_TAIL=1` prints, per point, more latency percentiles, the server threads' preemptions,
//!   and how long the server's and the load generator's threads were runnable but waited for a
//!   CPU, per request.
//! - What-ifs for the tail on the two shared cores (docs/benchmarks-history.md, run F): `LOAD_NICE=N` runs the
//!   load generator's threads at nice N, `LOAD_BATCH=1` as `SCHED_BATCH`; `SERVER_WORKERS`,
//!   `SERVER_IO_EVENTS` and `SERVER_EVENT_INTERVAL` tune the server runtime (worker threads,
//!   `max_io_events_per_tick`, `event_interval`); `TRIVIAL_SPIN_US=N` makes the trivial endpoint
//!   burn N µs of CPU per request (at which server cost the tail crosses the target).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::routing::post;
use prometheus_client::registry::Registry;
use serde_json::Value;
use spin_operator::admission::audit::{AuditLog, LogWriter, QUEUE_LINES};
use spin_operator::admission::cache::{self, CacheConfig};
use spin_operator::admission::executor_fetch::ExecutorFetch;
use spin_operator::admission::{
    AdmissionMetrics, AdmissionState, HttpsServer, ServerLimits, router,
};
use spin_operator::rules::Options;
use spin_operator::tls;
use spin_test_apiserver::TestApiServer;

#[path = "../tests/support/pki.rs"]
mod support_pki;
use support_pki::{Pki, pki};
#[path = "../tests/support/review_bodies.rs"]
mod bodies;
#[path = "support/nginx.rs"]
mod nginx;
use bodies::{MUTATE_APP, VALIDATE_APP};

const HOST: &str = "webhook.bench";
const TRIVIAL: &str = "/trivial";

/// Bind the production HTTPS server with `router` and serve it on the current runtime.
async fn serve(pki: &Pki, router: Router) -> SocketAddr {
    let resolver = Arc::new(tls::ReloadingResolver::new(None));
    resolver
        .offer_pem(pki.cert_pem.as_bytes(), pki.key_pem.as_bytes(), "bench")
        .unwrap();
    let config = Arc::new(tls::server_config(resolver).unwrap());
    let server = HttpsServer::bind(
        "127.0.0.1:0".parse().unwrap(),
        config,
        router,
        ServerLimits::default(),
    )
    .await
    .unwrap();
    let addr = server.local_addr().unwrap();
    tokio::spawn(server.serve(std::future::pending()));
    addr
}

struct Point {
    /// Latency of every successful request, µs (sorted once merged).
    lat: Vec<u64>,
    errors: u64,
    secs: f64,
    /// CPU time of the server's and of the load generator's threads during the timed window.
    cpu: ThreadCpu,
}

/// CPU seconds used by the threads named `server` and `load` (the two runtimes), from
/// `/proc/self/task/*/stat` (utime + stime, 100 ticks per second on Linux). Shows how the two
/// cores are split between the server and the load generator.
#[derive(Debug, Default, Clone, Copy)]
struct ThreadCpu {
    server: f64,
    load: f64,
    /// Involuntary context switches (preemptions by the OS scheduler) of the server's threads.
    server_preempted: f64,
    /// Seconds the server's and the load generator's threads were runnable but waited for a CPU
    /// (`/proc/self/task/*/schedstat`, second field).
    server_waited: f64,
    load_waited: f64,
    /// The audit writer thread (its lines are formatted and written there).
    audit: f64,
}

impl ThreadCpu {
    fn now() -> Self {
        let mut cpu = Self::default();
        let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
            return cpu;
        };
        for task in tasks.flatten() {
            let Ok(stat) = std::fs::read_to_string(task.path().join("stat")) else {
                continue;
            };
            let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
                continue;
            };
            let name = &stat[open + 1..close];
            let fields: Vec<&str> = stat[close + 1..].split_whitespace().collect();
            let ticks: f64 = fields
                .get(11..13)
                .into_iter()
                .flatten()
                .filter_map(|f| f.parse::<f64>().ok())
                .sum();
            let waited = std::fs::read_to_string(task.path().join("schedstat"))
                .ok()
                .and_then(|stat| stat.split_whitespace().nth(1)?.parse::<f64>().ok())
                .map_or(0.0, |ns| ns / 1e9);
            if name.starts_with("server") {
                cpu.server += ticks / 100.0;
                cpu.server_waited += waited;
                cpu.server_preempted += std::fs::read_to_string(task.path().join("status"))
                    .ok()
                    .and_then(|status| {
                        status
                            .lines()
                            .find_map(|l| l.strip_prefix("nonvoluntary_ctxt_switches:"))
                            .and_then(|n| n.trim().parse::<f64>().ok())
                    })
                    .unwrap_or(0.0);
            } else if name.starts_with("audit-log") {
                cpu.audit += ticks / 100.0;
            } else if name.starts_with("load") {
                cpu.load += ticks / 100.0;
                cpu.load_waited += waited;
            }
        }
        cpu
    }

    fn plus(self, other: Self) -> Self {
        Self {
            server: self.server + other.server,
            load: self.load + other.load,
            server_preempted: self.server_preempted + other.server_preempted,
            server_waited: self.server_waited + other.server_waited,
            load_waited: self.load_waited + other.load_waited,
            audit: self.audit + other.audit,
        }
    }

    fn since(self, before: Self) -> Self {
        Self {
            server: self.server - before.server,
            load: self.load - before.load,
            server_preempted: self.server_preempted - before.server_preempted,
            server_waited: self.server_waited - before.server_waited,
            load_waited: self.load_waited - before.load_waited,
            audit: self.audit - before.audit,
        }
    }
}

impl Point {
    fn requests(&self) -> u64 {
        self.lat.len() as u64
    }

    fn rps(&self) -> f64 {
        self.requests() as f64 / self.secs
    }

    /// The rounds of one endpoint as one point (their requests, time and CPU added up).
    fn merge(rounds: Vec<Point>) -> Point {
        let mut all = Point {
            lat: Vec::new(),
            errors: 0,
            secs: 0.0,
            cpu: ThreadCpu::default(),
        };
        for p in rounds {
            all.lat.extend(p.lat);
            all.errors += p.errors;
            all.secs += p.secs;
            all.cpu = all.cpu.plus(p.cpu);
        }
        all.lat.sort_unstable();
        all
    }

    /// Latency percentile `p` (0..1), µs.
    fn pct(&self, p: f64) -> u64 {
        let n = self.lat.len();
        if n == 0 {
            0
        } else {
            self.lat[((n as f64 * p) as usize).min(n - 1)]
        }
    }

    /// `LOAD_TAIL=1`: more percentiles, preemptions and scheduler waits per request.
    fn print_tail(&self, path: &str, conns: usize) {
        let (cpu, n) = (&self.cpu, self.lat.len().max(1) as f64);
        eprintln!(
            "{path} conns={conns}: server threads preempted {:.0} times/s, {:.2} per 100 requests",
            cpu.server_preempted / self.secs,
            cpu.server_preempted * 100.0 / n
        );
        eprintln!(
            "{path} conns={conns}: runnable but waiting for a CPU, per request: server threads \
             {:.1} us, load generator threads {:.1} us",
            cpu.server_waited * 1e6 / n,
            cpu.load_waited * 1e6 / n
        );
        eprintln!(
            "{path} conns={conns}: p50 {} p90 {} p95 {} p98 {} p99 {} p99.5 {} p99.9 {} max {} us",
            self.pct(0.5),
            self.pct(0.9),
            self.pct(0.95),
            self.pct(0.98),
            self.pct(0.99),
            self.pct(0.995),
            self.pct(0.999),
            self.lat.last().copied().unwrap_or(0)
        );
    }
}

fn client(pki: &Pki, addr: SocketAddr) -> reqwest::Client {
    reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(pki.ca.pem().as_bytes()).unwrap())
        .resolve(HOST, addr)
        .http1_only()
        .pool_max_idle_per_host(1)
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

/// `conns` connections, each sending `body` to `path` back to back for `duration`. The server's
/// CPU is that of processes `server_pids` when given (nginx), else of this process's `server`
/// threads.
async fn drive(
    pki: &Pki,
    addr: SocketAddr,
    path: &str,
    body: &Bytes,
    conns: usize,
    duration: Duration,
    server_pids: &[i32],
) -> Point {
    let url = format!("https://{HOST}:{}{path}", addr.port());
    let clients: Vec<_> = (0..conns).map(|_| client(pki, addr)).collect();
    // Warm up: handshake every connection before the clock starts.
    for c in &clients {
        let r = c.post(&url).body(body.clone()).send().await.unwrap();
        assert_eq!(r.status(), 200);
        r.bytes().await.unwrap();
    }
    let cpu_before = ThreadCpu::now();
    let external_before = nginx::cpu_seconds(server_pids);
    let start = Instant::now();
    let deadline = start + duration;
    let tasks: Vec<_> = clients
        .into_iter()
        .map(|c| {
            let url = url.clone();
            let body = body.clone();
            tokio::spawn(async move {
                let mut lat = Vec::with_capacity(1 << 14);
                let mut errors = 0u64;
                while Instant::now() < deadline {
                    let t = Instant::now();
                    let ok = match c
                        .post(&url)
                        .header("content-type", "application/json")
                        .body(body.clone())
                        .send()
                        .await
                    {
                        Ok(r) => r.status() == 200 && r.bytes().await.is_ok(),
                        Err(_) => false,
                    };
                    if ok {
                        lat.push(t.elapsed().as_micros() as u64);
                    } else {
                        errors += 1;
                    }
                }
                (lat, errors)
            })
        })
        .collect();
    let mut all = Vec::new();
    let mut errors = 0;
    for t in tasks {
        let (lat, e) = t.await.unwrap();
        all.extend(lat);
        errors += e;
    }
    let secs = start.elapsed().as_secs_f64();
    let mut cpu = ThreadCpu::now().since(cpu_before);
    if !server_pids.is_empty() {
        cpu.server = nginx::cpu_seconds(server_pids) - external_before;
    }
    Point {
        lat: all,
        errors,
        secs,
        cpu,
    }
}

/// One endpoint the load generator drives.
struct Endpoint<'a> {
    name: &'static str,
    addr: SocketAddr,
    path: &'static str,
    body: &'a Bytes,
    /// Processes whose CPU is the server's (nginx); none: this process's `server` threads.
    pids: &'a [i32],
    /// A webhook route (its requests are admissions).
    admission: bool,
}

impl<'a> Endpoint<'a> {
    fn new(name: &'static str, addr: SocketAddr, path: &'static str, body: &'a Bytes) -> Self {
        Self {
            name,
            addr,
            path,
            body,
            pids: &[],
            admission: false,
        }
    }
}

/// A numeric setting from the environment; `None` when unset or not a number.
fn env_number<T: std::str::FromStr>(name: &str) -> Option<T> {
    std::env::var(name).ok()?.parse().ok()
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --all-targets` runs this binary without it:
    // then only a short smoke run (checks the responses, keeps the test suite fast).
    let bench = std::env::args().any(|a| a == "--bench");
    let secs: f64 = env_number("LOAD_SECS").unwrap_or(if bench { 3.0 } else { 0.2 });
    let conn_points: Vec<usize> = std::env::var("LOAD_CONNS")
        .ok()
        .map(|s| s.split(',').filter_map(|c| c.trim().parse().ok()).collect())
        .unwrap_or_else(|| if bench { vec![1, 8, 32, 128] } else { vec![2] });
    let duration = Duration::from_secs_f64(secs);
    // Which endpoints to drive (a subset is for profiling one of them; ratios need `trivial`).
    let routes_env = std::env::var("LOAD_ROUTES").unwrap_or_default();
    let routes: Vec<&str> = if routes_env.is_empty() {
        vec!["nginx", "trivial", "validate", "mutate"]
    } else {
        routes_env.split(',').map(str::trim).collect()
    };
    let _ = rustls::crypto::ring::default_provider().install_default();
    let log_mode = std::env::var("LOAD_LOG").unwrap_or_else(|_| "queued".into());
    // As `spin-operator run --log-format json`, to /dev/null instead of stdout.
    let log_out = LogWriter::new(std::fs::File::create("/dev/null").unwrap());
    if log_mode != "off" {
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new("info"))
            .json()
            .flatten_event(true)
            .with_writer(log_out.clone())
            .init();
    }

    // The server side: API test server, reflector caches, webhook and trivial HTTPS servers.
    let mut server_builder = tokio::runtime::Builder::new_multi_thread();
    server_builder.worker_threads(env_number("SERVER_WORKERS").unwrap_or(2));
    if let Some(n) = env_number("SERVER_IO_EVENTS") {
        server_builder.max_io_events_per_tick(n);
    }
    if let Some(n) = env_number("SERVER_EVENT_INTERVAL") {
        server_builder.event_interval(n);
    }
    let server_rt = server_builder
        .thread_name("server")
        .enable_all()
        .build()
        .unwrap();
    let trivial_spin = Duration::from_micros(env_number("TRIVIAL_SPIN_US").unwrap_or(0));
    let pki = pki(HOST);
    let (api, validate_addr, trivial_addr) = server_rt.block_on(async {
        let api = TestApiServer::start().await;
        api.put(bodies::executor());
        let (lookup, writers) = cache::stores(CacheConfig::default());
        tokio::spawn(writers.run(api.client()));
        lookup.wait_until_ready().await.unwrap();
        let mut registry = Registry::default();
        let metrics = AdmissionMetrics::register(&mut registry);
        let dropped = metrics.audit_dropped();
        // As `run` builds it: a SpinApp review that misses its executor in the cache would fetch
        // it (never here: the executor is cached, and the bench asserts 0 API calls).
        let mut state = AdmissionState::new(Arc::new(lookup), Options::default(), metrics)
            .with_executor_fetch(ExecutorFetch::new(api.client()));
        match log_mode.as_str() {
            "inline" => state = state.with_audit(AuditLog::in_place(dropped)),
            "events" | "off" => {}
            _ => state = state.with_audit(AuditLog::start_json(QUEUE_LINES, dropped, log_out)),
        }
        let webhook = serve(&pki, router(state)).await;
        let trivial_router = Router::new().route(
            TRIVIAL,
            post(move |_body: Bytes| async move {
                // What-if: a trivial endpoint that burns `spin` of CPU, to see at which server
                // cost per request the tail crosses the target.
                let start = Instant::now();
                while start.elapsed() < trivial_spin {
                    std::hint::spin_loop();
                }
                ([("content-type", "application/json")], r#"{"ok":true}"#)
            }),
        );
        let trivial = serve(&pki, trivial_router).await;
        (api, webhook, trivial)
    });
    // Let the watches open before counting API calls.
    std::thread::sleep(Duration::from_millis(500));

    let load_nice: i32 = env_number("LOAD_NICE").unwrap_or(0);
    let load_batch = std::env::var("LOAD_BATCH").is_ok();
    let load_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("load")
        .on_thread_start(move || {
            if load_batch {
                let param = libc::sched_param { sched_priority: 0 };
                // SAFETY: pid 0 is the calling thread; SCHED_BATCH needs no privilege.
                unsafe {
                    libc::sched_setscheduler(0, libc::SCHED_BATCH, &param);
                }
            }
            if load_nice != 0 {
                // SAFETY: setpriority on this thread's own id only changes its scheduling weight.
                unsafe {
                    libc::setpriority(libc::PRIO_PROCESS, libc::gettid() as libc::id_t, load_nice);
                }
            }
        })
        .enable_all()
        .build()
        .unwrap();

    let validate_body = Bytes::from(bodies::validate_body());
    let mutate_body = Bytes::from(bodies::mutate_body());

    // Sanity: validate allows, mutate returns a patch (outside the timed runs). The validate
    // response is nginx's fixed answer.
    let validate_response = load_rt.block_on(async {
        let c = client(&pki, validate_addr);
        let mut validate_response = String::new();
        for (path, body) in [(VALIDATE_APP, &validate_body), (MUTATE_APP, &mutate_body)] {
            let url = format!("https://{HOST}:{}{path}", validate_addr.port());
            let r: Value = c
                .post(&url)
                .body(body.clone())
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            assert_eq!(r["response"]["allowed"], true, "{path}: {r}");
            if path == MUTATE_APP {
                assert!(r["response"]["patch"].is_string(), "mutate patches: {r}");
            } else {
                validate_response = r.to_string();
            }
        }
        validate_response
    });

    // The static-TLS floor: nginx with as many workers as the server runtime has threads.
    let nginx_floor = routes
        .contains(&"nginx")
        .then(|| {
            let workers = env_number("SERVER_WORKERS").unwrap_or(2);
            nginx::find(bench).and_then(|bin| {
                nginx::Nginx::start(
                    &bin,
                    &pki.cert_pem,
                    &pki.key_pem,
                    VALIDATE_APP,
                    &validate_response,
                    workers,
                )
            })
        })
        .and_then(|started| {
            started
                .map_err(|why| eprintln!("no nginx floor: {why}"))
                .ok()
        });

    let api_calls_before = api.requests().len();
    println!(
        "# Admission load: {secs} s per point, HTTPS keep-alive HTTP/1.1, loopback, \
         audit log: {log_mode} (LOAD_LOG)\n"
    );
    println!(
        "| endpoint | conns | requests | req/s | p50 ms | p99 ms | errors | ratio to nginx | \
         ratio to nginx at equal CPU | ratio to trivial | server CPU µs/req | \
         audit writer CPU µs/req | load generator CPU µs/req |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    // Every endpoint of a point in turn, `rounds` times, each for its share of the point's time:
    // a change in the machine's load (other jobs on the shared cores) falls on all of them alike
    // instead of on whichever ran then.
    let nginx_pids = nginx_floor.as_ref().map(|n| n.pids()).unwrap_or_default();
    let mut endpoints: Vec<Endpoint> = Vec::new();
    if let Some(n) = &nginx_floor {
        endpoints.push(Endpoint::new(
            "nginx (floor)",
            n.addr,
            VALIDATE_APP,
            &validate_body,
        ));
        endpoints[0].pids = &nginx_pids;
    }
    if routes.contains(&"trivial") {
        endpoints.push(Endpoint::new(
            "trivial",
            trivial_addr,
            TRIVIAL,
            &validate_body,
        ));
    }
    for (route, name, path, body) in [
        ("validate", "validate SpinApp", VALIDATE_APP, &validate_body),
        ("mutate", "mutate SpinApp", MUTATE_APP, &mutate_body),
    ] {
        if routes.contains(&route) {
            endpoints.push(Endpoint {
                admission: true,
                ..Endpoint::new(name, validate_addr, path, body)
            });
        }
    }
    let rounds: u32 = env_number("LOAD_ROUNDS")
        .unwrap_or(if bench { 3 } else { 1 })
        .max(1);
    let slice = duration / rounds;
    let nginx_at = endpoints.iter().position(|e| e.name.starts_with("nginx"));
    let trivial_at = endpoints.iter().position(|e| e.path == TRIVIAL);
    let mut total_admissions = 0;
    for &conns in &conn_points {
        let mut points: Vec<Vec<Point>> = endpoints.iter().map(|_| Vec::new()).collect();
        for _ in 0..rounds {
            for (e, of) in endpoints.iter().zip(&mut points) {
                let p = load_rt.block_on(drive(&pki, e.addr, e.path, e.body, conns, slice, e.pids));
                assert_eq!(p.errors, 0, "{}: failed requests", e.name);
                if e.admission {
                    total_admissions += p.requests() + conns as u64;
                }
                of.push(p);
            }
        }
        // The ratio over the whole point, and its lowest and highest in a round.
        let ratio = |i: usize, base: Option<usize>| -> String {
            let Some(b) = base.filter(|b| *b != i) else {
                return "—".into();
            };
            let per_round: Vec<f64> = points[i]
                .iter()
                .zip(&points[b])
                .map(|(p, q)| p.rps() / q.rps())
                .collect();
            let rps = |at: usize| {
                let n: u64 = points[at].iter().map(Point::requests).sum();
                n as f64 / points[at].iter().map(|p| p.secs).sum::<f64>()
            };
            let all = rps(i) / rps(b);
            if rounds == 1 {
                return format!("{all:.2}");
            }
            let (lo, hi) = per_round
                .iter()
                .fold((f64::MAX, f64::MIN), |(lo, hi), r| (lo.min(*r), hi.max(*r)));
            format!("{all:.2} ({lo:.2}–{hi:.2})")
        };
        let ratios: Vec<(String, String)> = (0..endpoints.len())
            .map(|i| {
                (
                    ratio(i, nginx_at),
                    ratio(i, trivial_at.filter(|_| endpoints[i].admission)),
                )
            })
            .collect();
        let merged: Vec<Point> = points.into_iter().map(Point::merge).collect();
        // CPU of the whole exchange per request: the server's (and its audit writer's) and the
        // load generator's, which is the same client for every endpoint.
        let cpu_per_request =
            |p: &Point| (p.cpu.server + p.cpu.audit + p.cpu.load) / p.requests().max(1) as f64;
        for ((e, p), (to_nginx, to_trivial)) in endpoints.iter().zip(&merged).zip(ratios) {
            if std::env::var("LOAD_TAIL").is_ok() {
                p.print_tail(e.path, conns);
            }
            // What the throughput ratio would be with both cores the bench's alone: the floor's
            // CPU per request over this endpoint's. Steadier than req/s while other jobs share
            // the cores.
            let at_equal_cpu = nginx_at
                .filter(|_| e.admission)
                .map_or("—".to_string(), |n| {
                    format!("{:.2}", cpu_per_request(&merged[n]) / cpu_per_request(p))
                });
            let per_request = |seconds: f64| seconds * 1e6 / p.requests().max(1) as f64;
            println!(
                "| {} | {conns} | {} | {:.0} | {:.2} | {:.2} | {} | {to_nginx} | {at_equal_cpu} | {to_trivial} | {:.1} | {:.1} | {:.1} |",
                e.name,
                p.requests(),
                p.rps(),
                p.pct(0.50) as f64 / 1000.0,
                p.pct(0.99) as f64 / 1000.0,
                p.errors,
                per_request(p.cpu.server),
                per_request(p.cpu.audit),
                per_request(p.cpu.load),
            );
        }
    }
    let api_calls = api.requests().len() - api_calls_before;
    println!(
        "\nAPI calls during {total_admissions} admissions: {api_calls} \
         (lookup = reflector-backed CachedLookup; watch events only)"
    );
    assert_eq!(api_calls, 0, "admission must not call the API server");
    drop(load_rt);
    drop(nginx_floor);
    drop(api);
    drop(server_rt);
}
