//! `nemesis report`: `report.md` and a chart from what the workload saw
//! (a register history, or the bank's per-second series) and the faults
//! journal, both on the one monotonic clock.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;
use std::process::ExitCode;

use loadgen::history::{Event, Kind};
use loadgen::plot::{Chart, FaultData, FaultSpan, draw_file};

use crate::NemesisError;
use crate::cli::ReportArgs;
use crate::journal::{FaultEvent, Phase};

/// No successful operation for this long is an unavailability window.
const WINDOW_S: f64 = 1.0;

/// One second's outcomes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Second {
    pub ok: u64,
    pub fail: u64,
    pub info: u64,
}

/// What a run looked like, in seconds since it began.
#[derive(Debug, Clone, Default)]
pub struct Run {
    pub seconds: Vec<Second>,
    /// The time of each successful operation, in order, per key (a
    /// register's keys live on different shards: one shard down leaves
    /// the others serving); one series `all` for the bank.
    pub oks: BTreeMap<String, Vec<f64>>,
    pub faults: Vec<FaultSpan>,
    pub targets: Vec<String>,
    /// The run's length.
    pub length: f64,
}

/// A stretch with no successful operation on a key.
#[derive(Debug, Clone, PartialEq)]
pub struct Window {
    pub key: String,
    pub from: f64,
    pub to: f64,
}

fn secs(time: u64, origin: u64) -> f64 {
    time.saturating_sub(origin) as f64 / 1e9
}

fn bucket(seconds: &mut Vec<Second>, at: f64) -> &mut Second {
    let i = at.max(0.0) as usize;
    if seconds.len() <= i {
        seconds.resize(i + 1, Second::default());
    }
    &mut seconds[i]
}

/// Pairs each fault's start with its end (a fault never ended lasts to `end`).
fn spans(faults: &[FaultEvent], origin: u64, end: f64) -> (Vec<FaultSpan>, Vec<String>) {
    let mut open: BTreeMap<(String, Vec<String>), f64> = BTreeMap::new();
    let mut spans = Vec::new();
    let mut targets = Vec::new();
    for f in faults {
        let key = (f.fault.clone(), f.targets.clone());
        match f.phase {
            Phase::Start => {
                open.insert(key, secs(f.time, origin));
            }
            Phase::End => {
                if let Some(from) = open.remove(&key) {
                    spans.push(FaultSpan {
                        from,
                        to: secs(f.time, origin),
                        kind: f.fault.clone(),
                    });
                    targets.push(f.targets.join(", "));
                }
            }
        }
    }
    for ((kind, who), from) in open {
        spans.push(FaultSpan {
            from,
            to: end,
            kind,
        });
        targets.push(who.join(", "));
    }
    (spans, targets)
}

/// A register history under `faults`, from the history's first event.
pub fn from_history(events: &[Event], faults: &[FaultEvent]) -> Run {
    let origin = events.first().map_or(0, |e| e.time);
    let mut run = Run::default();
    for e in events {
        let at = secs(e.time, origin);
        let second = bucket(&mut run.seconds, at);
        match e.kind {
            Kind::Invoke => {}
            Kind::Ok => {
                second.ok += 1;
                run.oks.entry(e.key.clone()).or_default().push(at);
            }
            Kind::Fail => second.fail += 1,
            Kind::Info => second.info += 1,
        }
        run.length = at;
    }
    (run.faults, run.targets) = spans(faults, origin, run.length);
    run
}

/// The bank's per-second series (second 0 at `start`) under `faults`.
/// Successes are known per second only.
pub fn from_series(rows: &[loadgen::series::SecondRow], start: u64, faults: &[FaultEvent]) -> Run {
    let mut run = Run::default();
    for row in rows {
        let at = row.second as f64;
        *bucket(&mut run.seconds, at) = Second {
            ok: row.ok,
            fail: row.failed,
            info: 0,
        };
        if row.ok > 0 {
            // The second's two ends: a second with no success between
            // two that had some is then a gap of just over a second.
            let oks = run.oks.entry("all".into()).or_default();
            oks.extend([at + 0.001, at + 0.999]);
        }
        run.length = at + 1.0;
    }
    (run.faults, run.targets) = spans(faults, start, run.length);
    run
}

/// Every stretch of at least `WINDOW_S` without a successful operation
/// on a key, in time order.
pub fn windows(run: &Run) -> Vec<Window> {
    let mut windows = Vec::new();
    for (key, oks) in &run.oks {
        let mut last = 0.0;
        for &at in oks.iter().chain(std::iter::once(&run.length)) {
            if at - last >= WINDOW_S {
                windows.push(Window {
                    key: key.clone(),
                    from: last,
                    to: at,
                });
            }
            last = at;
        }
    }
    windows.sort_by(|a, b| a.from.total_cmp(&b.from));
    windows
}

/// The faults in force during `window`.
fn in_force(run: &Run, window: &Window) -> String {
    let names: Vec<String> = run
        .faults
        .iter()
        .zip(&run.targets)
        .filter(|(f, _)| f.from < window.to && f.to > window.from)
        .map(|(f, who)| format!("{} ({who})", f.kind))
        .collect();
    if names.is_empty() {
        "none".into()
    } else {
        names.join("; ")
    }
}

