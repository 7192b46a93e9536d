//! A move's steps as one shard carries them out: slot commands proposed
//! through the shard's Raft log, and the export of a frozen slot's items.
//! The driver (`move_driver`) calls these on each shard's leader through
//! the Admin service.

use openraft::error::{ClientWriteError, RaftError};
use std::ops::Bound;

use crate::engine::keys::split_key;
use crate::engine::{ScanLimit, ScanRange};
use crate::error::{KvError, forward_to_leader};
use crate::node::StorageNode;
use crate::raft::Proposal;
use crate::raft::slots::{IngestItem, MoveId, SlotCommand, SlotState};

/// Items one export page holds at most.
pub const EXPORT_PAGE_ITEMS: usize = 1000;
/// Bytes of keys and values one export page holds, about (the item that
/// crosses it is still sent): one page is one Raft entry on the
/// destination, so it stays well under the network's message limit.
pub const EXPORT_PAGE_BYTES: usize = 1 << 20;

/// Commits `command` in this shard's log (this replica must lead it).
pub async fn change_slots(node: &StorageNode, command: SlotCommand) -> Result<(), KvError> {
    let shard = node.shard();
    let proposal = Proposal {
        writes: vec![],
        slot: Some(command),
    };
    let response = node
        .raft
        .client_write(proposal)
        .await
        .map_err(|e| match e {
            RaftError::APIError(ClientWriteError::ForwardToLeader(f)) => {
                forward_to_leader(shard, &f)
            }
            RaftError::APIError(other) => {
                KvError::Unavailable(format!("shard {}: {other}", shard.id))
            }
            RaftError::Fatal(f) => {
                KvError::Unavailable(format!("shard {} Raft stopped: {f}", shard.id))
            }
        })?;
    match response.data.slot {
        Some(Ok(())) => Ok(()),
        Some(Err(refused)) => Err(KvError::StepRefused(format!(
            "shard {} refused the step: {refused}",
            shard.id
        ))),
        None => Err(KvError::Unavailable(format!(
            "shard {} applied the step without an answer",
            shard.id
        ))),
    }
}

/// One page of the items of the slots `move_id` froze here, in key order,
/// strictly after `after`; and whether more follow. Read after a
/// read-index round, so the freeze (and every write before it) is applied.
pub async fn export_slots(
    node: &StorageNode,
    move_id: MoveId,
    after: &[u8],
) -> Result<(Vec<IngestItem>, bool), KvError> {
    node.reads.wait().await?;
    let view = node.engine_view()?;
    let table = node.fence.slots.current();
    if !table
        .moving()
        .iter()
        .any(|(_, st)| *st == SlotState::Frozen(move_id))
    {
        return Err(KvError::StepRefused(format!(
            "shard {} has no slot frozen for move {move_id}",
            node.shard().id
        )));
    }
    let frozen = |flat: &[u8]| {
        split_key(flat)
            .filter(|(t, _, _)| !t.is_empty())
            .is_some_and(|(_, p, _)| table.state(table.slot(p)) == SlotState::Frozen(move_id))
    };
    let range = ScanRange {
        start: if after.is_empty() {
            Bound::Unbounded
        } else {
            Bound::Excluded(after.to_vec())
        },
        end: Bound::Unbounded,
        reverse: false,
    };
    let limit = ScanLimit {
        items: EXPORT_PAGE_ITEMS + 1,
        bytes: EXPORT_PAGE_BYTES,
    };
    let mut found = view.scan(&range, limit, &frozen)?;
    let more = found.len() > EXPORT_PAGE_ITEMS
        || found.iter().map(crate::engine::item_bytes).sum::<usize>() >= EXPORT_PAGE_BYTES;
    found.truncate(EXPORT_PAGE_ITEMS);
    let items = found
        .into_iter()
        .map(|(key, stored)| IngestItem {
            key,
            version: stored.version,
            value: stored.value,
        })
        .collect();
    Ok((items, more))
}
