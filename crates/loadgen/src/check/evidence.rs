//! When a key's history is not linearizable: the smallest set of its
//! operations that cannot be ordered on their own.
//!
//! "On their own" means with every other operation *relaxed*: free to take
//! effect at any time after it was invoked, or never (as if `info`). That
//! keeps the evidence honest — dropping a write outright could make a read
//! of its value look impossible when it is not.
//!
//! Narrowing, each step keeping the history unorderable:
//! 1. the shortest prefix (a binary search on where the history is cut;
//!    operations still open at the cut are relaxed);
//! 2. the latest start (a binary search: relax every operation invoked
//!    before it);
//! 3. then each remaining operation in turn, relaxed for good if the rest
//!    still cannot be ordered.
//!
//! The result is minimal: relaxing any one of its operations makes the
//! history orderable. (The smallest such set overall would need a search
//! over subsets; in practice the two coincide.) Running out of time only
//! stops the narrowing: the set returned still cannot be ordered.

use std::time::Instant;

use super::model::{Operation, prepare};
use super::search::linearizable;

/// Indexes into `ops` (one key's, all of them, in invocation order, known
/// not to be linearizable) of a minimal set that cannot be ordered, and
/// whether the narrowing finished.
pub fn unorderable(ops: &[Operation], deadline: Instant) -> (Vec<usize>, bool) {
    let mut finished = true;
    let mut fails = |relaxed: &[bool], cut: usize| -> bool {
        let history = shaped(ops, relaxed, cut);
        match linearizable(&prepare(&history), deadline) {
            Ok(orderable) => !orderable,
            Err(_) => {
                finished = false;
                false
            }
        }
    };
    let mut relaxed = vec![false; ops.len()];
    // 1. The shortest failing prefix: cut after one of the returns.
    let mut cuts: Vec<usize> = ops.iter().filter_map(|o| o.ret).collect();
    cuts.sort_unstable();
    let full = usize::MAX;
    let cut = first_true(&cuts, |&c| fails(&relaxed, c)).unwrap_or(full);
    // 2. The latest start: relax everything invoked before it.
    let starts: Vec<usize> = ops.iter().map(|o| o.call).filter(|&c| c <= cut).collect();
    let start = last_true(&starts, |&s| {
        let before: Vec<bool> = ops.iter().map(|o| o.call < s).collect();
        fails(&before, cut)
    })
    .unwrap_or(0);
    for (r, o) in relaxed.iter_mut().zip(ops) {
        *r = o.call < start;
    }
    // 3. One by one.
    for i in 0..ops.len() {
        if relaxed[i] || ops[i].ret.is_none_or(|r| r > cut) {
            continue;
        }
        relaxed[i] = true;
        if !fails(&relaxed, cut) {
            relaxed[i] = false;
        }
    }
    let set = (0..ops.len())
        .filter(|&i| !relaxed[i] && ops[i].is_ok() && ops[i].ret.is_some_and(|r| r <= cut))
        .collect();
    (set, finished)
}

/// The history cut after line `cut` (what was open then is relaxed;
/// what began later is gone), with the `relaxed` operations relaxed.
fn shaped(ops: &[Operation], relaxed: &[bool], cut: usize) -> Vec<Operation> {
    ops.iter()
        .zip(relaxed)
        .filter(|(o, _)| o.call <= cut)
        .map(|(o, &r)| {
            if r || o.ret.is_none_or(|ret| ret > cut) {
                o.relaxed()
            } else {
                o.clone()
            }
        })
        .collect()
}

/// The first item for which `test` holds, given that it holds for every
/// item after one that does (a binary search).
fn first_true(items: &[usize], mut test: impl FnMut(&usize) -> bool) -> Option<usize> {
    let (mut lo, mut hi) = (0, items.len());
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        if test(&items[mid]) {
            hi = mid;
        } else {
            lo = mid + 1;
        }
    }
    items.get(lo).copied()
}

/// The last item for which `test` holds, given that it holds for every
/// item before one that does.
fn last_true(items: &[usize], mut test: impl FnMut(&usize) -> bool) -> Option<usize> {
    let (mut lo, mut hi) = (0, items.len());
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        if test(&items[mid]) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    lo.checked_sub(1).map(|i| items[i])
}
