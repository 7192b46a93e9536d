//! One storage replica: its Raft group member, state machine, proposer and
//! read barrier, wired together from the shard map.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anatomy_runtime::tls::Transport;
use openraft::error::{InitializeError, RaftError};
use openraft::{BasicNode, Config, ServerState, SnapshotPolicy};
use storage_api::shard_map::{ReplicaSpec, ShardMap, ShardSpec};

use crate::directory::Directory;

use crate::damage::{Damage, OnDamage, move_aside};
use crate::engine::redb::RedbEngine;
use crate::engine::{Engine, Meta};
use crate::error::KvError;
use crate::fence::Fence;
use crate::files::{Files, Log, OpenError};
use crate::grpc::raft_network::Network;
use crate::proposer::{Proposer, ProposerLimits};
use crate::raft::slots::SLOT_TABLE_KEY;
use crate::raft::snapshot::SnapshotDir;
use crate::raft::snapshot_pacing::SnapshotPacing;
use crate::raft::state_machine::StateMachine;
use crate::raft::{NodeId, Raft};
use crate::reads::ReadBarrier;
use crate::rebuild::{Marker, Rebuild, VoteGate};

/// Which Raft log store a replica uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogKind {
    /// Append-only write-ahead log (`raft-log`): one write and one fdatasync per append.
    Wal,
    /// A redb B-tree: one write transaction per append.
    Redb,
}

/// Raft timing, compaction and the log store.
#[derive(Debug, Clone)]
pub struct RaftTuning {
    pub log: LogKind,
    pub wal_cache_bytes: usize,
    pub wal_chunk_bytes: usize,
    pub heartbeat: Duration,
    pub election_min: Duration,
    pub election_max: Duration,
    pub snapshot_every: u64,
    pub snapshot_growth_percent: u32,
    pub keep_logs: u64,
    pub sync_every: u64,
}

/// Everything a replica needs to start.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    pub map: ShardMap,
    pub shard: u32,
    pub replica: u64,
    pub data_dir: PathBuf,
    pub raft: RaftTuning,
    pub limits: ProposerLimits,
    /// What to do when the Raft log is damaged.
    pub on_damage: OnDamage,
    /// How this replica serves and reaches its peers (mTLS as itself).
    pub transport: Transport,
}

/// Why a replica could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("shard {shard} is not in the shard map (it has shards 0..{count})")]
    NoSuchShard { shard: u32, count: usize },
    #[error("shard {shard} has no replica {replica} in the shard map")]
    NoSuchReplica { shard: u32, replica: u64 },
    #[error("cannot create data directory {path}: {source}")]
    DataDir {
        path: String,
        source: std::io::Error,
    },
    #[error("cannot open storage: {0}")]
    Storage(String),
    #[error(
        "{0}. Nothing was served from it. To rebuild this replica from its peers, start it with --on-damage rebuild (its data directory is moved aside, not deleted)"
    )]
    Damaged(Damage),
    #[error("invalid Raft settings: {0}")]
    Config(String),
    #[error("Raft failed: {0}")]
    Raft(String),
}

/// A running replica.
#[derive(Clone)]
pub struct StorageNode {
    pub fence: Fence,
    pub me: ReplicaSpec,
    pub map: Arc<ShardMap>,
    /// Every shard, the map file's and those added since (shard 0's log).
    pub directory: Directory,
    pub raft: Raft,
    pub engine: Arc<RedbEngine>,
    pub proposer: Proposer,
    pub reads: ReadBarrier,
    /// Closed to elections while the replica is rebuilt from its peers.
    pub gate: VoteGate,
    pub transport: Transport,
    /// Closed at shutdown: no snapshot is kept after the replica stopped.
    snapshots: SnapshotDir,
}

impl std::fmt::Debug for StorageNode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StorageNode")
            .field("shard", &self.fence.shard.id)
            .field("replica", &self.me.id)
            .finish_non_exhaustive()
    }
}

