//! Accounts: idempotent changes, conflicts, listing.

use super::*;

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

/// The contract (docs/ledger.md): a refused request applied nothing and is
/// not remembered, so the same request_id sent again later is a new
/// attempt, which may succeed; one that succeeded is remembered for good.
#[tokio::test]
async fn a_refused_request_is_not_remembered_and_may_succeed_when_sent_again() {
    let l = ledger();
    open(&l, "alice", 0).await;
    let refused = l.withdraw(money("alice", "w1", 30), soon()).await;
    assert!(matches!(
        refused,
        Err(DomainError::InsufficientFunds { .. })
    ));
    l.deposit(money("alice", "d1", 50), soon())
        .await
        .expect("deposit");
    let again = l
        .withdraw(money("alice", "w1", 30), soon())
        .await
        .expect("the same request, now covered");
    let replay = l
        .withdraw(money("alice", "w1", 30), soon())
        .await
        .expect("a replay of the success");
    assert_eq!(replay, again);
    assert_eq!(balance(&l, "alice").await, 20, "withdrawn once");
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

#[tokio::test]
async fn a_deposit_reads_once_without_a_linearizable_read() {
    let l = ledger();
    open(&l, "alice", 0).await;
    let before = l.store().linearizable_reads.load(Ordering::SeqCst);
    l.deposit(money("alice", "d1", 10), soon())
        .await
        .expect("deposit");
    assert_eq!(
        l.store().linearizable_reads.load(Ordering::SeqCst),
        before,
        "the optimistic read sufficed"
    );
}

#[tokio::test]
async fn a_stale_optimistic_read_costs_a_retry_never_a_wrong_answer() {
    let l = ledger();
    // The lagging copy has no alice at all, then an old balance of hers.
    l.store().lag_optimistic_reads();
    open(&l, "alice", 0).await;
    let a = l
        .deposit(money("alice", "d1", 100), soon())
        .await
        .expect("deposit to an account the stale read does not show");
    assert_eq!(a.balance, 100);
    l.store().lag_optimistic_reads();
    l.deposit(money("alice", "d2", 50), soon())
        .await
        .expect("deposit");
    let w = l
        .withdraw(money("alice", "w1", 120), soon())
        .await
        .expect("a withdrawal the stale balance (100) could not cover");
    assert_eq!(w.balance, 30);
    let err = l
        .withdraw(money("alice", "w2", 31), soon())
        .await
        .expect_err("more than the balance");
    assert!(
        matches!(err, DomainError::InsufficientFunds { balance: 30, .. }),
        "{err}"
    );
    let replay = l
        .deposit(money("alice", "d1", 100), soon())
        .await
        .expect("replay");
    assert_eq!(
        replay, a,
        "a replay seen on a stale read is still the first result"
    );
    assert_eq!(balance(&l, "alice").await, 30);
}
