//! A task in a swarm's queue: pending, claimed by exactly one agent, then done or blocked.

use super::{Stamp, UnixNanos};
use serde::{Deserialize, Serialize};

/// Where a task stands. `pending → claimed → done`, or `blocked`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum TaskStatus {
    Pending,
    Claimed,
    Done,
    Blocked,
}

impl TaskStatus {
    /// Every status.
    pub const ALL: [TaskStatus; 4] = [
        TaskStatus::Pending,
        TaskStatus::Claimed,
        TaskStatus::Done,
        TaskStatus::Blocked,
    ];

    /// The status's name on the wire and in the CLI.
    pub fn as_str(self) -> &'static str {
        match self {
            TaskStatus::Pending => "pending",
            TaskStatus::Claimed => "claimed",
            TaskStatus::Done => "done",
            TaskStatus::Blocked => "blocked",
        }
    }

    /// Parses a status name.
    pub fn parse(s: &str) -> Option<TaskStatus> {
        TaskStatus::ALL.into_iter().find(|t| t.as_str() == s)
    }

    /// The valid names, comma separated, for error messages.
    pub fn names() -> String {
        TaskStatus::ALL.map(|t| t.as_str()).join(", ")
    }
}

/// A stored task.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Task {
    pub id: String,
    pub title: String,
    pub description: String,
    pub status: TaskStatus,
    pub claimed_by: String,
    pub worktree: String,
    pub result: String,
    pub created_at: UnixNanos,
    pub claimed_at: Option<UnixNanos>,
    pub completed_at: Option<UnixNanos>,
    pub parent_session_id: String,
    pub stamp: Stamp,
}
