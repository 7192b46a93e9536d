//! Helpers for tests that move slots and add shards: clients of one
//! replica's Admin and Kv services, partitions of a shard, one-item writes
//! and reads, and the cluster-wide views (who owns which slots, which
//! shards are listed).

use std::collections::BTreeSet;
use std::time::Duration;

use anatomy_runtime::tls::Identity;
use anatomy_runtime::tls::transport::endpoint;
use storage_api::v1 as pb;
use storage_api::v1::admin_client::AdminClient;
use storage_api::v1::kv_client::KvClient;
use tonic::transport::Channel;

use crate::Cluster;

/// The deadline of the helpers' calls.
pub const TIMEOUT: Duration = Duration::from_secs(10);

/// A channel to replica `i`, as `who`, accepting only that replica.
pub fn channel(cluster: &Cluster, who: Identity, i: usize) -> Channel {
    let node = cluster.node(i);
    cluster
        .transport(who)
        .lazy_channel(
            endpoint(&node.me.addr).expect("address"),
            Identity::storage(node.shard().id, node.me.id),
        )
        .expect("channel")
}

/// An Admin client of replica `i`, as the operator.
pub fn admin(cluster: &Cluster, i: usize) -> AdminClient<Channel> {
    AdminClient::new(channel(cluster, Identity::Operator, i))
}

/// A Kv client of shard `shard`'s leader, as business.
pub async fn kv_of_leader(cluster: &Cluster, shard: u32) -> KvClient<Channel> {
    let leader = cluster.leader(shard).await;
    KvClient::new(channel(cluster, Identity::Business, leader))
}

/// The first `n` partitions (`acme/0`, `acme/1`, ...) the map puts on `shard`.
pub fn partitions_of(cluster: &Cluster, shard: u32, n: usize) -> Vec<String> {
    (0..)
        .map(|i| format!("acme/{i}"))
        .filter(|p| cluster.map.shard_for(p).id == shard)
        .take(n)
        .collect()
}

/// A put of `value` under table `t`, key `k`.
pub fn put(value: &str) -> pb::Mutation {
    pb::Mutation {
        table: "t".into(),
        key: b"k".to_vec().into(),
        op: Some(pb::mutation::Op::Put(value.as_bytes().to_vec().into())),
        ..Default::default()
    }
}

/// Table `t`, key `k`.
pub fn item() -> pb::ItemKey {
    pb::ItemKey {
        table: "t".into(),
        key: b"k".to_vec().into(),
    }
}

/// Item `t`/`k` of `partition`, read on `shard` through `kv`.
pub async fn read_on(kv: &mut KvClient<Channel>, shard: u32, partition: &str) -> pb::Item {
    let answer = kv
        .read(pb::ReadRequest {
            route: Some(pb::Route {
                shard_id: shard,
                map_version: 0,
            }),
            partition: partition.into(),
            keys: vec![item()],
            ..Default::default()
        })
        .await
        .expect("read")
        .into_inner();
    answer.items.into_iter().next().expect("one item")
}

/// MoveSlots of `slots` to shard `to`, 2 per step, driven by replica 0.
pub async fn move_slots(
    cluster: &Cluster,
    slots: &BTreeSet<u32>,
    to: u32,
) -> Result<pb::MoveSlotsResponse, tonic::Status> {
    admin(cluster, 0)
        .move_slots(pb::MoveSlotsRequest {
            slots: slots.iter().copied().collect(),
            to_shard: to,
            slots_per_step: 2,
        })
        .await
        .map(tonic::Response::into_inner)
}

/// Which slots `shard` owns, as ClusterStatus reports.
pub async fn owned_by(cluster: &Cluster, shard: u32) -> BTreeSet<u32> {
    let status = admin(cluster, 0)
        .cluster_status(pb::ClusterStatusRequest {})
        .await
        .expect("cluster status")
        .into_inner();
    status.shards[shard as usize]
        .owned_slots
        .iter()
        .flat_map(|r| r.start..r.end)
        .collect()
}

/// The shards Kv/ListShards names, through replica `i`, as business.
pub async fn listed_shards(cluster: &Cluster, i: usize) -> Vec<pb::ShardInfo> {
    KvClient::new(channel(cluster, Identity::Business, i))
        .list_shards(pb::ListShardsRequest {})
        .await
        .expect("list shards")
        .into_inner()
        .shards
}
