//! API keys, per-project access and the audit log, on real nodes over gRPC: no key is
//! UNAUTHENTICATED, a key on another project or a read key writing is PERMISSION_DENIED, a revoked
//! key stops working on every node, each refusal leaves an audit line, and no secret shows up in
//! logs, audit lines or JSON output; a follower cut off while keys were enabled catches up once
//! healed and then checks the key a read that waited for it carried. (TLS is in tests/tls.rs: it sets this process's client TLS.)

mod common;

use aide::client::{Client, ClientConfig, ClientError, ReadMode};
use aide::grpc::pb::aidememory::*;
use aide::grpc::pb::auth::*;
use common::cluster::Cluster;
use common::{cli, NodeProc};
use std::time::Duration;
use tonic::Code;

fn keyed(endpoints: &[String], project: &str, key: Option<&str>, mode: ReadMode) -> Client {
    Client::new(ClientConfig {
        endpoints: endpoints.to_vec(),
        project: Some(project.to_string()),
        read_mode: mode,
        min_index: None,
        min_index_is_hint: false,
        timeout: Duration::from_secs(10),
        api_key: key.map(String::from),
    })
    .unwrap()
}

fn bootstrap(node: &NodeProc) -> String {
    std::fs::read_to_string(node.dir.join("bootstrap.token")).unwrap()
}

async fn get(c: &Client) -> Result<StateGetResponse, ClientError> {
    c.state_get(StateGetRequest {
        key: "k".into(),
        ..Default::default()
    })
    .await
}

