//! What the state machine has applied, in Raft's terms: the last log entry
//! and the last membership. It is committed with the data in every engine
//! change, as the engine's opaque `Meta::applied` bytes, so the engine
//! stays ignorant of Raft while a restart still knows exactly where the
//! state machine stands.

use serde::{Deserialize, Serialize};

use super::types::{LogId, StoredMembership};
use crate::engine::{EngineError, Meta};

/// The state machine's position in the Raft log.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Applied {
    /// The last log entry applied.
    pub last_applied: Option<LogId>,
    /// The last membership applied.
    pub membership: StoredMembership,
}

impl Applied {
    /// The position recorded in `meta` (nothing applied for a new engine).
    pub fn of(meta: &Meta) -> Result<Self, EngineError> {
        if meta.applied.is_empty() {
            return Ok(Self::default());
        }
        postcard::from_bytes(&meta.applied)
            .map_err(|e| EngineError::new("decode the applied Raft position", e))
    }

    /// Records this position in `meta`.
    pub fn record(&self, meta: &mut Meta) -> Result<(), EngineError> {
        meta.applied = postcard::to_stdvec(self)
            .map_err(|e| EngineError::new("encode the applied Raft position", e))?;
        Ok(())
    }

    /// The index of the last entry applied (0 for none).
    pub fn index(&self) -> u64 {
        self.last_applied.map_or(0, |l| l.index)
    }
}

#[cfg(test)]
mod tests {
    use openraft::CommittedLeaderId;

    use super::*;

    #[test]
    fn a_new_engine_has_applied_nothing() {
        assert_eq!(Applied::of(&Meta::default()), Ok(Applied::default()));
    }

    #[test]
    fn the_position_round_trips_through_the_metadata() {
        let applied = Applied {
            last_applied: Some(LogId::new(CommittedLeaderId::new(3, 1), 42)),
            membership: StoredMembership::default(),
        };
        let mut meta = Meta {
            revision: 7,
            ..Meta::default()
        };
        applied.record(&mut meta).expect("encode");
        assert_eq!(Applied::of(&meta), Ok(applied));
        assert_eq!(meta.revision, 7);
    }

    #[test]
    fn damaged_bytes_are_an_error_not_a_default() {
        let meta = Meta {
            revision: 1,
            applied: vec![0xff; 3],
        };
        assert!(Applied::of(&meta).is_err());
    }
}
