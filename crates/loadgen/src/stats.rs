//! What a run measured: a latency histogram (HDR, microseconds) of the
//! successful operations, how many of them were within the deadline
//! (goodput), and counts of failures by kind.

use std::collections::BTreeMap;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

/// Measurements of one worker or of a whole run.
#[derive(Debug, Clone)]
pub struct Stats {
    latency: Histogram<u64>,
    /// Open loop: how late each request was sent after its scheduled time
    /// (µs) — loadgen falling behind, e.g. starved of CPU.
    lag: Histogram<u64>,
    /// Operations offered (scheduled or started), failed ones included.
    pub offered: u64,
    pub ok: u64,
    /// Successful operations that answered within the deadline.
    pub good: u64,
    pub errors: BTreeMap<String, u64>,
}

impl Default for Stats {
    fn default() -> Self {
        Self::new()
    }
}

impl Stats {
    /// Empty: latencies from 1 µs to 10 minutes, 3 significant digits.
    pub fn new() -> Self {
        Self {
            latency: histogram(),
            lag: histogram(),
            offered: 0,
            ok: 0,
            good: 0,
            errors: BTreeMap::new(),
        }
    }

    /// Records one answer; `good` when it was successful within the deadline.
    pub fn record(&mut self, latency: Duration, result: Result<(), String>, good: bool) {
        match result {
            Ok(()) => {
                self.ok += 1;
                if good {
                    self.good += 1;
                }
                let micros = u64::try_from(latency.as_micros())
                    .unwrap_or(u64::MAX)
                    .max(1);
                self.latency.saturating_record(micros);
            }
            Err(kind) => *self.errors.entry(kind).or_default() += 1,
        }
    }

    /// Records how late an open-loop request was sent.
    pub fn record_lag(&mut self, lag: Duration) {
        let micros = u64::try_from(lag.as_micros()).unwrap_or(u64::MAX);
        self.lag.saturating_record(micros);
    }

    /// Adds another worker's measurements.
    pub fn merge(&mut self, other: &Stats) {
        let _ = self.latency.add(&other.latency);
        let _ = self.lag.add(&other.lag);
        self.offered += other.offered;
        self.ok += other.ok;
        self.good += other.good;
        for (k, v) in &other.errors {
            *self.errors.entry(k.clone()).or_default() += v;
        }
    }

    /// Failed operations.
    pub fn failed(&self) -> u64 {
        self.errors.values().sum()
    }

    /// The summary over `elapsed`.
    pub fn summary(&self, elapsed: Duration) -> Summary {
        let ms = |q: f64| self.latency.value_at_quantile(q) as f64 / 1000.0;
        let secs = elapsed.as_secs_f64().max(1e-9);
        let failed = self.failed();
        let answered = self.ok + failed;
        Summary {
            ok: self.ok,
            failed,
            seconds: secs,
            throughput: self.ok as f64 / secs,
            offered: self.offered,
            good: self.good,
            goodput: self.good as f64 / secs,
            error_rate: if answered == 0 {
                0.0
            } else {
                failed as f64 / answered as f64
            },
            p50_ms: ms(0.50),
            p90_ms: ms(0.90),
            p99_ms: ms(0.99),
            p999_ms: ms(0.999),
            max_ms: self.latency.max() as f64 / 1000.0,
            send_lag_p99_ms: self.lag.value_at_quantile(0.99) as f64 / 1000.0,
            send_lag_max_ms: self.lag.max() as f64 / 1000.0,
            errors: self.errors.clone(),
        }
    }
}

/// Latencies from 1 µs to 10 minutes, 3 significant digits.
fn histogram() -> Histogram<u64> {
    match Histogram::new_with_bounds(1, 600_000_000, 3) {
        Ok(h) => h,
        // Constant bounds that satisfy hdrhistogram's rules.
        Err(e) => unreachable!("valid histogram bounds: {e}"),
    }
}

/// A run's numbers.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Summary {
    pub ok: u64,
    pub failed: u64,
    pub seconds: f64,
    /// Successful operations per second.
    pub throughput: f64,
    /// Operations offered (scheduled or started).
    #[serde(default)]
    pub offered: u64,
    /// Successful operations within the deadline.
    #[serde(default)]
    pub good: u64,
    /// `good` per second.
    #[serde(default)]
    pub goodput: f64,
    /// Failed / answered.
    #[serde(default)]
    pub error_rate: f64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
    /// Open loop: how late loadgen sent requests after their scheduled
    /// time (p99 and max). Large values mean loadgen itself fell behind.
    #[serde(default)]
    pub send_lag_p99_ms: f64,
    #[serde(default)]
    pub send_lag_max_ms: f64,
    pub errors: BTreeMap<String, u64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_and_merge() {
        let mut a = Stats::new();
        for ms in 1..=100 {
            a.record(Duration::from_millis(ms), Ok(()), ms <= 80);
        }
        let mut b = Stats::new();
        b.record(Duration::from_millis(5), Err("Unavailable".into()), false);
        a.merge(&b);
        let s = a.summary(Duration::from_secs(2));
        assert_eq!((s.ok, s.failed), (100, 1));
        assert!((s.throughput - 50.0).abs() < 1e-9);
        assert_eq!(s.good, 80);
        assert!((s.goodput - 40.0).abs() < 1e-9);
        assert!((s.error_rate - 1.0 / 101.0).abs() < 1e-9);
        assert!((49.0..=51.0).contains(&s.p50_ms), "{}", s.p50_ms);
        assert!((99.0..=100.5).contains(&s.p99_ms), "{}", s.p99_ms);
        assert_eq!(s.errors.get("Unavailable"), Some(&1));
    }
}
