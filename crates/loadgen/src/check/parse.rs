//! From history lines to each key's operations: pairs every invocation
//! with its completion and refuses a history that breaks the convention,
//! saying which line and what to fix.

use std::collections::{BTreeMap, HashMap};
use std::io::BufRead;

use super::model::{Op, Operation};
use crate::history::{Event, F, Kind, Value};

/// Why a history cannot be checked.
#[derive(Debug, thiserror::Error)]
pub enum BadHistory {
    #[error("cannot read the history: {0}")]
    Io(#[from] std::io::Error),
    #[error("line {line}: {message}")]
    Line { line: usize, message: String },
}

/// What the history holds, by outcome.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Counts {
    pub ok: usize,
    pub fail: usize,
    pub info: usize,
    /// Invoked but never completed: counted as `info`.
    pub open: usize,
}

/// Each key's operations in invocation order; `fail` operations and reads
/// of unknown outcome are left out (they changed nothing).
#[derive(Debug, Default)]
pub struct Parsed {
    pub keys: BTreeMap<String, Vec<Operation>>,
    pub counts: Counts,
}

struct Open {
    line: usize,
    f: F,
    key: String,
    value: Option<Value>,
    time: u64,
}

#[derive(Default)]
struct Pairing {
    parsed: Parsed,
    open: HashMap<u64, Open>,
    /// Processes retired by an `info`, and where.
    retired: HashMap<u64, usize>,
    last_time: u64,
}

/// Reads a history (JSON lines; blank lines are skipped).
pub fn parse(reader: impl BufRead) -> Result<Parsed, BadHistory> {
    let mut pairing = Pairing::default();
    for (i, text) in reader.lines().enumerate() {
        let text = text?;
        if text.trim().is_empty() {
            continue;
        }
        let line = i + 1;
        let event: Event = serde_json::from_str(&text).map_err(|e| BadHistory::Line {
            line,
            message: format!("not a history event ({e}); expected e.g. {EXAMPLE}"),
        })?;
        pairing
            .event(line, event)
            .map_err(|message| BadHistory::Line { line, message })?;
    }
    Ok(pairing.finish())
}

const EXAMPLE: &str =
    r#"{"process":3,"type":"invoke","f":"write","key":"k1","value":17,"time":812345678}"#;

impl Pairing {
    fn event(&mut self, line: usize, e: Event) -> Result<(), String> {
        if e.time < self.last_time {
            return Err(format!(
                "time {} is before the previous event's {}: events must be in the order they happened",
                e.time, self.last_time
            ));
        }
        self.last_time = e.time;
        if let Some(at) = self.retired.get(&e.process) {
            return Err(format!(
                "process {} was retired by the info at line {at}; a new process id must take its place",
                e.process
            ));
        }
        match e.kind {
            Kind::Invoke => self.invoke(line, e),
            _ => self.complete(line, e),
        }
    }

    fn invoke(&mut self, line: usize, e: Event) -> Result<(), String> {
        if let Some(open) = self.open.get(&e.process) {
            return Err(format!(
                "process {} invokes again while its operation from line {} is open",
                e.process, open.line
            ));
        }
        match (e.f, e.value) {
            (F::Read, _) | (F::Write, Some(Value::Int(_))) | (F::Cas, Some(Value::Pair(..))) => {}
            (F::Write, _) => return Err("a write's value must be an integer".into()),
            (F::Cas, _) => return Err("a cas's value must be [expected, new]".into()),
        }
        self.open.insert(
            e.process,
            Open {
                line,
                f: e.f,
                key: e.key,
                value: e.value,
                time: e.time,
            },
        );
        Ok(())
    }

    fn complete(&mut self, line: usize, e: Event) -> Result<(), String> {
        let Some(open) = self.open.remove(&e.process) else {
            return Err(format!(
                "process {} completes an operation it did not invoke",
                e.process
            ));
        };
        if open.f != e.f || open.key != e.key {
            return Err(format!(
                "this completion ({:?} of {:?}) does not match process {}'s invocation at line {} ({:?} of {:?})",
                e.f, e.key, e.process, open.line, open.f, open.key
            ));
        }
        let op = operation(&open, &e)?;
        let operation = Operation {
            process: e.process,
            op,
            call: open.line,
            ret: (e.kind == Kind::Ok).then_some(line),
            times: (open.time, Some(e.time)),
        };
        match e.kind {
            Kind::Ok => self.parsed.counts.ok += 1,
            Kind::Fail => self.parsed.counts.fail += 1,
            _ => {
                self.parsed.counts.info += 1;
                self.retired.insert(e.process, line);
            }
        }
        if e.kind != Kind::Fail && !(e.kind == Kind::Info && e.f == F::Read) {
            self.keep(open.key, operation);
        }
        Ok(())
    }

    fn keep(&mut self, key: String, op: Operation) {
        self.parsed.keys.entry(key).or_default().push(op);
    }

