//! `loadgen register` and `loadgen check`: from the command line to the
//! workload and the checker, and what they print.

use std::fs::File;
use std::io::BufReader;
use std::sync::Arc;

use crate::check::{self, Verdict};
use crate::cli::{CheckArgs, RegisterArgs};
use crate::history::{F, Kind, Recorder};
use crate::targets::register::{Plan, Register, Tally};
use crate::{LoadError, setup, storage_client};

/// Runs the register workload and writes its history.
pub async fn register(args: &RegisterArgs) -> Result<(), LoadError> {
    let client = storage_client(args.shard_map.as_deref(), &args.storage_addr, &args.tls)?;
    let path = args.history.display();
    let recorder = Recorder::create(&args.history)
        .map_err(|e| LoadError::Setup(format!("cannot create the history {path}: {e}")))?;
    let plan = Plan {
        clients: args.clients.max(1),
        keys: args.keys.max(1),
        rate: args.rate,
        duration: args.duration,
        timeout: args.deadline,
        prefix: args.prefix.clone(),
    };
    eprintln!(
        "register: {} clients over {} keys for {:?}, at most {}/s; history in {path}",
        plan.clients, plan.keys, plan.duration, plan.rate
    );
    let tally = Arc::new(Register::new(client, recorder, plan))
        .run()
        .await
        .map_err(|e| LoadError::Setup(format!("cannot write the history {path}: {e}")))?;
    print_tally(&tally);
    let total: usize = tally.outcomes.values().sum();
    let ok: usize = tally
        .outcomes
        .iter()
        .filter(|((_, kind), _)| *kind == Kind::Ok)
        .map(|(_, n)| n)
        .sum();
    if ok == 0 {
        return Err(LoadError::Setup(format!(
            "none of {total} operations succeeded: is storage up (--shard-map, --storage-addr)?"
        )));
    }
    println!("wrote {total} operations to {path}; decide it with: loadgen check {path}");
    Ok(())
}

fn print_tally(tally: &Tally) {
    println!("{:<6} {:>8} {:>8} {:>8}", "f", "ok", "fail", "info");
    for f in [F::Read, F::Write, F::Cas] {
        let n = |kind| tally.outcomes.get(&(f, kind)).copied().unwrap_or(0);
        println!(
            "{:<6} {:>8} {:>8} {:>8}",
            format!("{f:?}").to_lowercase(),
            n(Kind::Ok),
            n(Kind::Fail),
            n(Kind::Info)
        );
    }
    let settled = |kind| tally.settled.get(&kind).copied().unwrap_or(0);
    let total: usize = tally.settled.values().sum();
    if total > 0 {
        println!(
            "{total} writes' calls failed; fenced and read back: {} had happened, {} had not, {} stay unknown",
            settled(Kind::Ok),
            settled(Kind::Fail),
            settled(Kind::Info)
        );
    }
}

/// Decides a history; prints the evidence of every key that fails.
pub async fn check(args: &CheckArgs) -> Result<(), LoadError> {
    let path = args.history.display().to_string();
    let bad = |source| LoadError::BadHistory {
        path: path.clone(),
        source,
    };
    let file = File::open(&args.history).map_err(|e| bad(check::BadHistory::Io(e)))?;
    let parsed = check::parse(BufReader::new(file)).map_err(bad)?;
    let timeout = args.timeout;
    let verdict = tokio::task::spawn_blocking(move || check::check(parsed, timeout))
        .await
        .map_err(setup)?;
    for anomaly in &verdict.anomalies {
        println!("{anomaly}");
    }
    print_summary(&verdict);
    if !verdict.anomalies.is_empty() {
        return Err(LoadError::NotLinearizable {
            keys: verdict.anomalies.len(),
            of: verdict.keys,
        });
    }
    if !verdict.undecided.is_empty() {
        return Err(LoadError::Undecided {
            keys: verdict.undecided.len(),
            timeout,
        });
    }
    Ok(())
}

fn print_summary(v: &Verdict) {
    let c = &v.counts;
    let word = if !v.anomalies.is_empty() {
        "NOT linearizable"
    } else if !v.undecided.is_empty() {
        "undecided"
    } else {
        "linearizable"
    };
    println!(
        "{word}: {} keys, {} operations ({} ok, {} fail, {} info, {} never completed), decided in {:.2?}",
        v.keys,
        c.ok + c.fail + c.info + c.open,
        c.ok,
        c.fail,
        c.info,
        c.open,
        v.elapsed
    );
    if !v.undecided.is_empty() {
        println!("  not decided in time: {}", v.undecided.join(", "));
    }
}
