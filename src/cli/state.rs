//! `aide state`: set, get, delete, list, clear, cleanup.

use super::print::{state_json, Printer};
use super::CliError;
use crate::client::Client;
use crate::grpc::pb::aidememory as pb;
use crate::model::scoped_key;
use clap::Subcommand;
use serde_json::{json, Value};

#[derive(Debug, Subcommand)]
pub enum StateCmd {
    /// Set a key; prints `Set state: K = V`.
    Set {
        key: String,
        value: String,
        /// Scope the key to this agent.
        #[arg(long)]
        agent: Option<String>,
    },
    /// Print a key's value.
    Get {
        key: String,
        /// The key as this agent scoped it (`state set --agent`).
        #[arg(long)]
        agent: Option<String>,
    },
    /// Delete a key.
    Delete {
        key: String,
        /// The key as this agent scoped it (`state set --agent`).
        #[arg(long)]
        agent: Option<String>,
    },
    /// List keys: `key = value`, and `[agent] agent:<a>:key = value` for agent-scoped ones.
    List {
        /// Only this agent's keys.
        #[arg(long)]
        agent: Option<String>,
    },
    /// Delete an agent's keys (--agent) or every key (--all).
    Clear {
        /// Delete this agent's keys.
        #[arg(long, conflicts_with = "all")]
        agent: Option<String>,
        /// Delete every key of the project.
        #[arg(long)]
        all: bool,
    },
    /// Delete agent-scoped keys not updated for a while.
    Cleanup {
        #[arg(long, default_value = "1h")]
        older_than: String,
    },
}

pub async fn run(cmd: StateCmd, c: &Client, out: &Printer) -> Result<(), CliError> {
    match cmd {
        StateCmd::Set { key, value, agent } => {
            let s = c
                .state_set(pb::StateSetRequest {
                    key: key.clone(),
                    value,
                    agent_id: agent.unwrap_or_default(),
                    updated_at: None,
                })
                .await?
                .state
                .unwrap_or_default();
            out.either(format!("Set state: {key} = {}", s.value), state_json(&s));
        }
        StateCmd::Get { key, agent } => {
            let agent = agent.unwrap_or_default();
            let r = c
                .state_get(pb::StateGetRequest {
                    key: key.clone(),
                    agent_id: agent.clone(),
                })
                .await?;
            match r.state.filter(|_| r.found) {
                Some(s) => out.either(&s.value, state_json(&s)),
                None => return Err(CliError::NotFound(not_found(&agent, &key))),
            }
        }
        StateCmd::Delete { key, agent } => {
            let agent = agent.unwrap_or_default();
            let full = scoped_key(&agent, &key);
            let ok = c
                .state_delete(pb::StateDeleteRequest { key: full.clone() })
                .await?
                .success;
            if !ok {
                return Err(CliError::NotFound(not_found(&agent, &key)));
            }
            out.either(format!("Deleted state: {full}"), json!({ "deleted": full }));
        }
        StateCmd::List { agent } => {
            let r = c
                .state_list(pb::StateListRequest {
                    agent_id: agent.unwrap_or_default(),
                })
                .await?;
            if out.json() {
                out.value(&Value::Array(r.states.iter().map(state_json).collect()));
            } else if r.states.is_empty() {
                println!("No state entries.");
            } else {
                for s in &r.states {
                    if s.agent.is_empty() {
                        println!("{} = {}", s.key, s.value);
                    } else {
                        println!("[{}] {} = {}", s.agent, s.key, s.value);
                    }
                }
            }
        }
        StateCmd::Clear { agent, all } => {
            let agent_id = match (agent, all) {
                (Some(a), false) if !a.is_empty() => a,
                (None, true) => String::new(),
                _ => {
                    return Err(CliError::Usage(
                        "state clear needs --agent=ID (one agent's keys) or --all (every key)"
                            .into(),
                    ))
                }
            };
            let n = c
                .state_clear(pb::StateClearRequest { agent_id })
                .await?
                .count;
            out.either(
                format!("Cleared {n} state entries"),
                json!({ "deleted": n }),
            );
        }
        StateCmd::Cleanup { older_than } => {
            let n = c
                .state_cleanup(pb::StateCleanupRequest {
                    max_age: older_than.clone(),
                })
                .await?
                .count;
            out.either(
                format!("Cleaned up {n} agent state entries older than {older_than}"),
                json!({ "deleted": n }),
            );
        }
    }
    Ok(())
}

/// The error of a key that is not there, named as the user named it.
fn not_found(agent: &str, key: &str) -> String {
    if agent.is_empty() {
        format!("state key {key:?} not found")
    } else {
        format!("state key {key:?} of agent {agent:?} not found")
    }
}
