//! `spec.checks`: HTTP liveness and readiness probes.

use super::AppCtx;
use crate::api::HealthProbe;
use crate::rules::findings::Findings;

pub fn check(cx: &AppCtx, out: &mut Findings) {
    let Some(checks) = &cx.spec.checks else {
        return;
    };
    if let Some(p) = &checks.liveness {
        probe(out, "spec.checks.liveness", p);
        if p.success_threshold != 1 {
            out.invalid(
                "SA-PROBE-LIVENESS-SUCCESS",
                "spec.checks.liveness.successThreshold",
                p.success_threshold,
                "must be 1",
            );
        }
    }
    if let Some(p) = &checks.readiness {
        probe(out, "spec.checks.readiness", p);
    }
}

fn probe(out: &mut Findings, at: &str, p: &HealthProbe) {
    match &p.http_get {
        None => out.required(
            "SA-PROBE-HTTPGET",
            format!("{at}.httpGet"),
            "a probe needs an httpGet action",
        ),
        Some(get) => {
            if !get.path.starts_with('/') {
                out.invalid(
                    "SA-PROBE-PATH",
                    format!("{at}.httpGet.path"),
                    get.path.as_str(),
                    "must be an absolute path starting with '/'",
                );
            }
            for (i, h) in get.http_headers.iter().flatten().enumerate() {
                if h.name.is_empty()
                    || !h
                        .name
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                {
                    out.invalid(
                        "SA-PROBE-HEADER",
                        format!("{at}.httpGet.httpHeaders[{i}].name"),
                        h.name.as_str(),
                        "must be a valid HTTP header name (letters, digits and '-')",
                    );
                }
            }
        }
    }
    if p.initial_delay_seconds < 0 {
        out.invalid(
            "SA-PROBE-THRESHOLDS",
            format!("{at}.initialDelaySeconds"),
            p.initial_delay_seconds,
            "must be greater than or equal to 0",
        );
    }
    for (name, v) in [
        ("timeoutSeconds", p.timeout_seconds),
        ("periodSeconds", p.period_seconds),
        ("successThreshold", p.success_threshold),
        ("failureThreshold", p.failure_threshold),
    ] {
        if v < 1 {
            out.invalid(
                "SA-PROBE-THRESHOLDS",
                format!("{at}.{name}"),
                v,
                "must be greater than or equal to 1",
            );
        }
    }
}
