//! The whole stack in one process, every service a real gRPC server on a
//! loopback port, talking mutual TLS with the cluster's certificates:
//! storage ← business ×N ← gateway, driven through the gateway's public
//! API like a client would.

#![allow(clippy::expect_used)]

use std::time::Duration;

use gateway_api::v1 as api;
use system_tests::services::{as_tenant, business, gateway, listener};
use system_tests::{Cluster, fast_tuning};
use tonic::Code;

/// A one-replica storage cluster, started and with a leader.
async fn storage() -> (Cluster, Vec<String>) {
    let cluster = Cluster::start(1, 1, fast_tuning()).await;
    cluster.leader(0).await;
    let args = cluster.business_args();
    (cluster, args)
}

fn refs(args: &[String]) -> Vec<&str> {
    args.iter().map(String::as_str).collect()
}

fn deposit(request_id: &str, account: &str, amount: i64) -> api::DepositRequest {
    api::DepositRequest {
        request_id: request_id.into(),
        account_id: account.into(),
        amount,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_ledger_through_the_gateway() {
    let (mut storage, storage_args) = storage().await;
    let (biz, biz_addr) = business(&refs(&storage_args), &[]).await;
    let (gw, mut client) = gateway(&storage.tls_dir(), &biz_addr, &[]).await;

    let unauthenticated = client
        .get_account(api::GetAccountRequest {
            account_id: "alice".into(),
        })
        .await
        .expect_err("no key");
    assert_eq!(unauthenticated.code(), Code::Unauthenticated);

    let create = api::CreateAccountRequest {
        request_id: "c1".into(),
        account_id: "alice".into(),
    };
    let account = client
        .create_account(as_tenant("key-a", create))
        .await
        .expect("create")
        .into_inner();
    assert_eq!((account.balance, account.version), (0, 1));
    let account = client
        .deposit(as_tenant("key-a", deposit("d1", "alice", 500)))
        .await
        .expect("deposit")
        .into_inner();
    assert_eq!(account.balance, 500);
    let replay = client
        .deposit(as_tenant("key-a", deposit("d1", "alice", 500)))
        .await
        .expect("replay")
        .into_inner();
    assert_eq!(replay, account, "a replay returns the first result");
    let withdraw = api::WithdrawRequest {
        request_id: "w1".into(),
        account_id: "alice".into(),
        amount: 501,
    };
    let overdraft = client
        .withdraw(as_tenant("key-a", withdraw))
        .await
        .expect_err("overdraft");
    assert_eq!(overdraft.code(), Code::FailedPrecondition);
    let other_tenant = client
        .get_account(as_tenant(
            "key-g",
            api::GetAccountRequest {
                account_id: "alice".into(),
            },
        ))
        .await
        .expect_err("globex cannot see acme's account");
    assert_eq!(other_tenant.code(), Code::NotFound);
    let read = client
        .get_account(as_tenant(
            "key-a",
            api::GetAccountRequest {
                account_id: "alice".into(),
            },
        ))
        .await
        .expect("get")
        .into_inner();
    assert_eq!((read.balance, read.version), (500, 2));

    gw.stop().await;
    biz.stop().await;
    storage.stop_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn losing_a_business_replica_fails_no_request() {
    let (mut storage, storage_args) = storage().await;
    let (biz1, addr1) = business(&refs(&storage_args), &[]).await;
    let (biz2, addr2) = business(&refs(&storage_args), &[]).await;
    let (gw, mut client) = gateway(&storage.tls_dir(), &format!("{addr1},{addr2}"), &[]).await;
    let create = api::CreateAccountRequest {
        request_id: "c1".into(),
        account_id: "bob".into(),
    };
    client
        .create_account(as_tenant("key-a", create))
        .await
        .expect("create");
    for n in 0..20 {
        client
            .deposit(as_tenant("key-a", deposit(&format!("a{n}"), "bob", 1)))
            .await
            .expect("deposit");
    }
    biz1.stop().await;
    for n in 0..20 {
        client
            .deposit(as_tenant("key-a", deposit(&format!("b{n}"), "bob", 1)))
            .await
            .expect("a deposit after one replica stopped");
    }
    let read = client
        .get_account(as_tenant(
            "key-a",
            api::GetAccountRequest {
                account_id: "bob".into(),
            },
        ))
        .await
        .expect("get")
        .into_inner();
    assert_eq!(read.balance, 40, "every deposit applied exactly once");
    gw.stop().await;
    biz2.stop().await;
    storage.stop_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_dead_dependency_fails_fast_instead_of_hanging() {
    // A port nobody listens on: every business replica is down.
    let (closed, dead_addr) = listener().await;
    drop(closed);
    // No cluster: the gateway makes development certificates itself.
    let tls = tempfile::tempdir().expect("tempdir");
    let (gw, mut client) = gateway(tls.path(), &dead_addr, &[]).await;
    let mut request = as_tenant("key-a", deposit("d1", "alice", 1));
    request.set_timeout(Duration::from_secs(10));
    let started = std::time::Instant::now();
    let refused = client.deposit(request).await.expect_err("no business");
    assert_eq!(refused.code(), Code::Unavailable, "{refused:?}");
    assert!(
        refused.message().contains("business"),
        "the message names the dependency: {}",
        refused.message()
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "failed after {:?}, not long before the 10s deadline",
        started.elapsed()
    );
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_tenant_over_its_rate_is_refused_with_a_retry_hint() {
    use tonic_types::StatusExt as _;
    let (mut storage, storage_args) = storage().await;
    let (biz, biz_addr) = business(&refs(&storage_args), &[]).await;
    let (gw, mut client) = gateway(
        &storage.tls_dir(),
        &biz_addr,
        &["--tenant-rps", "1", "--tenant-burst", "2"],
    )
    .await;
    let get = |key: &str| {
        as_tenant(
            key,
            api::GetAccountRequest {
                account_id: "nobody".into(),
            },
        )
    };
    for _ in 0..2 {
        let answered = client
            .get_account(get("key-a"))
            .await
            .expect_err("no such account");
        assert_eq!(answered.code(), Code::NotFound);
    }
    let limited = client
        .get_account(get("key-a"))
        .await
        .expect_err("over the rate");
    assert_eq!(limited.code(), Code::ResourceExhausted, "{limited:?}");
    let hint = limited
        .get_details_retry_info()
        .expect("a RetryInfo detail");
    assert!(
        hint.retry_delay
            .is_some_and(|d| d <= Duration::from_secs(1))
    );
    // Another tenant has its own bucket.
    let other = client
        .get_account(get("key-g"))
        .await
        .expect_err("no such account");
    assert_eq!(other.code(), Code::NotFound);
    gw.stop().await;
    biz.stop().await;
    storage.stop_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn overload_is_shed_at_once_not_queued() {
    let (mut storage, storage_args) = storage().await;
    let (biz, biz_addr) = business(&refs(&storage_args), &[]).await;
    // One call at a time: a burst of 64 can only be shed.
    let (gw, client) = gateway(
        &storage.tls_dir(),
        &biz_addr,
        &["--max-concurrent-calls", "1"],
    )
    .await;
    let calls = (0..64).map(|n| {
        let mut client = client.clone();
        tokio::spawn(async move {
            let mut request = as_tenant("key-a", deposit(&format!("burst-{n}"), "nobody", 1));
            request.set_timeout(Duration::from_secs(10));
            client.deposit(request).await.map(drop)
        })
    });
    let results = futures::future::join_all(calls).await;
    let codes: Vec<Code> = results
        .into_iter()
        .map(|r| match r.expect("task") {
            Ok(()) => Code::Ok,
            Err(status) => status.code(),
        })
        .collect();
    let shed = codes
        .iter()
        .filter(|c| **c == Code::ResourceExhausted)
        .count();
    let answered = codes.iter().filter(|c| **c == Code::NotFound).count();
    assert!(shed >= 1, "some calls of the burst are refused: {codes:?}");
    assert!(answered >= 1, "the admitted ones are served: {codes:?}");
    assert_eq!(
        shed + answered,
        codes.len(),
        "nothing else happens: {codes:?}"
    );
    // Once the burst is over, calls are admitted again.
    let after = client
        .clone()
        .deposit(as_tenant("key-a", deposit("after", "nobody", 1)))
        .await
        .expect_err("no such account");
    assert_eq!(after.code(), Code::NotFound);
    gw.stop().await;
    biz.stop().await;
    storage.stop_all().await;
}
