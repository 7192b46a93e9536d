//! Raft metrics for Prometheus, from openraft's own metrics channel.
//!
//! Every series of a storage process carries `shard` and `replica` labels
//! (set once on the exporter), so none is added here.

use std::time::Duration;

use metrics::{counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram};

use super::types::Raft;

/// Records how long one log append took, fsync included.
pub fn record_append(took: Duration) {
    histogram!("raft_append_seconds").record(took.as_secs_f64());
}

/// Mirrors the replica's Raft state into gauges until Raft shuts down.
/// Driven by openraft's watch channel: it updates on every change, and
/// costs nothing while nothing changes.
pub async fn export(raft: Raft) {
    describe();
    let mut watch = raft.metrics();
    let mut leader = None;
    let mut snapshot = None;
    loop {
        {
            let m = watch.borrow_and_update();
            gauge!("raft_term").set(m.current_term as f64);
            gauge!("raft_is_leader").set(f64::from(u8::from(m.current_leader == Some(m.id))));
            gauge!("raft_leader_id").set(m.current_leader.map_or(0.0, |id| id as f64));
            let last_log = m.last_log_index.unwrap_or(0);
            let purged = m.purged.map_or(0, |p| p.index + 1);
            gauge!("raft_last_log_index").set(last_log as f64);
            gauge!("raft_applied_index").set(m.last_applied.map_or(0.0, |l| l.index as f64));
            gauge!("raft_snapshot_index").set(m.snapshot.map_or(0.0, |l| l.index as f64));
            gauge!("raft_log_entries")
                .set(last_log.saturating_add(1).saturating_sub(purged) as f64);
            if leader.is_some() && m.current_leader.is_some() && leader != m.current_leader {
                counter!("raft_leader_changes_total").increment(1);
            }
            if m.current_leader.is_some() {
                leader = m.current_leader;
            }
            if m.snapshot.is_some() && snapshot != m.snapshot {
                counter!("raft_snapshots_total").increment(1);
                snapshot = m.snapshot;
            }
        }
        if watch.changed().await.is_err() {
            return;
        }
    }
}

fn describe() {
    describe_gauge!("raft_term", "The replica's current Raft term");
    describe_gauge!("raft_is_leader", "1 while this replica leads its shard");
    describe_gauge!("raft_leader_id", "The leader this replica knows (0: none)");
    describe_gauge!("raft_last_log_index", "Index of the last entry in the log");
    describe_gauge!(
        "raft_applied_index",
        "Index of the last entry applied to the state machine"
    );
    describe_gauge!("raft_snapshot_index", "Index the latest snapshot covers");
    describe_gauge!(
        "raft_log_entries",
        "Entries in the log not yet compacted away"
    );
    describe_counter!(
        "raft_leader_changes_total",
        "Times this replica saw the leader change"
    );
    describe_counter!("raft_snapshots_total", "Snapshots built or installed");
    describe_histogram!(
        "raft_append_seconds",
        metrics::Unit::Seconds,
        "Time to append entries to the log, fsync included"
    );
}
