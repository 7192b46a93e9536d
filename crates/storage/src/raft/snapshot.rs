//! Snapshot files: the whole state machine at one log position, written to
//! `<data-dir>/snapshots/`, sent to lagging followers in chunks by openraft,
//! and installed on them. Only the newest complete snapshot is kept. The
//! format, checksummed end to end, is in `snapshot_file`.
//!
//! A snapshot that fails its checksum is moved aside (`<name>.damaged-<secs>`,
//! never deleted) and never used: the state machine it was taken from is
//! still on disk, so a fresh one can always be built.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use super::snapshot_file::{Checked, Header, SnapshotWriter, read_header, verify};
use super::types::SnapshotMeta;
use crate::engine::{EngineError, ReadView};

const SUFFIX: &str = "snap";

/// What `SnapshotDir::current` found.
#[derive(Debug)]
pub enum Current {
    /// A checked snapshot.
    Found(Box<Checked>, PathBuf),
    /// No snapshot was ever kept.
    Missing,
    /// The only snapshots were damaged, and are now moved aside.
    MovedAside,
}

impl Current {
    /// The snapshot, if one was found.
    pub fn found(self) -> Option<(Header, PathBuf)> {
        match self {
            Self::Found(checked, path) => Some((checked.header, path)),
            Self::Missing | Self::MovedAside => None,
        }
    }
}

/// The directory of snapshot files.
///
/// openraft builds snapshots on a task of its own that its shutdown does
/// not wait for; `closed` (held while a file is published) makes sure no
/// snapshot lands after the replica stopped, when a restarted replica may
/// already own the directory.
#[derive(Debug, Clone)]
pub struct SnapshotDir {
    dir: PathBuf,
    closed: Arc<Mutex<bool>>,
}

fn io(doing: &str) -> impl Fn(std::io::Error) -> EngineError + '_ {
    move |e| EngineError::new(doing, e)
}

