//! How tool results read for a model: memories and decisions as Markdown, state, messages and
//! tasks as JSON (as the original aide gave them), failures as one plain sentence.

use crate::cli::print::{date, message_json, state_json, task_json};
use crate::client::ClientError;
use crate::grpc::pb::aidememory as pb;
use tonic::Code;

/// Memories grouped by category (the category of the newest first), newest first in each.
pub fn memories(list: &[pb::Memory]) -> String {
    if list.is_empty() {
        return "No memories found.".to_string();
    }
    let mut sorted: Vec<&pb::Memory> = list.iter().collect();
    sorted.sort_by(|a, b| newest_first(&a.created_at, &b.created_at));
    let mut categories: Vec<&str> = Vec::new();
    for m in &sorted {
        if !categories.contains(&m.category.as_str()) {
            categories.push(&m.category);
        }
    }
    let mut out = String::new();
    for c in categories {
        out.push_str(&format!("## {c}\n\n"));
        for m in sorted.iter().filter(|m| m.category == c) {
            out.push_str(&memory_line(m));
        }
        out.push('\n');
    }
    out.trim_end().to_string()
}

/// Search results in relevance order, each with its category.
pub fn ranked(list: &[pb::Memory]) -> String {
    if list.is_empty() {
        return "No memories match.".to_string();
    }
    let mut out = format!("{} matching memories, most relevant first:\n\n", list.len());
    for m in list {
        out.push_str(&format!(
            "- [{}] {}",
            m.category,
            memory_line(m).trim_start_matches("- ")
        ));
    }
    out.trim_end().to_string()
}

fn memory_line(m: &pb::Memory) -> String {
    let tags = if m.tags.is_empty() {
        String::new()
    } else {
        format!(" — tags: {}", m.tags.join(", "))
    };
    format!(
        "- **{}** {}{tags} (id `{}`)\n",
        date(&m.created_at),
        m.content.trim(),
        m.id
    )
}

fn newest_first(
    a: &Option<prost_types::Timestamp>,
    b: &Option<prost_types::Timestamp>,
) -> std::cmp::Ordering {
    let key = |t: &Option<prost_types::Timestamp>| t.as_ref().map(|t| (t.seconds, t.nanos));
    key(b).cmp(&key(a))
}

/// One decision with everything recorded about it.
pub fn decision(d: &pb::Decision) -> String {
    let mut out = format!("### {}\n\n**Decision:** {}\n", d.topic, d.decision);
    if !d.rationale.is_empty() {
        out.push_str(&format!("\n**Rationale:** {}\n", d.rationale));
    }
    if !d.details.is_empty() {
        out.push_str(&format!("\n**Details:** {}\n", d.details));
    }
    if !d.references.is_empty() {
        out.push_str(&format!("\n**References:** {}\n", d.references.join(", ")));
    }
    let by = if d.decided_by.is_empty() {
        "unknown".to_string()
    } else {
        d.decided_by.clone()
    };
    out.push_str(&format!(
        "\n_Decided by {by} on {} (precedence {})_\n",
        date(&d.created_at),
        d.precedence
    ));
    out
}

/// Several decisions, one after another.
pub fn decisions(list: &[pb::Decision], empty: &str) -> String {
    if list.is_empty() {
        return empty.to_string();
    }
    list.iter()
        .map(decision)
        .collect::<Vec<_>>()
        .join("\n")
        .trim_end()
        .to_string()
}

fn pretty(v: serde_json::Value) -> String {
    serde_json::to_string_pretty(&v).unwrap_or_else(|_| v.to_string())
}

pub fn state(s: &pb::State) -> String {
    pretty(state_json(s))
}

pub fn states(list: &[pb::State]) -> String {
    pretty(serde_json::Value::Array(
        list.iter().map(state_json).collect(),
    ))
}

pub fn message(m: &pb::Message) -> String {
    pretty(message_json(m))
}

pub fn messages(list: &[pb::Message]) -> String {
    pretty(serde_json::Value::Array(
        list.iter().map(message_json).collect(),
    ))
}

pub fn task(t: &pb::Task) -> String {
    pretty(task_json(t))
}

pub fn tasks(list: &[pb::Task]) -> String {
    pretty(serde_json::Value::Array(
        list.iter().map(task_json).collect(),
    ))
}

/// What failed and what to do, in one or two sentences.
pub fn failure(what: &str, e: &ClientError) -> String {
    match e.code {
        // A node answered, but the cluster cannot serve the call now (its own words).
        Code::Unavailable
            if e.message.starts_with("no quorum") || e.message.starts_with("no leader") =>
        {
            format!(
                "Could not {what}: the cluster cannot serve it now ({}). Try again in a moment; \
                 `aide cluster status` shows which nodes are up.",
                e.message
            )
        }
        Code::Unavailable | Code::DeadlineExceeded | Code::Cancelled => format!(
            "Could not {what}: no aide node answered ({}). Start one with `aide serve`, or point \
             the MCP server at a running cluster with --remote HOST:PORT, AIDE_REMOTE or a \
             `sync` section with `mode: raft` and its `peers` in ~/.aide/config.yaml.",
            e.message
        ),
        Code::InvalidArgument => format!(
            "Could not {what}: {}. Fix the argument and try again.",
            e.message
        ),
        Code::NotFound | Code::FailedPrecondition | Code::AlreadyExists => {
            format!("Could not {what}: {}.", e.message)
        }
        Code::PermissionDenied | Code::Unauthenticated => format!(
            "Could not {what}: the node refused the request ({}). Check the API key.",
            e.message
        ),
        _ => format!("Could not {what}: the node failed ({}).", e.message),
    }
}
