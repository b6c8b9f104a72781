//! The openraft state machine adapter: applies committed entries through [`crate::apply`],
//! their changes and the applied log id written to sled together, one atomic batch for one or
//! more calls; then feeds the search index and the watch streams; builds and installs snapshots
//! of the whole `state` tree.
//!
//! The results of an apply go back to the clients before its writes are in the store: they are
//! held in memory and written behind, several entries' in one batch ([`super::landing`]); the
//! entries are already on a quorum's disks, and a node that stops before the batch lands applies
//! them again from its log at the next start. Everything that reads the store waits for the
//! changes it needs instead: the next apply reads through the held writes, a snapshot and an
//! install land them first, and reads and new watch streams wait for the applied index (which
//! moves only once a batch has landed) to reach [`Followers::answered`]. An entry that changes
//! API keys lands before its answer, because the key check reads the store directly.

use super::landing::{self, Landing};
use super::{read_err, write_err, Entry, LogId, StorageError, StoredMembership, TypeConfig};
use crate::apply::{self, Effect, RequestChanges, RequestIndex};
use crate::command::{Command, ProposalResult};
use crate::search::{IndexOp, SearchIndex};
use crate::storage::keys;
use crate::storage::snapshot::{self, SnapshotFiles};
use crate::storage::{records, Store, Txn};
use openraft::storage::RaftStateMachine;
use openraft::{EntryPayload, RaftSnapshotBuilder, Snapshot, SnapshotMeta};
use std::io::Cursor;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use tokio::sync::{broadcast, watch};

const APPLIED: &str = "applied";
const MEMBERSHIP: &str = "membership";
/// The ids of the nodes removed from the cluster: they are not given to a new node again, and
/// their Raft messages are refused (which is how a removed node that is still running learns).
const REMOVED: &str = "removed";

/// The ids of the nodes removed from the cluster, as far as this node has applied.
pub type RemovedIds = Arc<std::sync::RwLock<std::collections::BTreeSet<u64>>>;

/// The removed ids stored in the `state` tree.
pub fn stored_removed(
    store: &Store,
) -> Result<std::collections::BTreeSet<u64>, crate::storage::StoreError> {
    Ok(records::get(&store.state, &keys::meta(REMOVED))?.unwrap_or_default())
}

type Meta = SnapshotMeta<u64, openraft::BasicNode>;

/// What the state machine tells the rest of the node after each apply.
#[derive(Clone)]
pub struct Followers {
    pub search: Arc<SearchIndex>,
    /// Task, message and state changes for the watch streams.
    pub events: broadcast::Sender<Effect>,
    /// The applied log index: its batch is in the store.
    pub applied: watch::Sender<u64>,
    /// The highest index whose results were returned; its batch may still be landing.
    pub answered: Arc<AtomicU64>,
    /// Set when a batch could not be written: reads that wait for it fail instead.
    pub landing_failed: Arc<AtomicBool>,
    /// The store's memory of whether keys are on ([`Store::keys`]).
    pub keys: Arc<crate::storage::KeysMemo>,
    /// The store's memory of the cluster's id ([`crate::storage::Store::cluster`]).
    pub cluster: Arc<crate::storage::ClusterMemo>,
    /// The ids of the nodes removed from the cluster.
    pub removed: RemovedIds,
}

impl Followers {
    /// Tells the search index, the watch streams and the readers about the batch up to `index`,
    /// which is in the store now.
    pub(super) fn publish(&self, index: u64, effects: Vec<Effect>) {
        // The batch may have changed the keys: read again by the next check, which may be a
        // read that waited for this index.
        self.keys.forget();
        // A cluster's id never changes once named (a snapshot's install forgets it anyway).
        self.cluster.forget_unless(Option::is_some);
        let mut ops = Vec::new();
        for e in effects {
            match e {
                Effect::MemoryPut { project, memory } => ops.push(IndexOp::Put { project, memory }),
                Effect::MemoryRemoved { project, id } => ops.push(IndexOp::Remove { project, id }),
                other => {
                    // No receiver is not an error: nobody is watching.
                    let _ = self.events.send(other);
                }
            }
        }
        self.search.changed(index, ops);
        self.applied.send_modify(|a| *a = (*a).max(index));
    }
}

