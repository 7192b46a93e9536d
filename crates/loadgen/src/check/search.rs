//! Is one key's history linearizable? The Wing–Gong–Lowe search with
//! Lowe's memo, as porcupine does it.
//!
//! Every operation is two entries on a time line: its call and (for an
//! `ok` operation) its return; an `info` operation never returns. The
//! search walks the line from the start: an operation whose call comes
//! before the first remaining return may be linearized next (everything
//! that returned before it was called already is). Linearizing it applies
//! it to the register and lifts both its entries off the line, and the
//! walk restarts from the start. Meeting a return means the operation it
//! ends cannot be placed yet with the choices made: undo the last choice
//! and try the next candidate after it. When every `ok` operation is
//! placed, the rest (all `info`) go at the end, where anything may happen.
//!
//! The memo: the same set of linearized operations with the same register
//! state leads to the same futures, so each (set, state) pair is explored
//! once. The cost is exponential in how many operations are concurrent
//! on one key, not in the history's length.

use std::collections::HashSet;
use std::time::Instant;

use super::model::{Operation, State, step};

/// The search ran out of time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Undecided;

/// How often (in steps) the search looks at the clock.
const CLOCK_EVERY: u32 = 4096;

/// Decides whether `ops` (one key's, prepared) are linearizable from the
/// absent state, by `deadline`.
pub fn linearizable(ops: &[Operation], deadline: Instant) -> Result<bool, Undecided> {
    let mut line = Line::new(ops);
    let must = ops.iter().filter(|o| o.is_ok()).count();
    let mut placed = 0;
    let mut state: State = None;
    let mut chosen = Bits::new(ops.len());
    let mut seen: HashSet<(Bits, State)> = HashSet::new();
    let mut stack: Vec<(usize, State)> = Vec::new();
    let mut cursor = line.first();
    let mut steps = 0u32;
    while placed < must {
        steps = steps.wrapping_add(1);
        if steps.is_multiple_of(CLOCK_EVERY) && Instant::now() > deadline {
            return Err(Undecided);
        }
        match line.entry(cursor) {
            Some(Entry::Call(i)) => {
                if let Some(next) = step(state, ops[i].op) {
                    chosen.set(i);
                    if seen.insert((chosen.clone(), next)) {
                        stack.push((i, state));
                        state = next;
                        placed += usize::from(ops[i].is_ok());
                        line.lift(i);
                        cursor = line.first();
                        continue;
                    }
                    chosen.clear(i);
                }
                cursor = line.after(cursor);
            }
            // A return (or the end): the operations placed so far leave
            // no way to place this one. Undo the last choice.
            Some(Entry::Return(_)) | None => {
                let Some((i, before)) = stack.pop() else {
                    return Ok(false);
                };
                state = before;
                chosen.clear(i);
                placed -= usize::from(ops[i].is_ok());
                line.unlift(i);
                cursor = line.after(line.call_of(i));
            }
        }
    }
    Ok(true)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Entry {
    Call(usize),
    Return(usize),
}

/// The time line: a doubly linked list of entries (index 0 is the head)
/// from which operations are lifted and put back in reverse order.
struct Line {
    entries: Vec<Entry>,
    next: Vec<usize>,
    prev: Vec<usize>,
    /// Per operation: its call entry and return entry (if any).
    call: Vec<usize>,
    ret: Vec<Option<usize>>,
}

const HEAD: usize = 0;
const END: usize = usize::MAX;

impl Line {
    fn new(ops: &[Operation]) -> Self {
        let mut timed: Vec<(usize, Entry)> = Vec::with_capacity(2 * ops.len());
        for (i, o) in ops.iter().enumerate() {
            timed.push((o.call, Entry::Call(i)));
            if let Some(r) = o.ret {
                timed.push((r, Entry::Return(i)));
            }
        }
        timed.sort_by_key(|&(at, _)| at);
        // Slot 0 is the head; its entry is never read.
        let mut entries = vec![Entry::Call(usize::MAX)];
        entries.extend(timed.into_iter().map(|(_, e)| e));
        let n = entries.len();
        let mut call = vec![0; ops.len()];
        let mut ret = vec![None; ops.len()];
        for (slot, e) in entries.iter().enumerate().skip(1) {
            match *e {
                Entry::Call(i) => call[i] = slot,
                Entry::Return(i) => ret[i] = Some(slot),
            }
        }
        Self {
            entries,
            next: (1..=n).map(|s| if s == n { END } else { s }).collect(),
            prev: (0..n).map(|s| s.wrapping_sub(1)).collect(),
            call,
            ret,
        }
    }

    fn first(&self) -> usize {
        self.next[HEAD]
    }

    fn after(&self, slot: usize) -> usize {
        self.next[slot]
    }

    fn entry(&self, slot: usize) -> Option<Entry> {
        (slot != END).then(|| self.entries[slot])
    }

    fn call_of(&self, op: usize) -> usize {
        self.call[op]
    }

    fn unlink(&mut self, slot: usize) {
        let (p, n) = (self.prev[slot], self.next[slot]);
        self.next[p] = n;
        if n != END {
            self.prev[n] = p;
        }
    }

    fn relink(&mut self, slot: usize) {
        let (p, n) = (self.prev[slot], self.next[slot]);
        self.next[p] = slot;
        if n != END {
            self.prev[n] = slot;
        }
    }

    fn lift(&mut self, op: usize) {
        self.unlink(self.call[op]);
        if let Some(r) = self.ret[op] {
            self.unlink(r);
        }
    }

    fn unlift(&mut self, op: usize) {
        if let Some(r) = self.ret[op] {
            self.relink(r);
        }
        self.relink(self.call[op]);
    }
}

/// A set of operations, as bits.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Bits(Box<[u64]>);

impl Bits {
    fn new(n: usize) -> Self {
        Self(vec![0; n.div_ceil(64)].into_boxed_slice())
    }

    fn set(&mut self, i: usize) {
        self.0[i / 64] |= 1 << (i % 64);
    }

    fn clear(&mut self, i: usize) {
        self.0[i / 64] &= !(1 << (i % 64));
    }
}
