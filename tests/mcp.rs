//! `aide mcp` driven over stdio by rmcp's own client, as Claude Code would: initialize, list
//! the tools, call every one, and check that bad parameters, an unknown tool and a node that
//! goes away give tool errors while the server keeps answering.

mod common;

use common::NodeProc;
use rmcp::model::{CallToolRequestParams, CallToolResult};
use rmcp::service::RunningService;
use rmcp::transport::{ConfigureCommandExt, TokioChildProcess};
use rmcp::{RoleClient, ServiceExt};
use serde_json::{json, Value};

type Session = RunningService<RoleClient, ()>;

async fn session(remote: &str, project: &str) -> Session {
    session_with(remote, project, &[]).await
}

async fn session_with(remote: &str, project: &str, env: &[(&str, &str)]) -> Session {
    let transport = TokioChildProcess::new(
        tokio::process::Command::new(common::aide_bin()).configure(|c| {
            c.arg("mcp")
                .env("AIDE_REMOTE", remote)
                .env("AIDE_PROJECT", project)
                .env("AIDE_CONFIG", "/nonexistent/aide-test-config.yaml")
                .env_remove("AIDE_API_KEY");
            for (k, v) in env {
                c.env(k, v);
            }
        }),
    )
    .expect("spawn aide mcp");
    ().serve(transport).await.expect("initialize")
}

async fn call(s: &Session, tool: &'static str, args: Value) -> CallToolResult {
    let mut params = CallToolRequestParams::new(tool);
    if let Value::Object(map) = args {
        params = params.with_arguments(map);
    }
    s.call_tool(params)
        .await
        .unwrap_or_else(|e| panic!("{tool}: {e}"))
}

