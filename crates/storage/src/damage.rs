//! What a replica does with files it cannot trust.
//!
//! | damaged | why it is safe | what happens |
//! |---|---|---|
//! | torn WAL tail (crash mid-write) | never fsynced, so never acknowledged | cut off by the WAL on open; the leader re-sends |
//! | a snapshot | the state machine it came from is intact | moved aside; a new one is built |
//! | `state.redb` | the snapshot plus the log rebuild it | moved aside; rebuilt from the snapshot, then the log re-applied |
//! | the Raft log (a record, the vote) | — it held promises (acks, votes) | `--on-damage rebuild`: the whole data directory moved aside, rebuilt from peers (see `rebuild`); `refuse`: exit naming the file |
//!
//! Damaged files are moved aside (`<name>.damaged-<unix secs>`), never deleted.

use std::path::{Path, PathBuf};

/// What to do when the Raft log cannot be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OnDamage {
    /// Move the data directory aside and rebuild this replica from its peers.
    Rebuild,
    /// Refuse to start, naming the damaged file.
    Refuse,
}

/// A file a replica cannot use.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{what} {} is damaged: {cause}", file.display())]
pub struct Damage {
    pub what: &'static str,
    pub file: PathBuf,
    pub cause: String,
}

impl Damage {
    pub fn new(what: &'static str, file: &Path, cause: impl std::fmt::Display) -> Self {
        Self {
            what,
            file: file.to_path_buf(),
            cause: cause.to_string(),
        }
    }
}

/// Moves a file or directory aside; returns where it went.
pub fn move_aside(path: &Path) -> std::io::Result<PathBuf> {
    crate::raft::snapshot::quarantine(path)
}
