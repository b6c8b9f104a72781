//! Applying memory commands.

use super::{Ctx, Effect};
use crate::command::CommandResult;
use crate::model::Memory;
use crate::storage::keys::{self, Table};
use crate::storage::kv::KvWrite;
use crate::storage::{records, StoreError};

/// Stores a memory (replacing one with the same id, as an import does).
pub(super) fn add(
    w: &mut dyn KvWrite,
    ctx: &mut Ctx<'_>,
    m: &Memory,
) -> Result<CommandResult, StoreError> {
    let mut m = m.clone();
    m.stamp = ctx.stamp;
    ctx.put_record(w, keys::memory(ctx.project, &m.id), &m);
    ctx.effects.push(Effect::MemoryPut {
        project: ctx.project.to_string(),
        memory: m.clone(),
    });
    Ok(CommandResult::Memory(m))
}

/// Deletes a memory; `Done(false)` when there was none.
pub(super) fn delete(
    w: &mut dyn KvWrite,
    ctx: &mut Ctx<'_>,
    id: &str,
) -> Result<CommandResult, StoreError> {
    let key = keys::memory(ctx.project, id);
    if w.get(&key)?.is_none() {
        return Ok(CommandResult::Done(false));
    }
    ctx.delete_with_tombstone(w, key);
    ctx.effects.push(Effect::MemoryRemoved {
        project: ctx.project.to_string(),
        id: id.to_string(),
    });
    Ok(CommandResult::Done(true))
}

/// Deletes every memory of the project.
pub(super) fn clear(w: &mut dyn KvWrite, ctx: &mut Ctx<'_>) -> Result<CommandResult, StoreError> {
    let all: Vec<(Vec<u8>, Memory)> =
        records::collect(w, &keys::prefix(Table::Memory, ctx.project))?;
    let count = all.len() as u64;
    for (key, m) in all {
        ctx.delete_with_tombstone(w, key);
        ctx.effects.push(Effect::MemoryRemoved {
            project: ctx.project.to_string(),
            id: m.id,
        });
    }
    Ok(CommandResult::Count(count))
}

/// Counts an access to each existing memory among `ids`.
pub(super) fn touch(
    w: &mut dyn KvWrite,
    ctx: &mut Ctx<'_>,
    ids: &[String],
) -> Result<CommandResult, StoreError> {
    let mut touched = 0;
    for id in ids {
        let key = keys::memory(ctx.project, id);
        if let Some(mut m) = records::get::<Memory>(w, &key)? {
            m.access_count = m.access_count.saturating_add(1);
            m.last_accessed = Some(ctx.now);
            m.stamp = ctx.stamp;
            records::put(w, key, &m);
            touched += 1;
        }
    }
    Ok(CommandResult::Count(touched))
}
