//! How domain objects are stored: JSON records, so that a value read with
//! `grpcurl ... Kv/Read` is readable (base64-decode it). The domain never
//! sees these types.

use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use crate::app::StoreError;
use crate::domain::{Account, AccountId, AccountStatus, Entry, Receipt, RequestId};

/// Storage tables: one account record, its entries, its receipts.
pub const ACCOUNT_TABLE: &str = "account";
pub const ENTRY_TABLE: &str = "entry";
pub const RECEIPT_TABLE: &str = "receipt";

#[derive(Debug, Serialize, Deserialize)]
pub struct AccountRecord {
    pub account_id: String,
    pub balance: i64,
    pub version: u64,
    pub closed: bool,
    pub created_at: SystemTime,
    pub updated_at: SystemTime,
    pub entries: u64,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct EntryRecord {
    pub sequence: u64,
    pub amount: i64,
    pub balance_after: i64,
    pub request_id: String,
    pub created_at: SystemTime,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct ReceiptRecord {
    pub request_id: String,
    pub fingerprint: String,
    pub result: AccountRecord,
}

fn corrupt(what: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(format!("{what}: {e}"))
}

impl From<&Account> for AccountRecord {
    fn from(a: &Account) -> Self {
        Self {
            account_id: a.id.to_string(),
            balance: a.balance,
            version: a.version,
            closed: a.status == AccountStatus::Closed,
            created_at: a.created_at,
            updated_at: a.updated_at,
            entries: a.entries,
        }
    }
}

impl TryFrom<AccountRecord> for Account {
    type Error = StoreError;
    fn try_from(r: AccountRecord) -> Result<Self, StoreError> {
        Ok(Self {
            id: AccountId::parse(&r.account_id).map_err(|e| corrupt("account record", e))?,
            balance: r.balance,
            version: r.version,
            status: if r.closed {
                AccountStatus::Closed
            } else {
                AccountStatus::Open
            },
            created_at: r.created_at,
            updated_at: r.updated_at,
            entries: r.entries,
        })
    }
}

impl From<&Entry> for EntryRecord {
    fn from(e: &Entry) -> Self {
        Self {
            sequence: e.sequence,
            amount: e.amount,
            balance_after: e.balance_after,
            request_id: e.request_id.to_string(),
            created_at: e.created_at,
        }
    }
}

impl From<&Receipt> for ReceiptRecord {
    fn from(r: &Receipt) -> Self {
        Self {
            request_id: r.request_id.to_string(),
            fingerprint: r.fingerprint.clone(),
            result: AccountRecord::from(&r.result),
        }
    }
}

impl TryFrom<ReceiptRecord> for Receipt {
    type Error = StoreError;
    fn try_from(r: ReceiptRecord) -> Result<Self, StoreError> {
        Ok(Self {
            request_id: RequestId::parse(&r.request_id)
                .map_err(|e| corrupt("receipt record", e))?,
            fingerprint: r.fingerprint,
            result: r.result.try_into()?,
        })
    }
}

/// Encodes a record.
pub fn encode<T: Serialize>(record: &T) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(record).map_err(|e| corrupt("encode record", e))
}

/// Decodes a record.
pub fn decode<T: for<'de> Deserialize<'de>>(what: &str, bytes: &[u8]) -> Result<T, StoreError> {
    serde_json::from_slice(bytes).map_err(|e| corrupt(what, e))
}

/// The storage key of an entry: its sequence, big-endian, so entries sort
/// by sequence (and a reverse scan gives the newest first).
pub fn entry_key(sequence: u64) -> Vec<u8> {
    sequence.to_be_bytes().to_vec()
}
