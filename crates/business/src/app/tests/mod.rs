//! Use-case tests against the in-memory store.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use super::fake::FakeStore;
use super::ports::{Clock, Record, RecordKey, TimeBudget};
use super::{Ledger, MoveMoney, Recovered, RecoveryConfig, TransferCmd};
use crate::domain::{
    AccountId, AccountKey, AccountStatus, Amount, DomainError, Inbound, PendingMark, RequestId,
    TenantId, TransferId, TransferStatus,
};

/// Wall-clock time that moves only when a test says so.
#[derive(Default)]
struct TestClock {
    millis: AtomicU64,
}

impl TestClock {
    fn advance(&self, by: Duration) {
        let millis = u64::try_from(by.as_millis()).expect("small");
        self.millis.fetch_add(millis, Ordering::SeqCst);
    }
}

impl Clock for TestClock {
    fn now(&self) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_millis(self.millis.load(Ordering::SeqCst))
    }
}

type TestLedger = Ledger<FakeStore, TestClock>;

fn ledger() -> TestLedger {
    Ledger::new(FakeStore::new(), TestClock::default(), 3)
}

/// Recovery takes over at once; each transfer gets 5 s.
fn recovery() -> RecoveryConfig {
    RecoveryConfig {
        every: Duration::from_secs(1),
        older_than: Duration::ZERO,
        transfer_budget: Duration::from_secs(5),
        concurrency: 4,
        max_backoff: Duration::from_secs(60),
    }
}

fn tenant() -> TenantId {
    TenantId::parse("acme").expect("tenant")
}

fn id(s: &str) -> AccountId {
    AccountId::parse(s).expect("account id")
}

fn key(s: &str) -> AccountKey {
    AccountKey {
        tenant: tenant(),
        account: id(s),
    }
}

fn rid(s: &str) -> RequestId {
    RequestId::parse(s).expect("request id")
}

fn amount(n: i64) -> Amount {
    Amount::parse(n).expect("amount")
}

fn soon() -> TimeBudget {
    TimeBudget::after(Duration::from_secs(5))
}

fn money(account: &str, r: &str, n: i64) -> MoveMoney {
    MoveMoney {
        key: key(account),
        request_id: rid(r),
        amount: amount(n),
    }
}

fn transfer(r: &str, from: &str, to: &str, n: i64) -> TransferCmd {
    TransferCmd {
        tenant: tenant(),
        request_id: rid(r),
        from: id(from),
        to: id(to),
        amount: amount(n),
    }
}

async fn open(l: &TestLedger, account: &str, balance: i64) {
    l.create_account(key(account), rid(&format!("open-{account}")), soon())
        .await
        .expect("create");
    if balance > 0 {
        l.deposit(money(account, &format!("fund-{account}"), balance), soon())
            .await
            .expect("fund");
    }
}

async fn balance(l: &TestLedger, account: &str) -> i64 {
    l.get_account(key(account), soon())
        .await
        .expect("get")
        .balance
}

/// Money in every account (it must never change by transfers).
fn total(l: &TestLedger) -> i128 {
    l.store()
        .all()
        .iter()
        .filter_map(|(_, r)| match r {
            Record::Account(a) => Some(i128::from(a.balance)),
            _ => None,
        })
        .sum()
}

/// `"alice~t2".parse_id()`: a transfer id in a test.
trait ParseId {
    fn parse_id(&self) -> crate::domain::TransferId;
}

impl ParseId for str {
    fn parse_id(&self) -> crate::domain::TransferId {
        crate::domain::TransferId::parse(self).expect("transfer id")
    }
}

mod accounts;
mod recovery;
mod transfers;
