//! Transfers: same-shard and cross-shard, refusals, crashes, races.

use super::*;

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
        let report = l.recover_pending(&recovery()).await;
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
    l.recover_pending(&recovery()).await;
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
    let config = recovery();
    let (a, b, c) = tokio::join!(
        l.drive(&acme, t.clone(), soon()),
        l.drive(&acme, t.clone(), soon()),
        l.recover_pending(&config),
    );
    a.expect("a");
    b.expect("b");
    assert_eq!(c.failed, 0, "{c:?}");
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
