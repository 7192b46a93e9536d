//! Snapshot files: the whole state machine at one log position, written to
//! `<data-dir>/snapshots/`, sent to lagging followers in chunks by openraft,
//! and installed on them. Only the newest complete snapshot is kept.
//!
//! Format: a u32 LE header length, the postcard-encoded header (snapshot
//! meta, state machine meta, item count), then per item
//! `u32 key len, key, u64 version, u32 value len, value` (little endian).
//! A file whose item count does not match its header is refused.

use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::types::SnapshotMeta;
use crate::engine::{EngineError, KeyValue, Meta, ReadView, Stored};

const SUFFIX: &str = "snap";

/// What a snapshot file says about itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Header {
    pub snapshot: SnapshotMeta,
    pub state: Meta,
    pub items: u64,
}

/// The directory of snapshot files.
#[derive(Debug, Clone)]
pub struct SnapshotDir {
    dir: PathBuf,
}

fn io(doing: &str) -> impl Fn(std::io::Error) -> EngineError + '_ {
    move |e| EngineError::new(doing, e)
}

impl SnapshotDir {
    /// Opens the directory, creating it, and removes half-written files.
    pub fn open(dir: PathBuf) -> Result<Self, EngineError> {
        std::fs::create_dir_all(&dir).map_err(io("create snapshot dir"))?;
        for entry in std::fs::read_dir(&dir).map_err(io("list snapshots"))? {
            let path = entry.map_err(io("list snapshots"))?.path();
            if path.extension().is_some_and(|e| e == "tmp") {
                std::fs::remove_file(&path).map_err(io("remove partial snapshot"))?;
            }
        }
        Ok(Self { dir })
    }

    /// A fresh path for a file being written or received.
    pub fn temp_path(&self) -> PathBuf {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        self.dir.join(format!("incoming-{nanos}.tmp"))
    }

    fn final_path(&self, id: &str) -> PathBuf {
        self.dir.join(format!("{id}.{SUFFIX}"))
    }

    /// The newest complete snapshot, if any.
    pub fn current(&self) -> Result<Option<(Header, PathBuf)>, EngineError> {
        let mut best: Option<(Header, PathBuf)> = None;
        for entry in std::fs::read_dir(&self.dir).map_err(io("list snapshots"))? {
            let path = entry.map_err(io("list snapshots"))?.path();
            if path.extension().is_none_or(|e| e != SUFFIX) {
                continue;
            }
            let header = read_header(&mut BufReader::new(
                File::open(&path).map_err(io("open snapshot"))?,
            ))?;
            if best
                .as_ref()
                .is_none_or(|(b, _)| b.snapshot.last_log_id < header.snapshot.last_log_id)
            {
                best = Some((header, path));
            }
        }
        Ok(best)
    }

    /// Writes everything in `view` as snapshot `meta`; returns its path.
    pub fn write(
        &self,
        view: &dyn ReadView,
        snapshot: SnapshotMeta,
    ) -> Result<PathBuf, EngineError> {
        let header = Header {
            snapshot,
            state: view.meta()?,
            items: view.len()?,
        };
        let temp = self.temp_path();
        let file = File::create(&temp).map_err(io("create snapshot"))?;
        let mut out = BufWriter::new(file);
        write_header(&mut out, &header)?;
        let mut count = 0u64;
        for item in view.iter_all()? {
            write_item(&mut out, &item?)?;
            count += 1;
        }
        if count != header.items {
            return Err(EngineError(format!(
                "snapshot has {count} items but the state machine counts {}",
                header.items
            )));
        }
        let file = out
            .into_inner()
            .map_err(|e| EngineError::new("flush snapshot", e.error()))?;
        file.sync_all().map_err(io("fsync snapshot"))?;
        self.publish(&temp, &header.snapshot.snapshot_id)
    }

    /// Makes a complete file at `temp` the current snapshot `id`, durably,
    /// and removes older ones.
    pub fn publish(&self, temp: &Path, id: &str) -> Result<PathBuf, EngineError> {
        let path = self.final_path(id);
        std::fs::rename(temp, &path).map_err(io("rename snapshot"))?;
        File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(io("fsync snapshot dir"))?;
        for entry in std::fs::read_dir(&self.dir).map_err(io("list snapshots"))? {
            let other = entry.map_err(io("list snapshots"))?.path();
            if other != path && other.extension().is_some_and(|e| e == SUFFIX) {
                std::fs::remove_file(&other).map_err(io("remove old snapshot"))?;
            }
        }
        Ok(path)
    }
}

fn write_header(out: &mut impl Write, header: &Header) -> Result<(), EngineError> {
    let bytes =
        postcard::to_stdvec(header).map_err(|e| EngineError::new("encode snapshot header", e))?;
    let len =
        u32::try_from(bytes.len()).map_err(|e| EngineError::new("snapshot header size", e))?;
    out.write_all(&len.to_le_bytes())
        .map_err(io("write snapshot"))?;
    out.write_all(&bytes).map_err(io("write snapshot"))
}

