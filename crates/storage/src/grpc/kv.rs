//! The `anatomy.storage.v1.Kv` gRPC service: fencing, validation and
//! conversion at the edge; the node does the work.

use std::future::Future;
use std::time::Duration;

use storage_api::v1 as pb;
use storage_api::v1::kv_server::Kv;
use tonic::{Request, Response, Status};

use crate::directory::listed_shards;
use crate::engine::keys::{check_name, item_key, split_key};
use crate::engine::scan::{self, ScanQuery, ScanScope};
use crate::engine::{KeyValue, ScanLimit, item_bytes};
use crate::error::KvError;
use crate::grpc::peers::Peers;
use crate::node::StorageNode;
use crate::raft::slots::{Access, MoveId};
use crate::raft::{Condition, Mutation, WriteBatch, WriteOutcome};

/// Most items one scan returns.
pub const MAX_SCAN_LIMIT: u32 = 1000;
/// Items one scan returns when the caller does not say.
pub const DEFAULT_SCAN_LIMIT: u32 = 100;
/// Bytes of keys and values one scan returns, about: the item that crosses
/// it is still returned (items are at most --max-request-bytes, 1 MiB by
/// default), so an answer stays under a client's default 4 MiB message
/// limit; the rest comes on the next page (`more`).
pub const MAX_SCAN_BYTES: usize = 2 << 20;
/// Most conditions plus mutations in one write batch.
pub const MAX_BATCH_OPS: usize = 1000;
/// Most items one read asks for.
pub const MAX_READ_KEYS: usize = 1000;

/// The Kv service of one replica.
#[derive(Debug, Clone)]
pub struct KvService {
    node: StorageNode,
    default_timeout: Duration,
    /// To shard 0, for the shard list.
    peers: Peers,
}

impl KvService {
    /// Serves `node`; `default_timeout` applies when a caller sends no deadline.
    pub fn new(node: StorageNode, default_timeout: Duration) -> Self {
        Self {
            peers: Peers::new(node.transport.clone(), Duration::from_secs(1)),
            node,
            default_timeout,
        }
    }

    /// Runs `work` within the caller's deadline; past it, UNAVAILABLE (the
    /// shard could not answer in time), not a hang.
    async fn within<T>(
        &self,
        metadata: &tonic::metadata::MetadataMap,
        what: &str,
        work: impl Future<Output = Result<T, KvError>>,
    ) -> Result<Response<T>, Status> {
        let budget = anatomy_runtime::grpc_timeout::budget(metadata, self.default_timeout);
        let span = tracing::Span::current();
        span.record("shard", self.node.shard().id);
        span.record("raft.term", self.node.raft.metrics().borrow().current_term);
        match tokio::time::timeout(budget, work).await {
            Ok(result) => Ok(Response::new(result?)),
            Err(_) => Err(KvError::Unavailable(format!(
                "shard {} could not {what} within {budget:?}: is a majority of its replicas up?",
                self.node.shard().id
            ))
            .into()),
        }
    }

    async fn read(&self, req: pb::ReadRequest) -> Result<pb::ReadResponse, KvError> {
        // Leadership before the fence (here, in scan and in write): only the
        // leader serves, and a follower's slot table lags the leader's (it
        // applies an entry only once it hears it is committed), so a
        // follower's WRONG_SHARD could name an older owner than the caller
        // already knows. A follower sends the caller to its leader instead.
        self.node.believes_leader()?;
        self.node
            .fence
            .check(req.route.as_ref(), Some(&req.partition))?;
        check_name("partition", &req.partition)?;
        if req.keys.len() > MAX_READ_KEYS {
            return Err(KvError::InvalidArgument(format!(
                "a read asks for at most {MAX_READ_KEYS} keys, this one for {}: split it",
                req.keys.len()
            )));
        }
        for k in &req.keys {
            check_name("table", &k.table)?;
        }
        // A local read skips the read-index round; its caller checks what
        // it read with a conditional write (see ReadConsistency).
        match req.consistency() {
            pb::ReadConsistency::Local => {} // leadership checked above
            pb::ReadConsistency::Linearizable => self.node.reads.wait().await?,
        }
        let view = self.node.engine_view()?;
        // Again, now that the view is taken: a move applied since the first
        // check published its slot table before its data (apply.rs), so a
        // view that lacks a released slot's items is caught here.
        self.node.fence.check_partition(&req.partition)?;
        let items = req
            .keys
            .into_iter()
            .map(|k| {
                let stored = view.get(&item_key(&k.table, &req.partition, &k.key))?;
                Ok(pb::Item {
                    partition: req.partition.clone(),
                    table: k.table,
                    key: k.key,
                    version: stored.as_ref().map_or(0, |s| s.version),
                    value: stored.map(|s| s.value).unwrap_or_default().into(),
                })
            })
            .collect::<Result<_, KvError>>()?;
        Ok(pb::ReadResponse { items })
    }

