//! Who held the leader Lease when, from the test API server's request log, and which
//! operator writes fall outside their writer's tenure. Shared by the leader tests.

use spin_test_apiserver::RequestRecord;

/// A stretch of the request log during which one identity held the lease: from the completion
/// of its first successful lease write to the arrival of the next identity's first one.
#[derive(Debug)]
pub struct Tenure {
    pub holder: String,
    pub start: u64,
    pub end: u64,
    /// Arrival of the holder's last lease write in the stretch (its release, after a graceful
    /// stop).
    pub last_lease_write: u64,
}

pub fn is_lease_write(r: &RequestRecord) -> bool {
    r.resource == "leases" && r.is_write() && r.status < 300
}

pub fn tenures(log: &[RequestRecord]) -> Vec<Tenure> {
    let mut lease_writes: Vec<&RequestRecord> = log.iter().filter(|r| is_lease_write(r)).collect();
    lease_writes.sort_by_key(|r| r.completion_seq);
    let mut out: Vec<Tenure> = Vec::new();
    for w in lease_writes {
        let holder = w.client.clone().unwrap_or_default();
        match out.last_mut() {
            Some(t) if t.holder == holder => t.last_lease_write = w.arrival_seq,
            _ => {
                if let Some(prev) = out.last_mut() {
                    prev.end = w.arrival_seq;
                }
                out.push(Tenure {
                    holder,
                    start: w.completion_seq,
                    end: u64::MAX,
                    last_lease_write: w.arrival_seq,
                });
            }
        }
    }
    out
}

/// Writes of operator replicas (client ids `pod-*`) other than the Lease itself.
pub fn operator_writes(log: &[RequestRecord]) -> impl Iterator<Item = &RequestRecord> {
    log.iter().filter(|r| {
        r.is_write()
            && r.resource != "leases"
            && r.client.as_deref().is_some_and(|c| c.starts_with("pod-"))
    })
}

/// Exact, not timing: a write must arrive after its writer's lease write took effect, and take
/// effect before the next holder's takeover arrived.
pub fn writes_outside_tenures<'a>(
    log: &'a [RequestRecord],
    ts: &[Tenure],
) -> Vec<&'a RequestRecord> {
    operator_writes(log)
        .filter(|w| {
            !ts.iter().any(|t| {
                Some(t.holder.as_str()) == w.client.as_deref()
                    && t.start < w.arrival_seq
                    && w.completion_seq < t.end
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use spin_test_apiserver::{RequestRecord, Verb};

    use super::*;

    #[test]
    fn tenure_check_flags_writes_of_a_non_holder_and_writes_straddling_a_takeover() {
        let at = Instant::now();
        let req =
            |client: &str, resource: &str, verb: Verb, arrival_seq: u64, completion_seq: u64| {
                RequestRecord {
                    client: Some(client.into()),
                    arrival_seq,
                    completion_seq,
                    arrived_at: at,
                    status: 200,
                    ..RequestRecord::synthetic(verb, resource)
                }
            };
        let log = vec![
            req("pod-a", "leases", Verb::Update, 1, 2),
            req("pod-a", "deployments", Verb::Patch, 3, 4),
            req("pod-b", "leases", Verb::Get, 5, 6),
            req("pod-b", "services", Verb::Patch, 7, 8), // standby writes: flagged
            req("pod-a", "leases", Verb::Update, 9, 10),
            req("pod-a", "secrets", Verb::Patch, 11, 15), // takes effect after the takeover: flagged
            req("pod-b", "leases", Verb::Update, 12, 13),
            req("pod-b", "deployments", Verb::Patch, 14, 16),
            req("pod-b", "services", Verb::Get, 17, 18),
        ];
        let ts = tenures(&log);
        assert_eq!(
            ts.iter()
                .map(|t| (t.holder.as_str(), t.start, t.end))
                .collect::<Vec<_>>(),
            [("pod-a", 2, 12), ("pod-b", 13, u64::MAX)]
        );
        let outside: Vec<(u64, &str)> = writes_outside_tenures(&log, &ts)
            .iter()
            .map(|r| (r.arrival_seq, r.resource.as_str()))
            .collect();
        assert_eq!(outside, [(7, "services"), (11, "secrets")]);
    }
}
