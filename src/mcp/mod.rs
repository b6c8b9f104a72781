//! `aide mcp`: the MCP server Claude Code talks to, on stdio, built on `rmcp`. Every tool is one
//! call through [`crate::client`], so it reaches the nearest node and follows the cluster when
//! nodes fail. A failed call is a tool error with a plain sentence, and the server goes on.

mod render;

use crate::client::{Client, ClientError, TaskRef};
use crate::grpc::pb::aidememory as pb;
use rmcp::handler::server::{router::tool::ToolRouter, wrapper::Parameters};
use rmcp::model::{CallToolResult, ContentBlock, Implementation, ServerCapabilities, ServerConfig};
use rmcp::{tool, tool_handler, tool_router, ErrorData as McpError, ServerHandler, ServiceExt};
use schemars::JsonSchema;
use serde::Deserialize;

/// The MCP server: a client of the cluster and the tool table.
#[derive(Clone)]
pub struct AideMcp {
    client: Client,
    tool_router: ToolRouter<Self>,
}

type ToolResult = Result<CallToolResult, McpError>;

fn ok(text: String) -> ToolResult {
    Ok(CallToolResult::success(vec![ContentBlock::text(text)]))
}

fn failed(text: String) -> ToolResult {
    Ok(CallToolResult::error(vec![ContentBlock::text(text)]))
}

/// The one task (or task id) a reference names, or the tool error to return.
fn one_task<T>(id: &str, what: &str, r: Result<TaskRef<T>, ClientError>) -> Result<T, ToolResult> {
    match r {
        Ok(TaskRef::One(t)) => Ok(t),
        Ok(TaskRef::None) => Err(failed(format!("There is no task {id}."))),
        Ok(TaskRef::Many(n)) => Err(failed(format!(
            "{id:?} is the start of {n} tasks' ids; give more of the id."
        ))),
        Err(e) => Err(failed(render::failure(what, &e))),
    }
}

/// The full id of the task `id` names, for a write (a unique prefix is enough, as `aide task
/// list` shows ids), or the tool error to return.
async fn task_id(client: &Client, id: &str, what: &str) -> Result<String, ToolResult> {
    one_task(id, what, client.task_to_change(id).await)
}

/// The text of `r`, or a tool error saying what could not be done.
fn answer<T>(what: &str, r: Result<T, ClientError>, show: impl FnOnce(T) -> String) -> ToolResult {
    match r {
        Ok(v) => ok(show(v)),
        Err(e) => failed(render::failure(what, &e)),
    }
}

/// Tags as a list, or as one comma-separated string (as the original accepted).
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum Tags {
    List(Vec<String>),
    Text(String),
}

impl Tags {
    fn into_vec(self) -> Vec<String> {
        match self {
            Tags::List(v) => v,
            Tags::Text(s) => s
                .split(',')
                .map(str::trim)
                .filter(|t| !t.is_empty())
                .map(String::from)
                .collect(),
        }
    }
}

#[derive(Debug, Deserialize, JsonSchema)]
pub struct MemorySearchArgs {
    /// Words to look for; a word prefix or one typo still matches.
    pub query: String,
    /// The most results (default 10).
    pub limit: Option<i32>,
    /// Only memories of this category (learning, decision, issue, discovery, blocker, pattern, ...).
    pub category: Option<String>,
}

#[derive(Debug, Deserialize, JsonSchema)]
pub struct MemoryListArgs {
    /// Only memories of this category.
    pub category: Option<String>,
    /// The most memories (default 50).
    pub limit: Option<i32>,
}

#[derive(Debug, Deserialize, JsonSchema)]
pub struct MemoryAddArgs {
    /// What to remember, in plain words.
    pub content: String,
    /// learning, decision, issue, discovery, blocker, abandoned, gotcha, pattern or session
    /// (default learning).
    pub category: Option<String>,
    /// Labels, as a list or comma-separated; `scope:global` marks a preference for every project.
    pub tags: Option<Tags>,
}

#[derive(Debug, Deserialize, JsonSchema)]
pub struct StateGetArgs {
    /// The key.
    pub key: String,
    /// The agent the key belongs to; empty for a shared key.
    pub agent_id: Option<String>,
}

#[derive(Debug, Deserialize, JsonSchema)]
pub struct StateListArgs {
    /// Only this agent's keys.
    pub agent_id: Option<String>,
}

