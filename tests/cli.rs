//! Every verb of the CLI (SPEC 1.2), through the binary, against a real node: the exact text
//! lines the hooks parse, `--format=json`, and clear errors with a failing exit status.

mod common;

use common::{cli, NodeProc};

fn node() -> (tempfile::TempDir, NodeProc) {
    let tmp = tempfile::tempdir().unwrap();
    let node = NodeProc::start(&tmp.path().join("n1"), &[]);
    (tmp, node)
}

#[test]
fn memory_verbs() {
    let (_tmp, n) = node();
    let out = n.cli(&[
        "memory",
        "add",
        "Use rustls, never openssl",
        "--category=decision",
        "--tags=tls,deps",
    ]);
    let line = out.out().trim();
    let id = line
        .strip_prefix("Added memory: ")
        .unwrap_or_else(|| panic!("{line}"));
    assert_eq!(id.len(), 26);
    // `--flag value` works as well as `--flag=value`.
    n.cli(&[
        "memory",
        "add",
        "Flaky test in the auth module",
        "--category",
        "issue",
        "--tags",
        "auth",
    ])
    .out();

    let list = n.cli(&["memory", "list", "--format=json"]).json();
    let items = list.as_array().unwrap();
    assert_eq!(items.len(), 2);
    for key in ["id", "category", "content", "tags", "created_at"] {
        assert!(
            items[0].get(key).is_some(),
            "list JSON item lacks {key}: {}",
            items[0]
        );
    }
    let text = n
        .cli(&["memory", "list", "--category=decision"])
        .out()
        .to_string();
    assert!(
        text.contains(id) && text.contains("[decision]") && !text.contains("Flaky"),
        "{text}"
    );
    let tagged = n
        .cli(&["memory", "list", "--tags=auth", "--format=json"])
        .json();
    assert_eq!(tagged.as_array().unwrap().len(), 1);
    assert_eq!(
        n.cli(&["memory", "list", "--limit=1", "--format=json"])
            .json()
            .as_array()
            .unwrap()
            .len(),
        1
    );

    let found = n.cli(&["memory", "search", "rustls"]).out().to_string();
    assert!(found.contains(id), "{found}");
    let full = n
        .cli(&["memory", "search", "openssl", "--full", "--limit=5"])
        .out()
        .to_string();
    assert!(full.contains("Use rustls, never openssl"), "{full}");
    let high = n
        .cli(&["memory", "search", "rustls", "--min-score=1000"])
        .out()
        .to_string();
    assert_eq!(high.trim(), "No memories found.");
    assert!(n.cli(&["memory", "get", id]).out().contains("Use rustls"));

    let md = n.cli(&["memory", "export"]).out().to_string();
    assert!(
        md.starts_with("# Memories") && md.contains("## decision") && md.contains("## issue"),
        "{md}"
    );
    let js = n.cli(&["memory", "export", "--format=json"]).json();
    assert_eq!(js.as_array().unwrap().len(), 2);

    assert_eq!(
        n.cli(&["memory", "delete", id]).out().trim(),
        format!("Deleted memory: {id}")
    );
    let again = n.cli(&["memory", "delete", id]);
    assert!(!again.ok && again.stderr.contains("not found"), "{again:?}");
    assert_eq!(
        n.cli(&["memory", "delete", "all"]).out().trim(),
        "Deleted 1 memories"
    );
    n.cli(&["memory", "add", "x"]).out();
    assert_eq!(
        n.cli(&["memory", "clear"]).out().trim(),
        "Cleared 1 memories"
    );
}

