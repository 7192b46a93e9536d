//! When a replica takes a snapshot.
//!
//! A snapshot rewrites the whole state machine, and lets the log behind it
//! be purged. openraft 0.9's own policy counts log entries since the last
//! snapshot (`LogsSinceLast`), whatever the state's size, so the cost of
//! snapshots per write grows with the data: with 10⁷ keys preloaded (a
//! 2.8 GB snapshot) 10 000 entries came every 40 s, every replica was
//! always writing a snapshot, and puts ran at 37 % of their rate with 10⁴
//! keys (docs/benchmarks.md). So openraft's policy is off
//! (`SnapshotPolicy::Never`) and this one triggers snapshots instead: one
//! is due once `every` entries were applied since the last one *and* they
//! wrote at least `growth` × the last snapshot's size — as Redis rewrites
//! its append-only file once it has grown by a percentage. A snapshot's
//! cost per byte written is then bounded (1 / `growth`) at any size, and
//! the log behind it stays below `growth` × the data.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::Notify;

use super::types::Raft;

/// How often at most a due snapshot is asked for again, in case openraft
/// did not start it (it was busy installing one).
const RETRIGGER_EVERY: Duration = Duration::from_secs(1);

/// One replica's snapshot pacing, shared by its state machine (which
/// reports applies and snapshots) and the task that triggers snapshots.
#[derive(Debug)]
pub struct SnapshotPacing {
    every: u64,
    growth: f64,
    entries: AtomicU64,
    bytes: AtomicU64,
    last_size: AtomicU64,
    due: Notify,
}

impl SnapshotPacing {
    /// Due after at least `every` entries that wrote `growth_percent` % of
    /// the last snapshot's size.
    pub fn new(every: u64, growth_percent: u32) -> Self {
        Self {
            every: every.max(1),
            growth: f64::from(growth_percent) / 100.0,
            entries: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            last_size: AtomicU64::new(0),
            due: Notify::new(),
        }
    }

    /// `entries` were applied, writing `bytes`.
    pub fn applied(&self, entries: u64, bytes: u64) {
        self.entries.fetch_add(entries, Ordering::Relaxed);
        self.bytes.fetch_add(bytes, Ordering::Relaxed);
        if self.is_due() {
            self.due.notify_one();
        }
    }

    /// Whether a snapshot is due now.
    pub fn is_due(&self) -> bool {
        let size = self.last_size.load(Ordering::Relaxed) as f64;
        self.entries.load(Ordering::Relaxed) >= self.every
            && self.bytes.load(Ordering::Relaxed) as f64 >= self.growth * size
    }

    /// A snapshot of everything applied so far is being built: count anew.
    pub fn building(&self) {
        self.entries.store(0, Ordering::Relaxed);
        self.bytes.store(0, Ordering::Relaxed);
    }

    /// The current snapshot (built, installed, or found at start) is
    /// `size` bytes.
    pub fn current_size(&self, size: u64) {
        self.last_size.store(size, Ordering::Relaxed);
    }

    /// Asks `raft` for a snapshot whenever one is due, at most once per
    /// `RETRIGGER_EVERY`; ends when the Raft node has shut down.
    pub async fn trigger(self: std::sync::Arc<Self>, raft: Raft) {
        loop {
            self.due.notified().await;
            if raft.trigger().snapshot().await.is_err() {
                return;
            }
            tokio::time::sleep(RETRIGGER_EVERY).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn due_after_enough_entries_while_the_state_is_small() {
        let pacing = SnapshotPacing::new(10, 25);
        pacing.applied(9, 1_000);
        assert!(!pacing.is_due(), "9 entries of 10");
        pacing.applied(1, 10);
        assert!(pacing.is_due(), "no snapshot yet: the entry count decides");
    }

    #[test]
    fn a_large_state_waits_until_the_writes_are_a_share_of_it() {
        let pacing = SnapshotPacing::new(10, 25);
        pacing.current_size(1_000_000);
        pacing.applied(1_000, 249_999);
        assert!(!pacing.is_due(), "enough entries, not enough bytes");
        pacing.applied(1, 1);
        assert!(pacing.is_due(), "25 % of the last snapshot written");
    }

    #[test]
    fn building_counts_anew() {
        let pacing = SnapshotPacing::new(10, 25);
        pacing.applied(100, 100);
        assert!(pacing.is_due());
        pacing.building();
        pacing.current_size(1_000);
        assert!(!pacing.is_due());
        pacing.applied(10, 249);
        assert!(!pacing.is_due());
        pacing.applied(0, 1);
        assert!(pacing.is_due());
    }

    #[tokio::test(start_paused = true)]
    async fn a_due_snapshot_wakes_the_trigger() {
        let pacing = SnapshotPacing::new(1, 0);
        pacing.applied(1, 0);
        // The permit is stored: the trigger loop would not miss it.
        tokio::time::timeout(Duration::from_secs(5), pacing.due.notified())
            .await
            .expect("notified");
    }
}