#[derive(Debug, Deserialize, JsonSchema)]
pub struct StateSetArgs {
    /// The key.
    pub key: String,
    /// The value.
    pub value: String,
    /// The agent the key belongs to; empty for a shared key.
    pub agent_id: Option<String>,
}

#[derive(Debug, Deserialize, JsonSchema)]
pub struct TopicArgs {
    /// The decision's topic, such as `auth-strategy`.
    pub topic: String,
}

#[derive(Debug, Deserialize, JsonSchema)]
pub struct DecisionSetArgs {
    /// The topic, such as `auth-strategy`.
    pub topic: String,
    /// What was decided.
    pub decision: String,
    /// Why.
    pub rationale: Option<String>,
    /// Anything else worth knowing.
    pub details: Option<String>,
    /// Links, files or issues the decision refers to.
    pub references: Option<Vec<String>>,
    /// Who decided.
    pub decided_by: Option<String>,
    /// Precedence; a later decision on the topic keeps the last one's when unset.
    pub precedence: Option<i32>,
}

#[derive(Debug, Deserialize, JsonSchema)]
pub struct MessageListArgs {
    /// Messages for this agent (and broadcasts); every message when unset.
    pub agent_id: Option<String>,
    /// Include messages this agent already acknowledged.
    pub include_read: Option<bool>,
}

#[derive(Debug, Deserialize, JsonSchema)]
pub struct MessageSendArgs {
    /// The sending agent.
    pub from: String,
    /// The receiving agent; empty to broadcast.
    pub to: Option<String>,
    /// The message.
    pub content: String,
    /// The kind of message, such as info, request, status or blocker.
    #[serde(rename = "type")]
    pub kind: Option<String>,
    /// Seconds until the message expires (default one hour).
    pub ttl_seconds: Option<i32>,
}

#[derive(Debug, Deserialize, JsonSchema)]
pub struct MessageAckArgs {
    /// The message's id.
    pub message_id: u64,
    /// The agent acknowledging it.
    pub agent_id: String,
}

#[derive(Debug, Deserialize, JsonSchema)]
pub struct IdArgs {
    /// The task's id, or a unique start of it (as `aide task list` shows ids).
    pub id: String,
}

#[derive(Debug, Deserialize, JsonSchema)]
pub struct TaskListArgs {
    /// Only tasks in this status: pending, claimed, done or blocked.
    pub status: Option<String>,
}

#[derive(Debug, Deserialize, JsonSchema)]
pub struct TaskCreateArgs {
    /// A short title.
    pub title: String,
    /// What is to be done.
    pub description: Option<String>,
}

#[derive(Debug, Deserialize, JsonSchema)]
pub struct TaskClaimArgs {
    /// The task's id, or a unique start of it (as `aide task list` shows ids).
    pub task_id: String,
    /// The agent claiming it.
    pub agent_id: String,
    /// The worktree the agent works in.
    pub worktree: Option<String>,
}

#[derive(Debug, Deserialize, JsonSchema)]
pub struct TaskCompleteArgs {
    /// The task's id, or a unique start of it (as `aide task list` shows ids).
    pub task_id: String,
    /// What came of it.
    pub result: Option<String>,
}

#[tool_router]
impl AideMcp {
    pub fn new(client: Client) -> Self {
        AideMcp {
            client,
            tool_router: Self::tool_router(),
        }
    }

