//! openraft glue, and nothing else: the type configuration, the log store (segment files) and
//! the state machine adapter over sled, and the node-to-node network over tonic.

// openraft's own error types are large; they are what its traits return.
#![allow(clippy::result_large_err)]

pub mod landing;
pub mod log_store;
pub mod network;
pub mod prevote;
pub mod state_machine;
pub mod wal;

use crate::command::{Proposal, ProposalResult};
use std::io::Cursor;

openraft::declare_raft_types!(
    /// The Raft types of aide: a log entry carries a [`Proposal`], applying it gives a [`ProposalResult`].
    pub TypeConfig:
        D = Proposal,
        R = ProposalResult,
        NodeId = u64,
        Node = openraft::BasicNode,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = Cursor<Vec<u8>>,
        AsyncRuntime = openraft::TokioRuntime,
);

/// A node id.
pub type NodeId = u64;
/// The running Raft node.
pub type Raft = openraft::Raft<TypeConfig>;
/// A log entry.
pub type Entry = openraft::Entry<TypeConfig>;
/// A log id.
pub type LogId = openraft::LogId<NodeId>;
/// A storage error as openraft reports it.
pub type StorageError = openraft::StorageError<NodeId>;
/// The membership as stored.
pub type StoredMembership = openraft::StoredMembership<NodeId, openraft::BasicNode>;

/// Wraps any error as an openraft storage write error.
pub(crate) fn write_err<E: std::error::Error + 'static>(e: E) -> StorageError {
    openraft::StorageIOError::write(&e).into()
}

/// Wraps any error as an openraft storage read error.
pub(crate) fn read_err<E: std::error::Error + 'static>(e: E) -> StorageError {
    openraft::StorageIOError::read(&e).into()
}

/// Timing of the Raft group.
#[derive(Debug, Clone)]
pub struct RaftTiming {
    pub heartbeat_ms: u64,
    pub election_min_ms: u64,
    pub election_max_ms: u64,
    /// Build a snapshot after this many entries since the last one.
    pub snapshot_every: u64,
}

impl RaftTiming {
    /// How long a write waits while no leader is elected, or while its leader hears from no
    /// majority of the voters, before it fails saying so: ten election timeouts, at least 3 s
    /// (an election normally takes well under one second) and at most 8 s (a write gives up
    /// after 10 s in any case).
    pub fn patience(&self) -> std::time::Duration {
        std::time::Duration::from_millis((self.election_max_ms * 10).clamp(3_000, 8_000))
    }

    /// The leader lease: how long after hearing from its leader a follower neither campaigns
    /// nor helps another to (openraft's lease on a vote is election_max too).
    pub fn lease(&self) -> std::time::Duration {
        std::time::Duration::from_millis(self.election_max_ms)
    }
}

impl Default for RaftTiming {
    fn default() -> Self {
        // A follower asks for an election (`prevote`) once it has heard nothing for the leader
        // lease (election_max) plus a random election timeout (election_min..election_max): here
        // 500 to 600 ms after the last heartbeat, so a dead leader costs under a second of writes.
        // The heartbeat interval is also how long openraft lets one AppendEntries call take.
        RaftTiming {
            heartbeat_ms: 100,
            election_min_ms: 200,
            election_max_ms: 300,
            snapshot_every: 20_000,
        }
    }
}

/// The openraft configuration for `timing`.
pub fn config(timing: &RaftTiming) -> Result<openraft::Config, openraft::ConfigError> {
    openraft::Config {
        cluster_name: "aide".to_string(),
        heartbeat_interval: timing.heartbeat_ms,
        election_timeout_min: timing.election_min_ms,
        election_timeout_max: timing.election_max_ms,
        // Per snapshot chunk; the 200 ms default is too short for large chunks on a busy disk.
        install_snapshot_timeout: 10_000,
        snapshot_max_chunk_size: 2 * 1024 * 1024,
        snapshot_policy: openraft::SnapshotPolicy::LogsSinceLast(timing.snapshot_every),
        // Keep at most a snapshot interval of log behind the snapshot for slow followers.
        max_in_snapshot_log_to_keep: timing.snapshot_every.min(1_000),
        // openraft gives an AppendEntries call one heartbeat interval to complete, so a call
        // must stay small: at most 8 entries of at most crate::node::batch::MAX_BYTES each.
        max_payload_entries: 8,
        // Elections are started by the node, after a pre-vote (`prevote`).
        enable_elect: false,
        ..Default::default()
    }
    .validate()
}
