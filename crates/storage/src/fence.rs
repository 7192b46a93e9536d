//! Fencing: a node serves a request only if it was routed to its shard and
//! the partition's slot is owned here *now*, as the shard's own Raft log
//! says (`raft::slots`). A slot that is not owned gets WRONG_SHARD (with the
//! newest map version this shard knows, so the sender can tell its map is
//! stale); a slot in a move gets SLOT_MOVING (retry shortly). Either way
//! nothing changes, so a stale or buggy router can never read or write in
//! the wrong place. The route's map version is not compared: a router on
//! an older or newer map that still sends a partition to its owner is
//! served (after a move, the shards it did not touch are unchanged).

use storage_api::shard_map::{ShardMap, ShardSpec};
use storage_api::v1::Route;

use crate::error::KvError;
use crate::raft::slots::{Access, SlotCell, SlotTable, show_ranges};

/// This node's place in the shard map, and the slots its shard owns.
#[derive(Debug, Clone)]
pub struct Fence {
    pub shard: ShardSpec,
    pub slots: SlotCell,
}

impl Fence {
    /// The fence of shard `shard` of `map`, owning the map's range for it
    /// until the shard's log says otherwise.
    pub fn new(map: &ShardMap, shard: &ShardSpec) -> Self {
        let initial =
            SlotTable::owning_range(map.version, map.slots, shard.slot_start, shard.slot_end);
        Self {
            shard: shard.clone(),
            slots: SlotCell::new(initial),
        }
    }

    /// The newest shard-map version this shard has taken part in.
    pub fn map_version(&self) -> u64 {
        self.slots.current().map_version
    }

    fn refuse(&self, message: String) -> KvError {
        KvError::WrongShard {
            message,
            shard_id: self.shard.id,
            map_version: self.map_version(),
            owner: None,
        }
    }

    /// Checks that this shard owns a partition's slot and is not moving it.
    pub fn check_partition(&self, partition: &str) -> Result<(), KvError> {
        let table = self.slots.current();
        match table.access(partition) {
            Access::Serve => Ok(()),
            Access::NotOwned { slot, moved_to } => Err(KvError::WrongShard {
                message: match moved_to {
                    Some((owner, version)) => format!(
                        "partition {partition:?} is in slot {slot}, which moved to shard {owner} at map version {version}"
                    ),
                    None => format!(
                        "partition {partition:?} is in slot {slot}, which shard {} (slots {}) does not own",
                        self.shard.id,
                        show_ranges(&table.owned_ranges())
                    ),
                },
                shard_id: self.shard.id,
                map_version: moved_to.map_or(table.map_version, |(_, v)| v),
                owner: moved_to.map(|(owner, _)| (slot, owner)),
            }),
            Access::Moving { slot, move_id } => Err(KvError::SlotMoving {
                message: format!(
                    "partition {partition:?} is in slot {slot}, which move {move_id} is moving to or from shard {}: retry shortly",
                    self.shard.id
                ),
                shard_id: self.shard.id,
                map_version: table.map_version,
            }),
        }
    }

    /// Checks the route, and the partition's slot when there is one.
    pub fn check(&self, route: Option<&Route>, partition: Option<&str>) -> Result<(), KvError> {
        let route = route.ok_or_else(|| {
            KvError::InvalidArgument(
                "route is required: set route.shard_id and route.map_version".into(),
            )
        })?;
        if route.shard_id != self.shard.id {
            return Err(self.refuse(format!(
                "routed to shard {} but this node serves shard {}",
                route.shard_id, self.shard.id
            )));
        }
        if let Some(partition) = partition {
            self.check_partition(partition)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fence(shard: u32) -> Fence {
        let map = ShardMap::uniform(2, 1, |s, _| format!("127.0.0.1:{}", 50071 + s));
        Fence::new(&map, &map.shards[shard as usize])
    }

    fn owned_by(fence: &Fence, owner: bool) -> String {
        (0..)
            .map(|i| format!("acme/{i}"))
            .find(|p| {
                let owned = fence.slots.current().access(p) == Access::Serve;
                owned == owner
            })
            .unwrap_or_default()
    }

    #[test]
    fn accepts_only_this_shard_and_owned_partitions() {
        let f = fence(1);
        let route = Route {
            shard_id: 1,
            map_version: 1,
        };
        assert!(f.check(Some(&route), Some(&owned_by(&f, true))).is_ok());
        assert!(matches!(
            f.check(Some(&route), Some(&owned_by(&f, false))),
            Err(KvError::WrongShard { .. })
        ));
        let older_map = Route {
            shard_id: 1,
            map_version: 0,
        };
        assert!(
            f.check(Some(&older_map), Some(&owned_by(&f, true))).is_ok(),
            "a partition sent to its owner is served whatever the map version"
        );
        let other = Route {
            shard_id: 0,
            map_version: 1,
        };
        assert!(matches!(
            f.check(Some(&other), None),
            Err(KvError::WrongShard { .. })
        ));
        assert!(matches!(
            f.check(None, None),
            Err(KvError::InvalidArgument(_))
        ));
    }
}

#[cfg(test)]
mod moving_tests {
    use super::*;
    use crate::raft::slots::SlotCommand;

    #[test]
    fn a_frozen_slot_is_refused_as_moving_and_a_released_one_as_wrong_shard() {
        let map = ShardMap::uniform(1, 1, |_, _| "127.0.0.1:50071".into());
        let f = Fence::new(&map, &map.shards[0]);
        let partition = "acme/alice";
        let slot = f.slots.current().slot(partition);
        let mut table = (*f.slots.current()).clone();
        table
            .apply(&SlotCommand::Freeze {
                move_id: 5,
                slots: vec![slot],
            })
            .expect("freeze");
        f.slots.set(table.clone());
        let err = f.check_partition(partition).expect_err("moving");
        assert!(matches!(err, KvError::SlotMoving { .. }), "{err:?}");
        table
            .apply(&SlotCommand::Release {
                move_id: 5,
                map_version: 2,
                to_shard: 3,
            })
            .expect("release");
        f.slots.set(table);
        match f.check_partition(partition) {
            Err(KvError::WrongShard { map_version, .. }) => assert_eq!(map_version, 2),
            other => panic!("expected WRONG_SHARD, got {other:?}"),
        }
    }
}
