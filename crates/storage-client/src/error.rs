//! Why a storage call failed, and what a caller outside the cluster may
//! be told about it.

use storage_api::shard_map::ShardId;
use tonic::Code;

/// Why a storage call failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StorageError {
    /// The shard could not answer within the deadline (no leader, no
    /// quorum, replicas down). Retryable later.
    #[error("storage shard {shard} is unavailable: {detail}")]
    Unavailable { shard: ShardId, detail: String },
    /// The shard map this client runs differs from the nodes'.
    #[error("storage shard {shard} refused the route: {detail}")]
    WrongShard { shard: ShardId, detail: String },
    /// The slot moved to another shard (a redirect). The client follows it
    /// itself; a caller sees this only when redirects did not settle.
    #[error(
        "storage shard {shard} says slot {slot} moved to shard {owner} (map version {map_version})"
    )]
    Moved {
        shard: ShardId,
        slot: u32,
        owner: ShardId,
        map_version: u64,
    },
    /// Storage refused the request itself (a bug in the caller, or overload).
    #[error("storage shard {shard} rejected the request: {code:?}: {message}")]
    Rejected {
        shard: ShardId,
        code: Code,
        message: String,
    },
    /// A replica address in the shard map is not a valid URI.
    #[error("bad storage address {addr}: {detail}")]
    BadAddress { addr: String, detail: String },
    /// Our certificate cannot be used to reach storage.
    #[error("cannot set up TLS to storage: {0}")]
    Tls(String),
}

impl StorageError {
    /// What a caller outside the cluster may be told: which dependency
    /// failed and how, never where it lives (the full error, with replica
    /// addresses, is for this service's logs).
    pub fn public_message(&self) -> String {
        match self {
            Self::Unavailable { shard, .. } => format!(
                "storage shard {shard} is unavailable (no replica could serve it in time); retry later"
            ),
            Self::WrongShard { shard, .. } | Self::Moved { shard, .. } => {
                format!("storage shard {shard} is being reconfigured; retry later")
            }
            Self::Rejected { shard, code, .. } => {
                format!("storage shard {shard} refused the request ({code:?})")
            }
            Self::BadAddress { .. } | Self::Tls(_) => {
                "this service cannot reach storage (misconfigured; see its logs)".into()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn public_messages_name_the_shard_never_an_address() {
        let addr = "10.1.2.3:50071";
        let errors = [
            StorageError::Unavailable {
                shard: 2,
                detail: format!("{addr}: connection refused"),
            },
            StorageError::WrongShard {
                shard: 2,
                detail: format!("{addr} says shard 1"),
            },
            StorageError::Rejected {
                shard: 2,
                code: Code::Internal,
                message: format!("at {addr}"),
            },
            StorageError::BadAddress {
                addr: addr.into(),
                detail: "bad".into(),
            },
            StorageError::Tls(format!("{addr}: no certificate")),
        ];
        for e in errors {
            let public = e.public_message();
            assert!(!public.contains("10.1.2.3"), "{public}");
            assert!(
                e.to_string().contains("10.1.2.3"),
                "the log keeps the detail: {e}"
            );
        }
    }
}
