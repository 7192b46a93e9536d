//! Recovery: transfers that have been pending for a while — their executor
//! crashed or gave up at its deadline — are driven to an end by the
//! recovery worker every business replica runs (`recovery_worker.rs`).
//! Several workers (and the original executor) may work on the same
//! transfer at once: every saga step is conditional, so they cannot apply
//! anything twice.
//!
//! Nothing one transfer does may hold up the others. Each is recovered on
//! its own, with its own time budget; a transfer whose recovery fails — its
//! other shard is down, or an error — gets the failure written on its
//! pending mark (count, last error, when to retry) and is left alone until
//! then, backing off exponentially; others go on meanwhile.

use std::time::Duration;

use futures::{StreamExt, future, stream};

use super::Ledger;
use super::ports::{Change, Clock, Commit, PendingTransfer, Record, RecordKey, Store, TimeBudget};
use crate::domain::DomainError;

/// Pending marks read per shard and listing.
pub(super) const LIST_LIMIT: usize = 1000;

/// How recovery paces itself.
#[derive(Debug, Clone, Copy)]
pub struct RecoveryConfig {
    /// Time between the worker's ticks (each lists the shards again).
    pub every: Duration,
    /// A transfer pending for less than this is left to its executor.
    pub older_than: Duration,
    /// Time one transfer's recovery may take (each has its own), and the
    /// time to list one shard's pending marks.
    pub transfer_budget: Duration,
    /// Transfers recovered at once.
    pub concurrency: usize,
    /// Longest wait before retrying a transfer whose recovery failed.
    pub max_backoff: Duration,
}

/// What a recovery pass did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Recovered {
    /// Pending transfers due for recovery (old enough, not backing off).
    pub found: usize,
    /// Of those, the ones that ended.
    pub ended: usize,
    /// Of those, the ones whose recovery failed (recorded; retried later).
    pub failed: usize,
    /// Shards whose pending marks could not be listed.
    pub missing_shards: usize,
}

/// What happened to one transfer (or shard list) of a pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Outcome {
    Ended,
    Failed,
    MissingShard,
}

impl Recovered {
    fn add(mut self, outcome: Outcome) -> Self {
        match outcome {
            Outcome::Ended => self.ended += 1,
            Outcome::Failed => self.failed += 1,
            Outcome::MissingShard => self.missing_shards += 1,
        }
        if outcome != Outcome::MissingShard {
            self.found += 1;
        }
        self
    }
}

/// How long to leave a transfer alone after its `failures`-th failed
/// recovery: twice the tick interval, doubling per failure, at most `max`.
pub fn retry_delay(failures: u32, every: Duration, max: Duration) -> Duration {
    let factor = 1u32 << failures.min(16);
    every.saturating_mul(factor).min(max)
}

/// Of one shard's pending transfers, those due for recovery at `now`, in
/// the order to try them: fewest failures first, then oldest.
pub fn due(
    mut pending: Vec<PendingTransfer>,
    now: std::time::SystemTime,
    older_than: Duration,
) -> Vec<PendingTransfer> {
    pending.retain(|p| p.mark.value.is_due(now, older_than));
    pending.sort_by_key(|p| (p.mark.value.failures, p.mark.value.since));
    pending
}

impl<S: Store, C: Clock> Ledger<S, C> {
    /// One recovery pass, to its end (the worker runs the same recovery
    /// continuously instead): lists every shard's pending marks (each shard
    /// on its own) and drives each due transfer to its end (each with its
    /// own budget, `config.concurrency` at once), recording failures.
    pub async fn recover_pending(&self, config: &RecoveryConfig) -> Recovered {
        let shards = self.store.shards();
        let lists = stream::iter(shards.clone())
            .map(|shard| async move {
                let budget = TimeBudget::after(config.transfer_budget);
                (
                    shard,
                    self.store.list_pending(shard, LIST_LIMIT, budget).await,
                )
            })
            .buffer_unordered(shards.len().max(1));
        // As each shard's list arrives, its due transfers join the work.
        let work = lists.flat_map(|(shard, listed)| {
            let items = match listed {
                Ok(pending) => due(pending, self.clock.now(), config.older_than)
                    .into_iter()
                    .map(Some)
                    .collect(),
                Err(e) => {
                    tracing::warn!(shard, error = %e, "recovery could not list a shard");
                    vec![None]
                }
            };
            stream::iter(items)
        });
        work.map(|item| async move {
            match item {
                Some(pending) => self.recover_one(pending, config).await,
                None => Outcome::MissingShard,
            }
        })
        .buffer_unordered(config.concurrency.max(1))
        .fold(Recovered::default(), |report, outcome| {
            future::ready(report.add(outcome))
        })
        .await
    }

