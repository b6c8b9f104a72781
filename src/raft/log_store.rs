//! The Raft log and vote in sled. A vote or an appended entry is flushed to disk
//! (`flush_async`, on sled's own threads) before openraft is told it is stored.

use super::{read_err, write_err, Entry, LogId, NodeId, StorageError, TypeConfig};
use crate::storage::codec::{decode, encode};
use crate::storage::Store;
use openraft::storage::{LogFlushed, RaftLogStorage};
use openraft::{LogState, RaftLogReader, Vote};
use std::ops::{Bound, RangeBounds};

const VOTE: &[u8] = b"vote";
const COMMITTED: &[u8] = b"committed";
const LAST_PURGED: &[u8] = b"last_purged";

/// The Raft log store of a node; cloned as its own log reader.
#[derive(Clone)]
pub struct LogStore {
    store: Store,
}

impl LogStore {
    pub fn new(store: Store) -> Self {
        LogStore { store }
    }

    /// The highest log index the log holds or has purged (0 for an empty log).
    pub fn last_index(&self) -> Result<u64, StorageError> {
        let purged = self.meta::<LogId>(LAST_PURGED)?.map_or(0, |l| l.index);
        let last = match self.store.raft_log.last().map_err(read_err)? {
            Some((k, _)) => k
                .as_ref()
                .try_into()
                .map(u64::from_be_bytes)
                .map_err(read_err)?,
            None => 0,
        };
        Ok(purged.max(last))
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

fn index_key(index: u64) -> [u8; 8] {
    index.to_be_bytes()
}

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
            Bound::Included(&n) => Bound::Included(index_key(n)),
            Bound::Excluded(&n) => Bound::Excluded(index_key(n)),
            Bound::Unbounded => Bound::Unbounded,
        };
        let mut out = Vec::new();
        for item in self
            .store
            .raft_log
            .range::<[u8; 8], _>((Bound::Included(index_key(start)), end))
        {
            let (_, v) = item.map_err(read_err)?;
            out.push(decode::<Entry>(&v).map_err(read_err)?);
        }
        Ok(out)
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError> {
        let last_purged: Option<LogId> = self.meta(LAST_PURGED)?;
        let last = match self.store.raft_log.last().map_err(read_err)? {
            Some((_, v)) => Some(decode::<Entry>(&v).map_err(read_err)?.log_id),
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
        let mut batch = sled::Batch::default();
        for entry in entries {
            batch.insert(&index_key(entry.log_id.index), encode(&entry));
        }
        self.store.raft_log.apply_batch(batch).map_err(write_err)?;
        let flushed = self.store.flush().await;
        callback.log_io_completed(flushed.map_err(|e| std::io::Error::other(e.to_string())));
        Ok(())
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError> {
        let mut batch = sled::Batch::default();
        for item in self.store.raft_log.range(index_key(log_id.index)..) {
            let (k, _) = item.map_err(read_err)?;
            batch.remove(k);
        }
        self.store.raft_log.apply_batch(batch).map_err(write_err)?;
        self.flush().await
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError> {
        self.set_meta(LAST_PURGED, &log_id)?;
        let mut batch = sled::Batch::default();
        for item in self.store.raft_log.range(..=index_key(log_id.index)) {
            let (k, _) = item.map_err(read_err)?;
            batch.remove(k);
        }
        self.store.raft_log.apply_batch(batch).map_err(write_err)?;
        Ok(())
    }
}
