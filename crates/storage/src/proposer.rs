//! Group commit for writes.
//!
//! openraft 0.9 turns each `client_write` into its own log entry and waits
//! for that entry's fsync before taking the next, so one request per entry
//! tops out at a few hundred writes per second per shard. The proposer puts
//! every write batch that is waiting when a slot frees up into one entry
//! (one fsync on each replica for all of them), with up to
//! `max_in_flight` entries being replicated at once. Durability is
//! unchanged: a caller hears back only after its entry is committed by a
//! majority (each of which fsynced it) and applied.
//!
//! The queue is bounded: when it is full, writes are refused at once with
//! RESOURCE_EXHAUSTED instead of waiting in an ever longer line.
//!
//! The batching logic talks to Raft through one port, [`ProposeLog`], so
//! it is unit-tested against a fake log; [`RaftLog`] is the real adapter.

use std::sync::Arc;

use futures::future::BoxFuture;
use openraft::error::ClientWriteError;
use storage_api::shard_map::ShardSpec;
use tokio::sync::{Semaphore, mpsc, oneshot};

use crate::error::{KvError, forward_to_leader};
use crate::raft::{Proposal, Raft, WriteBatch, WriteOutcome};

/// How the proposer batches.
#[derive(Debug, Clone, Copy)]
pub struct ProposerLimits {
    /// Write batches waiting at most; beyond, RESOURCE_EXHAUSTED.
    pub queue_depth: usize,
    /// Write batches per log entry at most.
    pub max_batches_per_entry: usize,
    /// Payload bytes per log entry at most (one oversized batch still goes alone).
    pub max_entry_bytes: usize,
    /// Log entries being replicated at once at most.
    pub max_in_flight: usize,
}

/// One entry's fate: an outcome per write batch, in order, or why none.
pub type Committed = Result<Vec<WriteOutcome>, KvError>;

/// The port to the replicated log: propose an entry without waiting for
/// it, then learn whether it committed.
pub trait ProposeLog: Send + Sync + 'static {
    /// Hands `proposal` to the log. Resolves once the log has taken it
    /// (the proposer may then build the next entry) to a future of the
    /// entry's commit; fails if the log has stopped.
    fn propose(
        &self,
        proposal: Proposal,
    ) -> BoxFuture<'_, Result<BoxFuture<'static, Committed>, KvError>>;
}

type Reply = oneshot::Sender<Result<WriteOutcome, KvError>>;

struct Pending {
    batch: WriteBatch,
    reply: Reply,
}

/// The handle requests use to propose writes.
#[derive(Debug, Clone)]
pub struct Proposer {
    queue: mpsc::Sender<Pending>,
    shard_id: u32,
}

impl std::fmt::Debug for Pending {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pending").finish_non_exhaustive()
    }
}

fn batch_bytes(b: &WriteBatch) -> usize {
    b.partition.len()
        + b.conditions
            .iter()
            .map(|c| c.table.len() + c.key.len() + 8)
            .sum::<usize>()
        + b.mutations
            .iter()
            .map(|m| m.table.len() + m.key.len() + m.value.as_ref().map_or(0, Vec::len))
            .sum::<usize>()
}

impl Proposer {
    /// Starts the proposer task of one shard over its Raft group.
    pub fn spawn(raft: Raft, shard: ShardSpec, limits: ProposerLimits) -> Self {
        let shard_id = shard.id;
        Self::spawn_on(RaftLog::new(raft, shard), shard_id, limits)
    }

    /// Starts the proposer task over any log.
    pub fn spawn_on(log: impl ProposeLog, shard_id: u32, limits: ProposerLimits) -> Self {
        let (queue, rx) = mpsc::channel(limits.queue_depth.max(1));
        tokio::spawn(run(log, limits, rx));
        Self { queue, shard_id }
    }

    /// Proposes one write batch; resolves once it is committed and applied.
    pub async fn propose(&self, batch: WriteBatch) -> Result<WriteOutcome, KvError> {
        let (reply, rx) = oneshot::channel();
        self.queue
            .try_send(Pending { batch, reply })
            .map_err(|e| match e {
                mpsc::error::TrySendError::Full(_) => KvError::Overloaded(format!(
                    "shard {} has too many writes queued; retry with backoff",
                    self.shard_id
                )),
                mpsc::error::TrySendError::Closed(_) => self.stopped(),
            })?;
        rx.await.map_err(|_| self.stopped())?
    }

    fn stopped(&self) -> KvError {
        KvError::Unavailable(format!("shard {} replica is shutting down", self.shard_id))
    }
}

