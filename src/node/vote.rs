//! Whether a node that started with no log may vote.
//!
//! Such a node stands, when it is asked to vote, for a voter whose data was lost (a node joins
//! as a learner and is caught up before it votes). Were it to vote before it holds every entry
//! its cluster had committed, it could elect, with a member that missed the last writes, a
//! leader without them, and acknowledged writes would be lost. So it votes only once its log
//! reaches the last index the first leader to reach it named (`x-aide-last-log`: a leader holds
//! every committed entry). Entries committed after that were acknowledged by the node as it is
//! now, with its log, so the barrier does not move; it is kept in the store until lifted, so a
//! restart in between does not lift it.

use crate::storage::{Store, StoreError};
use std::sync::Mutex;

/// The key of the barrier's index in the `raft_meta` tree.
const KEY: &[u8] = b"vote_barrier";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Barrier {
    /// Started with no membership, and no leader has reached it yet.
    Empty,
    /// Its log must reach this index first.
    Until(u64),
    /// It votes.
    Open,
}

/// Why a node may not vote now.
#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    #[error(
        "it has no log yet (it was started empty in place of a voter); it votes once it has the \
         entries a leader sends it"
    )]
    NoLog,
    #[error(
        "it started empty and its log reaches index {last}, short of index {index}, where the \
         log of the first leader to reach it ended"
    )]
    Behind { last: u64, index: u64 },
    #[error("keeping the vote barrier: {0}")]
    Store(#[from] StoreError),
}

/// A node's vote barrier.
pub struct VoteGate(Mutex<Barrier>);

impl VoteGate {
    /// The barrier of a node whose store is `store`: the kept index, else closed when the node
    /// starts with no voters in its membership (`empty`).
    pub(crate) fn load(store: &Store, empty: bool) -> Result<VoteGate, StoreError> {
        let barrier = match store.raft_meta.get(KEY)? {
            Some(v) => {
                let bytes: [u8; 8] = v.as_ref().try_into().map_err(|_| {
                    StoreError::Codec(format!("a vote barrier of {} bytes", v.len()))
                })?;
                Barrier::Until(u64::from_be_bytes(bytes))
            }
            None if empty => Barrier::Empty,
            None => Barrier::Open,
        };
        Ok(VoteGate(Mutex::new(barrier)))
    }

    fn get(&self) -> Barrier {
        *self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn set(&self, barrier: Barrier) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = barrier;
    }

    /// Whether no leader has reached this empty node yet: only then does an append's view of
    /// the leader's log matter.
    pub fn waits_for_a_leader(&self) -> bool {
        self.get() == Barrier::Empty
    }

    /// The first leader to reach this empty node showed its log ending at `shown`: kept in
    /// `store` (flushed) before the node takes the message.
    pub async fn leader_reached(&self, store: &Store, shown: u64) -> Result<(), StoreError> {
        if !self.waits_for_a_leader() {
            return Ok(());
        }
        store.raft_meta.insert(KEY, &shown.to_be_bytes())?;
        store.flush().await?;
        let mut barrier = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if *barrier == Barrier::Empty {
            *barrier = Barrier::Until(shown);
            tracing::info!(
                index = shown,
                "a leader reached this empty node: it votes once its log reaches that index"
            );
        }
        Ok(())
    }

    /// Whether the node may vote with its log ending at `last`; the barrier is lifted (and
    /// forgotten by `store`) once the log has reached it.
    pub async fn may_vote(&self, store: &Store, last: u64) -> Result<(), Refusal> {
        match self.get() {
            Barrier::Open => Ok(()),
            Barrier::Empty => Err(Refusal::NoLog),
            Barrier::Until(index) if last < index => Err(Refusal::Behind { last, index }),
            Barrier::Until(_) => {
                store.raft_meta.remove(KEY).map_err(StoreError::from)?;
                store.flush().await?;
                self.set(Barrier::Open);
                Ok(())
            }
        }
    }

    /// The node has just made a new cluster of itself: it holds the whole log, and votes.
    pub fn open(&self) {
        self.set(Barrier::Open);
    }
}
