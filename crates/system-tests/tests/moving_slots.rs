//! Moving slots between running shards (`Admin/MoveSlots`): the data and
//! its versions arrive, the source refuses from then on, a write racing
//! the move is either refused or kept — never lost — and a move whose
//! driver died half way is finished or undone by the next one. Real gRPC
//! servers on loopback, real Raft, real files.

#![allow(clippy::expect_used)]

use std::collections::BTreeSet;
use std::time::Duration;

use anatomy_runtime::tls::Identity;
use anatomy_runtime::tls::transport::endpoint;
use storage_api::v1 as pb;
use storage_api::v1::admin_client::AdminClient;
use storage_api::v1::kv_client::KvClient;
use storage_api::wire_errors::{Fault, fault};
use system_tests::{Cluster, fast_tuning};
use tonic::transport::Channel;

const TIMEOUT: Duration = Duration::from_secs(10);

fn channel(cluster: &Cluster, who: Identity, i: usize) -> Channel {
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
fn admin(cluster: &Cluster, i: usize) -> AdminClient<Channel> {
    AdminClient::new(channel(cluster, Identity::Operator, i))
}

/// A Kv client of shard `shard`'s leader, as business.
async fn kv_of_leader(cluster: &Cluster, shard: u32) -> KvClient<Channel> {
    let leader = cluster.leader(shard).await;
    KvClient::new(channel(cluster, Identity::Business, leader))
}

fn partitions_of(cluster: &Cluster, shard: u32, n: usize) -> Vec<String> {
    (0..)
        .map(|i| format!("acme/{i}"))
        .filter(|p| cluster.map.shard_for(p).id == shard)
        .take(n)
        .collect()
}

fn put(value: &str) -> pb::Mutation {
    pb::Mutation {
        table: "t".into(),
        key: b"k".to_vec().into(),
        op: Some(pb::mutation::Op::Put(value.as_bytes().to_vec().into())),
        ..Default::default()
    }
}

fn item() -> pb::ItemKey {
    pb::ItemKey {
        table: "t".into(),
        key: b"k".to_vec().into(),
    }
}

async fn read_on(kv: &mut KvClient<Channel>, shard: u32, partition: &str) -> pb::Item {
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

async fn move_slots(
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

/// The map version of the step that moved `partition`'s slot.
fn refused_version(report: &pb::MoveSlotsResponse, partition: &str, cluster: &Cluster) -> u64 {
    let slot = cluster.map.slot(partition);
    let step = report.steps.iter().find(|s| s.slots.contains(&slot));
    step.map_or(0, |s| s.map_version)
}

async fn owned_by(cluster: &Cluster, shard: u32) -> BTreeSet<u32> {
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

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn moved_slots_keep_their_data_and_versions_and_the_source_refuses_them() {
    let mut cluster = Cluster::start(2, 3, fast_tuning()).await;
    cluster.leader(0).await;
    cluster.leader(1).await;
    let client = cluster.client();
    let moving = partitions_of(&cluster, 0, 6);
    let staying = partitions_of(&cluster, 0, 40)
        .into_iter()
        .find(|p| {
            moving
                .iter()
                .all(|m| cluster.map.slot(m) != cluster.map.slot(p))
        })
        .expect("a partition in another slot");
    let mut versions = Vec::new();
    for p in moving.iter().chain([&staying]) {
        let w = client
            .write(p, vec![], vec![put(p)], TIMEOUT)
            .await
            .expect("write");
        versions.push(w.revision);
    }
    let slots: BTreeSet<u32> = moving.iter().map(|p| cluster.map.slot(p)).collect();

    let report = move_slots(&cluster, &slots, 1).await.expect("moved");
    let copied: u64 = report.steps.iter().map(|s| s.items).sum();
    assert_eq!(copied, moving.len() as u64, "{report:?}");
    assert!(report.map_version > cluster.map.version, "{report:?}");
    assert!(
        report
            .steps
            .iter()
            .all(|s| s.from_shard == 0 && s.to_shard == 1)
    );

    // A client on the old map is refused by the source, which names the
    // new owner; the client follows and remembers the redirect.
    assert_eq!(client.shard_of(&moving[0]), 0);
    let followed = client
        .read(&moving[0], vec![item()], TIMEOUT)
        .await
        .expect("redirected");
    assert_eq!(followed[0].value, moving[0].as_bytes());
    assert_eq!(client.shard_of(&moving[0]), 1, "the redirect is remembered");
    let mut raw_0 = kv_of_leader(&cluster, 0).await;
    let refused = raw_0
        .read(pb::ReadRequest {
            route: Some(pb::Route {
                shard_id: 0,
                map_version: 1,
            }),
            partition: moving[1].clone(),
            keys: vec![item()],
            ..Default::default()
        })
        .await
        .expect_err("moved away");
    assert_eq!(
        fault(&refused),
        Fault::WrongShard {
            node_map_version: Some(refused_version(&report, &moving[1], &cluster)),
            owner: Some((cluster.map.slot(&moving[1]), 1)),
        },
        "{refused:?}"
    );
    // The old map's client still serves the partitions that stayed.
    let kept = client
        .read(&staying, vec![item()], TIMEOUT)
        .await
        .expect("staying");
    assert_eq!(kept[0].value, staying.as_bytes());

    // The new owner holds every item with the version it had.
    let mut on_1 = kv_of_leader(&cluster, 1).await;
    for (p, version) in moving.iter().zip(&versions) {
        let got = read_on(&mut on_1, 1, p).await;
        assert_eq!((got.value.as_ref(), got.version), (p.as_bytes(), *version));
    }
    // A conditional write on the version read before the move applies.
    let applied = on_1
        .write(pb::WriteRequest {
            route: Some(pb::Route {
                shard_id: 1,
                map_version: report.map_version,
            }),
            partition: moving[0].clone(),
            conditions: vec![pb::Condition {
                table: "t".into(),
                key: b"k".to_vec().into(),
                expected_version: versions[0],
                ..Default::default()
            }],
            mutations: vec![put("after")],
        })
        .await
        .expect("write")
        .into_inner();
    assert!(applied.applied);
    assert!(
        applied.revision > versions[..moving.len()].iter().copied().max().unwrap_or(0),
        "versions handed out later are above every copied one"
    );

    // The source dropped its copy; the status shows who owns what.
    let leader_0 = cluster.leader(0).await;
    let view = cluster.node(leader_0).engine_view().expect("view");
    for p in &moving {
        let key = storage::engine::keys::item_key("t", p, b"k");
        assert_eq!(view.get(&key).expect("get"), None, "{p} left shard 0");
    }
    drop(view);
    let status = admin(&cluster, 0)
        .cluster_status(pb::ClusterStatusRequest {})
        .await
        .expect("cluster status")
        .into_inner();
    assert_eq!(
        status.shards[0].keys, 1,
        "shard 0 counts only the item that stayed, not its slot table"
    );
    let owned_1 = owned_by(&cluster, 1).await;
    assert!(slots.is_subset(&owned_1));
    assert!(owned_by(&cluster, 0).await.is_disjoint(&slots));
    cluster.stop_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_write_racing_a_move_is_refused_or_kept_never_lost() {
    let mut cluster = Cluster::start(2, 3, fast_tuning()).await;
    cluster.leader(0).await;
    cluster.leader(1).await;
    let partition = partitions_of(&cluster, 0, 1).remove(0);
    let slot = cluster.map.slot(&partition);
    let mut on_0 = kv_of_leader(&cluster, 0).await;
    let (counter, mut written) = tokio::sync::watch::channel(0usize);
    let writer = tokio::spawn(async move {
        // Distinct keys, written until the source gives the slot away.
        let mut acknowledged = Vec::new();
        let mut moving_answers = 0;
        for n in 0..100_000u32 {
            let key = format!("k{n}");
            let answer = on_0
                .write(pb::WriteRequest {
                    route: Some(pb::Route {
                        shard_id: 0,
                        map_version: 1,
                    }),
                    partition: partition.clone(),
                    conditions: vec![],
                    mutations: vec![pb::Mutation {
                        table: "t".into(),
                        key: key.as_bytes().to_vec().into(),
                        op: Some(pb::mutation::Op::Put(b"v".to_vec().into())),
                        ..Default::default()
                    }],
                })
                .await;
            match answer {
                Ok(r) => {
                    acknowledged.push((key, r.into_inner().revision));
                    counter.send_modify(|n| *n += 1);
                }
                Err(s) => match fault(&s) {
                    Fault::SlotMoving { .. } => moving_answers += 1,
                    Fault::WrongShard { .. } => break,
                    other => panic!("unexpected answer {other:?}: {s:?}"),
                },
            }
        }
        (partition, acknowledged, moving_answers)
    });
    // Some writes land before the move starts.
    tokio::time::timeout(TIMEOUT, written.wait_for(|n| *n >= 50))
        .await
        .expect("the writer wrote nothing")
        .expect("the writer stopped early");
    move_slots(&cluster, &BTreeSet::from([slot]), 1)
        .await
        .expect("moved");
    let (partition, acknowledged, _moving_answers) = writer.await.expect("writer");
    assert!(!acknowledged.is_empty());
    let mut on_1 = kv_of_leader(&cluster, 1).await;
    let keys: Vec<pb::ItemKey> = acknowledged
        .iter()
        .map(|(k, _)| pb::ItemKey {
            table: "t".into(),
            key: k.as_bytes().to_vec().into(),
        })
        .collect();
    for (chunk, expected) in keys.chunks(500).zip(acknowledged.chunks(500)) {
        let items = on_1
            .read(pb::ReadRequest {
                route: Some(pb::Route {
                    shard_id: 1,
                    map_version: 0,
                }),
                partition: partition.clone(),
                keys: chunk.to_vec(),
                ..Default::default()
            })
            .await
            .expect("read")
            .into_inner()
            .items;
        for (got, (key, version)) in items.iter().zip(expected) {
            assert_eq!(
                got.version, *version,
                "acknowledged {key} arrived as written"
            );
        }
    }
    cluster.stop_all().await;
}

/// A ChangeSlots step sent as the move's driver would.
async fn step(cluster: &Cluster, shard: u32, move_id: u64, step: pb::change_slots_request::Step) {
    let leader = cluster.leader(shard).await;
    admin(cluster, leader)
        .change_slots(pb::ChangeSlotsRequest {
            shard_id: shard,
            move_id,
            step: Some(step),
        })
        .await
        .expect("step");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_move_whose_driver_died_is_finished_or_undone_by_the_next() {
    use pb::change_slots_request::Step;
    let mut cluster = Cluster::start(2, 1, fast_tuning()).await;
    cluster.leader(0).await;
    cluster.leader(1).await;
    let client = cluster.client();
    // Four partitions of shard 0 in four different slots, one per move.
    let mut seen = BTreeSet::new();
    let ps: Vec<String> = partitions_of(&cluster, 0, 200)
        .into_iter()
        .filter(|p| seen.insert(cluster.map.slot(p)))
        .take(4)
        .collect();
    let [a, b, c, d] = <[String; 4]>::try_from(ps).expect("four slots");
    for p in [&a, &b, &c, &d] {
        client
            .write(p, vec![], vec![put(p)], TIMEOUT)
            .await
            .expect("write");
    }
    let second_item = pb::Mutation {
        key: b"k2".to_vec().into(),
        ..put("second")
    };
    client
        .write(&d, vec![], vec![second_item], TIMEOUT)
        .await
        .expect("write");
    let slot = |p: &str| cluster.map.slot(p);
    let list = |s: u32| pb::SlotList { slots: vec![s] };
    let leader_0 = cluster.leader(0).await;
    let export = |move_id: u64| {
        let mut admin = admin(&cluster, leader_0);
        async move {
            admin
                .export_slots(pb::ExportSlotsRequest {
                    shard_id: 0,
                    move_id,
                    start_after: Vec::new().into(),
                })
                .await
                .expect("export")
                .into_inner()
        }
    };

    // The driver is killed at each step of a move, one move per step:
    // move 10 died before the freeze (the destination imports), move 11
    // after the freeze, move 12 after the activation, move 13 mid-copy
    // (one of its slot's two items ingested).
    step(&cluster, 1, 10, Step::Import(list(slot(&c)))).await;
    step(&cluster, 1, 11, Step::Import(list(slot(&a)))).await;
    step(&cluster, 0, 11, Step::Freeze(list(slot(&a)))).await;
    step(&cluster, 1, 12, Step::Import(list(slot(&b)))).await;
    step(&cluster, 0, 12, Step::Freeze(list(slot(&b)))).await;
    let page = export(12).await;
    assert_eq!(page.items.len(), 1);
    step(&cluster, 1, 12, Step::Ingest(page)).await;
    step(&cluster, 1, 12, Step::Activate(2)).await;
    step(&cluster, 1, 13, Step::Import(list(slot(&d)))).await;
    step(&cluster, 0, 13, Step::Freeze(list(slot(&d)))).await;
    let mut page = export(13).await;
    assert_eq!(page.items.len(), 2);
    page.items.truncate(1);
    step(&cluster, 1, 13, Step::Ingest(page)).await;

    // The next move (of a fifth slot) settles all four first.
    let other = (0..cluster.map.slots)
        .find(|s| ![&a, &b, &c, &d].iter().any(|p| slot(p) == *s) && cluster.map.shards[0].owns(*s))
        .expect("a fifth slot");
    let report = move_slots(&cluster, &BTreeSet::from([other]), 1)
        .await
        .expect("moved");
    assert_eq!(report.recovered.len(), 4, "{report:?}");
    assert!(report.recovered[0].contains("abandoned"), "{report:?}");
    assert!(report.recovered[1].contains("undone"), "{report:?}");
    assert!(report.recovered[2].contains("released"), "{report:?}");
    assert!(report.recovered[3].contains("undone"), "{report:?}");

    // a, c and d are served by shard 0 again, with all their items; b by
    // shard 1, which kept nothing of the undone copies; nothing is moving.
    for p in [&a, &c, &d] {
        let got = client.read(p, vec![item()], TIMEOUT).await.expect("read");
        assert_eq!(got[0].value, p.as_bytes());
    }
    let second = pb::ItemKey {
        key: b"k2".to_vec().into(),
        ..item()
    };
    let got = client
        .read(&d, vec![second], TIMEOUT)
        .await
        .expect("d's k2");
    assert_eq!(got[0].value, b"second".as_slice());
    let mut on_1 = kv_of_leader(&cluster, 1).await;
    assert_eq!(read_on(&mut on_1, 1, &b).await.value, b.as_bytes());
    let status = admin(&cluster, 0)
        .cluster_status(pb::ClusterStatusRequest {})
        .await
        .expect("status")
        .into_inner();
    assert!(
        status.shards.iter().all(|s| s.moving.is_empty()),
        "{status:?}"
    );
    assert_eq!(
        status.shards[1].keys, 1,
        "shard 1 holds b only (the fifth slot was empty), no partial copy: {status:?}"
    );
    cluster.stop_all().await;
}

/// The shards Kv/ListShards names, through replica `i`, as business.
async fn listed_shards(cluster: &Cluster, i: usize) -> Vec<pb::ShardInfo> {
    KvClient::new(channel(cluster, Identity::Business, i))
        .list_shards(pb::ListShardsRequest {})
        .await
        .expect("list shards")
        .into_inner()
        .shards
}

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
    // The new shard asks shard 0 to list it once it has a leader; shard 1's
    // replica, which started on the old map, learns it from shard 0.
    let joined = tokio::time::timeout(Duration::from_secs(20), async {
        while listed_shards(&cluster, 1).await.len() < 3 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    assert!(joined.is_ok(), "shard {new} was not listed within 20 s");
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