async fn set(c: &Client, v: &str) -> Result<StateSetResponse, ClientError> {
    c.state_set(StateSetRequest {
        key: "k".into(),
        value: v.into(),
        ..Default::default()
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_guard_every_call_by_role_and_project_and_leave_audit_lines() {
    let tmp = tempfile::tempdir().unwrap();
    let node = NodeProc::start(&tmp.path().join("n1"), &[]);
    let addr = [node.addr.clone()];
    let open = keyed(&addr, "alpha", None, ReadMode::Linearizable);
    set(&open, "before keys").await.unwrap();

    // Enabling needs the node's bootstrap token.
    let err = open
        .auth_enable(EnableRequest {
            bootstrap_token: "guessed".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code, Code::PermissionDenied, "{}", err.message);
    let admin = open
        .auth_enable(EnableRequest {
            bootstrap_token: bootstrap(&node),
            ..Default::default()
        })
        .await
        .unwrap();
    let admin_secret = admin.secret.clone();
    assert!(admin_secret.starts_with("aide_"));
    // The token still gives a new admin key (a lost first key does not lock everyone out).
    let again = open
        .auth_enable(EnableRequest {
            bootstrap_token: bootstrap(&node),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_ne!(again.secret, admin_secret);
    assert_eq!(again.key.unwrap().role, "admin");

    // No key: UNAUTHENTICATED, for reads, writes and admin calls alike.
    assert_eq!(get(&open).await.unwrap_err().code, Code::Unauthenticated);
    assert_eq!(
        set(&open, "x").await.unwrap_err().code,
        Code::Unauthenticated
    );
    let bogus = keyed(
        &addr,
        "alpha",
        Some("aide_nothing_here"),
        ReadMode::Linearizable,
    );
    assert_eq!(get(&bogus).await.unwrap_err().code, Code::Unauthenticated);

    let root = keyed(&addr, "alpha", Some(&admin_secret), ReadMode::Linearizable);
    assert_eq!(
        get(&root).await.unwrap().state.unwrap().value,
        "before keys"
    );
    let make = |project: &str, role: &str| CreateKeyRequest {
        projects: vec![project.to_string()],
        role: role.to_string(),
        description: String::new(),
    };
    let writer = root.auth_create_key(make("alpha", "write")).await.unwrap();
    let reader = root.auth_create_key(make("alpha", "read")).await.unwrap();

    // A key for alpha on beta: PERMISSION_DENIED; on alpha it works.
    let w_alpha = keyed(&addr, "alpha", Some(&writer.secret), ReadMode::Linearizable);
    let w_beta = keyed(&addr, "beta", Some(&writer.secret), ReadMode::Linearizable);
    set(&w_alpha, "by the writer").await.unwrap();
    let denied = get(&w_beta).await.unwrap_err();
    assert_eq!(denied.code, Code::PermissionDenied);
    assert!(denied.message.contains("beta"), "{}", denied.message);
    assert_eq!(
        set(&w_beta, "x").await.unwrap_err().code,
        Code::PermissionDenied
    );
    // A read key reads, and cannot write; a write key cannot manage keys or membership.
    let r_alpha = keyed(&addr, "alpha", Some(&reader.secret), ReadMode::Linearizable);
    assert_eq!(
        get(&r_alpha).await.unwrap().state.unwrap().value,
        "by the writer"
    );
    let no_write = set(&r_alpha, "x").await.unwrap_err();
    assert_eq!(no_write.code, Code::PermissionDenied);
    assert!(
        no_write.message.contains("read role"),
        "{}",
        no_write.message
    );
    let no_admin = w_alpha
        .auth_create_key(make("alpha", "admin"))
        .await
        .unwrap_err();
    assert_eq!(no_admin.code, Code::PermissionDenied);
    let no_remove = w_alpha
        .cluster_remove(aide::grpc::pb::cluster::RemoveRequest { node_id: 1 })
        .await
        .unwrap_err();
    assert_eq!(no_remove.code, Code::PermissionDenied);
    // An admin of alpha alone cannot hand out beta.
    let alpha_admin = root.auth_create_key(make("alpha", "admin")).await.unwrap();
    let aa = keyed(
        &addr,
        "alpha",
        Some(&alpha_admin.secret),
        ReadMode::Linearizable,
    );
    let widen = aa.auth_create_key(make("beta", "read")).await.unwrap_err();
    assert_eq!(widen.code, Code::PermissionDenied);
    // Nor manage the cluster, see every key or the audit log, or revoke a key for all projects.
    let root_accessor = admin.key.as_ref().unwrap().accessor.clone();
    for (what, code) in [
        (
            "remove",
            aa.cluster_remove(aide::grpc::pb::cluster::RemoveRequest { node_id: 1 })
                .await
                .map(|_| ())
                .unwrap_err()
                .code,
        ),
        (
            "list keys",
            aa.auth_list_keys(ListKeysRequest {})
                .await
                .map(|_| ())
                .unwrap_err()
                .code,
        ),
        (
            "audit",
            aa.audit_tail(AuditTailRequest { lines: 5 })
                .await
                .map(|_| ())
                .unwrap_err()
                .code,
        ),
        (
            "revoke root",
            aa.auth_revoke_key(RevokeKeyRequest {
                accessor: root_accessor.clone(),
            })
            .await
            .map(|_| ())
            .unwrap_err()
            .code,
        ),
    ] {
        assert_eq!(code, Code::PermissionDenied, "{what}");
    }

    // A watch stream ends when its key is revoked.
    let watcher = root.auth_create_key(make("alpha", "read")).await.unwrap();
    let channel = aide::raft::network::channel(&node.addr).unwrap();
    let mut req = tonic::Request::new(WatchStateRequest::default());
    req.metadata_mut()
        .insert("x-aide-project", "alpha".parse().unwrap());
    req.metadata_mut().insert(
        "authorization",
        format!("Bearer {}", watcher.secret).parse().unwrap(),
    );
    let mut stream = swarm_service_client::SwarmServiceClient::new(channel)
        .watch_state(req)
        .await
        .unwrap()
        .into_inner();
    set(&w_alpha, "seen by the watcher").await.unwrap();
    let first = stream.message().await.unwrap().unwrap();
    assert_eq!(first.state.unwrap().value, "seen by the watcher");
    root.auth_revoke_key(RevokeKeyRequest {
        accessor: watcher.key.as_ref().unwrap().accessor.clone(),
    })
    .await
    .unwrap();
    set(&w_alpha, "not for a revoked key").await.unwrap();
    let ended = stream.message().await.unwrap_err();
    assert_eq!(ended.code(), Code::Unauthenticated, "{}", ended.message());
    assert!(ended.message().contains("revoked"), "{}", ended.message());

    // The audit log has the writes and every refusal, by accessor, never by secret.
    let lines = root
        .audit_tail(AuditTailRequest { lines: 200 })
        .await
        .unwrap()
        .lines;
    let text = lines.join("\n");
    for secret in [&admin_secret, &writer.secret, &reader.secret] {
        assert!(
            !text.contains(secret.as_str()),
            "a secret is in the audit log"
        );
    }
    let has = |f: &dyn Fn(&serde_json::Value) -> bool| {
        lines
            .iter()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
            .any(|v| f(&v))
    };
    let w_acc = writer.key.as_ref().unwrap().accessor.clone();
    let r_acc = reader.key.as_ref().unwrap().accessor.clone();
    assert!(has(&|v| v["operation"] == "state.set"
        && v["accessor"] == w_acc.as_str()
        && v["target"] == "k"
        && v["result"] == "ok"));
    assert!(has(&|v| v["accessor"] == r_acc.as_str()
        && v["operation"] == "StateService/Set"
        && v["result"].as_str().unwrap().starts_with("denied")));
    assert!(has(&|v| v["accessor"] == w_acc.as_str()
        && v["project"] == "beta"
        && v["result"].as_str().unwrap().starts_with("denied")));
    assert!(has(&|v| v["operation"] == "StateService/Get"
        && v["accessor"] == ""
        && v["result"]
            .as_str()
            .unwrap()
            .contains("requires an API key")));
    assert!(has(&|v| v["operation"] == "auth.key_create"
        && v["target"] == w_acc.as_str()
        && v["result"] == "ok"));
    assert!(has(
        &|v| v["operation"] == "auth.enable" && v["target"] == root_accessor.as_str()
    ));
    assert!(has(&|v| v["operation"] == "ClusterService/Remove"
        && v["result"].as_str().unwrap().starts_with("denied")));

    // No secret in the node's log or the CLI's JSON; the files are the owner's alone.
    let log = node.log_text();
    for secret in [&admin_secret, &writer.secret, &reader.secret] {
        assert!(
            !log.contains(secret.as_str()),
            "a secret is in the node's log"
        );
    }
    let out = cli(
        &node.addr,
        &[
            "auth",
            "key",
            "list",
            "--format=json",
            "--api-key",
            &admin_secret,
        ],
    );
    let keys = out.json();
    assert_eq!(keys.as_array().unwrap().len(), 6);
    assert!(!out.stdout.contains("aide_"), "{}", out.stdout);
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&node.dir), 0o700);
    assert_eq!(mode(&node.dir.join("audit.log")), 0o600);
    assert_eq!(mode(&node.dir.join("bootstrap.token")), 0o600);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_key_stops_working_on_every_node() {
    let cluster = Cluster::start(3, &[]).await;
    let first = &cluster.nodes[0];
    let open = keyed(&cluster.addrs(), "p", None, ReadMode::Linearizable);
    let admin = open
        .auth_enable(EnableRequest {
            bootstrap_token: std::fs::read_to_string(first.dir.join("bootstrap.token")).unwrap(),
            ..Default::default()
        })
        .await
        .unwrap();
    let root = keyed(
        &cluster.addrs(),
        "p",
        Some(&admin.secret),
        ReadMode::Linearizable,
    );
    let key = root
        .auth_create_key(CreateKeyRequest {
            projects: vec!["p".into()],
            role: "write".into(),
            description: "to revoke".into(),
        })
        .await
        .unwrap();
    // Every node knows the key (checked at each, reading its own replica).
    let applied = set(
        &keyed(
            &cluster.addrs(),
            "p",
            Some(&key.secret),
            ReadMode::Linearizable,
        ),
        "v",
    )
    .await
    .unwrap();
    assert_eq!(applied.state.unwrap().value, "v");
    for i in 0..3 {
        let c = keyed(
            &[cluster.nodes[i].addr.clone()],
            "p",
            Some(&key.secret),
            ReadMode::Linearizable,
        );
        assert_eq!(get(&c).await.unwrap().state.unwrap().value, "v", "node {i}");
    }
    root.auth_revoke_key(RevokeKeyRequest {
        accessor: key.key.unwrap().accessor,
    })
    .await
    .unwrap();
    for i in 0..3 {
        // Each node refuses the key once it has applied the revocation (it may lag a moment).
        let c = keyed(
            &[cluster.nodes[i].addr.clone()],
            "p",
            Some(&key.secret),
            ReadMode::Stale,
        );
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        let err = loop {
            match get(&c).await {
                Err(e) => break e,
                Ok(_) => {
                    assert!(
                        std::time::Instant::now() < deadline,
                        "node {i} still accepts the key"
                    );
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        };
        assert_eq!(err.code, Code::Unauthenticated, "node {i}: {}", err.message);
        assert!(err.message.contains("revoked"), "{}", err.message);
        let audit = keyed(
            &[cluster.nodes[i].addr.clone()],
            "p",
            Some(&admin.secret),
            ReadMode::Stale,
        )
        .audit_tail(AuditTailRequest { lines: 20 })
        .await
        .unwrap()
        .lines;
        assert!(
            audit.iter().any(|l| l.contains("has been revoked")),
            "node {i} audited the refusal: {audit:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_keys_the_nodes_still_work_together_and_strangers_cannot_pose_as_one() {
    use aide::grpc::pb::cluster::{RemoveRequest, StatusRequest};
    use aide::grpc::pb::raft::{raft_service_client::RaftServiceClient, RaftPayload};
    // A snapshot every 5 entries: the node that joins below catches up by one.
    let mut cluster = Cluster::start(3, &["--snapshot-every", "5"]).await;
    let open = keyed(&cluster.addrs(), "p", None, ReadMode::Linearizable);
    let admin = open
        .auth_enable(EnableRequest {
            bootstrap_token: bootstrap(&cluster.nodes[0]),
            ..Default::default()
        })
        .await
        .unwrap()
        .secret;
    // Until a follower has applied the enabling, it neither checks keys nor holds the node
    // secret, and the leader refuses (and logs) what it forwards: let every node catch up.
    // (A read with the min-index waits at each node, with no node-to-node call.)
    assert!(open.last_index() > 0, "enabling keys reports its index");
    for node in &cluster.nodes {
        let caught_up = Client::new(ClientConfig {
            endpoints: vec![node.addr.clone()],
            project: Some("p".into()),
            read_mode: ReadMode::Stale,
            min_index: Some(open.last_index()),
            min_index_is_hint: false,
            timeout: Duration::from_secs(20),
            api_key: Some(admin.clone()),
        })
        .unwrap();
        get(&caught_up).await.unwrap();
    }
    let leader_id = keyed(&cluster.addrs(), "p", Some(&admin), ReadMode::Stale)
        .cluster_members(aide::grpc::pb::cluster::MembersRequest {})
        .await
        .unwrap()
        .leader_id;
    let follower = cluster
        .nodes
        .iter()
        .position(|n| n.id != leader_id)
        .unwrap();
    let at_follower = keyed(
        &[cluster.nodes[follower].addr.clone()],
        "p",
        Some(&admin),
        ReadMode::Linearizable,
    );
    // Writes and linearizable reads at a follower go through the leader, node to node.
    set(&at_follower, "through the leader").await.unwrap();
    assert_eq!(
        get(&at_follower).await.unwrap().state.unwrap().value,
        "through the leader"
    );
    // The follower probes every member for the status.
    let status = at_follower.cluster_status(StatusRequest {}).await.unwrap();
    assert!(
        status.nodes.iter().all(|n| n.reachable),
        "{:?}",
        status.nodes
    );

    // A client with a key probes the nodes and learns the leader with it: no refused probes.
    let probing = Client::connect(ClientConfig {
        endpoints: cluster.addrs(),
        project: Some("p".into()),
        api_key: Some(admin.clone()),
        ..Default::default()
    })
    .await
    .unwrap();
    set(&probing, "after probing").await.unwrap();
    for node in &cluster.nodes {
        let lines = keyed(
            std::slice::from_ref(&node.addr),
            "p",
            Some(&admin),
            ReadMode::Stale,
        )
        .audit_tail(AuditTailRequest { lines: 500 })
        .await
        .unwrap()
        .lines;
        assert!(
            !lines.iter().any(|l| l.contains("denied")),
            "node {} refused something: {lines:?}",
            node.id
        );
    }

    // Enough entries that the log the new node would need is gone: it gets a snapshot.
    for i in 0..30 {
        set(&probing, &format!("filler {i}")).await.unwrap();
    }
    // A new node joins with an admin key; without one it is refused.
    let refused = std::process::Command::new(common::aide_bin())
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--join",
            &cluster.nodes[0].addr,
        ])
        .arg("--data-dir")
        .arg(cluster.dir(9))
        .env_remove("AIDE_API_KEY")
        .output()
        .unwrap();
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("API key"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
    let joined = NodeProc::start(
        &cluster.dir(8),
        &["--join", &cluster.nodes[0].addr, "--api-key", &admin],
    );
    let id = joined.id;
    let joined_addr = joined.addr.clone();
    cluster.nodes.push(joined);
    cluster.wait_voters_with(4, &admin).await;
    // It checked the leader's calls before it had the keys, and got them by a snapshot: now it
    // refuses a call without a key.
    let log = cluster.nodes[3].log_text();
    assert!(log.contains("installed a snapshot"), "{log}");
    let err = get(&keyed(&[joined_addr], "p", None, ReadMode::Stale))
        .await
        .unwrap_err();
    assert_eq!(err.code, Code::Unauthenticated, "{}", err.message);
    // Removing it through a follower is forwarded to the leader.
    at_follower
        .cluster_remove(RemoveRequest { node_id: id })
        .await
        .unwrap();

    // Something that is not a node of the cluster cannot send Raft messages.
    let channel = aide::raft::network::channel(&cluster.nodes[0].addr).unwrap();
    let err = RaftServiceClient::new(channel)
        .vote(RaftPayload { data: vec![1] })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated, "{}", err.message());
    assert!(err.message().contains("node secret"), "{}", err.message());
}

/// Whether bytes this test process sent to local port `port` wait unread at the receiver (read
/// off /proc/net/tcp: our sockets by their inodes, the receiving end by the port pair).
#[cfg(target_os = "linux")]
fn unread_bytes_from_us(port: u16) -> bool {
    let mine: std::collections::HashSet<u64> = std::fs::read_dir("/proc/self/fd")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| std::fs::read_link(e.path()).ok())
        .filter_map(|l| {
            l.to_str()?
                .strip_prefix("socket:[")?
                .strip_suffix(']')?
                .parse()
                .ok()
        })
        .collect();
    let table = std::fs::read_to_string("/proc/net/tcp").unwrap_or_default();
    // Columns: sl local_address rem_address st tx_queue:rx_queue tr:tm->when retrnsmt uid timeout inode
    let rows: Vec<(u16, u16, u64, u64)> = table
        .lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let port = |a: &str| u16::from_str_radix(a.rsplit(':').next()?, 16).ok();
            let rx = u64::from_str_radix(f.get(4)?.split(':').nth(1)?, 16).ok()?;
            Some((port(f[1])?, port(f[2])?, rx, f.get(9)?.parse().ok()?))
        })
        .collect();
    rows.iter()
        .filter(|ours| ours.1 == port && mine.contains(&ours.3))
        .any(|ours| rows.iter().any(|r| r.0 == port && r.1 == ours.0 && r.2 > 0))
}

/// A follower paused while a key was revoked admits a linearizable read with that key against
/// its older copy of the keys; once it has caught up with the leader for the read, it refuses it.
/// An admin key revoked the same way cannot create a key there (refused where it applies), nor
/// remove a member.
#[cfg(target_os = "linux")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_behind_a_revocation_refuses_the_revoked_keys() {
    let mut cluster = Cluster::start(3, &[]).await;
    let f = cluster.follower().await;
    let at_f = cluster.nodes[f].addr.clone();
    let others: Vec<String> = (0..3)
        .filter(|&i| i != f)
        .map(|i| cluster.nodes[i].addr.clone())
        .collect();
    let admin = keyed(&others[..1], "p", None, ReadMode::Linearizable)
        .auth_enable(EnableRequest {
            bootstrap_token: bootstrap(&cluster.nodes[if f == 0 { 1 } else { 0 }]),
            ..Default::default()
        })
        .await
        .unwrap()
        .secret;
    let root = keyed(&others, "p", Some(&admin), ReadMode::Linearizable);
    // The follower serves the key (its connection to the follower stays open for the next read).
    let (reader, key, secret) =
        key_served_at(&root, &at_f, "p", "write", ReadMode::Linearizable).await;
    set(
        &keyed(&others, "p", Some(&secret), ReadMode::Linearizable),
        "v",
    )
    .await
    .unwrap();

    // Paused, the follower misses the revocation; the read reaches its socket meanwhile.
    let pid = cluster.nodes[f].pid() as i32;
    assert!(pid > 0, "the follower is not running");
    let port: u16 = at_f.rsplit(':').next().unwrap().parse().unwrap();
    let revoke = |accessor: String| {
        let root = root.clone();
        async move {
            root.auth_revoke_key(RevokeKeyRequest { accessor })
                .await
                .unwrap();
        }
    };
    let err = behind_a_revocation(pid, port, revoke(key), async move { get(&reader).await })
        .await
        .expect_err("a revoked key read at a lagging follower");
    assert_eq!(err.code, Code::Unauthenticated, "{}", err.message);
    assert!(err.message.contains("revoked"), "{}", err.message);

    // The same for an admin key: revoked while the follower slept, it cannot mint a key there.
    let (minter, admin2, _) = key_served_at(&root, &at_f, "*", "admin", ReadMode::Stale).await;
    let minted = behind_a_revocation(pid, port, revoke(admin2), async move {
        minter
            .auth_create_key(CreateKeyRequest {
                projects: vec!["*".into()],
                role: "admin".into(),
                description: "minted by a revoked key".into(),
            })
            .await
    })
    .await;
    let err = minted.expect_err("a revoked admin key minted a key at a lagging follower");
    assert_eq!(err.code, Code::Unauthenticated, "{}", err.message);
    let keys = root.auth_list_keys(ListKeysRequest {}).await.unwrap().keys;
    assert!(
        keys.iter()
            .all(|k| k.description != "minted by a revoked key"),
        "{keys:?}"
    );

    // Nor can it change the membership there.
    use aide::grpc::pb::cluster::{MembersRequest, RemoveRequest};
    let (operator, admin3, _) = key_served_at(&root, &at_f, "*", "admin", ReadMode::Stale).await;
    let other = cluster.nodes[(0..3).find(|&i| i != f).unwrap()].id;
    let removed = behind_a_revocation(pid, port, revoke(admin3), async move {
        operator
            .cluster_remove(RemoveRequest { node_id: other })
            .await
    })
    .await;
    let err = removed.expect_err("a revoked admin key removed a node at a lagging follower");
    assert_eq!(err.code, Code::Unauthenticated, "{}", err.message);
    let members = root
        .cluster_members(MembersRequest {})
        .await
        .unwrap()
        .members;
    assert_eq!(members.len(), 3, "{members:?}");
}

/// A new key with `role` on `project` made by `root`, and a client with it at `addr` once that
/// node serves it (the client keeps its connection for the next call); also the key's accessor
/// and secret.
async fn key_served_at(
    root: &Client,
    addr: &str,
    project: &str,
    role: &str,
    mode: ReadMode,
) -> (Client, String, String) {
    let created = root
        .auth_create_key(CreateKeyRequest {
            projects: vec![project.into()],
            role: role.into(),
            description: format!("{role} key"),
        })
        .await
        .unwrap();
    let client = keyed(&[addr.to_string()], "p", Some(&created.secret), mode);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while let Err(e) = get(&client).await {
        assert!(
            std::time::Instant::now() < deadline,
            "the node at {addr} never served the key: {}",
            e.message
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    (client, created.key.unwrap().accessor, created.secret)
}

/// Pauses the node `pid` (serving on `port`), runs `revoke` through the other nodes, sends
/// `call` to the paused node, resumes it once the call waits in its socket, and returns the
/// call's outcome: the node admits the call against its keys from before the revocation.
#[cfg(target_os = "linux")]
async fn behind_a_revocation<T: Send + 'static>(
    pid: i32,
    port: u16,
    revoke: impl std::future::Future<Output = ()>,
    call: impl std::future::Future<Output = T> + Send + 'static,
) -> T {
    unsafe { libc::kill(pid, libc::SIGSTOP) };
    let resumed = resume_on_drop(pid);
    revoke.await;
    let call = tokio::spawn(call);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !unread_bytes_from_us(port) {
        assert!(
            std::time::Instant::now() < deadline,
            "the call never reached the paused node"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    drop(resumed);
    call.await.unwrap()
}

/// Sends SIGCONT to `pid` when dropped (also when the test fails while it is paused).
fn resume_on_drop(pid: i32) -> impl Drop {
    struct Resume(i32);
    impl Drop for Resume {
        fn drop(&mut self) {
            unsafe { libc::kill(self.0, libc::SIGCONT) };
        }
    }
    Resume(pid)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_that_missed_the_enabling_of_keys_catches_up_and_checks_the_key_a_waiting_read_carries(
) {
    use aide::grpc::pb::aidememory::state_service_client::StateServiceClient;
    use aide::grpc::pb::cluster::IsolationRequest;
    let mut c = Cluster::start(3, &["--failpoints"]).await;
    let leader = c.leader().await;
    let behind = c.follower().await;
    let ids: Vec<u64> = c.nodes.iter().map(|n| n.id).collect();
    // Cut the follower off from the others both ways (`key`: once keys are on), or heal.
    let cut_off = |cut: bool, key: Option<String>| {
        let c = &c;
        let ids = ids.clone();
        async move {
            for i in 0..3 {
                let isolate_from = match (cut, i == behind) {
                    (false, _) => vec![],
                    (true, true) => ids.iter().copied().filter(|&id| id != ids[i]).collect(),
                    (true, false) => vec![ids[behind]],
                };
                keyed(
                    &[c.nodes[i].addr.clone()],
                    "p",
                    key.as_deref(),
                    ReadMode::Stale,
                )
                .cluster_set_isolation(IsolationRequest {
                    isolate_from,
                    one_way: false,
                })
                .await
                .unwrap();
            }
        }
    };
    cut_off(true, None).await;
    // The other two enable keys; the follower cut off still has them off.
    let open = keyed(
        &[c.nodes[leader].addr.clone()],
        "p",
        None,
        ReadMode::Linearizable,
    );
    let admin = open
        .auth_enable(EnableRequest {
            bootstrap_token: bootstrap(&c.nodes[leader]),
            ..Default::default()
        })
        .await
        .unwrap()
        .secret;
    let enabled_at = open.last_index();
    // Cut off, the follower stops hearing from its leader and asks the others whether they
    // would elect it; it reaches none, so it does not campaign: its term stays. Wait until it
    // counts itself leaderless (healed, it must still follow the leader, now with keys on).
    let term_of = |i: usize| {
        let node = keyed(
            &[c.nodes[i].addr.clone()],
            "p",
            Some(&admin),
            ReadMode::Stale,
        );
        async move {
            node.cluster_node_info(aide::grpc::pb::cluster::NodeInfoRequest {})
                .await
                .unwrap()
                .status
                .unwrap()
                .term
        }
    };
    let leader_term = term_of(leader).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let members = keyed(&[c.nodes[behind].addr.clone()], "p", None, ReadMode::Stale)
            .cluster_members(aide::grpc::pb::cluster::MembersRequest {})
            .await
            .unwrap();
        if members.leader_id == 0 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the cut-off follower kept counting on a leader it does not hear"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        term_of(behind).await,
        leader_term,
        "the cut-off follower campaigned"
    );

    // Three reads on one connection to the follower, sent in this order: two that wait for the
    // enabling (with the admin key, and with none), then one that does not wait. When the third
    // is answered, the follower has let the first two in, with keys off; then it is healed.
    let channel =
        tonic::transport::Endpoint::from_shared(format!("http://{}", c.nodes[behind].addr))
            .unwrap()
            .connect()
            .await
            .unwrap();
    let read = |key: Option<&str>, min_index: Option<u64>| {
        let mut req = tonic::Request::new(StateGetRequest {
            key: "k".into(),
            ..Default::default()
        });
        let md = req.metadata_mut();
        md.insert("x-aide-project", "p".parse().unwrap());
        md.insert("x-aide-consistency", "stale".parse().unwrap());
        if let Some(n) = min_index {
            md.insert("x-aide-min-index", n.to_string().parse().unwrap());
        }
        if let Some(key) = key {
            md.insert("authorization", aide::auth::bearer_value(key).unwrap());
        }
        let mut client = StateServiceClient::new(channel.clone());
        async move { client.get(req).await }
    };
    let (with_key, without_key, healed) = tokio::join!(
        read(Some(&admin), Some(enabled_at)),
        read(None, Some(enabled_at)),
        async {
            let probe = read(None, None).await;
            cut_off(false, Some(admin.clone())).await;
            probe
        }
    );
    healed.expect("a read that does not wait, on the follower with keys still off");
    // Served once the follower applied the enabling: the key it carried is checked then.
    let with_key = with_key.expect("the admin key's read, served after the wait");
    assert!(common::reported_index(with_key.metadata()) >= enabled_at);
    let err = without_key.expect_err("a read with no key, once keys are on");
    assert_eq!(err.code(), Code::Unauthenticated, "{}", err.message());
    assert!(
        err.message().contains("requires an API key"),
        "{}",
        err.message()
    );
}

/// A node with API keys of its own (it made a cluster of its own and enabled keys there) is not
/// added by `cluster join`: it refuses the cluster's questions, which says it holds data, and
/// the refusal says so; the cluster's members stay as they were.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_with_keys_of_its_own_is_not_joined() {
    let tmp = tempfile::tempdir().unwrap();
    let member = NodeProc::start(&tmp.path().join("n1"), &[]);
    let other = NodeProc::start(&tmp.path().join("n2"), &[]);
    keyed(
        std::slice::from_ref(&other.addr),
        "p",
        None,
        ReadMode::Linearizable,
    )
    .auth_enable(EnableRequest {
        bootstrap_token: bootstrap(&other),
        ..Default::default()
    })
    .await
    .unwrap();
    // Asked through the API, with an id, the cluster asks the node itself.
    let refused = keyed(
        std::slice::from_ref(&member.addr),
        "p",
        None,
        ReadMode::Linearizable,
    )
    .cluster_join(aide::grpc::pb::cluster::JoinRequest {
        node_id: 2,
        address: other.addr.clone(),
        itself: false,
    })
    .await
    .expect_err("a node with keys of its own joined");
    assert!(
        refused.message.contains("is not empty") && refused.message.contains("API keys of its own"),
        "{}",
        refused.message
    );
    // The CLI asks the node for its id first, with --node-id or without, and says the same.
    for args in [vec!["--node-id", "2"], vec![]] {
        let mut join = vec!["cluster", "join", other.addr.as_str()];
        join.extend(args);
        let refused = cli(&member.addr, &join);
        assert!(!refused.ok, "a node with keys of its own joined");
        assert!(
            refused.stderr.contains("is not empty")
                && refused.stderr.contains("API key of its own"),
            "{}",
            refused.stderr
        );
    }
    let members = cli(&member.addr, &["cluster", "members", "--format", "json"]).json();
    assert_eq!(members["members"].as_array().unwrap().len(), 1, "{members}");
}
