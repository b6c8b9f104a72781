//! Applying task commands. Claims are decided here, in log order, so exactly one of any number
//! of concurrent claimers wins.

use super::{Ctx, Effect};
use crate::command::{CommandResult, Rejection};
use crate::model::{Task, TaskStatus};
use crate::storage::keys::{self, Table};
use crate::storage::kv::KvWrite;
use crate::storage::{records, StoreError};

/// Stores a new task.
pub(super) fn create(
    w: &mut dyn KvWrite,
    ctx: &mut Ctx<'_>,
    t: &Task,
) -> Result<CommandResult, StoreError> {
    let mut t = t.clone();
    t.stamp = ctx.stamp;
    save(w, ctx, &t);
    Ok(task_result(t, true, ""))
}

/// Claims a pending task for `agent`; any other status loses the claim.
pub(super) fn claim(
    w: &mut dyn KvWrite,
    ctx: &mut Ctx<'_>,
    id: &str,
    agent: &str,
    worktree: &str,
) -> Result<CommandResult, StoreError> {
    let Some(mut t) = records::task(w, ctx.project, id)? else {
        return Ok(not_found(id));
    };
    if t.status != TaskStatus::Pending {
        let why = if t.status == TaskStatus::Claimed {
            format!("task already claimed by {}", t.claimed_by)
        } else {
            format!(
                "task is {}, only a pending task can be claimed",
                t.status.as_str()
            )
        };
        return Ok(task_result(t, false, &why));
    }
    t.status = TaskStatus::Claimed;
    t.claimed_by = agent.to_string();
    t.worktree = worktree.to_string();
    t.claimed_at = Some(ctx.now);
    t.stamp = ctx.stamp;
    save(w, ctx, &t);
    Ok(task_result(t, true, ""))
}

/// Marks a task done with its result; a task already done is left as it is.
pub(super) fn complete(
    w: &mut dyn KvWrite,
    ctx: &mut Ctx<'_>,
    id: &str,
    result: &str,
) -> Result<CommandResult, StoreError> {
    let Some(mut t) = records::task(w, ctx.project, id)? else {
        return Ok(not_found(id));
    };
    if t.status == TaskStatus::Done {
        return Ok(task_result(t, false, "task is already done"));
    }
    t.status = TaskStatus::Done;
    t.result = result.to_string();
    t.completed_at = Some(ctx.now);
    t.stamp = ctx.stamp;
    save(w, ctx, &t);
    Ok(task_result(t, true, ""))
}

/// Sets a task's status and/or result.
pub(super) fn update(
    w: &mut dyn KvWrite,
    ctx: &mut Ctx<'_>,
    id: &str,
    status: Option<TaskStatus>,
    result: Option<&str>,
) -> Result<CommandResult, StoreError> {
    let Some(mut t) = records::task(w, ctx.project, id)? else {
        return Ok(not_found(id));
    };
    if let Some(s) = status {
        if s == TaskStatus::Done && t.status != TaskStatus::Done {
            t.completed_at = Some(ctx.now);
        }
        if s == TaskStatus::Pending {
            t.claimed_by.clear();
            t.claimed_at = None;
        }
        t.status = s;
    }
    if let Some(r) = result {
        t.result = r.to_string();
    }
    t.stamp = ctx.stamp;
    save(w, ctx, &t);
    Ok(task_result(t, true, ""))
}

/// Deletes a task; `Done(false)` when there was none.
pub(super) fn delete(
    w: &mut dyn KvWrite,
    ctx: &mut Ctx<'_>,
    id: &str,
) -> Result<CommandResult, StoreError> {
    let key = keys::task(ctx.project, id);
    if w.get(&key)?.is_none() {
        return Ok(CommandResult::Done(false));
    }
    ctx.delete_with_tombstone(w, key);
    Ok(CommandResult::Done(true))
}

/// Deletes the tasks with `status`, or every task.
pub(super) fn clear(
    w: &mut dyn KvWrite,
    ctx: &mut Ctx<'_>,
    status: Option<TaskStatus>,
) -> Result<CommandResult, StoreError> {
    let all: Vec<(Vec<u8>, Task)> = records::collect(w, &keys::prefix(Table::Task, ctx.project))?;
    let mut count = 0;
    for (k, _) in all
        .into_iter()
        .filter(|(_, t)| status.is_none_or(|s| t.status == s))
    {
        ctx.delete_with_tombstone(w, k);
        count += 1;
    }
    Ok(CommandResult::Count(count))
}

fn save(w: &mut dyn KvWrite, ctx: &mut Ctx<'_>, t: &Task) {
    ctx.put_record(w, keys::task(ctx.project, &t.id), t);
    ctx.effects.push(Effect::Task {
        project: ctx.project.to_string(),
        task: t.clone(),
    });
}

fn task_result(t: Task, success: bool, error: &str) -> CommandResult {
    CommandResult::Task {
        task: Some(t),
        success,
        error: error.to_string(),
    }
}

fn not_found(id: &str) -> CommandResult {
    CommandResult::Rejected(Rejection::NotFound {
        kind: "task".to_string(),
        id: id.to_string(),
    })
}
