//! A decision: one revision in a topic's append-only log.

use super::{Stamp, UnixNanos};
use serde::{Deserialize, Serialize};

/// One revision of a topic's decision. The newest revision is the topic's current decision.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Decision {
    pub topic: String,
    pub decision: String,
    pub rationale: String,
    pub details: String,
    pub references: Vec<String>,
    pub decided_by: String,
    pub created_at: UnixNanos,
    /// Carried forward from the previous revision when a revision does not set it.
    pub precedence: i32,
    /// The log index that appended this revision: orders a topic's history.
    pub seq: u64,
    pub stamp: Stamp,
}
