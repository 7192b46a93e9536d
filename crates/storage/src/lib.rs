//! Anatomy's storage service: a partitioned key-value store whose every
//! shard is an openraft group with its log and state machine in redb.
//!
//! - `engine`: the state machine's storage behind a trait (redb, memory).
//! - `raft`: the Raft log, state machine, snapshots and network.
//! - `proposer` / `reads`: group commit for writes, coalesced linearizable reads.
//! - `fence`: WRONG_SHARD / SLOT_MOVING fencing by the slots a shard owns.
//! - `slot_steps` / `move_driver`: moving slots between shards online.
//! - `kv` / `admin`: the gRPC services; `node` wires one replica together.
#![forbid(unsafe_code)]

pub mod config;
pub mod damage;
pub mod directory;
pub mod engine;
pub mod error;
pub mod fence;
pub mod files;
pub mod grpc;
pub mod move_driver;
pub mod node;
pub mod proposer;
pub mod raft;
pub mod reads;
pub mod rebuild;
pub mod slot_steps;

use std::time::Duration;

use anatomy_runtime::layers::authorize::{Caller, Matrix};
use anatomy_runtime::server::{self, ServerError, ServerLimits};
use anatomy_runtime::tls::{Identity, TlsError, Transport};
use anatomy_runtime::{Health, Shutdown};
use storage_api::shard_map::{ShardMap, ShardMapError};
use storage_api::v1::FILE_DESCRIPTOR_SET;
use storage_api::v1::admin_server::AdminServer;
use storage_api::v1::kv_server::KvServer;
use storage_api::v1::raft_server::RaftServer;
use tokio::net::TcpListener;

use crate::config::StorageArgs;
use crate::grpc::raft_network::MAX_MESSAGE_BYTES;
use crate::node::{NodeConfig, RaftTuning, StartError, StorageNode};
use crate::proposer::ProposerLimits;

/// The health service name readiness is reported under (and "").
pub const HEALTH_SERVICE: &str = "anatomy.storage.v1.Kv";

