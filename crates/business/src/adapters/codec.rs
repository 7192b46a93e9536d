//! The storage codec: where each domain record lives (table and key) and
//! how it is encoded — one storage table per kind, JSON values, so that a
//! value read with `grpcurl ... Kv/Read` is readable (base64-decode it).
//! The domain never sees these types.
//!
//! | record | partition | table | key |
//! |---|---|---|---|
//! | account | `tenant/account` | `account` | empty |
//! | entry | `tenant/account` | `entry` | sequence, 8 bytes big-endian |
//! | receipt | `tenant/account` | `receipt` | request id |
//! | transfer | `tenant/from` | `transfer` | request id |
//! | pending mark | `tenant/from` | `pending` | request id |
//! | inbound mark | `tenant/to` | `inbound` | transfer id |

use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use crate::app::{Record, RecordKey, StoreError};
use crate::domain::{
    Account, AccountId, AccountStatus, Amount, Entry, Inbound, Outcome, PendingMark, Receipt,
    RequestId, Transfer, TransferId, TransferStatus,
};

pub const ACCOUNT_TABLE: &str = "account";
pub const ENTRY_TABLE: &str = "entry";
pub const RECEIPT_TABLE: &str = "receipt";
pub const TRANSFER_TABLE: &str = "transfer";
pub const PENDING_TABLE: &str = "pending";
pub const INBOUND_TABLE: &str = "inbound";

/// Where a record lives: (table, key) inside its owner's partition.
pub fn location(key: &RecordKey) -> (&'static str, Vec<u8>) {
    match key {
        RecordKey::Account(_) => (ACCOUNT_TABLE, vec![]),
        RecordKey::Receipt(_, rid) => (RECEIPT_TABLE, rid.as_str().as_bytes().to_vec()),
        RecordKey::Entry(_, seq) => (ENTRY_TABLE, entry_key(*seq)),
        RecordKey::Transfer(_, id) => (TRANSFER_TABLE, id.request_id.as_str().as_bytes().to_vec()),
        RecordKey::Pending(_, id) => (PENDING_TABLE, id.request_id.as_str().as_bytes().to_vec()),
        RecordKey::Inbound(_, id) => (INBOUND_TABLE, id.to_string().into_bytes()),
    }
}

/// The storage key of an entry: its sequence, big-endian, so entries sort
/// by sequence (and a reverse scan gives the newest first).
pub fn entry_key(sequence: u64) -> Vec<u8> {
    sequence.to_be_bytes().to_vec()
}

fn corrupt(what: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(format!("{what}: {e}"))
}