    /// Drives one pending transfer within its own budget; if it does not
    /// end, records why on its pending mark.
    pub(super) async fn recover_one(
        &self,
        pending: PendingTransfer,
        config: &RecoveryConfig,
    ) -> Outcome {
        let why = match self.finish(&pending, config.transfer_budget).await {
            Ok(None) => {
                metrics::counter!("business_recovery_attempts_total", "outcome" => "ended")
                    .increment(1);
                return Outcome::Ended;
            }
            Ok(Some(why)) => why,
            Err(e) => e.to_string(),
        };
        let failures = pending.mark.value.failures.saturating_add(1);
        let wait = retry_delay(failures, config.every, config.max_backoff);
        metrics::counter!("business_recovery_attempts_total", "outcome" => "failed").increment(1);
        tracing::warn!(
            tenant = %pending.tenant,
            transfer = %pending.id,
            failures,
            error = %why,
            retry_in = ?wait,
            "transfer recovery failed; retrying later"
        );
        self.note_failure(&pending, why, wait, config.transfer_budget)
            .await;
        Outcome::Failed
    }

    /// Drives the transfer; None once it ended, else why it did not.
    async fn finish(
        &self,
        pending: &PendingTransfer,
        time: Duration,
    ) -> Result<Option<String>, DomainError> {
        let budget = TimeBudget::after(time);
        let transfer = self
            .get_transfer(pending.tenant.clone(), pending.id.clone(), budget)
            .await?;
        let driven = self.run_steps(&pending.tenant, transfer, budget).await?;
        if driven.transfer.is_done() {
            return Ok(None);
        }
        Ok(Some(driven.unavailable.map_or_else(
            || format!("still pending after its {time:?} budget"),
            |why| format!("storage unavailable: {why}"),
        )))
    }

    /// Writes the failure on the pending mark — only if the mark is still
    /// the one listed: if the transfer ended meanwhile (mark gone) or
    /// another worker noted a failure first, nothing is written.
    async fn note_failure(
        &self,
        pending: &PendingTransfer,
        why: String,
        wait: Duration,
        time: Duration,
    ) {
        let key = RecordKey::Pending(pending.tenant.clone(), pending.id.clone());
        let mark = pending.mark.value.failed(why, self.clock.now(), wait);
        let change = Change::default()
            .if_version(key.clone(), pending.mark.version)
            .put(key, Record::Pending(mark));
        match self.store.commit(change, TimeBudget::after(time)).await {
            Ok(Commit::Done | Commit::Conflict) => {}
            Err(e) => {
                tracing::warn!(transfer = %pending.id, error = %e, "could not record a recovery failure");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::SystemTime;

    use super::*;
    use crate::domain::{PendingMark, TenantId, TransferId};

    #[test]
    fn retries_back_off_exponentially_up_to_a_cap() {
        let every = Duration::from_secs(2);
        let max = Duration::from_secs(60);
        let delays: Vec<u64> = (1..=6)
            .map(|n| retry_delay(n, every, max).as_secs())
            .collect();
        assert_eq!(delays, [4, 8, 16, 32, 60, 60]);
        assert_eq!(retry_delay(u32::MAX, every, max), max, "no overflow");
    }

    fn pending(id: &str, since: u64, failures: u32) -> PendingTransfer {
        let since = SystemTime::UNIX_EPOCH + Duration::from_secs(since);
        let mut mark = PendingMark::new(since);
        mark.failures = failures;
        PendingTransfer {
            tenant: TenantId::parse("acme").expect("tenant"),
            id: TransferId::parse(id).expect("id"),
            mark: super::super::ports::Versioned {
                value: mark,
                version: 1,
            },
        }
    }

    #[test]
    fn due_transfers_come_fewest_failures_first_then_oldest() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(100);
        let list = vec![
            pending("a~failed-once", 10, 1),
            pending("a~young", 99, 0),
            pending("a~newer", 50, 0),
            pending("a~oldest", 20, 0),
        ];
        let order: Vec<String> = due(list, now, Duration::from_secs(5))
            .iter()
            .map(|p| p.id.to_string())
            .collect();
        assert_eq!(order, ["a~oldest", "a~newer", "a~failed-once"]);
    }
}
