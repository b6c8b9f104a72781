//! Crash safety: every acknowledged write survives SIGKILL of the node process and a restart
//! on the same directory, SIGKILL of every node of a cluster during heavy writes loses none
//! either (and a leader that leads again after it reads what it acknowledged last), and a
//! clean SIGTERM shutdown stops the node with everything kept.

mod common;

use aide::client::{Client, ClientConfig, ReadMode};
use aide::grpc::pb::aidememory::*;
use aide::grpc::pb::cluster::StatusRequest;
use common::cluster::Cluster;
use common::{client_for, NodeProc};
use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_writes_survive_sigkill() {
    let tmp = tempfile::tempdir().unwrap();
    let mut node = NodeProc::start(&tmp.path().join("n1"), &[]);
    let c = node.client("crash");

    // Concurrent writers of every kind; remember what was acknowledged.
    let mut writers = Vec::new();
    for w in 0..8 {
        let c = c.clone();
        writers.push(tokio::spawn(async move {
            let mut acked = Vec::new();
            for i in 0..25 {
                let word = format!("zeta{w}x{i}");
                let m = c
                    .memory_add(MemoryAddRequest {
                        content: format!("crash note {word}"),
                        ..Default::default()
                    })
                    .await
                    .unwrap()
                    .memory
                    .unwrap();
                c.state_set(StateSetRequest {
                    key: format!("k{w}-{i}"),
                    value: word.clone(),
                    ..Default::default()
                })
                .await
                .unwrap();
                acked.push((m.id, word));
            }
            acked
        }));
    }
    let mut acked = Vec::new();
    for w in writers {
        acked.extend(w.await.unwrap());
    }
    c.decision_set(DecisionSetRequest {
        topic: "t".into(),
        decision: "kept".into(),
        ..Default::default()
    })
    .await
    .unwrap();
    let msg = c
        .message_send(MessageSendRequest {
            from: "a".into(),
            content: "kept".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .message
        .unwrap();
    let task = c
        .task_create(TaskCreateRequest {
            title: "kept".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .task
        .unwrap();
    c.task_claim(TaskClaimRequest {
        task_id: task.id.clone(),
        agent_id: "w".into(),
        ..Default::default()
    })
    .await
    .unwrap();

    node.kill();
    node.restart();
    let c = node.client("crash");

    let ids: BTreeSet<String> = c
        .memory_list(MemoryListRequest {
            limit: 1000,
            ..Default::default()
        })
        .await
        .unwrap()
        .memories
        .into_iter()
        .map(|m| m.id)
        .collect();
    for (id, word) in &acked {
        assert!(ids.contains(id), "memory {id} lost");
        let hits = c
            .memory_search(MemorySearchRequest {
                query: word.clone(),
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(
            hits.memories.first().map(|m| &m.id),
            Some(id),
            "search lost {word}"
        );
    }
    assert_eq!(ids.len(), acked.len());
    let states = c
        .state_list(StateListRequest::default())
        .await
        .unwrap()
        .states;
    assert_eq!(states.len(), acked.len());
    assert!(
        c.decision_get(DecisionGetRequest { topic: "t".into() })
            .await
            .unwrap()
            .found
    );
    let msgs = c
        .message_list(MessageListRequest::default())
        .await
        .unwrap()
        .messages;
    assert_eq!(msgs.iter().map(|m| m.id).collect::<Vec<_>>(), [msg.id]);
    let t = c
        .task_get(TaskGetRequest { id: task.id })
        .await
        .unwrap()
        .task
        .unwrap();
    assert_eq!((t.status.as_str(), t.claimed_by.as_str()), ("claimed", "w"));
    // Ids keep increasing after the restart.
    let next = c
        .message_send(MessageSendRequest {
            from: "a".into(),
            content: "after".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .message
        .unwrap();
    assert!(next.id > msg.id);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kill_during_writes_loses_no_acknowledged_write() {
    let tmp = tempfile::tempdir().unwrap();
    let mut node = NodeProc::start(&tmp.path().join("n1"), &[]);
    let c = node.client("inflight");
    let acked = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let mut writers = Vec::new();
    for w in 0..4 {
        let (c, acked) = (c.clone(), acked.clone());
        writers.push(tokio::spawn(async move {
            for i in 0.. {
                let key = format!("w{w}-{i}");
                match c
                    .state_set(StateSetRequest {
                        key: key.clone(),
                        value: "v".into(),
                        ..Default::default()
                    })
                    .await
                {
                    Ok(_) => acked.lock().unwrap().push(key),
                    Err(_) => return,
                }
            }
        }));
    }
    // Kill once a good number of writes were acknowledged.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while acked.lock().unwrap().len() < 200 {
        assert!(std::time::Instant::now() < deadline, "writes too slow");
        tokio::task::yield_now().await;
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    node.kill();
    for w in writers {
        w.await.unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    node.restart();
    let stored = state_keys(&node.client("inflight")).await;
    assert_none_lost("state writes", &acked, &stored);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_stops_cleanly_and_keeps_everything() {
    let tmp = tempfile::tempdir().unwrap();
    let mut node = NodeProc::start(&tmp.path().join("n1"), &[]);
    let c = node.client("term");
    c.memory_add(MemoryAddRequest {
        content: "graceful shutdown keeps the index".into(),
        ..Default::default()
    })
    .await
    .unwrap();
    assert!(
        node.terminate(),
        "aide serve exits with status 0 on SIGTERM"
    );
    assert!(node.log_text().contains("node stopped"));
    node.restart();
    let hits = node
        .client("term")
        .memory_search(MemorySearchRequest {
            query: "graceful".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(hits.memories.len(), 1);
    let rebuilt = node.log_text().matches("search index rebuilt").count();
    assert_eq!(
        rebuilt, 1,
        "only the first start built the index; a clean stop left it current"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kill_of_every_node_during_heavy_writes_loses_no_acknowledged_write() {
    let mut cluster = Cluster::start(3, &[]).await;
    let client = Client::new(ClientConfig {
        endpoints: cluster.addrs(),
        project: Some("all".into()),
        timeout: Duration::from_secs(2),
        ..Default::default()
    })
    .unwrap();
    let acked_keys = Arc::new(Mutex::new(Vec::new()));
    let acked_memories = Arc::new(Mutex::new(Vec::new()));
    let mut writers = Vec::new();
    for w in 0..16 {
        let (c, keys, memories) = (client.clone(), acked_keys.clone(), acked_memories.clone());
        writers.push(tokio::spawn(async move {
            for i in 0.. {
                let r = if i % 4 == 3 {
                    c.memory_add(MemoryAddRequest {
                        content: format!("heavy write w{w}i{i}"),
                        ..Default::default()
                    })
                    .await
                    .map(|r| memories.lock().unwrap().push(r.memory.unwrap().id))
                } else {
                    let key = format!("w{w}-{i}");
                    c.state_set(StateSetRequest {
                        key: key.clone(),
                        value: format!("value {i}"),
                        ..Default::default()
                    })
                    .await
                    .map(|_| keys.lock().unwrap().push(key))
                };
                if r.is_err() {
                    return;
                }
            }
        }));
    }
    // Every node is killed, at once, while the writers are at full speed.
    let deadline = Instant::now() + Duration::from_secs(60);
    while acked_keys.lock().unwrap().len() < 600 {
        assert!(Instant::now() < deadline, "writes too slow");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    kill_every_node(&mut cluster);
    for w in writers {
        w.await.unwrap();
    }
    let keys = acked_keys.lock().unwrap().clone();
    let memories = acked_memories.lock().unwrap().clone();

    // Every store opens again, and the cluster has everything it acknowledged.
    for n in cluster.nodes.iter_mut() {
        n.restart();
    }
    cluster.wait_voters(3).await;
    let c = client_for(&cluster.addrs(), "all", ReadMode::Linearizable);
    assert_none_lost("state writes", &keys, &state_keys(&c).await);
    let ids: BTreeSet<String> = c
        .memory_list(MemoryListRequest {
            limit: 100_000,
            ..Default::default()
        })
        .await
        .unwrap()
        .memories
        .into_iter()
        .map(|m| m.id)
        .collect();
    assert_none_lost("memories", &memories, &ids);
    // Every node has it, not just the leader.
    let last = cluster.leader().await;
    let index = cluster
        .client(last, "all", ReadMode::Stale)
        .cluster_status(StatusRequest {})
        .await
        .unwrap()
        .nodes
        .iter()
        .map(|n| n.applied_index)
        .max()
        .unwrap();
    cluster.wait_applied(index).await;
    for i in 0..3 {
        let n = cluster
            .client(i, "all", ReadMode::Stale)
            .state_list(StateListRequest::default())
            .await
            .unwrap()
            .states
            .len();
        assert!(n >= keys.len(), "node {i} holds {n} keys of {}", keys.len());
    }
}

/// SIGKILL to every node of `cluster` at once (one `kill` call), then each reaped.
fn kill_every_node(cluster: &mut Cluster) {
    let pids: Vec<String> = cluster.nodes.iter().map(|n| n.pid().to_string()).collect();
    std::process::Command::new("kill")
        .arg("-KILL")
        .args(&pids)
        .status()
        .unwrap();
    for n in cluster.nodes.iter_mut() {
        n.kill();
    }
}

/// The state keys `c` lists.
async fn state_keys(c: &Client) -> BTreeSet<String> {
    c.state_list(StateListRequest::default())
        .await
        .unwrap()
        .states
        .into_iter()
        .map(|s| s.key)
        .collect()
}

/// Fails naming (some of) the acknowledged `what` missing from `stored`.
fn assert_none_lost<'a>(
    what: &str,
    acked: impl IntoIterator<Item = &'a String>,
    stored: &BTreeSet<String>,
) {
    let acked: Vec<&String> = acked.into_iter().collect();
    let lost: Vec<&&String> = acked.iter().filter(|k| !stored.contains(**k)).collect();
    assert!(
        lost.is_empty(),
        "{} of {} acknowledged {what} lost, e.g. {:?}",
        lost.len(),
        acked.len(),
        &lost[..lost.len().min(5)]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_restarted_with_every_node_reads_the_last_write_it_acknowledged() {
    let mut cluster = Cluster::start(3, &[]).await;
    let leader = cluster.leader().await;
    let w = cluster.client(leader, "p", ReadMode::Linearizable);
    let set = |value: String| StateSetRequest {
        key: "k".into(),
        value,
        ..Default::default()
    };
    for i in 0..20 {
        w.state_set(set(format!("value {i}"))).await.unwrap();
    }
    // The last write is acknowledged, and at once every node is killed: the commit index each
    // node last saved (not flushed) is likely older than that write.
    w.state_set(set("the last".into())).await.unwrap();
    kill_every_node(&mut cluster);
    // The leader first: by the vote it saved, it leads again at once, without an election.
    cluster.nodes[leader].restart();
    for i in (0..3).filter(|&i| i != leader) {
        cluster.nodes[i].restart();
    }
    let r = cluster.client(leader, "p", ReadMode::Linearizable);
    let got = r
        .state_get(StateGetRequest {
            key: "k".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .state
        .unwrap()
        .value;
    assert_eq!(got, "the last", "a linearizable read after the restart");
}