    #[tool(
        description = "Search the project's memories by relevance (BM25). Word prefixes and one typo still match. Returns Markdown, most relevant first.",
        annotations(read_only_hint = true, destructive_hint = false)
    )]
    async fn memory_search(&self, Parameters(a): Parameters<MemorySearchArgs>) -> ToolResult {
        let r = self
            .client
            .memory_search(pb::MemorySearchRequest {
                query: a.query,
                limit: a.limit.unwrap_or(10),
                category: a.category.unwrap_or_default(),
                ..Default::default()
            })
            .await;
        answer("search memories", r, |r| render::ranked(&r.memories))
    }

    #[tool(
        description = "List the project's memories, newest first, grouped by category, as Markdown.",
        annotations(read_only_hint = true, destructive_hint = false)
    )]
    async fn memory_list(&self, Parameters(a): Parameters<MemoryListArgs>) -> ToolResult {
        let r = self
            .client
            .memory_list(pb::MemoryListRequest {
                category: a.category.unwrap_or_default(),
                limit: a.limit.unwrap_or(50),
                ..Default::default()
            })
            .await;
        answer("list memories", r, |r| render::memories(&r.memories))
    }

    #[tool(
        description = "Remember something for later sessions and other agents: a learning, decision, issue, discovery, blocker, abandoned approach, gotcha, pattern or session note, with optional tags.",
        annotations(read_only_hint = false, destructive_hint = false)
    )]
    async fn memory_add(&self, Parameters(a): Parameters<MemoryAddArgs>) -> ToolResult {
        let r = self
            .client
            .memory_add(pb::MemoryAddRequest {
                content: a.content,
                category: a.category.unwrap_or_default(),
                tags: a.tags.map(Tags::into_vec).unwrap_or_default(),
                ..Default::default()
            })
            .await;
        answer("add the memory", r, |r| {
            let m = r.memory.unwrap_or_default();
            format!("Added memory {} ({}).", m.id, m.category)
        })
    }

    #[tool(
        description = "Get a state value by key (optionally an agent's own key). Returns JSON.",
        annotations(read_only_hint = true, destructive_hint = false)
    )]
    async fn state_get(&self, Parameters(a): Parameters<StateGetArgs>) -> ToolResult {
        let key = a.key.clone();
        let r = self
            .client
            .state_get(pb::StateGetRequest {
                key: a.key,
                agent_id: a.agent_id.unwrap_or_default(),
            })
            .await;
        match r {
            Ok(r) if r.found => ok(render::state(&r.state.unwrap_or_default())),
            Ok(_) => failed(format!("State key {key:?} is not set.")),
            Err(e) => failed(render::failure("get the state key", &e)),
        }
    }

    #[tool(
        description = "List state keys and values (optionally one agent's). Returns JSON.",
        annotations(read_only_hint = true, destructive_hint = false)
    )]
    async fn state_list(&self, Parameters(a): Parameters<StateListArgs>) -> ToolResult {
        let r = self
            .client
            .state_list(pb::StateListRequest {
                agent_id: a.agent_id.unwrap_or_default(),
            })
            .await;
        answer("list state", r, |r| render::states(&r.states))
    }

    #[tool(
        description = "Set a state key to a value, shared or scoped to an agent. Replaces the old value.",
        annotations(
            read_only_hint = false,
            destructive_hint = true,
            idempotent_hint = true
        )
    )]
    async fn state_set(&self, Parameters(a): Parameters<StateSetArgs>) -> ToolResult {
        let key = a.key.clone();
        let agent = a.agent_id.unwrap_or_default();
        let r = self
            .client
            .state_set(pb::StateSetRequest {
                key: a.key,
                value: a.value,
                agent_id: agent.clone(),
                updated_at: None,
            })
            .await;
        // The key as the agent named it (the store's key carries the agent's scope), as the
        // CLI prints it.
        answer("set the state key", r, |r| {
            let s = r.state.unwrap_or_default();
            let whose = if agent.is_empty() {
                String::new()
            } else {
                format!(" (agent {agent})")
            };
            format!("Set state: {key} = {}{whose}", s.value)
        })
    }

    #[tool(
        description = "The current decision on a topic, with its rationale, details, references, author and date, as Markdown.",
        annotations(read_only_hint = true, destructive_hint = false)
    )]
    async fn decision_get(&self, Parameters(a): Parameters<TopicArgs>) -> ToolResult {
        let topic = a.topic.clone();
        let r = self
            .client
            .decision_get(pb::DecisionGetRequest { topic: a.topic })
            .await;
        match r {
            Ok(r) if r.found => ok(render::decision(&r.decision.unwrap_or_default())),
            Ok(_) => failed(format!("No decision has been recorded on {topic:?}.")),
            Err(e) => failed(render::failure("get the decision", &e)),
        }
    }

    #[tool(
        description = "Every decision ever recorded on a topic, oldest first (the last is the current one), as Markdown.",
        annotations(read_only_hint = true, destructive_hint = false)
    )]
    async fn decision_history(&self, Parameters(a): Parameters<TopicArgs>) -> ToolResult {
        let topic = a.topic.clone();
        let r = self
            .client
            .decision_history(pb::DecisionHistoryRequest { topic: a.topic })
            .await;
        answer("get the decision history", r, |r| {
            render::decisions(
                &r.decisions,
                &format!("No decision has been recorded on {topic:?}."),
            )
        })
    }

    #[tool(
        description = "The current decision on every topic of the project, as Markdown.",
        annotations(read_only_hint = true, destructive_hint = false)
    )]
    async fn decision_list(&self) -> ToolResult {
        let r = self.client.decision_list(pb::DecisionListRequest {}).await;
        answer("list decisions", r, |r| {
            render::decisions(&r.decisions, "No decisions recorded yet.")
        })
    }

    #[tool(
        description = "Record a decision on a topic. Decisions are append-only: the newest is current and the older ones stay in the history.",
        annotations(read_only_hint = false, destructive_hint = false)
    )]
    async fn decision_set(&self, Parameters(a): Parameters<DecisionSetArgs>) -> ToolResult {
        let r = self
            .client
            .decision_set(pb::DecisionSetRequest {
                topic: a.topic,
                decision: a.decision,
                rationale: a.rationale.unwrap_or_default(),
                details: a.details.unwrap_or_default(),
                references: a.references.unwrap_or_default(),
                decided_by: a.decided_by.unwrap_or_default(),
                created_at: None,
                precedence: a.precedence,
            })
            .await;
        answer("record the decision", r, |r| {
            let d = r.decision.unwrap_or_default();
            format!("Recorded decision on {}: {}", d.topic, d.decision)
        })
    }

    #[tool(
        description = "Messages for an agent (and broadcasts) that have not expired; unread only unless include_read. Returns JSON.",
        annotations(read_only_hint = true, destructive_hint = false)
    )]
    async fn message_list(&self, Parameters(a): Parameters<MessageListArgs>) -> ToolResult {
        let r = self
            .client
            .message_list(pb::MessageListRequest {
                agent_id: a.agent_id.unwrap_or_default(),
                include_read: a.include_read.unwrap_or(false),
                parent_session_id: String::new(),
            })
            .await;
        answer("list messages", r, |r| render::messages(&r.messages))
    }

    #[tool(
        description = "Send a message to another agent (or to all, with no `to`); it expires after ttl_seconds.",
        annotations(read_only_hint = false, destructive_hint = false)
    )]
    async fn message_send(&self, Parameters(a): Parameters<MessageSendArgs>) -> ToolResult {
        let r = self
            .client
            .message_send(pb::MessageSendRequest {
                from: a.from,
                to: a.to.unwrap_or_default(),
                content: a.content,
                r#type: a.kind.unwrap_or_default(),
                ttl_seconds: a.ttl_seconds.unwrap_or(0),
                ..Default::default()
            })
            .await;
        answer("send the message", r, |r| {
            render::message(&r.message.unwrap_or_default())
        })
    }

    #[tool(
        description = "Mark a message as read by an agent.",
        annotations(
            read_only_hint = false,
            destructive_hint = false,
            idempotent_hint = true
        )
    )]
    async fn message_ack(&self, Parameters(a): Parameters<MessageAckArgs>) -> ToolResult {
        let id = a.message_id;
        let r = self
            .client
            .message_ack(pb::MessageAckRequest {
                message_id: a.message_id,
                agent_id: a.agent_id,
            })
            .await;
        match r {
            Ok(r) if r.success => ok(format!("Acknowledged message {id}.")),
            Ok(_) => failed(format!("There is no message {id} to acknowledge.")),
            Err(e) => failed(render::failure("acknowledge the message", &e)),
        }
    }

    #[tool(
        description = "A task by id, as JSON.",
        annotations(read_only_hint = true, destructive_hint = false)
    )]
    async fn task_get(&self, Parameters(a): Parameters<IdArgs>) -> ToolResult {
        match one_task(&a.id, "get the task", self.client.resolve_task(&a.id).await) {
            Ok(task) => ok(render::task(&task)),
            Err(failure) => failure,
        }
    }

    #[tool(
        description = "The project's tasks, optionally only those in one status (pending, claimed, done, blocked), as JSON.",
        annotations(read_only_hint = true, destructive_hint = false)
    )]
    async fn task_list(&self, Parameters(a): Parameters<TaskListArgs>) -> ToolResult {
        let r = self
            .client
            .task_list(pb::TaskListRequest {
                status: a.status.unwrap_or_default(),
                parent_session_id: String::new(),
            })
            .await;
        answer("list tasks", r, |r| render::tasks(&r.tasks))
    }

    #[tool(
        description = "Create a pending task for the swarm to claim.",
        annotations(read_only_hint = false, destructive_hint = false)
    )]
    async fn task_create(&self, Parameters(a): Parameters<TaskCreateArgs>) -> ToolResult {
        let r = self
            .client
            .task_create(pb::TaskCreateRequest {
                title: a.title,
                description: a.description.unwrap_or_default(),
                parent_session_id: String::new(),
            })
            .await;
        answer("create the task", r, |r| {
            render::task(&r.task.unwrap_or_default())
        })
    }

    #[tool(
        description = "Claim a pending task for an agent. Exactly one of any number of concurrent claimers wins; the others are told who has it.",
        annotations(read_only_hint = false, destructive_hint = false)
    )]
    async fn task_claim(&self, Parameters(a): Parameters<TaskClaimArgs>) -> ToolResult {
        let task_id = match task_id(&self.client, &a.task_id, "claim the task").await {
            Ok(id) => id,
            Err(failure) => return failure,
        };
        let r = self
            .client
            .task_claim(pb::TaskClaimRequest {
                task_id,
                agent_id: a.agent_id,
                worktree: a.worktree.unwrap_or_default(),
            })
            .await;
        match r {
            Ok(r) if r.success => ok(render::task(&r.task.unwrap_or_default())),
            Ok(r) => failed(format!("Could not claim the task: {}.", r.error)),
            Err(e) => failed(render::failure("claim the task", &e)),
        }
    }

    #[tool(
        description = "Mark a task completed (normally one the agent claimed), with its result.",
        annotations(read_only_hint = false, destructive_hint = false)
    )]
    async fn task_complete(&self, Parameters(a): Parameters<TaskCompleteArgs>) -> ToolResult {
        let id = match task_id(&self.client, &a.task_id, "complete the task").await {
            Ok(id) => id,
            Err(failure) => return failure,
        };
        let r = self
            .client
            .task_complete(pb::TaskCompleteRequest {
                task_id: id.clone(),
                result: a.result.unwrap_or_default(),
            })
            .await;
        match r {
            Ok(r) if r.success => ok(render::task(&r.task.unwrap_or_default())),
            Ok(_) => failed(format!("Task {id} could not be completed.")),
            Err(e) => failed(render::failure("complete the task", &e)),
        }
    }

    #[tool(
        description = "Delete a task.",
        annotations(
            read_only_hint = false,
            destructive_hint = true,
            idempotent_hint = true
        )
    )]
    async fn task_delete(&self, Parameters(a): Parameters<IdArgs>) -> ToolResult {
        let id = match task_id(&self.client, &a.id, "delete the task").await {
            Ok(id) => id,
            Err(failure) => return failure,
        };
        let r = self
            .client
            .task_delete(pb::TaskDeleteRequest { id: id.clone() })
            .await;
        match r {
            Ok(r) if r.success => ok(format!("Deleted task {id}.")),
            Ok(_) => failed(format!("There is no task {id}.")),
            Err(e) => failed(render::failure("delete the task", &e)),
        }
    }
}

