//! The `Store` port over the storage service. Every record of an account
//! lives in its partition (`tenant/account_id`), so an account's change is
//! one atomic conditional batch on one shard; a change may also span two
//! accounts that share a shard (a same-shard transfer).

use std::time::Duration;

use futures::future::join_all;
use storage_api::v1 as pb;
use storage_client::{StorageClient, StorageError};

use super::codec::{
    ACCOUNT_TABLE, ENTRY_TABLE, PENDING_TABLE, decode, decode_account, decode_entry, encode,
    entry_key, location, pending_of,
};
use crate::app::ports::{AccountPage, Change, PendingTransfer, Write};
use crate::app::{Commit, Record, RecordKey, Store, StoreError, TimeBudget, Versioned};
use crate::domain::{AccountId, AccountKey, Entry, RequestId, TenantId, TransferId};

/// The ledger's records in the storage service.
#[derive(Debug, Clone)]
pub struct StorageStore {
    client: StorageClient,
    optimistic: pb::ReadConsistency,
}

impl StorageStore {
    /// Records stored through `client`.
    pub fn new(client: StorageClient) -> Self {
        Self {
            client,
            optimistic: pb::ReadConsistency::Local,
        }
    }

    /// With `false`, optimistic reads are linearizable too (to measure
    /// what the read-index round they skip costs).
    pub fn with_optimistic_reads(mut self, enabled: bool) -> Self {
        if !enabled {
            self.optimistic = pb::ReadConsistency::Linearizable;
        }
        self
    }

    fn shard_of(&self, partition: &str) -> u32 {
        self.client.shard_of(partition)
    }

    /// Scans one table on every shard at once; failed shards are reported,
    /// not fatal.
    async fn scan_all(
        &self,
        request: pb::ScanRequest,
        timeout: Duration,
    ) -> (Vec<pb::ScanResponse>, Vec<u32>) {
        let shards: Vec<u32> = self.client.shard_ids();
        let answers = join_all(
            shards
                .iter()
                .map(|&s| self.client.scan(s, request.clone(), timeout)),
        )
        .await;
        let mut found = Vec::new();
        let mut missing = Vec::new();
        for (shard, answer) in shards.into_iter().zip(answers) {
            match answer {
                Ok(r) => found.push(r),
                Err(e) => {
                    tracing::warn!(shard, error = %e, "shard left out of a scan");
                    missing.push(shard);
                }
            }
        }
        (found, missing)
    }
}

/// A pending mark as scanned: the transfer it names and the mark.
fn pending_transfer(item: &pb::Item) -> Result<PendingTransfer, StoreError> {
    let named = (|| {
        let (tenant, from) = item.partition.split_once('/')?;
        let tenant = TenantId::parse(tenant).ok()?;
        let from = AccountId::parse(from).ok()?;
        let request_id = RequestId::parse(std::str::from_utf8(&item.key).ok()?).ok()?;
        Some((tenant, TransferId { from, request_id }))
    })();
    let Some((tenant, id)) = named else {
        return Err(StoreError::Corrupt(format!(
            "pending mark under {:?}",
            item.partition
        )));
    };
    Ok(PendingTransfer {
        tenant,
        id,
        mark: Versioned {
            value: pending_of(&item.value)?,
            version: item.version,
        },
    })
}

/// Storage failed: the details (replica addresses) go to the log, the
/// caller learns which dependency failed, not where it lives.
fn unavailable(e: StorageError) -> StoreError {
    tracing::warn!(error = %e, "storage call failed");
    StoreError::Unavailable(e.public_message())
}

/// A change whose partitions this client now places on different shards
/// (a slot moved since the use case checked they were together): nothing
/// is written; as a conflict, the use case reads again and plans anew.
fn moved_apart(main: &str, other: &str) -> Commit {
    tracing::info!(
        main,
        other,
        "partitions of one change are on different shards now; reading again"
    );
    Commit::Conflict
}

/// The partition that holds `key`'s record.
fn partition(key: &RecordKey) -> String {
    key.owner().partition()
}