fn raft_config(shard: u32, t: &RaftTuning) -> Result<Config, StartError> {
    let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
    Config {
        cluster_name: format!("anatomy-shard-{shard}"),
        heartbeat_interval: ms(t.heartbeat),
        election_timeout_min: ms(t.election_min),
        election_timeout_max: ms(t.election_max),
        install_snapshot_timeout: 10_000,
        max_payload_entries: 64,
        // Snapshots are triggered by our own pacing (raft::snapshot_pacing).
        snapshot_policy: SnapshotPolicy::Never,
        max_in_snapshot_log_to_keep: t.keep_logs,
        ..Config::default()
    }
    .validate()
    .map_err(|e| StartError::Config(e.to_string()))
}

/// Moves a damaged data directory aside and starts an empty one marked as
/// being rebuilt from its peers (see `rebuild`).
fn begin_rebuild(data_dir: &Path, damage: &Damage) -> Result<(), StartError> {
    let storage = |e: std::io::Error| StartError::Storage(format!("rebuild: {e}"));
    let aside = move_aside(data_dir).map_err(storage)?;
    create_dir(data_dir)?;
    Marker {
        damaged_copy: aside.display().to_string(),
        barrier: None,
    }
    .save(data_dir)
    .map_err(storage)?;
    tracing::error!(
        error = %damage,
        moved_to = %aside.display(),
        "{damage}; moved the data directory aside: this replica is rebuilt from its peers, and takes no part in elections until it holds everything it held before"
    );
    Ok(())
}

fn create_dir(path: &Path) -> Result<(), StartError> {
    std::fs::create_dir_all(path).map_err(|source| StartError::DataDir {
        path: path.display().to_string(),
        source,
    })
}

impl StorageNode {
    /// Opens the replica's files and starts its Raft member (not yet
    /// initialized: see `initialize`).
    pub async fn start(cfg: NodeConfig) -> Result<Self, StartError> {
        let shard = cfg
            .map
            .shard(cfg.shard)
            .cloned()
            .ok_or(StartError::NoSuchShard {
                shard: cfg.shard,
                count: cfg.map.shards.len(),
            })?;
        let me = shard
            .replica(cfg.replica)
            .cloned()
            .ok_or(StartError::NoSuchReplica {
                shard: cfg.shard,
                replica: cfg.replica,
            })?;
        create_dir(&cfg.data_dir)?;
        let files = match crate::files::open(&cfg.data_dir, &cfg.raft).await {
            Ok(files) => files,
            Err(OpenError::Io(e)) => return Err(StartError::Storage(e)),
            Err(OpenError::Damaged(damage)) => {
                if cfg.on_damage == OnDamage::Refuse {
                    return Err(StartError::Damaged(damage));
                }
                begin_rebuild(&cfg.data_dir, &damage)?;
                crate::files::open(&cfg.data_dir, &cfg.raft)
                    .await
                    .map_err(|e| StartError::Storage(format!("{e:?}")))?
            }
        };
        let gate = match &files.marker {
            Some(marker) => VoteGate::rebuilding(marker.barrier),
            None => VoteGate::open(),
        };
        let Files {
            log,
            engine,
            snapshots,
            ..
        } = files;
        let pacing = Arc::new(SnapshotPacing::new(
            cfg.raft.snapshot_every,
            cfg.raft.snapshot_growth_percent,
        ));
        let fence = Fence::new(&cfg.map, &shard);
        let stored_slots = engine
            .read()
            .and_then(|view| fence.slots.load(view.as_ref()));
        stored_slots.map_err(|e| StartError::Storage(e.to_string()))?;
        let sm = StateMachine::new(
            engine.clone(),
            snapshots.clone(),
            pacing.clone(),
            fence.slots.clone(),
            cfg.raft.sync_every,
        );
        let network = Network::new(
            shard.clone(),
            cfg.map.version,
            Duration::from_secs(1),
            gate.clone(),
            cfg.transport.clone(),
        );
        let config = Arc::new(raft_config(shard.id, &cfg.raft)?);
        let raft = match log {
            Log::Wal(log) => Raft::new(me.id, config, network, log, sm).await,
            Log::Redb(log) => Raft::new(me.id, config, network, log, sm).await,
        }
        .map_err(|e| StartError::Raft(e.to_string()))?;
        tokio::spawn(pacing.trigger(raft.clone()));
        tokio::spawn(
            Rebuild {
                shard: shard.clone(),
                me: me.clone(),
                data_dir: cfg.data_dir.clone(),
                raft: raft.clone(),
                gate: gate.clone(),
                transport: cfg.transport.clone(),
            }
            .run(),
        );
        Ok(Self {
            fence,
            proposer: Proposer::spawn(raft.clone(), shard.clone(), cfg.limits),
            reads: ReadBarrier::spawn(raft.clone(), shard),
            me,
            directory: Directory::new(cfg.map.clone()),
            map: Arc::new(cfg.map),
            raft,
            engine,
            gate,
            transport: cfg.transport,
            snapshots,
        })
    }

