//! Idempotency receipts: what a mutation returned the first time, stored
//! atomically with the change it made, keyed by its request_id.

use super::{Account, AccountKey, Amount, RequestId};

/// The record that makes a mutation idempotent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Receipt {
    pub request_id: RequestId,
    /// What the request asked for, e.g. `deposit acme/alice 100`: a replay
    /// must ask for exactly the same thing.
    pub fingerprint: String,
    /// The result the first execution returned.
    pub result: Account,
}

/// The fingerprint of a mutation: operation, account and arguments.
pub fn fingerprint(operation: &str, key: &AccountKey, amount: Option<Amount>) -> String {
    match amount {
        Some(a) => format!("{operation} {} {}", key.partition(), a.get()),
        None => format!("{operation} {}", key.partition()),
    }
}
