//! `nemesis run`: links first (the replicas must start with their routed
//! maps), then, once the cluster serves, the schedule, one fault at a time.

use std::time::Duration;

use tokio::signal::unix::{SignalKind, signal};

use crate::NemesisError;
use crate::cli::RunArgs;
use crate::cluster::{Cluster, replica_name};
use crate::inject::Nemesis;
use crate::journal::{Journal, Phase};
use crate::links::Link;
use crate::maps;
use crate::plan::{Bounds, schedule};

/// A proxy on every directed link between two replicas of one shard.
async fn open_links(cluster: &Cluster) -> Result<Vec<Link>, NemesisError> {
    let mut links = Vec::new();
    for shard in &cluster.map.shards {
        for from in &shard.replicas {
            for to in shard.replicas.iter().filter(|r| r.id != from.id) {
                let (a, b) = (
                    replica_name(shard.id, from.id),
                    replica_name(shard.id, to.id),
                );
                let link = Link::open(&a, &b, &to.addr)
                    .await
                    .map_err(NemesisError::io(format!("open the link {a} -> {b}")))?;
                links.push(link);
            }
        }
    }
    Ok(links)
}

/// Resolves on SIGTERM or SIGINT.
async fn stop_signal() {
    let Ok(mut term) = signal(SignalKind::terminate()) else {
        let _ = tokio::signal::ctrl_c().await;
        return;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}

async fn wait_serving(cluster: &Cluster, limit: Duration) -> Result<(), NemesisError> {
    let deadline = tokio::time::Instant::now() + limit;
    while !cluster.serving().await {
        if tokio::time::Instant::now() >= deadline {
            return Err(NemesisError::Setup(format!(
                "the cluster in {} did not serve (every replica answering, every shard led) within {limit:?}",
                cluster.dir().display()
            )));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Ok(())
}

pub async fn run(args: RunArgs) -> Result<(), NemesisError> {
    let cluster = Cluster::load(&args.dir)?;
    let links = open_links(&cluster).await?;
    maps::write_all(&args.dir, &cluster.map, &links)?;
    eprintln!(
        "nemesis: {} peer links proxied; replicas read their maps from {}",
        links.len(),
        args.dir.join("maps").display()
    );
    let nemesis = Nemesis { cluster, links };
    let stop = stop_signal();
    tokio::pin!(stop);
    let outcome = tokio::select! {
        outcome = faults(&nemesis, &args) => outcome,
        () = &mut stop => {
            eprintln!("nemesis: stopped");
            maps::remove_all(&args.dir);
            return Ok(());
        }
    };
    match &outcome {
        Ok(()) => eprintln!("nemesis: every fault healed; keeping the links up until SIGTERM"),
        Err(e) => eprintln!("nemesis: error: {e}; keeping the links up until SIGTERM"),
    }
    stop.await;
    maps::remove_all(&args.dir);
    outcome
}

/// Waits for the cluster, then runs the schedule. Dropped mid-way (on a
/// stop signal), `Heal` undoes the fault in force.
async fn faults(nemesis: &Nemesis, args: &RunArgs) -> Result<(), NemesisError> {
    wait_serving(&nemesis.cluster, args.ready_timeout).await?;
    let mut journal = Journal::create(&args.journal)?;
    let bounds = Bounds {
        kinds: args.faults.clone(),
        shards: u32::try_from(nemesis.cluster.map.shards.len()).unwrap_or(1),
        duration: args.duration,
        hold: (args.hold_min, args.hold_max),
        quiet: (args.quiet_min, args.quiet_max),
    };
    let steps = schedule(args.seed, &bounds);
    eprintln!(
        "nemesis: seed {}: {} faults within {:?}, after {:?}",
        args.seed,
        steps.len(),
        args.duration,
        args.warmup
    );
    tokio::time::sleep(args.warmup).await;
    for step in &steps {
        tokio::time::sleep(step.quiet).await;
        let name = step.fault.name();
        let active = nemesis.inject(step).await?;
        let heal = Heal {
            nemesis,
            active: Some(active),
        };
        let targets = heal.targets();
        journal.record(Phase::Start, &name, &targets)?;
        eprintln!("nemesis: {name}: {}", targets.join(", "));
        tokio::time::sleep(step.hold).await;
        heal.now()?;
        journal.record(Phase::End, &name, &targets)?;
    }
    Ok(())
}

/// A fault in force: healed by `now`, or when dropped (the run was
/// stopped), so that no replica stays stopped, killed or cut off.
struct Heal<'a> {
    nemesis: &'a Nemesis,
    active: Option<crate::inject::Active>,
}

impl Heal<'_> {
    fn targets(&self) -> Vec<String> {
        self.active
            .as_ref()
            .map(crate::inject::Active::targets)
            .unwrap_or_default()
    }

    fn now(mut self) -> Result<(), NemesisError> {
        match self.active.take() {
            Some(active) => self.nemesis.heal(&active),
            None => Ok(()),
        }
    }
}

impl Drop for Heal<'_> {
    fn drop(&mut self) {
        if let Some(active) = self.active.take()
            && let Err(e) = self.nemesis.heal(&active)
        {
            eprintln!("nemesis: could not heal on the way out: {e}");
        }
    }
}
