//! Typed access to what the store returns: each read slot as the kind of
//! record it must hold, with its version.

use super::ports::{Record, Versioned};
use crate::domain::{Account, DomainError, Inbound, Receipt, Transfer};

fn typed<T>(
    slot: Option<Versioned<Record>>,
    what: &str,
    pick: impl FnOnce(Record) -> Option<T>,
) -> Result<Option<Versioned<T>>, DomainError> {
    let Some(stored) = slot else { return Ok(None) };
    let version = stored.version;
    pick(stored.value)
        .map(|value| Some(Versioned { value, version }))
        .ok_or_else(|| {
            DomainError::Internal(format!("the stored {what} is another kind of record"))
        })
}

/// An account read from the store.
pub fn account(slot: Option<Versioned<Record>>) -> Result<Option<Versioned<Account>>, DomainError> {
    typed(slot, "account", |r| match r {
        Record::Account(a) => Some(a),
        _ => None,
    })
}

/// A receipt read from the store.
pub fn receipt(slot: Option<Versioned<Record>>) -> Result<Option<Versioned<Receipt>>, DomainError> {
    typed(slot, "receipt", |r| match r {
        Record::Receipt(x) => Some(x),
        _ => None,
    })
}

/// A transfer read from the store.
pub fn transfer(
    slot: Option<Versioned<Record>>,
) -> Result<Option<Versioned<Transfer>>, DomainError> {
    typed(slot, "transfer", |r| match r {
        Record::Transfer(t) => Some(t),
        _ => None,
    })
}

/// A destination's decision read from the store.
pub fn inbound(slot: Option<Versioned<Record>>) -> Result<Option<Versioned<Inbound>>, DomainError> {
    typed(slot, "inbound mark", |r| match r {
        Record::Inbound(i) => Some(i),
        _ => None,
    })
}

/// Takes the reads apart in order (the store answers one per key).
pub fn split<const N: usize>(
    reads: Vec<Option<Versioned<Record>>>,
) -> Result<[Option<Versioned<Record>>; N], DomainError> {
    reads.try_into().map_err(|v: Vec<_>| {
        DomainError::Internal(format!("the store answered {} reads, not {N}", v.len()))
    })
}
