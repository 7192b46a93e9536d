//! Applying and healing one fault of the schedule.

use std::path::{Path, PathBuf};

use storage_api::shard_map::ShardId;

use crate::NemesisError;
use crate::cluster::Cluster;
use crate::links::{Link, LinkState};
use crate::plan::{Cut, Fault, Step, Who};

/// A fault in force, and what healing it takes.
#[derive(Debug)]
pub enum Active {
    /// Killed; restarted when healed.
    Killed(String),
    /// Stopped; continued when healed.
    Paused(String),
    /// The peer links of `isolated` blackholed; passing again when healed.
    Cut {
        isolated: Vec<String>,
        links: Vec<Link>,
    },
}

impl Active {
    /// The replicas it hits.
    pub fn targets(&self) -> Vec<String> {
        match self {
            Self::Killed(name) | Self::Paused(name) => vec![name.clone()],
            Self::Cut { isolated, .. } => isolated.clone(),
        }
    }
}

/// The cluster and its links: what faults are applied to.
#[derive(Debug)]
pub struct Nemesis {
    pub cluster: Cluster,
    pub links: Vec<Link>,
}

/// A half-written log record, as a crash in the middle of an append leaves
/// it: an Append record's type, the checksummed length of its log id, and
/// only 5 of that id's 20 bytes (raft-log's WAL record layout). On restart
/// the replica must cut it off (a torn tail is not damage) and catch up.
pub fn torn_record() -> Vec<u8> {
    let mut torn = 1u32.to_be_bytes().to_vec();
    let len = (20u32 | 1 << 31).to_le_bytes();
    torn.extend_from_slice(&len);
    torn.extend_from_slice(&crc32fast::hash(&len).to_le_bytes());
    torn.extend_from_slice(&[7; 5]);
    torn
}

/// The last chunk of the WAL in `data_dir`, if the replica keeps one.
fn last_wal_chunk(data_dir: &Path) -> Option<PathBuf> {
    let mut chunks: Vec<PathBuf> = std::fs::read_dir(data_dir.join("raft-wal"))
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "wal"))
        .collect();
    chunks.sort();
    chunks.pop()
}

impl Nemesis {
    /// The replica of `shard` that `who` names now (a follower chosen by
    /// `pick`); with no leader known, any replica chosen by `pick`.
    async fn replica(&self, shard: ShardId, who: Who, pick: u64) -> Result<String, NemesisError> {
        let leader = self.cluster.leader(shard).await;
        let names: Vec<String> = self
            .cluster
            .replicas_of(shard)
            .iter()
            .map(|r| r.name.clone())
            .collect();
        let choose = |from: &[String]| -> Result<String, NemesisError> {
            let n = u64::try_from(from.len()).unwrap_or(1).max(1);
            from.get(usize::try_from(pick % n).unwrap_or(0))
                .cloned()
                .ok_or_else(|| NemesisError::Setup(format!("shard {shard} has no replicas")))
        };
        match (who, leader) {
            (Who::Leader, Some(leader)) => Ok(leader),
            (Who::Follower, Some(leader)) => {
                let followers: Vec<String> = names.into_iter().filter(|n| *n != leader).collect();
                choose(if followers.is_empty() {
                    std::slice::from_ref(&leader)
                } else {
                    &followers
                })
            }
            (_, None) => choose(&names),
        }
    }

    /// Blackholes every link to or from `names`.
    fn cut(&self, names: &[String]) -> Active {
        let cut: Vec<Link> = self
            .links
            .iter()
            .filter(|l| names.contains(&l.from) || names.contains(&l.to))
            .cloned()
            .collect();
        for link in &cut {
            link.set(LinkState::Blackhole);
        }
        Active::Cut {
            isolated: names.to_vec(),
            links: cut,
        }
    }

    /// Injects `step`'s fault.
    pub async fn inject(&self, step: &Step) -> Result<Active, NemesisError> {
        match step.fault {
            Fault::Kill(who) => {
                let name = self.replica(step.shard, who, step.pick).await?;
                self.cluster.kill(&name).await?;
                Ok(Active::Killed(name))
            }
            Fault::Torn(who) => {
                let name = self.replica(step.shard, who, step.pick).await?;
                self.cluster.kill(&name).await?;
                if let Some(chunk) = last_wal_chunk(&self.cluster.data_dir(&name)) {
                    use std::io::Write;
                    let mut file = std::fs::OpenOptions::new()
                        .append(true)
                        .open(&chunk)
                        .map_err(NemesisError::io(format!("open {}", chunk.display())))?;
                    file.write_all(&torn_record())
                        .map_err(NemesisError::io(format!("tear {}", chunk.display())))?;
                }
                Ok(Active::Killed(name))
            }
            Fault::Pause(who) => {
                let name = self.replica(step.shard, who, step.pick).await?;
                self.cluster.pause(&name)?;
                Ok(Active::Paused(name))
            }
            Fault::Partition(Cut::LeaderAlone) => {
                let name = self.replica(step.shard, Who::Leader, step.pick).await?;
                Ok(self.cut(&[name]))
            }
            Fault::Partition(Cut::FollowerAlone) => {
                let name = self.replica(step.shard, Who::Follower, step.pick).await?;
                Ok(self.cut(&[name]))
            }
            Fault::Partition(Cut::OnePerShard) => {
                let mut names = Vec::new();
                for shard in &self.cluster.map.shards {
                    let n = u64::try_from(shard.replicas.len()).unwrap_or(1).max(1);
                    let i = usize::try_from((step.pick + u64::from(shard.id)) % n).unwrap_or(0);
                    let replica = &shard.replicas[i];
                    names.push(crate::cluster::replica_name(shard.id, replica.id));
                }
                Ok(self.cut(&names))
            }
        }
    }

    /// Undoes a fault.
    pub fn heal(&self, active: &Active) -> Result<(), NemesisError> {
        match active {
            Active::Killed(name) => self.cluster.restart(name),
            Active::Paused(name) => self.cluster.resume(name),
            Active::Cut { links, .. } => {
                for link in links {
                    link.set(LinkState::Pass);
                }
                Ok(())
            }
        }
    }
}
