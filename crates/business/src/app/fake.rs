//! An in-memory `Store` for unit tests of the use cases, with faults to
//! inject: conflicts, lost answers, an outage that starts after a number of
//! commits (an executor crashing between saga steps), and dead shards
//! (no majority: every call waits out its budget, then fails).

// A test double: a poisoned lock here is a failed test, not a state to handle.
#![allow(clippy::expect_used)]

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use super::ports::{AccountPage, Change, PendingTransfer, Write};
use super::{Commit, Record, RecordKey, Store, StoreError, TimeBudget, Versioned};
use crate::domain::{AccountId, AccountKey, Entry, TenantId};

/// The fake's shards.
pub const SHARDS: u32 = 3;

/// Accounts whose id starts with a letter up to `h` live on shard 0, up to
/// `q` on shard 1, the rest on shard 2.
pub fn shard_of(key: &AccountKey) -> u32 {
    match key.account.as_str().as_bytes().first() {
        Some(c) if *c > b'q' => 2,
        Some(c) if *c > b'h' => 1,
        _ => 0,
    }
}

#[derive(Default)]
pub struct FakeStore {
    records: Mutex<Records>,
    revision: AtomicU64,
    /// Commits to refuse as conflicts before accepting.
    pub conflicts: AtomicU32,
    /// Commits to apply but answer with an error (the answer is lost).
    pub lost_answers: AtomicU32,
    /// After this many more successful commits, every commit fails
    /// unapplied (u32::MAX: never).
    pub commits_until_outage: AtomicU32,
    pub commits: AtomicU32,
    /// Shards without a majority.
    dead: Mutex<HashSet<u32>>,
    /// While set, optimistic reads answer from this copy of the records,
    /// as a replica that lags behind would.
    lagging: Mutex<Option<Records>>,
    pub optimistic_reads: AtomicU32,
    pub linearizable_reads: AtomicU32,
}

type Records = HashMap<RecordKey, (Record, u64)>;

impl FakeStore {
    pub fn new() -> Self {
        let store = Self::default();
        store.commits_until_outage.store(u32::MAX, Ordering::SeqCst);
        store
    }

    /// Ends the outage.
    pub fn heal(&self) {
        self.commits_until_outage.store(u32::MAX, Ordering::SeqCst);
    }

    /// Takes `shard`'s majority away (until `revive`).
    pub fn kill_shard(&self, shard: u32) {
        self.dead.lock().expect("lock").insert(shard);
    }

    /// Gives `shard` its majority back.
    pub fn revive_shard(&self, shard: u32) {
        self.dead.lock().expect("lock").remove(&shard);
    }

    /// A call to `shard`: if it is dead, waits out the budget (as a client
    /// retrying a shard without a leader does) and fails.
    async fn reach(&self, shard: u32, budget: TimeBudget) -> Result<(), StoreError> {
        if !self.dead.lock().expect("lock").contains(&shard) {
            return Ok(());
        }
        tokio::time::sleep(budget.remaining()).await;
        Err(StoreError::Unavailable(format!(
            "shard {shard} has no majority"
        )))
    }

    /// From now on, optimistic reads see the records as they are now.
    pub fn lag_optimistic_reads(&self) {
        let now = self.records.lock().expect("lock").clone();
        *self.lagging.lock().expect("lock") = Some(now);
    }

    /// Reads `keys` of one partition: from the lagging copy when
    /// `lagging` and one is set, else from the records.
    async fn read_from(
        &self,
        lagging: bool,
        keys: Vec<RecordKey>,
        budget: TimeBudget,
    ) -> Result<Vec<Option<Versioned<Record>>>, StoreError> {
        let owners: Vec<AccountKey> = keys.iter().map(RecordKey::owner).collect();
        if owners.windows(2).any(|w| w[0] != w[1]) {
            return Err(StoreError::NotColocated("read across partitions".into()));
        }
        if let Some(owner) = owners.first() {
            self.reach(shard_of(owner), budget).await?;
        }
        let copy = self.lagging.lock().expect("lock");
        let current = self.records.lock().expect("lock");
        let records = match copy.as_ref() {
            Some(copy) if lagging => copy,
            _ => &*current,
        };
        Ok(keys
            .iter()
            .map(|k| {
                records.get(k).map(|(r, v)| Versioned {
                    value: r.clone(),
                    version: *v,
                })
            })
            .collect())
    }

    /// Sets a record directly, as data written by an older version would be.
    pub fn put_raw(&self, key: RecordKey, record: Record) {
        let revision = self.revision.fetch_add(1, Ordering::SeqCst) + 1;
        self.records
            .lock()
            .expect("lock")
            .insert(key, (record, revision));
    }

    fn take(n: &AtomicU32) -> bool {
        n.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |v| v.checked_sub(1))
            .is_ok()
    }

    /// Whether any pending mark exists.
    pub fn has_pending_any(&self) -> bool {
        self.all()
            .iter()
            .any(|(k, _)| matches!(k, RecordKey::Pending(..)))
    }

    /// Every record, for assertions.
    pub fn all(&self) -> Vec<(RecordKey, Record)> {
        let records = self.records.lock().expect("lock");
        records
            .iter()
            .map(|(k, (r, _))| (k.clone(), r.clone()))
            .collect()
    }
}

