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

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::time::Duration;

    use super::*;
    use crate::app::ports::{AccountState, StoreError, Versioned};
    use crate::domain::{AccountId, TenantId};

    /// The storage port in memory, with faults to inject.
    #[derive(Default)]
    struct FakeStore {
        accounts: Mutex<HashMap<AccountKey, Versioned<Account>>>,
        receipts: Mutex<HashMap<(AccountKey, RequestId), Receipt>>,
        /// Commits to refuse as conflicts before accepting.
        conflicts: AtomicU32,
        /// Commits to apply but answer with an error (the answer is lost).
        lost_answers: AtomicU32,
        commits: AtomicU32,
    }

    impl AccountStore for FakeStore {
        async fn load(
            &self,
            key: &AccountKey,
            request_id: Option<&RequestId>,
            _: Deadline,
        ) -> Result<AccountState, StoreError> {
            let account = self.accounts.lock().expect("lock").get(key).cloned();
            let receipt = request_id.and_then(|r| {
                self.receipts
                    .lock()
                    .expect("lock")
                    .get(&(key.clone(), r.clone()))
                    .cloned()
            });
            Ok(AccountState { account, receipt })
        }

        async fn commit(&self, change: AccountChange, _: Deadline) -> Result<Commit, StoreError> {
            let take = |n: &AtomicU32| {
                n.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |v| v.checked_sub(1))
                    .is_ok()
            };
            if take(&self.conflicts) {
                return Ok(Commit::Conflict);
            }
            let mut accounts = self.accounts.lock().expect("lock");
            let mut receipts = self.receipts.lock().expect("lock");
            let version = accounts.get(&change.key).map_or(0, |v| v.version);
            let receipt_key = (change.key.clone(), change.receipt.request_id.clone());
            if version != change.expected_version || receipts.contains_key(&receipt_key) {
                return Ok(Commit::Conflict);
            }
            accounts.insert(
                change.key.clone(),
                Versioned {
                    value: change.account,
                    version: version + 1,
                },
            );
            receipts.insert(receipt_key, change.receipt);
            self.commits.fetch_add(1, Ordering::SeqCst);
            if take(&self.lost_answers) {
                return Err(StoreError::Unavailable("answer lost".into()));
            }
            Ok(Commit::Done)
        }
    }

    struct FixedClock;

    impl Clock for FixedClock {
        fn now(&self) -> SystemTime {
            SystemTime::UNIX_EPOCH
        }
    }

    fn ledger(store: FakeStore) -> Ledger<FakeStore, FixedClock> {
        Ledger::new(store, FixedClock, 3)
    }

    fn key() -> AccountKey {
        AccountKey {
            tenant: TenantId::parse("acme").expect("tenant"),
            account: AccountId::parse("alice").expect("account"),
        }
    }

    fn rid(s: &str) -> RequestId {
        RequestId::parse(s).expect("request id")
    }

    fn deposit(r: &str, amount: i64) -> MoveMoney {
        MoveMoney {
            key: key(),
            request_id: rid(r),
            amount: Amount::parse(amount).expect("amount"),
        }
    }

    fn soon() -> Deadline {
        Deadline::after(Duration::from_secs(5))
    }

    async fn opened(store: FakeStore) -> Ledger<FakeStore, FixedClock> {
        let l = ledger(store);
        l.create_account(key(), rid("open"), soon())
            .await
            .expect("create");
        l
    }

    #[tokio::test]
    async fn a_replay_returns_the_first_result_and_applies_once() {
        let l = opened(FakeStore::default()).await;
        let first = l
            .deposit(deposit("d1", 100), soon())
            .await
            .expect("deposit");
        l.deposit(deposit("d2", 5), soon()).await.expect("deposit");
        let replay = l.deposit(deposit("d1", 100), soon()).await.expect("replay");
        assert_eq!(replay, first, "the first result, not the current account");
        let now = l.get_account(key(), soon()).await.expect("get");
        assert_eq!(now.balance, 105);
        assert_eq!(
            l.store.commits.load(Ordering::SeqCst),
            3,
            "open + two deposits"
        );
    }

    #[tokio::test]
    async fn a_reused_request_id_with_other_arguments_is_refused() {
        let l = opened(FakeStore::default()).await;
        l.deposit(deposit("d1", 100), soon())
            .await
            .expect("deposit");
        let err = l
            .deposit(deposit("d1", 7), soon())
            .await
            .expect_err("reuse");
        assert!(matches!(err, DomainError::RequestIdReused { .. }), "{err}");
        let err = l
            .withdraw(deposit("d1", 100), soon())
            .await
            .expect_err("same amount, other operation");
        assert!(matches!(err, DomainError::RequestIdReused { .. }), "{err}");
    }

    #[tokio::test]
    async fn conflicts_are_retried_then_reported() {
        let l = opened(FakeStore::default()).await;
        l.store.conflicts.store(2, Ordering::SeqCst);
        let a = l
            .deposit(deposit("d1", 10), soon())
            .await
            .expect("third attempt wins");
        assert_eq!(a.balance, 10);
        l.store.conflicts.store(3, Ordering::SeqCst);
        let err = l
            .deposit(deposit("d2", 10), soon())
            .await
            .expect_err("every attempt lost");
        assert!(
            matches!(err, DomainError::Contention { attempts: 3, .. }),
            "{err}"
        );
        assert_eq!(l.get_account(key(), soon()).await.expect("get").balance, 10);
    }

    #[tokio::test]
    async fn a_commit_whose_answer_was_lost_is_not_applied_twice_on_retry() {
        let l = opened(FakeStore::default()).await;
        l.store.lost_answers.store(1, Ordering::SeqCst);
        let err = l
            .deposit(deposit("d1", 50), soon())
            .await
            .expect_err("answer lost");
        assert!(matches!(err, DomainError::Unavailable(_)));
        let retried = l
            .deposit(deposit("d1", 50), soon())
            .await
            .expect("client retries");
        assert_eq!(retried.balance, 50);
        assert_eq!(
            l.get_account(key(), soon()).await.expect("get").balance,
            50,
            "applied once"
        );
    }

    #[tokio::test]
    async fn missing_and_existing_accounts() {
        let l = ledger(FakeStore::default());
        let err = l
            .deposit(deposit("d1", 1), soon())
            .await
            .expect_err("no account");
        assert!(matches!(err, DomainError::AccountNotFound { .. }));
        l.create_account(key(), rid("c1"), soon())
            .await
            .expect("create");
        let err = l
            .create_account(key(), rid("c2"), soon())
            .await
            .expect_err("exists");
        assert!(matches!(err, DomainError::AccountExists { .. }));
        let err = l
            .withdraw(deposit("w1", 1), soon())
            .await
            .expect_err("overdraft");
        assert_eq!(
            err,
            DomainError::InsufficientFunds {
                balance: 0,
                amount: 1
            }
        );
    }
}
