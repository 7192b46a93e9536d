//! The Raft log as an append-only write-ahead log (the `raft-log` crate,
//! by openraft's author): chunk files of checksummed records, appended
//! sequentially and made durable with one `fdatasync` per flush by a
//! background flush thread, which then calls openraft's `LogFlushed`.
//!
//! Why a WAL and not a B-tree: a Raft log is only ever appended, truncated
//! at the end and purged at the front. A redb commit rewrites B-tree pages
//! and its header (about twenty `pwrite`s) before its fsync; a WAL writes
//! the record once. Each Raft round waits for a log append on the leader
//! and then on a follower, so that difference is latency in every write
//! (see docs/benchmarks.md for the measurement).

use std::fmt::Debug;
use std::io::{self, Read, Write};
use std::ops::{Bound, RangeBounds};
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use openraft::storage::{LogFlushed, LogState, RaftLogStorage};
use openraft::{EntryPayload, OptionalSend, RaftLogReader, StorageIOError};
use raft_log::api::raft_log_writer::RaftLogWriter;
use raft_log::codeq::{Decode, Encode};
use raft_log::{Callback, RaftLog};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::types::{Entry, LogId, StorageIoError, TypeConfig, Vote};

/// A value stored in the WAL: postcard, behind a u32 length.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Wire<T>(pub T);

impl<T: Serialize> Encode for Wire<T> {
    fn encode<W: Write>(&self, mut w: W) -> Result<usize, io::Error> {
        let bytes = postcard::to_stdvec(&self.0).map_err(io::Error::other)?;
        let len = u32::try_from(bytes.len()).map_err(io::Error::other)?;
        w.write_all(&len.to_le_bytes())?;
        w.write_all(&bytes)?;
        Ok(4 + bytes.len())
    }
}

impl<T: DeserializeOwned> Decode for Wire<T> {
    fn decode<R: Read>(mut r: R) -> Result<Self, io::Error> {
        let mut len = [0; 4];
        r.read_exact(&mut len)?;
        let mut bytes = vec![0; u32::from_le_bytes(len) as usize];
        r.read_exact(&mut bytes)?;
        postcard::from_bytes(&bytes)
            .map(Wire)
            .map_err(io::Error::other)
    }
}

/// The WAL's type configuration.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WalTypes;

impl raft_log::Types for WalTypes {
    type LogId = Wire<LogId>;
    type LogPayload = Wire<EntryPayload<TypeConfig>>;
    type Vote = Wire<Vote>;
    type Callback = Flushed;
    type UserData = Wire<()>;

    fn log_index(log_id: &Self::LogId) -> u64 {
        log_id.0.index
    }

    fn payload_size(payload: &Self::LogPayload) -> u64 {
        match &payload.0 {
            EntryPayload::Normal(p) => p
                .writes
                .iter()
                .map(|w| {
                    w.partition.len()
                        + w.mutations
                            .iter()
                            .map(|m| {
                                m.table.len() + m.key.len() + m.value.as_ref().map_or(0, Vec::len)
                            })
                            .sum::<usize>()
                        + w.conditions.len() * 16
                })
                .sum::<usize>() as u64,
            _ => 64,
        }
    }
}

/// Who waits for a flush: openraft (appends) or this store (vote, truncate, purge).
pub enum Flushed {
    /// Entries appended at the instant given, for openraft.
    Append(LogFlushed<TypeConfig>, std::time::Instant),
    Wait(tokio::sync::oneshot::Sender<io::Result<()>>),
}

impl Callback for Flushed {
    fn send(self, res: Result<(), io::Error>) {
        match self {
            Self::Append(callback, started) => {
                super::metrics::record_append(started.elapsed());
                callback.log_io_completed(res);
            }
            Self::Wait(tx) => {
                let _ = tx.send(res);
            }
        }
    }
}

/// How big the WAL may grow in memory.
#[derive(Debug, Clone, Copy)]
pub struct WalLimits {
    /// Bytes of recent entries kept in memory for replication.
    pub cache_bytes: usize,
}

/// The WAL-backed Raft log. Clones share the log.
#[derive(Clone)]
pub struct WalLogStore {
    log: Arc<Mutex<RaftLog<WalTypes>>>,
}

impl Debug for WalLogStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WalLogStore").finish_non_exhaustive()
    }
}

type IoResult<T> = Result<T, StorageIoError>;

fn write_err(e: impl std::error::Error + 'static) -> StorageIoError {
    StorageIOError::write_logs(&e).into()
}

fn read_err(e: impl std::error::Error + 'static) -> StorageIoError {
    StorageIOError::read_logs(&e).into()
}

#[derive(Debug, thiserror::Error)]
#[error("the WAL lock is poisoned")]
struct Poisoned;

