//! The deterministic state machine: [`apply_entry`] turns the envelopes of one log entry into
//! writes on a storage transaction and a [`CommandResult`] each. It knows nothing of Raft, gRPC or clocks: the proposal
//! fixed the time, ids and stamp, and the log index comes from the caller. Replaying the same
//! envelopes over the same state gives the same state, byte for byte.
//!
//! Each domain has its own file. Besides the store writes, apply reports [`Effect`]s (what
//! changed) so that the search index and the watch streams can follow the store.

pub mod auth;
pub mod cluster;
mod decision;
mod memory;
mod message;
mod requests;
mod state;
mod task;

use requests::EntryLog;
pub use requests::{RequestChanges, RequestIndex, DEDUP_WINDOW_NANOS};

use crate::command::{Command, CommandResult, Envelope, Rejection};
use crate::model::{Memory, Message, Stamp, StateEntry, Task, Tombstone, UnixNanos};
use crate::storage::keys;
use crate::storage::kv::KvWrite;
use crate::storage::records;
use crate::storage::StoreError;
use serde::Serialize;

/// What an applied command changed, for the search index and the watch streams.
#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    MemoryPut {
        project: String,
        memory: Memory,
    },
    MemoryRemoved {
        project: String,
        id: String,
    },
    Task {
        project: String,
        task: Task,
    },
    Message {
        project: String,
        message: Message,
    },
    State {
        project: String,
        state: StateEntry,
        deleted: bool,
    },
    /// Not an apply's: the node installed a snapshot up to `index`, so the changes before it
    /// were not seen one by one (watch streams end, for their clients to list and watch again).
    Skipped {
        index: u64,
    },
}

/// What every domain's apply function gets besides the command.
pub struct Ctx<'a> {
    pub project: &'a str,
    pub now: UnixNanos,
    pub stamp: Stamp,
    pub effects: &'a mut Vec<Effect>,
}

impl Ctx<'_> {
    /// Deletes the record at `key`, leaving a tombstone with this command's stamp.
    fn delete_with_tombstone(&self, w: &mut dyn KvWrite, key: Vec<u8>) {
        records::put(w, keys::tombstone(&key), &Tombstone { stamp: self.stamp });
        w.delete(key);
    }

    /// Stores `value` at `key`. A tombstone left by an earlier delete stays: its stamp is older
    /// than the record's, so a merge sees the record win.
    fn put_record<T: Serialize>(&self, w: &mut dyn KvWrite, key: Vec<u8>, value: &T) {
        records::put(w, key, value);
    }
}

/// Applies the envelopes of one log entry at `log_index`, in order. A request id applied
/// within [`DEDUP_WINDOW_NANOS`] returns its first result and changes nothing.
pub fn apply_entry(
    w: &mut dyn KvWrite,
    requests: &RequestIndex,
    changes: &mut RequestChanges,
    envelopes: &[Envelope],
    log_index: u64,
    effects: &mut Vec<Effect>,
) -> Result<Vec<CommandResult>, StoreError> {
    let Some(first) = envelopes.first() else {
        return Ok(Vec::new());
    };
    let mut log = EntryLog::begin(w, requests, changes, first.now, log_index)?;
    let mut results = Vec::with_capacity(envelopes.len());
    for env in envelopes {
        let dedup = !env.request_id.is_empty();
        if dedup {
            if let Some(first_result) = log.seen(w, &env.request_id, &env.command)? {
                results.push(first_result);
                continue;
            }
        }
        if let Some(refused) = revoked_key(w, &env.accessor)? {
            results.push(refused);
            continue;
        }
        let mut ctx = Ctx {
            project: &env.project,
            now: env.now,
            stamp: env.stamp,
            effects,
        };
        let result = apply_command(w, &mut ctx, &env.command)?;
        if dedup {
            log.remember(&env.request_id, &env.command, &result);
        }
        results.push(result);
    }
    log.finish(w);
    Ok(results)
}

/// A refusal when keys are on and the write's key is unknown or revoked (a follower may admit a
/// key whose revocation it has not applied yet; this check is where every node agrees).
fn revoked_key(w: &dyn KvWrite, accessor: &str) -> Result<Option<CommandResult>, StoreError> {
    if accessor.is_empty() || !auth::enabled(w)? {
        return Ok(None);
    }
    Ok(match auth::key(w, accessor)? {
        Some(k) if k.is_live() => None,
        _ => Some(CommandResult::Rejected(Rejection::Unauthorized(format!(
            "API key {accessor} has been revoked"
        )))),
    })
}

fn apply_command(
    w: &mut dyn KvWrite,
    ctx: &mut Ctx<'_>,
    command: &Command,
) -> Result<CommandResult, StoreError> {
    match command {
        Command::MemoryAdd(m) => memory::add(w, ctx, m),
        Command::MemoryDelete { id } => memory::delete(w, ctx, id),
        Command::MemoryClear => memory::clear(w, ctx),
        Command::MemoryTouch { ids } => memory::touch(w, ctx, ids),
        Command::DecisionSet {
            decision,
            precedence,
        } => decision::set(w, ctx, decision, *precedence),
        Command::DecisionDelete { topic } => decision::delete(w, ctx, topic),
        Command::DecisionClear => decision::clear(w, ctx),
        Command::StateSet(s) => state::set(w, ctx, s),
        Command::StateDelete { key } => state::delete(w, ctx, key),
        Command::StateClear { agent } => state::clear(w, ctx, agent),
        Command::StateCleanup { older_than } => state::cleanup(w, ctx, *older_than),
        Command::MessageSend(m) => message::send(w, ctx, m),
        Command::MessageAck { id, agent } => message::ack(w, ctx, *id, agent),
        Command::MessagePrune => message::prune(w, ctx, Some(ctx.project.to_string())),
        Command::MessageExpireAll => message::prune(w, ctx, None),
        Command::AuthEnable { key, node_secret } => auth::enable(w, key, node_secret),
        Command::AuthKeyCreate(key) => auth::create(w, key),
        Command::AuthKeyRevoke { accessor } => auth::revoke(w, ctx.now, accessor),
        Command::ClusterId { id } => cluster::name(w, id),
        Command::TaskCreate(t) => task::create(w, ctx, t),
        Command::TaskClaim {
            id,
            agent,
            worktree,
        } => task::claim(w, ctx, id, agent, worktree),
        Command::TaskComplete { id, result } => task::complete(w, ctx, id, result),
        Command::TaskUpdate { id, status, result } => {
            task::update(w, ctx, id, *status, result.as_deref())
        }
        Command::TaskDelete { id } => task::delete(w, ctx, id),
        Command::TaskClear { status } => task::clear(w, ctx, *status),
    }
}

#[cfg(test)]
mod tests;
