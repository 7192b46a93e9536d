//! The register workload: concurrent clients read, write and
//! compare-and-set a few contended keys straight through `storage-client`,
//! and record every operation in a history (`crate::history`) that
//! `loadgen check` decides.
//!
//! Each key is one partition, `register/<run>/k<i>`, holding the value (an
//! integer, as text) in table `register`. Every written value is unique in
//! the run, and every write also creates a marker item for its value in
//! table `register-write`, on the condition that the marker does not exist
//! yet. That condition makes the storage client's retries safe: a retry of
//! a write that already committed finds its own marker and is refused, and
//! the refusal says so.
//!
//! A compare-and-set reads the value and its version, and if the value is
//! the expected one, writes on the condition that the version is still the
//! one read. Values are unique, so "the version has not changed" is "the
//! value is still the expected one": that write is exactly a cas.
//!
//! Outcomes (Jepsen's): a write is `ok` when applied, `fail` when its
//! version condition did not hold (nothing was written). When the call
//! fails (deadline, reset, refusal after retries) the client cannot tell
//! whether some attempt committed, so it asks: it writes the marker itself
//! as a fence, then reads the marker. The original's marker means it
//! happened (`ok`); the fence's means it never can (`fail`); no answer
//! leaves it `info`, and that process is retired. A read that fails
//! changed nothing and is recorded `fail`.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::Rng;
use storage_api::v1 as pb;
use storage_client::{StorageClient, StorageError};
use tokio::time::Instant;

use crate::history::{F, Kind, Recorder, Value};

/// The table of the registers' values.
pub const VALUES: &str = "register";
/// The table of the markers of written values.
pub const MARKERS: &str = "register-write";
/// A marker written by the write itself.
const WRITTEN: &[u8] = b"written";
/// A marker written to fence off a write of unknown outcome.
const FENCED: &[u8] = b"fenced";

/// How to run the workload.
#[derive(Debug, Clone)]
pub struct Plan {
    pub clients: usize,
    pub keys: usize,
    /// Operations per second, all clients together.
    pub rate: f64,
    pub duration: Duration,
    /// Deadline of each storage call.
    pub timeout: Duration,
    /// The keys' partition prefix (None: a fresh one).
    pub prefix: Option<String>,
}

/// The workload: a storage client, the history, and what clients share.
#[derive(Debug)]
pub struct Register {
    client: StorageClient,
    recorder: Recorder,
    plan: Plan,
    /// Partitions are `<prefix>/k<i>`: fresh keys for every run.
    prefix: String,
    next_value: AtomicI64,
    next_process: AtomicU64,
    next_slot: AtomicU64,
    /// Per key, the last value some client saw (what a cas expects).
    known: Vec<Mutex<Option<i64>>>,
    tally: Mutex<Tally>,
}

/// How the operations ended: per operation and outcome, and how the
/// writes whose call failed were settled.
#[derive(Debug, Clone, Default)]
pub struct Tally {
    pub outcomes: BTreeMap<(F, Kind), usize>,
    pub settled: BTreeMap<Kind, usize>,
}

/// A storage answer that is not a number.
const GARBLED: i64 = i64::MIN;

