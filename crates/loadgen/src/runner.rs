//! Drives a target: closed loop (a fixed number of workers, each issuing
//! its next operation when the previous one answers) or open loop (a fixed
//! rate of arrivals, whatever the answers do — latency is measured from
//! each operation's *scheduled* start, so a stalled server cannot hide its
//! queueing: coordinated omission, as wrk2 avoids it).
//!
//! Every run is bounded: arrivals stop at the end of the window (and there
//! are at most rate × window of them), each operation is abandoned by the
//! client `GRACE` after its deadline, and the drain after the window is
//! bounded the same way.

use std::future::Future;
use std::io::IsTerminal;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::series::{SecondRow, Series};
use crate::stats::{Stats, Summary};

/// Something to put load on. `n` numbers the operations of a run.
pub trait Target: Send + Sync + 'static {
    /// One operation; on failure, a short kind (e.g. a gRPC code).
    fn call(&self, n: u64) -> impl Future<Output = Result<(), String>> + Send;
}

/// How long past its deadline the client waits for an operation before it
/// abandons it (counted as `ClientTimeout`). The gRPC deadline normally
/// ends it first.
pub const GRACE: Duration = Duration::from_secs(1);

/// The failure kind of an open-loop arrival that found too many in flight.
pub const DROPPED: &str = "dropped (too many in flight)";

/// How to drive a run.
#[derive(Debug, Clone, Copy)]
pub enum Mode {
    /// `workers` operations in flight at all times.
    Closed { workers: usize },
    /// `rate` operations per second, at most `max_in_flight` outstanding
    /// (beyond that an arrival is counted as failed, `DROPPED`).
    Open { rate: f64, max_in_flight: usize },
}

/// One run: how, how long, and what counts as good.
#[derive(Debug, Clone)]
pub struct Plan {
    pub mode: Mode,
    /// The measured window.
    pub duration: Duration,
    /// Load before the window that is not measured.
    pub warmup: Duration,
    /// Successful answers within this (from the offer) count as goodput.
    pub deadline: Duration,
    /// Shown before the progress bar.
    pub label: String,
    /// Draw a progress bar on stderr (only drawn if stderr is a terminal).
    pub progress: bool,
}

impl Plan {
    /// A plan with no warm-up, no progress bar and a 1 s deadline.
    pub fn new(mode: Mode, duration: Duration) -> Self {
        Self {
            mode,
            duration,
            warmup: Duration::ZERO,
            deadline: Duration::from_secs(1),
            label: String::new(),
            progress: false,
        }
    }
}

/// What a run measured.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub summary: Summary,
    pub series: Vec<SecondRow>,
}

/// Measurements of a worker, or of a whole run.
#[derive(Debug, Default)]
struct Recorder {
    stats: Stats,
    series: Series,
}

impl Recorder {
    /// An operation offered `at` after measuring started.
    fn offer(&mut self, at: Duration) {
        self.stats.offered += 1;
        self.series.offer(at);
    }

    /// An answer `at` after measuring started, `latency` after its offer.
    fn complete(
        &mut self,
        at: Duration,
        latency: Duration,
        result: Result<(), String>,
        deadline: Duration,
    ) {
        let good = result.is_ok() && latency <= deadline;
        self.series.complete(at, latency, &result, good);
        self.stats.record(latency, result, good);
    }

    fn merge(&mut self, other: &Recorder) {
        self.stats.merge(&other.stats);
        self.series.merge(&other.series);
    }
}

/// Counters for the progress bar (warm-up included).
#[derive(Debug, Default)]
struct Live {
    offered: AtomicU64,
    ok: AtomicU64,
    failed: AtomicU64,
}

