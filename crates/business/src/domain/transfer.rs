//! Transfers between two accounts of a tenant.
//!
//! A transfer's id is derived from the source account and the client's
//! request id (`<from_account_id>~<request_id>`; `~` never occurs in an
//! account id), so a retried Transfer finds the transfer it started, and
//! GetTransfer knows which partition holds it.

use std::fmt;
use std::time::{Duration, SystemTime};

use super::{AccountId, Amount, DomainError, RequestId};

/// Identifies a transfer: its source account and request id.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TransferId {
    pub from: AccountId,
    pub request_id: RequestId,
}

const SEPARATOR: char = '~';

impl TransferId {
    /// Parses `<from_account_id>~<request_id>`.
    pub fn parse(text: &str) -> Result<Self, DomainError> {
        let bad = || DomainError::InvalidArgument {
            field: "transfer_id",
            reason: format!("{text:?} is not a transfer id (they look like alice~req-42)"),
        };
        let (from, request) = text.split_once(SEPARATOR).ok_or_else(bad)?;
        Ok(Self {
            from: AccountId::parse(from).map_err(|_| bad())?,
            request_id: RequestId::parse(request).map_err(|_| bad())?,
        })
    }
}

impl fmt::Display for TransferId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{SEPARATOR}{}", self.from, self.request_id)
    }
}

/// Where a transfer is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TransferStatus {
    /// Debited from the source; the credit is on its way.
    Pending,
    /// Credited to the destination.
    Completed,
    /// Not done; the source got its money back (or never gave it).
    Failed { reason: String },
}

/// A transfer as the ledger keeps it (in the source account's partition).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transfer {
    pub id: TransferId,
    pub to: AccountId,
    pub amount: Amount,
    pub status: TransferStatus,
    pub created_at: SystemTime,
    pub updated_at: SystemTime,
}

impl Transfer {
    /// The source account.
    pub fn from(&self) -> &AccountId {
        &self.id.from
    }

    /// Whether the transfer has ended (COMPLETED or FAILED).
    pub fn is_done(&self) -> bool {
        !matches!(self.status, TransferStatus::Pending)
    }

    /// The transfer in a new status.
    pub fn with_status(&self, status: TransferStatus, now: SystemTime) -> Self {
        Self {
            status,
            updated_at: now,
            ..self.clone()
        }
    }
}

/// The destination's record of a transfer: the decision point of the saga.
/// Whoever writes it first decides — a credit (Credited) or a refusal
/// (Rejected) — and both are written only where none exists yet, so a
/// transfer is credited at most once and never both credited and refunded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Inbound {
    Credited,
    Rejected { reason: String },
}

/// A transfer whose saga has not ended yet (the recovery worker's to-do
/// list), and how recovering it has gone so far.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingMark {
    pub since: SystemTime,
    /// Recovery attempts that did not end the transfer.
    pub failures: u32,
    /// Why the last of them did not.
    pub last_error: String,
    /// Recovery leaves the transfer alone until then (None: no failure yet).
    pub retry_at: Option<SystemTime>,
}

impl PendingMark {
    /// A transfer pending since `since`, not yet tried by recovery.
    pub fn new(since: SystemTime) -> Self {
        Self {
            since,
            failures: 0,
            last_error: String::new(),
            retry_at: None,
        }
    }

    /// Whether recovery should take the transfer over at `now`: pending for
    /// at least `older_than` (its executor had its chance), and not waiting
    /// to be retried after a failure.
    pub fn is_due(&self, now: SystemTime, older_than: Duration) -> bool {
        let old_enough = now
            .duration_since(self.since)
            .is_ok_and(|age| age >= older_than);
        old_enough && self.retry_at.is_none_or(|at| at <= now)
    }

    /// The mark after one more failed recovery attempt: why, and not again
    /// before `now + wait`.
    pub fn failed(&self, error: String, now: SystemTime, wait: Duration) -> Self {
        Self {
            since: self.since,
            failures: self.failures.saturating_add(1),
            last_error: error,
            retry_at: Some(now.checked_add(wait).unwrap_or(now)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip() {
        let id = TransferId {
            from: AccountId::parse("alice").expect("id"),
            request_id: RequestId::parse("r~1/x").expect("rid"),
        };
        assert_eq!(id.to_string(), "alice~r~1/x");
        assert_eq!(TransferId::parse("alice~r~1/x").expect("parse"), id);
        for bad in ["alice", "~r1", "al ice~r1", "alice~"] {
            assert!(TransferId::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_mark_is_due_once_old_enough_and_not_waiting_for_a_retry() {
        let secs = Duration::from_secs;
        let t0 = SystemTime::UNIX_EPOCH + secs(100);
        let mark = PendingMark::new(t0);
        assert!(
            !mark.is_due(t0 + secs(4), secs(5)),
            "its executor may still be at it"
        );
        assert!(mark.is_due(t0 + secs(5), secs(5)));
        assert!(
            !mark.is_due(t0 - secs(1), Duration::ZERO),
            "a replica whose clock is behind the mark's waits"
        );
        let failed = mark.failed("storage unavailable".into(), t0 + secs(6), secs(10));
        assert_eq!((failed.failures, failed.since), (1, t0));
        assert!(!failed.is_due(t0 + secs(15), secs(5)), "backing off");
        assert!(failed.is_due(t0 + secs(16), secs(5)));
        let again = failed.failed("still".into(), t0 + secs(16), secs(20));
        assert_eq!((again.failures, again.last_error.as_str()), (2, "still"));
    }

    #[test]
    fn amounts_are_kept() {
        assert_eq!(Amount::parse(3).expect("amount").get(), 3);
    }
}