async fn run(log: impl ProposeLog, limits: ProposerLimits, mut rx: mpsc::Receiver<Pending>) {
    let slots = Arc::new(Semaphore::new(limits.max_in_flight.max(1)));
    loop {
        // Wait for a free slot first: whatever queues meanwhile joins this entry.
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
        let Some(first) = rx.recv().await else {
            return;
        };
        let pending = next_entry(first, &mut rx, &limits);
        let (writes, replies): (Vec<_>, Vec<_>) =
            pending.into_iter().map(|p| (p.batch, p.reply)).unzip();
        match log.propose(Proposal { writes, slot: None }).await {
            Ok(committed) => {
                tokio::spawn(async move {
                    let result = committed.await;
                    drop(slot);
                    deliver(result, replies);
                });
            }
            Err(stopped) => deliver(Err(stopped), replies),
        }
    }
}

/// `first` and whatever else is queued, up to the entry's limits.
fn next_entry(
    first: Pending,
    rx: &mut mpsc::Receiver<Pending>,
    limits: &ProposerLimits,
) -> Vec<Pending> {
    let mut bytes = batch_bytes(&first.batch);
    let mut pending = vec![first];
    while pending.len() < limits.max_batches_per_entry && bytes < limits.max_entry_bytes {
        match rx.try_recv() {
            Ok(next) => {
                bytes += batch_bytes(&next.batch);
                pending.push(next);
            }
            Err(_) => break,
        }
    }
    pending
}

/// Sends each caller its batch's outcome (or the entry's failure).
fn deliver(result: Committed, replies: Vec<Reply>) {
    match result {
        Ok(outcomes) => {
            let mut outcomes = outcomes.into_iter();
            for reply in replies {
                let outcome = outcomes.next().ok_or_else(|| {
                    KvError::Unavailable("the state machine returned too few outcomes".into())
                });
                let _ = reply.send(outcome);
            }
        }
        Err(error) => {
            for reply in replies {
                let _ = reply.send(Err(error.clone()));
            }
        }
    }
}

/// The real log: one shard's Raft group.
#[derive(Clone)]
pub struct RaftLog {
    raft: Raft,
    shard: Arc<ShardSpec>,
}

impl RaftLog {
    /// The log of `shard`'s group.
    pub fn new(raft: Raft, shard: ShardSpec) -> Self {
        Self {
            raft,
            shard: Arc::new(shard),
        }
    }
}

