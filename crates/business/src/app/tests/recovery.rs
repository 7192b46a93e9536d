//! Recovery: independent, not poisoned, not stalled.

use super::*;

/// Starts a transfer whose caller gives up at once: debited, left PENDING.
async fn leave_pending(l: &TestLedger, r: &str, from: &str, to: &str, n: i64) -> TransferId {
    let t = l
        .transfer(transfer(r, from, to, n), TimeBudget::after(Duration::ZERO))
        .await
        .expect("begins");
    assert_eq!(t.status, TransferStatus::Pending, "{t:?}");
    t.id
}

async fn status(l: &TestLedger, id: &TransferId) -> TransferStatus {
    l.get_transfer(tenant(), id.clone(), soon())
        .await
        .expect("get")
        .status
}

fn mark(l: &TestLedger, id: &TransferId) -> Option<PendingMark> {
    l.store().all().into_iter().find_map(|(k, r)| match (k, r) {
        (RecordKey::Pending(_, i), Record::Pending(m)) if &i == id => Some(m),
        _ => None,
    })
}

#[tokio::test]
async fn the_poisoning_sequence_cannot_stop_recovery() {
    let l = ledger();
    // mallory (shard 1) sends to zed (shard 2); alice (0) to kate (1).
    for (account, balance) in [("mallory", 10), ("zed", 0), ("alice", 100), ("kate", 0)] {
        open(&l, account, balance).await;
    }
    // 1. zed is full: every credit to it is rejected.
    l.deposit(money("zed", "fill", i64::MAX), soon())
        .await
        .expect("zed takes i64::MAX");
    // 2. a transfer to zed left pending (its caller's deadline was tiny).
    let poisoned = leave_pending(&l, "p1", "mallory", "zed", 10).await;
    let healthy = leave_pending(&l, "h1", "alice", "kate", 30).await;
    // 3. filling mallory to i64::MAX would leave no room for the refund: refused.
    let err = l
        .deposit(money("mallory", "fill", i64::MAX), soon())
        .await
        .expect_err("the ceiling counts the 10 in flight");
    assert!(
        matches!(
            err,
            DomainError::BalanceCeiling {
                balance: 0,
                in_flight_out: 10,
                ..
            }
        ),
        "{err}"
    );
    l.deposit(money("mallory", "fill-2", i64::MAX - 10), soon())
        .await
        .expect("up to the ceiling");
    // Recovery: zed rejects, mallory is refunded (it fits), alice's ends too.
    let report = l.recover_pending(&recovery()).await;
    assert_eq!(
        report,
        Recovered {
            found: 2,
            ended: 2,
            ..Recovered::default()
        }
    );
    assert!(
        matches!(status(&l, &poisoned).await, TransferStatus::Failed { ref reason } if reason.contains("ceiling")),
        "{:?}",
        status(&l, &poisoned).await
    );
    assert_eq!(status(&l, &healthy).await, TransferStatus::Completed);
    assert_eq!(balance(&l, "mallory").await, i64::MAX, "refunded in full");
    assert_eq!(balance(&l, "zed").await, i64::MAX);
    assert_eq!(
        (balance(&l, "alice").await, balance(&l, "kate").await),
        (70, 30)
    );
    assert!(!l.store().has_pending_any());
}

#[tokio::test]
async fn a_failing_recovery_is_recorded_and_retried_later_without_blocking_others() {
    let l = ledger();
    for (account, balance) in [("mallory", 10), ("zed", 0), ("alice", 100), ("kate", 0)] {
        open(&l, account, balance).await;
    }
    l.deposit(money("zed", "fill", i64::MAX), soon())
        .await
        .expect("zed is full");
    let poisoned = leave_pending(&l, "p1", "mallory", "zed", 10).await;
    let healthy = leave_pending(&l, "h1", "alice", "kate", 30).await;
    // A source stored before accounts counted money in flight: full, and
    // nothing recorded in flight, so its refund cannot be booked.
    let mut legacy = l.get_account(key("mallory"), soon()).await.expect("get");
    (legacy.balance, legacy.in_flight_out) = (i64::MAX, 0);
    l.store().put_raw(
        RecordKey::Account(key("mallory")),
        Record::Account(legacy.clone()),
    );

    let report = l.recover_pending(&recovery()).await;
    assert_eq!((report.found, report.ended, report.failed), (2, 1, 1));
    assert_eq!(status(&l, &healthy).await, TransferStatus::Completed);
    assert_eq!(status(&l, &poisoned).await, TransferStatus::Pending);
    let noted = mark(&l, &poisoned).expect("still pending");
    assert_eq!(noted.failures, 1);
    assert!(noted.last_error.contains("ceiling"), "{}", noted.last_error);
    let retry_at = noted.retry_at.expect("a time to retry");

    let report = l.recover_pending(&recovery()).await;
    assert_eq!(report.found, 0, "backing off: {report:?}");

    // The owner takes money out; once the backoff is over, the refund fits.
    legacy.balance -= 10;
    l.store()
        .put_raw(RecordKey::Account(key("mallory")), Record::Account(legacy));
    let now = l.clock.now();
    l.clock
        .advance(retry_at.duration_since(now).expect("later"));
    let report = l.recover_pending(&recovery()).await;
    assert_eq!((report.found, report.ended), (1, 1), "{report:?}");
    assert!(matches!(
        status(&l, &poisoned).await,
        TransferStatus::Failed { .. }
    ));
    assert_eq!(balance(&l, "mallory").await, i64::MAX);
}

