//! Fault injection: failing and delaying matching requests (counted or at random), breaking
//! watches and holding their events back.

use std::sync::Arc;
use std::time::Duration;

use crate::Shared;
use crate::log::{RequestMatcher, RequestRecord, Verb};

/// SplitMix64: a tiny, well-distributed deterministic generator. Tests want reproducible
/// sequences from a seed, not cryptographic quality, so no crate is needed for it.
#[derive(Debug, Clone)]
pub(crate) struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `[0, 1)` (the top 53 bits, exactly representable).
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform in `[0, max]`.
    pub fn duration_up_to(&mut self, max: Duration) -> Duration {
        let nanos = u64::try_from(max.as_nanos()).unwrap_or(u64::MAX);
        if nanos == 0 {
            return Duration::ZERO;
        }
        Duration::from_nanos(self.next_u64() % nanos.saturating_add(1))
    }
}

#[derive(Debug)]
struct RandomFailure {
    matcher: RequestMatcher,
    probability: f64,
    status: u16,
    rng: Rng,
}

impl RandomFailure {
    /// A 409 from a real apiserver on create means AlreadyExists (a claim about the store that
    /// would be false here); Conflict is what update and patch can get. So 409 rules only ever
    /// hit update/patch.
    fn applies_to(&self, r: &RequestRecord) -> bool {
        self.matcher.matches(r)
            && (self.status != 409 || matches!(r.verb, Verb::Update | Verb::Patch))
    }
}

#[derive(Debug)]
struct RandomDelay {
    matcher: RequestMatcher,
    max: Duration,
    rng: Rng,
}

#[derive(Debug, Default)]
pub(crate) struct FaultRules {
    failures: Vec<(RequestMatcher, usize, u16)>,
    delays: Vec<(RequestMatcher, Duration)>,
    random_failures: Vec<RandomFailure>,
    random_delays: Vec<RandomDelay>,
}

impl FaultRules {
    /// The total delay for a request (fixed delays plus one draw per matching random rule).
    pub fn delay_for(&mut self, r: &RequestRecord) -> Duration {
        let fixed: Duration = self
            .delays
            .iter()
            .filter(|(m, _)| m.matches(r))
            .map(|(_, d)| *d)
            .sum();
        let random: Duration = self
            .random_delays
            .iter_mut()
            .filter(|d| d.matcher.matches(r))
            .map(|d| d.rng.duration_up_to(d.max))
            .sum();
        fixed + random
    }

    /// Consumes one counted failure matching the request, else draws from the random rules
    /// (first matching rule that fires wins).
    pub fn take_failure(&mut self, r: &RequestRecord) -> Option<u16> {
        if let Some(rule) = self
            .failures
            .iter_mut()
            .find(|(m, n, _)| *n > 0 && m.matches(r))
        {
            rule.1 -= 1;
            let code = rule.2;
            self.failures.retain(|(_, n, _)| *n > 0);
            return Some(code);
        }
        self.random_failures
            .iter_mut()
            .filter(|f| f.applies_to(r))
            // Every matching rule draws, so one rule's sequence does not depend on another's.
            .fold(None, |hit, f| {
                let fires = f.rng.next_f64() < f.probability;
                hit.or(fires.then_some(f.status))
            })
    }
}

/// Handle for injecting faults into a [`crate::TestApiServer`].
///
/// Injected failures happen before the request is served, so a failed request has no effect
/// (like a request rejected by the apiserver). Random rules are deterministic per seed: each
/// rule draws from its own generator once per matching request, in the order requests arrive
/// (which concurrency makes vary between runs; the rates do not).
#[derive(Clone)]
pub struct Faults {
    pub(crate) shared: Arc<Shared>,
}

impl Faults {
    /// Fails the next `n` requests matching `matcher` with `status` (a Kubernetes `Status` body;
    /// 429 responses carry `Retry-After: 1`). The request has no effect.
    pub fn fail_next(&self, n: usize, status: u16, matcher: RequestMatcher) {
        self.shared.faults().failures.push((matcher, n, status));
    }

