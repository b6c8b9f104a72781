//! The sled store of one node: the data directory, the trees, key encodings, typed accessors over
//! a small key-value trait, the Raft log and snapshots.
//!
//! Data directory layout:
//! - `aide.meta` — JSON identity of the store (format, store id, node id); its presence marks an
//!   aide data directory.
//! - `db/` — sled: trees `raft_meta` (vote, committed and purged log ids) and `state` (every
//!   replicated record plus the applied log id, written together in one atomic batch); the
//!   `raft_log` tree held the Raft log before it moved to `raft-log/` and is emptied at start.
//! - `raft-log/` — the Raft log in segment files, and a zero-filled spare segment
//!   (`crate::raft::wal`).
//! - `search/` — the tantivy index, derived from `state` and rebuilt from it when needed.
//! - `snapshots/` — the newest Raft snapshot.
//! - `durable.mark` — the applied log index the database last made durable, written after a
//!   flush about once a second: a database found holding less at start has lost data (sled
//!   takes a damaged log for a torn write and quietly drops everything after it).

pub mod codec;
pub mod keys;
pub mod kv;
mod meta;
pub mod records;
pub mod snapshot;

pub use kv::{KvRead, Txn};
pub use meta::StoreMeta;

use std::path::{Path, PathBuf};

/// What to do with a damaged store; the end of every "damaged" error.
pub const RECOVERY: &str = "keep the directory for inspection and move it aside. In a cluster, \
    remove this node (`aide cluster remove ID` on any member) and start it on an empty data \
    directory with `--join MEMBER`: it receives everything from its peers. A single node has no \
    peers to copy from: restore the directory from a backup";

/// Runs `f`, turning a panic inside it into an error with the panic's message, without the
/// panic being printed.
fn quietly_catching_panics<T>(f: impl FnOnce() -> T) -> Result<T, String> {
    static HOOK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _one = HOOK.lock().unwrap_or_else(|p| p.into_inner());
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
    std::panic::set_hook(hook);
    r.map_err(|p| {
        p.downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| p.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "the database library panicked".to_string())
    })
}

/// The file recording the applied index last known to be durable in the database.
const DURABLE_MARK: &str = "durable.mark";
/// The file that says this data directory's node was removed from its cluster (and why).
const REMOVED_MARK: &str = "removed.mark";

/// Writes `bytes` to `tmp`, syncs it, and renames it over `path`: a crash leaves the old file
/// or the new one, never a part.
fn replace_file(path: &Path, tmp: &Path, bytes: &[u8]) -> Result<(), StoreError> {
    let mut f = std::fs::File::create(tmp).map_err(|e| StoreError::io(tmp, e))?;
    std::io::Write::write_all(&mut f, bytes)
        .and_then(|_| f.sync_all())
        .map_err(|e| StoreError::io(tmp, e))?;
    std::fs::rename(tmp, path).map_err(|e| StoreError::io(path, e))
}

/// sled's page cache: 64 MiB (sled's own default is 1 GiB).
pub const CACHE_BYTES: u64 = 64 * 1024 * 1024;

/// What can go wrong in the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("sled: {0}")]
    Sled(#[from] sled::Error),
    #[error("i/o on {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("a stored record cannot be decoded: {0}")]
    Codec(String),
    #[error(
        "{0} is not an aide data directory: it is not empty and has no aide.meta; \
         pass an empty or new directory with --data-dir"
    )]
    NotAnAideDir(PathBuf),
    #[error(
        "the aide store in {0} is in use by another aide process (a node serving it, or a \
         command using it locally); stop that process, or talk to it with --remote"
    )]
    InUse(PathBuf),
    #[error("the aide store in {dir} is damaged: {problem}")]
    Damaged { dir: PathBuf, problem: String },
}

