//! Applied request ids, so that a retried write applies once. Each log entry that applied
//! requests stores one record (`r`, proposal time, log index → the ids and their results); an
//! in-memory index from id to that record is derived from the stored records (loaded at start
//! and after a snapshot), so every replica decides a retry the same way. Records older than
//! [`DEDUP_WINDOW_NANOS`] are dropped, oldest first, a few per entry.

use crate::command::CommandResult;
use crate::model::UnixNanos;
use crate::storage::kv::{KvRead, KvWrite};
use crate::storage::{keys, records, StoreError};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::ops::ControlFlow;

/// How long an applied request id is remembered, so that a retry within it applies once.
pub const DEDUP_WINDOW_NANOS: i64 = 60 * 1_000_000_000;
/// The most old records dropped per log entry.
const DROP_PER_ENTRY: usize = 8;

/// The requests one log entry applied.
#[derive(Debug, Default, Serialize, Deserialize)]
struct EntryRequests {
    items: Vec<(String, CommandResult)>,
}

/// Where each remembered request id's result is stored: the key of its entry's record.
#[derive(Debug, Default)]
pub struct RequestIndex {
    by_id: HashMap<String, Vec<u8>>,
}

impl RequestIndex {
    /// The index of the records stored in `r`.
    pub fn load(r: &dyn KvRead) -> Result<RequestIndex, StoreError> {
        let mut by_id = HashMap::new();
        records::scan(r, &keys::requests_prefix(), false, |k, e: EntryRequests| {
            for (id, _) in e.items {
                by_id.insert(id, k.to_vec());
            }
            ControlFlow::Continue(())
        })?;
        Ok(RequestIndex { by_id })
    }

    /// How many request ids are remembered.
    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    /// Whether none is.
    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }

    /// Takes in the changes of an apply batch once it is stored.
    pub fn commit(&mut self, changes: RequestChanges) {
        for id in changes.removed {
            self.by_id.remove(&id);
        }
        self.by_id.extend(changes.added);
    }
}

/// The request ids an apply batch added and dropped, not yet in the index.
#[derive(Debug, Default)]
pub struct RequestChanges {
    added: HashMap<String, Vec<u8>>,
    removed: Vec<String>,
}

/// The requests of the log entry being applied.
pub(super) struct EntryLog<'a> {
    index: &'a RequestIndex,
    changes: &'a mut RequestChanges,
    key: Vec<u8>,
    record: EntryRequests,
    positions: HashMap<String, usize>,
}

impl<'a> EntryLog<'a> {
    /// Starts the entry at `log_index` proposed at `now`, dropping records out of the window.
    pub(super) fn begin(
        w: &mut dyn KvWrite,
        index: &'a RequestIndex,
        changes: &'a mut RequestChanges,
        now: UnixNanos,
        log_index: u64,
    ) -> Result<EntryLog<'a>, StoreError> {
        drop_old(w, changes, now.saturating_sub(DEDUP_WINDOW_NANOS))?;
        Ok(EntryLog {
            index,
            changes,
            key: keys::requests(now, log_index),
            record: EntryRequests::default(),
            positions: HashMap::new(),
        })
    }

    /// The first result of request `id`, if it was applied within the window.
    pub(super) fn seen(
        &self,
        w: &dyn KvWrite,
        id: &str,
    ) -> Result<Option<CommandResult>, StoreError> {
        if let Some(&i) = self.positions.get(id) {
            return Ok(Some(self.record.items[i].1.clone()));
        }
        let key = match self.changes.added.get(id) {
            Some(k) => k,
            None if self.changes.removed.iter().any(|r| r == id) => return Ok(None),
            None => match self.index.by_id.get(id) {
                Some(k) => k,
                None => return Ok(None),
            },
        };
        let Some(stored) = records::get::<EntryRequests>(w, key)? else {
            return Ok(None);
        };
        Ok(stored
            .items
            .into_iter()
            .find(|(i, _)| i == id)
            .map(|(_, r)| r))
    }

    /// Remembers that request `id` gave `result`.
    pub(super) fn remember(&mut self, id: &str, result: &CommandResult) {
        self.positions
            .insert(id.to_string(), self.record.items.len());
        self.record.items.push((id.to_string(), result.clone()));
    }

    /// Stores the entry's record.
    pub(super) fn finish(self, w: &mut dyn KvWrite) {
        if self.record.items.is_empty() {
            return;
        }
        for (id, _) in &self.record.items {
            self.changes.added.insert(id.clone(), self.key.clone());
        }
        records::put(w, self.key, &self.record);
    }
}

/// Drops up to [`DROP_PER_ENTRY`] records proposed before `cutoff`, oldest first.
fn drop_old(
    w: &mut dyn KvWrite,
    changes: &mut RequestChanges,
    cutoff: UnixNanos,
) -> Result<(), StoreError> {
    let mut old = Vec::new();
    w.scan(
        &keys::requests_prefix(),
        false,
        &mut |k, v| match keys::requests_time(k) {
            Some(t) if t < cutoff && old.len() < DROP_PER_ENTRY => {
                old.push((k.to_vec(), v.to_vec()));
                Ok(ControlFlow::Continue(()))
            }
            _ => Ok(ControlFlow::Break(())),
        },
    )?;
    for (k, v) in old {
        let e: EntryRequests = crate::storage::codec::decode(&v)?;
        for (id, _) in e.items {
            changes.added.remove(&id);
            changes.removed.push(id);
        }
        w.delete(k);
    }
    Ok(())
}
