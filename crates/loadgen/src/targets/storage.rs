//! Anatomy storage, driven directly through `storage-client` (routing by
//! slot, leader following): one item per partition `bench/<n>`, so keys
//! spread over every shard.

use std::time::Duration;

use storage_api::v1 as pb;
use storage_client::StorageClient;

use super::value;
use crate::runner::Target;

/// The table benchmark items live in.
pub const TABLE: &str = "bench";

/// What each operation does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Op {
    /// Write a new key (an unconditional put of a fresh partition).
    Put,
    /// Read a random key of the preloaded ones (linearizable).
    Get,
}

/// The storage target.
#[derive(Debug, Clone)]
pub struct Storage {
    pub client: StorageClient,
    pub op: Op,
    pub value_size: usize,
    /// Keys that exist (for gets), and where puts start numbering.
    pub keys: u64,
    /// Operation numbers are offset by this, so runs write distinct keys.
    pub offset: u64,
    pub timeout: Duration,
}

fn partition(n: u64) -> String {
    format!("bench/{n}")
}

impl Storage {
    /// Writes key `n`.
    pub async fn put(&self, n: u64) -> Result<(), String> {
        let mutation = pb::Mutation {
            partition: String::new(),
            table: TABLE.into(),
            key: Vec::new().into(),
            op: Some(pb::mutation::Op::Put(value(self.value_size, n).into())),
        };
        self.client
            .write(&partition(n), vec![], vec![mutation], self.timeout)
            .await
            .map(|_| ())
            .map_err(|e| error_kind(&e))
    }

    async fn get(&self, n: u64) -> Result<(), String> {
        let key = pb::ItemKey {
            table: TABLE.into(),
            key: Vec::new().into(),
        };
        let target = mix(n) % self.keys.max(1);
        let items = self
            .client
            .read(&partition(target), vec![key], self.timeout)
            .await
            .map_err(|e| error_kind(&e))?;
        match items.first() {
            Some(item) if item.version > 0 => Ok(()),
            _ => Err("missing key (preload first)".into()),
        }
    }
}

/// Spreads consecutive numbers over the key space.
pub fn mix(n: u64) -> u64 {
    n.wrapping_mul(0x9E37_79B9_7F4A_7C15).rotate_left(17)
}

fn error_kind(e: &storage_client::StorageError) -> String {
    match e {
        storage_client::StorageError::Unavailable { .. } => "Unavailable".into(),
        storage_client::StorageError::WrongShard { .. }
        | storage_client::StorageError::Moved { .. } => "WrongShard".into(),
        storage_client::StorageError::Rejected { code, .. } => format!("{code:?}"),
        storage_client::StorageError::BadAddress { .. } => "BadAddress".into(),
        storage_client::StorageError::Tls(_) => "Tls".into(),
    }
}

impl Target for Storage {
    async fn call(&self, n: u64) -> Result<(), String> {
        match self.op {
            Op::Put => self.put(self.offset + n).await,
            Op::Get => self.get(n).await,
        }
    }
}
