//! Raft metrics for Prometheus, from openraft's own metrics channel.
//!
//! Every series of a storage process carries `shard` and `replica` labels
//! (set once on the exporter), so none is added here.

use std::time::Duration;

use metrics::{
    Counter, Gauge, counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram,
};

use super::types::{LogId, Node, NodeId, Raft};

type RaftMetrics = openraft::RaftMetrics<NodeId, Node>;

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
    let mut mirror = Mirror::new();
    loop {
        mirror.update(&watch.borrow_and_update());
        if watch.changed().await.is_err() {
            return;
        }
    }
}

/// The metric handles, looked up once (updates run on every applied
/// entry), and what the counters compare against.
struct Mirror {
    term: Gauge,
    is_leader: Gauge,
    leader_id: Gauge,
    last_log_index: Gauge,
    applied_index: Gauge,
    snapshot_index: Gauge,
    log_entries: Gauge,
    leader_changes: Counter,
    snapshots: Counter,
    leader: Option<NodeId>,
    snapshot: Option<LogId>,
}

impl Mirror {
    fn new() -> Self {
        Self {
            term: gauge!("raft_term"),
            is_leader: gauge!("raft_is_leader"),
            leader_id: gauge!("raft_leader_id"),
            last_log_index: gauge!("raft_last_log_index"),
            applied_index: gauge!("raft_applied_index"),
            snapshot_index: gauge!("raft_snapshot_index"),
            log_entries: gauge!("raft_log_entries"),
            leader_changes: counter!("raft_leader_changes_total"),
            snapshots: counter!("raft_snapshots_total"),
            leader: None,
            snapshot: None,
        }
    }

    fn update(&mut self, m: &RaftMetrics) {
        self.term.set(m.current_term as f64);
        self.is_leader
            .set(f64::from(u8::from(m.current_leader == Some(m.id))));
        self.leader_id
            .set(m.current_leader.map_or(0.0, |id| id as f64));
        let last_log = m.last_log_index.unwrap_or(0);
        let purged = m.purged.map_or(0, |p| p.index + 1);
        self.last_log_index.set(last_log as f64);
        self.applied_index
            .set(m.last_applied.map_or(0.0, |l| l.index as f64));
        self.snapshot_index
            .set(m.snapshot.map_or(0.0, |l| l.index as f64));
        self.log_entries
            .set(last_log.saturating_add(1).saturating_sub(purged) as f64);
        if self.leader.is_some() && m.current_leader.is_some() && self.leader != m.current_leader {
            self.leader_changes.increment(1);
        }
        if m.current_leader.is_some() {
            self.leader = m.current_leader;
        }
        if m.snapshot.is_some() && self.snapshot != m.snapshot {
            self.snapshots.increment(1);
            self.snapshot = m.snapshot;
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