/// Moves a damaged file aside, next to where it was; returns its new path.
pub fn quarantine(path: &Path) -> std::io::Result<PathBuf> {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".damaged-{secs}"));
    let aside = path.with_file_name(name);
    std::fs::rename(path, &aside)?;
    if let Some(parent) = path.parent() {
        File::open(parent)?.sync_all()?;
    }
    Ok(aside)
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
        Ok(Self {
            dir,
            closed: Arc::new(Mutex::new(false)),
        })
    }

    /// Publishes nothing from now on; waits for a publish in progress.
    pub fn close(&self) {
        *self
            .closed
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = true;
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

    /// The newest snapshot file and its header, unchecked. A file whose
    /// header cannot be read counts as the newest, so that `current`
    /// checks it and moves it aside.
    fn newest(&self) -> Result<Option<(Option<Header>, PathBuf)>, EngineError> {
        let mut best: Option<(Option<Header>, PathBuf)> = None;
        for entry in std::fs::read_dir(&self.dir).map_err(io("list snapshots"))? {
            let path = entry.map_err(io("list snapshots"))?.path();
            if path.extension().is_none_or(|e| e != SUFFIX) {
                continue;
            }
            let header = read_header(&path).ok();
            let newer = match (&best, &header) {
                (None, _) | (_, None) => true,
                (Some((Some(b), _)), Some(h)) => b.snapshot.last_log_id < h.snapshot.last_log_id,
                (Some((None, _)), Some(_)) => false,
            };
            if newer {
                best = Some((header, path));
            }
        }
        Ok(best)
    }

    /// The newest snapshot, read through and checked. A damaged one is
    /// moved aside (and reported), and the next newest is tried.
    pub fn current(&self) -> Result<Current, EngineError> {
        let mut moved_aside = false;
        while let Some((_, path)) = self.newest()? {
            match verify(&path) {
                Ok(checked) => return Ok(Current::Found(Box::new(checked), path)),
                Err(damage) => {
                    let aside = quarantine(&path).map_err(io("move damaged snapshot aside"))?;
                    tracing::error!(
                        file = %path.display(),
                        moved_to = %aside.display(),
                        error = %damage,
                        "snapshot file is damaged; moved it aside, a new one will be built from the state machine"
                    );
                    moved_aside = true;
                }
            }
        }
        Ok(if moved_aside {
            Current::MovedAside
        } else {
            Current::Missing
        })
    }

    /// Writes everything in `view` as snapshot `meta`; returns its path
    /// and its uncompressed size.
    pub fn write(
        &self,
        view: &dyn ReadView,
        snapshot: SnapshotMeta,
    ) -> Result<(PathBuf, u64), EngineError> {
        let header = Header {
            snapshot,
            state: view.meta()?,
            items: view.len()?,
        };
        let temp = self.temp_path();
        let file = File::create(&temp).map_err(io("create snapshot"))?;
        let mut out = SnapshotWriter::begin(file, &header)?;
        let mut count = 0u64;
        for item in view.iter_all()? {
            out.item(&item?)?;
            count += 1;
        }
        if count != header.items {
            return Err(EngineError(format!(
                "snapshot has {count} items but the state machine counts {}",
                header.items
            )));
        }
        let stream_bytes = out.finish()?;
        let path = self.publish(&temp, &header.snapshot.snapshot_id)?;
        Ok((path, stream_bytes))
    }

    /// Makes a complete file at `temp` the current snapshot `id`, durably,
    /// and removes older ones.
    pub fn publish(&self, temp: &Path, id: &str) -> Result<PathBuf, EngineError> {
        let closed = self
            .closed
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if *closed {
            let _ = std::fs::remove_file(temp);
            return Err(EngineError(format!(
                "snapshot {id} not kept: the replica is shutting down"
            )));
        }
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

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::engine::memory::MemEngine;
    use crate::engine::{ChangeSet, Engine, Meta, Stored};
    use crate::raft::snapshot_file::SnapshotReader;

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

    fn meta(id: &str) -> SnapshotMeta {
        SnapshotMeta {
            snapshot_id: id.into(),
            ..SnapshotMeta::default()
        }
    }

    fn write(snaps: &SnapshotDir, n: u8, id: &str) -> PathBuf {
        snaps
            .write(engine_with(n).read().expect("read").as_ref(), meta(id))
            .expect("write")
            .0
    }

    fn files(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .expect("ls")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn writes_reads_and_keeps_only_the_newest() {
        let dir = tempfile::tempdir().expect("tempdir");
        let snaps = SnapshotDir::open(dir.path().join("snapshots")).expect("open");
        write(&snaps, 5, "a");
        let path = write(&snaps, 5, "b");
        let (header, current) = snaps
            .current()
            .expect("current")
            .found()
            .expect("one snapshot");
        assert_eq!(current, path);
        assert_eq!(header.snapshot.snapshot_id, "b");
        assert_eq!(files(&dir.path().join("snapshots")).len(), 1);

        let (header, items) = SnapshotReader::open(&path).expect("open");
        let copy = MemEngine::new();
        copy.replace_all(&mut items.into_iter(), &header.state)
            .expect("install");
        let all = |e: &MemEngine| -> Vec<_> {
            e.read()
                .expect("read")
                .iter_all()
                .expect("iter")
                .collect::<Result<_, _>>()
                .expect("items")
        };
        assert_eq!(all(&copy), all(&engine_with(5)));
    }

    #[test]
    fn after_close_nothing_is_published() {
        let dir = tempfile::tempdir().expect("tempdir");
        let snaps = SnapshotDir::open(dir.path().join("snapshots")).expect("open");
        write(&snaps, 5, "a");
        snaps.close();
        let refused = snaps.write(engine_with(6).read().expect("read").as_ref(), meta("b"));
        let error = refused.expect_err("a closed directory keeps nothing");
        assert!(error.to_string().contains("shutting down"), "{error}");
        assert_eq!(files(&dir.path().join("snapshots")), vec!["a.snap"]);
    }

    #[test]
    fn a_truncated_file_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let snaps = SnapshotDir::open(dir.path().to_path_buf()).expect("open");
        let path = write(&snaps, 3, "a");
        let bytes = std::fs::read(&path).expect("read");
        std::fs::write(&path, &bytes[..bytes.len() - 2]).expect("cut");
        assert!(verify(&path).is_err());
    }

    #[test]
    fn every_flipped_byte_is_detected() {
        let dir = tempfile::tempdir().expect("tempdir");
        let snaps = SnapshotDir::open(dir.path().to_path_buf()).expect("open");
        let path = write(&snaps, 4, "a");
        let good = std::fs::read(&path).expect("read");
        for at in 0..good.len() {
            let mut bad = good.clone();
            bad[at] ^= 0x20;
            std::fs::write(&path, &bad).expect("damage");
            let err = verify(&path).expect_err("flipped byte detected");
            assert!(err.to_string().contains("damaged snapshot"), "{at}: {err}");
        }
    }

    #[test]
    fn a_damaged_current_snapshot_is_moved_aside_not_used() {
        let dir = tempfile::tempdir().expect("tempdir");
        let snaps = SnapshotDir::open(dir.path().to_path_buf()).expect("open");
        let path = write(&snaps, 4, "a");
        let mut bytes = std::fs::read(&path).expect("read");
        let middle = bytes.len() / 2;
        bytes[middle] ^= 1;
        std::fs::write(&path, &bytes).expect("damage");
        assert!(matches!(
            snaps.current().expect("current"),
            Current::MovedAside
        ));
        let names = files(dir.path());
        assert_eq!(names.len(), 1, "{names:?}");
        assert!(names[0].starts_with("a.snap.damaged-"), "{names:?}");
    }
}