fn write_item(out: &mut impl Write, (key, stored): &KeyValue) -> Result<(), EngineError> {
    let len = |n: usize| u32::try_from(n).map_err(|e| EngineError::new("snapshot item size", e));
    out.write_all(&len(key.len())?.to_le_bytes())
        .map_err(io("write snapshot"))?;
    out.write_all(key).map_err(io("write snapshot"))?;
    out.write_all(&stored.version.to_le_bytes())
        .map_err(io("write snapshot"))?;
    out.write_all(&len(stored.value.len())?.to_le_bytes())
        .map_err(io("write snapshot"))?;
    out.write_all(&stored.value).map_err(io("write snapshot"))
}

/// Reads a snapshot's header.
pub fn read_header(input: &mut impl Read) -> Result<Header, EngineError> {
    let len = read_u32(input)?;
    let mut bytes = vec![0; len as usize];
    input
        .read_exact(&mut bytes)
        .map_err(io("read snapshot header"))?;
    postcard::from_bytes(&bytes).map_err(|e| EngineError::new("decode snapshot header", e))
}

fn read_u32(input: &mut impl Read) -> Result<u32, EngineError> {
    let mut buf = [0; 4];
    input.read_exact(&mut buf).map_err(io("read snapshot"))?;
    Ok(u32::from_le_bytes(buf))
}

fn read_bytes(input: &mut impl Read) -> Result<Vec<u8>, EngineError> {
    let mut bytes = vec![0; read_u32(input)? as usize];
    input.read_exact(&mut bytes).map_err(io("read snapshot"))?;
    Ok(bytes)
}

/// The items after the header, checked against the header's count.
pub fn read_items<R: Read>(
    mut input: R,
    expected: u64,
) -> impl Iterator<Item = Result<KeyValue, EngineError>> {
    let mut remaining = expected;
    let mut done = false;
    std::iter::from_fn(move || {
        if done {
            return None;
        }
        if remaining == 0 {
            done = true;
            let mut probe = [0u8; 1];
            return match input.read(&mut probe) {
                Ok(0) => None,
                Ok(_) => Some(Err(EngineError(
                    "snapshot has more items than its header says".into(),
                ))),
                Err(e) => Some(Err(EngineError::new("read snapshot", e))),
            };
        }
        remaining -= 1;
        let item = (|| {
            let key = read_bytes(&mut input)?;
            let mut version = [0; 8];
            input
                .read_exact(&mut version)
                .map_err(io("read snapshot"))?;
            let value = read_bytes(&mut input)?;
            Ok((
                key,
                Stored {
                    version: u64::from_le_bytes(version),
                    value,
                },
            ))
        })();
        if item.is_err() {
            done = true;
        }
        Some(item)
    })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::engine::memory::MemEngine;
    use crate::engine::{ChangeSet, Engine};

    fn engine_with(n: u8) -> MemEngine {
        let engine = MemEngine::new();
        let writes: BTreeMap<_, _> = (0..n)
            .map(|i| {
                (
                    vec![b'k', i],
                    Some(Stored {
                        version: u64::from(i),
                        value: vec![i; 3],
                    }),
                )
            })
            .collect();
        let meta = Meta {
            revision: u64::from(n),
            ..Meta::default()
        };
        engine
            .commit(ChangeSet {
                writes,
                meta,
                durable: true,
            })
            .expect("commit");
        engine
    }

    #[test]
    fn writes_reads_and_keeps_only_the_newest() {
        let dir = tempfile::tempdir().expect("tempdir");
        let snaps = SnapshotDir::open(dir.path().join("snapshots")).expect("open");
        let engine = engine_with(5);
        let meta = |id: &str| SnapshotMeta {
            snapshot_id: id.into(),
            ..SnapshotMeta::default()
        };
        snaps
            .write(engine.read().expect("read").as_ref(), meta("a"))
            .expect("write a");
        let path = snaps
            .write(engine.read().expect("read").as_ref(), meta("b"))
            .expect("write b");
        let (header, current) = snaps.current().expect("current").expect("one snapshot");
        assert_eq!(current, path);
        assert_eq!(header.snapshot.snapshot_id, "b");
        assert_eq!(
            std::fs::read_dir(dir.path().join("snapshots"))
                .expect("ls")
                .count(),
            1
        );

        let mut input = BufReader::new(File::open(&path).expect("open"));
        let header = read_header(&mut input).expect("header");
        let copy = MemEngine::new();
        copy.replace_all(&mut read_items(input, header.items), &header.state)
            .expect("install");
        let items: Vec<_> = copy
            .read()
            .expect("read")
            .iter_all()
            .expect("iter")
            .collect::<Result<_, _>>()
            .expect("items");
        let original: Vec<_> = engine
            .read()
            .expect("read")
            .iter_all()
            .expect("iter")
            .collect::<Result<_, _>>()
            .expect("items");
        assert_eq!(items, original);
    }

    #[test]
    fn a_truncated_file_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let snaps = SnapshotDir::open(dir.path().to_path_buf()).expect("open");
        let path = snaps
            .write(
                engine_with(3).read().expect("read").as_ref(),
                SnapshotMeta::default(),
            )
            .expect("write");
        let bytes = std::fs::read(&path).expect("read");
        let cut = &bytes[..bytes.len() - 2];
        let mut input = cut;
        let header = read_header(&mut input).expect("header");
        let result: Result<Vec<_>, _> = read_items(input, header.items).collect();
        assert!(result.is_err());
    }
}