/// The state machine of a node.
pub struct StateMachine {
    store: Store,
    followers: Followers,
    snapshots: Arc<SnapshotFiles>,
    /// Where each remembered request id's result is stored, derived from the store.
    requests: RequestIndex,
    /// The applied changes not yet in the store.
    landing: Arc<Landing>,
    /// Testing only: how long a snapshot's copy waits before it starts.
    copy_delay: std::time::Duration,
}

/// The applied log id and membership stored in the `state` tree.
pub fn stored_applied(
    store: &Store,
) -> Result<(Option<LogId>, StoredMembership), crate::storage::StoreError> {
    let applied = records::get::<Option<LogId>>(&store.state, &keys::meta(APPLIED))?.flatten();
    let membership = records::get(&store.state, &keys::meta(MEMBERSHIP))?.unwrap_or_default();
    Ok((applied, membership))
}

impl StateMachine {
    /// The state machine of a node whose held changes `landing` keeps (written behind by
    /// [`landing::run`]).
    pub fn new(
        store: Store,
        followers: Followers,
        landing: Arc<Landing>,
    ) -> Result<Self, crate::storage::StoreError> {
        let snapshots = Arc::new(SnapshotFiles::new(store.snapshot_dir()));
        let requests = RequestIndex::load(&store.state)?;
        Ok(StateMachine {
            store,
            followers,
            snapshots,
            requests,
            landing,
            copy_delay: std::time::Duration::ZERO,
        })
    }

    /// Testing only: each snapshot's copy of the store waits `delay` before it starts.
    pub fn with_copy_delay(mut self, delay: std::time::Duration) -> Self {
        self.copy_delay = delay;
        self
    }

    /// Writes the held changes to the store now. A failed write stops Raft on this node, as a
    /// failed apply does; the entries stay in the log for the next start.
    async fn landed(&mut self) -> Result<(), StorageError> {
        let mut held = self.landing.lock_to_land().await;
        landing::land(&self.landing, &mut held, &self.store.state, &self.followers)
            .await
            .map_err(broken)
    }
}

/// The error of every call after a batch could not be written.
fn broken(e: String) -> StorageError {
    write_err(std::io::Error::other(format!(
        "writing applied entries to the store failed: {e}"
    )))
}

