//! Write-behind of applied changes. An apply's writes are held in memory at first (its entries
//! are on a quorum's disks already, and a node that stops before they reach the store applies
//! them again from its log); [`run`] writes what has gathered to sled in one atomic batch, with
//! the applied log id, as soon as a reader waits for it, when they reach [`MAX_KEYS`], right
//! after the first apply that finds them held for [`HOLD`], or, when no apply comes, once they
//! have been held half as long again. Under load one batch then carries several entries: sled seals and
//! writes two buffers for every atomic batch and wakes its IO threads for each, which was a
//! quarter of a follower's CPU with one batch per entry. A batch is written just after an
//! apply because the next apply waits for it (it reads the store, and sled makes every read
//! wait while a batch goes in): under load entries are applied every few milliseconds, and a
//! batch written at once fits in the gap.
//!
//! Everything that reads the store waits for the changes it needs to land: the next apply reads
//! through the held writes, snapshots and installs land them first, and readers go through
//! [`Landing::want`] (see `Node::wait_applied`).
//!
//! A snapshot copies the store while nothing is written to it: [`Landing::freeze`] lands what
//! is held and stops the writing until the [`Frozen`] it returns is dropped. Applies go on
//! meanwhile, into the held changes (a copy of a store with a minute of request ids takes
//! about a second, which writes used to wait out).

use super::state_machine::Followers;
use crate::apply::Effect;
use crate::storage::kv::{batch_of, Writes};
use futures::FutureExt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{Mutex, MutexGuard, Notify};
use tokio::time::Instant;

/// How long applied changes are held in memory, when no reader waits for them, before the next
/// apply has them written; with no apply coming, they are written after half as long again.
/// Watch streams learn of changes when they land, so this is also their delay (60 ms at most);
/// reads never wait for it (a read that needs a change has it written at once).
pub const HOLD: Duration = Duration::from_millis(40);
/// The hold of a node that is the only member: with no replication round between entries,
/// applies follow each other without a gap for a batch, so batches stay small (a 40 ms hold
/// measured 15% fewer writes/s on one node: `docs/performance.md`).
pub const SOLO_HOLD: Duration = Duration::from_millis(5);
/// The most changed keys held before they are written without waiting.
pub const MAX_KEYS: usize = 8192;

/// Applied changes not yet in the store.
#[derive(Default)]
pub struct Held {
    /// The writes of every entry applied since the last batch, the applied log id's included.
    pub writes: Writes,
    /// The last log index whose changes are in `writes`.
    index: u64,
    /// The last log index whose changes are in the store (as far as this node wrote them).
    landed: u64,
    /// What to tell the search index and the watch streams once they are in the store.
    effects: Vec<Effect>,
    /// When the first of them was applied (`None`: nothing is held).
    since: Option<Instant>,
    /// Why a batch could not be written; nothing is written after it.
    pub broken: Option<String>,
}

/// The held changes of a node's state machine, and the settings and signals of its writer.
pub struct Landing {
    held: Mutex<Held>,
    /// How long changes may be held when no reader waits for them ([`HOLD`] but in tests).
    hold: Duration,
    /// Whether the node is the cluster's only member (then it holds for [`SOLO_HOLD`] at most).
    alone: AtomicBool,
    /// Testing only: how long a batch waits before it is written (zero: not at all).
    delay: Duration,
    /// Something is held: wakes the writer.
    filled: Notify,
    /// A reader waits, or the held changes grew large: write them now.
    urgent: Notify,
    /// The log indexes readers wait for, with how many wait for each (a reader's
    /// [`Wanted`] takes its own out when it stops waiting).
    wanted: std::sync::Mutex<std::collections::BTreeMap<u64, usize>>,
    /// A snapshot is copying the store: nothing is written to it. Set and cleared with the
    /// lock of the held changes taken, so whoever holds that lock and finds it clear may write.
    frozen: AtomicBool,
    /// The copy is done.
    thawed: Notify,
}

