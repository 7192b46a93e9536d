//! The seeded schedule: which fault, on which shard, held how long, after
//! how much quiet. Decided up front from the seed alone, so a run can be
//! repeated; which replica is the leader is only known when a fault starts
//! (the journal records who was hit).

use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use storage_api::shard_map::ShardId;

/// The kinds of fault `--faults` chooses from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum FaultKind {
    Kill,
    Pause,
    Partition,
    Torn,
}

/// Which replica of a shard a process fault hits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Who {
    Leader,
    Follower,
}

/// Which peer links a partition cuts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cut {
    /// The leader from its followers, both ways; clients still reach it
    /// (it must neither answer reads nor acknowledge writes).
    LeaderAlone,
    /// One follower from the rest of its group.
    FollowerAlone,
    /// One replica of every shard at once.
    OnePerShard,
}

/// One fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// kill -9, restarted after the hold.
    Kill(Who),
    /// SIGSTOP, SIGCONT after the hold.
    Pause(Who),
    /// kill -9, a half-written record appended to its log, restarted.
    Torn(Who),
    Partition(Cut),
}

impl Fault {
    /// How the journal and the report name it.
    pub fn name(self) -> String {
        let who = |w: Who| match w {
            Who::Leader => "leader",
            Who::Follower => "follower",
        };
        match self {
            Self::Kill(w) => format!("kill {}", who(w)),
            Self::Pause(w) => format!("pause {}", who(w)),
            Self::Torn(w) => format!("torn-log restart {}", who(w)),
            Self::Partition(Cut::LeaderAlone) => "partition leader from followers".into(),
            Self::Partition(Cut::FollowerAlone) => "partition follower".into(),
            Self::Partition(Cut::OnePerShard) => "partition one replica of every shard".into(),
        }
    }

    /// The `--faults` kind it belongs to.
    pub fn kind(self) -> FaultKind {
        match self {
            Self::Kill(_) => FaultKind::Kill,
            Self::Pause(_) => FaultKind::Pause,
            Self::Torn(_) => FaultKind::Torn,
            Self::Partition(_) => FaultKind::Partition,
        }
    }
}

/// One step of the schedule: wait `quiet`, inject `fault` on `shard`, hold
/// it for `hold`, heal. `pick` chooses among equal candidates (which
/// follower, which replica of each shard).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Step {
    pub quiet: Duration,
    pub fault: Fault,
    pub shard: ShardId,
    pub hold: Duration,
    pub pick: u64,
}

/// The bounds of a schedule.
#[derive(Debug, Clone)]
pub struct Bounds {
    pub kinds: Vec<FaultKind>,
    pub shards: u32,
    pub duration: Duration,
    pub hold: (Duration, Duration),
    pub quiet: (Duration, Duration),
}

fn between(rng: &mut StdRng, (low, high): (Duration, Duration)) -> Duration {
    if high <= low {
        return low;
    }
    rng.random_range(low..=high)
}

fn fault(rng: &mut StdRng, kind: FaultKind) -> Fault {
    // Leaders are hit more often than followers: that is where the
    // interesting cases (elections, stale leaders) are.
    let who = if rng.random_bool(0.6) {
        Who::Leader
    } else {
        Who::Follower
    };
    match kind {
        FaultKind::Kill => Fault::Kill(who),
        FaultKind::Pause => Fault::Pause(who),
        FaultKind::Torn => Fault::Torn(who),
        FaultKind::Partition => Fault::Partition(match rng.random_range(0..3) {
            0 => Cut::LeaderAlone,
            1 => Cut::FollowerAlone,
            _ => Cut::OnePerShard,
        }),
    }
}

/// The steps for `seed`: one fault at a time, every one healed within
/// `bounds.duration`.
pub fn schedule(seed: u64, bounds: &Bounds) -> Vec<Step> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut steps = Vec::new();
    let mut used = Duration::ZERO;
    if bounds.kinds.is_empty() {
        return steps;
    }
    loop {
        let quiet = between(&mut rng, bounds.quiet);
        let hold = between(&mut rng, bounds.hold);
        if used + quiet + hold > bounds.duration {
            return steps;
        }
        used += quiet + hold;
        let kind = bounds.kinds[rng.random_range(0..bounds.kinds.len())];
        steps.push(Step {
            quiet,
            fault: fault(&mut rng, kind),
            shard: rng.random_range(0..bounds.shards.max(1)),
            hold,
            pick: rng.random(),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bounds(kinds: &[FaultKind]) -> Bounds {
        Bounds {
            kinds: kinds.to_vec(),
            shards: 3,
            duration: Duration::from_secs(120),
            hold: (Duration::from_secs(1), Duration::from_secs(5)),
            quiet: (Duration::from_secs(1), Duration::from_secs(4)),
        }
    }

    const ALL: [FaultKind; 4] = [
        FaultKind::Kill,
        FaultKind::Pause,
        FaultKind::Partition,
        FaultKind::Torn,
    ];

    #[test]
    fn a_seed_gives_one_schedule() {
        assert_eq!(schedule(7, &bounds(&ALL)), schedule(7, &bounds(&ALL)));
        assert_ne!(schedule(7, &bounds(&ALL)), schedule(8, &bounds(&ALL)));
    }

    #[test]
    fn every_fault_is_healed_within_the_duration() {
        for seed in 0..50 {
            let steps = schedule(seed, &bounds(&ALL));
            let total: Duration = steps.iter().map(|s| s.quiet + s.hold).sum();
            assert!(total <= Duration::from_secs(120), "seed {seed}: {total:?}");
            assert!(
                steps.len() >= 12,
                "seed {seed}: only {} faults",
                steps.len()
            );
            assert!(steps.iter().all(|s| s.shard < 3));
        }
    }

    #[test]
    fn only_the_chosen_kinds_and_each_of_them() {
        let steps = schedule(3, &bounds(&[FaultKind::Pause, FaultKind::Partition]));
        for kind in [FaultKind::Pause, FaultKind::Partition] {
            assert!(
                steps.iter().any(|s| s.fault.kind() == kind),
                "{kind:?} chosen"
            );
        }
        assert!(
            steps
                .iter()
                .all(|s| matches!(s.fault.kind(), FaultKind::Pause | FaultKind::Partition))
        );
        assert!(schedule(3, &bounds(&[])).is_empty());
    }
}