impl Register {
    pub fn new(client: StorageClient, recorder: Recorder, plan: Plan) -> Self {
        let run = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis());
        let prefix = plan
            .prefix
            .clone()
            .unwrap_or_else(|| format!("register/{run}-{}", std::process::id()));
        Self {
            client,
            recorder,
            prefix,
            next_value: AtomicI64::new(1),
            next_process: AtomicU64::new(plan.clients as u64),
            next_slot: AtomicU64::new(0),
            known: (0..plan.keys.max(1)).map(|_| Mutex::new(None)).collect(),
            tally: Mutex::new(Tally::default()),
            plan,
        }
    }

    /// Runs every client for the duration; returns how operations ended.
    pub async fn run(self: Arc<Self>) -> std::io::Result<Tally> {
        let started = Instant::now();
        let clients: Vec<_> = (0..self.plan.clients.max(1) as u64)
            .map(|process| tokio::spawn(self.clone().client(process, started)))
            .collect();
        for c in clients {
            c.await.map_err(std::io::Error::other)??;
        }
        self.recorder.flush()?;
        Ok(self.tally.lock().map(|t| t.clone()).unwrap_or_default())
    }

    /// One client: operations one after another, as process `process`
    /// until an unknown outcome retires it.
    async fn client(self: Arc<Self>, mut process: u64, started: Instant) -> std::io::Result<()> {
        while self.pace(started).await {
            let (key, f) = self.choose();
            if self.operate(process, key, f).await? == Kind::Info {
                process = self.next_process.fetch_add(1, Ordering::Relaxed);
            }
        }
        Ok(())
    }

    /// Waits for this client's next slot (`--rate`, all clients together);
    /// false when the run is over.
    async fn pace(&self, started: Instant) -> bool {
        let end = started + self.plan.duration;
        let n = self.next_slot.fetch_add(1, Ordering::Relaxed);
        let slot = started + Duration::from_secs_f64(n as f64 / self.plan.rate);
        if slot >= end {
            return false;
        }
        tokio::time::sleep_until(slot).await;
        Instant::now() < end
    }

    /// A key and an operation: half reads, a quarter writes, a quarter
    /// compare-and-sets.
    fn choose(&self) -> (usize, F) {
        let mut rng = rand::rng();
        let key = rng.random_range(0..self.known.len());
        let f = match rng.random_range(0..4) {
            0 | 1 => F::Read,
            2 => F::Write,
            _ => F::Cas,
        };
        (key, f)
    }

    /// One operation, recorded: its invocation, then its outcome.
    async fn operate(&self, process: u64, key: usize, f: F) -> std::io::Result<Kind> {
        let name = format!("k{key}");
        let invoked = match f {
            F::Read => None,
            F::Write => Some(Value::Int(self.fresh())),
            F::Cas => Some(Value::Pair(self.known(key), self.fresh())),
        };
        self.recorder
            .record(process, Kind::Invoke, f, &name, invoked)?;
        let (kind, value) = match invoked {
            Some(Value::Int(v)) => (self.write(key, v, None).await, invoked),
            Some(Value::Pair(expected, new)) => (self.cas(key, expected, new).await, invoked),
            None => self.read(key).await,
        };
        self.recorder.record(process, kind, f, &name, value)?;
        if kind == Kind::Ok {
            let seen = match value {
                Some(Value::Int(v)) | Some(Value::Pair(_, v)) => Some(v),
                None => None,
            };
            if let (Some(v), Ok(mut known)) = (seen, self.known[key].lock()) {
                *known = Some(v);
            }
        }
        if let Ok(mut tally) = self.tally.lock() {
            *tally.outcomes.entry((f, kind)).or_default() += 1;
        }
        Ok(kind)
    }

    /// A value never written before in this run.
    fn fresh(&self) -> i64 {
        self.next_value.fetch_add(1, Ordering::Relaxed)
    }

    /// The last value a client saw in `key`.
    fn known(&self, key: usize) -> Option<i64> {
        self.known[key].lock().map_or(None, |k| *k)
    }

    fn partition(&self, key: usize) -> String {
        format!("{}/k{key}", self.prefix)
    }

    /// The register's value and its version (0: absent).
    async fn load(&self, key: usize) -> Result<(Option<i64>, u64), StorageError> {
        let items = self
            .client
            .read(
                &self.partition(key),
                vec![item(VALUES, Vec::new())],
                self.plan.timeout,
            )
            .await?;
        Ok(match items.first() {
            Some(item) if item.version > 0 => (Some(number(&item.value)), item.version),
            _ => (None, 0),
        })
    }

    /// A read; one that failed changed nothing.
    async fn read(&self, key: usize) -> (Kind, Option<Value>) {
        match self.load(key).await {
            Ok((value, _)) => (Kind::Ok, value.map(Value::Int)),
            Err(_) => (Kind::Fail, None),
        }
    }

    /// Compare-and-set: a write on the condition that the value has not
    /// changed since it was read and found to be `expected`.
    async fn cas(&self, key: usize, expected: Option<i64>, new: i64) -> Kind {
        match self.load(key).await {
            Ok((value, version)) if value == expected => self.write(key, new, Some(version)).await,
            _ => Kind::Fail,
        }
    }

    /// Writes `value` (with its marker), if given on the condition that
    /// the register still has `version`.
    async fn write(&self, key: usize, value: i64, version: Option<u64>) -> Kind {
        let partition = self.partition(key);
        let mut conditions = vec![condition(MARKERS, marker(value), 0)];
        if let Some(version) = version {
            conditions.push(condition(VALUES, Vec::new(), version));
        }
        let mutations = vec![
            put(VALUES, Vec::new(), value.to_string().into_bytes()),
            put(MARKERS, marker(value), WRITTEN.to_vec()),
        ];
        let answer = self
            .client
            .write(&partition, conditions, mutations, self.plan.timeout)
            .await;
        match answer {
            Ok(r) if r.applied => Kind::Ok,
            // The marker exists: an earlier attempt of this very call
            // (the client retries) committed it.
            Ok(r) if r.failures.iter().any(|f| f.table == MARKERS) => Kind::Ok,
            // Only the version changed: nothing was written, and the
            // version never comes back, so no attempt ever will be.
            Ok(_) => Kind::Fail,
            Err(_) => self.settle(&partition, value).await,
        }
    }

    /// After a write of unknown outcome: fence it off (write its marker
    /// as "fenced" unless it exists), then read the marker to see who won.
    async fn settle(&self, partition: &str, value: i64) -> Kind {
        let kind = self.fence(partition, value).await;
        if let Ok(mut tally) = self.tally.lock() {
            *tally.settled.entry(kind).or_default() += 1;
        }
        kind
    }

    async fn fence(&self, partition: &str, value: i64) -> Kind {
        let fence = self
            .client
            .write(
                partition,
                vec![condition(MARKERS, marker(value), 0)],
                vec![put(MARKERS, marker(value), FENCED.to_vec())],
                self.plan.timeout,
            )
            .await;
        if fence.as_ref().is_ok_and(|r| r.applied) {
            return Kind::Fail;
        }
        let read = self
            .client
            .read(
                partition,
                vec![item(MARKERS, marker(value))],
                self.plan.timeout,
            )
            .await;
        match read.as_ref().map(|items| items.first()) {
            Ok(Some(m)) if m.version > 0 && m.value.as_ref() == WRITTEN => Kind::Ok,
            Ok(Some(m)) if m.version > 0 && m.value.as_ref() == FENCED => Kind::Fail,
            _ => Kind::Info,
        }
    }
}

fn marker(value: i64) -> Vec<u8> {
    value.to_string().into_bytes()
}

fn item(table: &str, key: Vec<u8>) -> pb::ItemKey {
    pb::ItemKey {
        table: table.into(),
        key: key.into(),
    }
}

fn condition(table: &str, key: Vec<u8>, expected_version: u64) -> pb::Condition {
    pb::Condition {
        table: table.into(),
        key: key.into(),
        expected_version,
        partition: String::new(),
    }
}

fn put(table: &str, key: Vec<u8>, value: Vec<u8>) -> pb::Mutation {
    pb::Mutation {
        table: table.into(),
        key: key.into(),
        op: Some(pb::mutation::Op::Put(value.into())),
        partition: String::new(),
    }
}

/// A stored value as a number; anything else (never written by this
/// workload) as `GARBLED`, which the checker then rejects.
fn number(bytes: &[u8]) -> i64 {
    std::str::from_utf8(bytes)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(GARBLED)
}
