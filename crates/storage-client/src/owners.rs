//! Which shard owns each slot, as one client knows it: the static shard
//! map's owners at first, then what redirects said (a shard that gave a
//! slot away names its new owner in its WRONG_SHARD answer).

use storage_api::shard_map::{ShardId, ShardMap};

/// Which shard owns each slot, as this client last learned: the static
/// map's owners at first, then what redirects said. An owner is replaced
/// only by one of a newer map version, so the client never goes back.
#[derive(Debug)]
pub struct SlotOwners {
    owners: std::sync::RwLock<Vec<(ShardId, u64)>>,
}

impl SlotOwners {
    /// The owners the static map gives, at its version.
    pub fn from_map(map: &ShardMap) -> Self {
        let owners = (0..map.slots)
            .map(|slot| {
                let owner = map.shards.iter().find(|s| s.owns(slot)).map_or(0, |s| s.id);
                (owner, map.version)
            })
            .collect();
        Self {
            owners: std::sync::RwLock::new(owners),
        }
    }

    /// The shard that owns `slot`, as far as this client knows.
    pub fn owner(&self, slot: u32) -> ShardId {
        let owners = self.owners.read().unwrap_or_else(|e| e.into_inner());
        owners.get(slot as usize).map_or(0, |(owner, _)| *owner)
    }

    /// Records that `slot` is on `owner` since `version`; false if this
    /// client already knew as much or newer.
    pub fn learn(&self, slot: u32, owner: ShardId, version: u64) -> bool {
        let mut owners = self.owners.write().unwrap_or_else(|e| e.into_inner());
        match owners.get_mut(slot as usize) {
            Some(known) if known.1 < version => {
                *known = (owner, version);
                true
            }
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_owner_is_replaced_only_by_a_newer_one() {
        let map = ShardMap::uniform(2, 1, |s, _| format!("127.0.0.1:{}", 50071 + s));
        let owners = SlotOwners::from_map(&map);
        assert_eq!(owners.owner(0), 0);
        assert!(owners.learn(0, 1, 5), "a newer map version is learned");
        assert_eq!(owners.owner(0), 1);
        assert!(!owners.learn(0, 0, 3), "an older one is not");
        assert!(!owners.learn(0, 1, 5), "nor the same again");
        assert_eq!(owners.owner(0), 1);
        assert!(
            !owners.learn(5000, 1, 9),
            "a slot outside the map is ignored"
        );
    }
}
