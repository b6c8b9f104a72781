//! Typed access to the records of the `state` tree, written against [`KvRead`] so that the state
//! machine (over a [`super::Txn`]) and the read path (over the sled tree) share it.

use super::codec::{decode, encode};
use super::keys::{self, Table};
use super::kv::{KvRead, KvWrite};
use super::StoreError;
use crate::model::{Decision, Memory, Message, StateEntry, Task, TaskStatus, UnixNanos};
use serde::{de::DeserializeOwned, Serialize};
use std::collections::BTreeMap;
use std::ops::ControlFlow;

/// The record at `key`, decoded.
pub fn get<T: DeserializeOwned>(r: &dyn KvRead, key: &[u8]) -> Result<Option<T>, StoreError> {
    r.get(key)?.map(|v| decode(&v)).transpose()
}

/// Stores `value` at `key`.
pub fn put<T: Serialize>(w: &mut dyn KvWrite, key: Vec<u8>, value: &T) {
    w.put(key, encode(value));
}

/// Visits the records under `prefix`, decoded, until `visit` breaks.
pub fn scan<T: DeserializeOwned>(
    r: &dyn KvRead,
    prefix: &[u8],
    reverse: bool,
    mut visit: impl FnMut(&[u8], T) -> ControlFlow<()>,
) -> Result<(), StoreError> {
    r.scan(prefix, reverse, &mut |k, v| Ok(visit(k, decode(v)?)))
}

/// Every record under `prefix` with its key, in key order.
pub fn collect<T: DeserializeOwned>(
    r: &dyn KvRead,
    prefix: &[u8],
) -> Result<Vec<(Vec<u8>, T)>, StoreError> {
    let mut out = Vec::new();
    scan(r, prefix, false, |k, v| {
        out.push((k.to_vec(), v));
        ControlFlow::Continue(())
    })?;
    Ok(out)
}

// ---------------------------------------------------------------- memories

/// A memory by id.
pub fn memory(r: &dyn KvRead, project: &str, id: &str) -> Result<Option<Memory>, StoreError> {
    get(r, &keys::memory(project, id))
}

/// A project's memories, newest id first, filtered by category and tags, at most `limit`.
pub fn memories(
    r: &dyn KvRead,
    project: &str,
    category: Option<crate::model::Category>,
    tags: &[String],
    limit: usize,
) -> Result<Vec<Memory>, StoreError> {
    let mut out = Vec::new();
    if limit == 0 {
        return Ok(out);
    }
    scan(
        r,
        &keys::prefix(Table::Memory, project),
        true,
        |_, m: Memory| {
            if category.is_none_or(|c| m.category == c) && m.has_all_tags(tags) {
                out.push(m);
            }
            if out.len() >= limit {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        },
    )?;
    Ok(out)
}

/// Every memory of every project, with its project: the search index is rebuilt from it.
pub fn all_memories(r: &dyn KvRead, mut visit: impl FnMut(&str, Memory)) -> Result<(), StoreError> {
    scan(
        r,
        &keys::table_prefix(Table::Memory),
        false,
        |k, m: Memory| {
            if let Some((project, _)) = keys::split_record(k) {
                visit(project, m);
            }
            ControlFlow::Continue(())
        },
    )
}

// ---------------------------------------------------------------- decisions

/// The newest revision of `topic`.
pub fn decision(
    r: &dyn KvRead,
    project: &str,
    topic: &str,
) -> Result<Option<Decision>, StoreError> {
    let mut newest = None;
    scan(
        r,
        &keys::decision_topic(project, topic),
        true,
        |_, d: Decision| {
            newest = Some(d);
            ControlFlow::Break(())
        },
    )?;
    Ok(newest)
}

/// Every revision of `topic`, oldest first.
pub fn decision_history(
    r: &dyn KvRead,
    project: &str,
    topic: &str,
) -> Result<Vec<Decision>, StoreError> {
    Ok(collect(r, &keys::decision_topic(project, topic))?
        .into_iter()
        .map(|(_, d)| d)
        .collect())
}

/// The newest revision of each topic, by topic.
pub fn decisions(r: &dyn KvRead, project: &str) -> Result<Vec<Decision>, StoreError> {
    let mut newest: BTreeMap<String, Decision> = BTreeMap::new();
    scan(
        r,
        &keys::prefix(Table::Decision, project),
        false,
        |_, d: Decision| {
            newest.insert(d.topic.clone(), d);
            ControlFlow::Continue(())
        },
    )?;
    Ok(newest.into_values().collect())
}

// ---------------------------------------------------------------- state

/// A state entry by full key.
pub fn state(r: &dyn KvRead, project: &str, key: &str) -> Result<Option<StateEntry>, StoreError> {
    get(r, &keys::state(project, key))
}

/// A project's state entries by key: all of them, or only `agent`'s when it is set.
pub fn states(r: &dyn KvRead, project: &str, agent: &str) -> Result<Vec<StateEntry>, StoreError> {
    let prefix = if agent.is_empty() {
        keys::prefix(Table::State, project)
    } else {
        keys::state(project, &crate::model::scoped_key(agent, ""))
    };
    Ok(collect(r, &prefix)?
        .into_iter()
        .map(|(_, s): (_, StateEntry)| s)
        .filter(|s| agent.is_empty() || s.agent == agent)
        .collect())
}

// ---------------------------------------------------------------- messages

/// A message by id.
pub fn message(r: &dyn KvRead, project: &str, id: u64) -> Result<Option<Message>, StoreError> {
    get(r, &keys::message(project, id))
}

/// The messages `agent` should see at `now`, oldest first: unexpired broadcasts and messages to it,
/// without those it acknowledged unless `include_read`, in `parent_session_id` when set.
pub fn messages(
    r: &dyn KvRead,
    project: &str,
    agent: &str,
    include_read: bool,
    parent_session_id: &str,
    now: UnixNanos,
) -> Result<Vec<Message>, StoreError> {
    Ok(collect(r, &keys::prefix(Table::Message, project))?
        .into_iter()
        .map(|(_, m): (_, Message)| m)
        .filter(|m| {
            !m.expired(now)
                && m.visible_to(agent)
                && (include_read || agent.is_empty() || !m.read_by.iter().any(|a| a == agent))
                && (parent_session_id.is_empty() || m.parent_session_id == parent_session_id)
        })
        .collect())
}

// ---------------------------------------------------------------- tasks

/// A task by id.
pub fn task(r: &dyn KvRead, project: &str, id: &str) -> Result<Option<Task>, StoreError> {
    get(r, &keys::task(project, id))
}

/// A project's tasks, oldest first, filtered by status and parent session.
pub fn tasks(
    r: &dyn KvRead,
    project: &str,
    status: Option<TaskStatus>,
    parent_session_id: &str,
) -> Result<Vec<Task>, StoreError> {
    let mut out: Vec<Task> = collect(r, &keys::prefix(Table::Task, project))?
        .into_iter()
        .map(|(_, t): (_, Task)| t)
        .filter(|t| {
            status.is_none_or(|s| t.status == s)
                && (parent_session_id.is_empty() || t.parent_session_id == parent_session_id)
        })
        .collect();
    out.sort_by(|a, b| a.created_at.cmp(&b.created_at).then(a.id.cmp(&b.id)));
    Ok(out)
}
