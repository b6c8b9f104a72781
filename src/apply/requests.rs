//! Applied request ids, so that a retried write applies once. Each log entry that applied
//! requests stores one record (`q`, proposal time, log index → the ids and their results); an
//! in-memory index from id to that record is derived from the stored records (loaded at start
//! and after a snapshot), so every replica decides a retry the same way. Records older than
//! [`DEDUP_WINDOW_NANOS`] are dropped, oldest first, a few per entry.
//!
//! A state set's result is kept without its value, and a memory add's without its content: a
//! retry carries them again, and gets the first result back with them when they match (a
//! checksum of each is kept). The gRPC layer already gives a different request under the same
//! id a different id (see `grpc::meta`); should the text still differ, the write is refused
//! rather than answered with another write's result. This keeps the records small: leaving the
//! value out cut the bytes the nodes wrote to disk per state set by about 39%. Records of
//! earlier builds (`r`), which kept whole results, are read as they were; snapshots holding `q`
//! records are version 2, which builds before it refuse rather than misread.

use crate::command::{Command, CommandResult, Rejection};
use crate::model::{Memory, StateEntry, UnixNanos};
use crate::storage::kv::{KvRead, KvWrite};
use crate::storage::{keys, records, StoreError};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::ops::ControlFlow;

/// How long an applied request id is remembered, so that a retry within it applies once.
pub const DEDUP_WINDOW_NANOS: i64 = 60 * 1_000_000_000;
/// The most old records dropped per log entry.
const DROP_PER_ENTRY: usize = 8;

/// A remembered result.
#[derive(Debug, Clone, Serialize, Deserialize)]
enum Kept {
    Whole(CommandResult),
    /// A state set's entry with an empty value, and a checksum of the value.
    StateSet(StateEntry, u32),
    /// A memory add's memory with empty content, and a checksum of the content.
    MemoryAdd(Memory, u32),
}

impl Kept {
    /// What to keep of `result`, the result of `command`.
    fn of(command: &Command, result: &CommandResult) -> Kept {
        match (command, result) {
            (Command::StateSet(s), CommandResult::State(r)) if r.value == s.value => {
                let mut r = r.clone();
                let crc = checksum(&std::mem::take(&mut r.value));
                Kept::StateSet(r, crc)
            }
            (Command::MemoryAdd(m), CommandResult::Memory(r)) if r.content == m.content => {
                let mut r = r.clone();
                let crc = checksum(&std::mem::take(&mut r.content));
                Kept::MemoryAdd(r, crc)
            }
            _ => Kept::Whole(result.clone()),
        }
    }

    /// The first result of request `id`, given to `command`, its retry.
    fn restore(&self, id: &str, command: &Command) -> CommandResult {
        match (self, command) {
            (Kept::Whole(r), _) => r.clone(),
            (Kept::StateSet(r, crc), Command::StateSet(s)) if checksum(&s.value) == *crc => {
                CommandResult::State(StateEntry {
                    value: s.value.clone(),
                    ..r.clone()
                })
            }
            (Kept::MemoryAdd(r, crc), Command::MemoryAdd(m)) if checksum(&m.content) == *crc => {
                CommandResult::Memory(Memory {
                    content: m.content.clone(),
                    ..r.clone()
                })
            }
            _ => {
                // The gRPC layer suffixes the client's id with `/` and a hash of the request.
                let client_id = id.rsplit_once('/').map_or(id, |(c, _)| c);
                CommandResult::Rejected(Rejection::Invalid(format!(
                    "request id {client_id:?} was already used by a different write"
                )))
            }
        }
    }
}

fn checksum(text: &str) -> u32 {
    crc32fast::hash(text.as_bytes())
}

/// The requests one log entry applied.
#[derive(Debug, Default, Serialize, Deserialize)]
struct EntryRequests {
    items: Vec<(String, Kept)>,
}

/// The record of an earlier build, which kept whole results.
#[derive(Deserialize)]
struct WholeRequests {
    items: Vec<(String, CommandResult)>,
}

/// The requests of the record `value` stored at `key`.
fn decode_record(key: &[u8], value: &[u8]) -> Result<Vec<(String, Kept)>, StoreError> {
    if keys::requests_is_legacy(key) {
        let old: WholeRequests = crate::storage::codec::decode(value)?;
        return Ok(old
            .items
            .into_iter()
            .map(|(id, r)| (id, Kept::Whole(r)))
            .collect());
    }
    Ok(crate::storage::codec::decode::<EntryRequests>(value)?.items)
}