#[test]
fn a_memory_of_several_lines_stays_under_its_own_line() {
    let (_tmp, n) = node();
    let id = n
        .cli(&[
            "memory",
            "add",
            "Build steps:\n1. cargo build\n2. cargo test\n",
        ])
        .out()
        .trim()
        .strip_prefix("Added memory: ")
        .unwrap()
        .to_string();
    n.cli(&["memory", "add", "one line", "--category=issue"])
        .out();
    // Every line that starts at the margin starts with a memory's id; the content's later
    // lines are indented under it.
    let full = n
        .cli(&["memory", "search", "cargo", "--full"])
        .out()
        .to_string();
    let lines: Vec<&str> = full.lines().collect();
    assert!(lines[0].starts_with(&id), "{full}");
    assert_eq!(
        lines[1..],
        ["    1. cargo build", "    2. cargo test"],
        "{full}"
    );
    let list = n.cli(&["memory", "list", "--full"]).out().to_string();
    let items = list.lines().filter(|l| !l.starts_with(' ')).count();
    assert_eq!(items, 2, "{list}");
    // Markdown: the later lines stay in the list item.
    let md = n.cli(&["memory", "export"]).out().to_string();
    assert!(
        md.contains(" Build steps:\n  1. cargo build\n  2. cargo test\n"),
        "{md}"
    );
}

#[test]
fn decision_verbs() {
    let (_tmp, n) = node();
    let set = n.cli(&[
        "decision",
        "set",
        "db",
        "postgres",
        "--rationale",
        "mature",
        "--details=x",
        "--ref=https://a",
        "--ref",
        "https://b",
        "--by=alice",
    ]);
    assert_eq!(set.out().trim(), "Set decision: db = postgres");
    n.cli(&["decision", "set", "db", "sqlite"]).out();
    let get = n.cli(&["decision", "get", "db"]).out().to_string();
    assert!(get.starts_with("db: sqlite\n"), "{get}");
    let hist = n.cli(&["decision", "history", "db"]).out().to_string();
    let lines: Vec<&str> = hist.lines().collect();
    assert_eq!(lines.len(), 2);
    assert!(
        lines[0].ends_with("postgres (by alice)") && lines[1].ends_with("sqlite"),
        "{hist}"
    );
    let list = n.cli(&["decision", "list", "--format=json"]).json();
    let item = &list.as_array().unwrap()[0];
    assert_eq!(item["topic"], "db");
    assert_eq!(item["value"], "sqlite");
    assert!(item.get("rationale").is_some() && item.get("created_at").is_some());
    assert_eq!(n.cli(&["decision", "list"]).out().trim(), "db: sqlite");
    assert_eq!(
        n.cli(&["decision", "delete", "db"]).out().trim(),
        "Deleted decision: db (2 revisions)"
    );
    let missing = n.cli(&["decision", "get", "db"]);
    assert!(
        !missing.ok && missing.stderr.contains("no decision on topic"),
        "{missing:?}"
    );
    n.cli(&["decision", "set", "a", "1"]).out();
    n.cli(&["decision", "set", "b", "2"]).out();
    assert_eq!(
        n.cli(&["decision", "delete", "all"]).out().trim(),
        "Deleted 2 decisions"
    );
}

#[test]
fn state_verbs() {
    let (_tmp, n) = node();
    assert_eq!(
        n.cli(&["state", "set", "mode", "fast"]).out().trim(),
        "Set state: mode = fast"
    );
    assert_eq!(
        n.cli(&["state", "set", "step", "3", "--agent=w1"])
            .out()
            .trim(),
        "Set state: step = 3"
    );
    assert_eq!(n.cli(&["state", "get", "mode"]).out().trim(), "fast");
    assert_eq!(
        n.cli(&["state", "get", "step", "--agent", "w1"])
            .out()
            .trim(),
        "3"
    );
    let list = n.cli(&["state", "list"]).out().to_string();
    let mut lines: Vec<&str> = list.lines().collect();
    lines.sort();
    assert_eq!(lines, ["[w1] agent:w1:step = 3", "mode = fast"]);
    assert_eq!(
        n.cli(&["state", "list", "--agent=w1"]).out().trim(),
        "[w1] agent:w1:step = 3"
    );
    assert_eq!(
        n.cli(&["state", "cleanup", "--older-than=1h"]).out().trim(),
        "Cleaned up 0 agent state entries older than 1h"
    );
    assert_eq!(
        n.cli(&["state", "delete", "step", "--agent=w1"])
            .out()
            .trim(),
        "Deleted state: agent:w1:step"
    );
    let bad = n.cli(&["state", "clear"]);
    assert!(
        !bad.ok && bad.stderr.contains("--agent=ID") && bad.stderr.contains("--all"),
        "{bad:?}"
    );
    assert_eq!(
        n.cli(&["state", "clear", "--all"]).out().trim(),
        "Cleared 1 state entries"
    );
    let gone = n.cli(&["state", "get", "mode"]);
    assert!(!gone.ok && gone.stderr.contains("not found"));
    let js = n.cli(&["state", "set", "k", "v", "--format=json"]).json();
    assert_eq!(js["value"], "v");
}

