//! Applying message commands: ids come from a counter in the store, so they increase in log order.

use super::{Ctx, Effect};
use crate::command::CommandResult;
use crate::model::Message;
use crate::storage::keys::{self, Table};
use crate::storage::kv::KvWrite;
use crate::storage::{records, StoreError};

const SEQUENCE: &str = "message_seq";

/// Stores a message under the next id.
pub(super) fn send(
    w: &mut dyn KvWrite,
    ctx: &mut Ctx<'_>,
    m: &Message,
) -> Result<CommandResult, StoreError> {
    let seq_key = keys::meta(SEQUENCE);
    let last: u64 = records::get(w, &seq_key)?.unwrap_or(0);
    let mut m = m.clone();
    m.id = last + 1;
    m.stamp = ctx.stamp;
    records::put(w, seq_key, &m.id);
    records::put(w, keys::message(ctx.project, m.id), &m);
    ctx.effects.push(Effect::Message {
        project: ctx.project.to_string(),
        message: m.clone(),
    });
    Ok(CommandResult::Message(m))
}

/// Marks a message read by `agent` (once); `Done(false)` when there is no such unexpired message.
pub(super) fn ack(
    w: &mut dyn KvWrite,
    ctx: &mut Ctx<'_>,
    id: u64,
    agent: &str,
) -> Result<CommandResult, StoreError> {
    let key = keys::message(ctx.project, id);
    match records::get::<Message>(w, &key)? {
        Some(mut m) if !m.expired(ctx.now) => {
            if !m.read_by.iter().any(|a| a == agent) {
                m.read_by.push(agent.to_string());
                m.stamp = ctx.stamp;
                records::put(w, key, &m);
            }
            Ok(CommandResult::Done(true))
        }
        _ => Ok(CommandResult::Done(false)),
    }
}

/// Deletes messages expired at the proposal time: of `project`, or of every project.
pub(super) fn prune(
    w: &mut dyn KvWrite,
    ctx: &mut Ctx<'_>,
    project: Option<String>,
) -> Result<CommandResult, StoreError> {
    let prefix = match &project {
        Some(p) => keys::prefix(Table::Message, p),
        None => keys::table_prefix(Table::Message),
    };
    let all: Vec<(Vec<u8>, Message)> = records::collect(w, &prefix)?;
    let mut count = 0;
    for (k, _) in all.into_iter().filter(|(_, m)| m.expired(ctx.now)) {
        w.delete(k);
        count += 1;
    }
    Ok(CommandResult::Count(count))
}
