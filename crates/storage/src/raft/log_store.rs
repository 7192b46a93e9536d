//! The Raft log on disk: one redb file per replica.
//!
//! Entries live in `log` under their index (u64 keys sort numerically);
//! vote, committed and last-purged ids live in `state`. `append` writes a
//! whole batch of entries in one write transaction with one fsync, and only
//! then tells openraft the entries are durable. `save_committed` skips the
//! fsync: losing it in a crash only means re-learning the commit index from
//! the leader, and it becomes durable with the next append anyway.

use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};
use std::path::Path;
use std::sync::Arc;

use openraft::storage::{LogFlushed, LogState, RaftLogStorage};
use openraft::{OptionalSend, RaftLogReader, StorageIOError};
use redb::{Database, Durability, ReadableDatabase, ReadableTable, TableDefinition};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::types::{Entry, LogId, StorageIoError, TypeConfig, Vote};

const LOG: TableDefinition<u64, &[u8]> = TableDefinition::new("log");
const STATE: TableDefinition<&str, &[u8]> = TableDefinition::new("state");
const VOTE: &str = "vote";
const COMMITTED: &str = "committed";
const LAST_PURGED: &str = "last_purged";

/// The redb-backed Raft log. Clones share the database.
#[derive(Debug, Clone)]
pub struct LogStore {
    db: Arc<Database>,
}

type IoResult<T> = Result<T, StorageIoError>;

fn write_err(e: impl std::error::Error + 'static) -> StorageIoError {
    StorageIOError::write_logs(&e).into()
}

fn read_err(e: impl std::error::Error + 'static) -> StorageIoError {
    StorageIOError::read_logs(&e).into()
}

impl LogStore {
    /// Opens (or creates) the log file and its tables, checking the whole
    /// file against its page checksums (a damaged file is an error, not a
    /// panic).
    pub fn open(path: &Path) -> IoResult<Self> {
        let db = Database::builder()
            .set_check_integrity_on_open(true)
            .create(path)
            .map_err(write_err)?;
        let tx = db.begin_write().map_err(write_err)?;
        tx.open_table(LOG).map_err(write_err)?;
        tx.open_table(STATE).map_err(write_err)?;
        tx.commit().map_err(write_err)?;
        Ok(Self { db: Arc::new(db) })
    }

    /// Runs a write transaction on a blocking thread: redb blocks on fsync.
    async fn write(
        &self,
        durable: bool,
        body: impl FnOnce(&redb::WriteTransaction) -> Result<(), redb::Error> + Send + 'static,
    ) -> IoResult<()> {
        let db = self.db.clone();
        let run = move || -> Result<(), redb::Error> {
            let mut tx = db.begin_write()?;
            if !durable {
                tx.set_durability(Durability::None)?;
            }
            body(&tx)?;
            tx.commit()?;
            Ok(())
        };
        run().map_err(write_err)
    }

    async fn put_state<T: Serialize>(
        &self,
        key: &'static str,
        value: &T,
        durable: bool,
    ) -> IoResult<()> {
        let bytes = postcard::to_stdvec(value).map_err(write_err)?;
        self.write(durable, move |tx| {
            tx.open_table(STATE)?.insert(key, bytes.as_slice())?;
            Ok(())
        })
        .await
    }

    fn get_state<T: DeserializeOwned>(&self, key: &str) -> IoResult<Option<T>> {
        let tx = self.db.begin_read().map_err(read_err)?;
        let table = tx.open_table(STATE).map_err(read_err)?;
        let Some(bytes) = table.get(key).map_err(read_err)? else {
            return Ok(None);
        };
        postcard::from_bytes(bytes.value())
            .map(Some)
            .map_err(read_err)
    }

    fn last_entry_id(&self) -> IoResult<Option<LogId>> {
        let tx = self.db.begin_read().map_err(read_err)?;
        let table = tx.open_table(LOG).map_err(read_err)?;
        let Some((_, bytes)) = table.last().map_err(read_err)? else {
            return Ok(None);
        };
        let entry: Entry = postcard::from_bytes(bytes.value()).map_err(read_err)?;
        Ok(Some(entry.log_id))
    }
}

fn to_bounds<RB: RangeBounds<u64>>(range: &RB) -> (Bound<u64>, Bound<u64>) {
    (range.start_bound().cloned(), range.end_bound().cloned())
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> IoResult<Vec<Entry>> {
        let tx = self.db.begin_read().map_err(read_err)?;
        let table = tx.open_table(LOG).map_err(read_err)?;
        let mut entries = Vec::new();
        for item in table.range(to_bounds(&range)).map_err(read_err)? {
            let (_, bytes) = item.map_err(read_err)?;
            entries.push(postcard::from_bytes(bytes.value()).map_err(read_err)?);
        }
        Ok(entries)
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = Self;

    async fn get_log_state(&mut self) -> IoResult<LogState<TypeConfig>> {
        let last_purged_log_id: Option<LogId> = self.get_state(LAST_PURGED)?;
        let last_log_id = self.last_entry_id()?.or(last_purged_log_id);
        Ok(LogState {
            last_purged_log_id,
            last_log_id,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote) -> IoResult<()> {
        self.put_state(VOTE, vote, true).await
    }

    async fn read_vote(&mut self) -> IoResult<Option<Vote>> {
        self.get_state(VOTE)
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> IoResult<()> {
        self.put_state(COMMITTED, &committed, false).await
    }

    async fn read_committed(&mut self) -> IoResult<Option<LogId>> {
        Ok(self.get_state::<Option<LogId>>(COMMITTED)?.flatten())
    }

    async fn append<I>(&mut self, entries: I, callback: LogFlushed<TypeConfig>) -> IoResult<()>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let started = std::time::Instant::now();
        let encoded = entries
            .into_iter()
            .map(|e| postcard::to_stdvec(&e).map(|bytes| (e.log_id.index, bytes)))
            .collect::<Result<Vec<_>, _>>()
            .map_err(write_err)?;
        let result = self
            .write(true, move |tx| {
                let mut log = tx.open_table(LOG)?;
                for (index, bytes) in &encoded {
                    log.insert(*index, bytes.as_slice())?;
                }
                Ok(())
            })
            .await;
        // Only now are the entries on disk.
        super::metrics::record_append(started.elapsed());
        callback.log_io_completed(
            result
                .as_ref()
                .map(|_| ())
                .map_err(|e| std::io::Error::other(e.to_string())),
        );
        result
    }

    async fn truncate(&mut self, log_id: LogId) -> IoResult<()> {
        self.write(true, move |tx| {
            tx.open_table(LOG)?
                .retain_in(log_id.index.., |_, _| false)?;
            Ok(())
        })
        .await
    }

    async fn purge(&mut self, log_id: LogId) -> IoResult<()> {
        let bytes = postcard::to_stdvec(&log_id).map_err(write_err)?;
        self.write(true, move |tx| {
            tx.open_table(STATE)?
                .insert(LAST_PURGED, bytes.as_slice())?;
            tx.open_table(LOG)?
                .retain_in(..=log_id.index, |_, _| false)?;
            Ok(())
        })
        .await
    }
}
