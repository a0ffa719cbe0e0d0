//! Fault injection: failing and delaying matching requests, breaking watches.

use std::sync::Arc;
use std::time::Duration;

use crate::Shared;
use crate::log::{RequestMatcher, RequestRecord};

#[derive(Debug, Default)]
pub(crate) struct FaultRules {
    failures: Vec<(RequestMatcher, usize, u16)>,
    delays: Vec<(RequestMatcher, Duration)>,
}

impl FaultRules {
    /// The total delay for a request.
    pub fn delay_for(&self, r: &RequestRecord) -> Duration {
        self.delays
            .iter()
            .filter(|(m, _)| m.matches(r))
            .map(|(_, d)| *d)
            .sum()
    }

    /// Consumes one injected failure matching the request, if any.
    pub fn take_failure(&mut self, r: &RequestRecord) -> Option<u16> {
        let rule = self
            .failures
            .iter_mut()
            .find(|(m, n, _)| *n > 0 && m.matches(r))?;
        rule.1 -= 1;
        let code = rule.2;
        self.failures.retain(|(_, n, _)| *n > 0);
        Some(code)
    }
}

/// Handle for injecting faults into a [`crate::TestApiServer`].
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

    /// Delays every request matching `matcher` by `delay` until [`Faults::clear`].
    pub fn delay(&self, matcher: RequestMatcher, delay: Duration) {
        self.shared.faults().delays.push((matcher, delay));
    }

    /// Removes all pending failures and delays.
    pub fn clear(&self) {
        *self.shared.faults() = FaultRules::default();
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
