//! Use-case tests against the in-memory store.

use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime};

use super::fake::FakeStore;
use super::ports::{Clock, Deadline, Record, RecordKey};
use super::{Ledger, MoveMoney, TransferCmd};
use crate::domain::{
    AccountId, AccountKey, AccountStatus, Amount, DomainError, Inbound, RequestId, TenantId,
    TransferStatus,
};

struct FixedClock;

impl Clock for FixedClock {
    fn now(&self) -> SystemTime {
        SystemTime::UNIX_EPOCH
    }
}

type TestLedger = Ledger<FakeStore, FixedClock>;

fn ledger() -> TestLedger {
    Ledger::new(FakeStore::new(), FixedClock, 3)
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

fn soon() -> Deadline {
    Deadline::after(Duration::from_secs(5))
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
fn total(l: &TestLedger) -> i64 {
    l.store()
        .all()
        .iter()
        .filter_map(|(_, r)| match r {
            Record::Account(a) => Some(a.balance),
            _ => None,
        })
        .sum()
}

// ---- accounts ----

#[tokio::test]
async fn a_replay_returns_the_first_result_and_applies_once() {
    let l = ledger();
    open(&l, "alice", 0).await;
    let first = l
        .deposit(money("alice", "d1", 100), soon())
        .await
        .expect("deposit");
    l.deposit(money("alice", "d2", 5), soon())
        .await
        .expect("deposit");
    let replay = l
        .deposit(money("alice", "d1", 100), soon())
        .await
        .expect("replay");
    assert_eq!(replay, first, "the first result, not the current account");
    assert_eq!(balance(&l, "alice").await, 105);
    assert_eq!(
        l.store().commits.load(Ordering::SeqCst),
        3,
        "open + two deposits"
    );
}

#[tokio::test]
async fn a_reused_request_id_with_other_arguments_is_refused() {
    let l = ledger();
    open(&l, "alice", 0).await;
    open(&l, "bob", 0).await;
    l.deposit(money("alice", "d1", 100), soon())
        .await
        .expect("deposit");
    for err in [
        l.deposit(money("alice", "d1", 7), soon())
            .await
            .expect_err("other amount"),
        l.withdraw(money("alice", "d1", 100), soon())
            .await
            .expect_err("other operation"),
        l.transfer(transfer("d1", "alice", "bob", 1), soon())
            .await
            .expect_err("a transfer"),
    ] {
        assert!(matches!(err, DomainError::RequestIdReused { .. }), "{err}");
    }
}

#[tokio::test]
async fn conflicts_are_retried_then_reported() {
    let l = ledger();
    open(&l, "alice", 0).await;
    l.store().conflicts.store(2, Ordering::SeqCst);
    let a = l
        .deposit(money("alice", "d1", 10), soon())
        .await
        .expect("third attempt wins");
    assert_eq!(a.balance, 10);
    l.store().conflicts.store(3, Ordering::SeqCst);
    let err = l
        .deposit(money("alice", "d2", 10), soon())
        .await
        .expect_err("every attempt lost");
    assert!(
        matches!(err, DomainError::Contention { attempts: 3, .. }),
        "{err}"
    );
    assert_eq!(balance(&l, "alice").await, 10);
}

#[tokio::test]
async fn a_commit_whose_answer_was_lost_is_not_applied_twice_on_retry() {
    let l = ledger();
    open(&l, "alice", 0).await;
    l.store().lost_answers.store(1, Ordering::SeqCst);
    let err = l
        .deposit(money("alice", "d1", 50), soon())
        .await
        .expect_err("answer lost");
    assert!(matches!(err, DomainError::Unavailable(_)));
    let retried = l
        .deposit(money("alice", "d1", 50), soon())
        .await
        .expect("client retries");
    assert_eq!(retried.balance, 50);
    assert_eq!(balance(&l, "alice").await, 50, "applied once");
}

#[tokio::test]
async fn missing_and_existing_accounts() {
    let l = ledger();
    let err = l
        .deposit(money("alice", "d1", 1), soon())
        .await
        .expect_err("no account");
    assert!(matches!(err, DomainError::AccountNotFound { .. }));
    open(&l, "alice", 0).await;
    let err = l
        .create_account(key("alice"), rid("c2"), soon())
        .await
        .expect_err("exists");
    assert!(matches!(err, DomainError::AccountExists { .. }));
    let err = l
        .withdraw(money("alice", "w1", 1), soon())
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

#[tokio::test]
async fn closing_needs_an_empty_account_and_then_takes_no_money() {
    let l = ledger();
    open(&l, "alice", 10).await;
    let err = l
        .close_account(key("alice"), rid("c1"), soon())
        .await
        .expect_err("not empty");
    assert!(
        matches!(err, DomainError::AccountNotEmpty { balance: 10, .. }),
        "{err}"
    );
    l.withdraw(money("alice", "w1", 10), soon())
        .await
        .expect("empty it");
    let closed = l
        .close_account(key("alice"), rid("c2"), soon())
        .await
        .expect("close");
    assert_eq!(closed.status, AccountStatus::Closed);
    let replay = l
        .close_account(key("alice"), rid("c2"), soon())
        .await
        .expect("replay");
    assert_eq!(replay, closed);
    let err = l
        .deposit(money("alice", "d9", 1), soon())
        .await
        .expect_err("closed");
    assert!(matches!(err, DomainError::AccountClosed { .. }));
}

#[tokio::test]
async fn accounts_list_in_id_order_page_by_page() {
    let l = ledger();
    for a in ["e", "b", "a", "d", "c"] {
        open(&l, a, 0).await;
    }
    let other = TenantId::parse("globex").expect("tenant");
    l.create_account(
        AccountKey {
            tenant: other,
            account: id("z"),
        },
        rid("o"),
        soon(),
    )
    .await
    .expect("other tenant");
    let mut seen = Vec::new();
    let mut token = String::new();
    for _ in 0..5 {
        let page = l
            .list_accounts(tenant(), 2, &token, soon())
            .await
            .expect("page");
        seen.extend(page.accounts.iter().map(|a| a.id.to_string()));
        token = page.next_page_token;
        if token.is_empty() {
            break;
        }
    }
    assert_eq!(
        seen,
        ["a", "b", "c", "d", "e"],
        "every account once, in order, only acme's"
    );
    let err = l
        .list_accounts(tenant(), 2, "garbage", soon())
        .await
        .expect_err("bad token");
    assert!(matches!(
        err,
        DomainError::InvalidArgument {
            field: "page_token",
            ..
        }
    ));
}

#[tokio::test]
async fn entries_list_newest_first_and_replay_to_the_balance() {
    let l = ledger();
    open(&l, "alice", 0).await;
    for (i, n) in [5, 7, 11, 13].iter().enumerate() {
        l.deposit(money("alice", &format!("d{i}"), *n), soon())
            .await
            .expect("deposit");
    }
    l.withdraw(money("alice", "w", 6), soon())
        .await
        .expect("withdraw");
    let first = l
        .list_entries(key("alice"), 3, "", soon())
        .await
        .expect("page 1");
    let second = l
        .list_entries(key("alice"), 3, &first.next_page_token, soon())
        .await
        .expect("page 2");
    assert!(second.next_page_token.is_empty());
    let all: Vec<_> = first.entries.iter().chain(&second.entries).collect();
    let sequences: Vec<u64> = all.iter().map(|e| e.sequence).collect();
    assert_eq!(sequences, [5, 4, 3, 2, 1]);
    let mut running = 0;
    for e in all.iter().rev() {
        running += e.amount;
        assert_eq!(
            e.balance_after, running,
            "entry {} replays to its balance",
            e.sequence
        );
    }
    assert_eq!(running, balance(&l, "alice").await);
    let err = l
        .list_entries(key("nobody"), 3, "", soon())
        .await
        .expect_err("no account");
    assert!(matches!(err, DomainError::AccountNotFound { .. }));
}

// ---- transfers ----

#[tokio::test]
async fn a_same_shard_transfer_is_one_atomic_change() {
    let l = ledger();
    open(&l, "alice", 100).await;
    open(&l, "bob", 0).await;
    let before = l.store().commits.load(Ordering::SeqCst);
    let t = l
        .transfer(transfer("t1", "alice", "bob", 30), soon())
        .await
        .expect("transfer");
    assert_eq!(t.status, TransferStatus::Completed);
    assert_eq!(
        l.store().commits.load(Ordering::SeqCst) - before,
        1,
        "one commit"
    );
    assert_eq!(
        (balance(&l, "alice").await, balance(&l, "bob").await),
        (70, 30)
    );
    let bob = l
        .list_entries(key("bob"), 10, "", soon())
        .await
        .expect("entries");
    assert_eq!(bob.entries[0].transfer_id.as_ref(), Some(&t.id));
}

#[tokio::test]
async fn a_cross_shard_transfer_runs_the_saga_to_completion() {
    let l = ledger();
    open(&l, "alice", 100).await;
    open(&l, "zoe", 0).await;
    let before = l.store().commits.load(Ordering::SeqCst);
    let t = l
        .transfer(transfer("t1", "alice", "zoe", 40), soon())
        .await
        .expect("transfer");
    assert_eq!(t.status, TransferStatus::Completed);
    assert_eq!(
        l.store().commits.load(Ordering::SeqCst) - before,
        3,
        "begin, credit, end"
    );
    assert_eq!(
        (balance(&l, "alice").await, balance(&l, "zoe").await),
        (60, 40)
    );
    assert!(!l.store().has_pending_any(), "no pending mark is left");
    let again = l
        .transfer(transfer("t1", "alice", "zoe", 40), soon())
        .await
        .expect("replay");
    assert_eq!(again, t);
    assert_eq!(total(&l), 100);
    let err = l
        .transfer(transfer("t1", "alice", "zoe", 41), soon())
        .await
        .expect_err("other amount");
    assert!(matches!(err, DomainError::RequestIdReused { .. }));
    let got = l
        .get_transfer(tenant(), t.id.clone(), soon())
        .await
        .expect("get");
    assert_eq!(got, t);
}

#[tokio::test]
async fn refused_transfers_apply_nothing() {
    let l = ledger();
    open(&l, "alice", 10).await;
    open(&l, "zoe", 0).await;
    let cases = [
        (transfer("t1", "alice", "alice", 1), "self"),
        (transfer("t2", "alice", "zoe", 11), "overdraft"),
        (transfer("t3", "alice", "nobody", 1), "no destination"),
        (transfer("t4", "nobody", "zoe", 1), "no source"),
    ];
    for (cmd, what) in cases {
        let err = l.transfer(cmd, soon()).await.expect_err(what);
        assert!(
            matches!(
                err,
                DomainError::SelfTransfer
                    | DomainError::InsufficientFunds { .. }
                    | DomainError::AccountNotFound { .. }
            ),
            "{what}: {err}"
        );
    }
    l.close_account(key("zoe"), rid("close"), soon())
        .await
        .expect("close zoe");
    let err = l
        .transfer(transfer("t5", "alice", "zoe", 1), soon())
        .await
        .expect_err("closed");
    assert!(matches!(err, DomainError::AccountClosed { .. }));
    assert_eq!(balance(&l, "alice").await, 10);
    assert!(
        l.get_transfer(tenant(), "alice~t2".parse_id(), soon())
            .await
            .is_err(),
        "no record of a refusal"
    );
}

#[tokio::test]
async fn a_crash_after_any_step_is_finished_by_recovery() {
    for commits_before_crash in [1, 2] {
        let l = ledger();
        open(&l, "alice", 100).await;
        open(&l, "zoe", 0).await;
        l.store()
            .commits_until_outage
            .store(commits_before_crash, Ordering::SeqCst);
        let t = l
            .transfer(transfer("t1", "alice", "zoe", 25), soon())
            .await
            .expect("answers");
        assert_eq!(
            t.status,
            TransferStatus::Pending,
            "crash after {commits_before_crash} step(s)"
        );
        assert_eq!(balance(&l, "alice").await, 75, "the debit is durable");
        l.store().heal();
        let report = l
            .recover_pending(Duration::ZERO, soon())
            .await
            .expect("recover");
        assert_eq!((report.found, report.ended), (1, 1));
        let done = l.get_transfer(tenant(), t.id, soon()).await.expect("get");
        assert_eq!(done.status, TransferStatus::Completed);
        assert_eq!(
            (balance(&l, "alice").await, balance(&l, "zoe").await),
            (75, 25)
        );
        assert_eq!(total(&l), 100, "no money created or destroyed");
    }
}

#[tokio::test]
async fn a_destination_that_closed_meanwhile_gets_the_source_refunded() {
    let l = ledger();
    open(&l, "alice", 100).await;
    open(&l, "zoe", 0).await;
    l.store().commits_until_outage.store(1, Ordering::SeqCst);
    let t = l
        .transfer(transfer("t1", "alice", "zoe", 25), soon())
        .await
        .expect("pending");
    assert_eq!(t.status, TransferStatus::Pending);
    l.store().heal();
    l.close_account(key("zoe"), rid("close"), soon())
        .await
        .expect("zoe closes");
    l.recover_pending(Duration::ZERO, soon())
        .await
        .expect("recover");
    let done = l
        .get_transfer(tenant(), t.id.clone(), soon())
        .await
        .expect("get");
    assert!(
        matches!(done.status, TransferStatus::Failed { ref reason } if reason.contains("closed")),
        "{done:?}"
    );
    assert_eq!(balance(&l, "alice").await, 100, "refunded");
    let inbound = l
        .store()
        .all()
        .into_iter()
        .find(|(k, _)| matches!(k, RecordKey::Inbound(..)))
        .map(|(_, r)| r);
    assert!(matches!(
        inbound,
        Some(Record::Inbound(Inbound::Rejected { .. }))
    ));
    let history = l
        .list_entries(key("alice"), 10, "", soon())
        .await
        .expect("entries");
    assert_eq!(
        history.entries[0].amount, 25,
        "the refund is in the history"
    );
    assert_eq!(history.entries[1].amount, -25);
}

#[tokio::test]
async fn executors_racing_on_one_transfer_credit_it_once() {
    let l = ledger();
    open(&l, "alice", 100).await;
    open(&l, "zoe", 0).await;
    l.store().commits_until_outage.store(1, Ordering::SeqCst);
    let t = l
        .transfer(transfer("t1", "alice", "zoe", 10), soon())
        .await
        .expect("pending");
    l.store().heal();
    let acme = tenant();
    let (a, b, c) = tokio::join!(
        l.drive(&acme, t.clone(), soon()),
        l.drive(&acme, t.clone(), soon()),
        l.recover_pending(Duration::ZERO, soon()),
    );
    a.expect("a");
    b.expect("b");
    c.expect("c");
    assert_eq!(
        (balance(&l, "alice").await, balance(&l, "zoe").await),
        (90, 10)
    );
    let zoe = l
        .list_entries(key("zoe"), 10, "", soon())
        .await
        .expect("entries");
    assert_eq!(zoe.entries.len(), 1, "credited exactly once");
}

#[tokio::test]
async fn an_account_with_transfers_in_flight_cannot_close() {
    let l = ledger();
    open(&l, "alice", 10).await;
    open(&l, "zoe", 0).await;
    l.store().commits_until_outage.store(1, Ordering::SeqCst);
    l.transfer(transfer("t1", "alice", "zoe", 10), soon())
        .await
        .expect("pending");
    l.store().heal();
    let err = l
        .close_account(key("alice"), rid("c"), soon())
        .await
        .expect_err("in flight");
    assert!(
        matches!(err, DomainError::TransfersInFlight { .. }),
        "{err}"
    );
}

trait ParseId {
    fn parse_id(&self) -> crate::domain::TransferId;
}

impl ParseId for str {
    fn parse_id(&self) -> crate::domain::TransferId {
        crate::domain::TransferId::parse(self).expect("transfer id")
    }
}
