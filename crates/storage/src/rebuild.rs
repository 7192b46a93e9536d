//! Rebuilding a replica whose Raft log was damaged, without breaking Raft.
//!
//! A replica that lost its log lost two promises it made: the entries it
//! acknowledged (a committed entry may now be on too few replicas) and the
//! votes it cast (it could vote twice in one term). It may still take new
//! entries from the leader and acknowledge them (it really stores them),
//! but until both promises hold again it must not vote or campaign:
//!
//! 1. it asks **every** other replica of its group for its term and applied
//!    index. Terms only grow and a candidate persists its term before asking
//!    for votes, so the largest term any replica reports (the *barrier*) is
//!    at least every term the lost vote record could have held;
//! 2. it votes, and asks for votes, only in terms above the barrier, and only
//!    once it has applied at least the largest applied index reported — by
//!    then its log holds every entry it could have acknowledged before.
//!
//! Until then elections need a majority of the other replicas, and any such
//! majority holds every committed entry, so no acknowledged write is lost
//! and no term gets two leaders. The state (the `REBUILDING` marker in the
//! data directory) survives restarts; it is removed once the replica has
//! applied an entry of a term above the barrier, which means its own vote
//! record is past the barrier too. docs/replication.md has the argument.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anatomy_runtime::tls::{Identity, Transport};
use serde::{Deserialize, Serialize};
use storage_api::shard_map::{ReplicaSpec, ShardSpec};
use storage_api::v1::NodeStatusRequest;
use storage_api::v1::admin_client::AdminClient;

use crate::grpc::raft_network::lazy_channel;
use crate::raft::Raft;

/// The marker file of a replica being rebuilt.
pub const MARKER: &str = "REBUILDING";

/// What the rest of the group reported when the rebuild began.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Barrier {
    /// The largest term any replica reported.
    pub term: u64,
    /// The largest applied index any replica reported.
    pub applied: u64,
}

/// The marker's contents. An empty file is a valid marker: to rebuild a
/// replica by hand, move its data directory aside and start it with an
/// empty directory holding an empty `REBUILDING` file.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Marker {
    /// Where the damaged data directory was moved.
    pub damaged_copy: String,
    /// Set once every other replica has answered.
    pub barrier: Option<Barrier>,
}

