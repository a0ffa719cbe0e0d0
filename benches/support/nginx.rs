//! nginx (Debian's package) answering a fixed AdmissionReview over TLS 1.3 with keep-alive on
//! loopback: the static-TLS floor of `admission_load`. Its own master and worker processes, with a
//! config, certificate and temp paths in a throwaway directory; stopped (SIGTERM to the master,
//! which stops its workers) when dropped.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Nginx {
    child: Child,
    pub addr: SocketAddr,
    _dir: tempfile::TempDir,
}

/// The nginx binary: on `PATH` or Debian's `/usr/sbin/nginx`; installed with apt-get when
/// `install` and missing (as root). `Err` says why there is no floor.
pub fn find(install: bool) -> Result<PathBuf, String> {
    let on_path = || {
        std::env::var_os("PATH")
            .into_iter()
            .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
            .chain([PathBuf::from("/usr/sbin")])
            .map(|d| d.join("nginx"))
            .find(|p| p.is_file())
    };
    if let Some(p) = on_path() {
        return Ok(p);
    }
    if !install {
        return Err("nginx is not installed (apt-get install -y nginx)".into());
    }
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Err("nginx is not installed and this is not root: apt-get install -y nginx".into());
    }
    eprintln!("installing nginx (Debian) for the static-TLS floor: apt-get install -y nginx");
    let ok = |c: &mut Command| c.stdout(Stdio::null()).status().is_ok_and(|s| s.success());
    if !(ok(Command::new("apt-get").args(["update", "-qq"]))
        && ok(Command::new("apt-get")
            .args(["install", "-y", "-qq", "nginx"])
            .env("DEBIAN_FRONTEND", "noninteractive")))
    {
        return Err("apt-get install -y nginx failed".into());
    }
    on_path().ok_or_else(|| "nginx still not found after apt-get install".into())
}

/// nginx's quoted-string syntax: backslash escapes, and `$` would start a variable.
fn quoted(body: &str) -> Result<String, String> {
    if body.contains('$') {
        return Err("the fixed response contains '$', which nginx reads as a variable".into());
    }
    Ok(format!(
        "'{}'",
        body.replace('\\', "\\\\").replace('\'', "\\'")
    ))
}

impl Nginx {
    /// Starts `bin` with `workers` worker processes, answering every POST to `path` with
    /// `response` (JSON), TLS 1.3 only, keep-alive without a request limit, no access log.
    pub fn start(
        bin: &Path,
        cert_pem: &str,
        key_pem: &str,
        path: &str,
        response: &str,
        workers: usize,
    ) -> Result<Self, String> {
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let d = dir.path();
        std::fs::write(d.join("cert.pem"), cert_pem).map_err(|e| e.to_string())?;
        std::fs::write(d.join("key.pem"), key_pem).map_err(|e| e.to_string())?;
        // A free loopback port (released just before nginx binds it).
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(|e| e.to_string())?
            .port();
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        let dirs = d.display();
        let config = format!(
            "daemon off;\n\
             worker_processes {workers};\n\
             pid {dirs}/nginx.pid;\n\
             error_log stderr warn;\n\
             events {{ worker_connections 1024; }}\n\
             http {{\n\
               access_log off;\n\
               client_body_temp_path {dirs}/body;\n\
               proxy_temp_path {dirs}/proxy;\n\
               fastcgi_temp_path {dirs}/fastcgi;\n\
               uwsgi_temp_path {dirs}/uwsgi;\n\
               scgi_temp_path {dirs}/scgi;\n\
               keepalive_requests 100000000;\n\
               keepalive_timeout 300s;\n\
               server {{\n\
                 listen {addr} ssl;\n\
                 ssl_protocols TLSv1.3;\n\
                 ssl_certificate {dirs}/cert.pem;\n\
                 ssl_certificate_key {dirs}/key.pem;\n\
                 location = {path} {{\n\
                   default_type application/json;\n\
                   return 200 {};\n\
                 }}\n\
               }}\n\
             }}\n",
            quoted(response)?
        );
        std::fs::write(d.join("nginx.conf"), config).map_err(|e| e.to_string())?;
        let mut child = Command::new(bin)
            .arg("-p")
            .arg(d)
            .arg("-c")
            .arg(d.join("nginx.conf"))
            .args(["-e", "stderr"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .map_err(|e| format!("starting {}: {e}", bin.display()))?;
        // Bounded wait for the port.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return Err(format!("nginx exited at start: {status}"));
            }
            if TcpStream::connect_timeout(&addr, Duration::from_millis(100)).is_ok() {
                break;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return Err("nginx did not listen within 10 s".into());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(Self {
            child,
            addr,
            _dir: dir,
        })
    }

    /// The master's and its workers' pids (the workers are the master's children).
    pub fn pids(&self) -> Vec<i32> {
        let master = self.child.id() as i32;
        let mut pids = vec![master];
        if let Ok(entries) = std::fs::read_dir("/proc") {
            for e in entries.flatten() {
                let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
                    continue;
                };
                let ppid = std::fs::read_to_string(e.path().join("stat"))
                    .ok()
                    .and_then(|s| {
                        let close = s.rfind(')')?;
                        s[close + 1..]
                            .split_whitespace()
                            .nth(1)?
                            .parse::<i32>()
                            .ok()
                    });
                if ppid == Some(master) {
                    pids.push(pid);
                }
            }
        }
        pids
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        // SIGTERM to our own child's pid: the master stops its workers, then exits.
        // SAFETY: kill on the pid of a child we spawned and have not reaped.
        unsafe {
            libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM);
        }
        let _ = self.child.wait();
    }
}

/// CPU seconds (utime + stime) of processes `pids`, from `/proc/<pid>/stat`.
pub fn cpu_seconds(pids: &[i32]) -> f64 {
    pids.iter()
        .filter_map(|pid| {
            let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            let close = s.rfind(')')?;
            let fields: Vec<&str> = s[close + 1..].split_whitespace().collect();
            Some(
                fields
                    .get(11..13)?
                    .iter()
                    .filter_map(|f| f.parse::<f64>().ok())
                    .sum::<f64>()
                    / 100.0,
            )
        })
        .sum()
}
