//! Files that survive crashes and corruption: each case is injected on a
//! stopped replica of a real 3-replica group (real gRPC, real Raft, real
//! files), which is then restarted; the outcome is checked against its
//! peers, and the group must never serve damaged data.

#![allow(clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use storage::damage::OnDamage;
use storage::engine::KeyValue;
use storage::node::RaftTuning;
use storage_api::v1 as pb;
use system_tests::{Cluster, fast_tuning};

const TIMEOUT: Duration = Duration::from_secs(10);
const KEYS: u32 = 120;

fn value(n: u32) -> String {
    format!("value-{n}-{}", "x".repeat(200))
}

async fn write_keys(cluster: &Cluster, range: std::ops::Range<u32>) {
    let client = cluster.client();
    for n in range {
        let key = format!("k{n}");
        let response = client
            .write(
                "acme/p",
                vec![pb::Condition {
                    partition: String::new(),
                    table: "t".into(),
                    key: key.as_bytes().to_vec().into(),
                    expected_version: 0,
                }],
                vec![pb::Mutation {
                    partition: String::new(),
                    table: "t".into(),
                    key: key.as_bytes().to_vec().into(),
                    op: Some(pb::mutation::Op::Put(value(n).into_bytes().into())),
                }],
                TIMEOUT,
            )
            .await
            .expect("write");
        assert!(response.applied, "write {key} applied");
    }
}

/// Reads every key through the group and checks each value.
async fn assert_group_serves(cluster: &Cluster, keys: u32) {
    let items: Vec<pb::ItemKey> = (0..keys)
        .map(|n| pb::ItemKey {
            table: "t".into(),
            key: format!("k{n}").into_bytes().into(),
        })
        .collect();
    let read = cluster
        .client()
        .read("acme/p", items, TIMEOUT)
        .await
        .expect("read");
    for (n, item) in read.iter().enumerate() {
        assert_eq!(item.value[..], *value(n as u32).as_bytes(), "k{n}");
    }
}

fn contents(cluster: &Cluster, i: usize) -> Vec<KeyValue> {
    let view = cluster.node(i).engine_view().expect("view");
    view.iter_all()
        .expect("iter")
        .collect::<Result<_, _>>()
        .expect("items")
}

/// Waits until replica `i` holds exactly what the leader holds.
async fn assert_same_as_leader(cluster: &Cluster, i: usize) {
    let leader = cluster.leader(0).await;
    // The leader's whole log, not what it has applied so far: a follower
    // learns the commit index with the next AppendEntries or heartbeat, so
    // replica `i` may have applied entries the leader has not yet, or the
    // other way round; once both have applied the whole log they agree.
    let index = cluster.last_log(leader);
    cluster.wait_applied(leader, index).await;
    cluster.wait_applied(i, index).await;
    assert_eq!(contents(cluster, i), contents(cluster, leader));
}

/// A cluster with `KEYS` keys written and a stopped follower; returns it
/// and the follower's index.
async fn with_stopped_follower(tuning: RaftTuning) -> (Cluster, usize) {
    let mut cluster = Cluster::start(1, 3, tuning).await;
    let leader = cluster.leader(0).await;
    write_keys(&cluster, 0..KEYS).await;
    let follower = (0..3).find(|i| *i != leader).expect("a follower");
    let index = cluster.applied(leader);
    cluster.wait_applied(follower, index).await;
    cluster.stop(follower).await;
    (cluster, follower)
}

/// The files in `dir` whose names end with `suffix`, sorted.
fn files(dir: &Path, suffix: &str) -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("ls")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.to_string_lossy().ends_with(suffix))
        .collect();
    found.sort();
    found
}

/// The names in `dir` that contain `part`.
fn names_with(dir: &Path, part: &str) -> Vec<String> {
    std::fs::read_dir(dir)
        .expect("ls")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(part))
        .collect()
}

/// Inverts up to 4 KiB in the middle of `path` (as the issue measured).
fn flip_middle(path: &Path) {
    let mut bytes = std::fs::read(path).expect("read");
    let len = bytes.len().min(4096).min(bytes.len() / 2).max(1);
    let start = bytes.len() / 2 - len / 2;
    for b in &mut bytes[start..start + len] {
        *b ^= 0xff;
    }
    std::fs::write(path, bytes).expect("damage");
}

/// Flips a byte inside every stored copy of every value in `path` (redb
/// copies pages on write, so older copies may still be on disk): the live
/// data pages are then damaged for sure, wherever redb placed them.
fn flip_values(path: &Path) {
    let mut bytes = std::fs::read(path).expect("read");
    let starts: Vec<usize> = bytes
        .windows(6)
        .enumerate()
        .filter(|(_, w)| w == b"value-")
        .map(|(i, _)| i)
        .collect();
    assert!(
        !starts.is_empty(),
        "values are stored in {}",
        path.display()
    );
    for i in starts {
        bytes[i + 20] ^= 0xff;
    }
    std::fs::write(path, bytes).expect("damage");
}

