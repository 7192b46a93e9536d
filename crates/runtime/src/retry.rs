//! The one retry loop every client in Anatomy uses: the gateway towards
//! business, storage-client towards a shard's replicas.
//!
//! A call is tried, the caller's closure judges each outcome
//! ([`Step`]), and a judged-retryable failure is tried again after an
//! exponential backoff with full jitter — or at once, when the failure
//! itself said where to go (a follower naming its leader). A call that was
//! never sent, because no target was ready, waits and goes again without
//! counting as a retry: no target saw it. The loop never
//! outlives the call's deadline: no attempt starts after it, no backoff
//! sleeps past it, and each attempt is told how much time is left. An
//! optional retry budget (tower's [`TpsBudget`]) caps what retries add to
//! the load, so that when a whole dependency is in trouble retries cannot
//! multiply the trouble.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use rand::Rng;
use tokio::time::Instant;
use tower::retry::budget::{Budget as _, TpsBudget};

/// Exponential backoff with full jitter: before retry `n` (0-based) wait a
/// uniformly random time in `[0, min(max, base × 2ⁿ))`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// The cap of the first wait.
    pub base: Duration,
    /// The largest cap.
    pub max: Duration,
}

impl Backoff {
    /// The cap of the wait before retry `retry` (0-based).
    pub fn cap(&self, retry: u32) -> Duration {
        self.base
            .saturating_mul(1u32 << retry.min(16))
            .min(self.max)
    }

    /// A random wait before retry `retry`.
    pub fn delay(&self, retry: u32) -> Duration {
        self.cap(retry).mul_f64(rand::rng().random::<f64>())
    }
}

/// How a call is retried.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    /// Waits between attempts.
    pub backoff: Backoff,
    /// At most this many retries after the first attempt (`None`: as many
    /// as the deadline allows).
    pub max_retries: Option<u32>,
    /// What retries may add to the load, shared by every call that uses
    /// this policy (`None`: no budget).
    pub budget: Option<Arc<TpsBudget>>,
}

/// One attempt, as its closure sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attempt {
    /// 0 for the first attempt.
    pub number: u32,
    /// The time left before the call's deadline.
    pub remaining: Duration,
}

/// What the caller's closure made of one attempt.
#[derive(Debug)]
pub enum Step<T, E> {
    /// Done: the answer.
    Done(T),
    /// A failure worth another attempt after a backoff.
    Retry(E),
    /// A failure worth another attempt at once (it named a better target).
    RetryNow(E),
    /// Nothing was sent (no target was ready to take the call): try again
    /// after this long. Not a retry — it counts against neither
    /// `max_retries` nor the budget, since no target saw the call; only
    /// the deadline bounds it (and the caller, by how often it waits).
    Wait(E, Duration),
    /// A failure that another attempt cannot fix.
    Fail(E),
}

/// Why the loop gave up.
#[derive(Debug, PartialEq, Eq)]
pub enum GaveUp<E> {
    /// A failure that another attempt cannot fix.
    Failed(E),
    /// The deadline came; the last failure, if an attempt finished.
    Deadline(Option<E>),
    /// The retry budget is spent.
    BudgetSpent(E),
    /// `max_retries` retries failed.
    Exhausted(E),
}

impl<E> GaveUp<E> {
    /// The last failure seen, if any.
    pub fn last(&self) -> Option<&E> {
        match self {
            Self::Failed(e) | Self::BudgetSpent(e) | Self::Exhausted(e) => Some(e),
            Self::Deadline(e) => e.as_ref(),
        }
    }
}