    /// Fails each request matching `matcher` with probability `probability` (clamped to
    /// `[0, 1]`) and `status`, drawn from a generator seeded with `seed`, until
    /// [`Faults::clear`]. A 409 rule hits only update and patch requests (where the apiserver
    /// answers Conflict). The request has no effect. Counted [`Faults::fail_next`] rules take
    /// precedence.
    pub fn fail_randomly(&self, matcher: RequestMatcher, probability: f64, status: u16, seed: u64) {
        self.shared.faults().random_failures.push(RandomFailure {
            matcher,
            probability: probability.clamp(0.0, 1.0),
            status,
            rng: Rng::new(seed),
        });
    }

    /// Delays every request matching `matcher` by `delay` until [`Faults::clear`].
    pub fn delay(&self, matcher: RequestMatcher, delay: Duration) {
        self.shared.faults().delays.push((matcher, delay));
    }

    /// Delays each request matching `matcher` by a uniform random duration in `[0, max]`
    /// (generator seeded with `seed`) until [`Faults::clear`]. Delays of several matching rules
    /// add up.
    pub fn delay_randomly(&self, matcher: RequestMatcher, max: Duration, seed: u64) {
        self.shared.faults().random_delays.push(RandomDelay {
            matcher,
            max,
            rng: Rng::new(seed),
        });
    }

    /// Removes all pending failures and delays (counted, fixed and random), and releases held
    /// watch events.
    pub fn clear(&self) {
        *self.shared.faults() = FaultRules::default();
        self.release_watch_events();
    }

    /// Holds back the events of every watch whose request matches `matcher` (open ones and
    /// ones opened later), until [`Faults::release_watch_events`]: a watch that has fallen
    /// behind, as a loaded API server's can. Writes take effect and reads see them at once;
    /// only the watch streams wait. No event is lost or reordered, and no bookmark is sent
    /// while events are held (a bookmark promises every earlier event was delivered).
    pub fn hold_watch_events(&self, matcher: RequestMatcher) {
        self.shared
            .held_watches()
            .send_modify(|held| held.push(matcher));
    }

    /// Delivers the held watch events, in order, and stops holding.
    pub fn release_watch_events(&self) {
        self.shared.held_watches().send_replace(Vec::new());
    }

    /// Ends every open watch stream (clients see the stream close and re-watch).
    pub fn drop_watches(&self) {
        self.shared.state().drop_watches();
    }

    /// Forgets the change history: watches from any older resourceVersion get 410 Gone.
    pub fn expire_watch_history(&self) {
        self.shared.state().expire_history();
    }

