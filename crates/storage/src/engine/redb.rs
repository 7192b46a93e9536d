//! The on-disk engine: one redb file. Items live in one table under their
//! flat keys, values prefixed with their 8-byte big-endian version; the
//! metadata lives in a second table and is committed in the same write
//! transaction as the data, so after a crash both roll back together and
//! openraft re-applies the missing entries from its log.

use std::path::Path;
use std::sync::Arc;

use redb::{
    Database, Durability, ReadOnlyTable, ReadableDatabase, ReadableTable, ReadableTableMetadata,
    TableDefinition,
};

use super::{
    ChangeSet, Engine, EngineError, ItemIter, KeyValue, Meta, ReadView, ScanLimit, ScanRange,
    Stored, decode_meta, encode_meta,
};

const ITEMS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("items");
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
const META_KEY: &str = "state_machine";

/// The redb engine.
#[derive(Debug, Clone)]
pub struct RedbEngine {
    db: Arc<Database>,
}

fn err(doing: &'static str) -> impl Fn(redb::Error) -> EngineError {
    move |e| EngineError::new(doing, e)
}

impl RedbEngine {
    /// Opens (or creates) the engine file and its tables. The whole file
    /// is checked against its page checksums first, so a damaged file is
    /// an error here (redb's plain open may panic on one).
    pub fn open(path: &Path) -> Result<Self, EngineError> {
        let db = Database::builder()
            .set_check_integrity_on_open(true)
            .create(path)
            .map_err(|e| EngineError::new(&format!("open {}", path.display()), e))?;
        let tx = db.begin_write().map_err(|e| err("begin")(e.into()))?;
        tx.open_table(ITEMS)
            .map_err(|e| err("create items")(e.into()))?;
        tx.open_table(META)
            .map_err(|e| err("create meta")(e.into()))?;
        tx.commit().map_err(|e| err("commit")(e.into()))?;
        Ok(Self { db: Arc::new(db) })
    }

    fn write(
        &self,
        durable: bool,
        body: impl FnOnce(&redb::WriteTransaction) -> Result<(), redb::Error>,
    ) -> Result<(), EngineError> {
        let run = || -> Result<(), redb::Error> {
            let mut tx = self.db.begin_write()?;
            if !durable {
                tx.set_durability(Durability::None)?;
            }
            body(&tx)?;
            tx.commit()?;
            Ok(())
        };
        run().map_err(err("commit"))
    }
}

fn encode_stored(stored: &Stored) -> Vec<u8> {
    let mut out = Vec::with_capacity(8 + stored.value.len());
    out.extend_from_slice(&stored.version.to_be_bytes());
    out.extend_from_slice(&stored.value);
    out
}

fn decode_stored(bytes: &[u8]) -> Result<Stored, EngineError> {
    let (version, value) = bytes
        .split_first_chunk::<8>()
        .ok_or_else(|| EngineError("stored value shorter than its version".into()))?;
    Ok(Stored {
        version: u64::from_be_bytes(*version),
        value: value.to_vec(),
    })
}

struct RedbView {
    items: ReadOnlyTable<&'static [u8], &'static [u8]>,
    meta: ReadOnlyTable<&'static str, &'static [u8]>,
}

impl ReadView for RedbView {
    fn meta(&self) -> Result<Meta, EngineError> {
        match self
            .meta
            .get(META_KEY)
            .map_err(|e| err("read meta")(e.into()))?
        {
            Some(bytes) => decode_meta(bytes.value()),
            None => Ok(Meta::default()),
        }
    }

    fn get(&self, key: &[u8]) -> Result<Option<Stored>, EngineError> {
        self.items
            .get(key)
            .map_err(|e| err("read item")(e.into()))?
            .map(|v| decode_stored(v.value()))
            .transpose()
    }

    fn len(&self) -> Result<u64, EngineError> {
        self.items.len().map_err(|e| err("count items")(e.into()))
    }

