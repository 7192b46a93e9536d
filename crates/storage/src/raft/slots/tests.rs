//! The slot table's unit tests.

use super::*;

fn table() -> SlotTable {
    SlotTable::owning_range(1, 8, 0, 4)
}

#[test]
fn a_range_table_owns_its_range_only() {
    let t = table();
    assert_eq!(t.owned_ranges(), vec![(0, 4)]);
    assert_eq!(t.state(3), SlotState::Owned);
    assert_eq!(t.state(4), SlotState::NotOwned);
    assert_eq!(t.state(99), SlotState::NotOwned);
}

#[test]
fn a_source_freezes_then_releases_and_drops_the_data() {
    let mut t = table();
    t.apply(&SlotCommand::Freeze {
        move_id: 7,
        slots: vec![1, 2],
    })
    .expect("freeze");
    assert_eq!(t.state(1), SlotState::Frozen(7));
    let effect = t
        .apply(&SlotCommand::Release {
            move_id: 7,
            map_version: 2,
            to_shard: 1,
        })
        .expect("release");
    assert_eq!(
        t.access_slot(1),
        Access::NotOwned {
            slot: 1,
            moved_to: Some((1, 2))
        }
    );
    assert_eq!(effect.drop_slots, vec![1, 2]);
    assert_eq!(t.owned_ranges(), vec![(0, 1), (3, 4)]);
    assert_eq!(t.map_version, 2);
    let again = t
        .apply(&SlotCommand::Release {
            move_id: 7,
            map_version: 2,
            to_shard: 1,
        })
        .expect("a repeated release");
    assert!(again.drop_slots.is_empty(), "a repeat changes nothing");
}

#[test]
fn a_destination_imports_then_activates() {
    let mut t = table();
    t.apply(&SlotCommand::Import {
        move_id: 3,
        slots: vec![5, 6],
    })
    .expect("import");
    assert_eq!(
        t.access_slot(5),
        Access::Moving {
            slot: 5,
            move_id: 3
        }
    );
    t.apply(&SlotCommand::Activate {
        move_id: 3,
        map_version: 4,
    })
    .expect("activate");
    assert_eq!(t.owned_ranges(), vec![(0, 4), (5, 7)]);
    assert_eq!(t.map_version, 4);
}

#[test]
fn refused_commands_change_nothing() {
    let mut t = table();
    let before = t.clone();
    let err = t
        .apply(&SlotCommand::Freeze {
            move_id: 1,
            slots: vec![2, 6],
        })
        .expect_err("slot 6 is not owned");
    assert!(err.0.contains("slot 6"), "{err}");
    assert_eq!(t, before, "slot 2 was not frozen either");
    assert!(
        t.apply(&SlotCommand::Import {
            move_id: 1,
            slots: vec![0],
        })
        .is_err(),
        "an owned slot cannot be imported"
    );
    assert!(
        t.apply(&SlotCommand::Ingest {
            move_id: 1,
            items: vec![],
        })
        .is_err(),
        "nothing is importing"
    );
    assert_eq!(t, before);
}

#[test]
fn undoing_a_move_restores_both_sides() {
    let mut source = table();
    let mut dest = SlotTable::owning_range(1, 8, 4, 8);
    dest.apply(&SlotCommand::Import {
        move_id: 9,
        slots: vec![0],
    })
    .expect("import");
    source
        .apply(&SlotCommand::Freeze {
            move_id: 9,
            slots: vec![0],
        })
        .expect("freeze");
    let dropped = dest
        .apply(&SlotCommand::Abandon { move_id: 9 })
        .expect("abandon");
    assert_eq!(dropped.drop_slots, vec![0]);
    source
        .apply(&SlotCommand::Unfreeze { move_id: 9 })
        .expect("unfreeze");
    assert_eq!(source, table());
    assert_eq!(dest, SlotTable::owning_range(1, 8, 4, 8));
}

#[test]
fn ranges_are_shown_compactly() {
    assert_eq!(show_ranges(&[(0, 100), (300, 341)]), "0..100, 300..341");
    assert_eq!(show_ranges(&[]), "none");
}

#[test]
fn a_shard_is_listed_once_and_never_changed() {
    let spec = |addr: &str| ShardSpec {
        id: 3,
        slot_start: 8,
        slot_end: 8,
        replicas: vec![storage_api::shard_map::ReplicaSpec {
            id: 1,
            addr: addr.into(),
        }],
    };
    let mut t = table();
    t.apply(&SlotCommand::AddShard { shard: spec("a:1") })
        .expect("listed");
    t.apply(&SlotCommand::AddShard { shard: spec("a:1") })
        .expect("the same shard again changes nothing");
    assert_eq!(t.added_shards, vec![spec("a:1")]);
    let err = t
        .apply(&SlotCommand::AddShard { shard: spec("b:1") })
        .expect_err("another shard under id 3");
    assert!(err.0.contains("already listed"), "{err}");
    assert_eq!(t.added_shards, vec![spec("a:1")]);
    assert_eq!(t.owned_ranges(), vec![(0, 4)], "ownership untouched");
}
