//! Raft messages as they cross the network: postcard inside a gRPC `bytes`
//! field. The server decodes requests from any peer (and, before the
//! authorization layer refuses it, from anyone who reaches the port); the
//! client decodes replies (`storage::grpc::raft_reply::Reply`). For any
//! bytes: no panic, no unbounded
//! allocation, and whatever decodes re-encodes to bytes that decode to the
//! same encoding (the format round-trips).

use openraft::error::{Infallible, InstallSnapshotError};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use serde::Serialize;
use serde::de::DeserializeOwned;
use storage::grpc::raft_reply::Reply;
use storage::raft::{NodeId, TypeConfig};

/// The first byte picks the message type; the rest is its encoding.
pub fn run(data: &[u8]) {
    let Some((kind, bytes)) = data.split_first() else {
        return;
    };
    match kind % 6 {
        0 => round_trip::<AppendEntriesRequest<TypeConfig>>(bytes),
        1 => round_trip::<VoteRequest<NodeId>>(bytes),
        2 => round_trip::<InstallSnapshotRequest<TypeConfig>>(bytes),
        3 => round_trip::<Reply<AppendEntriesResponse<NodeId>, Infallible>>(bytes),
        4 => round_trip::<Reply<VoteResponse<NodeId>, Infallible>>(bytes),
        _ => round_trip::<Reply<InstallSnapshotResponse<NodeId>, InstallSnapshotError>>(bytes),
    }
}

/// Decodes `bytes` as `T`; if that works, the value's encoding must
/// decode again to the same encoding.
pub fn round_trip<T: Serialize + DeserializeOwned>(bytes: &[u8]) {
    let Ok(value) = postcard::from_bytes::<T>(bytes) else {
        return;
    };
    let Ok(encoded) = postcard::to_stdvec(&value) else {
        panic!("a decoded message does not encode again");
    };
    let again: T = match postcard::from_bytes(&encoded) {
        Ok(again) => again,
        Err(e) => panic!("a message's own encoding does not decode: {e}"),
    };
    assert_eq!(
        postcard::to_stdvec(&again).ok(),
        Some(encoded),
        "a message's encoding changed on its way back"
    );
}

/// One real message of each kind.
pub fn seeds() -> Vec<Vec<u8>> {
    use openraft::{CommittedLeaderId, EntryPayload, LogId, Vote};
    use storage::raft::{Proposal, WriteBatch};
    let log_id = LogId::new(CommittedLeaderId::new(3, 1), 7);
    let entry = storage::raft::Entry {
        log_id,
        payload: EntryPayload::Normal(Proposal {
            writes: vec![WriteBatch {
                partition: "acme/alice".into(),
                conditions: vec![],
                mutations: vec![],
            }],
            slot: None,
        }),
    };
    let append = AppendEntriesRequest::<TypeConfig> {
        vote: Vote::new_committed(3, 1),
        prev_log_id: Some(LogId::new(CommittedLeaderId::new(3, 1), 6)),
        entries: vec![entry],
        leader_commit: Some(log_id),
    };
    let vote = VoteRequest::<NodeId>::new(Vote::new(4, 2), Some(log_id));
    let vote_reply: Reply<VoteResponse<NodeId>, Infallible> =
        Reply::Ok(VoteResponse::new(Vote::new(4, 2), None, true));
    let append_reply: Reply<AppendEntriesResponse<NodeId>, Infallible> =
        Reply::Ok(AppendEntriesResponse::Success);
    let encode = |kind: u8, bytes: Result<Vec<u8>, postcard::Error>| {
        let mut out = vec![kind];
        out.extend(bytes.unwrap_or_default());
        out
    };
    vec![
        encode(0, postcard::to_stdvec(&append)),
        encode(1, postcard::to_stdvec(&vote)),
        encode(3, postcard::to_stdvec(&append_reply)),
        encode(4, postcard::to_stdvec(&vote_reply)),
    ]
}
