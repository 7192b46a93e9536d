//! A breaker per shard. Without it, a shard that has lost its majority is
//! retried until each caller's deadline: a 30 s deadline waits 30 s, and
//! every caller of that shard holds its slot that long. With it, once no
//! attempt on the shard has succeeded for `open_after` (a few election
//! timeouts: long enough for a normal election to finish), calls fail at
//! once with UNAVAILABLE naming the shard. One call every `probe_every`
//! still goes through (half-open) to see whether the shard is back; any
//! success closes the breaker. Other shards are untouched: each has its
//! own.

use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// What a call may do now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admit {
    /// The shard is answering (or has not been failing for long): go on.
    Go,
    /// The breaker is open, and this call is the probe: go, briefly.
    Probe,
    /// The breaker is open: fail now; nothing succeeded for this long.
    Refuse { failing_for: Duration },
}

#[derive(Debug, Default)]
struct State {
    /// Since when no attempt has succeeded (None: the last one did).
    failing_since: Option<Instant>,
    last_probe: Option<Instant>,
}

/// One shard's breaker.
#[derive(Debug)]
pub struct ShardBreaker {
    open_after: Duration,
    probe_every: Duration,
    state: Mutex<State>,
}

impl ShardBreaker {
    /// Opens after `open_after` without a success; then lets one call
    /// through every `probe_every`. A zero `open_after` turns it off.
    pub fn new(open_after: Duration, probe_every: Duration) -> Self {
        Self {
            open_after,
            probe_every,
            state: Mutex::new(State::default()),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Whether a call may go now.
    pub fn admit(&self) -> Admit {
        let now = Instant::now();
        let mut state = self.state();
        let Some(since) = state.failing_since else {
            return Admit::Go;
        };
        let failing_for = now.saturating_duration_since(since);
        if self.open_after.is_zero() || failing_for < self.open_after {
            return Admit::Go;
        }
        let probe_due = state
            .last_probe
            .is_none_or(|at| now.saturating_duration_since(at) >= self.probe_every);
        if probe_due {
            state.last_probe = Some(now);
            Admit::Probe
        } else {
            Admit::Refuse { failing_for }
        }
    }

    /// How long a probe may try: it must not hold its caller longer than
    /// the breaker waited before opening.
    pub fn probe_budget(&self) -> Duration {
        self.open_after
    }

    /// An attempt succeeded: the shard answers.
    pub fn success(&self) {
        self.state().failing_since = None;
    }

    /// An attempt failed for want of a replica that could serve it;
    /// returns whether the breaker is now open (the call should stop
    /// retrying: the shard has served nothing for `open_after`).
    pub fn failure(&self) -> bool {
        let now = Instant::now();
        let mut state = self.state();
        let since = *state.failing_since.get_or_insert(now);
        !self.open_after.is_zero() && now.saturating_duration_since(since) >= self.open_after
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OPEN_AFTER: Duration = Duration::from_secs(1);
    const PROBE_EVERY: Duration = Duration::from_millis(250);

    #[tokio::test(start_paused = true)]
    async fn opens_after_a_second_without_success_then_probes_and_closes() {
        let breaker = ShardBreaker::new(OPEN_AFTER, PROBE_EVERY);
        assert!(!breaker.failure());
        tokio::time::advance(Duration::from_millis(900)).await;
        assert_eq!(breaker.admit(), Admit::Go, "an election may still finish");
        assert!(!breaker.failure(), "a call keeps retrying");
        tokio::time::advance(Duration::from_millis(100)).await;
        assert!(breaker.failure(), "now the call in flight stops too");
        assert_eq!(breaker.admit(), Admit::Probe, "open: the first call probes");
        assert_eq!(
            breaker.admit(),
            Admit::Refuse {
                failing_for: OPEN_AFTER
            }
        );
        tokio::time::advance(PROBE_EVERY).await;
        assert_eq!(breaker.admit(), Admit::Probe, "the next probe is due");
        breaker.success();
        assert_eq!(breaker.admit(), Admit::Go, "closed by a success");
    }

    #[tokio::test(start_paused = true)]
    async fn a_success_in_between_keeps_it_closed() {
        let breaker = ShardBreaker::new(OPEN_AFTER, PROBE_EVERY);
        breaker.failure();
        tokio::time::advance(Duration::from_millis(600)).await;
        breaker.success();
        breaker.failure();
        tokio::time::advance(Duration::from_millis(600)).await;
        assert_eq!(breaker.admit(), Admit::Go, "failing for 0.6 s, not 1.2 s");
    }

    #[tokio::test(start_paused = true)]
    async fn zero_turns_it_off() {
        let breaker = ShardBreaker::new(Duration::ZERO, PROBE_EVERY);
        breaker.failure();
        tokio::time::advance(Duration::from_secs(60)).await;
        assert_eq!(breaker.admit(), Admit::Go);
    }
}
