//! The Raft state machine over any `Engine`, with snapshots as files.
//!
//! Applies are committed without fsync (the log already holds every
//! committed entry durably; after a crash openraft re-applies what the
//! engine lost), except every `sync_every` applies and before a snapshot,
//! which must never be older on disk than the log it lets openraft purge.

use std::path::PathBuf;
use std::sync::Arc;

use openraft::storage::RaftStateMachine;
use openraft::{OptionalSend, RaftSnapshotBuilder, StorageIOError};

use super::applied::Applied;
use super::apply::apply_entries;
use super::slots::SlotCell;
use super::snapshot::{Current, SnapshotDir};
use super::snapshot_file::{SnapshotReader, verify};
use super::snapshot_pacing::SnapshotPacing;
use super::types::{
    Entry, LogId, ProposalOutcome, Snapshot, SnapshotMeta, StorageIoError, StoredMembership,
    TypeConfig,
};
use crate::engine::{Engine, EngineError};

type IoResult<T> = Result<T, StorageIoError>;

fn sm_err(e: EngineError) -> StorageIoError {
    StorageIOError::write_state_machine(&e).into()
}

fn snap_err(e: impl std::error::Error + 'static) -> StorageIoError {
    StorageIOError::write_snapshot(None, &e).into()
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, EngineError> + Send + 'static,
) -> Result<T, EngineError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| EngineError::new("blocking task", e))?
}

/// One replica's state machine.
#[derive(Debug)]
pub struct StateMachine<E: Engine> {
    engine: Arc<E>,
    snapshots: SnapshotDir,
    pacing: Arc<SnapshotPacing>,
    slots: SlotCell,
    receiving: Option<PathBuf>,
    sync_every: u64,
    applied_since_sync: u64,
}

impl<E: Engine> StateMachine<E> {
    /// A state machine over `engine`, keeping snapshots in `snapshots`,
    /// fsyncing the engine at least every `sync_every` applies, and
    /// telling `pacing` what it applies and what its snapshots weigh, and
    /// `slots` which slots the shard owns.
    pub fn new(
        engine: Arc<E>,
        snapshots: SnapshotDir,
        pacing: Arc<SnapshotPacing>,
        slots: SlotCell,
        sync_every: u64,
    ) -> Self {
        Self {
            engine,
            snapshots,
            pacing,
            slots,
            receiving: None,
            sync_every: sync_every.max(1),
            applied_since_sync: 0,
        }
    }
}

/// Builds snapshot files from a consistent view of the engine.
#[derive(Debug)]
pub struct SnapshotBuilder<E: Engine> {
    engine: Arc<E>,
    snapshots: SnapshotDir,
    pacing: Arc<SnapshotPacing>,
}

fn snapshot_id(last: Option<LogId>) -> String {
    let millis = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    format!("{:020}-{millis}", last.map_or(0, |l| l.index))
}

impl<E: Engine> RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder<E> {
    async fn build_snapshot(&mut self) -> IoResult<Snapshot> {
        let engine = self.engine.clone();
        let snapshots = self.snapshots.clone();
        self.pacing.building();
        let (meta, path, size) = blocking(move || {
            // Durable first: the snapshot lets openraft purge the log.
            engine.sync()?;
            let view = engine.read()?;
            let state = Applied::of(&view.meta()?)?;
            let meta = SnapshotMeta {
                last_log_id: state.last_applied,
                last_membership: state.membership,
                snapshot_id: snapshot_id(state.last_applied),
            };
            let (path, size) = snapshots.write(view.as_ref(), meta.clone())?;
            Ok((meta, path, size))
        })
        .await
        .map_err(snap_err)?;
        self.pacing.current_size(size);
        let file = tokio::fs::File::open(path).await.map_err(snap_err)?;
        tracing::info!(snapshot = %meta.snapshot_id, uncompressed_bytes = size, "built snapshot");
        Ok(Snapshot {
            meta,
            snapshot: Box::new(file),
        })
    }
}

impl<E: Engine> RaftStateMachine<TypeConfig> for StateMachine<E> {
    type SnapshotBuilder = SnapshotBuilder<E>;

    async fn applied_state(&mut self) -> IoResult<(Option<LogId>, StoredMembership)> {
        let applied = self
            .engine
            .read()
            .and_then(|v| Applied::of(&v.meta()?))
            .map_err(sm_err)?;
        Ok((applied.last_applied, applied.membership))
    }

