//! One aide node: the store, the search index, the Raft group member and the gRPC server, put
//! together and taken apart. The write path ([`Node::write`] → [`Node::propose`]) and the read
//! barrier ([`Node::read_barrier`]) are the only ways handlers reach the replicated state.

pub(crate) mod batch;
mod clock;
mod error;
mod expiry;
mod membership;
pub mod naming;
mod propose;
mod quorum;
mod read;
mod start;
pub mod vote;

pub use clock::{wall_nanos, Clock, Tick};
pub use error::NodeError;
pub(crate) use propose::ProposeError;
pub use propose::WriteMeta;
pub use quorum::GAVE_UP;
pub use read::{Consistency, ReadOptions, FOREIGN_INDEX};
pub use start::{start, NodeConfig, RunningNode, StartError, DEFAULT_LISTEN};

use crate::apply::Effect;
use crate::raft::{NodeId, Raft};
use crate::search::SearchIndex;
use crate::storage::Store;
use std::sync::Arc;
use tokio::sync::{broadcast, watch};
use tonic::transport::Channel;

/// A running node's shared parts. Handlers hold an `Arc<Node>`.
pub struct Node {
    /// This node's Raft id.
    pub id: NodeId,
    /// The address other nodes and clients reach this node at.
    pub addr: String,
    pub raft: Raft,
    pub store: Store,
    pub search: Arc<SearchIndex>,
    /// Task, message and state changes, after apply.
    pub events: broadcast::Sender<Effect>,
    /// The applied log index (in the store).
    pub applied: watch::Receiver<u64>,
    /// The highest log index whose results were answered (it may still be landing in the store).
    answered: Arc<std::sync::atomic::AtomicU64>,
    /// Whether a batch of applied entries could not be written to the store.
    landing_failed: Arc<std::sync::atomic::AtomicBool>,
    /// Applied changes not yet in the store; reads ask for them to be written.
    landing: Arc<crate::raft::landing::Landing>,
    clock: Clock,
    /// Unix seconds when the node started.
    pub started_at: i64,
    /// Channels to other nodes (shared with the Raft network).
    pub(crate) channels: crate::raft::network::Channels,
    /// Merges concurrent proposals into one Raft entry.
    batcher: batch::Batcher,
    /// Lets concurrent linearizable reads share one read index.
    reads: read::ReadIndexQueue,
    /// When this node led as it stopped, the term of that leadership and its last log index
    /// at start: see [`read::restored_leadership`].
    restored_lead: Option<(u64, u64)>,
    /// How long a write waits for a leader, or for its leader to hear from a majority.
    pub(crate) patience: std::time::Duration,
    /// Since when this node leads.
    leadership: quorum::Leadership,
    /// Whether fault-injection failpoints may be set (`aide serve --failpoints`).
    pub failpoints: bool,
    /// The peers a failpoint cuts this node off from.
    pub isolation: crate::raft::network::Isolation,
    /// Serializes joins on the leader.
    join_lock: tokio::sync::Mutex<()>,
    /// Becomes true when the node starts shutting down: watch streams end.
    pub closing: watch::Receiver<bool>,
    /// The audit log in the data directory.
    pub audit: Arc<crate::audit::AuditLog>,
    /// Whether the node serves TLS (node-to-node calls then need a certificate).
    pub tls: bool,
    /// The ids of the nodes removed from the cluster (as applied here).
    pub(crate) removed_ids: crate::raft::state_machine::RemovedIds,
    /// Where this node says that it was removed itself.
    pub(crate) removal: crate::raft::network::Removal,
    /// Until when this node, started empty, must not vote.
    pub(crate) vote: vote::VoteGate,
    /// When this node last heard from its leader (see [`crate::raft::prevote`]).
    pub(crate) heard: crate::raft::prevote::Heard,
    /// How long after hearing from a leader this node refuses to help elect another.
    pub(crate) lease: std::time::Duration,
    /// This node's Raft log (its end answers pre-votes).
    pub(crate) log: crate::raft::log_store::LogStore,
}

impl Node {
    /// How long this node has not heard from the leader its vote names, when that is longer
    /// than an election takes. (A follower whose leader died keeps its vote for it: it asks
    /// before it campaigns, see [`crate::raft::prevote`], and may find no majority to.)
    pub(crate) fn leader_silence(&self) -> Option<std::time::Duration> {
        let leader = self.raft.metrics().borrow().current_leader;
        self.silent(leader?)
    }

    /// How long this node has not heard from `leader`, when that is another node and longer
    /// than an election takes.
    fn silent(&self, leader: NodeId) -> Option<std::time::Duration> {
        if leader == self.id {
            return None;
        }
        let age = self.heard.age();
        (age > 2 * self.lease).then_some(age)
    }

    /// The applied log index now.
    pub fn applied_index(&self) -> u64 {
        *self.applied.borrow()
    }

    /// The highest log index whose results were answered.
    pub fn answered_index(&self) -> u64 {
        self.answered.load(std::sync::atomic::Ordering::Acquire)
    }

    /// A (cached) channel to the node at `addr`.
    pub(crate) fn peer(&self, addr: &str) -> Result<Channel, NodeError> {
        self.channels
            .get(addr, crate::raft::network::Lane::Raft)
            .map_err(NodeError::Unavailable)
    }

    /// A request to another node, marked as coming from a node of the cluster (and naming the
    /// cluster, once named: a node of another cluster refuses it).
    pub(crate) fn node_request<T>(&self, message: T) -> tonic::Request<T> {
        let mut req = tonic::Request::new(message);
        crate::auth::as_node(&self.store, &mut req);
        crate::apply::cluster::mark(&self.store, req.metadata_mut());
        req
    }

    /// Whether node `id` was removed from the cluster (and is not a member now).
    pub fn was_removed(&self, id: NodeId) -> bool {
        let removed = self
            .removed_ids
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .contains(&id);
        removed
            && self
                .raft
                .metrics()
                .borrow()
                .membership_config
                .membership()
                .get_node(&id)
                .is_none()
    }

    /// The current leader's id and address, if one is known: this node, or the leader its vote
    /// names, unless this node has not heard from that one for longer than an election takes.
    pub fn leader(&self) -> Option<(NodeId, String)> {
        let metrics = self.raft.metrics();
        let m = metrics.borrow();
        let id = m.current_leader?;
        if self.silent(id).is_some() {
            return None;
        }
        let node = m.membership_config.membership().get_node(&id)?;
        Some((id, node.addr.clone()))
    }
}
