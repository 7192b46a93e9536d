//! `loadgen check`: is a history of register operations (read, write,
//! compare-and-set; see `crate::history`) linearizable?
//!
//! - `parse`: pairs invocations with completions, per key; `fail`
//!   operations drop out, `info` ones return at +infinity.
//! - `model`: the register, and which `info` operations can be left out.
//! - `search`: Wing–Gong–Lowe with a memo of (linearized set, state), one
//!   key at a time (a register's keys are independent), keys in parallel.
//! - `evidence`: for a key that fails, a minimal set of its operations
//!   that cannot be ordered.

pub mod evidence;
pub mod model;
pub mod parse;
pub mod search;

#[cfg(test)]
mod brute;
#[cfg(test)]
pub mod generate;
#[cfg(test)]
mod tests;

use std::fmt;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

pub use model::{Op, Operation};
pub use parse::{BadHistory, Counts, Parsed, parse};

/// How one key's check ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyVerdict {
    Linearizable,
    /// Not linearizable: these operations cannot be ordered (`minimal`:
    /// the narrowing finished within the time).
    Not {
        evidence: Vec<Operation>,
        minimal: bool,
    },
    /// Out of time before deciding.
    Undecided,
}

/// Checks one key's operations (in invocation order).
pub fn check_key(ops: &[Operation], deadline: Instant) -> KeyVerdict {
    match search::linearizable(&model::prepare(ops), deadline) {
        Ok(true) => KeyVerdict::Linearizable,
        Err(search::Undecided) => KeyVerdict::Undecided,
        Ok(false) => {
            let (set, minimal) = evidence::unorderable(ops, deadline);
            KeyVerdict::Not {
                evidence: set.into_iter().map(|i| ops[i].clone()).collect(),
                minimal,
            }
        }
    }
}

/// What the whole history came to.
#[derive(Debug)]
pub struct Verdict {
    pub counts: Counts,
    pub keys: usize,
    /// Keys that are not linearizable, with their evidence.
    pub anomalies: Vec<Anomaly>,
    /// Keys not decided in time.
    pub undecided: Vec<String>,
    pub elapsed: Duration,
}

/// One key that is not linearizable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Anomaly {
    pub key: String,
    pub evidence: Vec<Operation>,
    pub minimal: bool,
}

/// Checks every key, in parallel, within `timeout` overall.
pub fn check(parsed: Parsed, timeout: Duration) -> Verdict {
    let started = Instant::now();
    let deadline = started + timeout;
    let mut keys: Vec<(String, Vec<Operation>)> = parsed.keys.into_iter().collect();
    // The biggest first, so that no worker is left with a long one at the end.
    keys.sort_by_key(|(_, ops)| std::cmp::Reverse(ops.len()));
    let results: Mutex<Vec<(String, KeyVerdict)>> = Mutex::new(Vec::new());
    let next = AtomicUsize::new(0);
    let workers = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(keys.len())
        .max(1);
    std::thread::scope(|scope| {
        for _ in 0..workers {
            scope.spawn(|| {
                while let Some((key, ops)) = keys.get(next.fetch_add(1, Ordering::Relaxed)) {
                    let verdict = check_key(ops, deadline);
                    if let Ok(mut r) = results.lock() {
                        r.push((key.clone(), verdict));
                    }
                }
            });
        }
    });
    let mut results = results.into_inner().unwrap_or_default();
    results.sort_by(|a, b| a.0.cmp(&b.0));
    let mut verdict = Verdict {
        counts: parsed.counts,
        keys: keys.len(),
        anomalies: Vec::new(),
        undecided: Vec::new(),
        elapsed: Duration::ZERO,
    };
    for (key, v) in results {
        match v {
            KeyVerdict::Linearizable => {}
            KeyVerdict::Undecided => verdict.undecided.push(key),
            KeyVerdict::Not { evidence, minimal } => verdict.anomalies.push(Anomaly {
                key,
                evidence,
                minimal,
            }),
        }
    }
    verdict.elapsed = started.elapsed();
    verdict
}

impl fmt::Display for Anomaly {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let these = match self.evidence.len() {
            1 => "this operation".to_string(),
            n => format!("these {n} operations"),
        };
        writeln!(
            f,
            "key {:?} is not linearizable: {these} cannot be ordered \
             (every other operation free to take effect at any time after it began, or never){}:",
            self.key,
            if self.minimal {
                ""
            } else {
                " [not narrowed further: out of time]"
            }
        )?;
        for o in &self.evidence {
            writeln!(f, "  {o}")?;
        }
        Ok(())
    }
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let show = |v: model::State| v.map_or("null".to_string(), |v| v.to_string());
        let what = match self.op {
            Op::Read(v) => format!("read -> {}", show(v)),
            Op::Write(v) => format!("write {v}"),
            Op::Cas { expected, new } => format!("cas {} -> {new}", show(expected)),
        };
        let secs = |ns: u64| ns as f64 / 1e9;
        match (self.ret, self.times.1) {
            (Some(ret), Some(done)) => write!(
                f,
                "process {:<4} {what:<24} ok    lines {}-{ret}, {:.6}-{:.6} s",
                self.process,
                self.call,
                secs(self.times.0),
                secs(done)
            ),
            _ => write!(
                f,
                "process {:<4} {what:<24} info  line {}, from {:.6} s",
                self.process,
                self.call,
                secs(self.times.0)
            ),
        }
    }
}