/// Whether an entry changes API keys (its batch then lands before the answer).
fn changes_keys(proposal: &crate::command::Proposal) -> bool {
    proposal.envelopes.iter().any(|e| {
        matches!(
            e.command,
            Command::AuthEnable { .. } | Command::AuthKeyCreate(_) | Command::AuthKeyRevoke { .. }
        )
    })
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotBuilder = SnapshotBuilder;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), StorageError> {
        self.landed().await?;
        stored_applied(&self.store).map_err(read_err)
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<ProposalResult>, StorageError>
    where
        I: IntoIterator<Item = Entry> + Send,
        I::IntoIter: Send,
    {
        // This apply reads what the last ones wrote, held or in the store (a batch being
        // written holds the lock until it is in).
        let landing = self.landing.clone();
        let mut held = landing.lock().await;
        if let Some(e) = &held.broken {
            return Err(broken(e.clone()));
        }
        // Should this apply fail, Raft stops here; the held writes of earlier entries, which
        // were answered, stay apart from this apply's and still land.
        let mut txn = Txn::over(&self.store.state, &held.writes);
        let mut keys_changed = false;
        let mut changes = RequestChanges::default();
        let mut results = Vec::new();
        let mut effects = Vec::new();
        let mut last = None;
        for entry in entries {
            let index = entry.log_id.index;
            match entry.payload {
                EntryPayload::Blank => results.push(ProposalResult::default()),
                EntryPayload::Normal(proposal) => {
                    keys_changed |= changes_keys(&proposal);
                    let out = apply::apply_entry(
                        &mut txn,
                        &self.requests,
                        &mut changes,
                        &proposal.envelopes,
                        index,
                        &mut effects,
                    )
                    .map_err(write_err)?;
                    results.push(ProposalResult { results: out });
                }
                EntryPayload::Membership(m) => {
                    landing.members(&m);
                    // The nodes of the last membership that this one leaves out are removed
                    // for good (a node added again gets a new id).
                    let before: StoredMembership = records::get(&txn, &keys::meta(MEMBERSHIP))
                        .map_err(read_err)?
                        .unwrap_or_default();
                    let now: std::collections::BTreeSet<u64> =
                        m.nodes().map(|(id, _)| *id).collect();
                    let mut removed: std::collections::BTreeSet<u64> =
                        records::get(&txn, &keys::meta(REMOVED))
                            .map_err(read_err)?
                            .unwrap_or_default();
                    let gone: Vec<u64> = before
                        .membership()
                        .nodes()
                        .map(|(id, _)| *id)
                        .filter(|id| !now.contains(id))
                        .collect();
                    if !gone.is_empty() || removed.iter().any(|id| now.contains(id)) {
                        removed.extend(gone);
                        removed.retain(|id| !now.contains(id));
                        records::put(&mut txn, keys::meta(REMOVED), &removed);
                        *self
                            .followers
                            .removed
                            .write()
                            .unwrap_or_else(|p| p.into_inner()) = removed;
                    }
                    let stored = StoredMembership::new(Some(entry.log_id), m);
                    records::put(&mut txn, keys::meta(MEMBERSHIP), &stored);
                    results.push(ProposalResult::default());
                }
            }
            last = Some(entry.log_id);
        }
        let Some(last) = last else { return Ok(results) };
        records::put(&mut txn, keys::meta(APPLIED), &Some(last));
        let writes = txn.into_writes();
        self.requests.commit(changes);
        landing.hold(&mut held, writes, last.index, effects);
        drop(held);
        if keys_changed {
            // Written before the answer (after a snapshot's copy, should one be running).
            let mut held = landing.lock_to_land().await;
            landing::land(&landing, &mut held, &self.store.state, &self.followers)
                .await
                .map_err(broken)?;
        }
        self.followers
            .answered
            .fetch_max(last.index, Ordering::Release);
        Ok(results)
    }

    async fn get_snapshot_builder(&mut self) -> SnapshotBuilder {
        // Everything applied so far lands, and nothing more is written until the builder has
        // copied the store: the copy is the state at the last applied entry, while the next
        // applies go on into the held changes.
        let frozen = self
            .landing
            .freeze(&self.store.state, &self.followers)
            .await;
        tracing::info!("copying the store for a snapshot (applies go on meanwhile)");
        SnapshotBuilder {
            frozen: Some(frozen),
            state: self.store.state.clone(),
            snapshots: self.snapshots.clone(),
            delay: self.copy_delay,
        }
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>, StorageError> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &Meta,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError> {
        self.landed().await?;
        let data = snapshot.into_inner();
        let mut pairs = snapshot::decode(&data).map_err(read_err)?;
        // The metadata openraft hands over is authoritative for the applied id and membership.
        pairs.retain(|(k, _)| *k != keys::meta(APPLIED) && *k != keys::meta(MEMBERSHIP));
        pairs.push((
            keys::meta(APPLIED),
            crate::storage::codec::encode(&meta.last_log_id),
        ));
        pairs.push((
            keys::meta(MEMBERSHIP),
            crate::storage::codec::encode(&meta.last_membership),
        ));
        let state = self.store.state.clone();
        let files = self.snapshots.clone();
        let meta_json = serde_json::to_vec(meta).map_err(write_err)?;
        let index = meta.last_log_id.map_or(0, |l| l.index);
        let bytes = data.len();
        // Off the async threads: the store replaced and flushed, the request ids read back, the
        // snapshot saved and synced.
        let keys = self.store.keys.clone();
        let cluster = self.store.cluster.clone();
        let requests = tokio::task::spawn_blocking(move || {
            snapshot::replace_tree(&state, pairs).map_err(write_err)?;
            // Key checks see the snapshot's keys (and Raft messages its cluster) from now on.
            keys.forget();
            cluster.forget();
            let requests = RequestIndex::load(&state).map_err(read_err)?;
            files.save(index, &meta_json, &data).map_err(write_err)?;
            Ok::<_, StorageError>(requests)
        })
        .await
        .map_err(write_err)??;
        self.requests = requests;
        self.landing.members(meta.last_membership.membership());
        let removed = stored_removed(&self.store).map_err(read_err)?;
        *self
            .followers
            .removed
            .write()
            .unwrap_or_else(|p| p.into_inner()) = removed;
        tracing::info!(index, bytes, "installed a snapshot");
        self.followers.search.rebuild(index);
        self.followers.applied.send_modify(|a| *a = index);
        let _ = self.followers.events.send(Effect::Skipped { index });
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<TypeConfig>>, StorageError> {
        let files = self.snapshots.clone();
        let Some(saved) = tokio::task::spawn_blocking(move || files.load())
            .await
            .map_err(read_err)?
            .map_err(read_err)?
        else {
            return Ok(None);
        };
        let meta: Meta = serde_json::from_slice(&saved.meta).map_err(read_err)?;
        // A snapshot older than the log's start cannot bring a follower up to it (the node
        // stopped between installing a newer one and saving it): none, so a new one is built.
        let purged = super::log_store::last_purged(&self.store).map_err(read_err)?;
        if purged.map(|p| p.index) > meta.last_log_id.map(|l| l.index) {
            tracing::warn!(
                snapshot = meta.last_log_id.map_or(0, |l| l.index),
                purged = purged.map_or(0, |p| p.index),
                "the saved snapshot is older than the log's start; a new one will be built"
            );
            return Ok(None);
        }
        Ok(Some(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(saved.data)),
        }))
    }
}