/// A run in numbers (`summary.json`, one row of docs/correctness.md's table).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Summary {
    pub passed: bool,
    pub seconds: f64,
    pub ok: u64,
    pub fail: u64,
    pub info: u64,
    /// How many faults of each kind (`kill leader`: 3).
    pub faults: BTreeMap<String, u64>,
    pub windows: usize,
    pub longest_window_s: f64,
}

/// The numbers of `run`.
pub fn summary(run: &Run, passed: bool) -> Summary {
    let total = run.seconds.iter().fold(Second::default(), |a, s| Second {
        ok: a.ok + s.ok,
        fail: a.fail + s.fail,
        info: a.info + s.info,
    });
    let mut faults = BTreeMap::new();
    for f in &run.faults {
        *faults.entry(f.kind.clone()).or_default() += 1;
    }
    let windows = windows(run);
    Summary {
        passed,
        seconds: run.length,
        ok: total.ok,
        fail: total.fail,
        info: total.info,
        faults,
        windows: windows.len(),
        longest_window_s: windows.iter().map(|w| w.to - w.from).fold(0.0, f64::max),
    }
}

/// The report's Markdown.
pub fn markdown(title: &str, run: &Run, verdict: &str, passed: bool, chart: &str) -> String {
    let total = summary(run, passed);
    let windows = windows(run);
    let mut out = String::new();
    let _ = writeln!(out, "# {title}\n");
    let _ = writeln!(
        out,
        "**Verdict: {}** — {} ok, {} fail, {} info over {:.0} s; {} faults; {} unavailability windows (a key without a success for ≥ {WINDOW_S} s).\n",
        if passed { "no anomaly" } else { "ANOMALY" },
        total.ok,
        total.fail,
        total.info,
        run.length,
        run.faults.len(),
        windows.len()
    );
    let _ = writeln!(out, "![operations per second under the faults]({chart})\n");
    let _ = writeln!(
        out,
        "## Faults\n\n| # | fault | replicas | from s | to s | held s |\n|---:|---|---|---:|---:|---:|"
    );
    for (i, (f, who)) in run.faults.iter().zip(&run.targets).enumerate() {
        let _ = writeln!(
            out,
            "| {} | {} | {who} | {:.1} | {:.1} | {:.1} |",
            i + 1,
            f.kind,
            f.from,
            f.to,
            f.to - f.from
        );
    }
    let _ = writeln!(
        out,
        "\n## Unavailability windows\n\n| key | from s | to s | length s | faults in force |\n|---|---:|---:|---:|---|"
    );
    for w in &windows {
        let _ = writeln!(
            out,
            "| {} | {:.1} | {:.1} | {:.1} | {} |",
            w.key,
            w.from,
            w.to,
            w.to - w.from,
            in_force(run, w)
        );
    }
    let _ = writeln!(
        out,
        "\n## Per second\n\n| s | ok | fail | info |\n|---:|---:|---:|---:|"
    );
    for (i, s) in run.seconds.iter().enumerate() {
        let _ = writeln!(out, "| {i} | {} | {} | {} |", s.ok, s.fail, s.info);
    }
    let _ = writeln!(out, "\n## Verdict\n\n```text\n{}\n```", verdict.trim_end());
    out
}

fn chart_data(run: &Run) -> FaultData {
    let points = |f: fn(&Second) -> u64| -> Vec<(f64, f64)> {
        run.seconds
            .iter()
            .enumerate()
            .map(|(i, s)| (i as f64 + 0.5, f(s) as f64))
            .collect()
    };
    FaultData {
        ok: points(|s| s.ok),
        fail: points(|s| s.fail),
        info: points(|s| s.info),
        faults: run.faults.clone(),
        seconds: run.length.max(1.0),
    }
}

fn read_history(path: &Path) -> Result<Vec<Event>, NemesisError> {
    let text = std::fs::read_to_string(path)
        .map_err(NemesisError::io(format!("read {}", path.display())))?;
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            serde_json::from_str(l)
                .map_err(|e| NemesisError::Setup(format!("{}: {e}", path.display())))
        })
        .collect()
}

