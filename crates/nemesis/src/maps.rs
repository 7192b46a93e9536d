//! A shard map per replica, routing its peer links through the nemesis's
//! proxies: in `storage-s0-r1`'s map, replicas 2 and 3 of shard 0 have the
//! addresses of the links `s0-r1 -> s0-r2` and `s0-r1 -> s0-r3`, and its
//! own entry keeps its real address (the replica listens there). Other
//! shards, and every client's map, are unchanged. scripts/up.sh starts a
//! replica with `<dir>/maps/<name>.toml` when that file exists.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use storage_api::shard_map::ShardMap;

use crate::NemesisError;
use crate::cluster::replica_name;
use crate::links::Link;

/// Where scripts/up.sh looks for replica `name`'s own map.
pub fn map_path(dir: &Path, name: &str) -> PathBuf {
    dir.join("maps").join(format!("{name}.toml"))
}

/// `name`'s map: `map` with the links from `name` in place of its peers.
pub fn routed(map: &ShardMap, name: &str, links: &[Link]) -> ShardMap {
    let through: BTreeMap<&str, String> = links
        .iter()
        .filter(|l| l.from == name)
        .map(|l| (l.to.as_str(), l.listen.to_string()))
        .collect();
    let mut routed = map.clone();
    for shard in &mut routed.shards {
        for replica in &mut shard.replicas {
            if let Some(addr) = through.get(replica_name(shard.id, replica.id).as_str()) {
                replica.addr.clone_from(addr);
            }
        }
    }
    routed
}

/// Writes every replica's map under `<dir>/maps/`.
pub fn write_all(dir: &Path, map: &ShardMap, links: &[Link]) -> Result<(), NemesisError> {
    std::fs::create_dir_all(dir.join("maps")).map_err(NemesisError::io("create maps/"))?;
    for shard in &map.shards {
        for replica in &shard.replicas {
            let name = replica_name(shard.id, replica.id);
            let text = toml::to_string(&routed(map, &name, links))
                .map_err(|e| NemesisError::Setup(format!("encode {name}'s shard map: {e}")))?;
            let header = "# Written by the nemesis: this replica's peers are reached through its fault-injecting links.\n";
            let path = map_path(dir, &name);
            std::fs::write(&path, format!("{header}{text}"))
                .map_err(NemesisError::io(format!("write {}", path.display())))?;
        }
    }
    // Last: scripts/chaos/run.sh starts the replicas once this exists.
    let ready = dir.join("maps").join("ready");
    std::fs::write(&ready, "").map_err(NemesisError::io(format!("write {}", ready.display())))
}

/// Removes the per-replica maps (replicas then start with the shared one).
pub fn remove_all(dir: &Path) {
    let _ = std::fs::remove_dir_all(dir.join("maps"));
}

#[cfg(test)]
mod tests {
    #![allow(clippy::expect_used)]
    use super::*;

    #[tokio::test]
    async fn each_replica_reaches_its_peers_through_its_own_links() {
        let map = ShardMap::uniform(2, 3, |s, r| {
            format!("127.0.0.1:{}", 100 + u64::from(s) * 10 + r)
        });
        let mut links = Vec::new();
        for (from, to) in [
            ("storage-s0-r1", "storage-s0-r2"),
            ("storage-s0-r2", "storage-s0-r1"),
        ] {
            links.push(Link::open(from, to, "127.0.0.1:9").await.expect("link"));
        }
        let mine = routed(&map, "storage-s0-r1", &links);
        let shard = mine.shard(0).expect("shard 0");
        assert_eq!(
            shard.replicas[0].addr, map.shards[0].replicas[0].addr,
            "its own address"
        );
        assert_eq!(
            shard.replicas[1].addr,
            links[0].listen.to_string(),
            "through its link"
        );
        assert_eq!(
            shard.replicas[2].addr, map.shards[0].replicas[2].addr,
            "no link: unchanged"
        );
        assert_eq!(mine.shards[1], map.shards[1], "other shards unchanged");
        assert_eq!(mine.version, map.version);
    }
}
