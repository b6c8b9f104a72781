//! The Raft log (in [`Wal`] segment files) and the vote (in sled). A vote is flushed to disk
//! before openraft is told it is saved, appended entries are synced by the log's own thread
//! before openraft is told they are stored.
//!
//! The last entries appended are also kept as they were given ([`Recent`]): every entry is read
//! back right after its append, by each replication stream on the leader and by the state
//! machine on every node, and these reads take them from memory, sharing their envelopes,
//! instead of reading and decoding the files again.

use super::wal::Wal;
use super::{read_err, write_err, Entry, LogId, NodeId, StorageError, TypeConfig};
use crate::storage::codec::{decode, encode};
use crate::storage::{Store, StoreError};
use openraft::storage::{LogFlushed, RaftLogStorage};
use openraft::{LogState, RaftLogReader, Vote};
use std::collections::VecDeque;
use std::ops::{Bound, RangeBounds};
use std::sync::{Arc, Mutex};

/// The log's directory inside the data directory.
pub const LOG_DIR: &str = "raft-log";

const VOTE: &[u8] = b"vote";
const COMMITTED: &[u8] = b"committed";
/// The key of the last purged log id in the `raft_meta` tree.
const LAST_PURGED: &[u8] = b"last_purged";

/// The last log id purged from `store`'s log: where the log starts.
pub(crate) fn last_purged(store: &Store) -> Result<Option<LogId>, StoreError> {
    match store.raft_meta.get(LAST_PURGED)? {
        Some(v) => Ok(Some(decode::<LogId>(&v)?)),
        None => Ok(None),
    }
}

/// About the most memory the entries [`Recent`] keeps may take (besides the newest entry, kept
/// whatever its size): several rounds of the largest entries the batcher makes.
pub const RECENT_BYTES: usize = 4 * 1024 * 1024;

/// An entry with about the memory it takes.
type KeptEntry = (Entry, usize);

/// About the memory `entry` takes, `encoded` bytes long: its text and numbers (which its
/// encoding holds) and the structures around them.
fn footprint(entry: &Entry, encoded: usize) -> usize {
    let envelopes = match &entry.payload {
        openraft::EntryPayload::Normal(p) => p.envelopes.len(),
        _ => 0,
    };
    encoded
        + std::mem::size_of::<Entry>()
        + envelopes * std::mem::size_of::<crate::command::Envelope>()
}

/// The last entries appended, in index order with no gap.
#[derive(Default)]
struct Recent {
    entries: VecDeque<KeptEntry>,
    bytes: usize,
}

impl Recent {
    /// Keeps `entries`, just appended after the log's last; forgets the oldest beyond
    /// [`RECENT_BYTES`].
    fn appended(&mut self, entries: Vec<KeptEntry>) {
        let Some((first, _)) = entries.first() else {
            return;
        };
        if self
            .entries
            .back()
            .is_some_and(|(e, _)| e.log_id.index + 1 != first.log_id.index)
        {
            self.entries.clear();
            self.bytes = 0;
        }
        for (entry, size) in entries {
            self.bytes += size;
            self.entries.push_back((entry, size));
        }
        while self.bytes > RECENT_BYTES && self.entries.len() > 1 {
            self.forget(VecDeque::pop_front);
        }
    }

    /// Forgets the entries from `index` on (cut off the log).
    fn truncate(&mut self, index: u64) {
        while self
            .entries
            .back()
            .is_some_and(|(e, _)| e.log_id.index >= index)
        {
            self.forget(VecDeque::pop_back);
        }
    }

    /// Forgets the entries up to `index` (purged from the log).
    fn purge(&mut self, index: u64) {
        while self
            .entries
            .front()
            .is_some_and(|(e, _)| e.log_id.index <= index)
        {
            self.forget(VecDeque::pop_front);
        }
    }

    /// Forgets the entry `end` takes off.
    fn forget(&mut self, end: fn(&mut VecDeque<KeptEntry>) -> Option<KeptEntry>) {
        if let Some((_, size)) = end(&mut self.entries) {
            self.bytes -= size;
        }
    }

    /// The entries `start..end` (a range that is not empty), if all of them are kept.
    fn get(&self, start: u64, end: u64) -> Option<Vec<Entry>> {
        let first = self.entries.front()?.0.log_id.index;
        let last = self.entries.back()?.0.log_id.index;
        if start >= end || start < first || end - 1 > last {
            return None;
        }
        let from = (start - first) as usize;
        let to = (end - first) as usize;
        Some(
            self.entries
                .range(from..to)
                .map(|(e, _)| e.clone())
                .collect(),
        )
    }
}

