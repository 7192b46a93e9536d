//! The shard map: which shard owns which slots, and where its replicas are.
//!
//! A partition key (for the ledger, `tenant/account_id`) hashes into one of
//! `slots` slots with CRC-32 (the IEEE/zlib polynomial, the same checksum
//! `gzip` and `crc32` on the command line print), taken modulo `slots`.
//! The map file gives each shard a contiguous slot range: the ownership a
//! new cluster starts with. A shard may start with an empty range (added to
//! a running cluster, it owns nothing until slots move to it). From then on
//! ownership lives in each shard's own Raft log, and the list of shards in
//! shard 0's (`docs/partitioning.md`); a node refuses a request for a slot
//! it does not own (see `anatomy.storage.v1`'s WRONG_SHARD).

use std::path::Path;

use serde::{Deserialize, Serialize};

/// The number of slots when a map does not say.
pub const DEFAULT_SLOTS: u32 = 1024;

/// A replica's id inside its shard's Raft group (1-based).
pub type ReplicaId = u64;

/// A shard's id (0-based).
pub type ShardId = u32;

/// Why a shard map cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ShardMapError {
    #[error("cannot read shard map {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("shard map {path} is not valid TOML for a shard map: {source}")]
    Parse {
        path: String,
        source: Box<toml::de::Error>,
    },
    #[error("invalid shard map: {0}")]
    Invalid(String),
}

/// One replica of a shard: its Raft node id and its gRPC address.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct ReplicaSpec {
    pub id: ReplicaId,
    /// `host:port`, reachable from every node and client.
    pub addr: String,
}

/// One shard: a contiguous slot range `[slot_start, slot_end)` and its replicas.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct ShardSpec {
    pub id: ShardId,
    pub slot_start: u32,
    pub slot_end: u32,
    pub replicas: Vec<ReplicaSpec>,
}

impl ShardSpec {
    /// Whether this shard owns `slot`.
    pub fn owns(&self, slot: u32) -> bool {
        (self.slot_start..self.slot_end).contains(&slot)
    }

    /// The replica with this id.
    pub fn replica(&self, id: ReplicaId) -> Option<&ReplicaSpec> {
        self.replicas.iter().find(|r| r.id == id)
    }
}

/// The whole map, as read from its TOML file.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct ShardMap {
    pub version: u64,
    #[serde(default = "default_slots")]
    pub slots: u32,
    pub shards: Vec<ShardSpec>,
}

fn default_slots() -> u32 {
    DEFAULT_SLOTS
}

/// The slot a partition key hashes to: CRC-32 (IEEE) of its UTF-8 bytes,
/// modulo `slots`.
pub fn slot_of(partition: &str, slots: u32) -> u32 {
    crc32fast::hash(partition.as_bytes()) % slots.max(1)
}

impl ShardMap {
    /// A map of one shard with one replica owning every slot: what a single
    /// `cargo run -p storage` serves.
    pub fn single(addr: &str) -> Self {
        Self::uniform(1, 1, |_, _| addr.to_string())
    }

    /// `shards` shards of `replicas` replicas each, slots split evenly,
    /// replica addresses from `addr(shard, replica)`.
    pub fn uniform(
        shards: u32,
        replicas: u64,
        addr: impl Fn(ShardId, ReplicaId) -> String,
    ) -> Self {
        let slots = DEFAULT_SLOTS;
        let shards = shards.clamp(1, slots);
        let specs = (0..shards)
            .map(|s| ShardSpec {
                id: s,
                slot_start: s * slots / shards,
                slot_end: (s + 1) * slots / shards,
                replicas: (1..=replicas.max(1))
                    .map(|r| ReplicaSpec {
                        id: r,
                        addr: addr(s, r),
                    })
                    .collect(),
            })
            .collect();
        Self {
            version: 1,
            slots,
            shards: specs,
        }
    }

