//! Accounts and the rules money follows: balances are integer minor units
//! and never negative; every change bumps the account's version, and every
//! movement of money appends one entry to its history.
//!
//! **The ceiling rule.** Money a cross-shard transfer sent is no longer in
//! the source's balance, but comes back to it if the transfer fails. So
//! that such a refund can always be booked, an account counts that money
//! (`in_flight_out`) and no deposit or credit may take `balance +
//! in_flight_out` past [`CEILING`]: a refund only moves money from one to
//! the other, and never fails.

use std::time::SystemTime;

use super::{AccountId, DomainError, RequestId, TransferId};

/// The most an account may hold, counting the money in flight out of it.
pub const CEILING: i64 = i64::MAX;

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
    /// Money sent by this account's cross-shard transfers that have not
    /// ended: out of `balance`, and back in it if they fail. Never
    /// negative; `balance + in_flight_out <= CEILING`.
    pub in_flight_out: i64,
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
            in_flight_out: 0,
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

    /// Adds `amount`, within the ceiling.
    pub fn deposit(
        &self,
        amount: Amount,
        cause: Cause<'_>,
        now: SystemTime,
    ) -> Result<(Self, Entry), DomainError> {
        self.ensure_open()?;
        self.booked(amount.get(), self.in_flight_out, cause, now)
    }

    /// Takes `amount`; refuses to go below zero.
    pub fn withdraw(
        &self,
        amount: Amount,
        cause: Cause<'_>,
        now: SystemTime,
    ) -> Result<(Self, Entry), DomainError> {
        self.ensure_open()?;
        self.booked(-amount.get(), self.in_flight_out, cause, now)
    }

    /// Sends `amount` on a cross-shard transfer: out of the balance, into
    /// the money in flight (until the transfer ends).
    pub fn send(
        &self,
        amount: Amount,
        cause: Cause<'_>,
        now: SystemTime,
    ) -> Result<(Self, Entry), DomainError> {
        self.ensure_open()?;
        let in_flight_out = self.in_flight_out.saturating_add(amount.get());
        self.booked(-amount.get(), in_flight_out, cause, now)
    }

    /// A transfer this account sent completed: its `amount` is no longer in
    /// flight. Moves no money, so it writes no entry.
    pub fn delivered(&self, amount: Amount, now: SystemTime) -> Self {
        Self {
            in_flight_out: self.less_in_flight(amount),
            version: self.version + 1,
            updated_at: now,
            ..self.clone()
        }
    }

    /// A transfer this account sent failed: its `amount` comes back, from
    /// the money in flight into the balance — whatever the status (the
    /// account may have closed since). Within the ceiling by construction;
    /// it can only fail for an account whose records break the rule.
    pub fn refund(
        &self,
        amount: Amount,
        cause: Cause<'_>,
        now: SystemTime,
    ) -> Result<(Self, Entry), DomainError> {
        self.booked(amount.get(), self.less_in_flight(amount), cause, now)
    }

    /// The money in flight once `amount` of it has arrived or come back. An
    /// account stored before it counted money in flight has none recorded
    /// (0), hence saturating.
    fn less_in_flight(&self, amount: Amount) -> i64 {
        self.in_flight_out.saturating_sub(amount.get()).max(0)
    }

    /// Books `delta` (signed) into the balance with `in_flight_out` the new
    /// money in flight, and the entry recording it; refuses a negative
    /// balance and a total past the ceiling.
    fn booked(
        &self,
        delta: i64,
        in_flight_out: i64,
        cause: Cause<'_>,
        now: SystemTime,
    ) -> Result<(Self, Entry), DomainError> {
        let over_ceiling = || DomainError::BalanceCeiling {
            account_id: self.id.to_string(),
            balance: self.balance,
            in_flight_out: self.in_flight_out,
            amount: delta,
        };
        let balance = self.balance.checked_add(delta).ok_or_else(over_ceiling)?;
        if balance < 0 {
            return Err(DomainError::InsufficientFunds {
                balance: self.balance,
                amount: -delta,
            });
        }
        // CEILING is i64::MAX: a total past it is one that overflows.
        if balance.checked_add(in_flight_out).is_none() {
            return Err(over_ceiling());
        }
        let account = Self {
            balance,
            in_flight_out,
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
        assert!(
            matches!(err, DomainError::BalanceCeiling { amount: 1, .. }),
            "{err}"
        );
        let closed = account().close(NOW).expect("close");
        assert!(matches!(
            closed.deposit(amount(1), Cause::request(&r), NOW),
            Err(DomainError::AccountClosed { .. })
        ));
        let sent = Account {
            in_flight_out: 5,
            ..closed
        };
        let (refunded, entry) = sent
            .refund(amount(5), Cause::request(&r), NOW)
            .expect("a refund still books");
        assert_eq!((refunded.balance, entry.amount), (5, 5));
    }

    #[test]
    fn the_ceiling_counts_money_in_flight_so_a_refund_always_fits() {
        let id = TransferId {
            from: AccountId::parse("alice").expect("id"),
            request_id: rid("t1"),
        };
        let (funded, _) = account()
            .deposit(amount(10), Cause::request(&rid("fund")), NOW)
            .expect("fund");
        let (sent, debit) = funded
            .send(amount(10), Cause::transfer(&id), NOW)
            .expect("send");
        assert_eq!(
            (sent.balance, sent.in_flight_out, debit.amount),
            (0, 10, -10)
        );
        let err = sent
            .deposit(amount(i64::MAX), Cause::request(&rid("fill")), NOW)
            .expect_err("the 10 in flight may come back");
        assert_eq!(
            err,
            DomainError::BalanceCeiling {
                account_id: "alice".into(),
                balance: 0,
                in_flight_out: 10,
                amount: i64::MAX,
            }
        );
        let (full, _) = sent
            .deposit(amount(i64::MAX - 10), Cause::request(&rid("fill")), NOW)
            .expect("up to the ceiling");
        let (refunded, entry) = full
            .refund(amount(10), Cause::transfer(&id), NOW)
            .expect("a refund always fits");
        assert_eq!((refunded.balance, refunded.in_flight_out), (i64::MAX, 0));
        assert_eq!((entry.amount, entry.transfer_id), (10, Some(id)));
        let done = full.delivered(amount(10), NOW);
        assert_eq!(
            (done.balance, done.in_flight_out, done.entries, done.version),
            (i64::MAX - 10, 0, full.entries, full.version + 1),
            "a completed transfer moves no money: no entry, one more version"
        );
    }

    #[test]
    fn sending_more_than_the_balance_is_an_overdraft() {
        let id = TransferId {
            from: AccountId::parse("alice").expect("id"),
            request_id: rid("t1"),
        };
        let err = account()
            .send(amount(1), Cause::transfer(&id), NOW)
            .expect_err("overdraft");
        assert!(matches!(err, DomainError::InsufficientFunds { .. }));
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
