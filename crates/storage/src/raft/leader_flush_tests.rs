//! The patched openraft (vendor/openraft/PATCHES.md) on three real Raft
//! nodes with WAL log stores, wired by an in-process network: a leader
//! replicates an entry while its own log write is still on its way to
//! disk, and counts itself towards the entry's quorum only once it is
//! there. The leader's log store holds back its flush reports on demand,
//! which stands in for a slow fsync. And a new commit index travels with
//! the next entry (or heartbeat), not in an AppendEntries of its own.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Debug;
use std::ops::RangeBounds;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use openraft::error::{InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::storage::{LogFlushed, LogState, RaftLogReader, RaftLogStorage};
use openraft::{BasicNode, Config, OptionalSend, StorageError, Vote};

use super::test_stores::{state_machine, wal_log};
use super::wal_store::WalLogStore;
use super::{Entry, LogId, NodeId, Proposal, TypeConfig};
use crate::engine::memory::MemEngine;

type Raft = openraft::Raft<TypeConfig>;
type IoResult<T> = Result<T, StorageError<NodeId>>;
type Held = Arc<Mutex<Option<Vec<LogFlushed<TypeConfig>>>>>;

const PATIENCE: Duration = Duration::from_secs(10);

/// A WAL log store whose appends, while `held` is `Some`, reach the log
/// (readers see them) but report their flush only when released.
#[derive(Clone)]
struct HoldingLog {
    inner: WalLogStore,
    held: Held,
}

impl HoldingLog {
    fn hold(&self) {
        *self.held.lock().unwrap() = Some(Vec::new());
    }

    fn held_reports(&self) -> usize {
        self.held.lock().unwrap().as_ref().map_or(0, Vec::len)
    }

    /// Makes everything appended durable, then reports the held flushes.
    async fn release(&self) {
        let reports = self.held.lock().unwrap().take().unwrap_or_default();
        self.inner.sync().await.expect("sync the WAL");
        for report in reports {
            report.log_io_completed(Ok(()));
        }
    }
}

impl RaftLogReader<TypeConfig> for HoldingLog {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> IoResult<Vec<Entry>> {
        self.inner.try_get_log_entries(range).await
    }
}

impl RaftLogStorage<TypeConfig> for HoldingLog {
    type LogReader = Self;

    async fn get_log_state(&mut self) -> IoResult<LogState<TypeConfig>> {
        self.inner.get_log_state().await
    }
    async fn get_log_reader(&mut self) -> Self {
        self.clone()
    }
    async fn save_vote(&mut self, vote: &Vote<NodeId>) -> IoResult<()> {
        self.inner.save_vote(vote).await
    }
    async fn read_vote(&mut self) -> IoResult<Option<Vote<NodeId>>> {
        self.inner.read_vote().await
    }
    async fn append<I>(&mut self, entries: I, callback: LogFlushed<TypeConfig>) -> IoResult<()>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let callback = {
            let mut held = self.held.lock().unwrap();
            match held.as_mut() {
                Some(reports) => {
                    self.inner.append_without_report(entries)?;
                    reports.push(callback);
                    return Ok(());
                }
                None => callback,
            }
        };
        self.inner.append(entries, callback).await
    }
    async fn truncate(&mut self, log_id: LogId) -> IoResult<()> {
        self.inner.truncate(log_id).await
    }
    async fn purge(&mut self, log_id: LogId) -> IoResult<()> {
        self.inner.purge(log_id).await
    }
}

/// Delivers RPCs straight to the target node's `Raft`; a node taken out
/// of `nodes` is unreachable. Counts the AppendEntries it delivers.
#[derive(Clone, Default)]
struct Router {
    nodes: Arc<Mutex<HashMap<NodeId, Raft>>>,
    appends: Arc<AtomicUsize>,
}

struct Link {
    router: Router,
    target: NodeId,
}