/// The Raft log store of a node; cloned as its own log reader.
#[derive(Clone)]
pub struct LogStore {
    store: Store,
    wal: Arc<Wal>,
    recent: Arc<Mutex<Recent>>,
    /// The state machine's applied index.
    applied: tokio::sync::watch::Receiver<u64>,
}

impl LogStore {
    /// Opens the log of `store`; `applied` follows the state machine's applied index. A log
    /// kept in sled's `raft_log` tree by an earlier version moves into the log files first.
    pub fn open(
        store: Store,
        applied: tokio::sync::watch::Receiver<u64>,
    ) -> Result<Self, StoreError> {
        let dir = store.dir().join(LOG_DIR);
        let purged = last_purged(&store)?.map(|l| l.index);
        let mut wal = Wal::open(&dir, purged)?;
        if let Some((last, _)) = store.raft_log.last()? {
            let last = log_key(&last)?;
            // The tree is emptied only once the files hold all of it: whatever files there are
            // before that are a move a crash interrupted, and are started over.
            if wal.last_index() != Some(last) {
                drop(wal);
                std::fs::remove_dir_all(&dir).map_err(|e| StoreError::io(&dir, e))?;
                wal = Wal::open(&dir, purged)?;
                let mut entries = Vec::new();
                for item in store.raft_log.iter() {
                    let (k, v) = item?;
                    entries.push((log_key(&k)?, v.to_vec()));
                }
                let (tx, rx) = std::sync::mpsc::channel();
                wal.append(entries, Box::new(move |r| drop(tx.send(r))))?;
                rx.recv()
                    .map_err(|_| StoreError::Codec("the Raft log's sync thread is gone".into()))?
                    .map_err(|e| StoreError::io(&dir, e))?;
            }
            store.raft_log.clear()?;
            store.flush_blocking()?;
        }
        Ok(LogStore {
            store,
            wal: Arc::new(wal),
            recent: Arc::default(),
            applied,
        })
    }

    fn recent(&self) -> std::sync::MutexGuard<'_, Recent> {
        self.recent.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Appends `entries` after the last one, and calls `done` once they are on disk.
    fn append_then(
        &self,
        entries: impl IntoIterator<Item = Entry>,
        done: Box<dyn FnOnce(std::io::Result<()>) + Send>,
    ) -> Result<(), StorageError> {
        let mut kept = Vec::new();
        let mut encoded = Vec::new();
        for entry in entries {
            let bytes = encode(&entry);
            let size = footprint(&entry, bytes.len());
            encoded.push((entry.log_id.index, bytes));
            kept.push((entry, size));
        }
        self.wal.append(encoded, done).map_err(write_err)?;
        // Kept once they are in the files: a read that comes between finds them there.
        self.recent().appended(kept);
        Ok(())
    }

    /// The index of the last entry in the log now (0: none), flushed or not.
    pub fn last_index_now(&self) -> u64 {
        self.wal.last_index().unwrap_or(0)
    }

    fn meta<T: serde::de::DeserializeOwned>(&self, key: &[u8]) -> Result<Option<T>, StorageError> {
        match self.store.raft_meta.get(key).map_err(read_err)? {
            Some(v) => Ok(Some(decode(&v).map_err(read_err)?)),
            None => Ok(None),
        }
    }

    fn set_meta<T: serde::Serialize>(&self, key: &[u8], value: &T) -> Result<(), StorageError> {
        self.store
            .raft_meta
            .insert(key, encode(value))
            .map_err(write_err)?;
        Ok(())
    }

    async fn flush(&self) -> Result<(), StorageError> {
        self.store.flush().await.map_err(write_err)
    }
}

/// The index a key of the old `raft_log` tree stands for.
fn log_key(k: &[u8]) -> Result<u64, StoreError> {
    k.try_into()
        .map(u64::from_be_bytes)
        .map_err(|_| StoreError::Codec(format!("a Raft log key of {} bytes", k.len())))
}

