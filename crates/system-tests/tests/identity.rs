//! Service identity on a real storage cluster (mutual TLS on loopback,
//! real Raft): the authorization matrix of Kv, Raft and Admin, and forged
//! Raft messages from identities that are not the shard's peers.

#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::time::Duration;

use anatomy_runtime::tls::transport::endpoint;
use anatomy_runtime::tls::{Identity, Transport};
use openraft::raft::{AppendEntriesRequest, VoteRequest};
use storage::raft::{TypeConfig, Vote};
use storage_api::v1 as pb;
use storage_api::v1::admin_client::AdminClient;
use storage_api::v1::kv_client::KvClient;
use storage_api::v1::raft_client::RaftClient;
use system_tests::{Cluster, fast_tuning};
use tonic::Code;
use tonic::transport::Channel;

fn channel(transport: &Transport, addr: &str, server: Identity) -> Channel {
    transport
        .lazy_channel(
            endpoint(addr).unwrap().timeout(Duration::from_secs(5)),
            server,
        )
        .unwrap()
}

/// A shard-0 follower: (index, address, identity).
async fn follower(cluster: &Cluster) -> (usize, String, Identity) {
    let leader = cluster.leader(0).await;
    let i = (0..3).find(|i| *i != leader).unwrap();
    let replica = cluster.node(i).me.clone();
    (i, replica.addr, Identity::storage(0, replica.id))
}

fn raft_request(target: u64, payload: Vec<u8>) -> pb::RaftRequest {
    pb::RaftRequest {
        shard_id: 0,
        target_node: target,
        map_version: 1,
        payload: payload.into(),
    }
}

fn forged_append(term: u64) -> Vec<u8> {
    let rpc = AppendEntriesRequest::<TypeConfig> {
        vote: Vote::new_committed(term, 3),
        prev_log_id: None,
        entries: vec![],
        leader_commit: None,
    };
    postcard::to_stdvec(&rpc).unwrap()
}

fn forged_vote(term: u64) -> Vec<u8> {
    postcard::to_stdvec(&VoteRequest::<u64>::new(Vote::new(term, 3), None)).unwrap()
}

fn term_and_log(cluster: &Cluster, i: usize) -> (u64, Option<u64>) {
    let m = cluster.node(i).raft.metrics().borrow().clone();
    (m.current_term, m.last_log_index)
}

#[tokio::test]
async fn forged_raft_messages_from_non_peers_change_nothing() {
    let mut cluster = Cluster::start(2, 3, fast_tuning()).await;
    let (i, addr, me) = follower(&cluster).await;
    let before = term_and_log(&cluster, i);
    let high = before.0 + 100;
    for forger in [
        Identity::storage(1, 1),
        Identity::Operator,
        Identity::Business,
        Identity::Gateway,
    ] {
        let mut raft = RaftClient::new(channel(&cluster.transport(forger), &addr, me));
        let target = me_id(me);
        let append = raft
            .append_entries(raft_request(target, forged_append(high)))
            .await
            .unwrap_err();
        assert_eq!(
            append.code(),
            Code::PermissionDenied,
            "{forger}: {append:?}"
        );
        assert!(append.message().contains(&format!(
            "{forger} may not call anatomy.storage.v1.Raft/AppendEntries"
        )));
        let vote = raft
            .vote(raft_request(target, forged_vote(high)))
            .await
            .unwrap_err();
        assert_eq!(vote.code(), Code::PermissionDenied, "{forger}: {vote:?}");
    }
    assert_eq!(term_and_log(&cluster, i), before, "term and log unchanged");

    // The control: the same AppendEntries from a replica of the same
    // shard is taken, and moves the follower's term — what any forger
    // could do before. (That is why only peers may.)
    let peer = Identity::storage(0, if me_id(me) == 1 { 2 } else { 1 });
    let mut raft = RaftClient::new(channel(&cluster.transport(peer), &addr, me));
    raft.append_entries(raft_request(me_id(me), forged_append(high)))
        .await
        .expect("a peer may speak Raft");
    cluster
        .node(i)
        .raft
        .wait(Some(Duration::from_secs(5)))
        .metrics(|m| m.current_term == high, "the peer's term taken")
        .await
        .expect("a message from a peer moves the term");
    cluster.stop_all().await;
}

fn me_id(identity: Identity) -> u64 {
    match identity {
        Identity::Storage { replica, .. } => replica,
        other => panic!("{other} is not a replica"),
    }
}

#[tokio::test]
async fn the_storage_matrix() {
    let mut cluster = Cluster::start(2, 1, fast_tuning()).await;
    cluster.leader(0).await;
    cluster.leader(1).await;
    let addr = cluster.node(0).me.addr.clone();
    let server = Identity::storage(0, 1);
    let scan = || pb::ScanRequest {
        route: Some(pb::Route {
            shard_id: 0,
            map_version: 1,
        }),
        scope: Some(pb::scan_request::Scope::PartitionPrefix(String::new())),
        table: "t".into(),
        limit: 1,
        ..Default::default()
    };
    for (who, kv, admin, raft) in [
        (
            Identity::Business,
            Code::Ok,
            Code::PermissionDenied,
            Code::PermissionDenied,
        ),
        (
            Identity::Operator,
            Code::Ok,
            Code::Ok,
            Code::PermissionDenied,
        ),
        (
            Identity::Gateway,
            Code::PermissionDenied,
            Code::PermissionDenied,
            Code::PermissionDenied,
        ),
        (
            Identity::storage(1, 1),
            Code::PermissionDenied,
            Code::Ok,
            Code::PermissionDenied,
        ),
    ] {
        let channel = channel(&cluster.transport(who), &addr, server);
        let code = |r: Result<(), tonic::Status>| r.map_or_else(|s| s.code(), |()| Code::Ok);
        let got_kv = code(KvClient::new(channel.clone()).scan(scan()).await.map(drop));
        let got_admin = code(
            AdminClient::new(channel.clone())
                .node_status(pb::NodeStatusRequest {})
                .await
                .map(drop),
        );
        // An empty payload: a peer would get INVALID_ARGUMENT (undecodable);
        // everyone else never gets that far.
        let got_raft = code(
            RaftClient::new(channel)
                .vote(raft_request(1, vec![]))
                .await
                .map(drop),
        );
        assert_eq!((got_kv, got_admin, got_raft), (kv, admin, raft), "{who}");
    }
    cluster.stop_all().await;
}