    async fn apply<I>(&mut self, entries: I) -> IoResult<Vec<ProposalOutcome>>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let entries: Vec<Entry> = entries.into_iter().collect();
        self.pacing.applied(
            entries.len() as u64,
            entries.iter().map(written_bytes).sum(),
        );
        self.applied_since_sync += entries.len() as u64;
        let durable = self.applied_since_sync >= self.sync_every;
        if durable {
            self.applied_since_sync = 0;
        }
        apply_entries(self.engine.as_ref(), &self.slots, entries, durable).map_err(sm_err)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        SnapshotBuilder {
            engine: self.engine.clone(),
            snapshots: self.snapshots.clone(),
            pacing: self.pacing.clone(),
        }
    }

    async fn begin_receiving_snapshot(&mut self) -> IoResult<Box<tokio::fs::File>> {
        if let Some(stale) = self.receiving.take() {
            let _ = tokio::fs::remove_file(stale).await;
        }
        let path = self.snapshots.temp_path();
        let file = tokio::fs::File::options()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)
            .await
            .map_err(snap_err)?;
        self.receiving = Some(path);
        Ok(Box::new(file))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        snapshot: Box<tokio::fs::File>,
    ) -> IoResult<()> {
        // Read from the handle we are given (not from our temp file): it is
        // the snapshot's data wherever it came from. Copy it to a file of
        // our own, which becomes the current snapshot once installed.
        if let Some(received) = self.receiving.take() {
            let _ = tokio::fs::remove_file(received).await;
        }
        let path = self.snapshots.temp_path();
        copy_to(*snapshot, &path).await.map_err(snap_err)?;
        let engine = self.engine.clone();
        let snapshots = self.snapshots.clone();
        let meta = meta.clone();
        let slots = self.slots.clone();
        let size = blocking(move || {
            let size = install(engine.as_ref(), &snapshots, &path, &meta)?;
            slots.load(engine.read()?.as_ref())?;
            Ok(size)
        })
        .await
        .map_err(snap_err)?;
        self.pacing.building();
        self.pacing.current_size(size);
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> IoResult<Option<Snapshot>> {
        let snapshots = self.snapshots.clone();
        let (header, path) = match blocking(move || snapshots.current())
            .await
            .map_err(snap_err)?
        {
            Current::Found(checked, path) => {
                self.pacing.current_size(checked.stream_bytes);
                (checked.header, path)
            }
            Current::Missing => return Ok(None),
            // The state machine is intact: the snapshot is rebuilt from it.
            Current::MovedAside => {
                let mut builder = self.get_snapshot_builder().await;
                return builder.build_snapshot().await.map(Some);
            }
        };
        let file = tokio::fs::File::open(path).await.map_err(snap_err)?;
        Ok(Some(Snapshot {
            meta: header.snapshot,
            snapshot: Box::new(file),
        }))
    }
}

/// The bytes an entry writes (keys and values of its mutations), which
/// the snapshot pacing weighs against the last snapshot's size.
fn written_bytes(entry: &Entry) -> u64 {
    match &entry.payload {
        openraft::EntryPayload::Normal(proposal) => proposal.written_bytes(),
        _ => 0,
    }
}

/// Copies a snapshot handle, from its start, into a durable file at `path`.
async fn copy_to(mut source: tokio::fs::File, path: &std::path::Path) -> std::io::Result<()> {
    use tokio::io::AsyncSeekExt;
    source.seek(std::io::SeekFrom::Start(0)).await?;
    let mut target = tokio::fs::File::create(path).await?;
    tokio::io::copy(&mut source, &mut target).await?;
    target.sync_all().await
}