/// Builds a snapshot from a copy of the store taken while nothing is written to it.
pub struct SnapshotBuilder {
    /// Writing to the store stopped until the copy is taken (or why it could not be); taken
    /// by the build.
    frozen: Option<Result<landing::Frozen, String>>,
    state: sled::Tree,
    snapshots: Arc<SnapshotFiles>,
    /// Testing only: how long the copy waits before it starts.
    delay: std::time::Duration,
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError> {
        let frozen = self
            .frozen
            .take()
            .ok_or_else(|| write_err(std::io::Error::other("the snapshot was already built")))?
            .map_err(broken)?;
        let state = self.state.clone();
        let started = std::time::Instant::now();
        let delay = self.delay;
        let pairs = tokio::task::spawn_blocking(move || {
            std::thread::sleep(delay);
            snapshot::copy_tree(&state)
        })
        .await
        .map_err(read_err)?
        .map_err(read_err)?;
        // Copied: what was applied meanwhile may be written.
        drop(frozen);
        tracing::info!(
            pairs = pairs.len(),
            ms = started.elapsed().as_millis() as u64,
            "copied the store for a snapshot"
        );
        let find = |name: &str| {
            let key = keys::meta(name);
            pairs
                .iter()
                .find(|(k, _)| *k == key)
                .map(|(_, v)| v.clone())
        };
        let last_log_id: Option<LogId> = match find(APPLIED) {
            Some(v) => crate::storage::codec::decode(&v).map_err(read_err)?,
            None => None,
        };
        let last_membership: StoredMembership = match find(MEMBERSHIP) {
            Some(v) => crate::storage::codec::decode(&v).map_err(read_err)?,
            None => StoredMembership::default(),
        };
        let snapshot_id = match last_log_id {
            Some(l) => format!("{}-{}-{}", l.leader_id.term, l.index, ulid::Ulid::new()),
            None => format!("0-0-{}", ulid::Ulid::new()),
        };
        let meta = Meta {
            last_log_id,
            last_membership,
            snapshot_id,
        };
        let files = self.snapshots.clone();
        let meta_json = serde_json::to_vec(&meta).map_err(write_err)?;
        let index = last_log_id.map_or(0, |l| l.index);
        let data = tokio::task::spawn_blocking(move || {
            let data = snapshot::encode(&pairs);
            // Not saved when a newer one, installed from the leader meanwhile, already is.
            files.save(index, &meta_json, &data).map(|_| data)
        })
        .await
        .map_err(write_err)?
        .map_err(write_err)?;
        tracing::info!(
            index = last_log_id.map_or(0, |l| l.index),
            bytes = data.len(),
            "built a snapshot"
        );
        Ok(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(data)),
        })
    }
}
