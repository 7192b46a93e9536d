//! The whole stack in one process, every service a real gRPC server on a
//! loopback port: storage (one node) ← business ×2 ← gateway, driven
//! through the gateway's public API like a client would.

#![allow(clippy::expect_used)]

use std::time::Duration;

use anatomy_proto::gateway::v1 as api;
use anatomy_proto::gateway::v1::ledger_client::LedgerClient;
use anatomy_runtime::{Health, Shutdown};
use clap::Parser;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tonic::transport::Channel;
use tonic::{Code, Request};

struct Service {
    shutdown: Shutdown,
    task: JoinHandle<()>,
}

impl Service {
    async fn stop(self) {
        self.shutdown.trigger();
        let _ = self.task.await;
    }
}

async fn listener() -> (TcpListener, String) {
    let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = l.local_addr().expect("addr").to_string();
    (l, addr)
}

async fn storage(dir: &std::path::Path) -> (Service, String) {
    let (listener, addr) = listener().await;
    let cli = storage::config::Cli::parse_from([
        "storage",
        "--listen",
        &addr,
        "--data-dir",
        &dir.display().to_string(),
        "--raft-election-min",
        "100ms",
        "--raft-election-max",
        "200ms",
        "--raft-heartbeat",
        "30ms",
    ]);
    let map = storage::load_map(&cli.node).expect("map");
    let node = storage::node::StorageNode::start(storage::node_config(&cli.node, map))
        .await
        .expect("storage node");
    let health = Health::new(&[storage::HEALTH_SERVICE]).await;
    let shutdown = Shutdown::new();
    let options = storage::ServeOptions {
        request_timeout: Duration::from_secs(5),
        limits: anatomy_runtime::server::ServerLimits {
            max_in_flight: 1024,
            default_deadline: Duration::from_secs(5),
            max_request_bytes: 1 << 20,
        },
        shutdown_grace: Duration::from_secs(1),
    };
    let task = tokio::spawn({
        let shutdown = shutdown.clone();
        async move {
            storage::serve(node, listener, options, health, shutdown)
                .await
                .expect("storage");
        }
    });
    anatomy_runtime::healthcheck::run(
        &anatomy_runtime::HealthcheckArgs {
            addr: Some(addr.clone()),
            service: String::new(),
            wait: Duration::from_secs(10),
        },
        &addr,
    )
    .await
    .expect("storage becomes SERVING");
    (Service { shutdown, task }, addr)
}

async fn business(storage_addr: &str) -> (Service, String) {
    let (listener, addr) = listener().await;
    let cli = business::config::Cli::parse_from([
        "business",
        "--listen",
        &addr,
        "--storage-addr",
        storage_addr,
    ]);
    let health = Health::new(&[business::HEALTH_SERVICE]).await;
    let shutdown = Shutdown::new();
    let task = tokio::spawn({
        let shutdown = shutdown.clone();
        async move {
            business::serve(&cli.service, listener, health, shutdown)
                .await
                .expect("business");
        }
    });
    (Service { shutdown, task }, addr)
}

async fn gateway(business_addrs: &str) -> (Service, LedgerClient<Channel>) {
    gateway_with(business_addrs, &[]).await
}

async fn gateway_with(business_addrs: &str, extra: &[&str]) -> (Service, LedgerClient<Channel>) {
    let (listener, addr) = listener().await;
    let mut args = vec![
        "gateway",
        "--listen",
        &addr,
        "--business-addr",
        business_addrs,
        "--api-keys",
        "key-a=acme,key-g=globex",
        "--http-listen",
        "127.0.0.1:0",
    ];
    args.extend_from_slice(extra);
    let cli = gateway::config::Cli::parse_from(args);
    let health = Health::new(&[gateway::HEALTH_SERVICE]).await;
    let shutdown = Shutdown::new();
    let task = tokio::spawn({
        let shutdown = shutdown.clone();
        async move {
            gateway::serve(&cli.service, listener, health, shutdown)
                .await
                .expect("gateway");
        }
    });
    let client = LedgerClient::connect(format!("http://{addr}"))
        .await
        .expect("connect");
    (Service { shutdown, task }, client)
}

fn as_tenant<T>(key: &str, message: T) -> Request<T> {
    let mut r = Request::new(message);
    r.metadata_mut().insert(
        "authorization",
        format!("Bearer {key}").parse().expect("ascii"),
    );
    r
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
    let dir = tempfile::tempdir().expect("tempdir");
    let (storage, storage_addr) = storage(dir.path()).await;
    let (biz, biz_addr) = business(&storage_addr).await;
    let (gw, mut client) = gateway(&biz_addr).await;

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
    storage.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn losing_a_business_replica_fails_no_request() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (storage, storage_addr) = storage(dir.path()).await;
    let (biz1, addr1) = business(&storage_addr).await;
    let (biz2, addr2) = business(&storage_addr).await;
    let (gw, mut client) = gateway(&format!("{addr1},{addr2}")).await;
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
    storage.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_dead_dependency_fails_fast_instead_of_hanging() {
    // A port nobody listens on: every business replica is down.
    let (closed, dead_addr) = listener().await;
    drop(closed);
    let (gw, mut client) = gateway(&dead_addr).await;
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
    let dir = tempfile::tempdir().expect("tempdir");
    let (storage, storage_addr) = storage(dir.path()).await;
    let (biz, biz_addr) = business(&storage_addr).await;
    let (gw, mut client) =
        gateway_with(&biz_addr, &["--tenant-rps", "1", "--tenant-burst", "2"]).await;
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
    storage.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn overload_is_shed_at_once_not_queued() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (storage, storage_addr) = storage(dir.path()).await;
    let (biz, biz_addr) = business(&storage_addr).await;
    // One call at a time: a burst of 64 can only be shed.
    let (gw, client) = gateway_with(&biz_addr, &["--max-concurrent-calls", "1"]).await;
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
    storage.stop().await;
}
