//! The state machine's storage engine, behind a small trait so that more
//! than one backend can sit under the same Raft state machine: `redb` on
//! disk for real nodes, and an in-memory map for unit tests. Both pass the
//! same conformance suite (`conformance`).
//!
//! The engine knows nothing of Raft or of conditions: it stores items under
//! flat byte keys (see `keys`), gives consistent read views, and applies a
//! change set (writes plus the new metadata) atomically.

pub mod keys;
pub mod memory;
pub mod redb;
pub mod scan;

#[cfg(test)]
pub mod conformance;

use std::collections::BTreeMap;
use std::ops::Bound;

use serde::{Deserialize, Serialize};

/// A stored value and its version (the shard revision that wrote it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    pub version: u64,
    pub value: Vec<u8>,
}

/// The state machine's metadata, written atomically with the data.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Meta {
    /// The shard's revision: grows by one per applied write batch.
    pub revision: u64,
    /// How far the layer above has applied its log, in its own encoding
    /// (the Raft layer's `raft::applied::Applied`); opaque to the engine,
    /// which only stores it with the data.
    pub applied: Vec<u8>,
}

/// An atomic change: every write (Some = put, None = delete) and the new
/// metadata. `durable` asks for an fsync before returning; without it the
/// change becomes durable with the next durable commit (or `sync`).
#[derive(Debug, Clone, Default)]
pub struct ChangeSet {
    pub writes: BTreeMap<Vec<u8>, Option<Stored>>,
    pub meta: Meta,
    pub durable: bool,
}

/// A range of flat keys to scan.
#[derive(Debug, Clone)]
pub struct ScanRange {
    pub start: Bound<Vec<u8>>,
    pub end: Bound<Vec<u8>>,
    pub reverse: bool,
}

/// How much one scan may return: items, and bytes of keys and values.
/// The item that crosses the byte bound is still returned, so that a scan
/// always makes progress.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScanLimit {
    pub items: usize,
    pub bytes: usize,
}

impl ScanLimit {
    /// At most `n` items, of any size.
    pub fn items(n: usize) -> Self {
        Self {
            items: n,
            bytes: usize::MAX,
        }
    }

    /// Whether `count` items of `bytes` in all are as much as allowed.
    pub fn reached(&self, count: usize, bytes: usize) -> bool {
        count >= self.items || bytes >= self.bytes
    }
}

/// The bytes an item counts for against a [`ScanLimit`].
pub fn item_bytes((key, stored): &KeyValue) -> usize {
    key.len() + stored.value.len()
}

/// A scanned item: its flat key and what is stored.
pub type KeyValue = (Vec<u8>, Stored);

/// A stream of every item, for snapshots.
pub type ItemIter<'a> = Box<dyn Iterator<Item = Result<KeyValue, EngineError>> + Send + 'a>;

/// An engine failure: an I/O or corruption problem, never bad input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("storage engine: {0}")]
pub struct EngineError(pub String);

impl EngineError {
    /// Wraps any error with what was being done.
    pub fn new(doing: &str, e: impl std::fmt::Display) -> Self {
        Self(format!("{doing}: {e}"))
    }
}

/// A consistent, read-only view of the engine at one point in time.
pub trait ReadView: Send {
    /// The metadata of this view.
    fn meta(&self) -> Result<Meta, EngineError>;
    /// One item.
    fn get(&self, key: &[u8]) -> Result<Option<Stored>, EngineError>;
    /// How many items there are (cheap: engines keep the count).
    fn len(&self) -> Result<u64, EngineError>;
    /// Whether there are no items.
    fn is_empty(&self) -> Result<bool, EngineError> {
        Ok(self.len()? == 0)
    }
    /// Items of `range` whose key passes `keep`, in order, up to `limit`.
    fn scan(
        &self,
        range: &ScanRange,
        limit: ScanLimit,
        keep: &dyn Fn(&[u8]) -> bool,
    ) -> Result<Vec<KeyValue>, EngineError>;
    /// Every item, in key order.
    fn iter_all(&self) -> Result<ItemIter<'_>, EngineError>;
}

/// A storage engine for the state machine.
pub trait Engine: Send + Sync + 'static {
    /// A consistent view; later commits do not change it.
    fn read(&self) -> Result<Box<dyn ReadView + '_>, EngineError>;
    /// Applies a change set atomically.
    fn commit(&self, change: ChangeSet) -> Result<(), EngineError>;
    /// Replaces every item and the metadata, atomically and durably
    /// (installing a snapshot).
    fn replace_all(
        &self,
        items: &mut dyn Iterator<Item = Result<KeyValue, EngineError>>,
        meta: &Meta,
    ) -> Result<(), EngineError>;
    /// Makes every commit so far durable.
    fn sync(&self) -> Result<(), EngineError>;
}

/// Encodes the metadata for storage.
pub(crate) fn encode_meta(meta: &Meta) -> Result<Vec<u8>, EngineError> {
    postcard::to_stdvec(meta).map_err(|e| EngineError::new("encode metadata", e))
}

/// Decodes stored metadata.
pub(crate) fn decode_meta(bytes: &[u8]) -> Result<Meta, EngineError> {
    postcard::from_bytes(bytes).map_err(|e| EngineError::new("decode metadata", e))
}

/// Whether `key` is inside `range` (used by the in-memory engine).
pub(crate) fn bounds(range: &ScanRange) -> (Bound<&[u8]>, Bound<&[u8]>) {
    fn as_slice(b: &Bound<Vec<u8>>) -> Bound<&[u8]> {
        match b {
            Bound::Included(k) => Bound::Included(k.as_slice()),
            Bound::Excluded(k) => Bound::Excluded(k.as_slice()),
            Bound::Unbounded => Bound::Unbounded,
        }
    }
    (as_slice(&range.start), as_slice(&range.end))
}
