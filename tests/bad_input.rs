//! Bad input gets a clear error naming the problem, the node stays up, and nothing stored is
//! lost: invalid requests over gRPC, bad metadata, oversized messages, and data directories that
//! are not aide stores or are damaged.

mod common;

use aide::client::{Client, ClientError};
use aide::grpc::pb::aidememory::*;
use common::{aide_bin, NodeProc};
use std::future::Future;
use std::pin::Pin;
use tonic::Code;

type Call<'a> = Pin<Box<dyn Future<Output = Result<(), ClientError>> + 'a>>;

fn ok<T>(r: Result<T, ClientError>) -> Result<(), ClientError> {
    r.map(|_| ())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_requests_get_clear_errors_and_change_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let node = NodeProc::start(&tmp.path().join("n1"), &[]);
    let c = node.client("bad");
    let kept = c
        .memory_add(MemoryAddRequest {
            content: "must survive".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .memory
        .unwrap();
    c.state_set(StateSetRequest {
        key: "k".into(),
        value: "v".into(),
        ..Default::default()
    })
    .await
    .unwrap();
    let huge = "x".repeat(64 * 1024 + 1);
    let unknown_ulid = "01ARZ3NDEKTSV4RRFFQ69G5FAV".to_string();

    // (what, expected code, a word the message must contain, the call)
    let cases: Vec<(&str, Code, &str, Call)> = vec![
        (
            "empty memory",
            Code::InvalidArgument,
            "content",
            Box::pin(async { ok(c.memory_add(MemoryAddRequest::default()).await) }),
        ),
        (
            "huge memory",
            Code::InvalidArgument,
            "65536",
            Box::pin(async {
                ok(c.memory_add(MemoryAddRequest {
                    content: huge.clone(),
                    ..Default::default()
                })
                .await)
            }),
        ),
        (
            "bad category",
            Code::InvalidArgument,
            "category",
            Box::pin(async {
                ok(c.memory_add(MemoryAddRequest {
                    content: "x".into(),
                    category: "nope".into(),
                    ..Default::default()
                })
                .await)
            }),
        ),
        (
            "empty tag",
            Code::InvalidArgument,
            "tags",
            Box::pin(async {
                ok(c.memory_add(MemoryAddRequest {
                    content: "x".into(),
                    tags: vec!["".into()],
                    ..Default::default()
                })
                .await)
            }),
        ),
        (
            "bad import id",
            Code::InvalidArgument,
            "ULID",
            Box::pin(async {
                ok(c.memory_add(MemoryAddRequest {
                    content: "x".into(),
                    id: "zz".into(),
                    ..Default::default()
                })
                .await)
            }),
        ),
        (
            "unknown memory",
            Code::NotFound,
            "not found",
            Box::pin(async {
                ok(c.memory_get(MemoryGetRequest {
                    id: unknown_ulid.clone(),
                })
                .await)
            }),
        ),
        (
            "empty memory id",
            Code::InvalidArgument,
            "id",
            Box::pin(async { ok(c.memory_get(MemoryGetRequest::default()).await) }),
        ),
        (
            "negative search limit",
            Code::InvalidArgument,
            "limit",
            Box::pin(async {
                ok(c.memory_search(MemorySearchRequest {
                    query: "x".into(),
                    limit: -1,
                    ..Default::default()
                })
                .await)
            }),
        ),
        (
            "empty query",
            Code::InvalidArgument,
            "query",
            Box::pin(async { ok(c.memory_search(MemorySearchRequest::default()).await) }),
        ),
        (
            "negative list limit",
            Code::InvalidArgument,
            "limit",
            Box::pin(async {
                ok(c.memory_list(MemoryListRequest {
                    limit: -5,
                    ..Default::default()
                })
                .await)
            }),
        ),
        (
            "empty state key",
            Code::InvalidArgument,
            "key",
            Box::pin(async { ok(c.state_set(StateSetRequest::default()).await) }),
        ),
        (
            "huge state value",
            Code::InvalidArgument,
            "value",
            Box::pin(async {
                ok(c.state_set(StateSetRequest {
                    key: "k".into(),
                    value: huge.clone(),
                    ..Default::default()
                })
                .await)
            }),
        ),
        (
            "control chars in key",
            Code::InvalidArgument,
            "control",
            Box::pin(async {
                ok(c.state_set(StateSetRequest {
                    key: "a\u{1}".into(),
                    ..Default::default()
                })
                .await)
            }),
        ),
        (
            "bad duration",
            Code::InvalidArgument,
            "duration",
            Box::pin(async {
                ok(c.state_cleanup(StateCleanupRequest {
                    max_age: "soon".into(),
                })
                .await)
            }),
        ),
        (
            "negative duration",
            Code::InvalidArgument,
            "duration",
            Box::pin(async {
                ok(c.state_cleanup(StateCleanupRequest {
                    max_age: "-1h".into(),
                })
                .await)
            }),
        ),
        (
            "empty topic",
            Code::InvalidArgument,
            "topic",
            Box::pin(async {
                ok(c.decision_set(DecisionSetRequest {
                    decision: "d".into(),
                    ..Default::default()
                })
                .await)
            }),
        ),
        (
            "empty decision",
            Code::InvalidArgument,
            "decision",
            Box::pin(async {
                ok(c.decision_set(DecisionSetRequest {
                    topic: "t".into(),
                    ..Default::default()
                })
                .await)
            }),
        ),
        (
            "message without sender",
            Code::InvalidArgument,
            "from",
            Box::pin(async {
                ok(c.message_send(MessageSendRequest {
                    content: "x".into(),
                    ..Default::default()
                })
                .await)
            }),
        ),
        (
            "negative ttl",
            Code::InvalidArgument,
            "ttl_seconds",
            Box::pin(async {
                ok(c.message_send(MessageSendRequest {
                    from: "a".into(),
                    content: "x".into(),
                    ttl_seconds: -1,
                    ..Default::default()
                })
                .await)
            }),
        ),
        (
            "ack of id 0",
            Code::InvalidArgument,
            "message_id",
            Box::pin(async {
                ok(c.message_ack(MessageAckRequest {
                    message_id: 0,
                    agent_id: "a".into(),
                })
                .await)
            }),
        ),
        (
            "task without title",
            Code::InvalidArgument,
            "title",
            Box::pin(async { ok(c.task_create(TaskCreateRequest::default()).await) }),
        ),
        (
            "claim without agent",
            Code::InvalidArgument,
            "agent_id",
            Box::pin(async {
                ok(c.task_claim(TaskClaimRequest {
                    task_id: "t".into(),
                    ..Default::default()
                })
                .await)
            }),
        ),
        (
            "claim of unknown task",
            Code::NotFound,
            "not found",
            Box::pin(async {
                ok(c.task_claim(TaskClaimRequest {
                    task_id: "nope".into(),
                    agent_id: "a".into(),
                    ..Default::default()
                })
                .await)
            }),
        ),
        (
            "complete of unknown task",
            Code::NotFound,
            "not found",
            Box::pin(async {
                ok(c.task_complete(TaskCompleteRequest {
                    task_id: "nope".into(),
                    ..Default::default()
                })
                .await)
            }),
        ),
        (
            "bad task status",
            Code::InvalidArgument,
            "status",
            Box::pin(async {
                ok(c.task_list(TaskListRequest {
                    status: "later".into(),
                    ..Default::default()
                })
                .await)
            }),
        ),
        (
            "empty task update",
            Code::InvalidArgument,
            "status",
            Box::pin(async {
                ok(c.task_update(TaskUpdateRequest {
                    task_id: "t".into(),
                    ..Default::default()
                })
                .await)
            }),
        ),
        (
            "empty topic to get",
            Code::InvalidArgument,
            "topic",
            Box::pin(async { ok(c.decision_get(DecisionGetRequest::default()).await) }),
        ),
        (
            "empty topic history",
            Code::InvalidArgument,
            "topic",
            Box::pin(async { ok(c.decision_history(DecisionHistoryRequest::default()).await) }),
        ),
        (
            "empty topic to delete",
            Code::InvalidArgument,
            "topic",
            Box::pin(async { ok(c.decision_delete(DecisionDeleteRequest::default()).await) }),
        ),
        (
            "empty key to delete",
            Code::InvalidArgument,
            "key",
            Box::pin(async { ok(c.state_delete(StateDeleteRequest::default()).await) }),
        ),
        (
            "control chars in agent",
            Code::InvalidArgument,
            "agent_id",
            Box::pin(async {
                ok(c.message_list(MessageListRequest {
                    agent_id: "a\u{7}b".into(),
                    ..Default::default()
                })
                .await)
            }),
        ),
        (
            "empty task id",
            Code::InvalidArgument,
            "id",
            Box::pin(async { ok(c.task_get(TaskGetRequest::default()).await) }),
        ),
        (
            "empty task id to delete",
            Code::InvalidArgument,
            "id",
            Box::pin(async { ok(c.task_delete(TaskDeleteRequest::default()).await) }),
        ),
        (
            "empty memory id to delete",
            Code::InvalidArgument,
            "id",
            Box::pin(async { ok(c.memory_delete(MemoryDeleteRequest::default()).await) }),
        ),
        (
            "unknown node to remove",
            Code::NotFound,
            "not a member",
            Box::pin(async {
                ok(
                    c.cluster_remove(aide::grpc::pb::cluster::RemoveRequest { node_id: 77 })
                        .await,
                )
            }),
        ),
        (
            "join of no address",
            Code::InvalidArgument,
            "address",
            Box::pin(async {
                ok(
                    c.cluster_join(aide::grpc::pb::cluster::JoinRequest::default())
                        .await,
                )
            }),
        ),
    ];
    for (what, code, word, call) in cases {
        let err = call.await.expect_err(what);
        assert_eq!(err.code, code, "{what}: {}", err.message);
        assert!(
            err.message.contains(word),
            "{what}: the message {:?} does not name {word:?}",
            err.message
        );
    }

    // Bad metadata.
    let channel = aide::raft::network::channel(&node.addr).unwrap();
    let mut raw = state_service_client::StateServiceClient::new(channel);
    for (key, value, word) in [
        ("x-aide-consistency", "sometimes", "x-aide-consistency"),
        ("x-aide-min-index", "ten", "x-aide-min-index"),
        ("x-aide-project", "has spaces", "project"),
    ] {
        let mut r = tonic::Request::new(StateGetRequest {
            key: "k".into(),
            ..Default::default()
        });
        r.metadata_mut().insert(key, value.parse().unwrap());
        let err = raw.get(r).await.unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{key}");
        assert!(err.message().contains(word), "{key}: {}", err.message());
    }
    // A request larger than the node accepts.
    let too_big = "y".repeat(9 * 1024 * 1024);
    let err = raw
        .set(tonic::Request::new(StateSetRequest {
            key: "k".into(),
            value: too_big,
            ..Default::default()
        }))
        .await
        .unwrap_err();
    assert_ne!(err.code(), Code::Ok);

    // The node is up and the data intact.
    assert!(c.health(HealthCheckRequest {}).await.unwrap().healthy);
    let got = c
        .memory_get(MemoryGetRequest { id: kept.id })
        .await
        .unwrap()
        .memory
        .unwrap();
    assert_eq!(got.content, "must survive");
    let st = c
        .state_get(StateGetRequest {
            key: "k".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(st.state.unwrap().value, "v");
}

fn serve_fails(dir: &std::path::Path) -> String {
    let out = std::process::Command::new(aide_bin())
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir)
        .output()
        .unwrap();
    assert!(
        !out.status.success(),
        "aide serve accepted {}",
        dir.display()
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn a_directory_that_is_not_an_aide_store_is_refused_untouched() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("photos");
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(dir.join("holiday.jpg"), b"not ours").unwrap();
    let err = serve_fails(&dir);
    assert!(err.contains("is not an aide data directory"), "{err}");
    let entries: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(entries, ["holiday.jpg"], "nothing was written into it");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_store_is_reported_and_its_data_kept() {
    let tmp = tempfile::tempdir().unwrap();
    let mut node = NodeProc::start(&tmp.path().join("n1"), &[]);
    let c: Client = node.client("p");
    c.state_set(StateSetRequest {
        key: "k".into(),
        value: "precious".into(),
        ..Default::default()
    })
    .await
    .unwrap();
    assert!(node.terminate());

    // A damaged identity file.
    let meta = node.dir.join("aide.meta");
    let good = std::fs::read(&meta).unwrap();
    std::fs::write(&meta, b"{ broken").unwrap();
    let err = serve_fails(&node.dir);
    assert!(
        err.contains("damaged") && err.contains("aide.meta"),
        "{err}"
    );
    std::fs::write(&meta, &good).unwrap();

    // A damaged database configuration.
    let conf = node.dir.join("db").join("conf");
    let good_conf = std::fs::read(&conf).unwrap();
    std::fs::write(&conf, b"\x00\x01garbage").unwrap();
    let err = serve_fails(&node.dir);
    assert!(
        err.contains("damaged") && err.contains("cannot be opened"),
        "{err}"
    );
    std::fs::write(&conf, &good_conf).unwrap();

    // A database whose start is overwritten.
    let db = node.dir.join("db").join("db");
    let good_db = std::fs::read(&db).unwrap();
    let mut broken = good_db.clone();
    broken[..4096.min(good_db.len())].fill(0xA5);
    std::fs::write(&db, &broken).unwrap();
    let err = serve_fails(&node.dir);
    assert!(
        err.contains("damaged") && err.contains("--join MEMBER"),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");
    // A database cut short: sled would take it for a torn write and open what is left, empty;
    // the node knows how far its log went and refuses.
    std::fs::write(&db, &good_db[..good_db.len() / 4]).unwrap();
    let err = serve_fails(&node.dir);
    assert!(
        err.contains("damaged") && err.contains("once held the log up to index"),
        "{err}"
    );
    std::fs::write(&db, &good_db).unwrap();

    // Repaired, the node starts with the data as it was.
    node.restart();
    let st = node
        .client("p")
        .state_get(StateGetRequest {
            key: "k".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(st.state.unwrap().value, "precious");
}

/// Runs `aide ARGS` with no node configured, and returns (success, stderr).
fn aide(args: &[&str], config: &std::path::Path) -> (bool, String) {
    let out = std::process::Command::new(aide_bin())
        .current_dir(std::env::temp_dir())
        .args(args)
        .env("AIDE_CONFIG", config)
        .env_remove("AIDE_REMOTE")
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn malformed_config_files_and_flags_get_clear_errors_and_touch_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let data = dir.to_str().unwrap();
    let bad_serve = tmp.path().join("serve.yaml");
    std::fs::write(&bad_serve, "listen: [oops\n").unwrap();
    let bad_client = tmp.path().join("client.yaml");
    std::fs::write(&bad_client, "sync: {mode: raft, peers: 12}\n").unwrap();
    let zero_threads = tmp.path().join("threads.yaml");
    std::fs::write(&zero_threads, "threads: 0\n").unwrap();
    let none = tmp.path().join("none.yaml");
    let serve = |extra: &[&str]| {
        let mut args = vec!["serve", "--data-dir", data];
        args.extend_from_slice(extra);
        aide(&args, &none)
    };

    // (what, the outcome, words the error must contain)
    let cases: Vec<(&str, (bool, String), &[&str])> = vec![
        (
            "a serve config that is not YAML",
            serve(&["--config", bad_serve.to_str().unwrap()]),
            &["serve.yaml", "listen", "line 1"],
        ),
        (
            "a listen address that is no address",
            serve(&["--listen", "nonsense"]),
            &["nonsense"],
        ),
        (
            "node id 0",
            serve(&["--listen", "127.0.0.1:0", "--node-id", "0"]),
            &["node id 0"],
        ),
        (
            "a node id that is no number",
            serve(&["--node-id", "one"]),
            &["--node-id", "one"],
        ),
        (
            "snapshots every 0 entries",
            serve(&["--snapshot-every", "0"]),
            &["--snapshot-every"],
        ),
        (
            "no worker threads",
            serve(&["--threads", "0"]),
            &["--threads", "0"],
        ),
        (
            "no worker threads in a serve config",
            serve(&["--config", zero_threads.to_str().unwrap()]),
            &["threads must be from 1 to", "it is 0"],
        ),
        (
            "a client config with peers that are no list",
            aide(&["state", "get", "k"], &bad_client),
            &["client.yaml", "sync.peers"],
        ),
        (
            "a remote that is no HOST:PORT",
            aide(&["state", "get", "k", "--remote", ":::"], &none),
            &["--remote", ":::"],
        ),
        (
            "an unknown consistency",
            aide(
                &[
                    "state",
                    "get",
                    "k",
                    "--remote",
                    "127.0.0.1:9",
                    "--consistency",
                    "sometimes",
                ],
                &none,
            ),
            &["sometimes", "linearizable, stale"],
        ),
        (
            "a min index that is no index",
            aide(
                &[
                    "state",
                    "get",
                    "k",
                    "--remote",
                    "127.0.0.1:9",
                    "--min-index",
                    "abc",
                ],
                &none,
            ),
            &["--min-index", "abc"],
        ),
        (
            "a join address that is no HOST:PORT",
            serve(&["--listen", "127.0.0.1:0", "--join", "nonsense"]),
            &["--join", "nonsense", "HOST:PORT"],
        ),
        (
            "a join through the node's own address",
            serve(&["--listen", "127.0.0.1:7499", "--join", "127.0.0.1:7499"]),
            &["--join", "own address"],
        ),
        (
            "cluster join of an address that is no HOST:PORT",
            aide(
                &[
                    "cluster",
                    "join",
                    "127.0.0.1:99999",
                    "--remote",
                    "127.0.0.1:9",
                ],
                &none,
            ),
            &["cluster join", "127.0.0.1:99999", "HOST:PORT"],
        ),
        (
            "a remote given as a URL path",
            aide(&["state", "get", "k", "--remote", "127.0.0.1/x:9"], &none),
            &["--remote", "127.0.0.1/x:9"],
        ),
        (
            "a benchmark of no clients",
            aide(
                &["bench", "--clients", "0", "--remote", "127.0.0.1:9"],
                &none,
            ),
            &["--clients", "at least 1"],
        ),
    ];
    for (what, (ok, err), words) in cases {
        assert!(!ok, "{what} was accepted");
        for w in words {
            assert!(err.contains(w), "{what}: {err:?} does not name {w:?}");
        }
        assert!(!err.contains("panicked"), "{what}: {err}");
    }
    assert!(!dir.exists(), "a refused start created {}", dir.display());
}

/// An address where something accepts connections but never answers (a hung process, a port
/// another program holds): the call fails when its time is up, naming that address.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_never_answers_is_named_when_the_call_gives_up() {
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = silent.local_addr().unwrap().to_string();
    let client = Client::new(aide::client::ClientConfig {
        endpoints: vec![addr.clone()],
        project: Some("p".into()),
        timeout: std::time::Duration::from_secs(1),
        ..Default::default()
    })
    .unwrap();
    let err = client
        .state_get(StateGetRequest {
            key: "k".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code, Code::Unavailable, "{err:?}");
    assert!(err.message.contains(&addr), "{err:?}");
    drop(silent);
}
