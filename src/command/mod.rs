//! Every write is one [`Command`], wrapped in an [`Envelope`] that fixes its project, request id,
//! time and version stamp before it is proposed, so that applying it is deterministic.
//! The result of applying a command is a [`CommandResult`]. Input limits and validation live in
//! [`validate`].

pub mod validate;

use crate::model::{
    ApiKey, Decision, Memory, Message, Stamp, StateEntry, Task, TaskStatus, UnixNanos,
};
use serde::{Deserialize, Serialize};

/// One write to the replicated store. The variant order is part of the log format: append new
/// variants at the end and never reorder (a test pins it).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Command {
    /// Store a memory; an existing memory with the same id is replaced.
    MemoryAdd(Memory),
    MemoryDelete {
        id: String,
    },
    MemoryClear,
    /// Count an access to each memory.
    MemoryTouch {
        ids: Vec<String>,
    },
    /// Append a revision to a topic; `precedence: None` carries the previous revision's forward.
    DecisionSet {
        decision: Decision,
        precedence: Option<i32>,
    },
    DecisionDelete {
        topic: String,
    },
    DecisionClear,
    StateSet(StateEntry),
    /// Delete a state entry by its full (possibly agent-scoped) key.
    StateDelete {
        key: String,
    },
    /// Delete an agent's entries, or every entry when `agent` is empty.
    StateClear {
        agent: String,
    },
    /// Delete agent-scoped entries last updated before `older_than`.
    StateCleanup {
        older_than: UnixNanos,
    },
    /// Send a message; the state machine assigns its id.
    MessageSend(Message),
    MessageAck {
        id: u64,
        agent: String,
    },
    /// Delete the project's messages that expired at the envelope's time.
    MessagePrune,
    TaskCreate(Task),
    TaskClaim {
        id: String,
        agent: String,
        worktree: String,
    },
    TaskComplete {
        id: String,
        result: String,
    },
    TaskUpdate {
        id: String,
        status: Option<TaskStatus>,
        result: Option<String>,
    },
    TaskDelete {
        id: String,
    },
    /// Delete the tasks with `status`, or every task.
    TaskClear {
        status: Option<TaskStatus>,
    },
    /// Delete the expired messages of every project; the leader proposes it on a timer.
    MessageExpireAll,
    /// Turns API keys on, with the first admin key and the secret nodes authenticate their calls
    /// to each other with; refused when keys are already on.
    AuthEnable {
        key: ApiKey,
        node_secret: String,
    },
    /// Adds an API key.
    AuthKeyCreate(ApiKey),
    /// Revokes an API key.
    AuthKeyRevoke {
        accessor: String,
    },
    /// Names the cluster, once: its first leader proposes it, and a later one is ignored. Every
    /// node keeps the id with its data and refuses Raft messages from another cluster's nodes.
    ClusterId {
        id: String,
    },
}

impl Command {
    /// The record the command names, for the audit log (empty when it names none).
    pub fn target(&self) -> String {
        match self {
            Command::MemoryAdd(m) => m.id.clone(),
            Command::MemoryDelete { id }
            | Command::TaskClaim { id, .. }
            | Command::TaskComplete { id, .. }
            | Command::TaskUpdate { id, .. }
            | Command::TaskDelete { id } => id.clone(),
            Command::MemoryTouch { ids } => ids.join(","),
            Command::DecisionSet { decision, .. } => decision.topic.clone(),
            Command::DecisionDelete { topic } => topic.clone(),
            Command::StateSet(s) => s.key.clone(),
            Command::StateDelete { key } => key.clone(),
            Command::StateClear { agent } => agent.clone(),
            Command::MessageSend(m) => m.to.clone(),
            Command::MessageAck { id, .. } => id.to_string(),
            Command::TaskCreate(t) => t.id.clone(),
            Command::AuthEnable { key: k, .. } | Command::AuthKeyCreate(k) => k.accessor.clone(),
            Command::AuthKeyRevoke { accessor } => accessor.clone(),
            Command::ClusterId { id } => id.clone(),
            Command::MemoryClear
            | Command::DecisionClear
            | Command::StateCleanup { .. }
            | Command::MessagePrune
            | Command::TaskClear { .. }
            | Command::MessageExpireAll => String::new(),
        }
    }

    /// A short name for logs and metrics.
    pub fn name(&self) -> &'static str {
        match self {
            Command::MemoryAdd(_) => "memory.add",
            Command::MemoryDelete { .. } => "memory.delete",
            Command::MemoryClear => "memory.clear",
            Command::MemoryTouch { .. } => "memory.touch",
            Command::DecisionSet { .. } => "decision.set",
            Command::DecisionDelete { .. } => "decision.delete",
            Command::DecisionClear => "decision.clear",
            Command::StateSet(_) => "state.set",
            Command::StateDelete { .. } => "state.delete",
            Command::StateClear { .. } => "state.clear",
            Command::StateCleanup { .. } => "state.cleanup",
            Command::MessageSend(_) => "message.send",
            Command::MessageAck { .. } => "message.ack",
            Command::MessagePrune => "message.prune",
            Command::TaskCreate(_) => "task.create",
            Command::TaskClaim { .. } => "task.claim",
            Command::TaskComplete { .. } => "task.complete",
            Command::TaskUpdate { .. } => "task.update",
            Command::TaskDelete { .. } => "task.delete",
            Command::TaskClear { .. } => "task.clear",
            Command::MessageExpireAll => "message.expire_all",
            Command::AuthEnable { .. } => "auth.enable",
            Command::AuthKeyCreate(_) => "auth.key_create",
            Command::AuthKeyRevoke { .. } => "auth.key_revoke",
            Command::ClusterId { .. } => "cluster.id",
        }
    }
}

/// A command with everything fixed before it is proposed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Envelope {
    /// Makes a retried write apply once: a second envelope with the same id returns the first result.
    pub request_id: String,
    /// The project the write belongs to.
    pub project: String,
    /// The proposal time; apply uses it instead of a clock.
    pub now: UnixNanos,
    /// The version stamp of the records the command writes.
    pub stamp: Stamp,
    pub command: Command,
    /// The accessor id of the API key the write came with (empty: none). When keys are on, a
    /// write whose key has been revoked by the time it applies is refused, on every node alike.
    pub accessor: String,
}

/// The outcome of applying one command.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum CommandResult {
    Memory(Memory),
    /// Whether something was removed (or, for an ack, found).
    Done(bool),
    /// How many records a clear, prune, touch or delete affected.
    Count(u64),
    Decision(Decision),
    State(StateEntry),
    Message(Message),
    /// A task operation: the task as it stands after it, whether it took effect, and why not.
    Task {
        task: Option<Task>,
        success: bool,
        error: String,
    },
    /// The command could not apply: the store is unchanged.
    Rejected(Rejection),
    /// An API key as it stands after the command.
    Key(ApiKey),
}

/// Why a command did not apply.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum Rejection {
    #[error("{kind} {id:?} not found")]
    NotFound { kind: String, id: String },
    #[error("{0}")]
    Invalid(String),
    /// The write's API key was revoked before it applied.
    #[error("{0}")]
    Unauthorized(String),
}

/// The payload of one Raft log entry: one or more envelopes, applied in order. They are shared,
/// so that the log hands its recent entries to replication and the state machine without
/// copying them (serialized as the list itself).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Proposal {
    pub envelopes: std::sync::Arc<Vec<Envelope>>,
}

/// The results of a proposal, one per envelope.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct ProposalResult {
    pub results: Vec<CommandResult>,
}
