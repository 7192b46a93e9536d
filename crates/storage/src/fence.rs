//! Fencing: a node serves only requests routed with its own shard-map
//! version, to its own shard, for partitions whose slot it owns. Anything
//! else is WRONG_SHARD and changes nothing, so a stale or buggy router can
//! never read or write in the wrong place.

use storage_api::shard_map::{ShardMap, ShardSpec};
use storage_api::v1::Route;

use crate::error::KvError;

/// This node's place in the shard map.
#[derive(Debug, Clone)]
pub struct Fence {
    pub map_version: u64,
    pub slots: u32,
    pub shard: ShardSpec,
}

impl Fence {
    /// The fence of shard `shard` of `map`.
    pub fn new(map: &ShardMap, shard: &ShardSpec) -> Self {
        Self {
            map_version: map.version,
            slots: map.slots,
            shard: shard.clone(),
        }
    }

    fn refuse(&self, message: String) -> KvError {
        KvError::WrongShard {
            message,
            shard_id: self.shard.id,
            map_version: self.map_version,
        }
    }

    /// Checks that this shard owns a partition's slot.
    pub fn check_partition(&self, partition: &str) -> Result<(), KvError> {
        let slot = storage_api::shard_map::slot_of(partition, self.slots);
        if self.shard.owns(slot) {
            return Ok(());
        }
        Err(self.refuse(format!(
            "partition {partition:?} is in slot {slot}, which shard {} (slots {}..{}) does not own",
            self.shard.id, self.shard.slot_start, self.shard.slot_end
        )))
    }

    /// Checks the route, and the partition's slot when there is one.
    pub fn check(&self, route: Option<&Route>, partition: Option<&str>) -> Result<(), KvError> {
        let route = route.ok_or_else(|| {
            KvError::InvalidArgument(
                "route is required: set route.shard_id and route.map_version".into(),
            )
        })?;
        if route.map_version != self.map_version {
            return Err(self.refuse(format!(
                "routed with shard map version {} but this node runs version {}",
                route.map_version, self.map_version
            )));
        }
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
                fence
                    .shard
                    .owns(storage_api::shard_map::slot_of(p, fence.slots))
                    == owner
            })
            .unwrap_or_default()
    }

    #[test]
    fn accepts_only_matching_routes_and_owned_partitions() {
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
        let stale = Route {
            shard_id: 1,
            map_version: 0,
        };
        assert!(matches!(
            f.check(Some(&stale), None),
            Err(KvError::WrongShard { .. })
        ));
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