/// Waits until `done` holds, for at most `limit`. These tests run with
/// tokio's clock paused: the pauses between checks cost no real time and
/// only let the other tasks run.
async fn eventually(limit: Duration, what: &str, done: impl AsyncFn() -> bool) {
    tokio::time::timeout(limit, async {
        while !done().await {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("{what}"));
}

#[tokio::test(start_paused = true)]
async fn a_transfer_to_a_dead_shard_does_not_delay_the_others() {
    let l = Arc::new(ledger());
    // alice (shard 0) → zoe (2); bob (0) → kate (1); yuri (2) → alice.
    for (account, balance) in [
        ("alice", 100),
        ("bob", 100),
        ("yuri", 100),
        ("zoe", 0),
        ("kate", 0),
    ] {
        open(&l, account, balance).await;
    }
    let stuck = leave_pending(&l, "s1", "alice", "zoe", 10).await;
    let healthy = leave_pending(&l, "h1", "bob", "kate", 20).await;
    let unlisted = leave_pending(&l, "u1", "yuri", "alice", 5).await;
    l.store().kill_shard(2);

    let started = tokio::time::Instant::now();
    let pass = tokio::spawn({
        let l = l.clone();
        async move { l.recover_pending(&recovery()).await }
    });
    eventually(
        Duration::from_secs(1),
        "bob → kate waited for zoe's shard (the pass shared one deadline)",
        async || status(&l, &healthy).await == TransferStatus::Completed,
    )
    .await;
    assert!(started.elapsed() < Duration::from_secs(1));

    let report = pass.await.expect("pass");
    assert_eq!(
        report,
        Recovered {
            found: 2,
            ended: 1,
            failed: 1,
            missing_shards: 1,
        },
        "yuri's shard could not be listed; alice → zoe failed"
    );
    assert!(
        started.elapsed() <= Duration::from_secs(6),
        "one budget for the stuck transfer, not one per pass step: {:?}",
        started.elapsed()
    );
    let noted = mark(&l, &stuck).expect("still pending");
    assert!(
        noted.last_error.contains("no majority"),
        "{}",
        noted.last_error
    );

    l.store().revive_shard(2);
    l.clock.advance(Duration::from_secs(60));
    let report = l.recover_pending(&recovery()).await;
    assert_eq!((report.found, report.ended), (2, 2), "{report:?}");
    for id in [&stuck, &unlisted] {
        assert_eq!(status(&l, id).await, TransferStatus::Completed);
    }
    assert_eq!(total(&l), 300);
}

#[tokio::test(start_paused = true)]
async fn the_worker_takes_new_transfers_while_one_is_stuck_on_a_dead_shard() {
    let l = Arc::new(ledger());
    for (account, balance) in [("alice", 100), ("bob", 100), ("zoe", 0), ("kate", 0)] {
        open(&l, account, balance).await;
    }
    let stuck = leave_pending(&l, "s1", "alice", "zoe", 10).await;
    l.store().kill_shard(2);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let worker = tokio::spawn(crate::app::recovery_worker::run(
        l.clone(),
        recovery(),
        async move {
            let _ = stopped.await;
        },
    ));
    // The worker's first tick took the stuck transfer (for 5 s); a second
    // later (virtual time: the clock is paused), another transfer is left
    // pending.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let later = leave_pending(&l, "l1", "bob", "kate", 20).await;
    let started = tokio::time::Instant::now();
    eventually(
        Duration::from_secs(2),
        "recovered at the next tick, not after the stuck one's budget",
        async || status(&l, &later).await == TransferStatus::Completed,
    )
    .await;
    assert!(started.elapsed() < Duration::from_secs(2));
    assert_eq!(status(&l, &stuck).await, TransferStatus::Pending);
    // Its budget spent, the failure is noted; once the shard is back and
    // the backoff over, it ends too.
    eventually(
        Duration::from_secs(10),
        "the failure is noted on the pending mark",
        async || mark(&l, &stuck).is_some_and(|m| m.failures > 0),
    )
    .await;
    l.store().revive_shard(2);
    l.clock.advance(Duration::from_secs(60));
    eventually(
        Duration::from_secs(30),
        "recovered once its shard is back",
        async || status(&l, &stuck).await == TransferStatus::Completed,
    )
    .await;
    stop.send(()).expect("worker running");
    worker.await.expect("worker stops");
}
