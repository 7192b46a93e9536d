//! What a replica sends back for a Raft message: openraft's result, with a
//! fatal error flattened to its message.
//!
//! Why not openraft's `Result<T, RaftError>` as is: a fatal error carries
//! an `AnyError`, which nests (`source: Option<Box<AnyError>>`) without
//! bound, and serde decodes nesting by recursion. A reply of a few dozen
//! kilobytes of nested sources overflowed the decoding thread's stack and
//! aborted the whole process (found by the `raft_message` fuzz target;
//! the input is `fuzz/corpus/raft_message/regression-deep-any-error`).
//! Nothing in this type nests, so decoding any bytes is bounded.
//!
//! The encoding is the old one wherever it can be: `Ok` and `Err` are
//! `Result`'s variants, `Api` is `RaftError::APIError`; only a fatal
//! error, which a replica sends as it stops, reads differently, and a peer
//! of another version sees it as a failed call.

use openraft::error::RaftError;
use serde::{Deserialize, Serialize};

use crate::raft::types::NodeId;

/// A Raft reply on the wire.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Reply<T, E> {
    Ok(T),
    Err(ReplyError<E>),
}

/// A Raft error on the wire.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ReplyError<E> {
    /// The call's own error (e.g. a snapshot mismatch).
    Api(E),
    /// The replica stopped on a fatal error: what it said.
    Fatal(String),
}

impl<T, E> From<Result<T, RaftError<NodeId, E>>> for Reply<T, E>
where
    E: std::error::Error,
{
    fn from(result: Result<T, RaftError<NodeId, E>>) -> Self {
        match result {
            Ok(value) => Self::Ok(value),
            Err(RaftError::APIError(e)) => Self::Err(ReplyError::Api(e)),
            Err(RaftError::Fatal(fatal)) => Self::Err(ReplyError::Fatal(fatal.to_string())),
        }
    }
}

#[cfg(test)]
mod tests {
    use openraft::error::{Fatal, Infallible};
    use openraft::raft::AppendEntriesResponse;

    use super::*;

    type AppendReply = Result<AppendEntriesResponse<NodeId>, RaftError<NodeId, Infallible>>;

    #[test]
    fn answers_read_as_they_did_before() {
        let ok: AppendReply = Ok(AppendEntriesResponse::Success);
        let old = postcard::to_stdvec(&ok).expect("encode");
        let new = postcard::to_stdvec(&Reply::from(ok)).expect("encode");
        assert_eq!(old, new);
    }

    #[test]
    fn a_fatal_error_travels_as_its_message() {
        let fatal: AppendReply = Err(RaftError::Fatal(Fatal::Stopped));
        let sent = postcard::to_stdvec(&Reply::from(fatal)).expect("encode");
        let got: Reply<AppendEntriesResponse<NodeId>, Infallible> =
            postcard::from_bytes(&sent).expect("decode");
        assert!(matches!(got, Reply::Err(ReplyError::Fatal(m)) if m.contains("stopped")));
    }
}
