//! The ledger service's use cases for accounts. Transfers are in
//! `transfers.rs`.
//!
//! Every mutation follows one pattern (`mutate`): read the account and the
//! receipt for the request id together; if the receipt exists, this is a
//! replay — return the first result (or refuse a different request reusing
//! the id); otherwise apply the domain rule and commit account, entry and
//! receipt in one conditional change. If anything changed in between, the
//! change is refused and the whole step runs again. That also covers a
//! commit whose answer was lost and retried: the retry finds the receipt.

use std::time::SystemTime;

use super::paging;
use super::ports::{
    AccountPage, Change, Clock, Commit, Record, RecordKey, Store, TimeBudget, Versioned,
};
use super::typed_reads::{self, split};
use crate::domain::receipt::fingerprint;
use crate::domain::{
    Account, AccountKey, Amount, Cause, DomainError, Entry, Outcome, Receipt, RequestId, TenantId,
};

/// A deposit or withdrawal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MoveMoney {
    pub key: AccountKey,
    pub request_id: RequestId,
    pub amount: Amount,
}

/// A page of accounts and where the next one starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountList {
    pub accounts: Vec<Account>,
    pub next_page_token: String,
    pub missing_shards: Vec<u32>,
}

/// A page of entries, newest first, and where the next one starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntryList {
    pub entries: Vec<Entry>,
    pub next_page_token: String,
}

/// The ledger service's use cases.
#[derive(Debug, Clone)]
pub struct Ledger<S, C> {
    pub(super) store: S,
    pub(super) clock: C,
    pub(super) max_attempts: u32,
    /// A pause before each cross-shard saga step (0 in production).
    pub(super) step_pause: std::time::Duration,
}

type Change1 = (Account, Option<Entry>);

/// A check a mutation makes on every attempt before its rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Guard {
    None,
    /// Closing: no transfer from the account may be in flight.
    NoTransfersInFlight,
}