    /// Reads and validates a map file.
    pub fn load(path: &Path) -> Result<Self, ShardMapError> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| ShardMapError::Read {
            path: shown.clone(),
            source,
        })?;
        Self::parse(&text).map_err(|e| match e {
            ShardMapError::Parse { source, .. } => ShardMapError::Parse {
                path: shown,
                source,
            },
            other => other,
        })
    }

    /// Parses and validates a map from TOML text.
    pub fn parse(text: &str) -> Result<Self, ShardMapError> {
        let map: Self = toml::from_str(text).map_err(|source| ShardMapError::Parse {
            path: "<text>".into(),
            source: Box::new(source),
        })?;
        map.validate()?;
        Ok(map)
    }

    /// Checks that the shards cover every slot exactly once, in order (a
    /// shard's range may be empty), and that ids and addresses make sense.
    pub fn validate(&self) -> Result<(), ShardMapError> {
        let bad = |m: String| Err(ShardMapError::Invalid(m));
        if self.slots == 0 {
            return bad("slots must be at least 1".into());
        }
        if self.shards.is_empty() {
            return bad("the map has no shards".into());
        }
        let mut next_slot = 0;
        for (i, shard) in self.shards.iter().enumerate() {
            if shard.id as usize != i {
                return bad(format!(
                    "shard ids must be 0, 1, 2, ... in order; found {} at position {i}",
                    shard.id
                ));
            }
            if shard.slot_start != next_slot || shard.slot_end < shard.slot_start {
                return bad(format!(
                    "shard {} has slots [{}, {}) but must start at {next_slot} \
                     (slot_end = slot_start for a shard that starts with none)",
                    shard.id, shard.slot_start, shard.slot_end
                ));
            }
            next_slot = shard.slot_end;
            validate_replicas(shard)?;
        }
        if next_slot != self.slots {
            return bad(format!(
                "the shards cover slots [0, {next_slot}) but the map has {} slots",
                self.slots
            ));
        }
        Ok(())
    }

    /// The slot of a partition key under this map.
    pub fn slot(&self, partition: &str) -> u32 {
        slot_of(partition, self.slots)
    }

    /// The shard that owns a partition key.
    pub fn shard_for(&self, partition: &str) -> &ShardSpec {
        let slot = self.slot(partition);
        // validate() guarantees exactly one owner; the fallback is unreachable.
        self.shards
            .iter()
            .find(|s| s.owns(slot))
            .unwrap_or(&self.shards[0])
    }

    /// The shard and replica whose address names this host (its first DNS
    /// label: `storage-s0-1` for `storage-s0-1.storage-s0.anatomy.svc:50071`).
    pub fn replica_on_host(&self, hostname: &str) -> Option<(ShardId, ReplicaId)> {
        let first_label = |addr: &str| addr.split([':', '.']).next().map(str::to_owned);
        self.shards.iter().find_map(|shard| {
            shard
                .replicas
                .iter()
                .find(|r| first_label(&r.addr).as_deref() == Some(hostname))
                .map(|r| (shard.id, r.id))
        })
    }

    /// The shard with this id.
    pub fn shard(&self, id: ShardId) -> Option<&ShardSpec> {
        self.shards.get(id as usize)
    }

    /// Adds the shards of `added` this map does not have yet (a shard added
    /// to the running cluster, as shard 0's log lists it); a shard it has
    /// keeps its entry. Returns whether the map grew.
    pub fn extend_with(&mut self, added: &[ShardSpec]) -> bool {
        let before = self.shards.len();
        for spec in added {
            if spec.id as usize == self.shards.len() {
                self.shards.push(spec.clone());
            }
        }
        self.shards.len() > before
    }
}

/// The shard list as `Kv/ListShards` carries it.
pub fn shard_list(map: &ShardMap) -> crate::v1::ListShardsResponse {
    crate::v1::ListShardsResponse {
        slots: map.slots,
        shards: map.shards.iter().map(shard_info).collect(),
    }
}

/// A shard as the wire names it (id and replicas).
pub fn shard_info(spec: &ShardSpec) -> crate::v1::ShardInfo {
    crate::v1::ShardInfo {
        id: spec.id,
        replicas: spec
            .replicas
            .iter()
            .map(|r| crate::v1::ShardReplica {
                id: r.id,
                addr: r.addr.clone(),
            })
            .collect(),
    }
}

/// A shard from the wire, added to a map of `slots` slots: it starts owning
/// none (its range is empty); its replicas are checked as a map file's are.
pub fn shard_from_info(
    info: &crate::v1::ShardInfo,
    slots: u32,
) -> Result<ShardSpec, ShardMapError> {
    let spec = ShardSpec {
        id: info.id,
        slot_start: slots,
        slot_end: slots,
        replicas: info
            .replicas
            .iter()
            .map(|r| ReplicaSpec {
                id: r.id,
                addr: r.addr.clone(),
            })
            .collect(),
    };
    validate_replicas(&spec)?;
    Ok(spec)
}

