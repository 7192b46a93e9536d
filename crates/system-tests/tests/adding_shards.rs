//! Adding a shard to a running cluster (`Admin/AddShard`, a shard started
//! owning nothing joins by itself) and what the ledger does when a slot
//! moves under a change it planned. Real gRPC servers on loopback, real
//! Raft, real files.

#![allow(clippy::expect_used)]

use std::collections::BTreeSet;
use std::time::Duration;

use storage_api::v1 as pb;
use system_tests::slots::{
    TIMEOUT, admin, item, listed_shards, move_slots, owned_by, partitions_of, put,
};
use system_tests::{Cluster, fast_tuning};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_shard_added_to_a_running_cluster_joins_by_itself_and_takes_slots() {
    let mut cluster = Cluster::start(2, 1, fast_tuning()).await;
    cluster.leader(0).await;
    cluster.leader(1).await;
    // A client started before the shard existed, on the two-shard map.
    let old_client = cluster.client();
    let moving = partitions_of(&cluster, 0, 3);
    for p in &moving {
        old_client
            .write(p, vec![], vec![put(p)], TIMEOUT)
            .await
            .expect("write");
    }

    let new = cluster.add_shard().await;
    let new_node = cluster.index(new, 1);
    // The new shard asks shard 0 to list it once it has a leader (shard
    // 0's table lists it when that is applied); shard 1's replica, which
    // started on the old map, learns it from shard 0.
    let mut zero = cluster.node(0).fence.slots.subscribe();
    let joined = tokio::time::timeout(
        Duration::from_secs(20),
        zero.wait_for(|t| t.added_shards.iter().any(|s| s.id == new)),
    )
    .await;
    assert!(
        joined.is_ok_and(|r| r.is_ok()),
        "shard {new} was not listed within 20 s"
    );
    assert_eq!(listed_shards(&cluster, 1).await.len(), 3);
    let listed = listed_shards(&cluster, 0).await;
    let info = listed[new as usize].clone();
    assert_eq!(info.replicas[0].addr, cluster.node(new_node).me.addr);

    // AddShard is idempotent, and refuses a different shard under a listed
    // id or a gap in the ids.
    let mut operator = admin(&cluster, 1);
    let again = operator
        .add_shard(pb::AddShardRequest {
            shard: Some(info.clone()),
        })
        .await
        .expect("the same shard again");
    assert_eq!(again.into_inner().shards.len(), 3);
    let mut other = info.clone();
    other.replicas[0].addr = "127.0.0.1:1".into();
    let err = operator
        .add_shard(pb::AddShardRequest { shard: Some(other) })
        .await
        .expect_err("another shard under a listed id");
    assert_eq!(err.code(), tonic::Code::FailedPrecondition, "{err:?}");
    let mut gap = info.clone();
    gap.id = 7;
    let err = operator
        .add_shard(pb::AddShardRequest { shard: Some(gap) })
        .await
        .expect_err("a gap in the ids");
    assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err:?}");

    // Slots move to it (driven by shard 1's replica, whose map file has no
    // shard 2); the old client follows the redirect to a shard its map
    // does not name, and from then on knows the shard.
    let slots: BTreeSet<u32> = moving.iter().map(|p| cluster.map.slot(p)).collect();
    let report = admin(&cluster, 1)
        .move_slots(pb::MoveSlotsRequest {
            slots: slots.iter().copied().collect(),
            to_shard: new,
            slots_per_step: 2,
        })
        .await
        .expect("moved to the new shard")
        .into_inner();
    assert_eq!(report.steps.iter().map(|s| s.items).sum::<u64>(), 3);
    assert_eq!(owned_by(&cluster, new).await, slots);
    for p in &moving {
        let got = old_client
            .read(p, vec![item()], TIMEOUT)
            .await
            .expect("read through the redirect");
        assert_eq!(got[0].value, p.as_bytes());
        assert_eq!(old_client.shard_of(p), new);
    }
    assert!(
        old_client.shard_ids().contains(&new),
        "{:?}",
        old_client.shard_ids()
    );
    cluster.stop_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_change_planned_on_one_shard_is_a_conflict_when_a_slot_moved_away_meanwhile() {
    use business::adapters::storage::StorageStore;
    use business::app::{Change, Commit, Record, RecordKey, Store, TimeBudget};
    use business::domain::{Account, AccountId, AccountKey, TenantId};
    let mut cluster = Cluster::start(2, 1, fast_tuning()).await;
    cluster.leader(0).await;
    cluster.leader(1).await;
    let key = |account: &str| AccountKey {
        tenant: TenantId::parse("acme").expect("tenant"),
        account: AccountId::parse(account).expect("account"),
    };
    // Two accounts on shard 0 in different slots: one change may hold both.
    let on_0: Vec<String> = (0..200)
        .map(|i| format!("acct{i}"))
        .filter(|a| cluster.map.shard_for(&key(a).partition()).id == 0)
        .collect();
    let slot = |a: &str| cluster.map.slot(&key(a).partition());
    let (a, b) = (
        on_0[0].clone(),
        on_0.iter().find(|b| slot(b) != slot(&on_0[0])).cloned(),
    );
    let b = b.expect("another slot");
    let store = StorageStore::new(cluster.client());
    assert!(store.colocated(&key(&a), &key(&b)));
    let open_both = || {
        let now = std::time::SystemTime::now();
        let open = |name: &str| {
            let id = AccountId::parse(name).expect("account");
            Record::Account(Account::open(id, now))
        };
        Change::default()
            .if_version(RecordKey::Account(key(&a)), 0)
            .if_version(RecordKey::Account(key(&b)), 0)
            .put(RecordKey::Account(key(&a)), open(&a))
            .put(RecordKey::Account(key(&b)), open(&b))
    };

    // b's slot moves to shard 1 after the store was told both share a
    // shard, before the change is written: shard 0 refuses the whole
    // batch, and the store answers a conflict (read again, plan anew),
    // not a failure.
    move_slots(&cluster, &BTreeSet::from([slot(&b)]), 1)
        .await
        .expect("moved");
    let budget = || TimeBudget::after(TIMEOUT);
    let first = store
        .commit(open_both(), budget())
        .await
        .expect("no failure");
    assert_eq!(first, Commit::Conflict);
    let read = store
        .read(vec![RecordKey::Account(key(&a))], budget())
        .await
        .expect("read a");
    assert!(
        read[0].is_none(),
        "nothing of the refused batch was written"
    );
    // Planned anew, the store knows the accounts are apart now.
    assert!(!store.colocated(&key(&a), &key(&b)));
    assert_eq!(
        store
            .commit(open_both(), budget())
            .await
            .expect("no failure"),
        Commit::Conflict,
        "a change across shards is never sent as one"
    );
    cluster.stop_all().await;
}
