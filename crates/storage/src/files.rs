//! Opening a replica's files at startup, checking each (see `damage` for
//! what happens to a damaged one).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use openraft::storage::RaftLogStorage;

use crate::damage::{Damage, move_aside};
use crate::engine::redb::RedbEngine;
use crate::engine::{Engine, EngineError};
use crate::node::{LogKind, RaftTuning};
use crate::raft::applied::Applied;
use crate::raft::log_store::LogStore;
use crate::raft::snapshot::{Current, SnapshotDir};
use crate::raft::snapshot_file::SnapshotReader;
use crate::raft::wal_store::{WalLimits, WalLogStore};
use crate::raft::{LogId, TypeConfig};
use crate::rebuild::Marker;

/// The Raft log, in whichever store the replica uses.
pub enum Log {
    Wal(WalLogStore),
    Redb(LogStore),
}

/// A replica's files, opened and checked.
pub struct Files {
    pub log: Log,
    pub engine: Arc<RedbEngine>,
    pub snapshots: SnapshotDir,
    /// Present while the replica is being rebuilt from its peers.
    pub marker: Option<Marker>,
}

/// Why the files could not be opened.
#[derive(Debug)]
pub enum OpenError {
    /// The log (or everything that could replace the state machine) is
    /// damaged: only the replica's peers can restore it.
    Damaged(Damage),
    /// Anything else (permissions, a full disk...).
    Io(String),
}

fn io(doing: &str, path: &Path) -> impl Fn(std::io::Error) -> OpenError {
    let doing = format!("{doing} {}", path.display());
    move |e| OpenError::Io(format!("{doing}: {e}"))
}

/// The WAL directory or redb log file of a replica.
pub fn log_path(data_dir: &Path, kind: LogKind) -> PathBuf {
    match kind {
        LogKind::Wal => data_dir.join("raft-wal"),
        LogKind::Redb => data_dir.join("raft-log.redb"),
    }
}

/// Opens and checks every file in `data_dir`.
pub async fn open(data_dir: &Path, raft: &RaftTuning) -> Result<Files, OpenError> {
    let marker = Marker::load(data_dir).map_err(io("read", &data_dir.join("REBUILDING")))?;
    let (log, purged) = open_log(data_dir, raft).await?;
    let snapshots =
        SnapshotDir::open(data_dir.join("snapshots")).map_err(|e| OpenError::Io(e.to_string()))?;
    let engine = open_engine(&data_dir.join("state.redb"), &snapshots, purged)?;
    Ok(Files {
        log,
        engine: Arc::new(engine),
        snapshots,
        marker,
    })
}

/// Opens the log and reads its state and vote through; returns the log
/// and its purge point.
async fn open_log(data_dir: &Path, raft: &RaftTuning) -> Result<(Log, Option<LogId>), OpenError> {
    let path = log_path(data_dir, raft.log);
    let damaged =
        |e: &dyn std::fmt::Display| OpenError::Damaged(Damage::new("the Raft log", &path, e));
    match raft.log {
        LogKind::Wal => {
            let limits = WalLimits {
                cache_bytes: raft.wal_cache_bytes,
                chunk_bytes: raft.wal_chunk_bytes,
            };
            let mut log = WalLogStore::open(&path, limits).map_err(|e| damaged(&e))?;
            let purged = check_log(&mut log).await.map_err(|e| damaged(&e))?;
            Ok((Log::Wal(log), purged))
        }
        LogKind::Redb => {
            let mut log = LogStore::open(&path).map_err(|e| damaged(&e))?;
            let purged = check_log(&mut log).await.map_err(|e| damaged(&e))?;
            Ok((Log::Redb(log), purged))
        }
    }
}

async fn check_log<LS: RaftLogStorage<TypeConfig>>(
    log: &mut LS,
) -> Result<Option<LogId>, openraft::StorageError<u64>> {
    log.read_vote().await?;
    log.read_committed().await?;
    Ok(log.get_log_state().await?.last_purged_log_id)
}

/// Opens the state machine; a damaged one is moved aside and rebuilt
/// from the snapshot (the log then re-applies what came after it).
fn open_engine(
    path: &Path,
    snapshots: &SnapshotDir,
    purged: Option<LogId>,
) -> Result<RedbEngine, OpenError> {
    let problem = match check_engine(path, purged) {
        Ok(engine) => return Ok(engine),
        Err(problem) => problem,
    };
    let snapshot = snapshots
        .current()
        .map_err(|e| OpenError::Io(e.to_string()))?;
    let Current::Found(_, snapshot) = snapshot else {
        if purged.is_none() {
            // Nothing was ever compacted away: the log alone rebuilds it.
            let aside = move_aside(path).map_err(io("move aside", path))?;
            report(path, &aside, &problem, "the whole log");
            return RedbEngine::open(path).map_err(|e| OpenError::Io(e.to_string()));
        }
        return Err(OpenError::Damaged(Damage::new(
            "the state machine",
            path,
            format!("{problem}, and there is no intact snapshot to rebuild it from"),
        )));
    };
    let aside = move_aside(path).map_err(io("move aside", path))?;
    report(path, &aside, &problem, &snapshot.display().to_string());
    let engine = RedbEngine::open(path).map_err(|e| OpenError::Io(e.to_string()))?;
    let (header, mut items) =
        SnapshotReader::open(&snapshot).map_err(|e| OpenError::Io(e.to_string()))?;
    engine
        .replace_all(&mut items, &header.state)
        .map_err(|e| OpenError::Io(format!("rebuild {} from the snapshot: {e}", path.display())))?;
    Ok(engine)
}

fn report(path: &Path, aside: &Path, problem: &EngineError, from: &str) {
    tracing::error!(
        file = %path.display(),
        moved_to = %aside.display(),
        error = %problem,
        from,
        "the state machine is damaged; moved it aside and rebuilt it (the Raft log re-applies the rest)"
    );
}

/// Opens the engine and checks it can be used with this log.
fn check_engine(path: &Path, purged: Option<LogId>) -> Result<RedbEngine, EngineError> {
    let engine = RedbEngine::open(path)?;
    let applied = Applied::of(&engine.read()?.meta()?)?;
    if let Some(purged) = purged
        && applied.last_applied.is_none_or(|a| a.index < purged.index)
    {
        return Err(EngineError(format!(
            "it has applied only up to {:?}, but the log was compacted up to index {}",
            applied.last_applied.map(|l| l.index),
            purged.index
        )));
    }
    Ok(engine)
}