#[tool_handler(router = self.tool_router)]
impl ServerHandler for AideMcp {
    /// Runs a tool; an unknown tool is a tool error that lists the ones there are, like any
    /// other failure, rather than a protocol error.
    async fn call_tool(
        &self,
        request: rmcp::model::CallToolRequestParams,
        context: rmcp::service::RequestContext<rmcp::RoleServer>,
    ) -> Result<rmcp::model::CallToolResponse, McpError> {
        if self.tool_router.get(&request.name).is_none() {
            let mut names: Vec<String> = self
                .tool_router
                .list_all()
                .into_iter()
                .map(|t| t.name.to_string())
                .collect();
            names.sort();
            let text = format!(
                "There is no tool {:?}. The aide tools are: {}.",
                request.name,
                names.join(", ")
            );
            return Ok(CallToolResult::error(vec![ContentBlock::text(text)]).into());
        }
        let call = rmcp::handler::server::tool::ToolCallContext::new(self, request, context);
        self.tool_router.call(call).await
    }

    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(Implementation::new("aide", crate::VERSION))
            .with_instructions(
                "aide is the shared memory of the agents working on this project: memories \
                 (searchable notes), decisions (an append-only log per topic), key-value state, \
                 messages between agents, and tasks that agents claim and complete.",
            )
    }
}

/// Serves MCP on stdin/stdout until the client goes away.
pub async fn serve(client: Client) -> Result<(), String> {
    let running = AideMcp::new(client)
        .serve(rmcp::transport::stdio())
        .await
        .map_err(|e| format!("the MCP session could not start: {e}"))?;
    running
        .waiting()
        .await
        .map_err(|e| format!("the MCP session ended with an error: {e}"))?;
    Ok(())
}