/// Why the storage service stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    ShardMap(#[from] ShardMapError),
    #[error(transparent)]
    Start(#[from] StartError),
    #[error(transparent)]
    Server(#[from] ServerError),
    #[error("--identity-from-hostname: no replica in the shard map has an address on host {0:?}")]
    UnknownHost(String),
    #[error(transparent)]
    Metrics(#[from] anatomy_runtime::prometheus::MetricsError),
    #[error("Raft stopped on an error (restart the replica: its files are checked on start): {0}")]
    RaftFatal(String),
    #[error(transparent)]
    Tls(#[from] TlsError),
}

/// Who may call a replica of shard `shard`: the ledger and the operator
/// read and write; only the shard's own replicas speak Raft to it; the
/// operator and every replica (ClusterStatus asks them all) read Admin.
pub fn access(shard: u32) -> Matrix {
    Matrix::new()
        .allow(
            "anatomy.storage.v1.Kv",
            &[
                Caller::Is(Identity::Business),
                Caller::Is(Identity::Operator),
            ],
        )
        .allow("anatomy.storage.v1.Raft", &[Caller::StorageOfShard(shard)])
        .allow(
            "anatomy.storage.v1.Admin",
            &[Caller::Is(Identity::Operator), Caller::AnyStorage],
        )
}

/// The shard map from `--shard-map`, or a one-node map at the listen address.
pub fn load_map(args: &StorageArgs) -> Result<ShardMap, ShardMapError> {
    match &args.shard_map {
        Some(path) => ShardMap::load(path),
        None => Ok(ShardMap::single(
            args.listen
                .as_deref()
                .unwrap_or(&format!("127.0.0.1:{}", config::DEFAULT_PORT)),
        )),
    }
}

/// The node configuration the flags describe.
pub fn node_config(args: &StorageArgs, map: ShardMap, transport: Transport) -> NodeConfig {
    NodeConfig {
        transport,
        map,
        shard: args.shard,
        replica: args.replica,
        data_dir: args.data_dir(),
        raft: RaftTuning {
            log: args.raft.raft_log,
            wal_cache_bytes: args.raft.wal_cache_bytes,
            wal_chunk_bytes: args.raft.wal_chunk_bytes,
            heartbeat: args.raft.raft_heartbeat,
            election_min: args.raft.raft_election_min,
            election_max: args.raft.raft_election_max,
            snapshot_every: args.raft.snapshot_every,
            snapshot_growth_percent: args.raft.snapshot_growth_percent,
            keep_logs: args.raft.keep_logs,
            sync_every: args.raft.sync_every,
        },
        on_damage: args.raft.on_damage,
        limits: ProposerLimits {
            queue_depth: args.proposer.write_queue,
            max_batches_per_entry: args.proposer.max_batches_per_entry,
            max_entry_bytes: args.proposer.max_entry_bytes,
            max_in_flight: args.proposer.max_in_flight,
        },
    }
}

/// The address this node listens on.
pub fn listen_addr(args: &StorageArgs, map: &ShardMap) -> String {
    args.listen.clone().unwrap_or_else(|| {
        map.shard(args.shard)
            .and_then(|s| s.replica(args.replica))
            .map_or_else(
                || format!("127.0.0.1:{}", config::DEFAULT_PORT),
                |r| config::listen_for(&r.addr),
            )
    })
}

/// This machine's hostname (Linux).
fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .or_else(|_| std::env::var("HOSTNAME"))
        .unwrap_or_default()
}

/// Sets --shard and --replica from the hostname when asked to.
pub fn resolve_identity(args: &mut StorageArgs, map: &ShardMap) -> Result<(), RunError> {
    if !args.identity_from_hostname {
        return Ok(());
    }
    let host = hostname();
    let (shard, replica) = map
        .replica_on_host(&host)
        .ok_or(RunError::UnknownHost(host))?;
    args.shard = shard;
    args.replica = replica;
    Ok(())
}

/// Runs a storage node from its flags until SIGTERM/SIGINT.
pub async fn run(mut args: StorageArgs) -> Result<(), RunError> {
    let map = load_map(&args)?;
    resolve_identity(&mut args, &map)?;
    anatomy_runtime::prometheus::install(
        "storage",
        &args.metrics_listen,
        &[
            ("shard", args.shard.to_string()),
            ("replica", args.replica.to_string()),
        ],
    )?;
    let transport = args
        .tls
        .transport(Identity::storage(args.shard, args.replica))?;
    let listener = server::bind(&listen_addr(&args, &map)).await?;
    let health = Health::new(&[HEALTH_SERVICE]).await;
    let shutdown = Shutdown::on_signals(health.clone())?;
    server::spawn_health_listener(&args.health_listen, &health, &shutdown).await?;
    let options = ServeOptions {
        request_timeout: args.request_timeout,
        // Connections are never aged (the default): Raft peers and clients
        // dial the replica they mean, there is nothing to rebalance, and
        // an aged connection only adds moments where a heartbeat or a
        // call meets one that is closing.
        limits: args.common.limits(args.request_timeout),
        shutdown_grace: args.common.shutdown_grace,
    };
    let node = StorageNode::start(node_config(&args, map, transport)).await?;
    serve(node, listener, options, health, shutdown).await
}

/// Settings of the gRPC side.
#[derive(Debug, Clone, Copy)]
pub struct ServeOptions {
    pub request_timeout: Duration,
    pub limits: ServerLimits,
    pub shutdown_grace: Duration,
}

/// Serves a started node on `listener` until `shutdown` fires; then stops
/// Raft and makes the state machine durable.
pub async fn serve(
    node: StorageNode,
    listener: TcpListener,
    options: ServeOptions,
    health: Health,
    shutdown: Shutdown,
) -> Result<(), RunError> {
    let addr = server::local_addr(&listener)?;
    let fatal = tokio::spawn(stop_on_fatal(node.raft.clone(), shutdown.clone()));
    let health_service = health.service();
    // A shard added to a running cluster reports SERVING only once shard 0
    // lists it, so whoever started it can move slots to it right after.
    let joining = node.clone();
    tokio::spawn(async move {
        directory::join_cluster(joining.clone()).await;
        track_readiness(joining, health).await;
    });
    tokio::spawn(raft::metrics::export(node.raft.clone()));
    let init = node.clone();
    let stop = shutdown.clone();
    tokio::spawn(async move {
        if let Err(e) = init.initialize().await {
            tracing::error!(error = %e, "cannot form the Raft group; shutting down");
            stop.trigger();
        }
    });
    let (reflection, reflection_alpha) =
        server::reflection(&[FILE_DESCRIPTOR_SET, tonic_types::pb::FILE_DESCRIPTOR_SET])?;
    let authorize = node.transport.authorize(access(node.shard().id));
    let incoming = node.transport.incoming(listener)?;
    let serving = server::builder(options.limits, authorize)
        .add_service(health_service)
        .add_service(reflection)
        .add_service(reflection_alpha)
        .add_service(
            KvServer::new(grpc::kv::KvService::new(
                node.clone(),
                options.request_timeout,
            ))
            .max_decoding_message_size(options.limits.max_request_bytes),
        )
        .add_service(
            RaftServer::new(grpc::raft_service::RaftService::new(
                node.shard().id,
                node.me.id,
                node.raft.clone(),
                node.gate.clone(),
            ))
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES),
        )
        .add_service(AdminServer::new(grpc::admin::AdminService::new(
            node.clone(),
        )))
        .serve_with_incoming_shutdown(incoming, shutdown.wait());
    tracing::info!(%addr, shard = node.shard().id, replica = node.me.id,
        mtls = node.transport.is_mtls(), "storage listening");
    let result = server::run(serving, &shutdown, options.shutdown_grace).await;
    let fatal = if fatal.is_finished() {
        fatal.await.ok().flatten()
    } else {
        fatal.abort();
        None
    };
    node.shutdown().await;
    tracing::info!("storage stopped");
    result?;
    fatal.map_or(Ok(()), |e| Err(RunError::RaftFatal(e)))
}

/// Shuts the server down if Raft stops on an error (a log record that
/// fails its checksum when read back, a disk error): a replica whose Raft
/// has stopped can serve nothing, and restarting it checks its files.
async fn stop_on_fatal(raft: raft::Raft, shutdown: Shutdown) -> Option<String> {
    let mut metrics = raft.metrics();
    loop {
        if let Err(fatal) = &metrics.borrow_and_update().running_state
            && !matches!(fatal, openraft::error::Fatal::Stopped)
        {
            let cause = fatal.to_string();
            tracing::error!(error = %cause, "Raft stopped on an error; shutting down");
            shutdown.trigger();
            return Some(cause);
        }
        if metrics.changed().await.is_err() {
            return None;
        }
    }
}

/// SERVING exactly while the replica knows its group's leader: a replica
/// that cannot reach a leader cannot serve anything.
async fn track_readiness(node: StorageNode, health: Health) {
    let mut metrics = node.raft.metrics();
    let mut last = None;
    loop {
        let ready = {
            let m = metrics.borrow_and_update();
            m.current_leader.is_some() && m.state != openraft::ServerState::Shutdown
        };
        if last != Some(ready) {
            health.set_serving(ready).await;
            tracing::info!(ready, leader = ?node.raft.metrics().borrow().current_leader, "readiness changed");
            last = Some(ready);
        }
        if metrics.changed().await.is_err() {
            return;
        }
    }
}
