//! Drives a target: closed loop (a fixed number of workers, each issuing
//! its next operation when the previous one answers) or open loop (a fixed
//! rate of arrivals, whatever the answers do — latency is measured from
//! each operation's scheduled start, so a stalled server cannot hide its
//! queueing, as in wrk2).

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};
use tokio::sync::Mutex;
use tokio::time::Instant;

use crate::stats::{Stats, Summary};

/// Something to put load on. `n` numbers the operations of a run.
pub trait Target: Send + Sync + 'static {
    /// One operation; on failure, a short kind (e.g. a gRPC code).
    fn call(&self, n: u64) -> impl Future<Output = Result<(), String>> + Send;
}

/// How to drive a run.
#[derive(Debug, Clone, Copy)]
pub enum Mode {
    /// `workers` operations in flight at all times.
    Closed { workers: usize },
    /// `rate` operations per second, at most `max_in_flight` outstanding
    /// (beyond that an arrival is counted as `dropped`).
    Open { rate: f64, max_in_flight: usize },
}

fn progress(duration: Duration, label: &str) -> ProgressBar {
    let bar = ProgressBar::new(duration.as_millis() as u64);
    if let Ok(style) = ProgressStyle::with_template("{msg:>28} [{bar:30}] {elapsed}/{duration}") {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_message(label.to_string());
    bar
}

/// Runs `target` for `duration` and summarises.
pub async fn run<T: Target>(
    target: Arc<T>,
    mode: Mode,
    duration: Duration,
    label: &str,
) -> Summary {
    let bar = progress(duration, label);
    let ticker = {
        let bar = bar.clone();
        tokio::spawn(async move {
            let start = Instant::now();
            loop {
                tokio::time::sleep(Duration::from_millis(200)).await;
                bar.set_position(start.elapsed().as_millis() as u64);
            }
        })
    };
    let started = Instant::now();
    let stats = match mode {
        Mode::Closed { workers } => closed(target, workers, duration).await,
        Mode::Open {
            rate,
            max_in_flight,
        } => open(target, rate, max_in_flight, duration).await,
    };
    let elapsed = started.elapsed();
    ticker.abort();
    bar.finish_and_clear();
    stats.summary(elapsed)
}

async fn closed<T: Target>(target: Arc<T>, workers: usize, duration: Duration) -> Stats {
    let end = Instant::now() + duration;
    let next = Arc::new(AtomicU64::new(0));
    let tasks: Vec<_> = (0..workers.max(1))
        .map(|_| {
            let (target, next) = (target.clone(), next.clone());
            tokio::spawn(async move {
                let mut stats = Stats::new();
                while Instant::now() < end {
                    let n = next.fetch_add(1, Ordering::Relaxed);
                    let started = Instant::now();
                    let result = target.call(n).await;
                    stats.record(started.elapsed(), result);
                }
                stats
            })
        })
        .collect();
    let mut total = Stats::new();
    for task in tasks {
        if let Ok(stats) = task.await {
            total.merge(&stats);
        }
    }
    total
}

async fn open<T: Target>(
    target: Arc<T>,
    rate: f64,
    max_in_flight: usize,
    duration: Duration,
) -> Stats {
    let start = Instant::now();
    let interval = Duration::from_secs_f64(1.0 / rate.max(1e-3));
    let total = Arc::new(Mutex::new(Stats::new()));
    let in_flight = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for n in 0u64.. {
        let scheduled = start + interval.mul_f64(n as f64);
        if scheduled >= start + duration {
            break;
        }
        tokio::time::sleep_until(scheduled).await;
        if in_flight.load(Ordering::Relaxed) >= max_in_flight {
            total
                .lock()
                .await
                .record(Duration::ZERO, Err("dropped (too many in flight)".into()));
            continue;
        }
        in_flight.fetch_add(1, Ordering::Relaxed);
        let (target, total, in_flight) = (target.clone(), total.clone(), in_flight.clone());
        tasks.push(tokio::spawn(async move {
            let result = target.call(n).await;
            // From the scheduled start: waiting for a slot is latency too.
            let latency = scheduled.elapsed();
            in_flight.fetch_sub(1, Ordering::Relaxed);
            total.lock().await.record(latency, result);
        }));
    }
    for task in tasks {
        let _ = task.await;
    }
    let stats = total.lock().await;
    stats.clone()
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Sleepy;

    impl Target for Sleepy {
        async fn call(&self, n: u64) -> Result<(), String> {
            tokio::time::sleep(Duration::from_millis(10)).await;
            if n.is_multiple_of(10) {
                Err("every tenth".into())
            } else {
                Ok(())
            }
        }
    }

    #[tokio::test(start_paused = true)]
    async fn closed_loop_keeps_workers_busy() {
        let s = run(
            Arc::new(Sleepy),
            Mode::Closed { workers: 4 },
            Duration::from_secs(1),
            "t",
        )
        .await;
        // 4 workers x 100 operations of 10 ms, every tenth failing.
        assert_eq!(s.ok + s.failed, 400);
        assert_eq!(s.failed, 40);
        assert!((9.9..=10.1).contains(&s.p50_ms), "{}", s.p50_ms);
    }

    #[tokio::test(start_paused = true)]
    async fn open_loop_schedules_by_rate() {
        let mode = Mode::Open {
            rate: 200.0,
            max_in_flight: 1000,
        };
        let s = run(Arc::new(Sleepy), mode, Duration::from_secs(1), "t").await;
        assert_eq!(s.ok + s.failed, 200);
    }
}