/// Writes the report and the chart; exits non-zero when the run failed.
pub fn write(args: &ReportArgs) -> Result<ExitCode, NemesisError> {
    let faults = crate::journal::read(&args.faults)?;
    let run = match (&args.history, &args.series, args.series_start) {
        (Some(history), _, _) => from_history(&read_history(history)?, &faults),
        (None, Some(series), Some(start)) => {
            let rows = loadgen::report::read_json(series)
                .map_err(|e| NemesisError::Setup(format!("{}: {e}", series.display())))?;
            let seconds: Vec<_> = rows.into_iter().flat_map(|r| r.series).collect();
            from_series(&seconds, start, &faults)
        }
        _ => {
            return Err(NemesisError::Setup(
                "give --history, or --series with --series-start".into(),
            ));
        }
    };
    let verdict = std::fs::read_to_string(&args.verdict)
        .map_err(NemesisError::io(format!("read {}", args.verdict.display())))?;
    let chart_name = args
        .chart
        .file_name()
        .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
    draw_file(
        &args.chart,
        (1400, 800),
        &args.title,
        &Chart::Faults(Box::new(chart_data(&run))),
    )
    .map_err(|e| NemesisError::Setup(format!("draw {}: {e}", args.chart.display())))?;
    let text = markdown(&args.title, &run, &verdict, args.passed, &chart_name);
    let numbers = args.out.with_extension("json");
    let json = serde_json::to_string_pretty(&summary(&run, args.passed))
        .map_err(|e| NemesisError::Setup(format!("encode the summary: {e}")))?;
    std::fs::write(&numbers, json)
        .map_err(NemesisError::io(format!("write {}", numbers.display())))?;
    std::fs::write(&args.out, text)
        .map_err(NemesisError::io(format!("write {}", args.out.display())))?;
    Ok(if args.passed {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

#[cfg(test)]
mod tests {
    use loadgen::history::F;

    use super::*;

    const S: u64 = 1_000_000_000;

    fn event(kind: Kind, time: u64) -> Event {
        Event {
            process: 1,
            kind,
            f: F::Read,
            key: "k".into(),
            value: None,
            time,
        }
    }

    fn fault(phase: Phase, time: u64) -> FaultEvent {
        FaultEvent {
            time,
            phase,
            fault: "kill leader".into(),
            targets: vec!["storage-s0-r1".into()],
        }
    }

    /// Oks at 0-2 s, nothing from 2 s to 5.5 s (a leader killed at 2.2 s,
    /// back at 4 s), then oks again, one unknown outcome at 3 s.
    fn run() -> Run {
        let origin = 100 * S;
        let mut events = Vec::new();
        for t in [0, S / 2, S, 3 * S / 2, 2 * S, 11 * S / 2, 6 * S] {
            events.push(event(Kind::Invoke, origin + t));
            events.push(event(Kind::Ok, origin + t));
        }
        events.push(event(Kind::Info, origin + 3 * S));
        events.sort_by_key(|e| e.time);
        from_history(
            &events,
            &[
                fault(Phase::Start, origin + 22 * S / 10),
                fault(Phase::End, origin + 4 * S),
            ],
        )
    }

    #[test]
    fn counts_each_second_and_finds_the_window_under_the_fault() {
        let run = run();
        assert_eq!(
            run.seconds[0],
            Second {
                ok: 2,
                fail: 0,
                info: 0
            }
        );
        assert_eq!(
            run.seconds[3],
            Second {
                ok: 0,
                fail: 0,
                info: 1
            }
        );
        let key = "k".to_string();
        assert_eq!(
            windows(&run),
            vec![Window {
                key,
                from: 2.0,
                to: 5.5
            }]
        );
        assert_eq!(run.faults.len(), 1);
        assert!((run.faults[0].from - 2.2).abs() < 1e-9);
        assert_eq!(
            in_force(&run, &windows(&run)[0]),
            "kill leader (storage-s0-r1)"
        );
    }

    #[test]
    fn the_markdown_carries_the_verdict_and_the_tables() {
        let text = markdown("t", &run(), "linearizable: 1 keys", true, "chart.svg");
        assert!(
            text.contains("**Verdict: no anomaly** — 7 ok, 0 fail, 1 info"),
            "{text}"
        );
        assert!(
            text.contains("| 1 | kill leader | storage-s0-r1 | 2.2 | 4.0 | 1.8 |"),
            "{text}"
        );
        assert!(
            text.contains("| k | 2.0 | 5.5 | 3.5 | kill leader (storage-s0-r1) |"),
            "{text}"
        );
        assert!(markdown("t", &run(), "", false, "c.svg").contains("**Verdict: ANOMALY**"));
    }

    #[test]
    fn in_a_series_only_a_second_without_success_is_a_window() {
        let rows: Vec<loadgen::series::SecondRow> = [5, 5, 0, 5, 7]
            .iter()
            .enumerate()
            .map(|(second, ok)| {
                serde_json::from_value(serde_json::json!({
                    "second": second, "offered": 7, "completed": 7, "ok": ok, "good": ok,
                    "failed": 7 - ok, "errors": {}, "p50_ms": null, "p90_ms": null,
                    "p99_ms": null, "max_ms": null
                }))
                .unwrap()
            })
            .collect();
        let run = from_series(&rows, 0, &[]);
        let found = windows(&run);
        assert_eq!(found.len(), 1, "{found:?}");
        assert!((found[0].from - 1.999).abs() < 1e-9 && (found[0].to - 3.001).abs() < 1e-9);
        assert_eq!(
            run.seconds[2],
            Second {
                ok: 0,
                fail: 7,
                info: 0
            }
        );
    }

    #[test]
    fn a_fault_never_healed_lasts_to_the_end() {
        let (spans, _) = spans(&[fault(Phase::Start, 3 * S)], S, 9.0);
        assert_eq!((spans[0].from, spans[0].to), (2.0, 9.0));
    }
}
