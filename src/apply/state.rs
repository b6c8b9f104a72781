//! Applying state commands: keys global to the project or scoped to an agent.

use super::{Ctx, Effect};
use crate::command::CommandResult;
use crate::model::{StateEntry, UnixNanos};
use crate::storage::keys::{self, Table};
use crate::storage::kv::KvWrite;
use crate::storage::{records, StoreError};

/// Sets a key (its full, possibly agent-scoped form).
pub(super) fn set(
    w: &mut dyn KvWrite,
    ctx: &mut Ctx<'_>,
    s: &StateEntry,
) -> Result<CommandResult, StoreError> {
    let mut s = s.clone();
    s.stamp = ctx.stamp;
    ctx.put_record(w, keys::state(ctx.project, &s.key), &s);
    changed(ctx, &s, false);
    Ok(CommandResult::State(s))
}

/// Deletes a key by its full form.
pub(super) fn delete(
    w: &mut dyn KvWrite,
    ctx: &mut Ctx<'_>,
    key: &str,
) -> Result<CommandResult, StoreError> {
    let k = keys::state(ctx.project, key);
    match records::get::<StateEntry>(w, &k)? {
        Some(s) => {
            ctx.delete_with_tombstone(w, k);
            changed(ctx, &s, true);
            Ok(CommandResult::Done(true))
        }
        None => Ok(CommandResult::Done(false)),
    }
}

/// Deletes `agent`'s keys, or every key when `agent` is empty.
pub(super) fn clear(
    w: &mut dyn KvWrite,
    ctx: &mut Ctx<'_>,
    agent: &str,
) -> Result<CommandResult, StoreError> {
    remove_where(w, ctx, |s| agent.is_empty() || s.agent == agent)
}

/// Deletes agent-scoped keys last updated before `older_than`.
pub(super) fn cleanup(
    w: &mut dyn KvWrite,
    ctx: &mut Ctx<'_>,
    older_than: UnixNanos,
) -> Result<CommandResult, StoreError> {
    remove_where(w, ctx, |s| !s.agent.is_empty() && s.updated_at < older_than)
}

fn remove_where(
    w: &mut dyn KvWrite,
    ctx: &mut Ctx<'_>,
    doomed: impl Fn(&StateEntry) -> bool,
) -> Result<CommandResult, StoreError> {
    let all: Vec<(Vec<u8>, StateEntry)> =
        records::collect(w, &keys::prefix(Table::State, ctx.project))?;
    let mut count = 0;
    for (k, s) in all.into_iter().filter(|(_, s)| doomed(s)) {
        ctx.delete_with_tombstone(w, k);
        changed(ctx, &s, true);
        count += 1;
    }
    Ok(CommandResult::Count(count))
}

fn changed(ctx: &mut Ctx<'_>, s: &StateEntry, deleted: bool) {
    ctx.effects.push(Effect::State {
        project: ctx.project.to_string(),
        state: s.clone(),
        deleted,
    });
}
