//! A real storage cluster inside the test process: every replica a real
//! gRPC server on a loopback port, real Raft, real files in a temp dir.

use std::net::SocketAddr;
use std::time::Duration;

use anatomy_runtime::tls::{Identity, Transport};
use anatomy_runtime::{Health, Shutdown};
use storage::node::{NodeConfig, RaftTuning, StorageNode};
use storage::proposer::ProposerLimits;
use storage::{RunError, ServeOptions};
use storage_client::{ClientConfig, ShardMap, StorageClient};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

pub struct Replica {
    pub node: StorageNode,
    shutdown: Shutdown,
    task: JoinHandle<Result<(), RunError>>,
}

pub struct Cluster {
    pub map: ShardMap,
    pub dir: tempfile::TempDir,
    pub replicas: Vec<Option<Replica>>,
    pub tuning: RaftTuning,
    pub on_damage: storage::damage::OnDamage,
}

pub fn fast_tuning() -> RaftTuning {
    RaftTuning {
        log: storage::node::LogKind::Wal,
        wal_cache_bytes: 16 << 20,
        wal_chunk_bytes: 1 << 20,
        heartbeat: Duration::from_millis(50),
        election_min: Duration::from_millis(200),
        election_max: Duration::from_millis(400),
        snapshot_every: 10_000,
        snapshot_growth_percent: 25,
        keep_logs: 1_000,
        sync_every: 100,
    }
}

fn limits() -> ProposerLimits {
    ProposerLimits {
        queue_depth: 1024,
        max_batches_per_entry: 256,
        max_entry_bytes: 1 << 20,
        max_in_flight: 2,
    }
}

/// Reserves `n` loopback ports (bound, then released for the nodes).
async fn ports(n: usize) -> Vec<SocketAddr> {
    let mut listeners = Vec::new();
    for _ in 0..n {
        listeners.push(TcpListener::bind("127.0.0.1:0").await.expect("bind"));
    }
    listeners
        .iter()
        .map(|l| l.local_addr().expect("addr"))
        .collect()
}

impl Cluster {
    /// `shards` shards of `replicas` replicas each, all started, talking
    /// mutual TLS with certificates in `<dir>/tls`.
    pub async fn start(shards: u32, replicas: u64, tuning: RaftTuning) -> Self {
        let addrs = ports((shards as usize) * (replicas as usize)).await;
        let map = ShardMap::uniform(shards, replicas, |s, r| {
            addrs[(s as usize) * (replicas as usize) + (r as usize - 1)].to_string()
        });
        let dir = tempfile::tempdir().expect("tempdir");
        anatomy_certs::TlsDir::new(dir.path().join("tls"))
            .init(
                &anatomy_certs::cluster_identities(shards, replicas),
                &anatomy_certs::LeafOptions::default(),
            )
            .expect("certificates");
        let mut cluster = Self {
            map,
            dir,
            replicas: Vec::new(),
            tuning,
            on_damage: storage::damage::OnDamage::Rebuild,
        };
        for i in 0..addrs.len() {
            cluster.replicas.push(None);
            cluster.boot(i).await;
        }
        cluster
    }

    /// Starts one more shard, its replicas on new loopback ports, owning no
    /// slots (an empty range at the end of the map), as a shard added to a
    /// running cluster is. Only the new replicas run with the longer map;
    /// the others keep the map they started with. Returns its id.
    pub async fn add_shard(&mut self) -> u32 {
        let per = self.map.shards[0].replicas.len();
        let id = u32::try_from(self.map.shards.len()).expect("shard count");
        let addrs = ports(per).await;
        self.map.shards.push(storage_api::shard_map::ShardSpec {
            id,
            slot_start: self.map.slots,
            slot_end: self.map.slots,
            replicas: addrs
                .iter()
                .zip(1..)
                .map(|(addr, r)| storage_api::shard_map::ReplicaSpec {
                    id: r,
                    addr: addr.to_string(),
                })
                .collect(),
        });
        self.map.validate().expect("the longer map is valid");
        anatomy_certs::TlsDir::new(self.tls_dir())
            .init(
                &anatomy_certs::cluster_identities(id + 1, per as u64),
                &anatomy_certs::LeafOptions::default(),
            )
            .expect("certificates of the new shard");
        for _ in 0..per {
            self.replicas.push(None);
            let i = self.replicas.len() - 1;
            self.boot(i).await;
        }
        id
    }

    /// Index of (shard, replica) in `replicas`.
    pub fn index(&self, shard: u32, replica: u64) -> usize {
        let per = self.map.shards[0].replicas.len();
        shard as usize * per + (replica as usize - 1)
    }

    fn spec(&self, i: usize) -> (u32, u64, String) {
        let per = self.map.shards[0].replicas.len();
        let shard = &self.map.shards[i / per];
        let r = &shard.replicas[i % per];
        (shard.id, r.id, r.addr.clone())
    }

    /// mTLS as `who`, with the cluster's certificates.
    pub fn transport(&self, who: Identity) -> Transport {
        Transport::mtls(&self.tls_dir(), who, Duration::from_millis(100), false)
            .expect("certificates")
    }

    /// Where the cluster's certificates are.
    pub fn tls_dir(&self) -> std::path::PathBuf {
        self.dir.path().join("tls")
    }

