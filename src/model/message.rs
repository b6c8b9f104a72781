//! A message between agents: direct or broadcast, with an expiry.

use super::{Stamp, UnixNanos};
use serde::{Deserialize, Serialize};

/// The time to live of a message sent with `ttl_seconds = 0`.
pub const DEFAULT_MESSAGE_TTL_SECS: i64 = 3600;

/// A stored message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    /// Increasing: assigned by the state machine in log order.
    pub id: u64,
    pub from: String,
    /// Empty for a broadcast.
    pub to: String,
    pub content: String,
    pub kind: String,
    pub read_by: Vec<String>,
    pub created_at: UnixNanos,
    pub expires_at: UnixNanos,
    pub priority: String,
    pub parent_session_id: String,
    pub stamp: Stamp,
}

impl Message {
    /// Whether the message has expired at `now`.
    pub fn expired(&self, now: UnixNanos) -> bool {
        self.expires_at <= now
    }

    /// Whether `agent` should see the message: a broadcast, or addressed to it. An empty agent sees all.
    pub fn visible_to(&self, agent: &str) -> bool {
        agent.is_empty() || self.to.is_empty() || self.to == agent
    }
}