fn colocated_keys<'a>(keys: impl Iterator<Item = &'a RecordKey>) -> bool {
    let shards: Vec<u32> = keys.map(|k| shard_of(&k.owner())).collect();
    shards.windows(2).all(|w| w[0] == w[1])
}

impl Store for FakeStore {
    async fn read(
        &self,
        keys: Vec<RecordKey>,
        budget: TimeBudget,
    ) -> Result<Vec<Option<Versioned<Record>>>, StoreError> {
        self.linearizable_reads.fetch_add(1, Ordering::SeqCst);
        self.read_from(false, keys, budget).await
    }

    async fn read_optimistic(
        &self,
        keys: Vec<RecordKey>,
        budget: TimeBudget,
    ) -> Result<Vec<Option<Versioned<Record>>>, StoreError> {
        self.optimistic_reads.fetch_add(1, Ordering::SeqCst);
        self.read_from(true, keys, budget).await
    }

    async fn commit(&self, change: Change, budget: TimeBudget) -> Result<Commit, StoreError> {
        let keys = change
            .conditions
            .iter()
            .map(|(k, _)| k)
            .chain(change.writes.iter().map(|w| match w {
                Write::Put(k, _) | Write::Delete(k) => k,
            }));
        if !colocated_keys(keys.clone()) {
            return Err(StoreError::NotColocated("commit across shards".into()));
        }
        let shard = keys.map(|k| shard_of(&k.owner())).next();
        if let Some(shard) = shard {
            self.reach(shard, budget).await?;
        }
        if self.commits_until_outage.load(Ordering::SeqCst) == 0 {
            return Err(StoreError::Unavailable("injected outage".into()));
        }
        if Self::take(&self.conflicts) {
            return Ok(Commit::Conflict);
        }
        let mut records = self.records.lock().expect("lock");
        for (key, version) in &change.conditions {
            if records.get(key).map_or(0, |(_, v)| *v) != *version {
                return Ok(Commit::Conflict);
            }
        }
        let revision = self.revision.fetch_add(1, Ordering::SeqCst) + 1;
        for write in change.writes {
            match write {
                Write::Put(k, r) => records.insert(k, (r, revision)),
                Write::Delete(k) => records.remove(&k),
            };
        }
        drop(records);
        self.commits.fetch_add(1, Ordering::SeqCst);
        let _ = self
            .commits_until_outage
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |v| {
                if v == u32::MAX {
                    None
                } else {
                    v.checked_sub(1)
                }
            });
        if Self::take(&self.lost_answers) {
            return Err(StoreError::Unavailable("answer lost".into()));
        }
        Ok(Commit::Done)
    }

    fn colocated(&self, a: &AccountKey, b: &AccountKey) -> bool {
        shard_of(a) == shard_of(b)
    }

    async fn list_accounts(
        &self,
        tenant: &TenantId,
        after: Option<&AccountId>,
        limit: usize,
        _: TimeBudget,
    ) -> Result<AccountPage, StoreError> {
        let mut accounts: Vec<_> = self
            .all()
            .into_iter()
            .filter_map(|(k, r)| match (k, r) {
                (RecordKey::Account(k), Record::Account(a)) if &k.tenant == tenant => Some(a),
                _ => None,
            })
            .filter(|a| after.is_none_or(|after| &a.id > after))
            .collect();
        accounts.sort_by(|a, b| a.id.cmp(&b.id));
        let more = accounts.len() > limit;
        accounts.truncate(limit);
        Ok(AccountPage {
            accounts,
            more,
            missing_shards: vec![],
        })
    }

    async fn list_entries(
        &self,
        key: &AccountKey,
        before: Option<u64>,
        limit: usize,
        _: TimeBudget,
    ) -> Result<(Vec<Entry>, bool), StoreError> {
        let mut entries: Vec<Entry> = self
            .all()
            .into_iter()
            .filter_map(|(k, r)| match (k, r) {
                (RecordKey::Entry(k, seq), Record::Entry(e))
                    if &k == key && before.is_none_or(|b| seq < b) =>
                {
                    Some(e)
                }
                _ => None,
            })
            .collect();
        entries.sort_by_key(|e| std::cmp::Reverse(e.sequence));
        let more = entries.len() > limit;
        entries.truncate(limit);
        Ok((entries, more))
    }

    async fn has_pending(&self, key: &AccountKey, _: TimeBudget) -> Result<bool, StoreError> {
        Ok(self
            .all()
            .iter()
            .any(|(k, _)| matches!(k, RecordKey::Pending(..)) && &k.owner() == key))
    }

    fn shards(&self) -> Vec<u32> {
        (0..SHARDS).collect()
    }

    async fn list_pending(
        &self,
        shard: u32,
        _: usize,
        budget: TimeBudget,
    ) -> Result<Vec<PendingTransfer>, StoreError> {
        self.reach(shard, budget).await?;
        let records = self.records.lock().expect("lock");
        Ok(records
            .iter()
            .filter_map(|(k, (r, version))| match (k, r) {
                (RecordKey::Pending(tenant, id), Record::Pending(mark))
                    if shard_of(&k.owner()) == shard =>
                {
                    Some(PendingTransfer {
                        tenant: tenant.clone(),
                        id: id.clone(),
                        mark: Versioned {
                            value: mark.clone(),
                            version: *version,
                        },
                    })
                }
                _ => None,
            })
            .collect())
    }
}