    /// Operations still open at the end are of unknown outcome.
    fn finish(mut self) -> Parsed {
        let mut open: Vec<(u64, Open)> = self.open.drain().collect();
        open.sort_by_key(|(_, o)| o.line);
        for (process, o) in open {
            self.parsed.counts.open += 1;
            let op = match (o.f, o.value) {
                (F::Write, Some(Value::Int(v))) => Op::Write(v),
                (F::Cas, Some(Value::Pair(expected, new))) => Op::Cas { expected, new },
                _ => continue,
            };
            let operation = Operation {
                process,
                op,
                call: o.line,
                ret: None,
                times: (o.time, None),
            };
            self.keep(o.key, operation);
        }
        for ops in self.parsed.keys.values_mut() {
            ops.sort_by_key(|o| o.call);
        }
        self.parsed
    }
}

/// The operation an invocation and its completion describe.
fn operation(open: &Open, e: &Event) -> Result<Op, String> {
    match (open.f, open.value) {
        (F::Read, _) => match (e.kind, e.value) {
            (Kind::Ok, Some(Value::Int(v))) => Ok(Op::Read(Some(v))),
            (Kind::Ok, None) => Ok(Op::Read(None)),
            (Kind::Ok, Some(Value::Pair(..))) => {
                Err("a read's ok value must be an integer or null".into())
            }
            _ => Ok(Op::Read(None)),
        },
        (F::Write, Some(Value::Int(v))) if e.value.is_none() || e.value == open.value => {
            Ok(Op::Write(v))
        }
        (F::Cas, Some(Value::Pair(expected, new)))
            if e.value.is_none() || e.value == open.value =>
        {
            Ok(Op::Cas { expected, new })
        }
        _ => Err(format!(
            "the completion's value {} differs from the invocation's at line {}",
            show(e.value),
            open.line
        )),
    }
}

fn show(value: Option<Value>) -> String {
    serde_json::to_string(&value).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_str(text: &str) -> Result<Parsed, BadHistory> {
        parse(text.as_bytes())
    }

    #[test]
    fn operations_pair_up_and_failures_drop_out() {
        let history = r#"
{"process":0,"type":"invoke","f":"write","key":"a","value":1,"time":1}
{"process":1,"type":"invoke","f":"read","key":"a","value":null,"time":2}
{"process":0,"type":"ok","f":"write","key":"a","value":1,"time":3}
{"process":1,"type":"ok","f":"read","key":"a","value":1,"time":4}
{"process":0,"type":"invoke","f":"cas","key":"b","value":[1,2],"time":5}
{"process":0,"type":"fail","f":"cas","key":"b","value":[1,2],"time":6}
{"process":0,"type":"invoke","f":"write","key":"b","value":3,"time":7}
{"process":0,"type":"info","f":"write","key":"b","value":3,"time":8}
{"process":1,"type":"invoke","f":"cas","key":"b","value":[3,4],"time":9}
"#;
        let parsed = parse_str(history).unwrap();
        assert_eq!(
            parsed.counts,
            Counts {
                ok: 2,
                fail: 1,
                info: 1,
                open: 1
            }
        );
        let a = &parsed.keys["a"];
        assert_eq!(a[0].op, Op::Write(1));
        assert_eq!((a[0].call, a[0].ret), (2, Some(4)));
        assert_eq!(a[1].op, Op::Read(Some(1)));
        let b = &parsed.keys["b"];
        assert_eq!(b.len(), 2);
        assert_eq!((b[0].op, b[0].ret), (Op::Write(3), None));
        assert_eq!(
            (b[1].op, b[1].ret),
            (
                Op::Cas {
                    expected: Some(3),
                    new: 4
                },
                None
            )
        );
    }

    #[test]
    fn broken_histories_name_the_line_and_the_fix() {
        let cases = [
            ("{not json}", "not a history event"),
            (
                r#"{"process":0,"type":"ok","f":"read","key":"a","value":1,"time":1}"#,
                "did not invoke",
            ),
            (
                r#"{"process":0,"type":"invoke","f":"write","key":"a","value":1,"time":1}
{"process":0,"type":"invoke","f":"write","key":"a","value":2,"time":2}"#,
                "invokes again",
            ),
            (
                r#"{"process":0,"type":"invoke","f":"write","key":"a","value":1,"time":5}
{"process":0,"type":"ok","f":"write","key":"a","value":1,"time":4}"#,
                "order they happened",
            ),
            (
                r#"{"process":0,"type":"invoke","f":"write","key":"a","value":1,"time":1}
{"process":0,"type":"info","f":"write","key":"a","value":1,"time":2}
{"process":0,"type":"invoke","f":"read","key":"a","value":null,"time":3}"#,
                "retired",
            ),
            (
                r#"{"process":0,"type":"invoke","f":"cas","key":"a","value":5,"time":1}"#,
                "[expected, new]",
            ),
            (
                r#"{"process":0,"type":"invoke","f":"write","key":"a","value":1,"time":1}
{"process":0,"type":"ok","f":"write","key":"b","value":1,"time":2}"#,
                "does not match",
            ),
            (
                r#"{"process":0,"type":"invoke","f":"write","key":"a","value":1,"time":1}
{"process":0,"type":"ok","f":"write","key":"a","value":2,"time":2}"#,
                "differs",
            ),
        ];
        for (history, says) in cases {
            let error = parse_str(history).unwrap_err().to_string();
            assert!(error.starts_with("line "), "{error}");
            assert!(error.contains(says), "{history}: {error}");
        }
    }
}
