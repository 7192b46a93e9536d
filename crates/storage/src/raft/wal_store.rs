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

/// The largest value a WAL record may carry. A length read from disk is
/// checked against it before anything is allocated.
pub const MAX_WIRE_BYTES: usize = crate::grpc::raft_network::MAX_MESSAGE_BYTES;

/// Set in a length word written with its own checksum (see `Wire`).
const FRAMED: u32 = 1 << 31;

/// A value stored in the WAL: postcard, behind a length header.
///
/// The header is `u32 LE (length | FRAMED)` then `u32 LE crc32` of those
/// four bytes. raft-log checksums each whole record, but it decodes the
/// record before it can check that checksum, so the length must be
/// trustworthy on its own: a flipped bit in an unchecked length that
/// pointed past the end of the file would look exactly like a torn tail
/// (an incomplete last record), and the WAL would "repair" it by cutting
/// off every acknowledged record after it. With the length checked, running
/// out of bytes means a truly torn tail, and a damaged length is an error.
/// Records written before the header had a checksum (no FRAMED bit) are
/// still read, with their length bounded.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Wire<T>(pub T);

fn invalid(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message)
}

impl<T: Serialize> Encode for Wire<T> {
    fn encode<W: Write>(&self, mut w: W) -> Result<usize, io::Error> {
        let bytes = postcard::to_stdvec(&self.0).map_err(io::Error::other)?;
        if bytes.len() > MAX_WIRE_BYTES {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "WAL value of {} bytes exceeds {MAX_WIRE_BYTES}",
                    bytes.len()
                ),
            ));
        }
        let len = u32::try_from(bytes.len()).map_err(io::Error::other)? | FRAMED;
        let len = len.to_le_bytes();
        w.write_all(&len)?;
        w.write_all(&crc32fast::hash(&len).to_le_bytes())?;
        w.write_all(&bytes)?;
        Ok(8 + bytes.len())
    }
}

/// Reads a value's length header; see `Wire`.
fn read_len(r: &mut impl Read) -> Result<usize, io::Error> {
    let mut word = [0; 4];
    r.read_exact(&mut word)?;
    let raw = u32::from_le_bytes(word);
    if raw & FRAMED != 0 {
        let mut crc = [0; 4];
        r.read_exact(&mut crc)?;
        if u32::from_le_bytes(crc) != crc32fast::hash(&word) {
            return Err(invalid(format!(
                "damaged WAL record: the checksum of its length word {raw:#010x} does not match"
            )));
        }
    }
    let len = (raw & !FRAMED) as usize;
    if len > MAX_WIRE_BYTES {
        return Err(invalid(format!(
            "damaged WAL record: length {len} exceeds {MAX_WIRE_BYTES}"
        )));
    }
    Ok(len)
}

