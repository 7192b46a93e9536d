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
//! once (sets are keyed compactly: see `Placed`). The cost is exponential
//! in how many operations are concurrent on one key, not in the history's
//! length. Operations of unknown outcome are only placed right before
//! someone sees their value (see `Now::then`).

use std::collections::{BTreeSet, HashSet};
use std::time::Instant;

use super::model::{Op, Operation, State, step};

/// The search ran out of time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Undecided;

/// How often (in steps) the search looks at the clock.
const CLOCK_EVERY: u32 = 4096;

/// Decides whether `ops` (one key's, prepared, in invocation order) are
/// linearizable from the absent state, by `deadline`.
pub fn linearizable(ops: &[Operation], deadline: Instant) -> Result<bool, Undecided> {
    debug_assert!(ops.windows(2).all(|w| w[0].call <= w[1].call));
    let mut line = Line::new(ops);
    let must = ops.iter().filter(|o| o.is_ok()).count();
    let mut placed = Placed::new(ops);
    let mut now = Now {
        state: None,
        after_info: false,
    };
    let mut seen: HashSet<Key> = HashSet::new();
    let mut stack: Vec<(usize, Now)> = Vec::new();
    let mut cursor = line.first();
    let mut steps = 0u32;
    while placed.ok < must {
        steps = steps.wrapping_add(1);
        if steps.is_multiple_of(CLOCK_EVERY) && Instant::now() > deadline {
            return Err(Undecided);
        }
        match line.entry(cursor) {
            Some(Entry::Call(i)) => {
                if let Some(next) = now.then(&ops[i]) {
                    placed.add(i);
                    if seen.insert(placed.key(next)) {
                        stack.push((i, now));
                        now = next;
                        line.lift(i);
                        cursor = line.first();
                        continue;
                    }
                    placed.remove(i);
                }
                cursor = line.after(cursor);
            }
            // A return (or the end): the operations placed so far leave
            // no way to place this one. Undo the last choice.
            Some(Entry::Return(_)) | None => {
                let Some((i, before)) = stack.pop() else {
                    return Ok(false);
                };
                now = before;
                placed.remove(i);
                line.unlift(i);
                cursor = line.after(line.call_of(i));
            }
        }
    }
    Ok(true)
}

/// Where the search stands after the operations placed so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct Now {
    state: State,
    /// The last operation placed was of unknown outcome.
    after_info: bool,
}

impl Now {
    /// Placing `op` next, if it can be.
    ///
    /// An operation of unknown outcome is only worth placing right before
    /// a read or compare-and-set that sees its value: any linearization
    /// can be made so, by dropping each such operation whose value is
    /// overwritten (or never looked at) before anyone sees it — the
    /// operation in between could not have been anything else. So a write
    /// never directly follows one. Without this, every write of unknown
    /// outcome would be tried at every point after it began.
    fn then(self, op: &Operation) -> Option<Self> {
        if self.after_info && matches!(op.op, Op::Write(_)) {
            return None;
        }
        step(self.state, op.op).map(|state| Now {
            state,
            after_info: !op.is_ok(),
        })
    }
}

/// A memo key: the placed set (compactly, see `Placed::key`) and where
/// the search stands.
type Key = (Now, usize, Box<[u32]>);

/// The set of placed (linearized) operations, with what its memo key needs.
///
/// Operations are in invocation order. The *frontier* is the first `ok`
/// operation not placed: every `ok` operation before it is placed. Any
/// operation placed beyond it was invoked before the frontier returned
/// (otherwise the frontier would have to come first), so it lies before
/// the frontier's *horizon*, the first operation invoked after that
/// return. The set is then: everything `ok` before the frontier, the
/// placed operations between the frontier and its horizon (a handful: the
/// concurrent ones), and the placed `info` operations before the frontier.
/// Keys stay small however long the history is.
struct Placed {
    bits: Bits,
    is_ok: Vec<bool>,
    horizon: Vec<usize>,
    frontier: usize,
    info_before: BTreeSet<usize>,
    /// How many `ok` operations are placed.
    ok: usize,
}

impl Placed {
    fn new(ops: &[Operation]) -> Self {
        let calls: Vec<usize> = ops.iter().map(|o| o.call).collect();
        let horizon = ops
            .iter()
            .map(|o| {
                o.ret
                    .map_or(ops.len(), |r| calls.partition_point(|&c| c < r))
            })
            .collect();
        let is_ok: Vec<bool> = ops.iter().map(Operation::is_ok).collect();
        let frontier = is_ok.iter().position(|&ok| ok).unwrap_or(ops.len());
        Self {
            bits: Bits::new(ops.len()),
            is_ok,
            horizon,
            frontier,
            info_before: BTreeSet::new(),
            ok: 0,
        }
    }

    fn add(&mut self, i: usize) {
        self.bits.set(i);
        if !self.is_ok[i] {
            if i < self.frontier {
                self.info_before.insert(i);
            }
            return;
        }
        self.ok += 1;
        if i == self.frontier {
            let mut f = i;
            while f < self.is_ok.len() && (self.bits.has(f) || !self.is_ok[f]) {
                if !self.is_ok[f] && self.bits.has(f) {
                    self.info_before.insert(f);
                }
                f += 1;
            }
            self.frontier = f;
        }
    }

    fn remove(&mut self, i: usize) {
        self.bits.clear(i);
        if !self.is_ok[i] {
            self.info_before.remove(&i);
            return;
        }
        self.ok -= 1;
        if i < self.frontier {
            self.info_before.retain(|&j| j < i);
            self.frontier = i;
        }
    }

    fn key(&self, now: Now) -> Key {
        let f = self.frontier;
        let end = self.horizon.get(f).copied().unwrap_or(f);
        let ahead = (f + 1..end.max(f + 1)).filter(|&j| self.bits.has(j));
        let members = self
            .info_before
            .iter()
            .copied()
            .chain(ahead)
            .map(|j| j as u32)
            .collect();
        (now, f, members)
    }
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

    fn has(&self, i: usize) -> bool {
        self.0[i / 64] & (1 << (i % 64)) != 0
    }
}