    pub fn data_dir(&self, i: usize) -> std::path::PathBuf {
        let (s, r, _) = self.spec(i);
        self.dir.path().join(format!("s{s}-r{r}"))
    }

    /// Starts replica `i` (again) on its address.
    pub async fn boot(&mut self, i: usize) {
        self.try_boot(i).await.expect("start node");
    }

    /// Starts replica `i` (again), or says why it cannot start.
    pub async fn try_boot(&mut self, i: usize) -> Result<(), storage::node::StartError> {
        let (shard, replica, addr) = self.spec(i);
        let config = NodeConfig {
            map: self.map.clone(),
            shard,
            replica,
            data_dir: self.data_dir(i),
            raft: self.tuning.clone(),
            limits: limits(),
            on_damage: self.on_damage,
            transport: self.transport(Identity::storage(shard, replica)),
        };
        let listener = bind_retrying(&addr).await;
        let node = StorageNode::start(config).await?;
        let health = Health::new(&[storage::HEALTH_SERVICE]).await;
        let shutdown = Shutdown::new();
        let options = ServeOptions {
            request_timeout: Duration::from_secs(5),
            limits: anatomy_runtime::server::ServerLimits {
                max_in_flight: 1024,
                default_deadline: Duration::from_secs(5),
                max_deadline: Duration::from_secs(30),
                max_request_bytes: 1 << 20,
                connection_age: anatomy_runtime::server::ConnectionAge::Unlimited,
            },
            shutdown_grace: Duration::from_secs(2),
        };
        let task = tokio::spawn(storage::serve(
            node.clone(),
            listener,
            options,
            health,
            shutdown.clone(),
        ));
        self.replicas[i] = Some(Replica {
            node,
            shutdown,
            task,
        });
        Ok(())
    }

    /// Stops replica `i` (Raft shut down, server closed).
    pub async fn stop(&mut self, i: usize) {
        if let Some(r) = self.replicas[i].take() {
            r.shutdown.trigger();
            let _ = r.task.await;
        }
    }

    pub fn node(&self, i: usize) -> &StorageNode {
        &self.replicas[i].as_ref().expect("replica is running").node
    }

    /// A storage client as the business service.
    pub fn client(&self) -> StorageClient {
        self.client_as(Identity::Business)
    }

    /// A storage client with `who`'s certificate.
    pub fn client_as(&self, who: Identity) -> StorageClient {
        StorageClient::new(
            self.map.clone(),
            ClientConfig::default(),
            &self.transport(who),
        )
        .expect("client")
    }

    /// The flags that point a business replica at this cluster: the shard
    /// map, written as a TOML file into the cluster's directory, and the
    /// cluster's certificates.
    pub fn business_args(&self) -> Vec<String> {
        let path = self.dir.path().join("shard-map.toml");
        let text = toml::to_string(&self.map).expect("shard map as TOML");
        std::fs::write(&path, text).expect("write shard map");
        vec![
            "--shard-map".into(),
            path.display().to_string(),
            "--tls-dir".into(),
            self.tls_dir().display().to_string(),
        ]
    }

    /// The leader of `shard` once every running replica agrees on one.
    pub async fn leader(&self, shard: u32) -> usize {
        let per = self.map.shards[0].replicas.len();
        let range = shard as usize * per..(shard as usize + 1) * per;
        let limit = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let running: Vec<_> = range
                .clone()
                .filter_map(|i| self.replicas[i].as_ref())
                .collect();
            let leaders: Vec<_> = running
                .iter()
                .map(|r| r.node.raft.metrics().borrow().current_leader)
                .collect();
            if let Some(Some(id)) = leaders.first()
                && leaders.iter().all(|l| *l == Some(*id))
                && running.iter().any(|r| r.node.me.id == *id)
            {
                return self.index(shard, *id);
            }
            assert!(
                tokio::time::Instant::now() < limit,
                "shard {shard} has no agreed leader: {leaders:?}"
            );
            let mut m = running[0].node.raft.metrics();
            let _ = tokio::time::timeout(Duration::from_millis(100), m.changed()).await;
        }
    }

    /// The last log index replica `i` has applied.
    pub fn applied(&self, i: usize) -> u64 {
        let metrics = self.node(i).raft.metrics().borrow().clone();
        metrics.last_applied.expect("applied").index
    }

    /// The last index in replica `i`'s log (applied or not).
    pub fn last_log(&self, i: usize) -> u64 {
        let metrics = self.node(i).raft.metrics().borrow().clone();
        metrics.last_log_index.expect("a log")
    }

    /// Waits until replica `i` has applied at least `index`.
    pub async fn wait_applied(&self, i: usize, index: u64) {
        self.node(i)
            .raft
            .wait(Some(Duration::from_secs(15)))
            .applied_index_at_least(Some(index), "catch up")
            .await
            .expect("replica caught up");
    }

    pub async fn stop_all(&mut self) {
        for i in 0..self.replicas.len() {
            self.stop(i).await;
        }
    }
}

/// Binds `addr` (a stopped replica has closed its listener; SO_REUSEADDR
/// lets the port be bound again at once).
async fn bind_retrying(addr: &str) -> TcpListener {
    TcpListener::bind(addr).await.expect("bind replica address")
}
