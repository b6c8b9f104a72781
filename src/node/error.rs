//! The errors a node reports to its API layer.

use crate::command::validate::Invalid;
use crate::command::Rejection;
use crate::search::SearchError;
use crate::storage::StoreError;

/// Why a request could not be served.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error(transparent)]
    Invalid(#[from] Invalid),
    #[error(transparent)]
    Rejected(#[from] Rejection),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    FailedPrecondition(String),
    #[error("no leader is elected yet; retry shortly")]
    NoLeader,
    #[error("{0}")]
    Unavailable(String),
    /// The node waited its patience for a leader or a quorum: trying it again at once would
    /// only wait again.
    #[error("{0}")]
    GaveUp(String),
    #[error(
        "timed out after {0:?} waiting for the node to apply log index {1} (it has applied {2})"
    )]
    IndexTimeout(std::time::Duration, u64, u64),
    #[error(
        "log index {index} was never committed by this cluster (all it has committed is at or \
         below {read}): a mistyped index, or one from another cluster (perhaps one that ran at \
         these addresses before)"
    )]
    ForeignIndex { index: u64, read: u64 },
    #[error("raft: {0}")]
    Raft(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Search(#[from] SearchError),
    #[error("the node is shutting down")]
    ShuttingDown,
}
