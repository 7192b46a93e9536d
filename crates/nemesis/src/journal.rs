//! `faults.jsonl`: what the nemesis did and when, one JSON object a line,
//! stamped on the same monotonic clock as the workload's history:
//!
//! ```text
//! {"time":812345678,"type":"start","fault":"kill leader","targets":["storage-s1-r2"]}
//! {"time":815345678,"type":"end","fault":"kill leader","targets":["storage-s1-r2"]}
//! ```

use std::fs::File;
use std::io::Write;
use std::path::Path;

use loadgen::history::monotonic_ns;
use serde::{Deserialize, Serialize};

use crate::NemesisError;

/// Whether a fault began or was healed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    Start,
    End,
}

/// One line of the journal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FaultEvent {
    pub time: u64,
    #[serde(rename = "type")]
    pub phase: Phase,
    pub fault: String,
    pub targets: Vec<String>,
}

/// Appends events as they happen (each line written through at once, so
/// the journal is complete up to a crash of the nemesis).
#[derive(Debug)]
pub struct Journal {
    out: File,
}

impl Journal {
    /// Creates (or truncates) the journal.
    pub fn create(path: &Path) -> Result<Self, NemesisError> {
        Ok(Self {
            out: File::create(path)
                .map_err(NemesisError::io(format!("create {}", path.display())))?,
        })
    }

    /// Records `fault` on `targets` starting or ending now.
    pub fn record(
        &mut self,
        phase: Phase,
        fault: &str,
        targets: &[String],
    ) -> Result<(), NemesisError> {
        let event = FaultEvent {
            time: monotonic_ns(),
            phase,
            fault: fault.to_string(),
            targets: targets.to_vec(),
        };
        let mut line = serde_json::to_vec(&event)
            .map_err(|e| NemesisError::Setup(format!("encode a fault: {e}")))?;
        line.push(b'\n');
        self.out
            .write_all(&line)
            .map_err(NemesisError::io("write the journal"))
    }
}

/// Reads a journal.
pub fn read(path: &Path) -> Result<Vec<FaultEvent>, NemesisError> {
    let text = std::fs::read_to_string(path)
        .map_err(NemesisError::io(format!("read {}", path.display())))?;
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(n, l)| {
            serde_json::from_str(l)
                .map_err(|e| NemesisError::Setup(format!("{} line {}: {e}", path.display(), n + 1)))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::expect_used)]
    use super::*;

    #[test]
    fn what_is_recorded_reads_back_in_order() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("faults.jsonl");
        let mut journal = Journal::create(&path).expect("create");
        let who = vec!["storage-s0-r1".to_string()];
        journal
            .record(Phase::Start, "kill leader", &who)
            .expect("start");
        journal
            .record(Phase::End, "kill leader", &who)
            .expect("end");
        let events = read(&path).expect("read");
        assert_eq!(events.len(), 2);
        assert_eq!(
            (events[0].phase, events[1].phase),
            (Phase::Start, Phase::End)
        );
        assert!(events[0].time <= events[1].time);
        let line = std::fs::read_to_string(&path).expect("text");
        assert!(line.starts_with(r#"{"time":"#), "{line}");
        assert!(
            line.contains(r#""type":"start","fault":"kill leader","targets":["storage-s0-r1"]"#),
            "{line}"
        );
    }
}