#[test]
fn message_verbs() {
    let (_tmp, n) = node();
    assert_eq!(
        n.cli(&["message", "send", "standup in 5", "--from=lead"])
            .out()
            .trim(),
        "Sent message: 1"
    );
    assert_eq!(
        n.cli(&[
            "message",
            "send",
            "review my PR",
            "--from=w1",
            "--to=w2",
            "--type=request",
            "--ttl=600"
        ])
        .out()
        .trim(),
        "Sent message: 2"
    );
    let list = n.cli(&["message", "list", "--agent=w2"]).out().to_string();
    assert_eq!(
        list.lines().collect::<Vec<_>>(),
        [
            "[1] [broadcast] from: lead: standup in 5",
            "[2] [w1 -> w2] review my PR"
        ]
    );
    assert_eq!(
        n.cli(&["message", "ack", "2", "--agent=w2"]).out().trim(),
        "Acknowledged message 2 for w2"
    );
    assert_eq!(
        n.cli(&["message", "list", "--agent=w2"])
            .out()
            .lines()
            .count(),
        1
    );
    assert_eq!(
        n.cli(&["message", "prune"]).out().trim(),
        "Pruned 0 expired messages"
    );
    let js = n.cli(&["message", "list", "--format=json"]).json();
    assert_eq!(js.as_array().unwrap().len(), 2);
    let bad = n.cli(&["message", "send", "x", "--from=a", "--ttl=-5"]);
    assert!(!bad.ok && bad.stderr.contains("ttl_seconds"), "{bad:?}");
}

#[test]
fn task_verbs() {
    let (_tmp, n) = node();
    let created = n
        .cli(&[
            "task",
            "create",
            "Write the parser",
            "--description",
            "nom based",
        ])
        .out()
        .to_string();
    let id = created
        .trim()
        .strip_prefix("Created task: ")
        .unwrap()
        .to_string();
    let list = n.cli(&["task", "list"]).out().to_string();
    assert_eq!(
        list.trim(),
        format!("[pending] {}: Write the parser", &id[..8])
    );
    // A unique id prefix, as `task list` shows it, names the task.
    assert_eq!(
        n.cli(&["task", "claim", &id[..8], "--agent=w1"])
            .out()
            .trim(),
        format!("Claimed task: {id} for w1")
    );
    let lost = n.cli(&["task", "claim", &id, "--agent=w2"]);
    assert!(
        !lost.ok && lost.stderr.contains("already claimed by w1"),
        "{lost:?}"
    );
    assert_eq!(
        n.cli(&["task", "list", "--status=claimed"])
            .out()
            .lines()
            .count(),
        1
    );
    assert_eq!(
        n.cli(&["task", "complete", &id, "--result=done in #12"])
            .out()
            .trim(),
        format!("Completed task: {id}")
    );
    let js = n.cli(&["task", "get", &id, "--format=json"]).json();
    assert_eq!(
        (js["status"].as_str(), js["result"].as_str()),
        (Some("done"), Some("done in #12"))
    );
    assert!(n
        .cli(&["task", "update", &id, "--status=blocked"])
        .out()
        .contains("[blocked]"));
    assert_eq!(
        n.cli(&["task", "delete", &id]).out().trim(),
        format!("Deleted task: {id}")
    );
    let missing = n.cli(&["task", "delete", &id]);
    assert!(!missing.ok && missing.stderr.contains("not found"));
    assert_eq!(n.cli(&["task", "list"]).out().trim(), "No tasks.");
}