fn text(r: &CallToolResult) -> String {
    r.content
        .iter()
        .filter_map(|c| c.as_text().map(|t| t.text.clone()))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The text of a call that must succeed.
async fn ok(s: &Session, tool: &'static str, args: Value) -> String {
    let r = call(s, tool, args).await;
    assert_ne!(r.is_error, Some(true), "{tool} failed: {}", text(&r));
    text(&r)
}

/// The text of a call that must be a tool error.
async fn tool_error(s: &Session, tool: &'static str, args: Value) -> String {
    let r = call(s, tool, args).await;
    assert_eq!(
        r.is_error,
        Some(true),
        "{tool} should have failed: {}",
        text(&r)
    );
    text(&r)
}

const TOOLS: [&str; 19] = [
    "memory_search",
    "memory_list",
    "memory_add",
    "state_get",
    "state_list",
    "state_set",
    "decision_get",
    "decision_history",
    "decision_list",
    "decision_set",
    "message_list",
    "message_send",
    "message_ack",
    "task_get",
    "task_list",
    "task_create",
    "task_claim",
    "task_complete",
    "task_delete",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_tool_is_listed_with_a_description_schema_and_hints() {
    let tmp = tempfile::tempdir().unwrap();
    let node = NodeProc::start(&tmp.path().join("n1"), &[]);
    let s = session(&node.addr, "mcp").await;
    let info = s.peer_info().expect("server info");
    assert_eq!(info.server_info.as_ref().unwrap().name, "aide");

    let tools = s.list_all_tools().await.unwrap();
    let mut names: Vec<&str> = tools.iter().map(|t| t.name.as_ref()).collect();
    names.sort_unstable();
    let mut want = TOOLS.to_vec();
    want.sort_unstable();
    assert_eq!(names, want);
    for t in &tools {
        assert!(
            t.description.as_deref().is_some_and(|d| d.len() > 10),
            "{} has no description",
            t.name
        );
        let hints = t.annotations.as_ref().expect("annotations");
        let read_only = hints.read_only_hint == Some(true);
        let reads = ["_search", "_list", "_get", "_history"]
            .iter()
            .any(|s| t.name.ends_with(s));
        assert_eq!(read_only, reads, "{} read-only hint", t.name);
    }
    let search = tools.iter().find(|t| t.name == "memory_search").unwrap();
    let required = search.input_schema.get("required").unwrap();
    assert_eq!(required, &json!(["query"]));
    s.cancel().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_tool_works_and_answers_read_well() {
    let tmp = tempfile::tempdir().unwrap();
    let node = NodeProc::start(&tmp.path().join("n1"), &[]);
    let s = session(&node.addr, "mcp").await;

    // Memories: Markdown grouped by category, newest first, with date and tags.
    let added = ok(
        &s,
        "memory_add",
        json!({"content": "Use exponential backoff for webhook retries", "category": "pattern", "tags": ["payments", "retry"]}),
    )
    .await;
    assert!(added.starts_with("Added memory "), "{added}");
    ok(
        &s,
        "memory_add",
        json!({"content": "The staging database is reset every night", "tags": "ops, staging"}),
    )
    .await;
    let listed = ok(&s, "memory_list", json!({})).await;
    let learning = listed.find("## learning").expect(&listed);
    let pattern = listed.find("## pattern").expect(&listed);
    assert!(
        learning < pattern,
        "the newest memory's category first:\n{listed}"
    );
    assert!(listed.contains("tags: ops, staging"), "{listed}");
    assert!(listed.contains("tags: payments, retry"), "{listed}");
    let found = ok(&s, "memory_search", json!({"query": "backof"})).await;
    assert!(found.contains("exponential backoff"), "{found}");
    assert!(!found.contains("staging"), "{found}");

    // Decisions: Markdown with rationale, details, references, author and date.
    ok(
        &s,
        "decision_set",
        json!({"topic": "auth", "decision": "JWT", "rationale": "stateless", "details": "RS256", "references": ["ADR-7"], "decided_by": "alice"}),
    )
    .await;
    ok(
        &s,
        "decision_set",
        json!({"topic": "auth", "decision": "Sessions", "rationale": "revocation"}),
    )
    .await;
    let current = ok(&s, "decision_get", json!({"topic": "auth"})).await;
    assert!(current.contains("**Decision:** Sessions"), "{current}");
    assert!(current.contains("**Rationale:** revocation"), "{current}");
    let history = ok(&s, "decision_history", json!({"topic": "auth"})).await;
    assert!(
        history.contains("JWT") && history.contains("Sessions"),
        "{history}"
    );
    assert!(history.contains("**References:** ADR-7"), "{history}");
    assert!(history.contains("Decided by alice"), "{history}");
    let all = ok(&s, "decision_list", json!({})).await;
    assert!(all.contains("### auth"), "{all}");

    // State: JSON; setting names the key as given, not the store's scoped key.
    let set = ok(
        &s,
        "state_set",
        json!({"key": "build", "value": "green", "agent_id": "a1"}),
    )
    .await;
    assert_eq!(set, "Set state: build = green (agent a1)");
    let got: Value =
        serde_json::from_str(&ok(&s, "state_get", json!({"key": "build", "agent_id": "a1"})).await)
            .unwrap();
    assert_eq!(got["value"], "green");
    let states: Value =
        serde_json::from_str(&ok(&s, "state_list", json!({"agent_id": "a1"})).await).unwrap();
    assert_eq!(states.as_array().unwrap().len(), 1);

    // Messages: JSON, acknowledged once read.
    let sent: Value = serde_json::from_str(
        &ok(&s, "message_send", json!({"from": "a1", "to": "a2", "content": "rebase please", "type": "request", "ttl_seconds": 600})).await,
    )
    .unwrap();
    let id = sent["id"].as_u64().unwrap();
    let inbox: Value =
        serde_json::from_str(&ok(&s, "message_list", json!({"agent_id": "a2"})).await).unwrap();
    assert_eq!(inbox[0]["content"], "rebase please");
    ok(
        &s,
        "message_ack",
        json!({"message_id": id, "agent_id": "a2"}),
    )
    .await;
    let inbox: Value =
        serde_json::from_str(&ok(&s, "message_list", json!({"agent_id": "a2"})).await).unwrap();
    assert_eq!(
        inbox.as_array().unwrap().len(),
        0,
        "read messages are not listed again"
    );

    // Tasks: JSON; one claim wins, a second is refused as a tool error.
    let task: Value = serde_json::from_str(
        &ok(
            &s,
            "task_create",
            json!({"title": "write docs", "description": "README"}),
        )
        .await,
    )
    .unwrap();
    let tid = task["id"].as_str().unwrap().to_string();
    // The short id `aide task list` prints names the task as well as the full one.
    let short = &tid[..8];
    ok(
        &s,
        "task_claim",
        json!({"task_id": short, "agent_id": "a1"}),
    )
    .await;
    let lost = tool_error(&s, "task_claim", json!({"task_id": tid, "agent_id": "a2"})).await;
    assert!(lost.contains("a1"), "the loser is told who has it: {lost}");
    ok(
        &s,
        "task_complete",
        json!({"task_id": tid, "result": "done"}),
    )
    .await;
    let got: Value = serde_json::from_str(&ok(&s, "task_get", json!({"id": short})).await).unwrap();
    assert_eq!(got["status"], "done");
    assert_eq!(got["id"], tid.as_str());
    // A start shared by two tasks' ids names neither (ids are random hex: among 17 tasks two
    // share their first digit).
    let mut ids = vec![tid.clone()];
    let common = loop {
        let t: Value =
            serde_json::from_str(&ok(&s, "task_create", json!({"title": "other"})).await).unwrap();
        let id = t["id"].as_str().unwrap().to_string();
        let first = id[..1].to_string();
        ids.push(id);
        if ids.iter().filter(|i| i.starts_with(&first)).count() == 2 {
            break first;
        }
    };
    let ambiguous = tool_error(&s, "task_delete", json!({"id": common})).await;
    assert!(ambiguous.contains("2 tasks"), "{ambiguous}");
    for id in &ids[1..] {
        ok(&s, "task_delete", json!({"id": id})).await;
    }
    ok(&s, "task_delete", json!({"id": short})).await;
    let gone = tool_error(&s, "task_get", json!({"id": tid})).await;
    assert!(gone.contains("no task"), "{gone}");
    // A whole id goes to the write as it is: the leader says there is no such task.
    let never = tool_error(
        &s,
        "task_claim",
        json!({"task_id": tid, "agent_id": "late"}),
    )
    .await;
    assert!(never.contains("not found"), "{never}");
    s.cancel().await.unwrap();
}

/// A node that answers but cannot serve (its cluster has lost its quorum) is not reported as
/// no node at all: the advice is to wait, not to start a node or point the server elsewhere.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_without_a_quorum_is_told_apart_from_no_node() {
    let mut c = common::cluster::Cluster::start(3, &[]).await;
    let l = c.leader().await;
    let s = session(&c.nodes[l].addr, "mcp").await;
    ok(&s, "state_set", json!({"key": "k", "value": "v"})).await;
    for i in (0..3).filter(|&i| i != l) {
        c.nodes[i].kill();
    }
    let stuck = tool_error(&s, "state_set", json!({"key": "k", "value": "w"})).await;
    assert!(
        stuck.contains("cannot serve it now") && !stuck.contains("aide serve"),
        "{stuck}"
    );
    s.cancel().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_calls_and_a_lost_node_are_tool_errors_and_the_server_goes_on() {
    let tmp = tempfile::tempdir().unwrap();
    let mut node = NodeProc::start(&tmp.path().join("n1"), &[]);
    let s = session(&node.addr, "mcp").await;

    // A missing required parameter and a wrong type.
    let r = call(&s, "memory_add", json!({"category": "learning"})).await;
    assert_eq!(r.is_error, Some(true));
    assert!(text(&r).contains("content"), "{}", text(&r));
    let r = call(
        &s,
        "message_ack",
        json!({"message_id": "seven", "agent_id": "a"}),
    )
    .await;
    assert_eq!(r.is_error, Some(true));
    // Invalid input the node refuses.
    let empty = tool_error(&s, "memory_add", json!({"content": ""})).await;
    assert!(empty.contains("content"), "{empty}");
    let unknown = tool_error(&s, "decision_get", json!({"topic": "never"})).await;
    assert!(unknown.contains("No decision"), "{unknown}");
    // An unknown tool is a tool error that names the tools there are.
    let unknown_tool = tool_error(&s, "no_such_tool", json!({})).await;
    assert!(
        unknown_tool.contains("There is no tool \"no_such_tool\""),
        "{unknown_tool}"
    );
    assert!(unknown_tool.contains("memory_search"), "{unknown_tool}");

    // The node goes away: a tool error that says what to do.
    ok(&s, "state_set", json!({"key": "k", "value": "before"})).await;
    node.kill();
    let down = tool_error(&s, "state_get", json!({"key": "k"})).await;
    assert!(down.contains("aide serve"), "{down}");
    // It comes back: the same session goes on.
    node.restart();
    let got: Value = serde_json::from_str(&ok(&s, "state_get", json!({"key": "k"})).await).unwrap();
    assert_eq!(got["value"], "before");
    s.cancel().await.unwrap();
}

#[test]
fn the_session_start_hook_prints_preferences_decisions_and_recent_memories() {
    let tmp = tempfile::tempdir().unwrap();
    let node = NodeProc::start(&tmp.path().join("n1"), &[]);
    let run = |args: &[&str]| {
        let mut all = vec!["--project", "hooked"];
        all.extend_from_slice(args);
        node.cli(&all)
    };
    run(&[
        "memory",
        "add",
        "Always answer in British English",
        "--tags",
        "scope:global",
    ])
    .out();
    run(&[
        "memory",
        "add",
        "The CI cache lives in S3",
        "--category",
        "discovery",
    ])
    .out();
    run(&["decision", "set", "db", "Postgres", "--rationale", "mature"]).out();
    run(&["memory", "add", "Release steps:\n1. tag\n2. push"]).out();
    let out = run(&["hook", "session-start"]).out().to_string();
    // A memory of several lines stays one Markdown list item.
    assert!(
        out.contains("## Recent memories\n\n- [learning] Release steps:\n  1. tag\n  2. push ("),
        "{out}"
    );
    assert!(
        out.contains("## Preferences\n\n- Always answer in British English"),
        "{out}"
    );
    assert!(out.contains("- **db**: Postgres — mature"), "{out}");
    assert!(
        out.contains("- [discovery] The CI cache lives in S3"),
        "{out}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_no_node_the_server_uses_the_projects_own_store() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = tmp.path().join("webshop");
    std::fs::create_dir_all(repo.join(".git")).unwrap();
    let home = tmp.path().join("home");
    std::fs::create_dir_all(&home).unwrap();
    let transport = TokioChildProcess::new(
        tokio::process::Command::new(common::aide_bin()).configure(|c| {
            c.args(["mcp", "--listen", "127.0.0.1:0"])
                .current_dir(&repo)
                .env_remove("AIDE_REMOTE")
                .env_remove("AIDE_PROJECT")
                .env_remove("AIDE_DATA_DIR")
                .env("HOME", &home)
                .env("AIDE_CONFIG", home.join(".aide/config.yaml"));
        }),
    )
    .expect("spawn aide mcp");
    let s: Session = ().serve(transport).await.expect("initialize");
    ok(
        &s,
        "memory_add",
        json!({"content": "Checkout totals round half up"}),
    )
    .await;
    let found = ok(&s, "memory_search", json!({"query": "totals"})).await;
    assert!(found.contains("round half up"), "{found}");
    assert!(repo.join(".aide/data/aide.meta").exists());
    s.cancel().await.unwrap();
}

/// A git repository and a home with no aide setup, whose default address is a free port.
struct Project {
    _tmp: tempfile::TempDir,
    repo: std::path::PathBuf,
    home: std::path::PathBuf,
    addr: String,
}

impl Project {
    fn new() -> Project {
        let tmp = tempfile::tempdir().unwrap();
        let repo = tmp.path().join("webshop");
        std::fs::create_dir_all(repo.join(".git")).unwrap();
        let home = tmp.path().join("home");
        std::fs::create_dir_all(&home).unwrap();
        // The default address, moved to a free port for the test.
        let addr = common::free_addr();
        Project {
            _tmp: tmp,
            repo,
            home,
            addr,
        }
    }

    /// An aide command run in the repository, as its developer would.
    fn command(&self, args: &[&str]) -> tokio::process::Command {
        let mut c = tokio::process::Command::new(common::aide_bin());
        c.args(args)
            .current_dir(&self.repo)
            .env_remove("AIDE_REMOTE")
            .env_remove("AIDE_PROJECT")
            .env_remove("AIDE_DATA_DIR")
            .env("AIDE_LOCAL_ADDR", &self.addr)
            .env("HOME", &self.home)
            .env("AIDE_CONFIG", self.home.join(".aide/config.yaml"));
        c
    }

    /// A Claude Code session's MCP server in the repository.
    async fn session(&self) -> Session {
        let transport = TokioChildProcess::new(self.command(&["mcp"])).expect("spawn aide mcp");
        ().serve(transport).await.expect("initialize")
    }

    /// `aide state get KEY` in the repository: its output.
    async fn state_get(&self, key: &str) -> String {
        let out = self.command(&["state", "get", key]).output().await.unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }
}

/// Two Claude Code sessions in one project with no node configured: the first serves the
/// project's store at the default address, the second goes through it; when the first ends,
/// the second takes the store over and goes on, and CLI commands go through it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_session_takes_the_store_over_when_the_first_ends() {
    let p = Project::new();
    let first = p.session().await;
    ok(&first, "state_set", json!({"key": "k", "value": "v1"})).await;
    let second = p.session().await;
    let got = ok(&second, "state_get", json!({"key": "k"})).await;
    assert!(got.contains("v1"), "{got}");
    first.cancel().await.unwrap();

    // Bounded: the second session notices within a second and opens the store.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let got = loop {
        let r = call(&second, "state_get", json!({"key": "k"})).await;
        if r.is_error != Some(true) {
            break text(&r);
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the second session never took the store over: {}",
            text(&r)
        );
    };
    assert!(got.contains("v1"), "{got}");
    ok(&second, "state_set", json!({"key": "k", "value": "v2"})).await;
    // A CLI command in the project goes through the second session's node.
    assert_eq!(p.state_get("k").await, "v2");
    second.cancel().await.unwrap();
    // Its node stopped with the session, the write kept: a command opens the store itself.
    assert_eq!(p.state_get("k").await, "v2");
}

/// A node a person started with `aide serve` is theirs: a session going through it does not
/// take the store over when it stops, so starting it again works.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_leaves_a_stopped_aide_serve_to_its_owner() {
    let p = Project::new();
    let serve = || {
        let mut c = p.command(&["serve"]).into_std();
        c.stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null());
        let mut child = c.spawn().unwrap();
        let mut line = String::new();
        std::io::BufRead::read_line(
            &mut std::io::BufReader::new(child.stdout.take().unwrap()),
            &mut line,
        )
        .unwrap();
        assert!(line.contains("serving on"), "{line}");
        child
    };
    let mut node = serve();
    let s = p.session().await;
    ok(&s, "state_set", json!({"key": "k", "value": "v"})).await;
    node.kill().unwrap();
    node.wait().unwrap();
    // The call waits out the client's connect budget (3 s), time enough for a session that
    // took the store over to serve it: it fails instead.
    let down = tool_error(&s, "state_get", json!({"key": "k"})).await;
    assert!(down.contains("aide serve"), "{down}");
    // Started again, the node has its store; the session goes on through it.
    let mut node = serve();
    let got = ok(&s, "state_get", json!({"key": "k"})).await;
    assert!(got.contains("\"v\""), "{got}");
    s.cancel().await.unwrap();
    node.kill().unwrap();
    node.wait().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_keys_enabled_the_server_and_the_cli_use_the_configured_key() {
    use aide::grpc::pb::auth::{CreateKeyRequest, EnableRequest};
    let tmp = tempfile::tempdir().unwrap();
    let node = NodeProc::start(&tmp.path().join("n1"), &[]);
    let token = std::fs::read_to_string(node.dir.join("bootstrap.token")).unwrap();
    let admin = node
        .client("p")
        .auth_enable(EnableRequest {
            bootstrap_token: token,
            ..Default::default()
        })
        .await
        .unwrap();
    let root = aide::client::Client::new(aide::client::ClientConfig {
        endpoints: vec![node.addr.clone()],
        api_key: Some(admin.secret.clone()),
        ..Default::default()
    })
    .unwrap();
    let key = |role: &str| CreateKeyRequest {
        projects: vec!["p".into()],
        role: role.into(),
        description: String::new(),
    };
    let writer = root.auth_create_key(key("write")).await.unwrap().secret;
    let reader = root.auth_create_key(key("read")).await.unwrap().secret;

    // The MCP server sends AIDE_API_KEY with every call.
    let s = session_with(&node.addr, "p", &[("AIDE_API_KEY", writer.as_str())]).await;
    ok(
        &s,
        "memory_add",
        json!({"content": "keys reach the MCP server"}),
    )
    .await;
    assert!(ok(&s, "memory_search", json!({"query": "keys"}))
        .await
        .contains("MCP server"));
    s.cancel().await.unwrap();
    let s = session(&node.addr, "p").await;
    let e = tool_error(&s, "memory_list", json!({})).await;
    assert!(e.contains("API key"), "{e}");
    s.cancel().await.unwrap();
    let s = session_with(&node.addr, "p", &[("AIDE_API_KEY", reader.as_str())]).await;
    let e = tool_error(&s, "memory_add", json!({"content": "no"})).await;
    assert!(e.contains("read role"), "{e}");
    s.cancel().await.unwrap();

    // The CLI takes the key from `api_key` in its config file.
    let config = tmp.path().join("config.yaml");
    std::fs::write(
        &config,
        format!(
            "sync:\n  mode: raft\n  peers: [\"{}\"]\nproject: p\napi_key: {writer}\n",
            node.addr
        ),
    )
    .unwrap();
    let out = std::process::Command::new(common::aide_bin())
        .args(["state", "set", "from", "config"])
        .env("AIDE_CONFIG", &config)
        .env_remove("AIDE_REMOTE")
        .env_remove("AIDE_API_KEY")
        .env_remove("AIDE_PROJECT")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "Set state: from = config"
    );
}
