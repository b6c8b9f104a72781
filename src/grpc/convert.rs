//! Conversions between the stored model and the protobuf messages.

use super::pb::aidememory as pb;
use crate::model::{Decision, Memory, Message, StateEntry, Task, UnixNanos};
use prost_types::Timestamp;

/// A stored time as a protobuf timestamp.
pub fn timestamp(t: UnixNanos) -> Timestamp {
    Timestamp {
        seconds: t.div_euclid(1_000_000_000),
        nanos: t.rem_euclid(1_000_000_000) as i32,
    }
}

/// A protobuf timestamp as a stored time; `None` when unset or out of range.
pub fn from_timestamp(t: Option<&Timestamp>) -> Option<UnixNanos> {
    let t = t?;
    if t.seconds == 0 && t.nanos == 0 {
        return None;
    }
    t.seconds
        .checked_mul(1_000_000_000)?
        .checked_add(i64::from(t.nanos))
}

fn opt_timestamp(t: Option<UnixNanos>) -> Option<Timestamp> {
    t.map(timestamp)
}

pub fn memory(m: &Memory) -> pb::Memory {
    pb::Memory {
        id: m.id.clone(),
        category: m.category.as_str().to_string(),
        content: m.content.clone(),
        tags: m.tags.clone(),
        priority: m.priority,
        plan: m.plan.clone(),
        agent: m.agent.clone(),
        namespace: m.namespace.clone(),
        created_at: Some(timestamp(m.created_at)),
        updated_at: Some(timestamp(m.updated_at)),
        access_count: m.access_count,
        last_accessed: opt_timestamp(m.last_accessed),
    }
}

pub fn state(s: &StateEntry) -> pb::State {
    pb::State {
        key: s.key.clone(),
        value: s.value.clone(),
        agent: s.agent.clone(),
        updated_at: Some(timestamp(s.updated_at)),
    }
}

pub fn decision(d: &Decision) -> pb::Decision {
    pb::Decision {
        topic: d.topic.clone(),
        decision: d.decision.clone(),
        rationale: d.rationale.clone(),
        details: d.details.clone(),
        references: d.references.clone(),
        decided_by: d.decided_by.clone(),
        created_at: Some(timestamp(d.created_at)),
        precedence: d.precedence,
    }
}

pub fn message(m: &Message) -> pb::Message {
    pb::Message {
        id: m.id,
        from: m.from.clone(),
        to: m.to.clone(),
        content: m.content.clone(),
        r#type: m.kind.clone(),
        read_by: m.read_by.clone(),
        created_at: Some(timestamp(m.created_at)),
        expires_at: Some(timestamp(m.expires_at)),
        priority: m.priority.clone(),
        parent_session_id: m.parent_session_id.clone(),
    }
}

pub fn task(t: &Task) -> pb::Task {
    pb::Task {
        id: t.id.clone(),
        title: t.title.clone(),
        description: t.description.clone(),
        status: t.status.as_str().to_string(),
        claimed_by: t.claimed_by.clone(),
        worktree: t.worktree.clone(),
        result: t.result.clone(),
        created_at: Some(timestamp(t.created_at)),
        claimed_at: opt_timestamp(t.claimed_at),
        completed_at: opt_timestamp(t.completed_at),
        parent_session_id: t.parent_session_id.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_round_trip_including_before_1970() {
        for t in [1_700_000_000_123_456_789i64, -1_500_000_000, 1] {
            assert_eq!(from_timestamp(Some(&timestamp(t))), Some(t));
        }
        assert_eq!(from_timestamp(None), None);
    }
}
