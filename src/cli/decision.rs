//! `aide decision`: set, get, list, history, delete.

use super::print::{self, decision_json, Printer};
use super::CliError;
use crate::client::Client;
use crate::grpc::pb::aidememory::{self as pb, Decision};
use clap::Subcommand;
use serde_json::{json, Value};

#[derive(Debug, Subcommand)]
pub enum DecisionCmd {
    /// Record a decision on a topic (a new revision; the history is kept).
    Set {
        topic: String,
        decision: String,
        #[arg(long)]
        rationale: Option<String>,
        #[arg(long)]
        details: Option<String>,
        /// A reference (URL, file, issue); repeat for several.
        #[arg(long = "ref", value_name = "REF")]
        references: Vec<String>,
        /// Who decided.
        #[arg(long = "by")]
        decided_by: Option<String>,
        /// Precedence; carried over from the previous revision when not given.
        #[arg(long, allow_negative_numbers = true)]
        precedence: Option<i32>,
    },
    /// Show a topic's current decision.
    Get { topic: String },
    /// The current decision of every topic.
    List,
    /// Every revision of a topic, oldest first.
    History { topic: String },
    /// Delete a topic's whole history, or every topic with `all`.
    Delete { topic: String },
}

fn describe(d: &Decision) -> String {
    let mut s = format!("{}: {}\n", d.topic, d.decision);
    if !d.rationale.is_empty() {
        s.push_str(&format!("Rationale: {}\n", d.rationale));
    }
    if !d.details.is_empty() {
        s.push_str(&format!("Details: {}\n", d.details));
    }
    for r in &d.references {
        s.push_str(&format!("Reference: {r}\n"));
    }
    if !d.decided_by.is_empty() {
        s.push_str(&format!("Decided by: {}\n", d.decided_by));
    }
    s.push_str(&format!(
        "Date: {}",
        print::rfc3339(&d.created_at).unwrap_or_default()
    ));
    s
}

pub async fn run(cmd: DecisionCmd, c: &Client, out: &Printer) -> Result<(), CliError> {
    match cmd {
        DecisionCmd::Set {
            topic,
            decision,
            rationale,
            details,
            references,
            decided_by,
            precedence,
        } => {
            let d = c
                .decision_set(pb::DecisionSetRequest {
                    topic,
                    decision,
                    rationale: rationale.unwrap_or_default(),
                    details: details.unwrap_or_default(),
                    references,
                    decided_by: decided_by.unwrap_or_default(),
                    created_at: None,
                    precedence,
                })
                .await?
                .decision
                .unwrap_or_default();
            out.either(
                format!("Set decision: {} = {}", d.topic, d.decision),
                decision_json(&d),
            );
        }
        DecisionCmd::Get { topic } => {
            let r = c
                .decision_get(pb::DecisionGetRequest {
                    topic: topic.clone(),
                })
                .await?;
            match r.decision.filter(|_| r.found) {
                Some(d) => out.either(describe(&d), decision_json(&d)),
                None => {
                    return Err(CliError::NotFound(format!(
                        "no decision on topic {topic:?}"
                    )))
                }
            }
        }
        DecisionCmd::List => {
            let r = c.decision_list(pb::DecisionListRequest {}).await?;
            if out.json() {
                let items: Vec<Value> = r
                    .decisions
                    .iter()
                    .map(|d| {
                        json!({
                            "topic": d.topic,
                            "value": d.decision,
                            "rationale": d.rationale,
                            "created_at": print::time_json(&d.created_at),
                        })
                    })
                    .collect();
                out.value(&Value::Array(items));
            } else if r.decisions.is_empty() {
                println!("No decisions recorded.");
            } else {
                for d in &r.decisions {
                    println!("{}: {}", d.topic, d.decision);
                }
            }
        }
        DecisionCmd::History { topic } => {
            let r = c
                .decision_history(pb::DecisionHistoryRequest {
                    topic: topic.clone(),
                })
                .await?;
            if out.json() {
                out.value(&Value::Array(
                    r.decisions.iter().map(decision_json).collect(),
                ));
            } else if r.decisions.is_empty() {
                return Err(CliError::NotFound(format!(
                    "no decision on topic {topic:?}"
                )));
            } else {
                for d in &r.decisions {
                    let by = if d.decided_by.is_empty() {
                        String::new()
                    } else {
                        format!(" (by {})", d.decided_by)
                    };
                    println!(
                        "{} {}{by}",
                        print::rfc3339(&d.created_at).unwrap_or_default(),
                        d.decision
                    );
                }
            }
        }
        DecisionCmd::Delete { topic } if topic == "all" => {
            let n = c.decision_clear(pb::DecisionClearRequest {}).await?.count;
            out.either(format!("Deleted {n} decisions"), json!({ "deleted": n }));
        }
        DecisionCmd::Delete { topic } => {
            let n = c
                .decision_delete(pb::DecisionDeleteRequest {
                    topic: topic.clone(),
                })
                .await?
                .count;
            if n == 0 {
                return Err(CliError::NotFound(format!(
                    "no decision on topic {topic:?}"
                )));
            }
            out.either(
                format!("Deleted decision: {topic} ({n} revisions)"),
                json!({ "topic": topic, "deleted": n }),
            );
        }
    }
    Ok(())
}
