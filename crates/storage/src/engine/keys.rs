//! How (table, partition, key) becomes one flat, ordered engine key:
//! `table 0x00 partition 0x00 key`. Table and partition names never contain
//! 0x00, so flat keys sort by table, then partition, then key — which is what
//! makes both kinds of scan plain range scans: inside one partition, and
//! across every partition of a table that starts with a prefix.

use std::ops::Bound;

use super::ScanRange;

const SEP: u8 = 0;

/// Why a name cannot be used in a key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("{what} must not be empty")]
    Empty { what: &'static str },
    #[error("{what} must not contain the NUL character")]
    Nul { what: &'static str },
}

/// Checks a table or partition name.
pub fn check_name(what: &'static str, name: &str) -> Result<(), KeyError> {
    if name.is_empty() {
        return Err(KeyError::Empty { what });
    }
    if name.as_bytes().contains(&SEP) {
        return Err(KeyError::Nul { what });
    }
    Ok(())
}

/// The flat key of an item.
pub fn item_key(table: &str, partition: &str, key: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(table.len() + partition.len() + key.len() + 2);
    out.extend_from_slice(table.as_bytes());
    out.push(SEP);
    out.extend_from_slice(partition.as_bytes());
    out.push(SEP);
    out.extend_from_slice(key);
    out
}

/// Splits a flat key back into (table, partition, key).
pub fn split_key(flat: &[u8]) -> Option<(&str, &str, &[u8])> {
    let t = flat.iter().position(|b| *b == SEP)?;
    let rest = &flat[t + 1..];
    let p = rest.iter().position(|b| *b == SEP)?;
    let table = std::str::from_utf8(&flat[..t]).ok()?;
    let partition = std::str::from_utf8(&rest[..p]).ok()?;
    Some((table, partition, &rest[p + 1..]))
}

/// The smallest byte string greater than every string starting with
/// `prefix` (None when there is none: all 0xff).
pub fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < u8::MAX {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

/// Every flat key starting with `prefix`, optionally resuming strictly after
/// `after` in scan direction.
pub fn prefix_range(prefix: Vec<u8>, after: Option<Vec<u8>>, reverse: bool) -> ScanRange {
    let end = prefix_end(&prefix);
    // A resume cursor is clamped to the prefix: one outside it (forged, or
    // from another scope) must never widen the range onto other
    // partitions, and one past the scope's end leaves nothing to scan.
    let empty = |prefix: Vec<u8>| ScanRange {
        start: Bound::Included(prefix.clone()),
        end: Bound::Excluded(prefix),
        reverse,
    };
    let end_bound = end.clone().map_or(Bound::Unbounded, Bound::Excluded);
    match (after, reverse) {
        (None, _) => ScanRange {
            start: Bound::Included(prefix),
            end: end_bound,
            reverse,
        },
        // Forward: resume after the cursor, if it is below the end at all.
        (Some(after), false) if end.as_ref().is_none_or(|e| after < *e) => ScanRange {
            start: if after < prefix {
                Bound::Included(prefix)
            } else {
                Bound::Excluded(after)
            },
            end: end_bound,
            reverse,
        },
        (Some(_), false) => empty(prefix),
        // Backward: resume below the cursor, if it is above the prefix at all.
        (Some(after), true) if after > prefix => ScanRange {
            start: Bound::Included(prefix),
            end: match end {
                Some(e) if after >= e => Bound::Excluded(e),
                _ => Bound::Excluded(after),
            },
            reverse,
        },
        (Some(_), true) => empty(prefix),
    }
}

/// The flat-key prefix of every item of `table` in `partition` whose key
/// starts with `key_prefix`.
pub fn partition_prefix(table: &str, partition: &str, key_prefix: &[u8]) -> Vec<u8> {
    item_key(table, partition, key_prefix)
}

/// The flat-key prefix of every item of `table` in any partition whose name
/// starts with `partition_prefix`.
pub fn table_prefix(table: &str, partition_prefix: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(table.len() + partition_prefix.len() + 1);
    out.extend_from_slice(table.as_bytes());
    out.push(SEP);
    out.extend_from_slice(partition_prefix.as_bytes());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_orders_by_table_partition_key() {
        let a = item_key("account", "acme/a", b"");
        let b = item_key("account", "acme/a.b", b"");
        let c = item_key("entry", "acme/a", b"\x00\x01");
        assert!(a < b && b < c);
        assert_eq!(split_key(&c), Some(("entry", "acme/a", &b"\x00\x01"[..])));
        // A partition that is a prefix of another sorts before all its keys.
        assert!(item_key("t", "p", b"zzz") < item_key("t", "p2", b""));
    }

    #[test]
    fn prefix_end_skips_trailing_ff() {
        assert_eq!(prefix_end(b"ab"), Some(b"ac".to_vec()));
        assert_eq!(prefix_end(b"a\xff"), Some(b"b".to_vec()));
        assert_eq!(prefix_end(b"\xff\xff"), None);
    }

    #[test]
    fn names_are_checked() {
        assert_eq!(
            check_name("table", ""),
            Err(KeyError::Empty { what: "table" })
        );
        assert_eq!(
            check_name("partition", "a\0b"),
            Err(KeyError::Nul { what: "partition" })
        );
        assert!(check_name("partition", "acme/alice").is_ok());
    }

    mod clamped {
        use std::collections::BTreeMap;

        use proptest::prelude::*;

        use super::super::*;

        fn bytes() -> impl Strategy<Value = Vec<u8>> {
            prop::collection::vec(
                prop_oneof![Just(0u8), Just(b'a'), Just(b'b'), Just(0xff), any::<u8>()],
                0..6,
            )
        }

        proptest! {
            /// Whatever the cursor and direction, a scan sees only keys
            /// under its prefix, never panics, and resumes strictly past
            /// the cursor.
            #[test]
            fn a_cursor_never_leaves_the_prefix(
                prefix in bytes(),
                after in proptest::option::of(bytes()),
                keys in prop::collection::vec(bytes(), 0..40),
                reverse in any::<bool>(),
            ) {
                let store: BTreeMap<Vec<u8>, ()> = keys
                    .iter()
                    .chain(std::iter::once(&prefix))
                    .map(|k| (k.clone(), ()))
                    .collect();
                let range = prefix_range(prefix.clone(), after.clone(), reverse);
                let seen: Vec<&Vec<u8>> = store.range((range.start, range.end)).map(|(k, _)| k).collect();
                for key in &seen {
                    prop_assert!(key.starts_with(&prefix), "{key:?} outside {prefix:?}");
                    if let Some(after) = &after {
                        if reverse {
                            prop_assert!(*key < after);
                        } else {
                            prop_assert!(*key > after);
                        }
                    }
                }
                let expected = store
                    .keys()
                    .filter(|k| k.starts_with(&prefix))
                    .filter(|k| after.as_ref().is_none_or(|a| if reverse { *k < a } else { *k > a }))
                    .count();
                prop_assert_eq!(seen.len(), expected);
            }
        }
    }
}