/// How long a purge waits for the state machine to reach the purged index.
const PURGE_WAIT: std::time::Duration = std::time::Duration::from_secs(300);

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + std::fmt::Debug + Send>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError> {
        let start = match range.start_bound() {
            Bound::Included(&n) => n,
            Bound::Excluded(&n) => n + 1,
            Bound::Unbounded => 0,
        };
        let end = match range.end_bound() {
            Bound::Included(&n) => n.saturating_add(1),
            Bound::Excluded(&n) => n,
            Bound::Unbounded => u64::MAX,
        };
        if let Some(entries) = self.recent().get(start, end) {
            return Ok(entries);
        }
        let mut out = Vec::new();
        for bytes in self.wal.read(start, end).map_err(read_err)? {
            out.push(decode::<Entry>(&bytes).map_err(read_err)?);
        }
        Ok(out)
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError> {
        let last_purged = last_purged(&self.store).map_err(read_err)?;
        let last = match self.wal.last_index() {
            Some(index) => {
                let bytes = self.wal.read(index, index + 1).map_err(read_err)?;
                let entry = bytes.first().ok_or_else(|| {
                    read_err(StoreError::Codec(format!(
                        "log entry {index} cannot be read"
                    )))
                })?;
                Some(decode::<Entry>(entry).map_err(read_err)?.log_id)
            }
            None => last_purged,
        };
        Ok(LogState {
            last_purged_log_id: last_purged,
            last_log_id: last,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<NodeId>) -> Result<(), StorageError> {
        self.set_meta(VOTE, vote)?;
        self.flush().await
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<NodeId>>, StorageError> {
        self.meta(VOTE)
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), StorageError> {
        // Not flushed: after a crash openraft learns the committed index from the leader again.
        self.set_meta(COMMITTED, &committed)
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, StorageError> {
        Ok(self.meta::<Option<LogId>>(COMMITTED)?.flatten())
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<TypeConfig>,
    ) -> Result<(), StorageError>
    where
        I: IntoIterator<Item = Entry> + Send,
        I::IntoIter: Send,
    {
        self.append_then(
            entries,
            Box::new(move |synced| callback.log_io_completed(synced)),
        )
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError> {
        // Forgotten here first: a read that comes between finds them in the files, as before.
        self.recent().truncate(log_id.index);
        let wal = self.wal.clone();
        tokio::task::spawn_blocking(move || wal.truncate(log_id.index))
            .await
            .map_err(write_err)?
            .map_err(write_err)
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError> {
        // The state machine's writes are made durable by sled's own cadence, not with each
        // append: before entries leave the log, the state machine must have them (openraft
        // purges as soon as it hands a follower's snapshot to the state machine, before it is
        // installed), and what it wrote, and the purge mark itself, are made durable.
        let mut applied = self.applied.clone();
        let reached = tokio::time::timeout(PURGE_WAIT, applied.wait_for(|a| *a >= log_id.index));
        if !matches!(reached.await, Ok(Ok(_))) {
            // Purging now would leave entries the state machine lacks nowhere (a snapshot whose
            // install failed, say); kept, a restart installs or applies them again.
            return Err(write_err(std::io::Error::other(format!(
                "the state machine has not reached log index {} after {PURGE_WAIT:?}; the log \
                 up to it is kept",
                log_id.index
            ))));
        }
        self.set_meta(LAST_PURGED, &log_id)?;
        self.flush().await?;
        self.recent().purge(log_id.index);
        let wal = self.wal.clone();
        tokio::task::spawn_blocking(move || wal.purge(log_id.index))
            .await
            .map_err(write_err)?
            .map_err(write_err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use openraft::{CommittedLeaderId, EntryPayload};

    fn blank(index: u64) -> Entry {
        Entry {
            log_id: LogId::new(CommittedLeaderId::new(1, 1), index),
            payload: EntryPayload::Blank,
        }
    }

    /// An entry of `term` carrying one state set of `bytes` bytes.
    fn write(term: u64, index: u64, bytes: usize) -> Entry {
        use crate::command::{Command, Envelope, Proposal};
        let set = Command::StateSet(crate::model::StateEntry {
            key: format!("k{index}"),
            value: "v".repeat(bytes),
            ..Default::default()
        });
        Entry {
            log_id: LogId::new(CommittedLeaderId::new(term, 1), index),
            payload: EntryPayload::Normal(Proposal {
                envelopes: vec![Envelope {
                    request_id: format!("r{term}-{index}"),
                    project: "p".into(),
                    now: 0,
                    stamp: Default::default(),
                    command: set,
                    accessor: String::new(),
                }]
                .into(),
            }),
        }
    }

    /// Appends `entries` and waits until they are on disk.
    fn append(log: &LogStore, entries: Vec<Entry>) {
        let (tx, rx) = std::sync::mpsc::channel();
        log.append_then(entries, Box::new(move |r| tx.send(r.is_ok()).unwrap()))
            .unwrap();
        assert!(rx.recv().unwrap());
    }

    /// `(term, index)` of each entry `range` reads, checked against what the files hold there
    /// (the whole entries, decoded from the files).
    async fn read(log: &mut LogStore, range: std::ops::RangeInclusive<u64>) -> Vec<(u64, u64)> {
        let entries = log.try_get_log_entries(range.clone()).await.unwrap();
        let in_files: Vec<Entry> = (log.wal.read(*range.start(), range.end() + 1).unwrap())
            .iter()
            .map(|bytes| decode(bytes).unwrap())
            .collect();
        assert_eq!(
            entries, in_files,
            "entries {range:?} read as the files hold them"
        );
        entries
            .iter()
            .map(|e| (e.log_id.leader_id.term, e.log_id.index))
            .collect()
    }

    /// Whether the entries `range` are read from memory.
    fn kept(log: &LogStore, range: std::ops::RangeInclusive<u64>) -> bool {
        log.recent().get(*range.start(), range.end() + 1).is_some()
    }

    #[tokio::test]
    async fn reads_of_recent_entries_follow_the_log_through_cuts_purges_and_restarts() {
        let tmp = tempfile::tempdir().unwrap();
        let store = Store::open(tmp.path()).unwrap();
        let (applied, applied_rx) = tokio::sync::watch::channel(0);
        let mut log = LogStore::open(store.clone(), applied_rx.clone()).unwrap();
        append(&log, (1..=5).map(|i| write(1, i, 10)).collect());
        assert!(
            kept(&log, 1..=5),
            "entries just appended are read from memory"
        );
        let first: Vec<(u64, u64)> = (1..=5).map(|i| (1, i)).collect();
        assert_eq!(read(&mut log, 1..=5).await, first);

        // A new leader cuts entries 3.. off and writes its own there.
        log.truncate(LogId::new(CommittedLeaderId::new(1, 1), 3))
            .await
            .unwrap();
        assert_eq!(read(&mut log, 1..=5).await, first[..2]);
        append(&log, (3..=6).map(|i| write(2, i, 10)).collect());
        assert!(kept(&log, 2..=6));
        let now = [(1, 2), (2, 3), (2, 4), (2, 5), (2, 6)];
        assert_eq!(read(&mut log, 2..=6).await, now);

        // Purged up to 2.
        applied.send_replace(6);
        log.purge(LogId::new(CommittedLeaderId::new(1, 1), 2))
            .await
            .unwrap();
        assert_eq!(read(&mut log, 1..=6).await, now[1..]);

        // More than is kept in memory: the older ones come from the files.
        let big = RECENT_BYTES / 4;
        append(&log, (7..=12).map(|i| write(2, i, big)).collect());
        assert!(
            kept(&log, 10..=12) && !kept(&log, 7..=12),
            "entry 7 is no longer kept"
        );
        let all: Vec<(u64, u64)> = (3..=12).map(|i| (2, i)).collect();
        assert_eq!(read(&mut log, 3..=12).await, all);

        // The entries read from memory are those the files give after a restart.
        let before = log.try_get_log_entries(10..=12).await.unwrap();
        drop(log);
        let mut log = LogStore::open(store, applied_rx).unwrap();
        assert!(!kept(&log, 10..=12));
        assert_eq!(log.try_get_log_entries(10..=12).await.unwrap(), before);
    }

    #[tokio::test]
    async fn a_log_kept_in_sled_by_an_earlier_version_moves_into_the_log_files() {
        let tmp = tempfile::tempdir().unwrap();
        let store = Store::open(tmp.path()).unwrap();
        for i in 0..5u64 {
            store
                .raft_log
                .insert(i.to_be_bytes(), encode(&blank(i)))
                .unwrap();
        }
        // A move a crash interrupted: the files hold only the first two entries.
        let partial = Wal::open(&tmp.path().join(LOG_DIR), None).unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let first_two = (0..2u64).map(|i| (i, encode(&blank(i)))).collect();
        partial
            .append(first_two, Box::new(move |r| tx.send(r.is_ok()).unwrap()))
            .unwrap();
        assert!(rx.recv().unwrap());
        drop(partial);

        let (_applied, applied_rx) = tokio::sync::watch::channel(0);
        let mut log = LogStore::open(store.clone(), applied_rx.clone()).unwrap();
        assert!(store.raft_log.is_empty(), "the sled tree is emptied");
        let state = log.get_log_state().await.unwrap();
        assert_eq!(state.last_log_id.map(|l| l.index), Some(4));
        let entries = log.try_get_log_entries(1..=3).await.unwrap();
        let indexes: Vec<u64> = entries.iter().map(|e| e.log_id.index).collect();
        assert_eq!(indexes, [1, 2, 3]);
        drop(log);

        // Opened again, the files hold the log.
        let mut log = LogStore::open(store, applied_rx).unwrap();
        let entries = log.try_get_log_entries(0..).await.unwrap();
        assert_eq!(entries.len(), 5);
    }
}