#[test]
fn cluster_status_with_nothing_configured_says_where_nodes_are_named() {
    let tmp = tempfile::tempdir().unwrap();
    // The default address, moved to a port where nothing listens.
    let closed = common::free_addr();
    let out = std::process::Command::new(common::aide_bin())
        .args(["cluster", "status"])
        .current_dir(tmp.path())
        .env_remove("AIDE_REMOTE")
        .env("AIDE_LOCAL_ADDR", &closed)
        .env("HOME", tmp.path())
        .env("AIDE_CONFIG", tmp.path().join("none.yaml"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains(&closed) && stderr.contains("aide serve") && stderr.contains("--remote"),
        "{stderr}"
    );
}

#[test]
fn version_and_cluster_status() {
    let (_tmp, n) = node();
    let v = n.cli(&["version"]).out().to_string();
    assert!(
        v.starts_with(&format!("aide {}", env!("CARGO_PKG_VERSION"))),
        "{v}"
    );
    let js = n.cli(&["version", "--json"]).json();
    assert_eq!(js["version"], env!("CARGO_PKG_VERSION"));
    // The commit is the one built, not the one the build script first ran at.
    let head = std::process::Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string());
    if let Some(head) = head {
        assert_eq!(js["commit"], head.as_str(), "{js}");
    }
    let st = n.cli(&["cluster", "status", "--format=json"]).json();
    assert_eq!(st["leader_id"], 1);
    assert_eq!(st["nodes"][0]["state"], "leader");
    assert_eq!(st["nodes"][0]["reachable"], true);
    assert!(n.cli(&["cluster", "members"]).out().contains("(leader)"));
}

#[test]
fn the_remote_flag_and_project_flag_are_honoured() {
    let (_tmp, n) = node();
    // --remote overrides AIDE_REMOTE (which points nowhere here).
    let out = cli(
        "127.0.0.1:1",
        &[
            "--remote",
            &n.addr,
            "--project=p1",
            "state",
            "set",
            "k",
            "v",
        ],
    );
    assert!(out.ok, "{out:?}");
    assert!(
        !n.cli(&["--project=p2", "state", "get", "k"]).ok,
        "another project does not see it"
    );
    assert_eq!(
        n.cli(&["--project=p1", "--consistency=stale", "state", "get", "k"])
            .out()
            .trim(),
        "v"
    );
    let down = cli("127.0.0.1:1", &["state", "get", "k"]);
    assert!(
        !down.ok && down.stderr.contains("no aide node is reachable"),
        "{down:?}"
    );
    let bad = cli("not-an-address", &["state", "get", "k"]);
    assert!(!bad.ok && bad.stderr.contains("HOST:PORT"), "{bad:?}");
    // Given as a URL, as the config file's peers may be: the same node.
    let url = format!("http://{}/", n.addr);
    let out = cli(&url, &["--project=p1", "state", "get", "k"]);
    assert!(out.ok && out.out().trim() == "v", "{out:?}");
}

/// A port where something other than an aide node answers (here a web server's reply): the
/// call fails naming that address and what it is not; listed beside a real node, the CLI
/// uses the node.
#[test]
fn an_endpoint_that_is_not_an_aide_node_is_named() {
    use std::io::{Read, Write};
    let (_tmp, n) = node();
    assert!(n.cli(&["state", "set", "k", "v"]).ok);
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let web = listener.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { return };
            let mut buf = [0u8; 1024];
            let _ = conn.read(&mut buf);
            let _ = conn.write_all(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n");
        }
    });
    let out = cli(&web, &["state", "get", "k"]);
    assert!(
        !out.ok
            && out.stderr.contains(&web)
            && out.stderr.contains("did not answer as an aide node"),
        "{out:?}"
    );
    // A client that has not measured its endpoints (the library's `Client::new`) tries the web
    // server first, and goes on to the node at once: a write keeps its request id, so it
    // applies once.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let c = common::client_for(
            &[web.clone(), n.addr.clone()],
            "default",
            aide::client::ReadMode::Linearizable,
        );
        let started = std::time::Instant::now();
        c.state_set(aide::grpc::pb::aidememory::StateSetRequest {
            key: "k3".into(),
            value: "v3".into(),
            ..Default::default()
        })
        .await
        .unwrap();
        // Not after the 3 s that endpoints refusing connections are given.
        assert!(
            started.elapsed() < std::time::Duration::from_secs(3),
            "{:?}",
            started.elapsed()
        );
    });
    assert_eq!(n.cli(&["state", "get", "k3"]).out().trim(), "v3");
    let both = format!("{web},{}", n.addr);
    let out = cli(&both, &["state", "get", "k"]);
    assert!(out.ok && out.out().trim() == "v", "{out:?}");
    let out = cli(&both, &["state", "set", "k2", "v2"]);
    assert!(out.ok, "{out:?}");
}

