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

use std::sync::Arc;

use openraft::error::{CheckIsLeaderError, RaftError};
use storage_client::shard_map::ShardSpec;
use tokio::sync::{mpsc, oneshot};

use crate::error::{KvError, forward_to_leader};
use crate::raft::Raft;

type Waiter = oneshot::Sender<Result<(), KvError>>;

/// The handle reads wait on.
#[derive(Debug, Clone)]
pub struct ReadBarrier {
    queue: mpsc::UnboundedSender<Waiter>,
    shard_id: u32,
}

impl ReadBarrier {
    /// Starts the barrier task of one shard.
    pub fn spawn(raft: Raft, shard: ShardSpec) -> Self {
        let (queue, rx) = mpsc::unbounded_channel();
        let shard_id = shard.id;
        tokio::spawn(run(raft, Arc::new(shard), rx));
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

async fn run(raft: Raft, shard: Arc<ShardSpec>, mut rx: mpsc::UnboundedReceiver<Waiter>) {
    while let Some(first) = rx.recv().await {
        let mut waiters = vec![first];
        while let Ok(next) = rx.try_recv() {
            waiters.push(next);
        }
        let result = raft
            .ensure_linearizable()
            .await
            .map(|_| ())
            .map_err(|e| match e {
                RaftError::APIError(CheckIsLeaderError::ForwardToLeader(f)) => {
                    forward_to_leader(&shard, &f)
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
            });
        for waiter in waiters {
            let _ = waiter.send(result.clone());
        }
    }
}