/// A domain rule that moves money: `Account::deposit` or `Account::withdraw`.
type MoneyRule =
    fn(&Account, Amount, Cause<'_>, SystemTime) -> Result<(Account, Entry), DomainError>;

pub(super) fn not_found(key: &AccountKey) -> DomainError {
    DomainError::AccountNotFound {
        account_id: key.account.to_string(),
    }
}

/// The first result of a replayed request, if it is the same request.
fn replay(receipt: Receipt, fingerprint: &str) -> Result<Account, DomainError> {
    match receipt.outcome {
        Outcome::Account(account) if receipt.fingerprint == fingerprint => Ok(account),
        _ => Err(DomainError::RequestIdReused {
            request_id: receipt.request_id.to_string(),
            previous: receipt.fingerprint,
        }),
    }
}

impl<S: Store, C: Clock> Ledger<S, C> {
    /// A ledger over `store`, retrying a conflicted change up to `max_attempts` times.
    pub fn new(store: S, clock: C, max_attempts: u32) -> Self {
        Self {
            store,
            clock,
            max_attempts: max_attempts.max(1),
            step_pause: std::time::Duration::ZERO,
        }
    }

    /// Pauses before each step of a cross-shard transfer, so that a person
    /// can watch the saga — or break it — between steps.
    pub fn with_step_pause(mut self, pause: std::time::Duration) -> Self {
        self.step_pause = pause;
        self
    }

    /// The store (for the recovery worker and tests).
    pub fn store(&self) -> &S {
        &self.store
    }

    /// Opens an account with balance 0.
    pub async fn create_account(
        &self,
        key: AccountKey,
        request_id: RequestId,
        budget: TimeBudget,
    ) -> Result<Account, DomainError> {
        let fp = fingerprint("create", &key, None);
        self.mutate(
            &key,
            request_id,
            fp,
            budget,
            Guard::None,
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
        budget: TimeBudget,
    ) -> Result<Account, DomainError> {
        self.load_account(&key, budget).await
    }

    pub(super) async fn load_account(
        &self,
        key: &AccountKey,
        budget: TimeBudget,
    ) -> Result<Account, DomainError> {
        let [slot] = split(
            self.store
                .read(vec![RecordKey::Account(key.clone())], budget)
                .await?,
        )?;
        typed_reads::account(slot)?
            .map(|v| v.value)
            .ok_or_else(|| not_found(key))
    }

    /// Adds money to an account.
    pub async fn deposit(
        &self,
        cmd: MoveMoney,
        budget: TimeBudget,
    ) -> Result<Account, DomainError> {
        self.move_money("deposit", cmd, budget, Account::deposit)
            .await
    }

    /// Takes money from an account; never below zero.
    pub async fn withdraw(
        &self,
        cmd: MoveMoney,
        budget: TimeBudget,
    ) -> Result<Account, DomainError> {
        self.move_money("withdraw", cmd, budget, Account::withdraw)
            .await
    }

    async fn move_money(
        &self,
        operation: &str,
        cmd: MoveMoney,
        budget: TimeBudget,
        rule: MoneyRule,
    ) -> Result<Account, DomainError> {
        let fp = fingerprint(operation, &cmd.key, Some(cmd.amount));
        let MoveMoney {
            key,
            request_id,
            amount,
        } = cmd;
        let rid = request_id.clone();
        self.mutate(&key, request_id, fp, budget, Guard::None, |current, now| {
            let account = current.ok_or_else(|| not_found(&key))?;
            let (account, entry) = rule(account, amount, Cause::request(&rid), now)?;
            Ok((account, Some(entry)))
        })
        .await
    }

    /// Closes an empty account with no transfers in flight.
    pub async fn close_account(
        &self,
        key: AccountKey,
        request_id: RequestId,
        budget: TimeBudget,
    ) -> Result<Account, DomainError> {
        let fp = fingerprint("close", &key, None);
        self.mutate(
            &key,
            request_id,
            fp,
            budget,
            Guard::NoTransfersInFlight,
            |current, now| {
                let account = current.ok_or_else(|| not_found(&key))?;
                Ok((account.close(now)?, None))
            },
        )
        .await
    }

    /// One page of a tenant's accounts, in account id order.
    pub async fn list_accounts(
        &self,
        tenant: TenantId,
        page_size: i32,
        page_token: &str,
        budget: TimeBudget,
    ) -> Result<AccountList, DomainError> {
        let size = paging::page_size(page_size)?;
        let after = paging::after_account(page_token)?;
        let AccountPage {
            accounts,
            more,
            missing_shards,
        } = self
            .store
            .list_accounts(&tenant, after.as_ref(), size, budget)
            .await?;
        let next_page_token = match accounts.last() {
            Some(last) if more => paging::account_token(&last.id),
            _ => String::new(),
        };
        Ok(AccountList {
            accounts,
            next_page_token,
            missing_shards,
        })
    }

    /// One page of an account's history, newest first.
    pub async fn list_entries(
        &self,
        key: AccountKey,
        page_size: i32,
        page_token: &str,
        budget: TimeBudget,
    ) -> Result<EntryList, DomainError> {
        let size = paging::page_size(page_size)?;
        let before = paging::before_entry(page_token)?;
        self.load_account(&key, budget).await?;
        let (entries, more) = self.store.list_entries(&key, before, size, budget).await?;
        let next_page_token = match entries.last() {
            Some(last) if more => paging::entry_token(last.sequence),
            _ => String::new(),
        };
        Ok(EntryList {
            entries,
            next_page_token,
        })
    }

    async fn mutate(
        &self,
        key: &AccountKey,
        request_id: RequestId,
        fingerprint: String,
        budget: TimeBudget,
        guard: Guard,
        change: impl Fn(Option<&Account>, SystemTime) -> Result<Change1, DomainError>,
    ) -> Result<Account, DomainError> {
        let account_key = RecordKey::Account(key.clone());
        let receipt_key = RecordKey::Receipt(key.clone(), request_id.clone());
        // The first read is optimistic: storage answers it without a
        // read-index round, and the commit's version conditions catch a
        // stale answer. A refusal decided on it is decided again on a
        // linearizable read; a receipt it shows is final (receipts never
        // change once written).
        let mut fresh = false;
        let mut conflicts = 0;
        while conflicts < self.max_attempts {
            let keys = vec![account_key.clone(), receipt_key.clone()];
            let records = if fresh {
                self.store.read(keys, budget).await?
            } else {
                self.store.read_optimistic(keys, budget).await?
            };
            let [account, receipt] = split(records)?;
            if let Some(receipt) = typed_reads::receipt(receipt)? {
                return replay(receipt.value, &fingerprint);
            }
            let current = typed_reads::account(account)?;
            let expected = current.as_ref().map_or(0, |v| v.version);
            let (account, entry) = match self.decide(key, current, guard, &change, budget).await {
                Ok(decided) => decided,
                Err(_) if !fresh => {
                    fresh = true;
                    continue;
                }
                Err(refused) => return Err(refused),
            };
            let receipt = Receipt {
                request_id: request_id.clone(),
                fingerprint: fingerprint.clone(),
                outcome: Outcome::Account(account.clone()),
            };
            let mut commit = Change::default()
                .if_version(account_key.clone(), expected)
                .if_version(receipt_key.clone(), 0)
                .put(account_key.clone(), Record::Account(account.clone()))
                .put(receipt_key.clone(), Record::Receipt(receipt));
            if let Some(entry) = entry {
                commit = commit.put(
                    RecordKey::Entry(key.clone(), entry.sequence),
                    Record::Entry(entry),
                );
            }
            match self.store.commit(commit, budget).await? {
                Commit::Done => return Ok(account),
                Commit::Conflict => {
                    // A concurrent change to the account (or a stale
                    // optimistic read): how often, to tell contention apart
                    // from load.
                    metrics::counter!("business_commit_conflicts_total").increment(1);
                    fresh = true;
                    conflicts += 1;
                }
            }
        }
        Err(DomainError::Contention {
            account_id: key.account.to_string(),
            attempts: self.max_attempts,
        })
    }

    /// The guard, then the rule, on the account as read.
    async fn decide(
        &self,
        key: &AccountKey,
        current: Option<Versioned<Account>>,
        guard: Guard,
        change: &impl Fn(Option<&Account>, SystemTime) -> Result<Change1, DomainError>,
        budget: TimeBudget,
    ) -> Result<Change1, DomainError> {
        // Checked on every attempt: a transfer starting meanwhile changes
        // the account's version, so this attempt's commit fails.
        if guard == Guard::NoTransfersInFlight
            && current.is_some()
            && self.store.has_pending(key, budget).await?
        {
            return Err(DomainError::TransfersInFlight {
                account_id: key.account.to_string(),
            });
        }
        change(current.as_ref().map(|v| &v.value), self.clock.now())
    }
}
