//! The register: operations of one key, how each changes the state, and
//! which operations of unknown outcome can be left out before searching.

use std::collections::HashSet;

/// The register's state: its value, `None` when absent (the start).
pub type State = Option<i64>;

/// What an operation does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// A read that returned this.
    Read(State),
    /// A write of this value.
    Write(i64),
    /// A compare-and-set: if the value is `expected`, make it `new`.
    Cas { expected: State, new: i64 },
}

/// One operation of one key, as the history recorded it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Operation {
    pub process: u64,
    pub op: Op,
    /// Line of the invocation in the history (events are ordered by line).
    pub call: usize,
    /// Line of the `ok` completion; `None` for an `info` operation, which
    /// returns at +infinity: it may take effect at any point after its
    /// invocation, or never.
    pub ret: Option<usize>,
    /// Times of the invocation and the completion, for reports.
    pub times: (u64, Option<u64>),
}

impl Operation {
    /// Known to have happened (`ok`), so it must be linearized.
    pub fn is_ok(&self) -> bool {
        self.ret.is_some()
    }

    /// The same operation with its outcome forgotten (`info`).
    pub fn relaxed(&self) -> Self {
        Self {
            ret: None,
            ..self.clone()
        }
    }
}

/// The state after `op` is applied in `state`, or `None` if it cannot
/// happen there. An `info` compare-and-set is only applied where it
/// succeeds: failing changes nothing, which is the same as never happening.
pub fn step(state: State, op: Op) -> Option<State> {
    match op {
        Op::Read(seen) => (seen == state).then_some(state),
        Op::Write(value) => Some(Some(value)),
        Op::Cas { expected, new } => (expected == state).then_some(Some(new)),
    }
}

/// Keeps the operations the search needs. Reads of unknown outcome
/// constrain nothing and go. So does an `info` write or compare-and-set
/// whose new value nobody observes — no `ok` read returns it, and no kept
/// compare-and-set expects it: in any linearization the only operations
/// that can tell it happened are ones that would see its value, so
/// leaving it out (it never happened) keeps every linearization valid.
/// This is the workhorse against the cost of unknown outcomes: a write
/// that was lost in a crash is never read, and costs nothing.
pub fn prepare(ops: &[Operation]) -> Vec<Operation> {
    let mut observed: HashSet<i64> = HashSet::new();
    for o in ops.iter().filter(|o| o.is_ok()) {
        match o.op {
            Op::Read(Some(v)) => {
                observed.insert(v);
            }
            Op::Cas {
                expected: Some(e), ..
            } => {
                observed.insert(e);
            }
            _ => {}
        }
    }
    // An info cas kept for its new value makes its expected value observed:
    // grow the set until nothing changes.
    let mut kept_info: Vec<bool> = vec![false; ops.len()];
    loop {
        let mut grew = false;
        for (i, o) in ops.iter().enumerate() {
            if o.is_ok() || kept_info[i] {
                continue;
            }
            let keep = match o.op {
                Op::Read(_) => false,
                Op::Write(v) => observed.contains(&v),
                Op::Cas { expected, new } => {
                    let keep = observed.contains(&new);
                    if let (true, Some(e)) = (keep, expected) {
                        observed.insert(e);
                    }
                    keep
                }
            };
            if keep {
                kept_info[i] = true;
                grew = true;
            }
        }
        if !grew {
            break;
        }
    }
    ops.iter()
        .zip(kept_info)
        .filter(|(o, kept)| o.is_ok() || *kept)
        .map(|(o, _)| o.clone())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(op: Op, call: usize, ret: Option<usize>) -> Operation {
        Operation {
            process: 0,
            op,
            call,
            ret,
            times: (0, None),
        }
    }

    #[test]
    fn steps_follow_the_register() {
        assert_eq!(step(None, Op::Read(None)), Some(None));
        assert_eq!(step(Some(1), Op::Read(None)), None);
        assert_eq!(step(None, Op::Write(4)), Some(Some(4)));
        let cas = Op::Cas {
            expected: Some(4),
            new: 5,
        };
        assert_eq!(step(Some(4), cas), Some(Some(5)));
        assert_eq!(step(Some(3), cas), None);
    }

    #[test]
    fn unobserved_unknown_writes_are_left_out_and_chains_are_kept() {
        let ops = vec![
            op(Op::Write(1), 1, None), // read below: kept
            op(Op::Write(2), 2, None), // never seen: dropped
            op(Op::Read(Some(1)), 3, Some(4)),
            op(Op::Read(None), 5, None), // unknown read: dropped
            op(
                Op::Cas {
                    expected: Some(7),
                    new: 8,
                },
                6,
                None,
            ), // 8 read below: kept, and makes 7 observed
            op(Op::Write(7), 7, None),   // kept through the cas
            op(Op::Read(Some(8)), 9, Some(10)),
            op(Op::Write(9), 11, Some(12)), // ok: always kept
        ];
        let kept: Vec<usize> = prepare(&ops).iter().map(|o| o.call).collect();
        assert_eq!(kept, vec![1, 3, 6, 7, 9, 11]);
    }
}