impl Landing {
    /// Nothing held yet; changes may be held for `hold`, and each batch waits `delay` first.
    pub fn new(hold: Duration, delay: Duration) -> Landing {
        Landing {
            held: Mutex::default(),
            hold,
            alone: AtomicBool::new(false),
            delay,
            filled: Notify::new(),
            urgent: Notify::new(),
            wanted: Default::default(),
            frozen: AtomicBool::new(false),
            thawed: Notify::new(),
        }
    }

    /// Follows the membership this node applied (or installed, or found at start): a node that
    /// is its cluster's only member holds for [`SOLO_HOLD`] at most.
    pub fn members(&self, membership: &openraft::Membership<super::NodeId, openraft::BasicNode>) {
        self.alone
            .store(membership.nodes().count() <= 1, Ordering::Relaxed);
    }

    /// How long changes are held now.
    fn hold_for(&self) -> Duration {
        if self.alone.load(Ordering::Relaxed) {
            self.hold.min(SOLO_HOLD)
        } else {
            self.hold
        }
    }

    /// The held changes. While a batch is being written the lock is held, so whoever takes it
    /// next finds those changes in the store.
    pub async fn lock(&self) -> MutexGuard<'_, Held> {
        self.held.lock().await
    }

    /// The held changes, once no snapshot is copying the store: the guard may [`land`] them.
    pub async fn lock_to_land(&self) -> MutexGuard<'_, Held> {
        loop {
            let thawed = self.thawed.notified();
            tokio::pin!(thawed);
            thawed.as_mut().enable();
            let held = self.held.lock().await;
            if !self.frozen.load(Ordering::Acquire) {
                return held;
            }
            drop(held);
            thawed.await;
        }
    }

    /// Lands what is held and stops writing to the store until the returned [`Frozen`] is
    /// dropped: the store then stays as it is at the last applied entry, for a snapshot to
    /// copy, while applies go on into the held changes. Readers that need what is applied
    /// meanwhile wait for the copy (they waited for the applies when the copy stopped them).
    pub async fn freeze(
        self: &Arc<Self>,
        state: &sled::Tree,
        followers: &Followers,
    ) -> Result<Frozen, String> {
        let mut held = self.lock_to_land().await;
        land(self, &mut held, state, followers).await?;
        self.frozen.store(true, Ordering::Release);
        Ok(Frozen(self.clone()))
    }

    /// Holds `writes`, the changes of the entries up to `index` (over those already held), and
    /// the entries' `effects`.
    pub fn hold(&self, held: &mut Held, writes: Writes, index: u64, effects: Vec<Effect>) {
        held.writes.extend(writes);
        held.index = index;
        held.effects.extend(effects);
        if held.since.is_none() {
            held.since = Some(Instant::now());
            self.filled.notify_one();
        }
        // A reader already waits for one of these entries, there are many, or they have been
        // held long enough: written now, before the next apply is due.
        if self.wanted_within(held.landed, index)
            || held.writes.len() >= MAX_KEYS
            || held
                .since
                .is_some_and(|since| since.elapsed() >= self.hold_for())
        {
            self.urgent.notify_one();
        }
    }

    /// A reader waits until `index` is in the store: what is held is written without delay, now
    /// and whenever an apply reaches `index`, until the returned guard is dropped.
    pub fn want(&self, index: u64) -> Wanted<'_> {
        *self
            .wanted
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(index)
            .or_default() += 1;
        self.urgent.notify_one();
        Wanted(self, index)
    }

    /// Whether a reader waits for an index after `landed` and up to `index`. (One that asked for
    /// an index far ahead, as a client's min-index may, does not hide those that wait for less.)
    fn wanted_within(&self, landed: u64, index: u64) -> bool {
        let wanted = self.wanted.lock().unwrap_or_else(|p| p.into_inner());
        wanted
            .range(landed.saturating_add(1)..)
            .next()
            .is_some_and(|(&w, _)| w <= index)
    }
}