impl<T: DeserializeOwned> Decode for Wire<T> {
    fn decode<R: Read>(mut r: R) -> Result<Self, io::Error> {
        let mut bytes = vec![0; read_len(&mut r)?];
        r.read_exact(&mut bytes)?;
        match postcard::take_from_bytes(&bytes) {
            Ok((value, [])) => Ok(Wire(value)),
            Ok((_, rest)) => Err(invalid(format!(
                "damaged WAL record: {} bytes after its value",
                rest.len()
            ))),
            Err(e) => Err(invalid(format!("damaged WAL record: {e}"))),
        }
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

/// How big the WAL may grow, in memory and on disk.
#[derive(Debug, Clone, Copy)]
pub struct WalLimits {
    /// Bytes of recent entries kept in memory for replication.
    pub cache_bytes: usize,
    /// The size at which the WAL starts a new chunk file. Purging (after a
    /// snapshot) deletes only whole chunks behind the purge point, so this
    /// bounds the disk the log holds beyond the entries it must keep.
    pub chunk_bytes: usize,
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
        // raft-log's default chunk is 1 GiB or 1M records: a shard's whole
        // log stayed in one chunk file, which purging never deletes.
        config.wal.chunk_max_size = Some(limits.chunk_bytes);
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

#[cfg(test)]
impl WalLogStore {
    /// Appends without a flush report (tests that stand in for a slow disk).
    pub(crate) fn append_without_report(
        &self,
        entries: impl IntoIterator<Item = Entry>,
    ) -> IoResult<()> {
        let entries = entries
            .into_iter()
            .map(|e| (Wire(e.log_id), Wire(e.payload)));
        self.lock()?.append(entries).map(drop).map_err(write_err)
    }

    /// Waits until everything appended so far is on disk.
    pub(crate) async fn sync(&self) -> IoResult<()> {
        self.durably(|_| Ok(())).await
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

#[cfg(test)]
mod tests {
    use super::*;

    fn encoded(value: &str) -> Vec<u8> {
        let mut out = Vec::new();
        Wire(value.to_string()).encode(&mut out).expect("encode");
        out
    }

    fn decode(bytes: &[u8]) -> io::Result<String> {
        Wire::<String>::decode(bytes).map(|w| w.0)
    }

    fn dir_bytes(dir: &Path) -> u64 {
        std::fs::read_dir(dir)
            .expect("read dir")
            .map(|e| e.expect("entry").metadata().expect("metadata").len())
            .sum()
    }

    #[tokio::test]
    async fn purging_deletes_the_chunks_behind_the_purge_point() {
        let dir = tempfile::tempdir().expect("tempdir");
        let limits = WalLimits {
            cache_bytes: 1 << 20,
            chunk_bytes: 16 << 10,
        };
        let mut store = WalLogStore::open(dir.path(), limits).expect("open");
        let id = |index| LogId::new(openraft::CommittedLeaderId::new(1, 1), index);
        let payload = || {
            EntryPayload::Normal(crate::raft::Proposal {
                writes: vec![crate::raft::WriteBatch {
                    partition: "acme/alice".into(),
                    ..Default::default()
                }],
                slot: None,
            })
        };
        store
            .durably(|log| {
                log.append((1..=5_000).map(|i| (Wire(id(i)), Wire(payload()))))
                    .map(drop)
            })
            .await
            .expect("append");
        let before = dir_bytes(dir.path());
        store.purge(id(4_900)).await.expect("purge");
        // The flush thread unlinks the chunks after the purge record is
        // durable; it works in order, so one more flush waits for that.
        store.durably(|_| Ok(())).await.expect("flush");
        let after = dir_bytes(dir.path());
        assert!(
            after * 10 < before,
            "purging 98 % of the log left {after} of {before} bytes"
        );
        let kept = store
            .try_get_log_entries(4_901..=5_000)
            .await
            .expect("read the kept entries");
        assert_eq!(kept.len(), 100);
    }

    #[test]
    fn values_round_trip() {
        assert_eq!(decode(&encoded("hello")).expect("decode"), "hello");
    }

    #[test]
    fn a_cut_value_is_a_torn_tail() {
        let bytes = encoded("hello");
        for cut in 0..bytes.len() {
            let err = decode(&bytes[..cut]).expect_err("cut");
            assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof, "cut at {cut}");
        }
    }

    #[test]
    fn a_flipped_length_is_damage_not_a_torn_tail() {
        let bytes = encoded("hello");
        for byte in 0..8 {
            for bit in 0..8 {
                if (byte, bit) == (3, 7) {
                    // The FRAMED flag: without it the value reads as a legacy
                    // one; the WAL record's own checksum catches that.
                    continue;
                }
                let mut bad = bytes.clone();
                bad[byte] ^= 1 << bit;
                // Followed by plenty of bytes: a wrong length never runs out
                // of input here, and still must not decode.
                bad.extend_from_slice(&[0; 64]);
                let err = decode(&bad).expect_err("damaged");
                assert_eq!(
                    err.kind(),
                    io::ErrorKind::InvalidData,
                    "{byte}.{bit}: {err}"
                );
            }
        }
    }

    #[test]
    fn legacy_values_are_read_with_their_length_bounded() {
        let body = postcard::to_stdvec("old").expect("encode");
        let mut legacy = (body.len() as u32).to_le_bytes().to_vec();
        legacy.extend_from_slice(&body);
        assert_eq!(decode(&legacy).expect("decode"), "old");
        let huge = (FRAMED - 1).to_le_bytes();
        let err = decode(&huge).expect_err("bounded");
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
    }
}
