//! An in-memory engine: a sorted map behind a lock. Read views are copies
//! (fine for tests, which is what this backend is for).

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use super::{
    ChangeSet, Engine, EngineError, ItemIter, KeyValue, Meta, ReadView, ScanLimit, ScanRange,
    Stored, bounds, item_bytes,
};

#[derive(Debug, Default, Clone)]
struct State {
    items: BTreeMap<Vec<u8>, Stored>,
    meta: Meta,
}

/// The in-memory engine.
#[derive(Debug, Default, Clone)]
pub struct MemEngine {
    state: Arc<RwLock<State>>,
}

impl MemEngine {
    /// An empty engine.
    pub fn new() -> Self {
        Self::default()
    }

    fn snapshot(&self) -> Result<State, EngineError> {
        self.state
            .read()
            .map(|s| s.clone())
            .map_err(|_| EngineError("memory engine lock poisoned".into()))
    }
}

struct MemView(State);

impl ReadView for MemView {
    fn meta(&self) -> Result<Meta, EngineError> {
        Ok(self.0.meta.clone())
    }

    fn get(&self, key: &[u8]) -> Result<Option<Stored>, EngineError> {
        Ok(self.0.items.get(key).cloned())
    }

    fn len(&self) -> Result<u64, EngineError> {
        Ok(self.0.items.len() as u64)
    }

    fn scan(
        &self,
        range: &ScanRange,
        limit: ScanLimit,
        keep: &dyn Fn(&[u8]) -> bool,
    ) -> Result<Vec<KeyValue>, EngineError> {
        let iter = self.0.items.range::<[u8], _>(bounds(range));
        let pick = |(k, v): (&Vec<u8>, &Stored)| keep(k).then(|| (k.clone(), v.clone()));
        let picked: Box<dyn Iterator<Item = KeyValue>> = if range.reverse {
            Box::new(iter.rev().filter_map(pick))
        } else {
            Box::new(iter.filter_map(pick))
        };
        let (mut out, mut bytes) = (Vec::new(), 0);
        for item in picked {
            if limit.reached(out.len(), bytes) {
                break;
            }
            bytes += item_bytes(&item);
            out.push(item);
        }
        Ok(out)
    }

    fn iter_all(&self) -> Result<ItemIter<'_>, EngineError> {
        Ok(Box::new(
            self.0.items.iter().map(|(k, v)| Ok((k.clone(), v.clone()))),
        ))
    }
}

impl Engine for MemEngine {
    fn read(&self) -> Result<Box<dyn ReadView + '_>, EngineError> {
        Ok(Box::new(MemView(self.snapshot()?)))
    }

    fn commit(&self, change: ChangeSet) -> Result<(), EngineError> {
        let mut state = self
            .state
            .write()
            .map_err(|_| EngineError("memory engine lock poisoned".into()))?;
        for (key, value) in change.writes {
            match value {
                Some(v) => state.items.insert(key, v),
                None => state.items.remove(&key),
            };
        }
        state.meta = change.meta;
        Ok(())
    }

    fn replace_all(
        &self,
        items: &mut dyn Iterator<Item = Result<KeyValue, EngineError>>,
        meta: &Meta,
    ) -> Result<(), EngineError> {
        let items = items.collect::<Result<BTreeMap<_, _>, _>>()?;
        let mut state = self
            .state
            .write()
            .map_err(|_| EngineError("memory engine lock poisoned".into()))?;
        *state = State {
            items,
            meta: meta.clone(),
        };
        Ok(())
    }

    fn sync(&self) -> Result<(), EngineError> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn passes_the_engine_conformance_suite() {
        super::super::conformance::run_all(super::MemEngine::new);
    }
}