    async fn scan(&self, req: pb::ScanRequest) -> Result<pb::ScanResponse, KvError> {
        let (range, keep) = scan::plan(&scan_query(&req)?)?;
        let partition = match &req.scope {
            Some(pb::scan_request::Scope::Partition(p)) => Some(p.as_str()),
            _ => None,
        };
        self.node.believes_leader()?;
        self.node.fence.check(req.route.as_ref(), partition)?;
        let limit = match req.limit {
            0 => DEFAULT_SCAN_LIMIT,
            n => n.min(MAX_SCAN_LIMIT),
        } as usize;
        self.node.reads.wait().await?;
        let view = self.node.engine_view()?;
        if let Some(partition) = partition {
            self.node.fence.check_partition(partition)?;
        }
        let bound = ScanLimit {
            items: limit + 1,
            bytes: MAX_SCAN_BYTES,
        };
        // Across partitions, only those in slots owned here now: not the
        // items of a slot being copied in, nor of one frozen for a move
        // (its new owner lists them once it takes over).
        let table = self.node.fence.slots.current();
        let owned =
            |flat: &[u8]| split_key(flat).is_some_and(|(_, p, _)| table.access(p) == Access::Serve);
        let keep_owned = |flat: &[u8]| keep(flat) && (partition.is_some() || owned(flat));
        let mut found = view.scan(&range, bound, &keep_owned)?;
        let full = found.iter().map(item_bytes).sum::<usize>() >= MAX_SCAN_BYTES;
        let more = found.len() > limit || full;
        found.truncate(limit);
        let items = found.into_iter().filter_map(to_item).collect();
        Ok(pb::ScanResponse { items, more })
    }

    async fn write(&self, req: pb::WriteRequest) -> Result<pb::WriteResponse, KvError> {
        self.node.believes_leader()?;
        self.node
            .fence
            .check(req.route.as_ref(), Some(&req.partition))?;
        let batch = to_batch(req)?;
        // Every other partition the batch names must be this shard's too.
        for partition in batch.other_partitions() {
            self.node.fence.check_partition(partition)?;
        }
        Ok(match self.node.proposer.propose(batch).await? {
            WriteOutcome::Applied { revision } => pb::WriteResponse {
                applied: true,
                revision,
                failures: vec![],
            },
            WriteOutcome::Rejected { failures } => pb::WriteResponse {
                applied: false,
                revision: 0,
                failures: failures
                    .into_iter()
                    .map(|f| pb::ConditionFailure {
                        partition: f.partition,
                        table: f.table,
                        key: f.key.into(),
                        expected_version: f.expected_version,
                        actual_version: f.actual_version,
                    })
                    .collect(),
            },
            WriteOutcome::Refused {
                partition,
                slot,
                moving,
                map_version,
            } => return Err(self.refused(&partition, slot, moving, map_version)),
        })
    }

    /// The error of a write its shard refused when applying it: what the
    /// fence says now (with the slot's new owner, if it moved), or
    /// SLOT_MOVING if the slot has come back since.
    fn refused(
        &self,
        partition: &str,
        slot: u32,
        moving: Option<MoveId>,
        map_version: u64,
    ) -> KvError {
        match self.node.fence.check_partition(partition) {
            Err(now) => now,
            Ok(()) => KvError::SlotMoving {
                message: format!(
                    "partition {partition:?} is in slot {slot}, which a move ({moving:?}) held while the write was on its way: retry"
                ),
                shard_id: self.node.shard().id,
                map_version,
            },
        }
    }
}

