//! Histories of register operations, as JSON lines in Jepsen's convention:
//! one event per line, in the order the events happened. `loadgen
//! register` writes them ([`Recorder`]); `loadgen check` reads them.
//!
//! ```text
//! {"process":3,"type":"invoke","f":"write","key":"k1","value":17,"time":812345678}
//! {"process":3,"type":"ok","f":"write","key":"k1","value":17,"time":813345678}
//! {"process":5,"type":"invoke","f":"cas","key":"k1","value":[17,42],"time":...}
//! {"process":5,"type":"fail","f":"cas","key":"k1","value":[17,42],"time":...}
//! ```

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

/// What an event says about its operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// The operation began.
    Invoke,
    /// It happened.
    Ok,
    /// It certainly did not happen.
    Fail,
    /// Unknown: it may have happened, at any time after its invocation,
    /// or never. The process is retired.
    Info,
}

/// The register operations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum F {
    Read,
    Write,
    Cas,
}

/// An event's `value`: an integer (a write, or what a read returned) or
/// `[expected, new]` (a compare-and-set). `null` (absent) is `None` around it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Value {
    Int(i64),
    Pair(Option<i64>, i64),
}

/// One line of a history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    pub process: u64,
    #[serde(rename = "type")]
    pub kind: Kind,
    pub f: F,
    pub key: String,
    pub value: Option<Value>,
    /// Nanoseconds on the machine's monotonic clock ([`monotonic_ns`]),
    /// the clock the nemesis stamps its faults with.
    pub time: u64,
}

/// Now, in nanoseconds on the machine's monotonic clock (CLOCK_MONOTONIC):
/// one clock for every process on the machine, so that a history and the
/// faults another process injected line up.
pub fn monotonic_ns() -> u64 {
    let now = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
    let secs = u64::try_from(now.tv_sec).unwrap_or(0);
    let nanos = u64::try_from(now.tv_nsec).unwrap_or(0);
    secs.saturating_mul(1_000_000_000).saturating_add(nanos)
}

/// Writes a history as its events happen: the time is taken under the
/// same lock as the write, so lines are in time order.
#[derive(Debug)]
pub struct Recorder {
    out: Mutex<BufWriter<File>>,
}

impl Recorder {
    /// Creates (or truncates) the history file.
    pub fn create(path: &Path) -> std::io::Result<Self> {
        Ok(Self {
            out: Mutex::new(BufWriter::new(File::create(path)?)),
        })
    }

    /// Appends one event, stamped with the time now.
    pub fn record(
        &self,
        process: u64,
        kind: Kind,
        f: F,
        key: &str,
        value: Option<Value>,
    ) -> std::io::Result<()> {
        let mut out = self
            .out
            .lock()
            .map_err(|_| std::io::Error::other("a history writer panicked"))?;
        let event = Event {
            process,
            kind,
            f,
            key: key.to_string(),
            value,
            time: monotonic_ns(),
        };
        serde_json::to_writer(&mut *out, &event)?;
        out.write_all(b"\n")
    }

    /// Writes out what is buffered.
    pub fn flush(&self) -> std::io::Result<()> {
        self.out
            .lock()
            .map_err(|_| std::io::Error::other("a history writer panicked"))?
            .flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_have_the_documented_shape() {
        let cases = [
            (
                Event {
                    process: 3,
                    kind: Kind::Ok,
                    f: F::Write,
                    key: "k1".into(),
                    value: Some(Value::Int(17)),
                    time: 813345678,
                },
                r#"{"process":3,"type":"ok","f":"write","key":"k1","value":17,"time":813345678}"#,
            ),
            (
                Event {
                    process: 4,
                    kind: Kind::Invoke,
                    f: F::Read,
                    key: "k1".into(),
                    value: None,
                    time: 1,
                },
                r#"{"process":4,"type":"invoke","f":"read","key":"k1","value":null,"time":1}"#,
            ),
            (
                Event {
                    process: 5,
                    kind: Kind::Fail,
                    f: F::Cas,
                    key: "k1".into(),
                    value: Some(Value::Pair(Some(17), 42)),
                    time: 2,
                },
                r#"{"process":5,"type":"fail","f":"cas","key":"k1","value":[17,42],"time":2}"#,
            ),
        ];
        for (event, line) in cases {
            assert_eq!(serde_json::to_string(&event).unwrap(), line);
            assert_eq!(serde_json::from_str::<Event>(line).unwrap(), event);
        }
    }

    #[test]
    fn the_recorder_writes_lines_in_time_order() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("h.jsonl");
        let recorder = Recorder::create(&path).unwrap();
        recorder
            .record(1, Kind::Invoke, F::Read, "k0", None)
            .unwrap();
        recorder
            .record(1, Kind::Ok, F::Read, "k0", Some(Value::Int(3)))
            .unwrap();
        recorder.flush().unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let events: Vec<Event> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(events.len(), 2);
        assert_eq!(events[1].value, Some(Value::Int(3)));
        assert!(events[0].time <= events[1].time);
    }
}