impl StoreError {
    pub(crate) fn io(path: &Path, source: std::io::Error) -> Self {
        StoreError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}

/// An open data directory: the sled database and its trees.
#[derive(Clone)]
pub struct Store {
    dir: PathBuf,
    meta: StoreMeta,
    db: sled::Db,
    /// Raft log entries by index, as an earlier version kept them (moved out at start).
    pub raft_log: sled::Tree,
    /// Vote, committed and purged log ids.
    pub raft_meta: sled::Tree,
    /// Every replicated record and the state machine's own metadata.
    pub state: sled::Tree,
    /// Serializes writes of the durable mark.
    mark_lock: std::sync::Arc<std::sync::Mutex<()>>,
    /// Whether API keys are on here, and the node secret (`crate::apply::auth::keys_on`): read
    /// from `state` once, then from memory until the state machine writes a batch of applied
    /// changes or installs a snapshot (before it reports the new applied index, so that a read
    /// that waited for it checks keys as they are then), so that checking a request does not
    /// read sled each time (nor wait on its lock while a batch goes in).
    pub keys: std::sync::Arc<KeysMemo>,
    /// The cluster's id (`crate::apply::cluster::known`), kept in memory the same way.
    pub cluster: std::sync::Arc<ClusterMemo>,
}

/// [`Store::keys`]: whether API keys are on, and the node secret.
pub type KeysMemo = Memo<(bool, Option<std::sync::Arc<str>>)>;

/// The store's memory of the cluster's id.
pub type ClusterMemo = Memo<Option<std::sync::Arc<str>>>;

/// A value read from the store, kept in memory until [`Memo::forget`] says the store may hold
/// another: a reader that began before the change does not keep what it read.
#[derive(Debug, Default)]
pub struct Memo<T> {
    /// How many times it was forgotten, and the value read since the last time.
    inner: std::sync::Mutex<(u64, Option<T>)>,
}

impl<T: Clone> Memo<T> {
    /// The value in memory, else what `read` reads (kept, unless forgotten meanwhile).
    pub fn get<E>(&self, read: impl FnOnce() -> Result<T, E>) -> Result<T, E> {
        let generation = {
            let inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(v) = &inner.1 {
                return Ok(v.clone());
            }
            inner.0
        };
        let value = read()?;
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if inner.0 == generation {
            inner.1 = Some(value.clone());
        }
        Ok(value)
    }

    /// The store may have changed, unless the value in memory is one that `keeps` says cannot
    /// change: the next [`Memo::get`] reads it again.
    pub fn forget_unless(&self, keeps: impl Fn(&T) -> bool) {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if inner.1.as_ref().is_some_and(keeps) {
            return;
        }
        inner.0 += 1;
        inner.1 = None;
    }

    /// The store may have changed: the next [`Memo::get`] reads it again.
    pub fn forget(&self) {
        self.forget_unless(|_| false);
    }
}

impl Store {
    /// Opens (creating if new) the aide data directory `dir`. A directory that holds something
    /// else, or a damaged store, is refused with an error that says so; nothing is changed in it.
    pub fn open(dir: &Path) -> Result<Store, StoreError> {
        let meta = StoreMeta::load_or_create(dir)?;
        let db_path = dir.join("db");
        let damaged = |cause: String| StoreError::Damaged {
            dir: dir.to_path_buf(),
            problem: format!(
                "the database in {} cannot be opened ({cause}); {RECOVERY}",
                db_path.display()
            ),
        };
        let config = sled::Config::new()
            .path(&db_path)
            .cache_capacity(CACHE_BYTES)
            .flush_every_ms(Some(200));
        // sled panics on some kinds of damage instead of returning an error.
        let db = quietly_catching_panics(|| config.open())
            .map_err(damaged)?
            .map_err(|e| match e {
                sled::Error::Io(io) if io.to_string().contains("could not acquire lock") => {
                    StoreError::InUse(dir.to_path_buf())
                }
                e => damaged(e.to_string()),
            })?;
        let raft_log = db.open_tree("raft_log")?;
        let raft_meta = db.open_tree("raft_meta")?;
        let state = db.open_tree("state")?;
        Ok(Store {
            dir: dir.to_path_buf(),
            meta,
            db,
            raft_log,
            raft_meta,
            state,
            mark_lock: Default::default(),
            keys: Default::default(),
            cluster: Default::default(),
        })
    }

    /// The data directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The store's identity.
    pub fn meta(&self) -> &StoreMeta {
        &self.meta
    }

    /// Records the node id this store belongs to.
    pub fn set_node_id(&mut self, node_id: u64) -> Result<(), StoreError> {
        self.meta.node_id = Some(node_id);
        self.meta.save(&self.dir)
    }