/// The node's view of a scan request.
fn scan_query(req: &pb::ScanRequest) -> Result<ScanQuery<'_>, KvError> {
    let scope = match &req.scope {
        Some(pb::scan_request::Scope::Partition(p)) => ScanScope::Partition(p),
        Some(pb::scan_request::Scope::PartitionPrefix(p)) => ScanScope::PartitionPrefix(p),
        None => {
            return Err(KvError::InvalidArgument(
                "scan needs a scope: set partition or partition_prefix".into(),
            ));
        }
    };
    Ok(ScanQuery {
        table: &req.table,
        scope,
        key_prefix: &req.key_prefix,
        start_after: req
            .start_after
            .as_ref()
            .map(|c| (c.partition.as_str(), c.key.as_ref())),
        reverse: req.reverse,
    })
}

fn to_item((flat, stored): KeyValue) -> Option<pb::Item> {
    let (table, partition, key) = split_key(&flat)?;
    Some(pb::Item {
        partition: partition.into(),
        table: table.into(),
        key: key.to_vec().into(),
        value: stored.value.into(),
        version: stored.version,
    })
}

/// A condition's or mutation's own partition, if it names one.
fn other_partition(partition: String) -> Result<Option<String>, KvError> {
    if partition.is_empty() {
        return Ok(None);
    }
    check_name("partition", &partition)?;
    Ok(Some(partition))
}

fn to_batch(req: pb::WriteRequest) -> Result<WriteBatch, KvError> {
    check_name("partition", &req.partition)?;
    if req.mutations.len() + req.conditions.len() > MAX_BATCH_OPS {
        return Err(KvError::InvalidArgument(format!(
            "a write batch holds at most {MAX_BATCH_OPS} conditions and mutations"
        )));
    }
    let conditions = req
        .conditions
        .into_iter()
        .map(|c| {
            check_name("condition table", &c.table)?;
            Ok(Condition {
                partition: other_partition(c.partition)?,
                table: c.table,
                key: c.key.to_vec(),
                expected_version: c.expected_version,
            })
        })
        .collect::<Result<_, KvError>>()?;
    let mutations = req
        .mutations
        .into_iter()
        .map(|m| {
            check_name("mutation table", &m.table)?;
            let value = match m.op {
                Some(pb::mutation::Op::Put(v)) => Some(v.to_vec()),
                Some(pb::mutation::Op::Delete(true)) => None,
                _ => {
                    return Err(KvError::InvalidArgument(
                        "each mutation needs an op: put (bytes) or delete (true)".into(),
                    ));
                }
            };
            Ok(Mutation {
                partition: other_partition(m.partition)?,
                table: m.table,
                key: m.key.to_vec(),
                value,
            })
        })
        .collect::<Result<_, KvError>>()?;
    Ok(WriteBatch {
        partition: req.partition,
        conditions,
        mutations,
    })
}

#[tonic::async_trait]
impl Kv for KvService {
    async fn read(
        &self,
        request: Request<pb::ReadRequest>,
    ) -> Result<Response<pb::ReadResponse>, Status> {
        let (metadata, _, req) = request.into_parts();
        self.within(&metadata, "serve a read", self.read(req)).await
    }

    async fn scan(
        &self,
        request: Request<pb::ScanRequest>,
    ) -> Result<Response<pb::ScanResponse>, Status> {
        let (metadata, _, req) = request.into_parts();
        self.within(&metadata, "serve a scan", self.scan(req)).await
    }

    async fn write(
        &self,
        request: Request<pb::WriteRequest>,
    ) -> Result<Response<pb::WriteResponse>, Status> {
        let (metadata, _, req) = request.into_parts();
        self.within(
            &metadata,
            "commit a write (it may still be applied)",
            self.write(req),
        )
        .await
    }

    async fn list_shards(
        &self,
        _: Request<pb::ListShardsRequest>,
    ) -> Result<Response<pb::ListShardsResponse>, Status> {
        Ok(Response::new(listed_shards(&self.node, &self.peers).await))
    }
}
