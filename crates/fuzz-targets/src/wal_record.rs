//! The values the Raft log's WAL stores (log ids, entry payloads, votes),
//! each behind the length header `storage::raft::wal_store::Wire` writes.
//! A WAL file is read back after crashes and bit rot: for any bytes, no
//! panic and no allocation beyond the length bound, and whatever decodes
//! re-encodes to the same bytes it would decode from again.

use openraft::EntryPayload;
use raft_log::codeq::{Decode, Encode};
use serde::Serialize;
use serde::de::DeserializeOwned;
use storage::raft::wal_store::Wire;
use storage::raft::{LogId, TypeConfig, Vote};

/// The first byte picks the record type; the rest is the record.
pub fn run(data: &[u8]) {
    let Some((kind, bytes)) = data.split_first() else {
        return;
    };
    match kind % 3 {
        0 => round_trip::<LogId>(bytes),
        1 => round_trip::<EntryPayload<TypeConfig>>(bytes),
        _ => round_trip::<Vote>(bytes),
    }
}

fn encode<T: Serialize>(value: &Wire<T>) -> Vec<u8> {
    let mut out = Vec::new();
    if let Err(e) = value.encode(&mut out) {
        panic!("a decoded WAL value does not encode again: {e}");
    }
    out
}

fn round_trip<T: Serialize + DeserializeOwned>(bytes: &[u8]) {
    let Ok(value) = Wire::<T>::decode(bytes) else {
        return;
    };
    let encoded = encode(&value);
    match Wire::<T>::decode(encoded.as_slice()) {
        Ok(again) => assert_eq!(
            encode(&again),
            encoded,
            "a WAL value changed on its way back"
        ),
        Err(e) => panic!("a WAL value's own encoding does not decode: {e}"),
    }
}

/// One record of each type, as the WAL writes them.
pub fn seeds() -> Vec<Vec<u8>> {
    use openraft::CommittedLeaderId;
    use storage::raft::slots::{IngestItem, SlotCommand};
    use storage::raft::{Condition, Mutation, Proposal, WriteBatch};
    let log_id: LogId = openraft::LogId::new(CommittedLeaderId::new(2, 1), 9);
    let payload: EntryPayload<TypeConfig> = EntryPayload::Normal(Proposal {
        writes: vec![WriteBatch {
            partition: "acme/alice".into(),
            conditions: vec![Condition {
                partition: None,
                table: "account".into(),
                key: vec![],
                expected_version: 3,
            }],
            mutations: vec![Mutation {
                partition: Some("acme/bob".into()),
                table: "entry".into(),
                key: 1u64.to_be_bytes().to_vec(),
                value: Some(b"{\"amount\":5}".to_vec()),
            }],
        }],
        slot: None,
    });
    let ingest: EntryPayload<TypeConfig> = EntryPayload::Normal(Proposal {
        writes: vec![],
        slot: Some(SlotCommand::Ingest {
            move_id: 4,
            items: vec![IngestItem {
                key: b"account\0acme/bob\0".to_vec(),
                version: 12,
                value: b"{}".to_vec(),
            }],
        }),
    });
    let vote: Vote = openraft::Vote::new_committed(2, 1);
    let with_kind = |kind: u8, mut record: Vec<u8>| {
        record.insert(0, kind);
        record
    };
    vec![
        with_kind(0, encode(&Wire(log_id))),
        with_kind(1, encode(&Wire(payload))),
        with_kind(1, encode(&Wire(ingest))),
        with_kind(1, encode(&Wire(EntryPayload::<TypeConfig>::Blank))),
        with_kind(2, encode(&Wire(vote))),
    ]
}
