//! Storage as a cluster: replication, conditions, fencing, failover,
//! restart from disk and snapshot catch-up — with real gRPC servers on
//! loopback, real Raft and real files.

#![allow(clippy::expect_used)]

use std::time::{Duration, Instant};

use anatomy_runtime::tls::Identity;
use anatomy_runtime::tls::transport::endpoint;
use storage::engine::KeyValue;
use storage_api::v1 as pb;
use storage_api::v1::kv_client::KvClient;
use storage_api::wire_errors::{Fault, fault};
use system_tests::{Cluster, fast_tuning};

const TIMEOUT: Duration = Duration::from_secs(10);

fn put(table: &str, key: &str, value: &str) -> pb::Mutation {
    pb::Mutation {
        partition: String::new(),
        table: table.into(),
        key: key.as_bytes().to_vec().into(),
        op: Some(pb::mutation::Op::Put(value.as_bytes().to_vec().into())),
    }
}

fn absent(table: &str, key: &str) -> pb::Condition {
    pb::Condition {
        partition: String::new(),
        table: table.into(),
        key: key.as_bytes().to_vec().into(),
        expected_version: 0,
    }
}

fn item(table: &str, key: &str) -> pb::ItemKey {
    pb::ItemKey {
        table: table.into(),
        key: key.as_bytes().to_vec().into(),
    }
}

fn contents(cluster: &Cluster, i: usize) -> Vec<KeyValue> {
    let view = cluster.node(i).engine_view().expect("view");
    view.iter_all()
        .expect("iter")
        .collect::<Result<_, _>>()
        .expect("items")
}

async fn write_keys(client: &storage_client::StorageClient, range: std::ops::Range<u32>) {
    for n in range {
        let key = format!("k{n}");
        let response = client
            .write(
                "acme/p",
                vec![absent("t", &key)],
                vec![put("t", &key, &format!("v{n}"))],
                TIMEOUT,
            )
            .await
            .expect("write");
        assert!(response.applied, "write {key} applied");
    }
}