/// A reader's wait for an index (see [`Landing::want`]).
pub struct Wanted<'a>(&'a Landing, u64);

impl Drop for Wanted<'_> {
    fn drop(&mut self) {
        let mut wanted = self.0.wanted.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = wanted.get_mut(&self.1) {
            *n -= 1;
            if *n == 0 {
                wanted.remove(&self.1);
            }
        }
    }
}

/// Writing to the store stopped for a snapshot's copy (see [`Landing::freeze`]); dropping it
/// starts it again.
pub struct Frozen(Arc<Landing>);

impl Drop for Frozen {
    fn drop(&mut self) {
        // Cleared without the lock: a writer waiting in `lock_to_land` registered for `thawed`
        // before it looked at the flag, so it is woken and looks again.
        self.0.frozen.store(false, Ordering::Release);
        self.0.thawed.notify_waiters();
        // What gathered meanwhile is written now.
        self.0.urgent.notify_one();
    }
}

/// Writes everything `held` in one atomic batch, then tells the search index, the watch streams
/// and the readers. The caller took `held` with [`Landing::lock_to_land`]: a snapshot may be
/// copying the store otherwise. A failed write is kept as the reason every later call fails
/// (Raft stops on this node at its next step; the entries stay in its log).
pub async fn land(
    landing: &Landing,
    held: &mut Held,
    state: &sled::Tree,
    followers: &Followers,
) -> Result<(), String> {
    if let Some(e) = &held.broken {
        return Err(e.clone());
    }
    if held.since.take().is_none() {
        return Ok(());
    }
    let writes = std::mem::take(&mut held.writes);
    let effects = std::mem::take(&mut held.effects);
    let index = held.index;
    held.landed = index;
    let state = state.clone();
    let delay = landing.delay;
    let written = tokio::task::spawn_blocking(move || {
        if !delay.is_zero() {
            std::thread::sleep(delay);
        }
        state.apply_batch(batch_of(writes))
    })
    .await;
    let error = match written {
        Ok(Ok(())) => {
            followers.publish(index, effects);
            return Ok(());
        }
        Ok(Err(e)) => e.to_string(),
        Err(e) => e.to_string(),
    };
    tracing::error!(
        error = %error,
        index,
        "writing applied entries to the store failed; Raft stops on this node at its next step, \
         and the entries stay in its log"
    );
    followers
        .landing_failed
        .store(true, std::sync::atomic::Ordering::Release);
    // Wakes the reads waiting for this batch, which now fail.
    followers.applied.send_modify(|_| {});
    held.broken = Some(error.clone());
    Err(error)
}

/// Runs as long as the node: writes the held changes when a reader wants them, when they reach
/// [`MAX_KEYS`], after an apply that finds them held for [`Landing::new`]'s `hold` ([`HOLD`]),
/// or after half as long again.
pub async fn run(landing: Arc<Landing>, state: sled::Tree, followers: Followers) {
    loop {
        landing.filled.notified().await;
        let (since, index, landed) = {
            let held = landing.lock().await;
            (held.since, held.index, held.landed)
        };
        let Some(since) = since else { continue };
        // A reader that waits for an entry not applied yet is told by `hold` when it is; one
        // that asks for an index far ahead (a client's min-index can be anything) does not
        // stop the batching.
        if !landing.wanted_within(landed, index) {
            let until = since
                .checked_add(landing.hold_for() * 3 / 2)
                .unwrap_or_else(|| Instant::now() + Duration::from_secs(86_400));
            tokio::select! {
                _ = landing.urgent.notified() => {}
                _ = tokio::time::sleep_until(until) => {}
            }
        }
        let mut held = landing.lock_to_land().await;
        // A failure is logged and kept in `held`, where the state machine finds it.
        let _ = land(&landing, &mut held, &state, &followers).await;
        drop(held);
        // A reader's request that this batch answered is not a reason to cut the next one
        // short.
        let _ = landing.urgent.notified().now_or_never();
    }
}