fn validate_replicas(shard: &ShardSpec) -> Result<(), ShardMapError> {
    if shard.replicas.is_empty() {
        return Err(ShardMapError::Invalid(format!(
            "shard {} has no replicas",
            shard.id
        )));
    }
    for (i, r) in shard.replicas.iter().enumerate() {
        if r.id == 0 {
            return Err(ShardMapError::Invalid(format!(
                "shard {}: replica ids start at 1",
                shard.id
            )));
        }
        if shard.replicas[..i].iter().any(|o| o.id == r.id) {
            return Err(ShardMapError::Invalid(format!(
                "shard {}: replica id {} appears twice",
                shard.id, r.id
            )));
        }
        if !r.addr.contains(':') {
            return Err(ShardMapError::Invalid(format!(
                "shard {} replica {}: addr {:?} must be host:port",
                shard.id, r.id, r.addr
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slot_is_crc32_mod_slots() {
        // `printf 'acme/alice' | gzip -c | tail -c8 | od -An -tu4 -N4` prints
        // the same CRC-32; these values are pinned so the hash never changes.
        assert_eq!(crc32fast::hash(b"123456789"), 0xCBF4_3926);
        assert_eq!(slot_of("123456789", 1024), 0xCBF4_3926 % 1024);
        assert_eq!(
            slot_of("acme/alice", 1024),
            crc32fast::hash(b"acme/alice") % 1024
        );
    }

    #[test]
    fn uniform_map_covers_every_slot_once() {
        let map = ShardMap::uniform(3, 3, |s, r| {
            format!("127.0.0.1:{}", 50071 + s * 3 + r as u32)
        });
        map.validate().expect("valid");
        assert_eq!(map.shards[0].slot_start, 0);
        assert_eq!(map.shards[2].slot_end, 1024);
        for slot in 0..1024 {
            assert_eq!(map.shards.iter().filter(|s| s.owns(slot)).count(), 1);
        }
    }

    #[test]
    fn parses_a_toml_map() {
        let map = ShardMap::parse(
            r#"
            version = 7
            slots = 16
            [[shards]]
            id = 0
            slot_start = 0
            slot_end = 8
            replicas = [{ id = 1, addr = "a:1" }, { id = 2, addr = "b:1" }]
            [[shards]]
            id = 1
            slot_start = 8
            slot_end = 16
            replicas = [{ id = 1, addr = "c:1" }]
            "#,
        )
        .expect("valid map");
        assert_eq!(map.version, 7);
        assert_eq!(map.shard(1).map(|s| s.replicas.len()), Some(1));
        let owner = map.shard_for("acme/alice");
        assert!(owner.owns(map.slot("acme/alice")));
    }

    #[test]
    fn a_shard_may_start_with_no_slots_and_join_later() {
        let text = "version = 1\nslots = 4\n\
            [[shards]]\nid = 0\nslot_start = 0\nslot_end = 4\nreplicas = [{ id = 1, addr = \"a:1\" }]\n\
            [[shards]]\nid = 1\nslot_start = 4\nslot_end = 4\nreplicas = [{ id = 1, addr = \"b:1\" }]\n";
        let map = ShardMap::parse(text).expect("an empty range is valid");
        assert!((0..4).all(|slot| !map.shards[1].owns(slot)));
        let mut old = ShardMap::parse(&text[..text.find("[[shards]]\nid = 1").unwrap_or(0)])
            .expect("one shard");
        assert!(old.extend_with(&map.shards[1..]));
        assert_eq!(old.shards, map.shards);
        assert!(!old.extend_with(&map.shards), "shards it has are kept");
        let gap = ShardSpec {
            id: 5,
            ..map.shards[1].clone()
        };
        assert!(
            !old.extend_with(&[gap]),
            "a shard past the next id is not added"
        );
    }

    #[test]
    fn rejects_gaps_overlaps_and_duplicates() {
        let gap = "version = 1\nslots = 16\n[[shards]]\nid = 0\nslot_start = 0\nslot_end = 8\nreplicas = [{ id = 1, addr = \"a:1\" }]\n";
        let err = ShardMap::parse(gap).expect_err("gap");
        assert!(err.to_string().contains("cover slots [0, 8)"), "{err}");
        let dup = "version = 1\nslots = 4\n[[shards]]\nid = 0\nslot_start = 0\nslot_end = 4\nreplicas = [{ id = 1, addr = \"a:1\" }, { id = 1, addr = \"b:1\" }]\n";
        let err = ShardMap::parse(dup).expect_err("dup");
        assert!(err.to_string().contains("appears twice"), "{err}");
    }
}
