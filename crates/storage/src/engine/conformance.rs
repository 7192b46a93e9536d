//! The one test suite every engine passes.

use std::collections::BTreeMap;
use std::ops::Bound;

use super::keys::{item_key, prefix_range, table_prefix};
use super::{ChangeSet, Engine, Meta, ScanLimit, ScanRange, Stored, item_bytes};

fn stored(version: u64, value: &str) -> Option<Stored> {
    Some(Stored {
        version,
        value: value.as_bytes().to_vec(),
    })
}

fn meta(revision: u64) -> Meta {
    Meta {
        revision,
        ..Meta::default()
    }
}

/// Writes two items of partition `p` (and, with `also_delete`, deletes one).
pub fn write_some(engine: &dyn Engine, also_delete: bool) {
    let mut writes = BTreeMap::new();
    writes.insert(item_key("t", "p", b"a"), stored(1, "one"));
    writes.insert(item_key("t", "p", b"b"), stored(1, "two"));
    if also_delete {
        writes.insert(item_key("t", "p", b"zz"), None);
    }
    engine
        .commit(ChangeSet {
            writes,
            meta: meta(1),
            durable: false,
        })
        .expect("commit");
}

/// Checks what `write_some` wrote.
pub fn assert_some_written(engine: &dyn Engine) {
    let view = engine.read().expect("read");
    assert_eq!(view.meta().expect("meta"), meta(1));
    assert_eq!(
        view.get(&item_key("t", "p", b"a")).expect("get"),
        stored(1, "one")
    );
    assert_eq!(view.get(&item_key("t", "p", b"c")).expect("get"), None);
}

/// Runs every case against fresh engines from `make`.
pub fn run_all<E: Engine>(make: impl Fn() -> E) {
    empty_engine_has_default_meta(&make());
    commit_then_read(&make());
    delete_removes(&make());
    views_are_isolated_from_later_commits(&make());
    scans_ranges_in_both_directions(&make());
    scans_respect_limit_and_filter(&make());
    replace_all_swaps_everything(&make());
}

fn empty_engine_has_default_meta(engine: &dyn Engine) {
    let view = engine.read().expect("read");
    assert_eq!(view.meta().expect("meta"), Meta::default());
    assert_eq!(view.iter_all().expect("iter").count(), 0);
}

fn commit_then_read(engine: &dyn Engine) {
    write_some(engine, true);
    assert_some_written(engine);
}

fn delete_removes(engine: &dyn Engine) {
    write_some(engine, false);
    let mut writes = BTreeMap::new();
    writes.insert(item_key("t", "p", b"a"), None);
    engine
        .commit(ChangeSet {
            writes,
            meta: meta(2),
            durable: true,
        })
        .expect("commit");
    let view = engine.read().expect("read");
    assert_eq!(view.get(&item_key("t", "p", b"a")).expect("get"), None);
    assert_eq!(view.iter_all().expect("iter").count(), 1);
    assert_eq!(view.len().expect("len"), 1);
}

fn views_are_isolated_from_later_commits(engine: &dyn Engine) {
    write_some(engine, false);
    let before = engine.read().expect("read");
    let mut writes = BTreeMap::new();
    writes.insert(item_key("t", "p", b"a"), stored(2, "changed"));
    engine
        .commit(ChangeSet {
            writes,
            meta: meta(2),
            durable: false,
        })
        .expect("commit");
    assert_eq!(
        before.get(&item_key("t", "p", b"a")).expect("get"),
        stored(1, "one")
    );
    assert_eq!(before.meta().expect("meta").revision, 1);
    let after = engine.read().expect("read");
    assert_eq!(
        after.get(&item_key("t", "p", b"a")).expect("get"),
        stored(2, "changed")
    );
}