/// The partition field of a condition or mutation: empty when it is the
/// request's own.
fn other(partition: String, main: &str) -> String {
    if partition == main {
        String::new()
    } else {
        partition
    }
}

impl StorageStore {
    async fn read_with(
        &self,
        keys: Vec<RecordKey>,
        consistency: pb::ReadConsistency,
        budget: TimeBudget,
    ) -> Result<Vec<Option<Versioned<Record>>>, StoreError> {
        let Some(first) = keys.first() else {
            return Ok(vec![]);
        };
        let main = partition(first);
        if let Some(stray) = keys.iter().find(|k| partition(k) != main) {
            return Err(StoreError::NotColocated(format!(
                "read of {main} and {}",
                partition(stray)
            )));
        }
        let items = keys
            .iter()
            .map(|k| {
                let (table, key) = location(k);
                pb::ItemKey {
                    table: table.into(),
                    key: key.into(),
                }
            })
            .collect();
        let answers = self
            .client
            .read_with(&main, items, consistency, budget.remaining())
            .await
            .map_err(unavailable)?;
        if answers.len() != keys.len() {
            return Err(StoreError::Corrupt(format!(
                "asked for {} items, storage answered {}",
                keys.len(),
                answers.len()
            )));
        }
        keys.iter()
            .zip(answers)
            .map(|(k, item)| {
                if item.version == 0 {
                    return Ok(None);
                }
                Ok(Some(Versioned {
                    value: decode(k, &item.value)?,
                    version: item.version,
                }))
            })
            .collect()
    }
}

impl Store for StorageStore {
    async fn read(
        &self,
        keys: Vec<RecordKey>,
        budget: TimeBudget,
    ) -> Result<Vec<Option<Versioned<Record>>>, StoreError> {
        self.read_with(keys, pb::ReadConsistency::Linearizable, budget)
            .await
    }

    async fn read_optimistic(
        &self,
        keys: Vec<RecordKey>,
        budget: TimeBudget,
    ) -> Result<Vec<Option<Versioned<Record>>>, StoreError> {
        self.read_with(keys, self.optimistic, budget).await
    }

    async fn commit(&self, change: Change, budget: TimeBudget) -> Result<Commit, StoreError> {
        let Some(first) = change.conditions.first().map(|(k, _)| k).or_else(|| {
            change.writes.first().map(|w| match w {
                Write::Put(k, _) | Write::Delete(k) => k,
            })
        }) else {
            return Ok(Commit::Done);
        };
        let main = partition(first);
        let shard = self.shard_of(&main);
        let mut conditions = Vec::new();
        for (key, version) in &change.conditions {
            let p = partition(key);
            if self.shard_of(&p) != shard {
                return Ok(moved_apart(&main, &p));
            }
            let (table, k) = location(key);
            conditions.push(pb::Condition {
                partition: other(p, &main),
                table: table.into(),
                key: k.into(),
                expected_version: *version,
            });
        }
        let mut mutations = Vec::new();
        for write in &change.writes {
            let (key, op) = match write {
                Write::Put(k, record) => (k, pb::mutation::Op::Put(encode(record)?.into())),
                Write::Delete(k) => (k, pb::mutation::Op::Delete(true)),
            };
            let p = partition(key);
            if self.shard_of(&p) != shard {
                return Ok(moved_apart(&main, &p));
            }
            let (table, k) = location(key);
            mutations.push(pb::Mutation {
                partition: other(p, &main),
                table: table.into(),
                key: k.into(),
                op: Some(op),
            });
        }
        let answer = self
            .client
            .write(&main, conditions, mutations, budget.remaining())
            .await;
        let response = match answer {
            Ok(response) => response,
            // A slot of the change moved between the colocation check and
            // the write: the shard refused the whole batch (nothing was
            // written), and the client has learned the new owner. A
            // conflict makes the use case read again and plan anew (a
            // transfer whose accounts are now apart takes the saga path),
            // never a failure that would compensate anything.
            Err(e @ (StorageError::WrongShard { .. } | StorageError::Moved { .. })) => {
                tracing::info!(error = %e, "a slot moved under a change; reading again");
                return Ok(Commit::Conflict);
            }
            Err(e) => return Err(unavailable(e)),
        };
        Ok(if response.applied {
            Commit::Done
        } else {
            Commit::Conflict
        })
    }