#[derive(Debug, Serialize, Deserialize)]
pub struct AccountRecord {
    pub account_id: String,
    pub balance: i64,
    /// Absent in records written before accounts counted it: none.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub in_flight_out: i64,
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
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transfer_id: Option<String>,
    pub created_at: SystemTime,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OutcomeRecord {
    Account(AccountRecord),
    Transfer(String),
}

#[derive(Debug, Serialize, Deserialize)]
pub struct ReceiptRecord {
    pub request_id: String,
    pub fingerprint: String,
    pub outcome: OutcomeRecord,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct TransferRecord {
    pub transfer_id: String,
    pub to: String,
    pub amount: i64,
    /// pending, completed or failed.
    pub status: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub failure_reason: String,
    pub created_at: SystemTime,
    pub updated_at: SystemTime,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct PendingRecord {
    pub since: SystemTime,
    /// Recovery attempts that failed, the last one's error, and when
    /// recovery may try again (absent until one failed).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub failures: u32,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub last_error: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_at: Option<SystemTime>,
}

fn is_zero<T: Default + PartialEq>(n: &T) -> bool {
    *n == T::default()
}

#[derive(Debug, Serialize, Deserialize)]
pub struct InboundRecord {
    /// credited or rejected.
    pub decision: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub reason: String,
}

fn account_record(a: &Account) -> AccountRecord {
    AccountRecord {
        account_id: a.id.to_string(),
        balance: a.balance,
        in_flight_out: a.in_flight_out,
        version: a.version,
        closed: a.status == AccountStatus::Closed,
        created_at: a.created_at,
        updated_at: a.updated_at,
        entries: a.entries,
    }
}

fn account_of(r: AccountRecord) -> Result<Account, StoreError> {
    Ok(Account {
        id: AccountId::parse(&r.account_id).map_err(|e| corrupt("account record", e))?,
        balance: r.balance,
        in_flight_out: r.in_flight_out,
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

fn entry_of(r: EntryRecord) -> Result<Entry, StoreError> {
    Ok(Entry {
        sequence: r.sequence,
        amount: r.amount,
        balance_after: r.balance_after,
        request_id: RequestId::parse(&r.request_id).map_err(|e| corrupt("entry record", e))?,
        transfer_id: r
            .transfer_id
            .map(|t| TransferId::parse(&t).map_err(|e| corrupt("entry record", e)))
            .transpose()?,
        created_at: r.created_at,
    })
}

fn transfer_of(r: TransferRecord) -> Result<Transfer, StoreError> {
    let bad = |e: &dyn std::fmt::Display| corrupt("transfer record", e);
    Ok(Transfer {
        id: TransferId::parse(&r.transfer_id).map_err(|e| bad(&e))?,
        to: AccountId::parse(&r.to).map_err(|e| bad(&e))?,
        amount: Amount::parse(r.amount).map_err(|e| bad(&e))?,
        status: match r.status.as_str() {
            "pending" => TransferStatus::Pending,
            "completed" => TransferStatus::Completed,
            "failed" => TransferStatus::Failed {
                reason: r.failure_reason,
            },
            other => return Err(bad(&format!("unknown status {other:?}"))),
        },
        created_at: r.created_at,
        updated_at: r.updated_at,
    })
}

fn json<T: Serialize>(value: &T) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(value).map_err(|e| corrupt("encode record", e))
}

fn parse<T: for<'de> Deserialize<'de>>(what: &str, bytes: &[u8]) -> Result<T, StoreError> {
    serde_json::from_slice(bytes).map_err(|e| corrupt(what, e))
}

/// Encodes a record for storage.
pub fn encode(record: &Record) -> Result<Vec<u8>, StoreError> {
    match record {
        Record::Account(a) => json(&account_record(a)),
        Record::Entry(e) => json(&EntryRecord {
            sequence: e.sequence,
            amount: e.amount,
            balance_after: e.balance_after,
            request_id: e.request_id.to_string(),
            transfer_id: e.transfer_id.as_ref().map(ToString::to_string),
            created_at: e.created_at,
        }),
        Record::Receipt(r) => json(&ReceiptRecord {
            request_id: r.request_id.to_string(),
            fingerprint: r.fingerprint.clone(),
            outcome: match &r.outcome {
                Outcome::Account(a) => OutcomeRecord::Account(account_record(a)),
                Outcome::Transfer(id) => OutcomeRecord::Transfer(id.to_string()),
            },
        }),
        Record::Transfer(t) => {
            let (status, failure_reason) = match &t.status {
                TransferStatus::Pending => ("pending", String::new()),
                TransferStatus::Completed => ("completed", String::new()),
                TransferStatus::Failed { reason } => ("failed", reason.clone()),
            };
            json(&TransferRecord {
                transfer_id: t.id.to_string(),
                to: t.to.to_string(),
                amount: t.amount.get(),
                status: status.into(),
                failure_reason,
                created_at: t.created_at,
                updated_at: t.updated_at,
            })
        }
        Record::Pending(p) => json(&PendingRecord {
            since: p.since,
            failures: p.failures,
            last_error: p.last_error.clone(),
            retry_at: p.retry_at,
        }),
        Record::Inbound(i) => json(&match i {
            Inbound::Credited => InboundRecord {
                decision: "credited".into(),
                reason: String::new(),
            },
            Inbound::Rejected { reason } => InboundRecord {
                decision: "rejected".into(),
                reason: reason.clone(),
            },
        }),
    }
}

/// Decodes the stored value of `key`.
pub fn decode(key: &RecordKey, bytes: &[u8]) -> Result<Record, StoreError> {
    Ok(match key {
        RecordKey::Account(_) => Record::Account(account_of(parse("account record", bytes)?)?),
        RecordKey::Entry(..) => Record::Entry(entry_of(parse("entry record", bytes)?)?),
        RecordKey::Receipt(..) => {
            let r: ReceiptRecord = parse("receipt record", bytes)?;
            Record::Receipt(Receipt {
                request_id: RequestId::parse(&r.request_id)
                    .map_err(|e| corrupt("receipt record", e))?,
                fingerprint: r.fingerprint,
                outcome: match r.outcome {
                    OutcomeRecord::Account(a) => Outcome::Account(account_of(a)?),
                    OutcomeRecord::Transfer(id) => Outcome::Transfer(
                        TransferId::parse(&id).map_err(|e| corrupt("receipt record", e))?,
                    ),
                },
            })
        }
        RecordKey::Transfer(..) => Record::Transfer(transfer_of(parse("transfer record", bytes)?)?),
        RecordKey::Pending(..) => Record::Pending(pending_of(bytes)?),
        RecordKey::Inbound(..) => {
            let r: InboundRecord = parse("inbound record", bytes)?;
            Record::Inbound(match r.decision.as_str() {
                "credited" => Inbound::Credited,
                "rejected" => Inbound::Rejected { reason: r.reason },
                other => {
                    return Err(corrupt(
                        "inbound record",
                        format!("unknown decision {other:?}"),
                    ));
                }
            })
        }
    })
}

/// Decodes a stored account (for scans).
pub fn decode_account(bytes: &[u8]) -> Result<Account, StoreError> {
    account_of(parse("account record", bytes)?)
}

/// Decodes a stored entry (for scans).
pub fn decode_entry(bytes: &[u8]) -> Result<Entry, StoreError> {
    entry_of(parse("entry record", bytes)?)
}

/// Decodes a stored pending mark (for scans).
pub fn pending_of(bytes: &[u8]) -> Result<PendingMark, StoreError> {
    let r: PendingRecord = parse("pending record", bytes)?;
    Ok(PendingMark {
        since: r.since,
        failures: r.failures,
        last_error: r.last_error,
        retry_at: r.retry_at,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{AccountKey, TenantId};

    fn alice() -> AccountKey {
        AccountKey {
            tenant: TenantId::parse("acme").expect("tenant"),
            account: AccountId::parse("alice").expect("id"),
        }
    }

    #[test]
    fn records_written_before_money_in_flight_was_counted_still_read() {
        let old_account = br#"{"account_id":"alice","balance":7,"version":2,"closed":false,
            "created_at":{"secs_since_epoch":1,"nanos_since_epoch":0},
            "updated_at":{"secs_since_epoch":1,"nanos_since_epoch":0},"entries":1}"#;
        let Record::Account(a) =
            decode(&RecordKey::Account(alice()), old_account).expect("decodes")
        else {
            panic!("an account");
        };
        assert_eq!((a.balance, a.in_flight_out), (7, 0));
        let old_mark = br#"{"since":{"secs_since_epoch":1,"nanos_since_epoch":0}}"#;
        let mark = pending_of(old_mark).expect("decodes");
        assert_eq!((mark.failures, mark.retry_at), (0, None));
    }

    #[test]
    fn a_noted_failure_round_trips_and_a_fresh_mark_stays_small() {
        let since = SystemTime::UNIX_EPOCH;
        let fresh = PendingMark::new(since);
        let bytes = encode(&Record::Pending(fresh.clone())).expect("encodes");
        assert!(!String::from_utf8_lossy(&bytes).contains("failures"));
        let failed = fresh.failed(
            "storage unavailable".into(),
            since,
            std::time::Duration::from_secs(4),
        );
        let bytes = encode(&Record::Pending(failed.clone())).expect("encodes");
        assert_eq!(pending_of(&bytes).expect("decodes"), failed);
    }
}