impl WalLogStore {
    /// Opens (or creates) the WAL in `dir`.
    pub fn open(dir: &Path, limits: WalLimits) -> IoResult<Self> {
        std::fs::create_dir_all(dir).map_err(write_err)?;
        let mut config = raft_log::Config::new(dir.display());
        // Flush as soon as a write arrives: every Raft round waits for it.
        config.wal.flush_batch_wait = Some(Duration::ZERO);
        config.log_cache_capacity = Some(limits.cache_bytes);
        let log = RaftLog::open(Arc::new(config)).map_err(write_err)?;
        Ok(Self {
            log: Arc::new(Mutex::new(log)),
        })
    }

    fn lock(&self) -> Result<MutexGuard<'_, RaftLog<WalTypes>>, StorageIoError> {
        self.log.lock().map_err(|_| write_err(Poisoned))
    }

    /// Queues `change`, then waits until it is durable.
    async fn durably(
        &self,
        change: impl FnOnce(&mut RaftLog<WalTypes>) -> io::Result<()>,
    ) -> IoResult<()> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        {
            let mut log = self.lock()?;
            change(&mut log).map_err(write_err)?;
            log.flush(true, Some(Flushed::Wait(tx)))
                .map_err(write_err)?;
        }
        rx.await
            .map_err(|_| write_err(io::Error::other("the WAL flush thread stopped")))?
            .map_err(write_err)
    }
}

fn half_open<RB: RangeBounds<u64>>(range: &RB) -> (u64, u64) {
    let from = match range.start_bound() {
        Bound::Included(i) => *i,
        Bound::Excluded(i) => i.saturating_add(1),
        Bound::Unbounded => 0,
    };
    let to = match range.end_bound() {
        Bound::Included(i) => i.saturating_add(1),
        Bound::Excluded(i) => *i,
        Bound::Unbounded => u64::MAX,
    };
    (from, to)
}

impl RaftLogReader<TypeConfig> for WalLogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> IoResult<Vec<Entry>> {
        let (from, to) = half_open(&range);
        let log = self.lock()?;
        log.read(from, to)
            .map(|item| {
                item.map(|(log_id, payload)| Entry {
                    log_id: log_id.0,
                    payload: payload.0,
                })
                .map_err(read_err)
            })
            .collect()
    }
}

impl RaftLogStorage<TypeConfig> for WalLogStore {
    type LogReader = Self;

    async fn get_log_state(&mut self) -> IoResult<LogState<TypeConfig>> {
        let log = self.lock()?;
        let state = log.log_state();
        let last_purged_log_id = state.purged().map(|l| l.0);
        Ok(LogState {
            last_purged_log_id,
            last_log_id: state.last().map(|l| l.0).or(last_purged_log_id),
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote) -> IoResult<()> {
        let vote = Wire(*vote);
        self.durably(|log| log.save_vote(vote).map(drop)).await
    }

    async fn read_vote(&mut self) -> IoResult<Option<Vote>> {
        Ok(self.lock()?.log_state().vote().map(|v| v.0))
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> IoResult<()> {
        // Not flushed: it becomes durable with the next append.
        if let Some(c) = committed {
            self.lock()?.commit(Wire(c)).map_err(write_err)?;
        }
        Ok(())
    }

    async fn read_committed(&mut self) -> IoResult<Option<LogId>> {
        Ok(self.lock()?.log_state().committed().map(|c| c.0))
    }

    async fn append<I>(&mut self, entries: I, callback: LogFlushed<TypeConfig>) -> IoResult<()>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let started = std::time::Instant::now();
        let mut log = self.lock()?;
        // Entries at or below the purge point are already in the state
        // machine (openraft never sends them; its conformance suite does).
        let purged = log.log_state().purged().map(|p| p.0.index);
        let entries: Vec<Entry> = entries
            .into_iter()
            .filter(|e| purged.is_none_or(|p| e.log_id.index > p))
            .collect();
        if entries.is_empty() {
            callback.log_io_completed(Ok(()));
            return Ok(());
        }
        // Appending at an index the log already holds overwrites from there
        // (openraft truncates first itself; its conformance suite does not).
        if let (Some(first), Some(last)) = (entries.first(), log.log_state().last())
            && first.log_id.index <= last.0.index
        {
            log.truncate(first.log_id.index).map_err(write_err)?;
        }
        log.append(
            entries
                .into_iter()
                .map(|e| (Wire(e.log_id), Wire(e.payload))),
        )
        .map_err(write_err)?;
        // The flush thread calls back once the records are on disk.
        log.flush(true, Some(Flushed::Append(callback, started)))
            .map_err(write_err)
    }

    async fn truncate(&mut self, log_id: LogId) -> IoResult<()> {
        self.durably(|log| log.truncate(log_id.index).map(drop))
            .await
    }

    async fn purge(&mut self, log_id: LogId) -> IoResult<()> {
        self.durably(|log| log.purge(Wire(log_id)).map(drop)).await
    }
}
