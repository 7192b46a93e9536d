//! The log store and state machine the Raft tests build in a temp dir:
//! one recipe for openraft's conformance suite and the leader-flush tests.

use std::path::Path;
use std::sync::Arc;

use super::slots::{SlotCell, SlotTable};
use super::snapshot::SnapshotDir;
use super::snapshot_pacing::SnapshotPacing;
use super::state_machine::StateMachine;
use super::wal_store::{WalLimits, WalLogStore};
use crate::engine::Engine;

/// A WAL log store under `dir` with small (1 MiB) chunks and cache.
pub fn wal_log(dir: &Path) -> WalLogStore {
    let limits = WalLimits {
        cache_bytes: 1 << 20,
        chunk_bytes: 1 << 20,
    };
    WalLogStore::open(&dir.join("wal"), limits).expect("open wal")
}

/// A state machine over `engine`, its snapshots under `dir`, owning
/// every slot.
pub fn state_machine<E: Engine>(dir: &Path, engine: E) -> StateMachine<E> {
    let snapshots = SnapshotDir::open(dir.join("snapshots")).expect("open snapshot dir");
    let pacing = Arc::new(SnapshotPacing::new(10_000, 25));
    let slots = SlotCell::new(SlotTable::owning_range(1, 1024, 0, 1024));
    StateMachine::new(Arc::new(engine), snapshots, pacing, slots, 64)
}
