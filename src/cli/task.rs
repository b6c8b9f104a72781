//! `aide task`: create, get, claim, complete, update, list, delete. A task may be named by a
//! unique prefix of its id, as `task list` shows them.

use super::print::{task_json, Printer};
use super::CliError;
use crate::client::{Client, TaskRef};
use crate::grpc::pb::aidememory::{self as pb, Task};
use clap::Subcommand;
use serde_json::{json, Value};

#[derive(Debug, Subcommand)]
pub enum TaskCmd {
    /// Create a pending task; prints `Created task: <id>`.
    Create {
        title: String,
        #[arg(long)]
        description: Option<String>,
    },
    /// Show a task.
    Get { id: String },
    /// Claim a pending task for an agent; fails if another agent has it.
    Claim {
        id: String,
        #[arg(long)]
        agent: String,
        #[arg(long)]
        worktree: Option<String>,
    },
    /// Mark a task done.
    Complete {
        id: String,
        #[arg(long)]
        result: Option<String>,
    },
    /// Set a task's status (pending, claimed, done, blocked) or result.
    Update {
        id: String,
        #[arg(long)]
        status: Option<String>,
        #[arg(long)]
        result: Option<String>,
    },
    /// List tasks: `[status] <first 8 chars of id>: title`.
    List {
        #[arg(long)]
        status: Option<String>,
    },
    /// Delete a task.
    Delete { id: String },
}

/// `[status] <first 8 chars of id>: title`.
pub fn line(t: &Task) -> String {
    let short: String = t.id.chars().take(8).collect();
    format!("[{}] {short}: {}", t.status, t.title)
}

/// What a task reference says when it names no task or several.
fn unresolved<T>(id: &str, r: TaskRef<T>) -> Result<T, CliError> {
    match r {
        TaskRef::One(t) => Ok(t),
        TaskRef::None => Err(CliError::NotFound(format!("task {id} not found"))),
        TaskRef::Many(n) => Err(CliError::Usage(format!(
            "{id:?} names {n} tasks; give more of the id"
        ))),
    }
}

/// The full id of the task `id` names, for a write: itself when whole, else the one task whose
/// id starts with it.
async fn resolve(c: &Client, id: &str) -> Result<String, CliError> {
    unresolved(id, c.task_to_change(id).await?)
}

pub async fn run(cmd: TaskCmd, c: &Client, out: &Printer) -> Result<(), CliError> {
    match cmd {
        TaskCmd::Create { title, description } => {
            let t = c
                .task_create(pb::TaskCreateRequest {
                    title,
                    description: description.unwrap_or_default(),
                    parent_session_id: String::new(),
                })
                .await?
                .task
                .unwrap_or_default();
            out.either(format!("Created task: {}", t.id), task_json(&t));
        }
        TaskCmd::Get { id } => {
            let t = unresolved(&id, c.resolve_task(&id).await?)?;
            if out.json() {
                out.value(&task_json(&t));
            } else {
                println!("{}", line(&t));
                for (label, v) in [
                    ("ID", &t.id),
                    ("Description", &t.description),
                    ("Claimed by", &t.claimed_by),
                    ("Worktree", &t.worktree),
                    ("Result", &t.result),
                ] {
                    if !v.is_empty() {
                        println!("{label}: {v}");
                    }
                }
            }
        }
        TaskCmd::Claim {
            id,
            agent,
            worktree,
        } => {
            let id = resolve(c, &id).await?;
            let r = c
                .task_claim(pb::TaskClaimRequest {
                    task_id: id.clone(),
                    agent_id: agent.clone(),
                    worktree: worktree.unwrap_or_default(),
                })
                .await?;
            if !r.success {
                return Err(CliError::Failed(format!(
                    "could not claim task {id}: {}",
                    r.error
                )));
            }
            let t = r.task.unwrap_or_default();
            out.either(format!("Claimed task: {id} for {agent}"), task_json(&t));
        }
        TaskCmd::Complete { id, result } => {
            let id = resolve(c, &id).await?;
            let r = c
                .task_complete(pb::TaskCompleteRequest {
                    task_id: id.clone(),
                    result: result.unwrap_or_default(),
                })
                .await?;
            if !r.success {
                return Err(CliError::Failed(format!("task {id} is already done")));
            }
            out.either(
                format!("Completed task: {id}"),
                task_json(&r.task.unwrap_or_default()),
            );
        }
        TaskCmd::Update { id, status, result } => {
            let id = resolve(c, &id).await?;
            let r = c
                .task_update(pb::TaskUpdateRequest {
                    task_id: id.clone(),
                    status: status.unwrap_or_default(),
                    result: result.unwrap_or_default(),
                })
                .await?;
            let t = r.task.unwrap_or_default();
            out.either(format!("Updated task: {id} [{}]", t.status), task_json(&t));
        }
        TaskCmd::List { status } => {
            let r = c
                .task_list(pb::TaskListRequest {
                    status: status.unwrap_or_default(),
                    parent_session_id: String::new(),
                })
                .await?;
            if out.json() {
                out.value(&Value::Array(r.tasks.iter().map(task_json).collect()));
            } else if r.tasks.is_empty() {
                println!("No tasks.");
            } else {
                for t in &r.tasks {
                    println!("{}", line(t));
                }
            }
        }
        TaskCmd::Delete { id } => {
            let id = resolve(c, &id).await?;
            let ok = c
                .task_delete(pb::TaskDeleteRequest { id: id.clone() })
                .await?
                .success;
            if !ok {
                return Err(CliError::NotFound(format!("task {id} not found")));
            }
            out.either(format!("Deleted task: {id}"), json!({ "deleted": id }));
        }
    }
    Ok(())
}