/// The key of a request record.
type RecordKey = [u8; keys::REQUESTS_KEY_LEN];

fn record_key(k: &[u8]) -> Result<RecordKey, StoreError> {
    k.try_into()
        .map_err(|_| StoreError::Codec(format!("a request record key of {} bytes", k.len())))
}

/// Where each remembered request id's result is stored: the key of its entry's record.
///
/// A B-tree, not a hash map: the index holds a minute of writes (600,000 ids at 10,000
/// writes/s), and a hash map that outgrows its table, or fills with the tombstones of dropped
/// ids, rehashes every id at once, which held the apply (and every write behind it) for
/// 0.2-0.5 s at that size; a B-tree grows and shrinks a node at a time.
#[derive(Debug, Default)]
pub struct RequestIndex {
    by_id: BTreeMap<String, RecordKey>,
}

impl RequestIndex {
    /// The index of the records stored in `r`.
    pub fn load(r: &dyn KvRead) -> Result<RequestIndex, StoreError> {
        let mut by_id = BTreeMap::new();
        for prefix in keys::requests_prefixes() {
            r.scan(&prefix, false, &mut |k, v| {
                let key = record_key(k)?;
                for (id, _) in decode_record(k, v)? {
                    by_id.insert(id, key);
                }
                Ok(ControlFlow::Continue(()))
            })?;
        }
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
    added: HashMap<String, RecordKey>,
    removed: Vec<String>,
}

/// The requests of the log entry being applied.
pub(super) struct EntryLog<'a> {
    index: &'a RequestIndex,
    changes: &'a mut RequestChanges,
    key: RecordKey,
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

    /// The first result of request `id`, if it was applied within the window; `command` is
    /// its retry.
    pub(super) fn seen(
        &self,
        w: &dyn KvWrite,
        id: &str,
        command: &Command,
    ) -> Result<Option<CommandResult>, StoreError> {
        if let Some(&i) = self.positions.get(id) {
            return Ok(Some(self.record.items[i].1.restore(id, command)));
        }
        let key = match self.changes.added.get(id) {
            Some(k) => k,
            None if self.changes.removed.iter().any(|r| r == id) => return Ok(None),
            None => match self.index.by_id.get(id) {
                Some(k) => k,
                None => return Ok(None),
            },
        };
        let Some(stored) = w.get(&key[..])? else {
            return Ok(None);
        };
        Ok(decode_record(key, &stored)?
            .into_iter()
            .find(|(i, _)| i == id)
            .map(|(_, kept)| kept.restore(id, command)))
    }

    /// Remembers that request `id`, `command`, gave `result`.
    pub(super) fn remember(&mut self, id: &str, command: &Command, result: &CommandResult) {
        self.positions
            .insert(id.to_string(), self.record.items.len());
        self.record
            .items
            .push((id.to_string(), Kept::of(command, result)));
    }

    /// Stores the entry's record.
    pub(super) fn finish(self, w: &mut dyn KvWrite) {
        if self.record.items.is_empty() {
            return;
        }
        for (id, _) in &self.record.items {
            self.changes.added.insert(id.clone(), self.key);
        }
        records::put(w, self.key.to_vec(), &self.record);
    }
}

/// Drops up to [`DROP_PER_ENTRY`] records proposed before `cutoff`, oldest first (those of
/// earlier builds before any other: they are older).
fn drop_old(
    w: &mut dyn KvWrite,
    changes: &mut RequestChanges,
    cutoff: UnixNanos,
) -> Result<(), StoreError> {
    let mut old = Vec::new();
    for prefix in keys::requests_prefixes() {
        w.scan(&prefix, false, &mut |k, v| match keys::requests_time(k) {
            Some(t) if t < cutoff && old.len() < DROP_PER_ENTRY => {
                old.push((k.to_vec(), v.to_vec()));
                Ok(ControlFlow::Continue(()))
            }
            _ => Ok(ControlFlow::Break(())),
        })?;
    }
    for (k, v) in old {
        for (id, _) in decode_record(&k, &v)? {
            changes.added.remove(&id);
            changes.removed.push(id);
        }
        w.delete(k);
    }
    Ok(())
}
