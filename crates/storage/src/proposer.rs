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

use std::sync::Arc;

use openraft::error::ClientWriteError;
use storage_client::shard_map::ShardSpec;
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
    /// Starts the proposer task of one shard.
    pub fn spawn(raft: Raft, shard: ShardSpec, limits: ProposerLimits) -> Self {
        let (queue, rx) = mpsc::channel(limits.queue_depth.max(1));
        let shard_id = shard.id;
        tokio::spawn(run(raft, Arc::new(shard), limits, rx));
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

async fn run(
    raft: Raft,
    shard: Arc<ShardSpec>,
    limits: ProposerLimits,
    mut rx: mpsc::Receiver<Pending>,
) {
    let slots = Arc::new(Semaphore::new(limits.max_in_flight.max(1)));
    loop {
        // Wait for a free slot first: whatever queues meanwhile joins this entry.
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
        let Some(first) = rx.recv().await else {
            return;
        };
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
        let (writes, replies): (Vec<_>, Vec<_>) =
            pending.into_iter().map(|p| (p.batch, p.reply)).unzip();
        match raft.client_write_ff(Proposal { writes }).await {
            Ok(committed) => {
                let shard = shard.clone();
                tokio::spawn(async move {
                    let result = committed.await;
                    drop(slot);
                    deliver(&shard, result, replies);
                });
            }
            Err(fatal) => {
                let message = format!("shard {} Raft stopped: {fatal}", shard.id);
                for reply in replies {
                    let _ = reply.send(Err(KvError::Unavailable(message.clone())));
                }
            }
        }
    }
}

type Committed = Result<
    Result<
        openraft::raft::ClientWriteResponse<crate::raft::TypeConfig>,
        ClientWriteError<u64, crate::raft::Node>,
    >,
    oneshot::error::RecvError,
>;

fn deliver(shard: &ShardSpec, result: Committed, replies: Vec<Reply>) {
    match result {
        Ok(Ok(response)) => {
            let mut outcomes = response.data.outcomes.into_iter();
            for reply in replies {
                let outcome = outcomes.next().ok_or_else(|| {
                    KvError::Unavailable("the state machine returned too few outcomes".into())
                });
                let _ = reply.send(outcome);
            }
        }
        Ok(Err(error)) => {
            let error = match &error {
                ClientWriteError::ForwardToLeader(f) => forward_to_leader(shard, f),
                other => KvError::Unavailable(format!("shard {}: {other}", shard.id)),
            };
            for reply in replies {
                let _ = reply.send(Err(error.clone()));
            }
        }
        Err(_) => {
            for reply in replies {
                let _ = reply.send(Err(KvError::Unavailable(format!(
                    "shard {} lost the write while shutting down; it may or may not have been applied",
                    shard.id
                ))));
            }
        }
    }
}
