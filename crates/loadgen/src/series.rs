//! Per-second time series of a run. Arrivals count in the second they were
//! *offered* (scheduled, in open loop; started, in closed loop); answers
//! count in the second they *completed*, with their latency measured from
//! the offer, so a second in which the server stalled shows up as a second
//! with few completions and, right after, seconds with long latencies.

use std::collections::BTreeMap;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

/// The longest series kept (a day): later seconds fold into the last one.
pub const MAX_SECONDS: usize = 86_400;

/// One second's measurements.
#[derive(Debug, Clone)]
struct Bucket {
    offered: u64,
    ok: u64,
    good: u64,
    errors: BTreeMap<String, u64>,
    /// Latencies of the successful answers, µs, 2 significant digits (1%),
    /// up to a minute: about 10 KB a second.
    latency: Histogram<u32>,
}

impl Bucket {
    fn new() -> Self {
        Self {
            offered: 0,
            ok: 0,
            good: 0,
            errors: BTreeMap::new(),
            latency: match Histogram::new_with_bounds(1, 60_000_000, 2) {
                Ok(h) => h,
                // Constant bounds that satisfy hdrhistogram's rules.
                Err(e) => unreachable!("valid histogram bounds: {e}"),
            },
        }
    }
}

/// A run's per-second measurements, second 0 starting when measuring does.
#[derive(Debug, Clone, Default)]
pub struct Series {
    buckets: Vec<Bucket>,
}

/// The second `at` falls in, `at` being the time since measuring started.
pub fn second_of(at: Duration) -> usize {
    usize::try_from(at.as_secs())
        .unwrap_or(usize::MAX)
        .min(MAX_SECONDS - 1)
}

impl Series {
    /// Empty.
    pub fn new() -> Self {
        Self::default()
    }

    fn bucket(&mut self, second: usize) -> &mut Bucket {
        let second = second.min(MAX_SECONDS - 1);
        if self.buckets.len() <= second {
            self.buckets.resize_with(second + 1, Bucket::new);
        }
        &mut self.buckets[second]
    }

    /// An operation offered at `at` (since measuring started).
    pub fn offer(&mut self, at: Duration) {
        self.bucket(second_of(at)).offered += 1;
    }

    /// An answer at `at` (since measuring started), `latency` after its offer;
    /// `good` when it was successful and within the deadline.
    pub fn complete(
        &mut self,
        at: Duration,
        latency: Duration,
        result: &Result<(), String>,
        good: bool,
    ) {
        let bucket = self.bucket(second_of(at));
        match result {
            Ok(()) => {
                bucket.ok += 1;
                if good {
                    bucket.good += 1;
                }
                let micros = u64::try_from(latency.as_micros())
                    .unwrap_or(u64::MAX)
                    .max(1);
                bucket.latency.saturating_record(micros);
            }
            Err(kind) => *bucket.errors.entry(kind.clone()).or_default() += 1,
        }
    }

    /// Adds another worker's series, second by second.
    pub fn merge(&mut self, other: &Series) {
        for (second, theirs) in other.buckets.iter().enumerate() {
            let mine = self.bucket(second);
            mine.offered += theirs.offered;
            mine.ok += theirs.ok;
            mine.good += theirs.good;
            for (k, v) in &theirs.errors {
                *mine.errors.entry(k.clone()).or_default() += v;
            }
            let _ = mine.latency.add(&theirs.latency);
        }
    }

    /// One row per second, from second 0 to the last with anything in it.
    pub fn rows(&self) -> Vec<SecondRow> {
        self.buckets
            .iter()
            .enumerate()
            .map(|(second, b)| {
                let ms =
                    |q: f64| (b.ok > 0).then(|| b.latency.value_at_quantile(q) as f64 / 1000.0);
                let failed: u64 = b.errors.values().sum();
                SecondRow {
                    second: second as u64,
                    offered: b.offered,
                    completed: b.ok + failed,
                    ok: b.ok,
                    good: b.good,
                    failed,
                    errors: b.errors.clone(),
                    p50_ms: ms(0.50),
                    p90_ms: ms(0.90),
                    p99_ms: ms(0.99),
                    max_ms: (b.ok > 0).then(|| b.latency.max() as f64 / 1000.0),
                }
            })
            .collect()
    }
}

