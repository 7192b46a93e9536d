//! Scan planning: a scan's scope (one partition, or every partition of a
//! table under a name prefix), key prefix and resume cursor become one
//! range of flat keys (see `keys`) plus a filter for what the range alone
//! cannot express. The gRPC face only converts messages into a
//! [`ScanQuery`]; the byte layout stays here, next to the engine.

use super::ScanRange;
use super::keys::{self, KeyError, check_name, item_key, split_key};

/// Which partitions a scan covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScanScope<'a> {
    /// Exactly this partition.
    Partition(&'a str),
    /// Every partition whose name starts with this prefix (may be empty).
    PartitionPrefix(&'a str),
}

/// One scan, as the node understands it.
#[derive(Debug, Clone, Copy)]
pub struct ScanQuery<'a> {
    pub table: &'a str,
    pub scope: ScanScope<'a>,
    /// Only keys that start with this.
    pub key_prefix: &'a [u8],
    /// Resume after this (partition, key), exclusive.
    pub start_after: Option<(&'a str, &'a [u8])>,
    pub reverse: bool,
}

/// Keeps or drops a scanned flat key.
pub type KeyFilter = Box<dyn Fn(&[u8]) -> bool + Send>;

/// The flat-key range `query` covers, and the filter its results pass.
pub fn plan(query: &ScanQuery<'_>) -> Result<(ScanRange, KeyFilter), KeyError> {
    check_name("table", query.table)?;
    let table = query.table;
    match query.scope {
        ScanScope::Partition(partition) => {
            check_name("partition", partition)?;
            let prefix = keys::partition_prefix(table, partition, query.key_prefix);
            let after = query
                .start_after
                .map(|(_, key)| item_key(table, partition, key));
            let keep: KeyFilter = Box::new(|_| true);
            Ok((keys::prefix_range(prefix, after, query.reverse), keep))
        }
        ScanScope::PartitionPrefix(prefix) => {
            if prefix.as_bytes().contains(&0) {
                return Err(KeyError::Nul {
                    what: "partition_prefix",
                });
            }
            let flat = keys::table_prefix(table, prefix);
            let after = query
                .start_after
                .map(|(partition, key)| {
                    check_name("start_after.partition", partition)?;
                    Ok::<_, KeyError>(item_key(table, partition, key))
                })
                .transpose()?;
            let key_prefix = query.key_prefix.to_vec();
            let keep: KeyFilter = Box::new(move |flat: &[u8]| {
                split_key(flat).is_some_and(|(_, _, key)| key.starts_with(&key_prefix))
            });
            Ok((keys::prefix_range(flat, after, query.reverse), keep))
        }
    }
}