/// Replaces the engine's contents with a received snapshot file, then keeps
/// the file as the current snapshot; returns its uncompressed size. The
/// whole file is checked first: a damaged snapshot is refused and nothing
/// is replaced.
fn install(
    engine: &dyn Engine,
    snapshots: &SnapshotDir,
    path: &std::path::Path,
    meta: &SnapshotMeta,
) -> Result<u64, EngineError> {
    let checked = verify(path).map_err(|e| {
        EngineError(format!(
            "received snapshot {} refused: {e}",
            meta.snapshot_id
        ))
    })?;
    if checked.header.snapshot.last_log_id != meta.last_log_id
        || Applied::of(&checked.header.state)?.last_applied != meta.last_log_id
    {
        return Err(EngineError(format!(
            "received snapshot {} does not match its metadata",
            meta.snapshot_id
        )));
    }
    // Read again while installing: the checksum is checked again at the
    // end, inside the one transaction, which a mismatch aborts.
    let (header, mut items) = SnapshotReader::open(path)?;
    engine.replace_all(&mut items, &header.state)?;
    snapshots.publish(path, &meta.snapshot_id)?;
    tracing::info!(snapshot = %meta.snapshot_id, items = header.items, "installed snapshot");
    Ok(checked.stream_bytes)
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use openraft::storage::RaftLogStorage;
    use openraft::testing::{StoreBuilder, Suite};

    use super::*;
    use crate::engine::memory::MemEngine;
    use crate::engine::redb::RedbEngine;
    use crate::raft::log_store::LogStore;
    use crate::raft::test_stores::{state_machine, wal_log};

    /// Builds a log store and a state machine in a fresh temp dir.
    struct Builder<L, E>(L, E);

    impl<LS, E, L, M> StoreBuilder<TypeConfig, LS, StateMachine<E>, tempfile::TempDir> for Builder<L, M>
    where
        LS: RaftLogStorage<TypeConfig>,
        E: Engine,
        L: Fn(&Path) -> LS + Send + Sync,
        M: Fn(&Path) -> E + Send + Sync,
    {
        async fn build(&self) -> IoResult<(tempfile::TempDir, LS, StateMachine<E>)> {
            let dir = tempfile::tempdir().map_err(snap_err)?;
            let log = (self.0)(dir.path());
            let sm = state_machine(dir.path(), (self.1)(dir.path()));
            Ok((dir, log, sm))
        }
    }

    fn redb_log(dir: &Path) -> LogStore {
        LogStore::open(&dir.join("log.redb")).expect("open redb log")
    }

    fn redb_engine(dir: &Path) -> RedbEngine {
        RedbEngine::open(&dir.join("state.redb")).expect("open engine")
    }

    fn memory_engine(_: &Path) -> MemEngine {
        MemEngine::new()
    }

    fn items(engine: &MemEngine) -> Vec<crate::engine::KeyValue> {
        engine
            .read()
            .expect("read")
            .iter_all()
            .expect("iter")
            .collect::<Result<_, _>>()
            .expect("items")
    }

    fn engine_with(keys: &[&str]) -> MemEngine {
        use crate::engine::{ChangeSet, Stored};
        let engine = MemEngine::new();
        let writes = keys
            .iter()
            .map(|k| {
                let stored = Stored {
                    version: 1,
                    value: k.as_bytes().to_vec(),
                };
                (k.as_bytes().to_vec(), Some(stored))
            })
            .collect();
        engine
            .commit(ChangeSet {
                writes,
                durable: true,
                ..ChangeSet::default()
            })
            .expect("commit");
        engine
    }

    #[test]
    fn a_damaged_received_snapshot_is_refused_before_anything_is_replaced() {
        let dir = tempfile::tempdir().expect("tempdir");
        let snaps = SnapshotDir::open(dir.path().join("snaps")).expect("open");
        let source = engine_with(&["a", "b", "c"]);
        let meta = SnapshotMeta {
            snapshot_id: "s".into(),
            ..SnapshotMeta::default()
        };
        let (written, _) = snaps
            .write(source.read().expect("read").as_ref(), meta.clone())
            .expect("write");
        let good = std::fs::read(&written).expect("read");
        let target = engine_with(&["z"]);
        let before = items(&target);

        let mut bad = good.clone();
        let middle = bad.len() / 2;
        bad[middle] ^= 0x01;
        let received = snaps.temp_path();
        std::fs::write(&received, &bad).expect("receive");
        let err = install(&target, &snaps, &received, &meta).expect_err("refused");
        assert!(err.to_string().contains("refused"), "{err}");
        assert_eq!(items(&target), before, "nothing was replaced");

        let received = snaps.temp_path();
        std::fs::write(&received, &good).expect("receive");
        install(&target, &snaps, &received, &meta).expect("installed");
        assert_eq!(items(&target), items(&source));
    }

    // openraft's own storage conformance suite, for every log store and
    // every engine. It builds its own runtime, so these are plain #[test]s.
    #[test]
    fn openraft_suite_redb_log_redb_engine() {
        Suite::test_all(Builder(redb_log, redb_engine)).expect("suite");
    }

    #[test]
    fn openraft_suite_redb_log_memory_engine() {
        Suite::test_all(Builder(redb_log, memory_engine)).expect("suite");
    }

    #[test]
    fn openraft_suite_wal_log_redb_engine() {
        Suite::test_all(Builder(wal_log, redb_engine)).expect("suite");
    }

    #[test]
    fn openraft_suite_wal_log_memory_engine() {
        Suite::test_all(Builder(wal_log, memory_engine)).expect("suite");
    }
}