impl Marker {
    /// The marker in `data_dir`, if this replica is being rebuilt.
    pub fn load(data_dir: &Path) -> std::io::Result<Option<Self>> {
        match std::fs::read_to_string(data_dir.join(MARKER)) {
            Ok(text) => toml::from_str(&text)
                .map(Some)
                .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Writes the marker durably.
    pub fn save(&self, data_dir: &Path) -> std::io::Result<()> {
        let text = toml::to_string(self).map_err(std::io::Error::other)?;
        let temp = data_dir.join(format!("{MARKER}.tmp"));
        std::fs::write(&temp, text)?;
        std::fs::File::open(&temp)?.sync_all()?;
        std::fs::rename(&temp, data_dir.join(MARKER))?;
        std::fs::File::open(data_dir)?.sync_all()
    }

    /// Removes the marker durably: the replica is whole again.
    pub fn remove(data_dir: &Path) -> std::io::Result<()> {
        std::fs::remove_file(data_dir.join(MARKER))?;
        std::fs::File::open(data_dir)?.sync_all()
    }
}

#[derive(Debug, Default)]
struct GateState {
    rebuilding: bool,
    barrier: Option<Barrier>,
    caught_up: bool,
}

/// Whether this replica may take part in elections. Shared by the Raft
/// service (votes asked of it) and the network (votes it asks for). A
/// watch channel, so that whoever cares can wait for the rebuild's end.
#[derive(Debug, Clone)]
pub struct VoteGate(Arc<tokio::sync::watch::Sender<GateState>>);

impl VoteGate {
    /// A gate that never blocks (a replica with its own log).
    pub fn open() -> Self {
        Self::with(GateState::default())
    }

    /// A gate for a replica being rebuilt.
    pub fn rebuilding(barrier: Option<Barrier>) -> Self {
        Self::with(GateState {
            rebuilding: true,
            barrier,
            caught_up: false,
        })
    }

    fn with(state: GateState) -> Self {
        Self(Arc::new(tokio::sync::watch::Sender::new(state)))
    }

    fn update(&self, f: impl FnOnce(&mut GateState)) {
        self.0.send_modify(f);
    }

    /// Whether a vote in `term` (asked of this replica, or by it) may go ahead.
    pub fn allows(&self, term: u64) -> bool {
        let s = self.0.borrow();
        !s.rebuilding || (s.caught_up && s.barrier.is_some_and(|b| term > b.term))
    }

    /// Why a vote is refused, for the error sent back.
    pub fn refusal(&self, term: u64) -> String {
        let barrier = self.0.borrow().barrier;
        match barrier {
            None => format!(
                "this replica lost its Raft log and is being rebuilt; it votes again once every replica of its group has reported its term (vote for term {term} refused)"
            ),
            Some(b) => format!(
                "this replica lost its Raft log and is being rebuilt; it votes only in terms above {} once it has applied index {} (vote for term {term} refused)",
                b.term, b.applied
            ),
        }
    }

    /// Whether the replica is being rebuilt.
    pub fn is_rebuilding(&self) -> bool {
        self.0.borrow().rebuilding
    }

    /// Resolves once the replica is whole again (at once if it was never
    /// rebuilt).
    pub async fn whole(&self) {
        let mut state = self.0.subscribe();
        // The sender lives in `self`, so the channel cannot close meanwhile.
        let _ = state.wait_for(|s| !s.rebuilding).await;
    }
}

/// What the rebuild task needs.
#[derive(Clone)]
pub struct Rebuild {
    pub shard: ShardSpec,
    pub me: ReplicaSpec,
    pub data_dir: PathBuf,
    pub raft: Raft,
    pub gate: VoteGate,
    /// How the peers are asked (mTLS as this replica).
    pub transport: Transport,
}

const ASK_EVERY: Duration = Duration::from_millis(500);

impl Rebuild {
    /// Drives the rebuild to its end (see the module docs); returns at once
    /// for a replica that is not being rebuilt.
    pub async fn run(self) {
        if !self.gate.is_rebuilding() {
            return;
        }
        let barrier = match self.barrier().await {
            Ok(Some(b)) => b,
            Ok(None) => return,
            Err(e) => return tracing::error!(error = %e, "rebuild: cannot record the barrier"),
        };
        self.gate.update(|s| s.barrier = Some(barrier));
        let caught_up = self
            .raft
            .wait(None)
            .metrics(
                |m| m.last_applied.is_some_and(|l| l.index >= barrier.applied),
                "rebuild: catch up",
            )
            .await;
        if caught_up.is_err() {
            return;
        }
        self.gate.update(|s| s.caught_up = true);
        tracing::warn!(
            replica = self.me.id,
            barrier.term,
            barrier.applied,
            "rebuild: caught up with the group; votes in terms above the barrier again"
        );
        let past_barrier = self
            .raft
            .wait(None)
            .metrics(
                |m| {
                    m.last_applied
                        .is_some_and(|l| l.leader_id.term > barrier.term)
                },
                "rebuild: a term past the barrier",
            )
            .await;
        if past_barrier.is_ok() {
            self.finish();
        }
    }

    fn finish(&self) {
        match Marker::remove(&self.data_dir) {
            Ok(()) => {
                self.gate.update(|s| s.rebuilding = false);
                tracing::warn!(
                    replica = self.me.id,
                    "rebuild: done; this replica is whole again"
                );
            }
            Err(e) => tracing::error!(error = %e, "rebuild: cannot remove the marker"),
        }
    }

    /// The barrier from the marker, or asked of every other replica (and
    /// then recorded in the marker before it is used).
    async fn barrier(&self) -> std::io::Result<Option<Barrier>> {
        let mut marker = Marker::load(&self.data_dir)?.unwrap_or_default();
        if let Some(b) = marker.barrier {
            return Ok(Some(b));
        }
        let Some(barrier) = self.ask_everyone().await else {
            return Ok(None);
        };
        marker.barrier = Some(barrier);
        marker.save(&self.data_dir)?;
        tracing::warn!(
            replica = self.me.id,
            barrier.term,
            barrier.applied,
            "rebuild: every replica reported; recorded the barrier"
        );
        Ok(Some(barrier))
    }

    /// Asks every other replica until all have answered (None: the
    /// replica shut down first).
    async fn ask_everyone(&self) -> Option<Barrier> {
        let others: Vec<&ReplicaSpec> = self
            .shard
            .replicas
            .iter()
            .filter(|r| r.id != self.me.id)
            .collect();
        let mut answers = std::collections::BTreeMap::new();
        loop {
            for replica in &others {
                if answers.contains_key(&replica.id) {
                    continue;
                }
                match ask(&self.transport, self.shard.id, replica).await {
                    Ok(status) => {
                        answers.insert(replica.id, status);
                    }
                    Err(e) => tracing::info!(
                        replica = replica.id,
                        error = %e,
                        "rebuild: waiting for this replica to report its term"
                    ),
                }
            }
            if answers.len() == others.len() {
                return Some(Barrier {
                    term: answers.values().map(|b| b.term).max().unwrap_or(0),
                    applied: answers.values().map(|b| b.applied).max().unwrap_or(0),
                });
            }
            tokio::time::sleep(ASK_EVERY).await;
            if self.raft.metrics().borrow().state == openraft::ServerState::Shutdown {
                return None;
            }
        }
    }
}

/// One replica's term and applied index, from its Admin service.
async fn ask(transport: &Transport, shard: u32, replica: &ReplicaSpec) -> Result<Barrier, String> {
    let peer = Identity::storage(shard, replica.id);
    let channel = lazy_channel(transport, &replica.addr, peer, ASK_EVERY)?;
    let mut request = tonic::Request::new(NodeStatusRequest {});
    request.set_timeout(ASK_EVERY);
    let status = AdminClient::new(channel)
        .node_status(request)
        .await
        .map_err(|s| format!("{:?}: {}", s.code(), s.message()))?
        .into_inner();
    Ok(Barrier {
        term: status.term,
        applied: status.applied_index.max(status.commit_index),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_open_gate_allows_every_term() {
        assert!(VoteGate::open().allows(0));
        assert!(VoteGate::open().allows(7));
    }

    #[test]
    fn a_rebuilding_replica_votes_only_past_the_barrier_once_caught_up() {
        let gate = VoteGate::rebuilding(None);
        assert!(!gate.allows(100), "no barrier yet");
        gate.update(|s| {
            s.barrier = Some(Barrier {
                term: 5,
                applied: 40,
            })
        });
        assert!(!gate.allows(6), "not caught up");
        gate.update(|s| s.caught_up = true);
        assert!(
            !gate.allows(5),
            "the barrier's own term may hold a lost vote"
        );
        assert!(gate.allows(6));
        assert!(gate.refusal(5).contains("above 5"));
    }

    #[test]
    fn the_marker_survives_a_restart() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert_eq!(Marker::load(dir.path()).expect("load"), None);
        let marker = Marker {
            damaged_copy: "/x.damaged-1".into(),
            barrier: Some(Barrier {
                term: 3,
                applied: 9,
            }),
        };
        marker.save(dir.path()).expect("save");
        assert_eq!(Marker::load(dir.path()).expect("load"), Some(marker));
        Marker::remove(dir.path()).expect("remove");
        assert_eq!(Marker::load(dir.path()).expect("load"), None);
    }
}
