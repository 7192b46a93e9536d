//! The recovery worker every business replica runs until shutdown.
//!
//! It has no passes that wait for their slowest part. On every tick it
//! lists the pending marks of each shard that is not still being listed,
//! and starts recovering each due transfer that is not already being
//! recovered, up to `concurrency` at once, each with its own time budget
//! (see `recovery.rs`). A shard without a majority delays only its own
//! list; a transfer stuck on it holds only its own slot until its budget
//! is spent, and then backs off.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::Arc;

use tokio::task::{Id, JoinSet};

use super::Ledger;
use super::ports::{Clock, PendingTransfer, Store, StoreError, TimeBudget};
use super::recovery::{self, LIST_LIMIT, Outcome, RecoveryConfig};
use crate::domain::{TenantId, TransferId};

type TransferKey = (TenantId, TransferId);

/// What a finished task was doing.
#[derive(Debug, Clone)]
enum Job {
    Listing(u32),
    Recovering(TransferKey),
}

/// What a task found.
enum Done {
    Listed(Result<Vec<PendingTransfer>, StoreError>),
    Recovered(Outcome),
}

struct Worker<S, C> {
    ledger: Arc<Ledger<S, C>>,
    config: RecoveryConfig,
    tasks: JoinSet<Done>,
    jobs: HashMap<Id, Job>,
    listing: HashSet<u32>,
    recovering: HashSet<TransferKey>,
}

/// Recovers pending transfers until `stop` resolves (then drops the work
/// under way: every saga step is safe to redo, another worker will).
pub async fn run<S: Store, C: Clock>(
    ledger: Arc<Ledger<S, C>>,
    config: RecoveryConfig,
    stop: impl Future<Output = ()>,
) {
    let mut worker = Worker {
        ledger,
        config,
        tasks: JoinSet::new(),
        jobs: HashMap::new(),
        listing: HashSet::new(),
        recovering: HashSet::new(),
    };
    tokio::pin!(stop);
    let mut ticks = tokio::time::interval(config.every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = &mut stop => return,
            _ = ticks.tick() => worker.list_shards(),
            Some(done) = worker.tasks.join_next_with_id() => match done {
                Ok((id, done)) => worker.finished(id, done),
                Err(e) => {
                    tracing::error!(error = %e, "a recovery task failed");
                    worker.forget(e.id());
                }
            },
        }
    }
}

impl<S: Store, C: Clock> Worker<S, C> {
    /// Starts listing every shard that is not being listed still.
    fn list_shards(&mut self) {
        for shard in self.ledger.store().shards() {
            if !self.listing.insert(shard) {
                continue;
            }
            let (ledger, time) = (self.ledger.clone(), self.config.transfer_budget);
            let task = self.tasks.spawn(async move {
                let budget = TimeBudget::after(time);
                Done::Listed(ledger.store().list_pending(shard, LIST_LIMIT, budget).await)
            });
            self.jobs.insert(task.id(), Job::Listing(shard));
        }
    }

    /// Starts recovering the due transfers of a shard's list, while slots last.
    fn recover(&mut self, listed: Vec<PendingTransfer>) {
        let now = self.ledger.clock.now();
        for pending in recovery::due(listed, now, self.config.older_than) {
            if self.recovering.len() >= self.config.concurrency.max(1) {
                return;
            }
            let key = (pending.tenant.clone(), pending.id.clone());
            if !self.recovering.insert(key.clone()) {
                continue;
            }
            let (ledger, config) = (self.ledger.clone(), self.config);
            let task = self
                .tasks
                .spawn(async move { Done::Recovered(ledger.recover_one(pending, &config).await) });
            self.jobs.insert(task.id(), Job::Recovering(key));
        }
    }

    fn finished(&mut self, id: Id, done: Done) {
        let job = self.forget(id);
        match (job, done) {
            (Some(Job::Listing(_)), Done::Listed(Ok(listed))) => self.recover(listed),
            (Some(Job::Listing(shard)), Done::Listed(Err(e))) => {
                tracing::warn!(shard, error = %e, "recovery could not list a shard's pending transfers");
            }
            (Some(Job::Recovering((tenant, transfer))), Done::Recovered(Outcome::Ended)) => {
                tracing::info!(%tenant, %transfer, "recovery ended a pending transfer");
            }
            _ => {}
        }
    }

    /// Drops a finished task's bookkeeping; returns what it was doing.
    fn forget(&mut self, id: Id) -> Option<Job> {
        let job = self.jobs.remove(&id)?;
        match &job {
            Job::Listing(shard) => self.listing.remove(shard),
            Job::Recovering(key) => self.recovering.remove(key),
        };
        Some(job)
    }
}
