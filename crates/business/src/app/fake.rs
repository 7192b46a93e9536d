//! An in-memory `Store` for unit tests of the use cases, with faults to
//! inject: conflicts, lost answers, and an outage that starts after a
//! number of commits (an executor crashing between saga steps).

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use super::ports::{AccountPage, Change, PendingTransfers, Write};
use super::{Commit, Deadline, Record, RecordKey, Store, StoreError, Versioned};
use crate::domain::{AccountId, AccountKey, Entry, TenantId};

/// Accounts whose id starts with a letter up to `m` live on shard 0, the
/// rest on shard 1.
pub fn shard_of(key: &AccountKey) -> u32 {
    u32::from(
        key.account
            .as_str()
            .as_bytes()
            .first()
            .is_some_and(|c| *c > b'm'),
    )
}

#[derive(Default)]
pub struct FakeStore {
    records: Mutex<HashMap<RecordKey, (Record, u64)>>,
    revision: AtomicU64,
    /// Commits to refuse as conflicts before accepting.
    pub conflicts: AtomicU32,
    /// Commits to apply but answer with an error (the answer is lost).
    pub lost_answers: AtomicU32,
    /// After this many more successful commits, every commit fails
    /// unapplied (u32::MAX: never).
    pub commits_until_outage: AtomicU32,
    pub commits: AtomicU32,
}

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
        _: Deadline,
    ) -> Result<Vec<Option<Versioned<Record>>>, StoreError> {
        let owners: Vec<AccountKey> = keys.iter().map(RecordKey::owner).collect();
        if owners.windows(2).any(|w| w[0] != w[1]) {
            return Err(StoreError::NotColocated("read across partitions".into()));
        }
        let records = self.records.lock().expect("lock");
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

    async fn commit(&self, change: Change, _: Deadline) -> Result<Commit, StoreError> {
        let keys = change
            .expect
            .iter()
            .map(|(k, _)| k)
            .chain(change.writes.iter().map(|w| match w {
                Write::Put(k, _) | Write::Delete(k) => k,
            }));
        if !colocated_keys(keys) {
            return Err(StoreError::NotColocated("commit across shards".into()));
        }
        if self.commits_until_outage.load(Ordering::SeqCst) == 0 {
            return Err(StoreError::Unavailable("injected outage".into()));
        }
        if Self::take(&self.conflicts) {
            return Ok(Commit::Conflict);
        }
        let mut records = self.records.lock().expect("lock");
        for (key, version) in &change.expect {
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
        _: Deadline,
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
        _: Deadline,
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

    async fn has_pending(&self, key: &AccountKey, _: Deadline) -> Result<bool, StoreError> {
        Ok(self
            .all()
            .iter()
            .any(|(k, _)| matches!(k, RecordKey::Pending(..)) && &k.owner() == key))
    }

    async fn list_pending(&self, _: usize, _: Deadline) -> Result<PendingTransfers, StoreError> {
        let transfers = self
            .all()
            .into_iter()
            .filter_map(|(k, r)| match (k, r) {
                (RecordKey::Pending(t, id), Record::Pending(m)) => Some((t, id, m)),
                _ => None,
            })
            .collect();
        Ok(PendingTransfers {
            transfers,
            missing_shards: vec![],
        })
    }
}