    /// How many changes are kept for resuming watches (older ones answer 410 Gone).
    pub fn set_history_limit(&self, changes: usize) {
        self.shared.state().history_limit = changes;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(verb: Verb, resource: &str) -> RequestRecord {
        RequestRecord::synthetic(verb, resource)
    }

    #[test]
    fn rng_is_deterministic_per_seed_and_uniform_enough() {
        let draw = |seed| {
            let mut r = Rng::new(seed);
            (0..8).map(|_| r.next_u64()).collect::<Vec<_>>()
        };
        assert_eq!(draw(7), draw(7));
        assert_ne!(draw(7), draw(8));
        let mut r = Rng::new(1);
        let n = 100_000;
        let xs: Vec<f64> = (0..n).map(|_| r.next_f64()).collect();
        assert!(xs.iter().all(|x| (0.0..1.0).contains(x)));
        let mean = xs.iter().sum::<f64>() / f64::from(n);
        assert!((mean - 0.5).abs() < 0.01, "mean {mean}");
        // Ten equal buckets each get about a tenth.
        let mut buckets = [0u32; 10];
        for x in &xs {
            buckets[(x * 10.0) as usize] += 1;
        }
        assert!(
            buckets.iter().all(|b| (9_000..11_000).contains(b)),
            "{buckets:?}"
        );
    }

    #[test]
    fn random_durations_stay_within_bounds() {
        let mut r = Rng::new(3);
        let max = Duration::from_millis(20);
        let ds: Vec<Duration> = (0..10_000).map(|_| r.duration_up_to(max)).collect();
        assert!(ds.iter().all(|d| *d <= max));
        assert!(ds.iter().any(|d| *d < Duration::from_millis(2)));
        assert!(ds.iter().any(|d| *d > Duration::from_millis(18)));
        assert_eq!(r.duration_up_to(Duration::ZERO), Duration::ZERO);
    }

    #[test]
    fn random_failures_hit_at_the_configured_rate_and_replay_per_seed() {
        let run = |seed| {
            let mut rules = FaultRules::default();
            rules.random_failures.push(RandomFailure {
                matcher: RequestMatcher::writes().resource("deployments"),
                probability: 0.2,
                status: 500,
                rng: Rng::new(seed),
            });
            let patch = record(Verb::Patch, "deployments");
            (0..10_000)
                .map(|_| rules.take_failure(&patch))
                .collect::<Vec<_>>()
        };
        let a = run(42);
        assert_eq!(a, run(42));
        assert_ne!(a, run(43));
        let hits = a.iter().filter(|h| **h == Some(500)).count();
        assert!((1_800..2_200).contains(&hits), "{hits} of 10000");
        assert!(a.iter().all(|h| matches!(h, None | Some(500))));

        // Non-matching requests never fail and do not consume draws.
        let mut rules = FaultRules::default();
        rules.random_failures.push(RandomFailure {
            matcher: RequestMatcher::writes().resource("deployments"),
            probability: 1.0,
            status: 500,
            rng: Rng::new(1),
        });
        assert_eq!(rules.take_failure(&record(Verb::Get, "deployments")), None);
        assert_eq!(rules.take_failure(&record(Verb::Patch, "services")), None);
        assert_eq!(
            rules.take_failure(&record(Verb::Create, "deployments")),
            Some(500)
        );
    }

    #[test]
    fn random_conflicts_only_hit_update_and_patch() {
        let mut rules = FaultRules::default();
        rules.random_failures.push(RandomFailure {
            matcher: RequestMatcher::writes(),
            probability: 1.0,
            status: 409,
            rng: Rng::new(1),
        });
        for verb in [
            Verb::Create,
            Verb::Delete,
            Verb::DeleteCollection,
            Verb::Get,
        ] {
            assert_eq!(
                rules.take_failure(&record(verb, "secrets")),
                None,
                "{verb:?}"
            );
        }
        for verb in [Verb::Update, Verb::Patch] {
            assert_eq!(rules.take_failure(&record(verb, "secrets")), Some(409));
        }
    }

    #[test]
    fn counted_failures_take_precedence_and_clear_removes_everything() {
        let mut rules = FaultRules::default();
        rules.failures.push((RequestMatcher::any(), 1, 503));
        rules.random_failures.push(RandomFailure {
            matcher: RequestMatcher::any(),
            probability: 1.0,
            status: 500,
            rng: Rng::new(1),
        });
        let r = record(Verb::Patch, "services");
        assert_eq!(rules.take_failure(&r), Some(503));
        assert_eq!(rules.take_failure(&r), Some(500));
        rules = FaultRules::default();
        assert_eq!(rules.take_failure(&r), None);
    }

    #[test]
    fn random_delays_add_up_per_matching_rule() {
        let mut rules = FaultRules::default();
        rules
            .delays
            .push((RequestMatcher::any(), Duration::from_millis(5)));
        rules.random_delays.push(RandomDelay {
            matcher: RequestMatcher::any().resource("services"),
            max: Duration::from_millis(10),
            rng: Rng::new(9),
        });
        let mut saw_extra = false;
        for _ in 0..200 {
            let d = rules.delay_for(&record(Verb::Get, "services"));
            assert!((Duration::from_millis(5)..=Duration::from_millis(15)).contains(&d));
            saw_extra |= d > Duration::from_millis(6);
        }
        assert!(saw_extra);
        assert_eq!(
            rules.delay_for(&record(Verb::Get, "secrets")),
            Duration::from_millis(5)
        );
    }
}
