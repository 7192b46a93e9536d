//! Histories for tests: valid ones from a simulated register (each
//! operation takes effect at a random instant inside its interval), and
//! arbitrary ones from raw operations.

use std::collections::HashMap;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::history::{Event, F, Kind, Value};

/// The shape of a simulated history.
#[derive(Debug, Clone, Copy)]
pub struct Shape {
    pub keys: usize,
    /// Clients; each is one process at a time (a new one after an info).
    pub clients: usize,
    pub ops: usize,
    /// Fraction of operations whose outcome is unknown (half of those
    /// take effect).
    pub info: f64,
    pub seed: u64,
}

struct Planned {
    client: usize,
    key: usize,
    f: F,
    start: u64,
    effect: u64,
    end: u64,
    info: bool,
    value: Option<Value>,
    kind: Kind,
}

/// A linearizable history: a real register per key, every operation
/// taking effect at a random instant strictly inside its interval.
pub fn simulated(shape: Shape) -> Vec<Event> {
    let mut rng = StdRng::seed_from_u64(shape.seed);
    let mut plans = plan(&mut rng, shape);
    let mut order: Vec<usize> = (0..plans.len()).collect();
    order.sort_by_key(|&i| plans[i].effect);
    let mut state: HashMap<usize, Option<i64>> = HashMap::new();
    let mut written: Vec<i64> = Vec::new();
    for i in order {
        let p = &mut plans[i];
        let now = state.entry(p.key).or_default();
        let takes_effect = !p.info || rng.random_bool(0.5);
        match p.f {
            F::Read => {
                p.value = now.map(Value::Int);
                p.kind = Kind::Ok;
            }
            F::Write => {
                let v = written.len() as i64 + 1;
                written.push(v);
                p.value = Some(Value::Int(v));
                if takes_effect {
                    *now = Some(v);
                }
                p.kind = Kind::Ok;
            }
            F::Cas => {
                let new = written.len() as i64 + 1;
                written.push(new);
                let expected = if rng.random_bool(0.6) || written.len() < 2 {
                    *now
                } else {
                    Some(written[rng.random_range(0..written.len() - 1)])
                };
                let holds = expected == *now;
                if holds && takes_effect {
                    *now = Some(new);
                }
                p.value = Some(Value::Pair(expected, new));
                p.kind = if holds { Kind::Ok } else { Kind::Fail };
            }
        }
        if p.info {
            p.kind = Kind::Info;
        }
    }
    events(&plans, shape.clients)
}

/// Intervals, keys and operations; values come later.
fn plan(rng: &mut StdRng, shape: Shape) -> Vec<Planned> {
    let mut clock = vec![0u64; shape.clients];
    (0..shape.ops)
        .map(|n| {
            let client = n % shape.clients;
            let start = clock[client] + rng.random_range(1..50);
            let end = start + rng.random_range(2..400);
            clock[client] = end;
            Planned {
                client,
                key: rng.random_range(0..shape.keys),
                f: match rng.random_range(0..4) {
                    0 | 1 => F::Read,
                    2 => F::Write,
                    _ => F::Cas,
                },
                start,
                effect: rng.random_range(start + 1..end),
                end,
                info: rng.random_bool(shape.info),
                value: None,
                kind: Kind::Ok,
            }
        })
        .collect()
}

/// The plans as events in time order, with process ids (a client takes a
/// new one after an info).
fn events(plans: &[Planned], clients: usize) -> Vec<Event> {
    let mut process: Vec<u64> = (0..clients as u64).collect();
    let mut timed: Vec<(u64, usize, Event)> = Vec::new();
    for (n, p) in plans.iter().enumerate() {
        let pid = process[p.client];
        if p.kind == Kind::Info {
            process[p.client] += clients as u64;
        }
        let key = format!("k{}", p.key);
        let (invoked, done) = match (p.f, p.value) {
            (F::Read, v) => (None, v),
            (_, v) => (v, v),
        };
        let event = |kind, value, time| Event {
            process: pid,
            kind,
            f: p.f,
            key: key.clone(),
            value,
            time,
        };
        timed.push((p.start, 2 * n, event(Kind::Invoke, invoked, p.start)));
        timed.push((p.end, 2 * n + 1, event(p.kind, done, p.end)));
    }
    timed.sort_by_key(|(time, seq, _)| (*time, *seq));
    timed.into_iter().map(|(_, _, e)| e).collect()
}

/// One raw operation of an arbitrary history (for proptest): which client,
/// what, with which small values, when, and how it ended.
#[derive(Debug, Clone)]
pub struct Raw {
    pub client: usize,
    /// 0 read, 1 write, 2 cas.
    pub f: u8,
    /// A read's result or a cas's expected value (0 = null).
    pub a: i64,
    /// A written or new value.
    pub b: i64,
    pub gap: u64,
    pub len: u64,
    /// 4 info, 5 fail, anything else ok.
    pub outcome: u8,
}

/// An arbitrary (well-formed, rarely linearizable) history of one key.
pub fn arbitrary(raw: &[Raw], clients: usize) -> Vec<Event> {
    let mut clock = vec![0u64; clients];
    let plans: Vec<Planned> = raw
        .iter()
        .map(|r| {
            let c = r.client % clients;
            let start = clock[c] + r.gap.max(1);
            let end = start + r.len.max(1);
            clock[c] = end;
            let f = [F::Read, F::Write, F::Cas][usize::from(r.f % 3)];
            let a = (r.a != 0).then_some(r.a);
            let value = match f {
                F::Read => a.map(Value::Int),
                F::Write => Some(Value::Int(r.b)),
                F::Cas => Some(Value::Pair(a, r.b)),
            };
            Planned {
                client: c,
                key: 0,
                f,
                start,
                effect: start,
                end,
                info: r.outcome == 4,
                value,
                kind: match r.outcome {
                    4 => Kind::Info,
                    5 => Kind::Fail,
                    _ => Kind::Ok,
                },
            }
        })
        .collect();
    events(&plans, clients)
}

/// Renders events as a history file's text.
pub fn text(events: &[Event]) -> String {
    events
        .iter()
        .map(|e| serde_json::to_string(e).unwrap() + "\n")
        .collect()
}