    fn scan(
        &self,
        range: &ScanRange,
        limit: ScanLimit,
        keep: &dyn Fn(&[u8]) -> bool,
    ) -> Result<Vec<KeyValue>, EngineError> {
        let bounds = super::bounds(range);
        let mut bytes = 0;
        let iter = self
            .items
            .range::<&[u8]>(bounds)
            .map_err(|e| err("scan")(e.into()))?;
        let mut out = Vec::new();
        let mut visit = |item: Result<_, redb::StorageError>| -> Result<bool, EngineError> {
            let (k, v): (redb::AccessGuard<&[u8]>, redb::AccessGuard<&[u8]>) =
                item.map_err(|e| err("scan")(e.into()))?;
            if keep(k.value()) {
                let item = (k.value().to_vec(), decode_stored(v.value())?);
                bytes += super::item_bytes(&item);
                out.push(item);
            }
            Ok(!limit.reached(out.len(), bytes))
        };
        if range.reverse {
            for item in iter.rev() {
                if !visit(item)? {
                    break;
                }
            }
        } else {
            for item in iter {
                if !visit(item)? {
                    break;
                }
            }
        }
        Ok(out)
    }

    fn iter_all(&self) -> Result<ItemIter<'_>, EngineError> {
        let iter = self.items.iter().map_err(|e| err("iterate")(e.into()))?;
        Ok(Box::new(iter.map(|item| {
            let (k, v) = item.map_err(|e| err("iterate")(e.into()))?;
            Ok((k.value().to_vec(), decode_stored(v.value())?))
        })))
    }
}

impl Engine for RedbEngine {
    fn read(&self) -> Result<Box<dyn ReadView + '_>, EngineError> {
        let tx = self
            .db
            .begin_read()
            .map_err(|e| err("begin read")(e.into()))?;
        Ok(Box::new(RedbView {
            items: tx
                .open_table(ITEMS)
                .map_err(|e| err("open items")(e.into()))?,
            meta: tx
                .open_table(META)
                .map_err(|e| err("open meta")(e.into()))?,
        }))
    }

    fn commit(&self, change: ChangeSet) -> Result<(), EngineError> {
        let meta = encode_meta(&change.meta)?;
        self.write(change.durable, |tx| {
            let mut items = tx.open_table(ITEMS)?;
            for (key, value) in &change.writes {
                match value {
                    Some(stored) => {
                        items.insert(key.as_slice(), encode_stored(stored).as_slice())?;
                    }
                    None => {
                        items.remove(key.as_slice())?;
                    }
                }
            }
            tx.open_table(META)?.insert(META_KEY, meta.as_slice())?;
            Ok(())
        })
    }

    fn replace_all(
        &self,
        source: &mut dyn Iterator<Item = Result<KeyValue, EngineError>>,
        meta: &Meta,
    ) -> Result<(), EngineError> {
        let meta = encode_meta(meta)?;
        let mut failure = None;
        self.write(true, |tx| {
            tx.delete_table(ITEMS)?;
            let mut items = tx.open_table(ITEMS)?;
            for item in source {
                match item {
                    Ok((key, stored)) => {
                        items.insert(key.as_slice(), encode_stored(&stored).as_slice())?;
                    }
                    Err(e) => {
                        failure = Some(e);
                        return Err(redb::Error::Corrupted("snapshot stream failed".into()));
                    }
                }
            }
            tx.open_table(META)?.insert(META_KEY, meta.as_slice())?;
            Ok(())
        })
        .map_err(|e| failure.unwrap_or(e))
    }

    fn sync(&self) -> Result<(), EngineError> {
        // An empty durable commit makes every earlier non-durable one durable.
        self.write(true, |_| Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::conformance;

    #[test]
    fn passes_the_engine_conformance_suite() {
        let dir = tempfile::tempdir().expect("tempdir");
        let n = std::sync::atomic::AtomicU32::new(0);
        conformance::run_all(|| {
            let i = n.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            RedbEngine::open(&dir.path().join(format!("state-{i}.redb"))).expect("open")
        });
    }

    #[test]
    fn committed_data_survives_reopen() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("state.redb");
        {
            let engine = RedbEngine::open(&path).expect("open");
            conformance::write_some(&engine, false);
            engine.sync().expect("sync");
        }
        let engine = RedbEngine::open(&path).expect("reopen");
        conformance::assert_some_written(&engine);
        assert_eq!(engine.read().expect("read").len().expect("len"), 2);
    }
}