impl Live {
    fn answered(&self, result: &Result<(), String>) {
        let counter = if result.is_ok() {
            &self.ok
        } else {
            &self.failed
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// Whether a progress bar can be seen: stderr is a terminal.
pub fn stderr_is_terminal() -> bool {
    std::io::stderr().is_terminal()
}

fn progress_bar(plan: &Plan) -> ProgressBar {
    if !plan.progress || !stderr_is_terminal() {
        return ProgressBar::hidden();
    }
    let total = (plan.warmup + plan.duration).as_millis() as u64;
    let bar = ProgressBar::with_draw_target(Some(total.max(1)), ProgressDrawTarget::stderr());
    if let Ok(style) = ProgressStyle::with_template("{prefix} [{bar:20}] {msg}") {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_prefix(plan.label.clone());
    bar
}

/// Refreshes the bar every 200 ms until aborted (or, at the latest, well
/// after the run must have ended).
fn spawn_ticker(bar: ProgressBar, live: Arc<Live>, plan: &Plan) -> tokio::task::JoinHandle<()> {
    let (warmup, total) = (plan.warmup, plan.warmup + plan.duration);
    let give_up = total + plan.deadline + GRACE + Duration::from_secs(5);
    tokio::spawn(async move {
        let start = Instant::now();
        let tick = Duration::from_millis(200);
        let mut last_answered = 0;
        while start.elapsed() < give_up {
            tokio::time::sleep(tick).await;
            let elapsed = start.elapsed();
            let ok = live.ok.load(Ordering::Relaxed);
            let failed = live.failed.load(Ordering::Relaxed);
            let rate = (ok + failed).saturating_sub(last_answered) as f64 / tick.as_secs_f64();
            last_answered = ok + failed;
            let phase = if elapsed < warmup { " (warm-up)" } else { "" };
            bar.set_position(elapsed.min(total).as_millis() as u64);
            bar.set_message(format!(
                "{:.1}/{:.1}s {rate:.0}/s ok {ok} err {failed}{phase}",
                elapsed.as_secs_f64(),
                total.as_secs_f64()
            ));
        }
    })
}

/// Runs one operation, abandoning it `limit` after it began.
async fn guarded<T: Target>(target: &T, n: u64, limit: Duration) -> Result<(), String> {
    match tokio::time::timeout(limit, target.call(n)).await {
        Ok(result) => result,
        Err(_) => Err("ClientTimeout".into()),
    }
}

/// Runs `target` as `plan` says and summarises the measured window.
pub async fn run<T: Target>(target: Arc<T>, plan: &Plan) -> Outcome {
    let bar = progress_bar(plan);
    let live = Arc::new(Live::default());
    let ticker = spawn_ticker(bar.clone(), live.clone(), plan);
    let (recorder, seconds) = match plan.mode {
        Mode::Closed { workers } => closed(target, workers, plan, &live).await,
        Mode::Open {
            rate,
            max_in_flight,
        } => open(target, rate, max_in_flight, plan, &live).await,
    };
    ticker.abort();
    bar.finish_and_clear();
    Outcome {
        summary: recorder.stats.summary(seconds),
        series: recorder.series.rows(),
    }
}

/// Returns the measurements and the measured time: from the end of the
/// warm-up until the last worker stopped.
async fn closed<T: Target>(
    target: Arc<T>,
    workers: usize,
    plan: &Plan,
    live: &Arc<Live>,
) -> (Recorder, Duration) {
    let measure = Instant::now() + plan.warmup;
    let end = measure + plan.duration;
    let (deadline, limit) = (plan.deadline, plan.deadline + GRACE);
    let next = Arc::new(AtomicU64::new(0));
    let tasks: Vec<_> = (0..workers.max(1))
        .map(|_| {
            let (target, next, live) = (target.clone(), next.clone(), live.clone());
            tokio::spawn(async move {
                let mut recorder = Recorder::default();
                loop {
                    let started = Instant::now();
                    if started >= end {
                        break;
                    }
                    let measured = started >= measure;
                    if measured {
                        recorder.offer(started - measure);
                    }
                    live.offered.fetch_add(1, Ordering::Relaxed);
                    let n = next.fetch_add(1, Ordering::Relaxed);
                    let result = guarded(target.as_ref(), n, limit).await;
                    live.answered(&result);
                    if measured {
                        let done = Instant::now();
                        recorder.complete(done - measure, done - started, result, deadline);
                    }
                }
                recorder
            })
        })
        .collect();
    let mut total = Recorder::default();
    for task in tasks {
        if let Ok(recorder) = task.await {
            total.merge(&recorder);
        }
    }
    (total, Instant::now().saturating_duration_since(measure))
}

/// Returns the measurements and the measured time: the arrival window
/// (answers that arrive after it still count, in the seconds they arrive).
async fn open<T: Target>(
    target: Arc<T>,
    rate: f64,
    max_in_flight: usize,
    plan: &Plan,
    live: &Arc<Live>,
) -> (Recorder, Duration) {
    let rate = if rate.is_finite() {
        rate.max(1e-3)
    } else {
        1e-3
    };
    let start = Instant::now();
    let measure = start + plan.warmup;
    let end = measure + plan.duration;
    let (deadline, limit) = (plan.deadline, plan.deadline + GRACE);
    let arrivals = ((plan.warmup + plan.duration).as_secs_f64() * rate).ceil() as u64;
    let recorder = Arc::new(Mutex::new(Recorder::default()));
    let in_flight = Arc::new(AtomicUsize::new(0));
    let mut tasks = JoinSet::new();
    for n in 0..arrivals {
        let scheduled = start + Duration::from_secs_f64(n as f64 / rate);
        if scheduled >= end {
            break;
        }
        tokio::time::sleep_until(scheduled).await;
        // Reap what has finished, so the set holds only what is in flight.
        while tasks.try_join_next().is_some() {}
        live.offered.fetch_add(1, Ordering::Relaxed);
        let measured = scheduled >= measure;
        if measured && let Ok(mut r) = recorder.lock() {
            r.offer(scheduled - measure);
        }
        if in_flight.load(Ordering::Relaxed) >= max_in_flight {
            let result = Err(DROPPED.to_string());
            live.answered(&result);
            if measured && let Ok(mut r) = recorder.lock() {
                r.complete(scheduled - measure, Duration::ZERO, result, deadline);
            }
            continue;
        }
        in_flight.fetch_add(1, Ordering::Relaxed);
        let (target, recorder, in_flight, live) = (
            target.clone(),
            recorder.clone(),
            in_flight.clone(),
            live.clone(),
        );
        tasks.spawn(async move {
            let lag = scheduled.elapsed();
            let result = guarded(target.as_ref(), n, limit).await;
            // From the scheduled start: a late start is latency too.
            let done = Instant::now();
            in_flight.fetch_sub(1, Ordering::Relaxed);
            live.answered(&result);
            if measured && let Ok(mut r) = recorder.lock() {
                r.stats.record_lag(lag);
                r.complete(done - measure, done - scheduled, result, deadline);
            }
        });
    }
    // Every task ends by `limit`; wait a little longer at most.
    let drained = tokio::time::timeout(limit + Duration::from_secs(1), async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tasks.abort_all();
    }
    let total = match recorder.lock() {
        Ok(mut r) => std::mem::take(&mut *r),
        Err(_) => Recorder::default(),
    };
    (total, plan.duration)
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

    /// One operation at a time, 20 ms each: at most 50 per second.
    struct OneAtATime(tokio::sync::Mutex<()>);

    impl Target for OneAtATime {
        async fn call(&self, _n: u64) -> Result<(), String> {
            let _turn = self.0.lock().await;
            tokio::time::sleep(Duration::from_millis(20)).await;
            Ok(())
        }
    }

    #[tokio::test(start_paused = true)]
    async fn closed_loop_keeps_workers_busy() {
        let plan = Plan::new(Mode::Closed { workers: 4 }, Duration::from_secs(1));
        let s = run(Arc::new(Sleepy), &plan).await.summary;
        // 4 workers x 100 operations of 10 ms, every tenth failing.
        assert_eq!(s.ok + s.failed, 400);
        assert_eq!(s.failed, 40);
        assert_eq!(s.offered, 400);
        assert_eq!(s.good, 360);
        assert!((9.9..=10.1).contains(&s.p50_ms), "{}", s.p50_ms);
    }

    #[tokio::test(start_paused = true)]
    async fn open_loop_schedules_by_rate() {
        let mode = Mode::Open {
            rate: 200.0,
            max_in_flight: 1000,
        };
        let out = run(Arc::new(Sleepy), &Plan::new(mode, Duration::from_secs(2))).await;
        let s = out.summary;
        assert_eq!(s.ok + s.failed, 400);
        assert_eq!(s.offered, 400);
        assert!((s.seconds - 2.0).abs() < 1e-9);
        assert!(s.send_lag_max_ms < 1.0, "{}", s.send_lag_max_ms);
        // 200 offered in each second, the answers 10 ms later.
        assert_eq!(out.series.len(), 3);
        assert_eq!(out.series[0].offered, 200);
        assert_eq!(out.series[1].offered, 200);
        assert_eq!(out.series[2].offered, 0);
        let completed: u64 = out.series.iter().map(|r| r.completed).sum();
        assert_eq!(completed, 400);
    }

    #[tokio::test(start_paused = true)]
    async fn open_loop_counts_queueing_from_the_schedule() {
        // 100/s offered to a server that does 50/s: the queue grows by 50 a
        // second, and latency with it, which a closed loop would not show.
        let mode = Mode::Open {
            rate: 100.0,
            max_in_flight: 10_000,
        };
        let mut plan = Plan::new(mode, Duration::from_secs(2));
        plan.deadline = Duration::from_millis(500);
        let out = run(Arc::new(OneAtATime(Default::default())), &plan).await;
        let s = out.summary;
        assert!(s.p99_ms > 900.0, "p99 {} ms", s.p99_ms);
        assert!(s.good < s.ok, "good {} ok {}", s.good, s.ok);
        assert!(s.goodput < s.throughput);
        // Latency grows second by second.
        let p50 = |i: usize| out.series[i].p50_ms.unwrap_or(0.0);
        assert!(p50(1) > p50(0), "{:?}", out.series);
    }

    #[tokio::test(start_paused = true)]
    async fn open_loop_drops_beyond_the_cap() {
        let mode = Mode::Open {
            rate: 100.0,
            max_in_flight: 1,
        };
        let plan = Plan::new(mode, Duration::from_secs(1));
        let s = run(Arc::new(OneAtATime(Default::default())), &plan)
            .await
            .summary;
        assert_eq!(s.offered, 100);
        assert_eq!(s.ok + s.failed, 100);
        assert!(
            s.errors.get(DROPPED).copied().unwrap_or(0) >= 40,
            "{:?}",
            s.errors
        );
    }

    #[tokio::test(start_paused = true)]
    async fn warmup_is_not_measured() {
        let mode = Mode::Open {
            rate: 100.0,
            max_in_flight: 1000,
        };
        let mut plan = Plan::new(mode, Duration::from_secs(1));
        plan.warmup = Duration::from_secs(1);
        let out = run(Arc::new(Sleepy), &plan).await;
        assert_eq!(out.summary.offered, 100);
        assert_eq!(out.summary.ok + out.summary.failed, 100);
        assert_eq!(out.series[0].offered, 100);

        let mut plan = Plan::new(Mode::Closed { workers: 1 }, Duration::from_secs(1));
        plan.warmup = Duration::from_millis(500);
        let s = run(Arc::new(Sleepy), &plan).await.summary;
        assert_eq!(s.ok + s.failed, 100);
    }

    #[tokio::test(start_paused = true)]
    async fn a_hung_operation_is_abandoned() {
        struct Hangs;
        impl Target for Hangs {
            async fn call(&self, _n: u64) -> Result<(), String> {
                std::future::pending().await
            }
        }
        let mut plan = Plan::new(Mode::Closed { workers: 2 }, Duration::from_secs(1));
        plan.deadline = Duration::from_millis(100);
        let s = run(Arc::new(Hangs), &plan).await.summary;
        assert_eq!(s.ok, 0);
        assert!(s.errors.contains_key("ClientTimeout"));
        let mode = Mode::Open {
            rate: 10.0,
            max_in_flight: 1000,
        };
        let s = run(
            Arc::new(Hangs),
            &Plan {
                deadline: Duration::from_millis(100),
                ..Plan::new(mode, Duration::from_secs(1))
            },
        )
        .await
        .summary;
        assert_eq!(s.errors.get("ClientTimeout"), Some(&10));
    }
}
