//! The oracle for the property tests: tries every order of the operations
//! that respects real time, with no memo and no pruning — slow, obviously
//! right, for histories of a handful of operations.

use super::model::{Op, Operation, State};

/// Is there an order of `ops` in which every `ok` operation happens, any
/// `info` one happens or not, each after everything that returned before
/// it was invoked, and every read sees the latest write?
pub fn linearizable(ops: &[Operation]) -> bool {
    assert!(
        ops.len() <= 16,
        "the brute-force oracle is for small histories"
    );
    search(ops, 0, None)
}

fn search(ops: &[Operation], done: u32, state: State) -> bool {
    let is_done = |i: usize| done & (1 << i) != 0;
    if (0..ops.len()).all(|i| is_done(i) || ops[i].ret.is_none()) {
        return true;
    }
    (0..ops.len()).any(|i| {
        let must_wait = (0..ops.len())
            .any(|j| j != i && !is_done(j) && ops[j].ret.is_some_and(|r| r < ops[i].call));
        if is_done(i) || must_wait {
            return false;
        }
        let next = match ops[i].op {
            // An unknown read constrains nothing.
            Op::Read(_) if ops[i].ret.is_none() => Some(state),
            Op::Read(seen) => (seen == state).then_some(state),
            Op::Write(v) => Some(Some(v)),
            Op::Cas { expected, new } => (state == expected).then_some(Some(new)),
        };
        next.is_some_and(|next| search(ops, done | (1 << i), next))
    })
}
