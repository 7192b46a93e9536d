//! Snapshot files: written by one replica, sent to another, read back
//! after crashes. Two properties, picked by the first byte:
//!
//! - any bytes read as a snapshot: no panic, no allocation beyond the
//!   format's bounds, and it reads whole only if its checksum holds;
//! - a snapshot of items the input describes reads back exactly, and the
//!   same file with any one byte changed is refused (never installed).

use arbitrary::{Arbitrary, Unstructured};
use storage::engine::{EngineError, KeyValue, Meta, Stored};
use storage::raft::SnapshotMeta;
use storage::raft::snapshot_file::{Header, SnapshotReader, SnapshotWriter};

/// Items and the one byte to damage.
#[derive(Debug, Arbitrary)]
struct Damage {
    items: Vec<(Vec<u8>, u64, Vec<u8>)>,
    revision: u64,
    at: usize,
    xor: u8,
}

pub fn run(data: &[u8]) {
    let Some((mode, rest)) = data.split_first() else {
        return;
    };
    if mode % 2 == 0 {
        let _ = read_all(rest);
    } else if let Ok(damage) = Damage::arbitrary_take_rest(Unstructured::new(rest)) {
        damaged_is_refused(damage);
    }
}

/// Reads every item of the snapshot in `bytes`.
fn read_all(bytes: &[u8]) -> Result<(Header, Vec<KeyValue>), EngineError> {
    let (header, reader) = SnapshotReader::from_reader(bytes)?;
    let items = reader.collect::<Result<Vec<_>, _>>()?;
    Ok((header, items))
}

/// A snapshot of `items` (sorted by key, as engines hand them out).
fn write(header: &Header, items: &[KeyValue]) -> Vec<u8> {
    let written = SnapshotWriter::begin_on(Vec::new(), header).and_then(|mut out| {
        items.iter().try_for_each(|item| out.item(item))?;
        out.finish_on()
    });
    match written {
        Ok(bytes) => bytes,
        Err(e) => panic!("writing a snapshot of small items failed: {e}"),
    }
}

fn damaged_is_refused(damage: Damage) {
    let items: Vec<KeyValue> = damage
        .items
        .into_iter()
        .map(|(key, version, value)| (key, Stored { version, value }))
        .collect();
    let header = Header {
        snapshot: SnapshotMeta::default(),
        state: Meta {
            revision: damage.revision,
            applied: vec![],
        },
        items: items.len() as u64,
    };
    let mut bytes = write(&header, &items);
    match read_all(&bytes) {
        Ok(read) => assert_eq!(read, (header, items), "a snapshot read back differently"),
        Err(e) => panic!("a snapshot just written does not read: {e}"),
    }
    let at = damage.at % bytes.len();
    bytes[at] ^= damage.xor.max(1);
    assert!(
        read_all(&bytes).is_err(),
        "a snapshot with byte {at} changed was read as intact"
    );
}

/// An intact snapshot to read, and one to damage.
pub fn seeds() -> Vec<Vec<u8>> {
    let header = Header {
        snapshot: SnapshotMeta::default(),
        state: Meta {
            revision: 2,
            applied: vec![1, 2, 3],
        },
        items: 2,
    };
    let items = vec![
        (
            b"account\0acme/alice\0".to_vec(),
            Stored {
                version: 1,
                value: b"{}".to_vec(),
            },
        ),
        (
            b"entry\0acme/alice\0\0\0\0\0\0\0\0\x01".to_vec(),
            Stored {
                version: 2,
                value: b"{\"amount\":5}".to_vec(),
            },
        ),
    ];
    let mut intact = vec![0];
    intact.extend(write(&header, &items));
    vec![
        intact,
        vec![1, 2, 3, b'k', 1, b'v', 7, 9, 0x40, 0, 0, 0, 0, 0, 0, 0, 1],
    ]
}
