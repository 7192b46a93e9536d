//! The `AccountStore` port over the storage service. Every record of an
//! account lives in its partition (`tenant/account_id`), so each change is
//! one atomic conditional batch on one shard.

use anatomy_proto::storage::v1 as pb;
use storage_client::{StorageClient, StorageError};

use super::records::{
    ACCOUNT_TABLE, AccountRecord, ENTRY_TABLE, EntryRecord, RECEIPT_TABLE, ReceiptRecord, decode,
    encode, entry_key,
};
use crate::app::{
    AccountChange, AccountState, AccountStore, Commit, Deadline, StoreError, Versioned,
};
use crate::domain::{AccountKey, RequestId};

/// Accounts in the storage service.
#[derive(Debug, Clone)]
pub struct StorageAccounts {
    client: StorageClient,
}

impl StorageAccounts {
    /// Accounts stored through `client`.
    pub fn new(client: StorageClient) -> Self {
        Self { client }
    }
}

fn unavailable(e: StorageError) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

fn item_key(table: &str, key: Vec<u8>) -> pb::ItemKey {
    pb::ItemKey {
        table: table.into(),
        key: key.into(),
    }
}

fn put(table: &str, key: Vec<u8>, value: Vec<u8>) -> pb::Mutation {
    pb::Mutation {
        table: table.into(),
        key: key.into(),
        op: Some(pb::mutation::Op::Put(value.into())),
    }
}

impl AccountStore for StorageAccounts {
    async fn load(
        &self,
        key: &AccountKey,
        request_id: Option<&RequestId>,
        deadline: Deadline,
    ) -> Result<AccountState, StoreError> {
        let mut keys = vec![item_key(ACCOUNT_TABLE, vec![])];
        if let Some(rid) = request_id {
            keys.push(item_key(RECEIPT_TABLE, rid.as_str().as_bytes().to_vec()));
        }
        let items = self
            .client
            .read(&key.partition(), keys, deadline.remaining())
            .await
            .map_err(unavailable)?;
        let mut state = AccountState::default();
        for item in items.into_iter().filter(|i| i.version > 0) {
            match item.table.as_str() {
                ACCOUNT_TABLE => {
                    let record: AccountRecord = decode("account record", &item.value)?;
                    state.account = Some(Versioned {
                        value: record.try_into()?,
                        version: item.version,
                    });
                }
                RECEIPT_TABLE => {
                    let record: ReceiptRecord = decode("receipt record", &item.value)?;
                    state.receipt = Some(record.try_into()?);
                }
                _ => {}
            }
        }
        Ok(state)
    }

    async fn commit(
        &self,
        change: AccountChange,
        deadline: Deadline,
    ) -> Result<Commit, StoreError> {
        let receipt_key = change.receipt.request_id.as_str().as_bytes().to_vec();
        let conditions = vec![
            pb::Condition {
                table: ACCOUNT_TABLE.into(),
                key: Vec::new().into(),
                expected_version: change.expected_version,
            },
            pb::Condition {
                table: RECEIPT_TABLE.into(),
                key: receipt_key.clone().into(),
                expected_version: 0,
            },
        ];
        let mut mutations = vec![
            put(
                ACCOUNT_TABLE,
                vec![],
                encode(&AccountRecord::from(&change.account))?,
            ),
            put(
                RECEIPT_TABLE,
                receipt_key,
                encode(&ReceiptRecord::from(&change.receipt))?,
            ),
        ];
        if let Some(entry) = &change.entry {
            mutations.push(put(
                ENTRY_TABLE,
                entry_key(entry.sequence),
                encode(&EntryRecord::from(entry))?,
            ));
        }
        let response = self
            .client
            .write(
                &change.key.partition(),
                conditions,
                mutations,
                deadline.remaining(),
            )
            .await
            .map_err(unavailable)?;
        Ok(if response.applied {
            Commit::Done
        } else {
            Commit::Conflict
        })
    }
}
