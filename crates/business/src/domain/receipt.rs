//! Idempotency receipts: what a mutation returned the first time, stored
//! atomically with the change it made, keyed by (account, request_id).

use super::{Account, AccountId, AccountKey, Amount, RequestId, TransferId};

/// What the first execution of a request produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The account after the change.
    Account(Account),
    /// The transfer the request started (its current state is in the
    /// transfer record).
    Transfer(TransferId),
}

/// The record that makes a mutation idempotent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Receipt {
    pub request_id: RequestId,
    /// What the request asked for, e.g. `deposit acme/alice 100`: a replay
    /// must ask for exactly the same thing.
    pub fingerprint: String,
    pub outcome: Outcome,
}

/// The fingerprint of a mutation of one account: operation, account and arguments.
pub fn fingerprint(operation: &str, key: &AccountKey, amount: Option<Amount>) -> String {
    match amount {
        Some(a) => format!("{operation} {} {}", key.partition(), a.get()),
        None => format!("{operation} {}", key.partition()),
    }
}

/// The fingerprint of a transfer.
pub fn transfer_fingerprint(from: &AccountKey, to: &AccountId, amount: Amount) -> String {
    format!("transfer {} {} {}", from.partition(), to, amount.get())
}