    fn colocated(&self, a: &AccountKey, b: &AccountKey) -> bool {
        self.shard_of(&a.partition()) == self.shard_of(&b.partition())
    }

    async fn list_accounts(
        &self,
        tenant: &TenantId,
        after: Option<&AccountId>,
        limit: usize,
        budget: TimeBudget,
    ) -> Result<AccountPage, StoreError> {
        let prefix = format!("{tenant}/");
        let request = pb::ScanRequest {
            table: ACCOUNT_TABLE.into(),
            scope: Some(pb::scan_request::Scope::PartitionPrefix(prefix.clone())),
            start_after: after.map(|a| pb::Cursor {
                partition: format!("{prefix}{a}"),
                key: Vec::new().into(),
            }),
            limit: u32::try_from(limit).unwrap_or(u32::MAX),
            ..Default::default()
        };
        let (answers, missing_shards) = self.scan_all(request, budget.remaining()).await;
        if answers.is_empty() && !missing_shards.is_empty() {
            return Err(StoreError::Unavailable(
                "no storage shard could list accounts".into(),
            ));
        }
        let mut more = answers.iter().any(|a| a.more);
        let mut accounts = answers
            .into_iter()
            .flat_map(|a| a.items)
            .map(|item| decode_account(&item.value))
            .collect::<Result<Vec<_>, _>>()?;
        accounts.sort_by(|a, b| a.id.cmp(&b.id));
        if accounts.len() > limit {
            accounts.truncate(limit);
            more = true;
        }
        Ok(AccountPage {
            accounts,
            more,
            missing_shards,
        })
    }

    async fn list_entries(
        &self,
        key: &AccountKey,
        before: Option<u64>,
        limit: usize,
        budget: TimeBudget,
    ) -> Result<(Vec<Entry>, bool), StoreError> {
        let partition = key.partition();
        let request = pb::ScanRequest {
            table: ENTRY_TABLE.into(),
            scope: Some(pb::scan_request::Scope::Partition(partition.clone())),
            start_after: before.map(|seq| pb::Cursor {
                partition,
                key: entry_key(seq).into(),
            }),
            limit: u32::try_from(limit).unwrap_or(u32::MAX),
            reverse: true,
            ..Default::default()
        };
        let answer = self
            .client
            .scan(0, request, budget.remaining())
            .await
            .map_err(unavailable)?;
        let entries = answer
            .items
            .iter()
            .map(|item| decode_entry(&item.value))
            .collect::<Result<_, _>>()?;
        Ok((entries, answer.more))
    }

    async fn has_pending(&self, key: &AccountKey, budget: TimeBudget) -> Result<bool, StoreError> {
        let request = pb::ScanRequest {
            table: PENDING_TABLE.into(),
            scope: Some(pb::scan_request::Scope::Partition(key.partition())),
            limit: 1,
            ..Default::default()
        };
        let answer = self
            .client
            .scan(0, request, budget.remaining())
            .await
            .map_err(unavailable)?;
        Ok(!answer.items.is_empty())
    }

    fn shards(&self) -> Vec<u32> {
        self.client.shard_ids()
    }

    async fn list_pending(
        &self,
        shard: u32,
        limit: usize,
        budget: TimeBudget,
    ) -> Result<Vec<PendingTransfer>, StoreError> {
        let request = pb::ScanRequest {
            table: PENDING_TABLE.into(),
            scope: Some(pb::scan_request::Scope::PartitionPrefix(String::new())),
            limit: u32::try_from(limit).unwrap_or(u32::MAX),
            ..Default::default()
        };
        let answer = self
            .client
            .scan(shard, request, budget.remaining())
            .await
            .map_err(unavailable)?;
        // One unreadable mark must not hide the others from recovery.
        Ok(answer
            .items
            .iter()
            .filter_map(|item| {
                pending_transfer(item)
                    .inspect_err(|e| tracing::error!(shard, error = %e, "pending mark left out"))
                    .ok()
            })
            .collect())
    }
}
