//! The ledger use cases.
//!
//! Every mutation follows one pattern (`mutate`): read the account and the
//! receipt for the request id together; if the receipt exists, this is a
//! replay — return the first result (or refuse a different request reusing
//! the id); otherwise apply the domain rule and commit account, entry and
//! receipt in one conditional batch. If anything changed in between, the
//! batch is refused and the whole step runs again. That also covers a
//! commit whose answer was lost and retried: the retry finds the receipt.

use std::time::SystemTime;

use super::ports::{AccountChange, AccountStore, Clock, Commit, Deadline};
use crate::domain::receipt::fingerprint;
use crate::domain::{Account, AccountKey, Amount, DomainError, Entry, Receipt, RequestId};

/// A deposit or withdrawal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MoveMoney {
    pub key: AccountKey,
    pub request_id: RequestId,
    pub amount: Amount,
}

/// The ledger service's use cases.
#[derive(Debug, Clone)]
pub struct Ledger<S, C> {
    store: S,
    clock: C,
    max_attempts: u32,
}

type Change = (Account, Option<Entry>);

/// A domain rule that moves money: `Account::deposit` or `Account::withdraw`.
type MoneyRule =
    fn(&Account, Amount, &RequestId, SystemTime) -> Result<(Account, Entry), DomainError>;

impl<S: AccountStore, C: Clock> Ledger<S, C> {
    /// A ledger over `store`, retrying a conflicted change up to `max_attempts` times.
    pub fn new(store: S, clock: C, max_attempts: u32) -> Self {
        Self {
            store,
            clock,
            max_attempts: max_attempts.max(1),
        }
    }

    /// Opens an account with balance 0.
    pub async fn create_account(
        &self,
        key: AccountKey,
        request_id: RequestId,
        deadline: Deadline,
    ) -> Result<Account, DomainError> {
        let fp = fingerprint("create", &key, None);
        self.mutate(
            &key,
            request_id,
            fp,
            deadline,
            |current, now| match current {
                Some(_) => Err(DomainError::AccountExists {
                    account_id: key.account.to_string(),
                }),
                None => Ok((Account::open(key.account.clone(), now), None)),
            },
        )
        .await
    }

    /// Reads an account.
    pub async fn get_account(
        &self,
        key: AccountKey,
        deadline: Deadline,
    ) -> Result<Account, DomainError> {
        let state = self.store.load(&key, None, deadline).await?;
        state
            .account
            .map(|v| v.value)
            .ok_or_else(|| not_found(&key))
    }

    /// Adds money to an account.
    pub async fn deposit(
        &self,
        cmd: MoveMoney,
        deadline: Deadline,
    ) -> Result<Account, DomainError> {
        self.move_money("deposit", cmd, deadline, Account::deposit)
            .await
    }

    /// Takes money from an account; never below zero.
    pub async fn withdraw(
        &self,
        cmd: MoveMoney,
        deadline: Deadline,
    ) -> Result<Account, DomainError> {
        self.move_money("withdraw", cmd, deadline, Account::withdraw)
            .await
    }

    async fn move_money(
        &self,
        operation: &str,
        cmd: MoveMoney,
        deadline: Deadline,
        rule: MoneyRule,
    ) -> Result<Account, DomainError> {
        let fp = fingerprint(operation, &cmd.key, Some(cmd.amount));
        let MoveMoney {
            key,
            request_id,
            amount,
        } = cmd;
        let rid = request_id.clone();
        self.mutate(&key, request_id, fp, deadline, |current, now| {
            let (account, entry) =
                rule(current.ok_or_else(|| not_found(&key))?, amount, &rid, now)?;
            Ok((account, Some(entry)))
        })
        .await
    }

    async fn mutate(
        &self,
        key: &AccountKey,
        request_id: RequestId,
        fingerprint: String,
        deadline: Deadline,
        change: impl Fn(Option<&Account>, SystemTime) -> Result<Change, DomainError>,
    ) -> Result<Account, DomainError> {
        for _ in 0..self.max_attempts {
            let state = self.store.load(key, Some(&request_id), deadline).await?;
            if let Some(receipt) = state.receipt {
                return replay(receipt, &fingerprint);
            }
            let current = state.account.as_ref();
            let (account, entry) = change(current.map(|v| &v.value), self.clock.now())?;
            let commit = AccountChange {
                key: key.clone(),
                expected_version: current.map_or(0, |v| v.version),
                account: account.clone(),
                entry,
                receipt: Receipt {
                    request_id: request_id.clone(),
                    fingerprint: fingerprint.clone(),
                    result: account.clone(),
                },
            };
            match self.store.commit(commit, deadline).await? {
                Commit::Done => return Ok(account),
                Commit::Conflict => continue,
            }
        }
        Err(DomainError::Contention {
            account_id: key.account.to_string(),
            attempts: self.max_attempts,
        })
    }
}

fn not_found(key: &AccountKey) -> DomainError {
    DomainError::AccountNotFound {
        account_id: key.account.to_string(),
    }
}

/// The first result of a replayed request, if it is the same request.
fn replay(receipt: Receipt, fingerprint: &str) -> Result<Account, DomainError> {
    if receipt.fingerprint == fingerprint {
        Ok(receipt.result)
    } else {
        Err(DomainError::RequestIdReused {
            request_id: receipt.request_id.to_string(),
            previous: receipt.fingerprint,
        })
    }
}
