//! `aide hook session-start`: the context block Claude Code injects at the start of a session —
//! global preferences (memories tagged `scope:global`), the project's decisions, and its most
//! recent memories — as Markdown on stdout. A hook must never stop a session from starting: when
//! no node answers, it prints a one-line note instead and still succeeds.

use super::print::{date, indent_rest};
use super::CliError;
use crate::client::Client;
use crate::grpc::pb::aidememory as pb;
use clap::Subcommand;

#[derive(Debug, Subcommand)]
pub enum HookCmd {
    /// Print the context block for a new Claude Code session.
    SessionStart {
        /// How many recent memories to include.
        #[arg(long, default_value_t = 10)]
        recent: i32,
    },
}

pub async fn run(cmd: HookCmd, c: &Client) -> Result<(), CliError> {
    match cmd {
        HookCmd::SessionStart { recent } => {
            match context(c, recent).await {
                Ok(text) => print!("{text}"),
                Err(e) => println!("(aide: no shared memory this session: {e})"),
            }
            Ok(())
        }
    }
}

async fn context(c: &Client, recent: i32) -> Result<String, crate::client::ClientError> {
    let global = c
        .memory_list(pb::MemoryListRequest {
            tags: vec!["scope:global".to_string()],
            limit: 50,
            ..Default::default()
        })
        .await?
        .memories;
    let decisions = c.decision_list(pb::DecisionListRequest {}).await?.decisions;
    let latest = c
        .memory_list(pb::MemoryListRequest {
            limit: recent,
            ..Default::default()
        })
        .await?
        .memories;

    let mut out = String::from("# aide: shared memory for this project\n");
    if !global.is_empty() {
        out.push_str("\n## Preferences\n\n");
        for m in &global {
            out.push_str(&format!("- {}\n", indent_rest(m.content.trim(), 2)));
        }
    }
    if !decisions.is_empty() {
        out.push_str("\n## Decisions\n\n");
        for d in &decisions {
            out.push_str(&format!(
                "- **{}**: {}",
                d.topic,
                indent_rest(d.decision.trim(), 2)
            ));
            if !d.rationale.is_empty() {
                out.push_str(&format!(" — {}", indent_rest(d.rationale.trim(), 2)));
            }
            out.push('\n');
        }
    }
    let recent: Vec<&pb::Memory> = latest
        .iter()
        .filter(|m| !m.tags.iter().any(|t| t == "scope:global"))
        .collect();
    if !recent.is_empty() {
        out.push_str("\n## Recent memories\n\n");
        for m in recent {
            out.push_str(&format!(
                "- [{}] {} ({})\n",
                m.category,
                indent_rest(m.content.trim(), 2),
                date(&m.created_at)
            ));
        }
    }
    if global.is_empty() && decisions.is_empty() && latest.is_empty() {
        out.push_str(
            "\nNothing stored yet. Use the aide tools to remember learnings and decisions.\n",
        );
    }
    Ok(out)
}
