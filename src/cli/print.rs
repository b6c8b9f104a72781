//! The one printer of the CLI: text lines as the hooks expect them, or JSON.

use crate::grpc::pb::aidememory as pb;
use clap::ValueEnum;
use serde_json::{json, Value};
use std::time::{Duration, UNIX_EPOCH};

/// Output formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Text,
    Json,
    /// Markdown (memory export); other commands print text.
    Markdown,
}

/// Prints command results in the chosen format.
pub struct Printer {
    pub format: Format,
}

impl Printer {
    pub fn new(format: Format) -> Self {
        Printer { format }
    }

    /// Whether to print JSON.
    pub fn json(&self) -> bool {
        self.format == Format::Json
    }

    /// Prints `text` as a line in text mode, or `value` in JSON mode.
    pub fn either(&self, text: impl AsRef<str>, value: Value) {
        if self.json() {
            self.value(&value);
        } else {
            println!("{}", text.as_ref());
        }
    }

    /// Prints a JSON value, pretty.
    pub fn value(&self, value: &Value) {
        println!(
            "{}",
            serde_json::to_string_pretty(value).unwrap_or_else(|_| value.to_string())
        );
    }
}

/// RFC 3339 time of a protobuf timestamp, or null.
pub fn time_json(t: &Option<prost_types::Timestamp>) -> Value {
    match rfc3339(t) {
        Some(s) => Value::String(s),
        None => Value::Null,
    }
}

/// RFC 3339 (UTC, seconds) of a protobuf timestamp.
pub fn rfc3339(t: &Option<prost_types::Timestamp>) -> Option<String> {
    let t = t.as_ref()?;
    let at = if t.seconds >= 0 {
        UNIX_EPOCH + Duration::new(t.seconds as u64, t.nanos.max(0) as u32)
    } else {
        UNIX_EPOCH - Duration::from_secs(t.seconds.unsigned_abs())
    };
    Some(humantime::format_rfc3339_seconds(at).to_string())
}

/// The date part (YYYY-MM-DD) of a timestamp, or "-".
pub fn date(t: &Option<prost_types::Timestamp>) -> String {
    rfc3339(t).map_or_else(|| "-".to_string(), |s| s[..10].to_string())
}

/// `s` cut to `max` characters with an ellipsis, on one line.
pub fn short(s: &str, max: usize) -> String {
    let one_line = s.split_whitespace().collect::<Vec<_>>().join(" ");
    if one_line.chars().count() <= max {
        one_line
    } else {
        let cut: String = one_line.chars().take(max.saturating_sub(1)).collect();
        format!("{cut}…")
    }
}

/// `s` without trailing whitespace, each line after its first indented by `pad` spaces, so that
/// a multi-line text stays under the line (or Markdown list item) it begins.
pub fn indent_rest(s: &str, pad: usize) -> String {
    let pad = format!("\n{}", " ".repeat(pad));
    s.trim_end().replace('\n', &pad)
}

pub fn memory_json(m: &pb::Memory) -> Value {
    json!({
        "id": m.id,
        "category": m.category,
        "content": m.content,
        "tags": m.tags,
        "created_at": time_json(&m.created_at),
        "updated_at": time_json(&m.updated_at),
        "access_count": m.access_count,
    })
}

pub fn decision_json(d: &pb::Decision) -> Value {
    json!({
        "topic": d.topic,
        "value": d.decision,
        "decision": d.decision,
        "rationale": d.rationale,
        "details": d.details,
        "references": d.references,
        "decided_by": d.decided_by,
        "precedence": d.precedence,
        "created_at": time_json(&d.created_at),
    })
}

pub fn state_json(s: &pb::State) -> Value {
    json!({
        "key": s.key,
        "value": s.value,
        "agent": s.agent,
        "updated_at": time_json(&s.updated_at),
    })
}

pub fn message_json(m: &pb::Message) -> Value {
    json!({
        "id": m.id,
        "from": m.from,
        "to": m.to,
        "content": m.content,
        "type": m.r#type,
        "read_by": m.read_by,
        "priority": m.priority,
        "parent_session_id": m.parent_session_id,
        "created_at": time_json(&m.created_at),
        "expires_at": time_json(&m.expires_at),
    })
}

pub fn task_json(t: &pb::Task) -> Value {
    json!({
        "id": t.id,
        "title": t.title,
        "description": t.description,
        "status": t.status,
        "claimed_by": t.claimed_by,
        "worktree": t.worktree,
        "result": t.result,
        "parent_session_id": t.parent_session_id,
        "created_at": time_json(&t.created_at),
        "claimed_at": time_json(&t.claimed_at),
        "completed_at": time_json(&t.completed_at),
    })
}

/// Prints the version.
pub fn version(format: Format) {
    if format == Format::Json {
        let v = json!({
            "version": crate::VERSION,
            "commit": crate::COMMIT,
            "build_date": crate::BUILD_DATE,
        });
        println!("{v}");
    } else {
        println!(
            "aide {} (commit {}, built {})",
            crate::VERSION,
            crate::COMMIT,
            crate::BUILD_DATE
        );
    }
}