fn fill(engine: &dyn Engine) {
    let mut writes = BTreeMap::new();
    for (i, partition) in ["acme/a", "acme/b", "acme/c", "globex/a"]
        .iter()
        .enumerate()
    {
        writes.insert(
            item_key("account", partition, b""),
            stored(i as u64 + 1, partition),
        );
        for seq in 0u8..3 {
            writes.insert(item_key("entry", partition, &[seq]), stored(1, "e"));
        }
    }
    engine
        .commit(ChangeSet {
            writes,
            meta: meta(4),
            durable: false,
        })
        .expect("commit");
}

fn partitions(items: &[(Vec<u8>, Stored)]) -> Vec<String> {
    items
        .iter()
        .map(|(_, v)| String::from_utf8_lossy(&v.value).into_owned())
        .collect()
}

fn scans_ranges_in_both_directions(engine: &dyn Engine) {
    fill(engine);
    let view = engine.read().expect("read");
    let all = |_: &[u8]| true;
    let forward = prefix_range(table_prefix("account", "acme/"), None, false);
    let items = view
        .scan(&forward, ScanLimit::items(10), &all)
        .expect("scan");
    assert_eq!(partitions(&items), ["acme/a", "acme/b", "acme/c"]);

    let reverse = prefix_range(table_prefix("account", "acme/"), None, true);
    let items = view
        .scan(&reverse, ScanLimit::items(10), &all)
        .expect("scan");
    assert_eq!(partitions(&items), ["acme/c", "acme/b", "acme/a"]);

    let after_a = Some(item_key("account", "acme/a", b""));
    let resumed = prefix_range(table_prefix("account", "acme/"), after_a, false);
    let items = view
        .scan(&resumed, ScanLimit::items(10), &all)
        .expect("scan");
    assert_eq!(partitions(&items), ["acme/b", "acme/c"]);

    let before_c = Some(item_key("account", "acme/c", b""));
    let resumed = prefix_range(table_prefix("account", "acme/"), before_c, true);
    let items = view
        .scan(&resumed, ScanLimit::items(10), &all)
        .expect("scan");
    assert_eq!(partitions(&items), ["acme/b", "acme/a"]);
}

fn scans_respect_limit_and_filter(engine: &dyn Engine) {
    fill(engine);
    let view = engine.read().expect("read");
    let entries = ScanRange {
        start: Bound::Included(item_key("entry", "acme/b", b"")),
        end: Bound::Unbounded,
        reverse: false,
    };
    let items = view
        .scan(&entries, ScanLimit::items(2), &|_| true)
        .expect("scan");
    assert_eq!(items.len(), 2);
    assert_eq!(items[0].0, item_key("entry", "acme/b", &[0]));
    let only_seq_2 = |k: &[u8]| k.last() == Some(&2);
    let items = view
        .scan(&entries, ScanLimit::items(10), &only_seq_2)
        .expect("scan");
    assert_eq!(
        items.len(),
        3,
        "acme/b, acme/c and globex/a each have seq 2"
    );
    // A byte bound stops the scan at the item that reaches it.
    let first = item_bytes(
        &view
            .scan(&entries, ScanLimit::items(1), &|_| true)
            .expect("scan")[0],
    );
    let bounded = ScanLimit {
        items: 10,
        bytes: first + 1,
    };
    assert_eq!(
        view.scan(&entries, bounded, &|_| true).expect("scan").len(),
        2
    );
    let tiny = ScanLimit {
        items: 10,
        bytes: 1,
    };
    assert_eq!(
        view.scan(&entries, tiny, &|_| true).expect("scan").len(),
        1,
        "always progress"
    );
}

fn replace_all_swaps_everything(engine: &dyn Engine) {
    fill(engine);
    let replacement = vec![Ok((
        item_key("t", "q", b"x"),
        Stored {
            version: 9,
            value: b"v".to_vec(),
        },
    ))];
    engine
        .replace_all(&mut replacement.into_iter(), &meta(9))
        .expect("replace");
    let view = engine.read().expect("read");
    assert_eq!(view.iter_all().expect("iter").count(), 1);
    assert_eq!(view.meta().expect("meta"), meta(9));
    assert_eq!(
        view.get(&item_key("t", "q", b"x"))
            .expect("get")
            .map(|s| s.version),
        Some(9)
    );
}
