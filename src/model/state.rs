//! A key-value state entry, global to the project or scoped to one agent.

use super::{Stamp, UnixNanos};
use serde::{Deserialize, Serialize};

/// A stored state entry. `key` is the full key: `agent:<agent>:<key>` when scoped to an agent.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateEntry {
    pub key: String,
    pub value: String,
    /// The agent the key is scoped to, empty for a project-wide key.
    pub agent: String,
    pub updated_at: UnixNanos,
    pub stamp: Stamp,
}

/// The stored key for `key` as seen by `agent`: `agent:<agent>:<key>`, or `key` when `agent` is empty.
pub fn scoped_key(agent: &str, key: &str) -> String {
    if agent.is_empty() {
        key.to_string()
    } else {
        format!("agent:{agent}:{key}")
    }
}
