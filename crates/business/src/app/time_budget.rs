//! How long an operation may still take: the caller's deadline, or the
//! recovery worker's allowance for one transfer. On tokio's clock, so tests
//! with `tokio::time::pause()` control it.

use std::time::Duration;

use tokio::time::Instant;

/// The time an operation has left; it is spent once the instant passes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeBudget {
    ends: Instant,
}

impl TimeBudget {
    /// `time` from now.
    pub fn after(time: Duration) -> Self {
        Self {
            ends: Instant::now() + time,
        }
    }

    /// Time left (zero once spent).
    pub fn remaining(&self) -> Duration {
        self.ends.saturating_duration_since(Instant::now())
    }

    /// Whether no time is left.
    pub fn is_spent(&self) -> bool {
        self.remaining().is_zero()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_budget_runs_down_with_tokio_time() {
        let budget = TimeBudget::after(Duration::from_secs(2));
        assert_eq!(budget.remaining(), Duration::from_secs(2));
        tokio::time::advance(Duration::from_millis(1500)).await;
        assert_eq!(budget.remaining(), Duration::from_millis(500));
        assert!(!budget.is_spent());
        tokio::time::advance(Duration::from_secs(1)).await;
        assert_eq!(budget.remaining(), Duration::ZERO);
        assert!(budget.is_spent());
    }
}