    /// The highest applied log index this store has recorded as durable, if any.
    pub fn durable_mark(&self) -> Result<Option<u64>, StoreError> {
        let path = self.dir.join(DURABLE_MARK);
        match std::fs::read_to_string(&path) {
            Ok(text) => text
                .trim()
                .parse()
                .map(Some)
                .map_err(|_| StoreError::Damaged {
                    dir: self.dir.clone(),
                    problem: format!("{} does not hold a log index", path.display()),
                }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(StoreError::io(&path, e)),
        }
    }

    /// Flushes the database, then records `applied` (read before the flush) as durable: at the
    /// next start, a database that holds less than that has lost writes it had made durable.
    pub async fn record_durable(&self, applied: u64) -> Result<(), StoreError> {
        self.flush().await?;
        let path = self.dir.join(DURABLE_MARK);
        let tmp = self.dir.join(format!("{DURABLE_MARK}.tmp"));
        let lock = self.mark_lock.clone();
        tokio::task::spawn_blocking(move || -> Result<(), StoreError> {
            // One writer at a time (a shutdown may overlap the periodic one), never lowering it.
            let _one = lock.lock().unwrap_or_else(|p| p.into_inner());
            let on_disk = std::fs::read_to_string(&path)
                .ok()
                .and_then(|t| t.trim().parse::<u64>().ok())
                .unwrap_or(0);
            if applied <= on_disk {
                return Ok(());
            }
            replace_file(&path, &tmp, applied.to_string().as_bytes())
        })
        .await
        .map_err(|e| StoreError::Codec(e.to_string()))?
    }

    /// Why this data directory's node was removed from its cluster, when it was: such a node
    /// must not serve again (its data stops at its removal, and its id is not used again).
    pub fn removed_mark(&self) -> Result<Option<String>, StoreError> {
        let path = self.dir.join(REMOVED_MARK);
        match std::fs::read_to_string(&path) {
            Ok(text) => Ok(Some(text.trim().to_string())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(StoreError::io(&path, e)),
        }
    }

    /// Records that this node was removed from its cluster, and `why` (see [`Store::removed_mark`]).
    pub fn mark_removed(&self, why: &str) -> Result<(), StoreError> {
        let path = self.dir.join(REMOVED_MARK);
        let tmp = self.dir.join(format!("{REMOVED_MARK}.tmp"));
        replace_file(&path, &tmp, why.as_bytes())
    }

    /// Makes every write so far durable.
    pub async fn flush(&self) -> Result<(), StoreError> {
        self.db.flush_async().await?;
        Ok(())
    }

    /// Makes every write so far durable, blocking the calling thread.
    pub fn flush_blocking(&self) -> Result<(), StoreError> {
        self.db.flush()?;
        Ok(())
    }

    /// The directory of the search index.
    pub fn search_dir(&self) -> PathBuf {
        self.dir.join("search")
    }

    /// The directory of snapshots.
    pub fn snapshot_dir(&self) -> PathBuf {
        self.dir.join("snapshots")
    }
}

#[cfg(test)]
mod tests {
    use super::Memo;

    #[test]
    fn a_memo_reads_once_until_forgotten_and_drops_a_read_that_a_change_overtook() {
        let memo = Memo::<u32>::default();
        let mut reads = 0;
        let mut read = |v| {
            reads += 1;
            Ok::<_, ()>(v)
        };
        assert_eq!(memo.get(|| read(1)), Ok(1));
        assert_eq!(memo.get(|| read(2)), Ok(1), "kept in memory");
        memo.forget();
        assert_eq!(memo.get(|| read(3)), Ok(3), "read again once forgotten");
        assert_eq!(reads, 2);

        // A read that was under way when the store changed answers what it read, but is not
        // kept: the next caller reads again.
        memo.forget();
        assert_eq!(
            memo.get(|| {
                memo.forget();
                Ok::<_, ()>(4)
            }),
            Ok(4)
        );
        assert_eq!(memo.get(|| Ok::<_, ()>(5)), Ok(5));
        assert_eq!(memo.get(|| Ok::<_, ()>(6)), Ok(5));
    }
}
