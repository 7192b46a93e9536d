//! Linearizable reads, coalesced.
//!
//! A read may be answered from the local state machine only after the
//! leader has confirmed, with a heartbeat round to a quorum, that it is
//! still the leader, and has applied everything committed before the read
//! arrived (the read-index protocol; openraft's `ensure_linearizable`).
//! That round costs a network round trip, so reads that queue up while one
//! round is running share the next one. A read never shares a round that
//! started before it arrived: that round's read index might predate a
//! write the reader already saw acknowledged.
//!
//! The coalescing talks to Raft through one port, [`ConfirmLeadership`],
//! so it is unit-tested against a fake; [`RaftLeadership`] is the real
//! adapter.

use futures::future::BoxFuture;
use openraft::error::{CheckIsLeaderError, RaftError};
use storage_api::shard_map::ShardSpec;
use tokio::sync::{mpsc, oneshot};

use crate::error::{KvError, forward_to_leader};
use crate::raft::Raft;

/// The port to Raft: one read-index round.
pub trait ConfirmLeadership: Send + Sync + 'static {
    /// Resolves once this replica is confirmed leader by a quorum and has
    /// applied everything committed when the round started.
    fn confirm(&self) -> BoxFuture<'_, Result<(), KvError>>;
}

type Waiter = oneshot::Sender<Result<(), KvError>>;

/// The handle reads wait on.
#[derive(Debug, Clone)]
pub struct ReadBarrier {
    queue: mpsc::UnboundedSender<Waiter>,
    shard_id: u32,
}

impl ReadBarrier {
    /// Starts the barrier task of one shard over its Raft group.
    pub fn spawn(raft: Raft, shard: ShardSpec) -> Self {
        let shard_id = shard.id;
        Self::spawn_on(RaftLeadership::new(raft, shard), shard_id)
    }

    /// Starts the barrier task over any leadership check.
    pub fn spawn_on(leadership: impl ConfirmLeadership, shard_id: u32) -> Self {
        let (queue, rx) = mpsc::unbounded_channel();
        tokio::spawn(run(leadership, rx));
        Self { queue, shard_id }
    }

    /// Resolves when this replica may serve a linearizable read.
    pub async fn wait(&self) -> Result<(), KvError> {
        let stopped =
            || KvError::Unavailable(format!("shard {} replica is shutting down", self.shard_id));
        let (tx, rx) = oneshot::channel();
        self.queue.send(tx).map_err(|_| stopped())?;
        rx.await.map_err(|_| stopped())?
    }
}

async fn run(leadership: impl ConfirmLeadership, mut rx: mpsc::UnboundedReceiver<Waiter>) {
    while let Some(first) = rx.recv().await {
        // Everyone who arrived before this round starts shares it.
        let mut waiters = vec![first];
        while let Ok(next) = rx.try_recv() {
            waiters.push(next);
        }
        let result = leadership.confirm().await;
        for waiter in waiters {
            let _ = waiter.send(result.clone());
        }
    }
}

/// The real check: `ensure_linearizable` on one shard's Raft group.
#[derive(Clone)]
pub struct RaftLeadership {
    raft: Raft,
    shard: ShardSpec,
}

impl RaftLeadership {
    /// The check of `shard`'s group.
    pub fn new(raft: Raft, shard: ShardSpec) -> Self {
        Self { raft, shard }
    }
}

impl ConfirmLeadership for RaftLeadership {
    fn confirm(&self) -> BoxFuture<'_, Result<(), KvError>> {
        Box::pin(async move {
            let shard = &self.shard;
            self.raft
                .ensure_linearizable()
                .await
                .map(|_| ())
                .map_err(|e| match e {
                    RaftError::APIError(CheckIsLeaderError::ForwardToLeader(f)) => {
                        forward_to_leader(shard, &f)
                    }
                    RaftError::APIError(CheckIsLeaderError::QuorumNotEnough(q)) => {
                        KvError::Unavailable(format!(
                            "shard {} cannot reach a quorum to confirm its leadership: {q}",
                            shard.id
                        ))
                    }
                    RaftError::Fatal(f) => {
                        KvError::Unavailable(format!("shard {} Raft stopped: {f}", shard.id))
                    }
                })
        })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    /// A leadership check whose rounds the test finishes by hand.
    #[derive(Default)]
    struct FakeLeadership {
        rounds: Mutex<Vec<oneshot::Sender<Result<(), KvError>>>>,
    }

    impl ConfirmLeadership for Arc<FakeLeadership> {
        fn confirm(&self) -> BoxFuture<'_, Result<(), KvError>> {
            let (tx, rx) = oneshot::channel();
            self.rounds.lock().unwrap().push(tx);
            Box::pin(async move {
                rx.await
                    .unwrap_or(Err(KvError::Unavailable("dropped".into())))
            })
        }
    }

    impl FakeLeadership {
        fn started(&self) -> usize {
            self.rounds.lock().unwrap().len()
        }

        fn finish(&self, round: usize, result: Result<(), KvError>) {
            let mut rounds = self.rounds.lock().unwrap();
            let (tx, _) = oneshot::channel();
            let _ = std::mem::replace(&mut rounds[round], tx).send(result);
        }
    }

    fn read(barrier: &ReadBarrier) -> tokio::task::JoinHandle<Result<(), KvError>> {
        let barrier = barrier.clone();
        tokio::spawn(async move { barrier.wait().await })
    }

    async fn settle() {
        for _ in 0..20 {
            tokio::task::yield_now().await;
        }
    }

    #[tokio::test(start_paused = true)]
    async fn reads_that_arrive_during_a_round_share_the_next_one() {
        let fake = Arc::new(FakeLeadership::default());
        let barrier = ReadBarrier::spawn_on(fake.clone(), 0);
        let first = read(&barrier);
        settle().await;
        assert_eq!(fake.started(), 1);
        let later: Vec<_> = (0..5).map(|_| read(&barrier)).collect();
        settle().await;
        assert_eq!(fake.started(), 1, "no second round while one is running");
        assert!(!first.is_finished());
        fake.finish(0, Ok(()));
        settle().await;
        assert_eq!(first.await.unwrap(), Ok(()));
        assert_eq!(
            fake.started(),
            2,
            "the five waiting reads start one round together"
        );
        assert!(
            later.iter().all(|r| !r.is_finished()),
            "a read never shares a round that started before it arrived"
        );
        fake.finish(1, Ok(()));
        for r in later {
            assert_eq!(r.await.unwrap(), Ok(()));
        }
        assert_eq!(fake.started(), 2, "six reads, two rounds");
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_round_fails_every_read_in_it() {
        let fake = Arc::new(FakeLeadership::default());
        let barrier = ReadBarrier::spawn_on(fake.clone(), 0);
        let first = read(&barrier);
        settle().await;
        let waiting: Vec<_> = (0..3).map(|_| read(&barrier)).collect();
        settle().await;
        fake.finish(0, Ok(()));
        settle().await;
        let lost = KvError::Unavailable("no quorum".into());
        fake.finish(1, Err(lost.clone()));
        assert_eq!(first.await.unwrap(), Ok(()));
        for r in waiting {
            assert_eq!(r.await.unwrap(), Err(lost.clone()));
        }
        // The next read starts a fresh round.
        let next = read(&barrier);
        settle().await;
        fake.finish(2, Ok(()));
        assert_eq!(next.await.unwrap(), Ok(()));
    }
}