/// One second of a run, as reported (JSON `series`, `--csv`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SecondRow {
    /// Seconds since measuring started (after any warm-up).
    pub second: u64,
    /// Operations offered (scheduled or started) in this second.
    pub offered: u64,
    /// Answers that arrived in this second (`ok` + `failed`).
    pub completed: u64,
    pub ok: u64,
    /// Successful answers within the deadline (goodput).
    pub good: u64,
    pub failed: u64,
    /// Failures by kind (a gRPC code, or `dropped`, `ClientTimeout`).
    #[serde(default)]
    pub errors: BTreeMap<String, u64>,
    /// Latency percentiles of this second's successful answers (none: no
    /// success in this second).
    pub p50_ms: Option<f64>,
    pub p90_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    pub max_ms: Option<f64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn buckets_by_offer_and_completion_second() {
        let mut s = Series::new();
        // Offered in second 0, answered in second 1, 1.2 s after its offer.
        s.offer(ms(900));
        s.complete(ms(2100), ms(1200), &Ok(()), false);
        // Offered and answered in second 0.
        s.offer(ms(100));
        s.complete(ms(110), ms(10), &Ok(()), true);
        // A failure in second 2, nothing offered there.
        s.complete(ms(2500), ms(1000), &Err("Unavailable".into()), false);
        let rows = s.rows();
        assert_eq!(rows.len(), 3);
        assert_eq!(
            (rows[0].offered, rows[0].completed, rows[0].ok, rows[0].good),
            (2, 1, 1, 1)
        );
        let p50 = rows[0].p50_ms.unwrap_or(0.0);
        assert!((9.9..=10.1).contains(&p50), "{p50}");
        assert_eq!((rows[1].offered, rows[1].completed), (0, 0));
        assert_eq!(rows[1].p99_ms, None);
        assert_eq!((rows[2].ok, rows[2].good, rows[2].failed), (1, 0, 1));
        assert_eq!(rows[2].errors.get("Unavailable"), Some(&1));
        assert!((1190.0..=1210.0).contains(&rows[2].max_ms.unwrap_or(0.0)));
    }

    #[test]
    fn percentiles_of_one_second() {
        let mut s = Series::new();
        for i in 1..=100 {
            s.offer(ms(i));
            s.complete(ms(500), ms(i), &Ok(()), true);
        }
        let rows = s.rows();
        assert_eq!(rows.len(), 1);
        let r = &rows[0];
        assert_eq!((r.offered, r.ok, r.good), (100, 100, 100));
        let p50 = r.p50_ms.unwrap_or(0.0);
        let p99 = r.p99_ms.unwrap_or(0.0);
        assert!((49.0..=51.0).contains(&p50), "{p50}");
        assert!((98.0..=101.0).contains(&p99), "{p99}");
    }

    #[test]
    fn merges_series_of_different_lengths() {
        let mut a = Series::new();
        a.offer(ms(0));
        a.complete(ms(5), ms(5), &Ok(()), true);
        let mut b = Series::new();
        b.offer(ms(3000));
        b.complete(ms(3001), ms(1), &Err("dropped".into()), false);
        a.merge(&b);
        let rows = a.rows();
        assert_eq!(rows.len(), 4);
        assert_eq!((rows[0].offered, rows[0].ok), (1, 1));
        assert_eq!((rows[3].offered, rows[3].failed), (1, 1));
    }

    #[test]
    fn far_seconds_fold_into_the_last() {
        assert_eq!(second_of(Duration::from_secs(10 * 86_400)), MAX_SECONDS - 1);
        assert_eq!(second_of(ms(1999)), 1);
    }
}