    /// On first start, forms the group from the shard map. Every replica
    /// does this with the same members, which openraft allows; on a replica
    /// that already has state it is a no-op.
    pub async fn initialize(&self) -> Result<(), StartError> {
        if self.gate.is_rebuilding() {
            // Its peers have the group; forming it anew here is what a
            // rebuilt replica must never do.
            return Ok(());
        }
        let members: BTreeMap<NodeId, BasicNode> = self
            .fence
            .shard
            .replicas
            .iter()
            .map(|r| (r.id, BasicNode::new(&r.addr)))
            .collect();
        match self.raft.initialize(members).await {
            Ok(()) => {
                tracing::info!(
                    shard = self.fence.shard.id,
                    "formed the Raft group from the shard map"
                );
                Ok(())
            }
            Err(RaftError::APIError(InitializeError::NotAllowed(_))) => Ok(()),
            Err(e) => Err(StartError::Raft(e.to_string())),
        }
    }

    /// The shard this replica serves.
    pub fn shard(&self) -> &ShardSpec {
        &self.fence.shard
    }

    /// Whether the group has a leader this replica knows of.
    pub fn has_leader(&self) -> bool {
        let m = self.raft.metrics().borrow().clone();
        m.current_leader.is_some() && m.state != ServerState::Shutdown
    }

    /// Refuses with NOT_LEADER unless this replica believes it leads its
    /// group. No round to a quorum: it may have been deposed without
    /// knowing it yet, so what it serves on this check alone may be stale.
    pub fn believes_leader(&self) -> Result<(), KvError> {
        let metrics = self.raft.metrics();
        let m = metrics.borrow();
        if m.state == ServerState::Leader {
            return Ok(());
        }
        let shard = self.shard();
        Err(KvError::NotLeader {
            shard_id: shard.id,
            leader_id: m.current_leader,
            leader_addr: m
                .current_leader
                .and_then(|id| shard.replica(id))
                .map(|r| r.addr.clone()),
        })
    }

    /// A consistent read view of the state machine.
    pub fn engine_view(
        &self,
    ) -> Result<Box<dyn crate::engine::ReadView + '_>, crate::engine::EngineError> {
        self.engine.read()
    }

    /// The state machine's metadata (revision, last applied) and item count.
    /// (The stored slot table is not an item: it is not counted.)
    pub fn state(&self) -> Result<(Meta, u64), crate::engine::EngineError> {
        let view = self.engine.read()?;
        let slot_table = view.get(SLOT_TABLE_KEY)?.is_some();
        Ok((view.meta()?, view.len()? - u64::from(slot_table)))
    }

    /// Stops Raft and makes the state machine durable.
    pub async fn shutdown(&self) {
        if let Err(e) = self.raft.shutdown().await {
            tracing::warn!(error = %e, "Raft did not shut down cleanly");
        }
        self.snapshots.close();
        if let Err(e) = self.engine.sync() {
            tracing::warn!(error = %e, "could not fsync the state machine");
        }
    }
}