/// Runs `attempt` until it is done, fails for good, or the policy or the
/// `deadline` says stop.
pub async fn run<T, E, F, Fut>(
    policy: &RetryPolicy,
    deadline: Instant,
    mut attempt: F,
) -> Result<T, GaveUp<E>>
where
    F: FnMut(Attempt) -> Fut,
    Fut: Future<Output = Step<T, E>>,
{
    if let Some(budget) = &policy.budget {
        budget.deposit();
    }
    let mut last = None;
    let mut retries = 0u32;
    loop {
        let remaining = deadline.saturating_duration_since(Instant::now());
        if remaining.is_zero() {
            return Err(GaveUp::Deadline(last));
        }
        let step = attempt(Attempt {
            number: retries,
            remaining,
        })
        .await;
        // Whether to back off before the next attempt (else go at once).
        let (error, backoff) = match step {
            Step::Done(answer) => return Ok(answer),
            Step::Fail(e) => return Err(GaveUp::Failed(e)),
            Step::Retry(e) => (e, true),
            Step::RetryNow(e) => (e, false),
            Step::Wait(e, pause) => {
                if Instant::now() + pause >= deadline {
                    return Err(GaveUp::Deadline(Some(e)));
                }
                tokio::time::sleep(pause).await;
                last = Some(e);
                continue;
            }
        };
        if Instant::now() >= deadline {
            return Err(GaveUp::Deadline(Some(error)));
        }
        if policy.max_retries.is_some_and(|max| retries >= max) {
            return Err(GaveUp::Exhausted(error));
        }
        if let Some(budget) = &policy.budget
            && !budget.withdraw()
        {
            return Err(GaveUp::BudgetSpent(error));
        }
        if backoff {
            let pause = policy.backoff.delay(retries);
            tokio::time::sleep(pause.min(deadline.saturating_duration_since(Instant::now()))).await;
        }
        retries += 1;
        last = Some(error);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;

    const BACKOFF: Backoff = Backoff {
        base: Duration::from_millis(10),
        max: Duration::from_millis(80),
    };

    fn policy(max_retries: Option<u32>) -> RetryPolicy {
        RetryPolicy {
            backoff: BACKOFF,
            max_retries,
            budget: None,
        }
    }

    /// An attempt that fails `failures` times with `fail`, then succeeds.
    fn flaky(
        failures: u32,
        fail: fn(u32) -> Step<u32, u32>,
    ) -> (
        Arc<AtomicU32>,
        impl FnMut(Attempt) -> std::future::Ready<Step<u32, u32>>,
    ) {
        let calls = Arc::new(AtomicU32::new(0));
        let counter = calls.clone();
        let attempt = move |a: Attempt| {
            let n = counter.fetch_add(1, Ordering::SeqCst);
            assert_eq!(a.number, n, "attempts are numbered from 0");
            std::future::ready(if n < failures { fail(n) } else { Step::Done(n) })
        };
        (calls, attempt)
    }

    #[test]
    fn the_backoff_cap_doubles_up_to_its_maximum() {
        let caps: Vec<_> = (0..6).map(|n| BACKOFF.cap(n).as_millis()).collect();
        assert_eq!(caps, [10, 20, 40, 80, 80, 80]);
        assert_eq!(BACKOFF.cap(u32::MAX), BACKOFF.max, "no overflow");
        for n in 0..100 {
            assert!(
                BACKOFF.delay(n % 5) < BACKOFF.cap(n % 5),
                "full jitter stays below the cap"
            );
        }
    }

    #[tokio::test(start_paused = true)]
    async fn retries_until_the_call_succeeds() {
        let (calls, attempt) = flaky(3, Step::Retry);
        let started = Instant::now();
        let answer = run(&policy(None), started + Duration::from_secs(10), attempt).await;
        assert_eq!(answer, Ok(3));
        assert_eq!(calls.load(Ordering::SeqCst), 4);
        let slept = started.elapsed();
        assert!(
            slept < Duration::from_millis(10 + 20 + 40),
            "waits stay under the caps: {slept:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_wait_is_not_a_retry() {
        // No retry allowed at all, and no budget: waits still go on.
        let budget = Arc::new(TpsBudget::new(Duration::from_secs(10), 0, 0.0));
        let policy = RetryPolicy {
            budget: Some(budget),
            ..policy(Some(0))
        };
        let pause = Duration::from_millis(500);
        let calls = AtomicU32::new(0);
        let started = Instant::now();
        let answer = run(&policy, started + Duration::from_secs(10), |a| {
            let n = calls.fetch_add(1, Ordering::SeqCst);
            assert_eq!(a.number, 0, "a wait does not count as a retry");
            std::future::ready(if n < 3 {
                Step::Wait(n, pause)
            } else {
                Step::Done(n)
            })
        })
        .await;
        assert_eq!(answer, Ok(3));
        assert_eq!(started.elapsed(), pause * 3, "exactly the waits asked for");
    }

    #[tokio::test(start_paused = true)]
    async fn a_wait_never_goes_past_the_deadline() {
        let calls = AtomicU32::new(0);
        let attempt = |_| {
            let n = calls.fetch_add(1, Ordering::SeqCst);
            std::future::ready(Step::<u32, u32>::Wait(n, Duration::from_millis(400)))
        };
        let started = Instant::now();
        let answer = run(&policy(None), started + Duration::from_secs(1), attempt).await;
        assert_eq!(answer, Err(GaveUp::Deadline(Some(2))));
        assert_eq!(
            calls.load(Ordering::SeqCst),
            3,
            "attempts at 0, 0.4 and 0.8 s; a wait to 1.2 s is not taken"
        );
        assert_eq!(started.elapsed(), Duration::from_millis(800));
    }

    #[tokio::test(start_paused = true)]
    async fn a_named_target_is_tried_at_once() {
        let (_, attempt) = flaky(5, Step::RetryNow);
        let started = Instant::now();
        let answer = run(&policy(None), started + Duration::from_secs(10), attempt).await;
        assert_eq!(answer, Ok(5));
        assert_eq!(
            started.elapsed(),
            Duration::ZERO,
            "no backoff before a RetryNow"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_final_failure_is_not_retried() {
        let (calls, attempt) = flaky(1, Step::Fail);
        let answer = run(
            &policy(None),
            Instant::now() + Duration::from_secs(10),
            attempt,
        )
        .await;
        assert_eq!(answer, Err(GaveUp::Failed(0)));
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn never_outlives_the_deadline() {
        let (calls, attempt) = flaky(u32::MAX, Step::Retry);
        let started = Instant::now();
        let deadline = started + Duration::from_millis(500);
        let answer = run(&policy(None), deadline, attempt).await;
        assert!(
            matches!(answer, Err(GaveUp::Deadline(Some(_)))),
            "{answer:?}"
        );
        assert_eq!(Instant::now(), deadline, "stopped exactly at the deadline");
        assert!(calls.load(Ordering::SeqCst) > 5, "kept trying until then");
    }

    #[tokio::test(start_paused = true)]
    async fn an_expired_deadline_makes_no_attempt() {
        let (calls, attempt) = flaky(0, Step::Retry);
        let answer = run(&policy(None), Instant::now(), attempt).await;
        assert_eq!(answer, Err(GaveUp::Deadline(None)));
        assert_eq!(calls.load(Ordering::SeqCst), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn each_attempt_is_told_the_time_left() {
        let deadline = Instant::now() + Duration::from_secs(2);
        let mut seen = Vec::new();
        let answer: Result<(), _> = run(&policy(Some(2)), deadline, |a| {
            seen.push(a.remaining);
            std::future::ready(Step::Retry(()))
        })
        .await;
        assert_eq!(
            answer,
            Err(GaveUp::Exhausted(())),
            "gave up after 2 retries"
        );
        assert_eq!(seen.len(), 3);
        assert_eq!(seen[0], Duration::from_secs(2));
        assert!(seen.windows(2).all(|w| w[1] <= w[0]), "{seen:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_spent_budget_stops_retries() {
        // No reserve and 0 % of deposits: not even one retry is allowed.
        let budget = Arc::new(TpsBudget::new(Duration::from_secs(10), 0, 0.0));
        let policy = RetryPolicy {
            budget: Some(budget),
            ..policy(None)
        };
        let (calls, attempt) = flaky(3, Step::Retry);
        let answer = run(&policy, Instant::now() + Duration::from_secs(10), attempt).await;
        assert_eq!(answer, Err(GaveUp::BudgetSpent(0)));
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }
}
