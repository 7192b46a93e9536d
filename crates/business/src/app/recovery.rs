//! The recovery worker: every business replica runs one. It finds
//! transfers that have been pending for a while — their executor crashed
//! or gave up at its deadline — and drives them to an end. Several workers
//! (and the original executor) may work on the same transfer at once: every
//! saga step is conditional, so they cannot apply anything twice.

use std::sync::Arc;
use std::time::Duration;

use super::Ledger;
use super::ports::{Clock, Deadline, Store};

/// How the worker paces itself.
#[derive(Debug, Clone, Copy)]
pub struct RecoveryConfig {
    /// Time between passes.
    pub every: Duration,
    /// A transfer pending for less than this is left to its executor.
    pub older_than: Duration,
    /// Time one pass may take.
    pub pass_budget: Duration,
}

/// Runs recovery passes until `stop` resolves.
pub async fn run<S: Store, C: Clock>(
    ledger: Arc<Ledger<S, C>>,
    config: RecoveryConfig,
    stop: impl std::future::Future<Output = ()>,
) {
    tokio::pin!(stop);
    let mut ticks = tokio::time::interval(config.every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = &mut stop => return,
            _ = ticks.tick() => {}
        }
        match ledger
            .recover_pending(config.older_than, Deadline::after(config.pass_budget))
            .await
        {
            Ok(r) if r.found > 0 || r.missing_shards > 0 => {
                tracing::info!(
                    found = r.found,
                    ended = r.ended,
                    missing_shards = r.missing_shards,
                    "recovery pass"
                );
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "recovery pass failed"),
        }
    }
}