impl Link {
    fn target(&self) -> Result<Raft, NetworkError> {
        let nodes = self.router.nodes.lock().unwrap();
        nodes.get(&self.target).cloned().ok_or_else(|| {
            NetworkError::new(&std::io::Error::other(format!(
                "{} is cut off",
                self.target
            )))
        })
    }
}

impl RaftNetworkFactory<TypeConfig> for Router {
    type Network = Link;
    async fn new_client(&mut self, target: NodeId, _node: &BasicNode) -> Link {
        Link {
            router: self.clone(),
            target,
        }
    }
}

type Rpc<T, E = openraft::error::Infallible> =
    Result<T, RPCError<NodeId, BasicNode, RaftError<NodeId, E>>>;

impl RaftNetwork<TypeConfig> for Link {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        _: RPCOption,
    ) -> Rpc<AppendEntriesResponse<NodeId>> {
        let raft = self.target()?;
        self.router.appends.fetch_add(1, Ordering::SeqCst);
        raft.append_entries(rpc)
            .await
            .map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
    }
    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        _: RPCOption,
    ) -> Rpc<InstallSnapshotResponse<NodeId>, InstallSnapshotError> {
        let raft = self.target()?;
        raft.install_snapshot(rpc)
            .await
            .map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
    }
    async fn vote(&mut self, rpc: VoteRequest<NodeId>, _: RPCOption) -> Rpc<VoteResponse<NodeId>> {
        let raft = self.target()?;
        raft.vote(rpc)
            .await
            .map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
    }
}

struct Group {
    _dirs: Vec<tempfile::TempDir>,
    router: Router,
    rafts: BTreeMap<NodeId, Raft>,
    logs: BTreeMap<NodeId, HoldingLog>,
}

impl Group {
    /// Three nodes, initialized, with a leader.
    async fn start() -> Self {
        Self::start_with(50).await
    }

    /// The same, with heartbeats every `heartbeat_ms`.
    async fn start_with(heartbeat_ms: u64) -> Self {
        let router = Router::default();
        let config = Arc::new(
            Config {
                heartbeat_interval: heartbeat_ms,
                election_timeout_min: 6 * heartbeat_ms,
                election_timeout_max: 12 * heartbeat_ms,
                ..Config::default()
            }
            .validate()
            .unwrap(),
        );
        let (mut dirs, mut rafts, mut logs) = (Vec::new(), BTreeMap::new(), BTreeMap::new());
        for id in 1..=3 {
            let dir = tempfile::tempdir().unwrap();
            let log = HoldingLog {
                inner: wal_log(dir.path()),
                held: Held::default(),
            };
            let raft = Raft::new(
                id,
                config.clone(),
                router.clone(),
                log.clone(),
                state_machine(dir.path(), MemEngine::new()),
            )
            .await
            .unwrap();
            router.nodes.lock().unwrap().insert(id, raft.clone());
            dirs.push(dir);
            rafts.insert(id, raft);
            logs.insert(id, log);
        }
        let members: BTreeMap<NodeId, BasicNode> =
            (1..=3).map(|id| (id, BasicNode::default())).collect();
        rafts[&1].initialize(members).await.unwrap();
        Self {
            _dirs: dirs,
            router,
            rafts,
            logs,
        }
    }

    async fn leader(&self) -> NodeId {
        let metrics = self.rafts[&1]
            .wait(Some(PATIENCE))
            .metrics(|m| m.current_leader.is_some(), "a leader")
            .await
            .unwrap();
        let leader = metrics.current_leader.unwrap();
        self.rafts[&leader]
            .wait(Some(PATIENCE))
            .metrics(
                |m| m.last_applied.is_some(),
                "the leader's first entry applied",
            )
            .await
            .unwrap();
        leader
    }

    fn cut_off(&self, id: NodeId) {
        self.router.nodes.lock().unwrap().remove(&id);
    }
}

