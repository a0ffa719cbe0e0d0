//! A child process's memory from `/proc/<pid>/status`, shared by the memory benches.

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