/// A raw Kv client of one replica of shard 0 (as business: mutual TLS),
/// for requests the storage client would never send.
fn raw_kv(cluster: &Cluster, position: usize) -> KvClient<tonic::transport::Channel> {
    let replica = &cluster.map.shards[0].replicas[position];
    let channel = cluster
        .transport(Identity::Business)
        .lazy_channel(
            endpoint(&replica.addr).expect("address"),
            Identity::storage(0, replica.id),
        )
        .expect("channel");
    KvClient::new(channel)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn writes_replicate_and_reads_are_linearizable() {
    let mut cluster = Cluster::start(1, 3, fast_tuning()).await;
    let leader = cluster.leader(0).await;
    let client = cluster.client();
    write_keys(&client, 0..40).await;
    let items = client
        .read(
            "acme/p",
            vec![item("t", "k7"), item("t", "missing")],
            TIMEOUT,
        )
        .await
        .expect("read");
    assert_eq!(&items[0].value[..], b"v7");
    assert!(items[0].version > 0);
    assert_eq!(items[1].version, 0, "absent items have version 0");

    let applied = cluster.applied(leader);
    for i in 0..3 {
        cluster.wait_applied(i, applied).await;
    }
    let on_leader = contents(&cluster, leader);
    assert_eq!(on_leader.len(), 40);
    for i in 0..3 {
        assert_eq!(
            contents(&cluster, i),
            on_leader,
            "replica {i} holds the same state"
        );
    }
    cluster.stop_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn failed_conditions_change_nothing() {
    let mut cluster = Cluster::start(1, 1, fast_tuning()).await;
    cluster.leader(0).await;
    let client = cluster.client();
    let first = client
        .write(
            "acme/p",
            vec![absent("t", "a")],
            vec![put("t", "a", "one")],
            TIMEOUT,
        )
        .await
        .expect("write");
    assert!(first.applied);
    let second = client
        .write(
            "acme/p",
            vec![absent("t", "a")],
            vec![put("t", "a", "two"), put("t", "b", "x")],
            TIMEOUT,
        )
        .await
        .expect("write");
    assert!(!second.applied);
    assert_eq!(second.failures.len(), 1);
    assert_eq!(second.failures[0].actual_version, first.revision);
    let items = client
        .read("acme/p", vec![item("t", "a"), item("t", "b")], TIMEOUT)
        .await
        .expect("read");
    assert_eq!(&items[0].value[..], b"one");
    assert_eq!(
        items[1].version, 0,
        "no mutation of a refused batch was applied"
    );
    cluster.stop_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn local_reads_skip_the_round_but_only_the_leader_serves_them() {
    let mut cluster = Cluster::start(1, 3, fast_tuning()).await;
    let leader = cluster.leader(0).await;
    let client = cluster.client();
    write_keys(&client, 0..3).await;
    // Acknowledged means applied on the leader: a local read there sees it.
    let items = client
        .read_with(
            "acme/p",
            vec![item("t", "k2")],
            pb::ReadConsistency::Local,
            TIMEOUT,
        )
        .await
        .expect("local read");
    assert_eq!(&items[0].value[..], b"v2");

    let follower = (0..3).find(|&i| i != leader).expect("a follower");
    let status = raw_kv(&cluster, follower)
        .read(pb::ReadRequest {
            route: Some(pb::Route {
                shard_id: 0,
                map_version: cluster.map.version,
            }),
            partition: "acme/p".into(),
            keys: vec![item("t", "k2")],
            consistency: pb::ReadConsistency::Local.into(),
        })
        .await
        .expect_err("a follower does not serve reads");
    let leader_id = cluster.map.shards[0].replicas[leader].id;
    assert!(
        matches!(fault(&status), Fault::NotLeader { leader_id: Some(id), .. } if id == leader_id),
        "{status:?}"
    );
    cluster.stop_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn misrouted_requests_get_wrong_shard_and_change_nothing() {
    let mut cluster = Cluster::start(2, 1, fast_tuning()).await;
    cluster.leader(0).await;
    cluster.leader(1).await;
    let map = cluster.map.clone();
    let on_shard_1 = (0..)
        .map(|i| format!("acme/{i}"))
        .find(|p| map.shard_for(p).id == 1)
        .expect("a partition of shard 1");
    let mut raw = raw_kv(&cluster, 0);
    let write = |route: pb::Route, partition: &str| pb::WriteRequest {
        route: Some(route),
        partition: partition.to_string(),
        conditions: vec![],
        mutations: vec![put("t", "k", "v")],
    };

    // A partition shard 0 does not own, sent to shard 0.
    let status = raw
        .write(write(
            pb::Route {
                shard_id: 0,
                map_version: 1,
            },
            &on_shard_1,
        ))
        .await
        .expect_err("not shard 0's slot");
    assert_eq!(
        fault(&status),
        Fault::WrongShard {
            node_map_version: Some(1),
            owner: None
        }
    );

    // Routed to shard 1 but sent to a node of shard 0 (the map version is
    // not what fences: ownership is, see fence.rs).
    let on_shard_0 = (0..)
        .map(|i| format!("acme/{i}"))
        .find(|p| map.shard_for(p).id == 0)
        .expect("a partition of shard 0");
    let status = raw
        .write(write(
            pb::Route {
                shard_id: 1,
                map_version: 1,
            },
            &on_shard_0,
        ))
        .await
        .expect_err("another shard's route");
    assert_eq!(status.code(), tonic::Code::FailedPrecondition);
    assert!(matches!(fault(&status), Fault::WrongShard { .. }));

    // Nothing was written anywhere.
    let client = cluster.client();
    for partition in [&on_shard_0, &on_shard_1] {
        let items = client
            .read(partition, vec![item("t", "k")], TIMEOUT)
            .await
            .expect("read");
        assert_eq!(items[0].version, 0, "{partition} untouched");
    }
    cluster.stop_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn leader_failover_loses_no_acknowledged_write() {
    let mut cluster = Cluster::start(1, 3, fast_tuning()).await;
    let leader = cluster.leader(0).await;
    let client = cluster.client();
    let writer = tokio::spawn({
        let client = client.clone();
        async move {
            let mut acked = Vec::new();
            for n in 0..150u32 {
                let key = format!("f{n}");
                let started = Instant::now();
                let r = client
                    .write(
                        "acme/p",
                        vec![absent("t", &key)],
                        vec![put("t", &key, "v")],
                        TIMEOUT,
                    )
                    .await;
                // A write whose answer was lost may commit and then fail its
                // condition on the client's retry: both count as durable.
                if r.is_ok() {
                    acked.push((key, Instant::now(), started.elapsed()));
                }
            }
            acked
        }
    });
    // Let some writes through, then take the leader away.
    cluster
        .node(leader)
        .raft
        .wait(Some(TIMEOUT))
        .metrics(
            |m| m.last_applied.is_some_and(|l| l.index >= 30),
            "writes are flowing",
        )
        .await
        .expect("writes started");
    let killed_at = Instant::now();
    cluster.stop(leader).await;
    let acked = writer.await.expect("writer");
    assert_eq!(
        acked.len(),
        150,
        "every write was acknowledged within its deadline"
    );
    let new_leader = cluster.leader(0).await;
    assert_ne!(new_leader, leader);
    let window = acked
        .windows(2)
        .filter(|w| w[1].1 >= killed_at)
        .map(|w| w[1].1.duration_since(w[0].1))
        .max()
        .unwrap_or_default();
    println!("failover: longest gap between acknowledged writes after the kill: {window:?}");
    for (key, _, _) in &acked {
        let items = client
            .read("acme/p", vec![item("t", key)], TIMEOUT)
            .await
            .expect("read");
        assert!(
            items[0].version > 0,
            "acknowledged {key} survived the failover"
        );
    }
    cluster.stop_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn restart_from_disk_restores_identical_state() {
    let mut cluster = Cluster::start(1, 3, fast_tuning()).await;
    let leader = cluster.leader(0).await;
    write_keys(&cluster.client(), 0..60).await;
    let applied = cluster.applied(leader);
    for i in 0..3 {
        cluster.wait_applied(i, applied).await;
    }
    let before = contents(&cluster, leader);
    cluster.stop_all().await;
    for i in 0..3 {
        cluster.boot(i).await;
    }
    let leader = cluster.leader(0).await;
    let items = cluster
        .client()
        .read("acme/p", vec![item("t", "k59")], TIMEOUT)
        .await
        .expect("read");
    assert_eq!(&items[0].value[..], b"v59");
    for i in 0..3 {
        cluster.wait_applied(i, applied).await;
        assert_eq!(contents(&cluster, i), before, "replica {i} after restart");
    }
    let _ = leader;
    cluster.stop_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_wiped_replica_catches_up_from_a_snapshot() {
    let mut tuning = fast_tuning();
    tuning.snapshot_every = 20;
    tuning.keep_logs = 5;
    let mut cluster = Cluster::start(1, 3, tuning).await;
    let leader = cluster.leader(0).await;
    let follower = (0..3).find(|i| *i != leader).expect("a follower");
    let client = cluster.client();
    write_keys(&client, 0..40).await;
    cluster.stop(follower).await;
    std::fs::remove_dir_all(cluster.data_dir(follower)).expect("wipe follower");
    write_keys(&client, 40..120).await;
    let leader_metrics = cluster.node(leader).raft.metrics().borrow().clone();
    assert!(
        leader_metrics.purged.is_some(),
        "the leader compacted its log"
    );
    cluster.boot(follower).await;
    let applied = leader_metrics.last_applied.expect("applied").index;
    cluster.wait_applied(follower, applied).await;
    let snapshot = cluster.node(follower).raft.metrics().borrow().snapshot;
    assert!(snapshot.is_some(), "the wiped replica was sent a snapshot");
    cluster.wait_applied(leader, applied).await;
    assert_eq!(contents(&cluster, follower).len(), 120);
    assert_eq!(contents(&cluster, follower), contents(&cluster, leader));
    cluster.stop_all().await;
}

/// A partition name that the map puts on `shard`.
fn partition_on(cluster: &Cluster, shard: u32) -> String {
    (0..)
        .map(|n| format!("acme/p{n}"))
        .find(|p| cluster.map.shard_for(p).id == shard)
        .expect("some partition lands on every shard")
}

/// Issue 15: a shard without a majority answers UNAVAILABLE within a few
/// seconds however long the caller would wait (the per-shard breaker),
/// later calls fail at once, other shards are unaffected, and it serves
/// again once a majority is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_shard_without_a_majority_fails_fast_and_the_others_serve() {
    let mut cluster = Cluster::start(2, 3, fast_tuning()).await;
    let (down, up) = (partition_on(&cluster, 0), partition_on(&cluster, 1));
    let client = cluster.client();
    for p in [&down, &up] {
        client
            .write(p, vec![], vec![put("t", "k", "v")], TIMEOUT)
            .await
            .expect("both shards serve");
    }
    cluster.stop(0).await;
    cluster.stop(1).await;
    let long = Duration::from_secs(30);

    let started = Instant::now();
    let first = client.read(&down, vec![item("t", "k")], long).await;
    assert!(
        matches!(
            first,
            Err(storage_client::StorageError::Unavailable { shard: 0, .. })
        ),
        "{first:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?} of a 30 s deadline",
        started.elapsed()
    );

    let started = Instant::now();
    let again = client.read(&down, vec![item("t", "k")], long).await;
    assert!(again.is_err(), "still no majority");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "the breaker is open: {:?}",
        started.elapsed()
    );

    let other = client
        .read(&up, vec![item("t", "k")], TIMEOUT)
        .await
        .expect("shard 1 serves");
    assert_eq!(&other[0].value[..], b"v");

    cluster.boot(0).await;
    cluster.boot(1).await;
    // Once the shard has a leader again, it serves (a new client: this
    // one's breaker lets a probe through only every 250 ms).
    cluster.leader(0).await;
    let back = cluster
        .client()
        .read(&down, vec![item("t", "k")], TIMEOUT)
        .await
        .expect("shard 0 serves again");
    assert_eq!(&back[0].value[..], b"v");
    cluster.stop_all().await;
}