/// `aide bench` drives real load at a node: every operation completes calls without errors,
/// reports its figures in order (p50 <= p99 <= max), and the writes it made are in the store;
/// clients sharing connections work the same.
#[test]
fn bench_measures_every_operation_against_a_node() {
    let (_tmp, n) = node();
    for connections in [None, Some("2")] {
        let mut args = vec![
            "--project",
            "benched",
            "bench",
            "--ops",
            "state-set,state-get,state-get-stale,memory-add,memory-search,health",
            "--clients",
            "4",
            "--keys",
            "50",
            "--duration",
            "60s",
            "--warmup",
            "0s",
            "--max-ops",
            "200",
            "--format=json",
        ];
        if let Some(c) = connections {
            args.extend(["--connections", c]);
        }
        let reports = n.cli(&args).json();
        let reports = reports.as_array().unwrap();
        let ops: Vec<&str> = reports.iter().map(|r| r["op"].as_str().unwrap()).collect();
        assert_eq!(
            ops,
            [
                "state-set",
                "state-get",
                "state-get-stale",
                "memory-add",
                "memory-search",
                "health"
            ]
        );
        for r in reports {
            assert_eq!(r["errors"], 0, "{r}");
            assert_eq!(r["ops"], 200, "{r}");
            let (p50, p99, max) = (
                r["p50_ms"].as_f64().unwrap(),
                r["p99_ms"].as_f64().unwrap(),
                r["max_ms"].as_f64().unwrap(),
            );
            assert!(0.0 < p50 && p50 <= p99 && p99 <= max, "{r}");
            assert!(r["ops_per_sec"].as_f64().unwrap() > 0.0, "{r}");
        }
    }
    // The writes are there: keys k0..k49 with 256-byte values.
    let state = n
        .cli(&["--project", "benched", "state", "list", "--format=json"])
        .json();
    let keys = state.as_array().unwrap();
    assert_eq!(keys.len(), 50, "{state}");
    assert!(
        keys.iter()
            .all(|k| k["value"].as_str().unwrap().len() == 256),
        "{state}"
    );
}

/// Without --remote or AIDE_REMOTE the CLI takes the nodes from the `sync` section of its config
/// file, and a peer that is down does not stop it: it uses the one that answers.
#[test]
fn the_cli_finds_the_cluster_in_its_config_file() {
    let (tmp, n) = node();
    // A port nothing listens on: bound, then closed.
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().to_string()
    };
    let config = tmp.path().join("config.yaml");
    std::fs::write(
        &config,
        format!(
            "sync:\n  mode: raft\n  peers: [\"{dead}\", \"{}\"]\nproject: fromfile\n",
            n.addr
        ),
    )
    .unwrap();
    let run = |args: &[&str]| {
        common::succeed(
            std::process::Command::new(common::aide_bin())
                .current_dir(tmp.path())
                .args(args)
                .env("AIDE_CONFIG", &config)
                .env_remove("AIDE_REMOTE")
                .env_remove("AIDE_PROJECT"),
        )
    };
    run(&["state", "set", "where", "from the config file"]);
    assert_eq!(
        run(&["state", "get", "where"]).trim(),
        "from the config file"
    );
    // The project came from the file too.
    let direct = n.cli(&["--project", "fromfile", "state", "get", "where"]);
    assert_eq!(direct.out().trim(), "from the config file");
}
