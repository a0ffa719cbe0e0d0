//! The operator child process of the memory benches: its runtime and client, how it reports to
//! the parent, and its memory from `/proc/<pid>/status`.

use std::future::Future;

use spin_operator::controller::heap;

/// Runs `body` with a client of the API server at `url` (default namespace `ns`) on a runtime
/// set up as `spin-operator run` sets up its own (malloc arenas capped first).
pub fn block_on_client<F: Future>(
    url: &str,
    ns: &str,
    body: impl FnOnce(kube::Client) -> F,
) -> F::Output {
    heap::limit_arenas(heap::OPERATOR_ARENAS);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut kc = kube::Config::new(url.parse().unwrap());
        kc.default_namespace = ns.to_string();
        body(kube::Client::try_from(kc).unwrap()).await
    })
}

/// Replaces the file at `path` with `line`, write then rename: the parent never reads a
/// half-written file.
pub fn publish(path: &str, line: &str) {
    let tmp = format!("{path}.tmp");
    if std::fs::write(&tmp, line).is_ok() {
        let _ = std::fs::rename(&tmp, path);
    }
}

/// A `/proc/<pid>/status` memory field (`VmRSS:`, `VmHWM:`) in MiB.
fn status_mib(pid: u32, field: &str) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

/// The process's resident memory now.
pub fn rss_mib(pid: u32) -> f64 {
    status_mib(pid, "VmRSS:")
}

/// The process's peak RSS so far (what a memory limit must allow).
pub fn peak_mib(pid: u32) -> f64 {
    status_mib(pid, "VmHWM:")
}