fn last_wal_chunk(cluster: &Cluster, i: usize) -> PathBuf {
    let chunks = files(&cluster.data_dir(i).join("raft-wal"), ".wal");
    chunks.last().cloned().expect("a WAL chunk")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_torn_wal_tail_is_cut_and_the_replica_catches_up() {
    let (mut cluster, follower) = with_stopped_follower(fast_tuning()).await;
    let chunk = last_wal_chunk(&cluster, follower);
    let whole = std::fs::metadata(&chunk).expect("stat").len();
    // A crash in the middle of writing an Append record (the nemesis's
    // torn-log fault appends the same).
    let mut bytes = std::fs::read(&chunk).expect("read");
    bytes.extend_from_slice(&nemesis::inject::torn_record());
    std::fs::write(&chunk, bytes).expect("tear");

    write_keys(&cluster, KEYS..KEYS + 10).await;
    cluster.boot(follower).await;
    assert!(
        std::fs::metadata(&chunk).expect("stat").len() >= whole,
        "the whole records were kept"
    );
    assert_same_as_leader(&cluster, follower).await;
    assert!(
        names_with(cluster.dir.path(), "damaged").is_empty(),
        "a torn tail is not damage: nothing was moved aside"
    );
    assert_group_serves(&cluster, KEYS + 10).await;
    cluster.stop_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_damaged_wal_record_rebuilds_the_replica_from_its_peers() {
    let (mut cluster, follower) = with_stopped_follower(fast_tuning()).await;
    flip_middle(&last_wal_chunk(&cluster, follower));

    cluster.boot(follower).await;
    let data_dir = cluster.data_dir(follower);
    let name = data_dir
        .file_name()
        .expect("name")
        .to_string_lossy()
        .into_owned();
    let aside = names_with(cluster.dir.path(), &format!("{name}.damaged-"));
    assert_eq!(aside.len(), 1, "the damaged data directory was moved aside");
    assert!(cluster.node(follower).gate.is_rebuilding());
    assert_same_as_leader(&cluster, follower).await;

    // Once caught up it takes part in elections again: stop the leader,
    // and the two left (the rebuilt one among them) elect a new one.
    write_keys(&cluster, KEYS..KEYS + 5).await;
    let leader = cluster.leader(0).await;
    cluster.stop(leader).await;
    let new_leader = cluster.leader(0).await;
    assert_ne!(new_leader, leader);
    assert_group_serves(&cluster, KEYS + 5).await;
    // The other survivor learns the last commit index with the next
    // AppendEntries or heartbeat: wait for it, then compare.
    let other = (0..3)
        .find(|i| *i != leader && *i != new_leader)
        .expect("the other survivor");
    assert_same_as_leader(&cluster, other).await;
    // The new leader's first entry is of a term past the barrier: the
    // rebuild is over and the marker gone.
    let gate = cluster.node(follower).gate.clone();
    tokio::time::timeout(TIMEOUT, gate.whole())
        .await
        .expect("the rebuild ends");
    assert!(!data_dir.join("REBUILDING").exists());
    cluster.stop_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn with_on_damage_refuse_a_damaged_wal_stops_the_replica_naming_the_file() {
    let (mut cluster, follower) = with_stopped_follower(fast_tuning()).await;
    flip_middle(&last_wal_chunk(&cluster, follower));
    cluster.on_damage = OnDamage::Refuse;

    let error = cluster
        .try_boot(follower)
        .await
        .expect_err("refuses to start")
        .to_string();
    let wal = cluster.data_dir(follower).join("raft-wal");
    assert!(error.contains(&wal.display().to_string()), "{error}");
    assert!(error.contains("--on-damage rebuild"), "{error}");
    assert!(!error.contains('\n'), "one line: {error}");
    assert!(
        names_with(cluster.dir.path(), "damaged").is_empty(),
        "nothing moved"
    );
    // The other two still serve everything.
    assert_group_serves(&cluster, KEYS).await;
    cluster.stop_all().await;
}

fn compacting() -> RaftTuning {
    let mut tuning = fast_tuning();
    tuning.snapshot_every = 20;
    tuning.keep_logs = 5;
    tuning
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_damaged_snapshot_is_moved_aside_and_built_again() {
    let (mut cluster, follower) = with_stopped_follower(compacting()).await;
    let dir = cluster.data_dir(follower).join("snapshots");
    let snapshot = files(&dir, ".snap").pop().expect("a snapshot");
    flip_middle(&snapshot);

    cluster.boot(follower).await;
    let aside = names_with(&dir, ".damaged-");
    assert_eq!(aside.len(), 1, "moved aside: {aside:?}");
    let fresh = files(&dir, ".snap");
    assert_eq!(fresh.len(), 1, "a new snapshot was built");
    storage::raft::snapshot_file::verify(&fresh[0]).expect("the new snapshot is intact");
    assert_same_as_leader(&cluster, follower).await;
    assert_group_serves(&cluster, KEYS).await;
    cluster.stop_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_damaged_state_machine_is_rebuilt_from_the_snapshot_and_the_log() {
    let (mut cluster, follower) = with_stopped_follower(compacting()).await;
    let state = cluster.data_dir(follower).join("state.redb");
    flip_values(&state);

    cluster.boot(follower).await;
    let aside = names_with(&cluster.data_dir(follower), "state.redb.damaged-");
    assert_eq!(aside.len(), 1, "moved aside: {aside:?}");
    assert_same_as_leader(&cluster, follower).await;
    assert_group_serves(&cluster, KEYS).await;
    cluster.stop_all().await;
}
