//! Accounts and the rules money follows: balances are integer minor units
//! and never negative; every change bumps the account's version, and every
//! movement of money appends one entry to its history.

use std::time::SystemTime;

use super::{AccountId, DomainError, RequestId, TransferId};

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
    /// Signed: money in positive, money out negative.
    pub amount: i64,
    pub balance_after: i64,
    pub request_id: RequestId,
    /// Set when the entry is part of a transfer.
    pub transfer_id: Option<TransferId>,
    pub created_at: SystemTime,
}

/// Why money moves: a request of its own, or a step of a transfer.
#[derive(Debug, Clone, Copy)]
pub struct Cause<'a> {
    pub request_id: &'a RequestId,
    pub transfer_id: Option<&'a TransferId>,
}

impl<'a> Cause<'a> {
    /// A deposit or withdrawal of its own.
    pub fn request(request_id: &'a RequestId) -> Self {
        Self {
            request_id,
            transfer_id: None,
        }
    }

    /// A step of a transfer.
    pub fn transfer(transfer_id: &'a TransferId) -> Self {
        Self {
            request_id: &transfer_id.request_id,
            transfer_id: Some(transfer_id),
        }
    }
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

    /// Refuses closed accounts.
    pub fn ensure_open(&self) -> Result<(), DomainError> {
        match self.status {
            AccountStatus::Open => Ok(()),
            AccountStatus::Closed => Err(DomainError::AccountClosed {
                account_id: self.id.to_string(),
            }),
        }
    }

    /// Adds `amount`.
    pub fn deposit(
        &self,
        amount: Amount,
        cause: Cause<'_>,
        now: SystemTime,
    ) -> Result<(Self, Entry), DomainError> {
        self.ensure_open()?;
        self.booked(amount.get(), cause, now)
    }

    /// Takes `amount`; refuses to go below zero.
    pub fn withdraw(
        &self,
        amount: Amount,
        cause: Cause<'_>,
        now: SystemTime,
    ) -> Result<(Self, Entry), DomainError> {
        self.ensure_open()?;
        self.booked(-amount.get(), cause, now)
    }

    /// Books `delta` (signed) whatever the status, and the entry recording
    /// it. Only the refund of a failed transfer uses it directly: it gives
    /// back money that left this account, even if the account closed since.
    pub fn booked(
        &self,
        delta: i64,
        cause: Cause<'_>,
        now: SystemTime,
    ) -> Result<(Self, Entry), DomainError> {
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
            request_id: cause.request_id.clone(),
            transfer_id: cause.transfer_id.cloned(),
            created_at: now,
        };
        Ok((account, entry))
    }

    /// Closes an empty, open account.
    pub fn close(&self, now: SystemTime) -> Result<Self, DomainError> {
        self.ensure_open()?;
        if self.balance != 0 {
            return Err(DomainError::AccountNotEmpty {
                account_id: self.id.to_string(),
                balance: self.balance,
            });
        }
        Ok(Self {
            status: AccountStatus::Closed,
            version: self.version + 1,
            updated_at: now,
            ..self.clone()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: SystemTime = SystemTime::UNIX_EPOCH;

    fn account() -> Account {
        Account::open(AccountId::parse("alice").expect("id"), NOW)
    }

    fn rid(s: &str) -> RequestId {
        RequestId::parse(s).expect("request id")
    }

    fn amount(n: i64) -> Amount {
        Amount::parse(n).expect("amount")
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
        let (r1, r2) = (rid("r1"), rid("r2"));
        let (a, e1) = account()
            .deposit(amount(100), Cause::request(&r1), NOW)
            .expect("deposit");
        assert_eq!((a.balance, a.version, a.entries), (100, 2, 1));
        assert_eq!((e1.sequence, e1.amount, e1.balance_after), (1, 100, 100));
        assert_eq!(e1.transfer_id, None);
        let (b, e2) = a
            .withdraw(amount(30), Cause::request(&r2), NOW)
            .expect("withdraw");
        assert_eq!((b.balance, b.version), (70, 3));
        assert_eq!((e2.sequence, e2.amount, e2.balance_after), (2, -30, 70));
    }

    #[test]
    fn no_overdraft_no_overflow_no_closed_accounts() {
        let r = rid("r");
        let err = account()
            .withdraw(amount(1), Cause::request(&r), NOW)
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
            .deposit(amount(1), Cause::request(&r), NOW)
            .expect_err("overflow");
        assert!(matches!(
            err,
            DomainError::InvalidArgument {
                field: "amount",
                ..
            }
        ));
        let closed = account().close(NOW).expect("close");
        assert!(matches!(
            closed.deposit(amount(1), Cause::request(&r), NOW),
            Err(DomainError::AccountClosed { .. })
        ));
        let (refunded, entry) = closed
            .booked(5, Cause::request(&r), NOW)
            .expect("a refund still books");
        assert_eq!((refunded.balance, entry.amount), (5, 5));
    }

    #[test]
    fn only_empty_open_accounts_close() {
        let closed = account().close(NOW).expect("empty account closes");
        assert_eq!((closed.status, closed.version), (AccountStatus::Closed, 2));
        assert!(matches!(
            closed.close(NOW),
            Err(DomainError::AccountClosed { .. })
        ));
        let r = rid("r");
        let (rich, _) = account()
            .deposit(amount(5), Cause::request(&r), NOW)
            .expect("deposit");
        assert!(matches!(
            rich.close(NOW),
            Err(DomainError::AccountNotEmpty { balance: 5, .. })
        ));
    }
}
