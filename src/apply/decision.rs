//! Applying decision commands: each topic is an append-only log of revisions.

use super::Ctx;
use crate::command::CommandResult;
use crate::model::Decision;
use crate::storage::keys::{self, Table};
use crate::storage::kv::KvWrite;
use crate::storage::{records, StoreError};
use std::collections::BTreeSet;

/// Appends a revision; without a precedence it carries the previous revision's (or 0).
pub(super) fn set(
    w: &mut dyn KvWrite,
    ctx: &mut Ctx<'_>,
    d: &Decision,
    precedence: Option<i32>,
) -> Result<CommandResult, StoreError> {
    let previous = records::decision(w, ctx.project, &d.topic)?;
    let mut d = d.clone();
    d.precedence = precedence.unwrap_or_else(|| previous.as_ref().map_or(0, |p| p.precedence));
    // A revision's number within its topic; not the log index, which concurrent decisions
    // merged into one entry share.
    d.seq = previous.map_or(1, |p| p.seq + 1);
    d.stamp = ctx.stamp;
    records::put(w, keys::decision(ctx.project, &d.topic, d.seq), &d);
    Ok(CommandResult::Decision(d))
}

/// Removes a topic's whole history; the count is the number of revisions removed.
pub(super) fn delete(
    w: &mut dyn KvWrite,
    ctx: &mut Ctx<'_>,
    topic: &str,
) -> Result<CommandResult, StoreError> {
    let prefix = keys::decision_topic(ctx.project, topic);
    let revisions: Vec<(Vec<u8>, Decision)> = records::collect(w, &prefix)?;
    if !revisions.is_empty() {
        ctx.delete_with_tombstone(w, prefix);
    }
    let count = revisions.len() as u64;
    for (key, _) in revisions {
        w.delete(key);
    }
    Ok(CommandResult::Count(count))
}

/// Removes every topic; the count is the number of topics removed.
pub(super) fn clear(w: &mut dyn KvWrite, ctx: &mut Ctx<'_>) -> Result<CommandResult, StoreError> {
    let revisions: Vec<(Vec<u8>, Decision)> =
        records::collect(w, &keys::prefix(Table::Decision, ctx.project))?;
    let mut topics = BTreeSet::new();
    for (key, d) in revisions {
        w.delete(key);
        topics.insert(d.topic);
    }
    for topic in &topics {
        ctx.delete_with_tombstone(w, keys::decision_topic(ctx.project, topic));
    }
    Ok(CommandResult::Count(topics.len() as u64))
}