#[tokio::test]
async fn an_entry_commits_on_the_followers_while_the_leaders_own_flush_is_pending() {
    let group = Group::start().await;
    let leader = group.leader().await;
    let log = &group.logs[&leader];
    log.hold();

    // Unpatched, the leader waits for its own flush before replicating,
    // and this write never completes.
    let written = tokio::time::timeout(
        PATIENCE,
        group.rafts[&leader].client_write(Proposal::default()),
    )
    .await
    .expect("the write completes without the leader's flush")
    .unwrap();

    assert!(log.held_reports() >= 1, "the leader's flush was still held");
    log.release().await;
    let index = written.log_id.index;
    group.rafts[&leader]
        .wait(Some(PATIENCE))
        .log_index(Some(index), "the leader's log holds the entry")
        .await
        .unwrap();
}

#[tokio::test]
async fn a_leader_counts_itself_only_once_its_own_flush_is_done() {
    let group = Group::start().await;
    let leader = group.leader().await;
    let follower = *group.rafts.keys().find(|&&id| id != leader).unwrap();
    let other = *group
        .rafts
        .keys()
        .find(|&&id| id != leader && id != follower)
        .unwrap();
    group.cut_off(other);
    let log = &group.logs[&leader];
    log.hold();

    let raft = group.rafts[&leader].clone();
    let write = tokio::spawn(async move { raft.client_write(Proposal::default()).await });
    let index = group.rafts[&follower]
        .wait(Some(PATIENCE))
        .metrics(
            |m| m.last_log_index.is_some_and(|i| i > 1),
            "the follower has the entry",
        )
        .await
        .unwrap()
        .last_log_index
        .unwrap();
    group.rafts[&leader]
        .wait(Some(PATIENCE))
        .metrics(
            |m| {
                let matched = m
                    .replication
                    .as_ref()
                    .and_then(|r| r.get(&follower).cloned());
                matched.flatten().is_some_and(|l| l.index >= index)
            },
            "the leader heard the follower's acknowledgement",
        )
        .await
        .unwrap();

    // The follower's acknowledgement alone is one vote of three: the
    // entry is not committed until the leader's own flush reports.
    let read_point = group.rafts[&leader].ensure_linearizable().await.unwrap();
    assert!(
        read_point.is_none_or(|l| l.index < index),
        "committed without the leader's flush: {read_point:?}"
    );
    assert!(!write.is_finished());

    log.release().await;
    let written = tokio::time::timeout(PATIENCE, write)
        .await
        .expect("the write completes once the leader's flush reports")
        .unwrap()
        .unwrap();
    assert_eq!(written.log_id.index, index);
}

#[tokio::test]
async fn a_new_commit_index_travels_with_the_next_entry_not_on_its_own() {
    // Heartbeats far apart, so nearly every AppendEntries below carries an
    // entry: unpatched, each commit adds an empty one per follower.
    let group = Group::start_with(500).await;
    let leader = group.leader().await;
    let followers: Vec<NodeId> = group
        .rafts
        .keys()
        .copied()
        .filter(|&id| id != leader)
        .collect();
    let before = group.router.appends.load(Ordering::SeqCst);

    const WRITES: usize = 20;
    let mut last = 0;
    for _ in 0..WRITES {
        last = group.rafts[&leader]
            .client_write(Proposal::default())
            .await
            .unwrap()
            .log_id
            .index;
    }

    let sent = group.router.appends.load(Ordering::SeqCst) - before;
    let one_per_entry = WRITES * followers.len();
    // A periodic heartbeat or two may fall inside the writes.
    assert!(
        sent <= one_per_entry + 2 * followers.len(),
        "{sent} AppendEntries for {WRITES} entries to {} followers",
        followers.len()
    );
    // The last commit index reaches the followers with the next heartbeat.
    for follower in followers {
        group.rafts[&follower]
            .wait(Some(PATIENCE))
            .applied_index_at_least(Some(last), "the last entry applied on a follower")
            .await
            .unwrap();
    }
}
