//! Accounts and the rules money follows: balances are integer minor units
//! and never negative; every change bumps the account's version and
//! appends one entry to its history.

use std::time::SystemTime;

use super::{AccountId, DomainError, RequestId};

/// An amount of money to move: integer minor units, greater than zero.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Amount(i64);

impl Amount {
    /// Validates the `amount` field.
    pub fn parse(value: i64) -> Result<Self, DomainError> {
        if value <= 0 {
            return Err(DomainError::InvalidArgument {
                field: "amount",
                reason: format!("must be greater than 0 (minor units, e.g. cents), got {value}"),
            });
        }
        Ok(Self(value))
    }

    /// The amount in minor units.
    pub fn get(self) -> i64 {
        self.0
    }
}

/// Open accounts take and give money; closed ones do neither.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccountStatus {
    Open,
    Closed,
}

/// An account as the ledger sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    pub id: AccountId,
    /// Minor units, never negative.
    pub balance: i64,
    /// 1 when opened, +1 per change.
    pub version: u64,
    pub status: AccountStatus,
    pub created_at: SystemTime,
    pub updated_at: SystemTime,
    /// How many entries the history holds (the last entry's sequence).
    pub entries: u64,
}

/// One line of an account's history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// 1, 2, 3, … per account.
    pub sequence: u64,
    /// Signed: deposits positive, withdrawals negative.
    pub amount: i64,
    pub balance_after: i64,
    pub request_id: RequestId,
    pub created_at: SystemTime,
}

impl Account {
    /// A new, empty, open account.
    pub fn open(id: AccountId, now: SystemTime) -> Self {
        Self {
            id,
            balance: 0,
            version: 1,
            status: AccountStatus::Open,
            created_at: now,
            updated_at: now,
            entries: 0,
        }
    }

    fn ensure_open(&self) -> Result<(), DomainError> {
        match self.status {
            AccountStatus::Open => Ok(()),
            AccountStatus::Closed => Err(DomainError::AccountClosed {
                account_id: self.id.to_string(),
            }),
        }
    }

    /// The account after moving `delta` (signed) into it, and the entry
    /// that records the move.
    fn moved(
        &self,
        delta: i64,
        request_id: &RequestId,
        now: SystemTime,
    ) -> Result<(Self, Entry), DomainError> {
        self.ensure_open()?;
        let balance =
            self.balance
                .checked_add(delta)
                .ok_or_else(|| DomainError::InvalidArgument {
                    field: "amount",
                    reason: format!("{delta} would overflow the balance of {}", self.balance),
                })?;
        if balance < 0 {
            return Err(DomainError::InsufficientFunds {
                balance: self.balance,
                amount: -delta,
            });
        }
        let account = Self {
            balance,
            version: self.version + 1,
            updated_at: now,
            entries: self.entries + 1,
            ..self.clone()
        };
        let entry = Entry {
            sequence: account.entries,
            amount: delta,
            balance_after: balance,
            request_id: request_id.clone(),
            created_at: now,
        };
        Ok((account, entry))
    }

    /// Adds `amount`.
    pub fn deposit(
        &self,
        amount: Amount,
        request_id: &RequestId,
        now: SystemTime,
    ) -> Result<(Self, Entry), DomainError> {
        self.moved(amount.get(), request_id, now)
    }

    /// Takes `amount`; refuses to go below zero.
    pub fn withdraw(
        &self,
        amount: Amount,
        request_id: &RequestId,
        now: SystemTime,
    ) -> Result<(Self, Entry), DomainError> {
        self.moved(-amount.get(), request_id, now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn account() -> Account {
        Account::open(
            AccountId::parse("alice").expect("id"),
            SystemTime::UNIX_EPOCH,
        )
    }

    fn rid(s: &str) -> RequestId {
        RequestId::parse(s).expect("request id")
    }

    #[test]
    fn amounts_are_positive() {
        assert!(Amount::parse(1).is_ok());
        for bad in [0, -5] {
            let err = Amount::parse(bad).expect_err("not positive");
            assert!(err.to_string().contains("amount"), "{err}");
        }
    }

    #[test]
    fn deposit_and_withdraw_move_balance_version_and_history() {
        let now = SystemTime::UNIX_EPOCH;
        let (a, e1) = account()
            .deposit(Amount::parse(100).expect("amount"), &rid("r1"), now)
            .expect("deposit");
        assert_eq!((a.balance, a.version, a.entries), (100, 2, 1));
        assert_eq!((e1.sequence, e1.amount, e1.balance_after), (1, 100, 100));
        let (b, e2) = a
            .withdraw(Amount::parse(30).expect("amount"), &rid("r2"), now)
            .expect("withdraw");
        assert_eq!((b.balance, b.version), (70, 3));
        assert_eq!((e2.sequence, e2.amount, e2.balance_after), (2, -30, 70));
    }

    #[test]
    fn no_overdraft_no_overflow_no_closed_accounts() {
        let now = SystemTime::UNIX_EPOCH;
        let err = account()
            .withdraw(Amount::parse(1).expect("amount"), &rid("r"), now)
            .expect_err("overdraft");
        assert_eq!(
            err,
            DomainError::InsufficientFunds {
                balance: 0,
                amount: 1
            }
        );
        let rich = Account {
            balance: i64::MAX,
            ..account()
        };
        let err = rich
            .deposit(Amount::parse(1).expect("amount"), &rid("r"), now)
            .expect_err("overflow");
        assert!(matches!(
            err,
            DomainError::InvalidArgument {
                field: "amount",
                ..
            }
        ));
        let closed = Account {
            status: AccountStatus::Closed,
            ..account()
        };
        assert!(matches!(
            closed.deposit(Amount::parse(1).expect("amount"), &rid("r"), now),
            Err(DomainError::AccountClosed { .. })
        ));
    }
}