impl ProposeLog for RaftLog {
    fn propose(
        &self,
        proposal: Proposal,
    ) -> BoxFuture<'_, Result<BoxFuture<'static, Committed>, KvError>> {
        Box::pin(async move {
            let receiver = self.raft.client_write_ff(proposal).await.map_err(|fatal| {
                KvError::Unavailable(format!("shard {} Raft stopped: {fatal}", self.shard.id))
            })?;
            let shard = self.shard.clone();
            let committed: BoxFuture<'static, Committed> = Box::pin(async move {
                match receiver.await {
                    Ok(Ok(response)) => Ok(response.data.outcomes),
                    Ok(Err(ClientWriteError::ForwardToLeader(f))) => {
                        Err(forward_to_leader(&shard, &f))
                    }
                    Ok(Err(other)) => {
                        Err(KvError::Unavailable(format!("shard {}: {other}", shard.id)))
                    }
                    Err(_) => Err(KvError::Unavailable(format!(
                        "shard {} lost the write while shutting down; it may or may not have been applied",
                        shard.id
                    ))),
                }
            });
            Ok(committed)
        })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    /// A log that records each proposed entry and lets the test commit it.
    #[derive(Default)]
    struct FakeLog {
        entries: Mutex<Vec<(Vec<String>, oneshot::Sender<Committed>)>>,
        stopped: bool,
    }

    impl ProposeLog for Arc<FakeLog> {
        fn propose(
            &self,
            proposal: Proposal,
        ) -> BoxFuture<'_, Result<BoxFuture<'static, Committed>, KvError>> {
            Box::pin(async move {
                if self.stopped {
                    return Err(KvError::Unavailable("stopped".into()));
                }
                let (tx, rx) = oneshot::channel();
                let names = proposal.writes.into_iter().map(|w| w.partition).collect();
                self.entries.lock().unwrap().push((names, tx));
                let committed: BoxFuture<'static, Committed> = Box::pin(async move {
                    rx.await
                        .unwrap_or_else(|_| Err(KvError::Unavailable("dropped".into())))
                });
                Ok(committed)
            })
        }
    }

    impl FakeLog {
        /// The partitions of each entry proposed so far.
        fn entries(&self) -> Vec<Vec<String>> {
            self.entries
                .lock()
                .unwrap()
                .iter()
                .map(|(n, _)| n.clone())
                .collect()
        }

        /// Commits entry `i`: batch j gets revision j + 1.
        fn commit(&self, i: usize) {
            let mut entries = self.entries.lock().unwrap();
            let (names, _) = &entries[i];
            let outcomes = (0..names.len() as u64)
                .map(|j| WriteOutcome::Applied { revision: j + 1 })
                .collect();
            let (_, tx) = std::mem::replace(&mut entries[i], (vec![], oneshot::channel().0));
            let _ = tx.send(Ok(outcomes));
        }

        /// Fails entry `i` with `error`.
        fn fail(&self, i: usize, error: KvError) {
            let mut entries = self.entries.lock().unwrap();
            let (_, tx) = std::mem::replace(&mut entries[i], (vec![], oneshot::channel().0));
            let _ = tx.send(Err(error));
        }
    }

    fn limits(max_in_flight: usize, queue_depth: usize) -> ProposerLimits {
        ProposerLimits {
            queue_depth,
            max_batches_per_entry: 3,
            max_entry_bytes: 1 << 20,
            max_in_flight,
        }
    }

    fn batch(partition: &str) -> WriteBatch {
        WriteBatch {
            partition: partition.into(),
            conditions: vec![],
            mutations: vec![],
        }
    }

    /// Proposes `batch(name)` in a task; returns its answer's handle.
    fn propose(
        proposer: &Proposer,
        name: &str,
    ) -> tokio::task::JoinHandle<Result<WriteOutcome, KvError>> {
        let proposer = proposer.clone();
        let b = batch(name);
        tokio::spawn(async move { proposer.propose(b).await })
    }

    /// Lets the spawned tasks run until nothing more can happen.
    async fn settle() {
        for _ in 0..20 {
            tokio::task::yield_now().await;
        }
    }

    #[tokio::test(start_paused = true)]
    async fn writes_that_wait_for_a_slot_share_the_next_entry() {
        let log = Arc::new(FakeLog::default());
        let proposer = Proposer::spawn_on(log.clone(), 0, limits(1, 16));
        let first = propose(&proposer, "a");
        settle().await;
        assert_eq!(log.entries(), [vec!["a"]], "the first write goes alone");
        let waiting: Vec<_> = ["b", "c", "d", "e"]
            .iter()
            .map(|n| propose(&proposer, n))
            .collect();
        settle().await;
        assert_eq!(
            log.entries().len(),
            1,
            "nothing is proposed while the slot is busy"
        );
        log.commit(0);
        settle().await;
        assert_eq!(
            first.await.unwrap(),
            Ok(WriteOutcome::Applied { revision: 1 })
        );
        let entries = log.entries();
        assert_eq!(
            entries[1],
            ["b", "c", "d"],
            "the waiting writes, up to 3 per entry"
        );
        log.commit(1);
        settle().await;
        assert_eq!(log.entries()[2], ["e"], "the rest goes next");
        log.commit(2);
        let answers: Vec<_> = futures::future::join_all(waiting).await;
        let revisions: Vec<_> = answers
            .into_iter()
            .map(|a| match a.unwrap() {
                Ok(WriteOutcome::Applied { revision }) => revision,
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(
            revisions,
            [1, 2, 3, 1],
            "each caller gets its own batch's outcome"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_full_queue_refuses_at_once() {
        let log = Arc::new(FakeLog::default());
        let proposer = Proposer::spawn_on(log.clone(), 7, limits(1, 2));
        let _busy = propose(&proposer, "a");
        settle().await;
        let _queued: Vec<_> = ["b", "c"].iter().map(|n| propose(&proposer, n)).collect();
        settle().await;
        let refused = proposer.propose(batch("d")).await;
        assert!(
            matches!(&refused, Err(KvError::Overloaded(m)) if m.contains("shard 7")),
            "{refused:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_entry_fails_every_write_in_it() {
        let log = Arc::new(FakeLog::default());
        let proposer = Proposer::spawn_on(log.clone(), 0, limits(1, 16));
        let first = propose(&proposer, "a");
        settle().await;
        let waiting: Vec<_> = ["b", "c"].iter().map(|n| propose(&proposer, n)).collect();
        settle().await;
        log.commit(0);
        settle().await;
        log.fail(1, KvError::Unavailable("lost leadership".into()));
        assert!(first.await.unwrap().is_ok());
        for answer in futures::future::join_all(waiting).await {
            assert_eq!(
                answer.unwrap(),
                Err(KvError::Unavailable("lost leadership".into()))
            );
        }
    }

    #[tokio::test(start_paused = true)]
    async fn entries_are_replicated_in_parallel_up_to_the_limit() {
        let log = Arc::new(FakeLog::default());
        let proposer = Proposer::spawn_on(log.clone(), 0, limits(2, 16));
        let _a = propose(&proposer, "a");
        settle().await;
        let _b = propose(&proposer, "b");
        settle().await;
        let _c = propose(&proposer, "c");
        settle().await;
        assert_eq!(
            log.entries(),
            [vec!["a"], vec!["b"]],
            "two in flight, the third waits"
        );
        log.commit(0);
        settle().await;
        assert_eq!(log.entries()[2], ["c"]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_stopped_log_answers_unavailable() {
        let log = Arc::new(FakeLog {
            stopped: true,
            ..FakeLog::default()
        });
        let proposer = Proposer::spawn_on(log, 0, limits(1, 16));
        let answer = proposer.propose(batch("a")).await;
        assert_eq!(answer, Err(KvError::Unavailable("stopped".into())));
    }
}
