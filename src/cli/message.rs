//! `aide message`: send, list, ack, prune.

use super::print::{message_json, Printer};
use super::CliError;
use crate::client::Client;
use crate::grpc::pb::aidememory::{self as pb, Message};
use clap::Subcommand;
use serde_json::{json, Value};

#[derive(Debug, Subcommand)]
pub enum MessageCmd {
    /// Send a message; without --to it is a broadcast.
    Send {
        content: String,
        #[arg(long)]
        from: String,
        #[arg(long)]
        to: Option<String>,
        /// The message type, such as info, request or alert.
        #[arg(long = "type")]
        kind: Option<String>,
        /// Seconds until the message expires.
        #[arg(long, default_value_t = 3600, allow_negative_numbers = true)]
        ttl: i32,
        #[arg(long)]
        priority: Option<String>,
    },
    /// Messages for an agent (broadcasts and messages to it), oldest first.
    List {
        #[arg(long)]
        agent: Option<String>,
        /// Include messages the agent already acknowledged.
        #[arg(long)]
        all: bool,
    },
    /// Mark a message read by an agent.
    Ack {
        id: u64,
        #[arg(long)]
        agent: String,
    },
    /// Delete expired messages.
    Prune,
}

/// `[id] [broadcast] from: A: text` or `[id] [A -> B] text`.
pub fn line(m: &Message) -> String {
    if m.to.is_empty() {
        format!("[{}] [broadcast] from: {}: {}", m.id, m.from, m.content)
    } else {
        format!("[{}] [{} -> {}] {}", m.id, m.from, m.to, m.content)
    }
}

pub async fn run(cmd: MessageCmd, c: &Client, out: &Printer) -> Result<(), CliError> {
    match cmd {
        MessageCmd::Send {
            content,
            from,
            to,
            kind,
            ttl,
            priority,
        } => {
            let m = c
                .message_send(pb::MessageSendRequest {
                    from,
                    to: to.unwrap_or_default(),
                    content,
                    r#type: kind.unwrap_or_default(),
                    ttl_seconds: ttl,
                    priority: priority.unwrap_or_default(),
                    parent_session_id: String::new(),
                })
                .await?
                .message
                .unwrap_or_default();
            out.either(format!("Sent message: {}", m.id), message_json(&m));
        }
        MessageCmd::List { agent, all } => {
            let r = c
                .message_list(pb::MessageListRequest {
                    agent_id: agent.unwrap_or_default(),
                    include_read: all,
                    parent_session_id: String::new(),
                })
                .await?;
            if out.json() {
                out.value(&Value::Array(r.messages.iter().map(message_json).collect()));
            } else if r.messages.is_empty() {
                println!("No messages.");
            } else {
                for m in &r.messages {
                    println!("{}", line(m));
                }
            }
        }
        MessageCmd::Ack { id, agent } => {
            let ok = c
                .message_ack(pb::MessageAckRequest {
                    message_id: id,
                    agent_id: agent.clone(),
                })
                .await?
                .success;
            if !ok {
                return Err(CliError::NotFound(format!(
                    "message {id} not found (or expired)"
                )));
            }
            out.either(
                format!("Acknowledged message {id} for {agent}"),
                json!({ "id": id, "agent": agent }),
            );
        }
        MessageCmd::Prune => {
            let n = c.message_prune(pb::MessagePruneRequest {}).await?.count;
            out.either(
                format!("Pruned {n} expired messages"),
                json!({ "deleted": n }),
            );
        }
    }
    Ok(())
}
