//! The deterministic state machine: [`apply`] turns one [`Envelope`] into writes on a storage
//! transaction and a [`CommandResult`]. It knows nothing of Raft, gRPC or clocks: the proposal
//! fixed the time, ids and stamp, and the log index comes from the caller. Replaying the same
//! envelopes over the same state gives the same state, byte for byte.
//!
//! Each domain has its own file. Besides the store writes, apply reports [`Effect`]s (what
//! changed) so that the search index and the watch streams can follow the store.

mod decision;
mod memory;
mod message;
mod state;
mod task;

use crate::command::{Command, CommandResult, Envelope};
use crate::model::{Memory, Message, Stamp, StateEntry, Task, Tombstone, UnixNanos};
use crate::storage::keys;
use crate::storage::kv::KvWrite;
use crate::storage::records;
use crate::storage::StoreError;
use serde::{Deserialize, Serialize};
use std::ops::ControlFlow;

/// How long an applied request id is remembered, so that a retry within it applies once.
pub const DEDUP_WINDOW_NANOS: i64 = 60 * 1_000_000_000;

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
}

/// What every domain's apply function gets besides the command.
pub struct Ctx<'a> {
    pub project: &'a str,
    pub now: UnixNanos,
    pub stamp: Stamp,
    pub log_index: u64,
    pub effects: &'a mut Vec<Effect>,
}

impl Ctx<'_> {
    /// Deletes the record at `key`, leaving a tombstone with this command's stamp.
    fn delete_with_tombstone(&self, w: &mut dyn KvWrite, key: Vec<u8>) {
        records::put(w, keys::tombstone(&key), &Tombstone { stamp: self.stamp });
        w.delete(key);
    }

    /// Stores `value` at `key`, replacing any tombstone.
    fn put_record<T: Serialize>(&self, w: &mut dyn KvWrite, key: Vec<u8>, value: &T) {
        w.delete(keys::tombstone(&key));
        records::put(w, key, value);
    }
}

/// The result remembered for an applied request id.
#[derive(Serialize, Deserialize)]
struct Remembered {
    now: UnixNanos,
    result: CommandResult,
}

/// Applies `env` at `log_index`: a request id seen within [`DEDUP_WINDOW_NANOS`] returns the
/// first result and changes nothing.
pub fn apply(
    w: &mut dyn KvWrite,
    env: &Envelope,
    log_index: u64,
    effects: &mut Vec<Effect>,
) -> Result<CommandResult, StoreError> {
    forget_old_requests(w, env.now)?;
    let dedup = !env.request_id.is_empty();
    if dedup {
        if let Some(seen) = records::get::<Remembered>(w, &keys::request(&env.request_id))? {
            return Ok(seen.result);
        }
    }
    let mut ctx = Ctx {
        project: &env.project,
        now: env.now,
        stamp: env.stamp,
        log_index,
        effects,
    };
    let result = apply_command(w, &mut ctx, &env.command)?;
    if dedup {
        records::put(
            w,
            keys::request(&env.request_id),
            &Remembered {
                now: env.now,
                result: result.clone(),
            },
        );
        w.put(keys::request_by_time(env.now, &env.request_id), Vec::new());
    }
    Ok(result)
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

/// Forgets request ids older than the window, a few at a time, in time order.
fn forget_old_requests(w: &mut dyn KvWrite, now: UnixNanos) -> Result<(), StoreError> {
    let cutoff = now.saturating_sub(DEDUP_WINDOW_NANOS);
    let mut old = Vec::new();
    w.scan(
        &keys::request_by_time_prefix(),
        false,
        &mut |k, _| match keys::split_request_by_time(k) {
            Some((t, id)) if t < cutoff && old.len() < 4 => {
                old.push((k.to_vec(), id.to_string()));
                Ok(ControlFlow::Continue(()))
            }
            _ => Ok(ControlFlow::Break(())),
        },
    )?;
    for (k, id) in old {
        w.delete(k);
        w.delete(keys::request(&id));
    }
    Ok(())
}

#[cfg(test)]
mod tests;
