//! Every RPC of the public API, through gRPC, against a real node process.

mod common;

use aide::grpc::pb::aidememory::*;
use common::{reported_index, NodeProc};
use tokio_stream::StreamExt;

fn node() -> (tempfile::TempDir, NodeProc) {
    let tmp = tempfile::tempdir().unwrap();
    let node = NodeProc::start(&tmp.path().join("n1"), &[]);
    (tmp, node)
}

#[tokio::test]
async fn memory_rpcs_add_get_search_list_touch_delete_clear() {
    let (_tmp, node) = node();
    let c = node.client("mem");
    let a = c
        .memory_add(MemoryAddRequest {
            content: "Retry the payment webhook with exponential backoff".into(),
            category: "pattern".into(),
            tags: vec!["payments".into(), "scope:global".into()],
            ..Default::default()
        })
        .await
        .unwrap()
        .memory
        .unwrap();
    assert_eq!(a.id.len(), 26, "a ULID");
    assert_eq!(a.category, "pattern");
    // An import keeps its id and times.
    let imported = c
        .memory_add(MemoryAddRequest {
            content: "Imported note".into(),
            id: "01ARZ3NDEKTSV4RRFFQ69G5FAV".into(),
            created_at: Some(prost_types::Timestamp {
                seconds: 1_500_000_000,
                nanos: 0,
            }),
            ..Default::default()
        })
        .await
        .unwrap()
        .memory
        .unwrap();
    assert_eq!(imported.id, "01ARZ3NDEKTSV4RRFFQ69G5FAV");
    assert_eq!(imported.created_at.unwrap().seconds, 1_500_000_000);
    assert_eq!(imported.category, "learning", "the default category");

    let got = c
        .memory_get(MemoryGetRequest { id: a.id.clone() })
        .await
        .unwrap()
        .memory
        .unwrap();
    assert_eq!(got.content, a.content);

    let found = c
        .memory_search(MemorySearchRequest {
            query: "webhook".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(
        found.memories.iter().map(|m| &m.id).collect::<Vec<_>>(),
        [&a.id]
    );
    assert_eq!(found.scores.len(), 1);

    let listed = c
        .memory_list(MemoryListRequest::default())
        .await
        .unwrap()
        .memories;
    assert_eq!(listed.len(), 2);
    assert_eq!(listed[0].id, a.id, "newest first");
    let by_category = c
        .memory_list(MemoryListRequest {
            category: "pattern".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .memories;
    assert_eq!(by_category.len(), 1);
    let by_tag = c
        .memory_list(MemoryListRequest {
            tags: vec!["scope:global".into()],
            ..Default::default()
        })
        .await
        .unwrap()
        .memories;
    assert_eq!(by_tag.len(), 1);

    let touched = c
        .memory_touch(MemoryTouchRequest {
            ids: vec![a.id.clone(), imported.id.clone()],
        })
        .await
        .unwrap()
        .touched;
    assert_eq!(touched, 2);
    let got = c
        .memory_get(MemoryGetRequest { id: a.id.clone() })
        .await
        .unwrap()
        .memory
        .unwrap();
    assert_eq!(got.access_count, 1);
    assert!(got.last_accessed.is_some());

    assert!(
        c.memory_delete(MemoryDeleteRequest { id: a.id.clone() })
            .await
            .unwrap()
            .success
    );
    assert!(
        !c.memory_delete(MemoryDeleteRequest { id: a.id.clone() })
            .await
            .unwrap()
            .success
    );
    let gone = c
        .memory_get(MemoryGetRequest { id: a.id.clone() })
        .await
        .unwrap_err();
    assert_eq!(gone.code, tonic::Code::NotFound);
    let none = c
        .memory_search(MemorySearchRequest {
            query: "webhook".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(
        none.memories.is_empty(),
        "a deleted memory is not found by search"
    );
    assert_eq!(
        c.memory_clear(MemoryClearRequest {}).await.unwrap().count,
        1
    );
}

#[tokio::test]
async fn state_rpcs_set_get_list_delete_clear_cleanup() {
    let (_tmp, node) = node();
    let c = node.client("st");
    let s = c
        .state_set(StateSetRequest {
            key: "phase".into(),
            value: "build".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .state
        .unwrap();
    assert_eq!(
        (s.key.as_str(), s.value.as_str(), s.agent.as_str()),
        ("phase", "build", "")
    );
    let scoped = c
        .state_set(StateSetRequest {
            key: "phase".into(),
            value: "test".into(),
            agent_id: "worker-1".into(),
            updated_at: Some(prost_types::Timestamp {
                seconds: 1_000,
                nanos: 0,
            }),
        })
        .await
        .unwrap()
        .state
        .unwrap();
    assert_eq!(scoped.key, "agent:worker-1:phase");
    assert_eq!(scoped.agent, "worker-1");

    let g = c
        .state_get(StateGetRequest {
            key: "phase".into(),
            agent_id: "worker-1".into(),
        })
        .await
        .unwrap();
    assert!(g.found);
    assert_eq!(g.state.unwrap().value, "test");
    let missing = c
        .state_get(StateGetRequest {
            key: "nope".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(
        !missing.found,
        "an unknown key is found=false, not an error"
    );

    assert_eq!(
        c.state_list(StateListRequest::default())
            .await
            .unwrap()
            .states
            .len(),
        2
    );
    assert_eq!(
        c.state_list(StateListRequest {
            agent_id: "worker-1".into()
        })
        .await
        .unwrap()
        .states
        .len(),
        1
    );
    // The agent-scoped key was last updated in 1970: an hour's cleanup removes it only.
    assert_eq!(
        c.state_cleanup(StateCleanupRequest {
            max_age: "1h".into()
        })
        .await
        .unwrap()
        .count,
        1
    );
    assert!(
        c.state_delete(StateDeleteRequest {
            key: "phase".into()
        })
        .await
        .unwrap()
        .success
    );
    assert!(
        !c.state_delete(StateDeleteRequest {
            key: "phase".into()
        })
        .await
        .unwrap()
        .success
    );
    c.state_set(StateSetRequest {
        key: "a".into(),
        value: "1".into(),
        agent_id: "x".into(),
        ..Default::default()
    })
    .await
    .unwrap();
    c.state_set(StateSetRequest {
        key: "b".into(),
        value: "2".into(),
        ..Default::default()
    })
    .await
    .unwrap();
    assert_eq!(
        c.state_clear(StateClearRequest {
            agent_id: "x".into()
        })
        .await
        .unwrap()
        .count,
        1
    );
    assert_eq!(
        c.state_clear(StateClearRequest::default())
            .await
            .unwrap()
            .count,
        1
    );
}

#[tokio::test]
async fn decision_rpcs_set_get_list_history_delete_clear() {
    let (_tmp, node) = node();
    let c = node.client("dec");
    let first = c
        .decision_set(DecisionSetRequest {
            topic: "storage".into(),
            decision: "sled".into(),
            rationale: "embedded".into(),
            details: "one file tree per node".into(),
            references: vec!["https://sled.rs".into()],
            decided_by: "alice".into(),
            precedence: Some(3),
            created_at: None,
        })
        .await
        .unwrap()
        .decision
        .unwrap();
    assert_eq!(first.precedence, 3);
    let second = c
        .decision_set(DecisionSetRequest {
            topic: "storage".into(),
            decision: "sled 0.34".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .decision
        .unwrap();
    assert_eq!(second.precedence, 3, "carried forward");
    c.decision_set(DecisionSetRequest {
        topic: "api".into(),
        decision: "gRPC".into(),
        ..Default::default()
    })
    .await
    .unwrap();

    let g = c
        .decision_get(DecisionGetRequest {
            topic: "storage".into(),
        })
        .await
        .unwrap();
    assert!(g.found);
    assert_eq!(g.decision.unwrap().decision, "sled 0.34");
    assert!(
        !c.decision_get(DecisionGetRequest {
            topic: "nope".into()
        })
        .await
        .unwrap()
        .found
    );
    let h = c
        .decision_history(DecisionHistoryRequest {
            topic: "storage".into(),
        })
        .await
        .unwrap()
        .decisions;
    assert_eq!(
        h.iter().map(|d| d.decision.as_str()).collect::<Vec<_>>(),
        ["sled", "sled 0.34"]
    );
    assert_eq!(h[0].references, ["https://sled.rs"]);
    let l = c
        .decision_list(DecisionListRequest {})
        .await
        .unwrap()
        .decisions;
    assert_eq!(
        l.iter().map(|d| d.topic.as_str()).collect::<Vec<_>>(),
        ["api", "storage"]
    );
    assert_eq!(
        c.decision_delete(DecisionDeleteRequest {
            topic: "storage".into()
        })
        .await
        .unwrap()
        .count,
        2
    );
    assert_eq!(
        c.decision_clear(DecisionClearRequest {})
            .await
            .unwrap()
            .count,
        1
    );
}

#[tokio::test]
async fn message_rpcs_send_list_ack_prune() {
    let (_tmp, node) = node();
    let c = node.client("msg");
    let send = |to: &str, content: &str| MessageSendRequest {
        from: "lead".into(),
        to: to.into(),
        content: content.into(),
        r#type: "info".into(),
        ..Default::default()
    };
    let b = c
        .message_send(send("", "all hands"))
        .await
        .unwrap()
        .message
        .unwrap();
    let d = c
        .message_send(send("w1", "you take auth"))
        .await
        .unwrap()
        .message
        .unwrap();
    c.message_send(send("w2", "you take billing"))
        .await
        .unwrap();
    assert!(d.id > b.id, "ids increase");
    let exp = d.expires_at.unwrap().seconds - d.created_at.unwrap().seconds;
    assert_eq!(exp, 3600, "the default TTL is an hour");

    let w1 = c
        .message_list(MessageListRequest {
            agent_id: "w1".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(
        w1.messages.iter().map(|m| m.id).collect::<Vec<_>>(),
        [b.id, d.id]
    );
    assert!(
        c.message_ack(MessageAckRequest {
            message_id: d.id,
            agent_id: "w1".into()
        })
        .await
        .unwrap()
        .success
    );
    assert!(
        c.message_ack(MessageAckRequest {
            message_id: d.id,
            agent_id: "w1".into()
        })
        .await
        .unwrap()
        .success
    );
    let unread = c
        .message_list(MessageListRequest {
            agent_id: "w1".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(unread.messages.len(), 1);
    let all = c
        .message_list(MessageListRequest {
            agent_id: "w1".into(),
            include_read: true,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(all.messages[1].read_by, ["w1"]);
    assert!(
        !c.message_ack(MessageAckRequest {
            message_id: 999,
            agent_id: "w1".into()
        })
        .await
        .unwrap()
        .success
    );

    // A message that expires at once is never listed, and prune removes it.
    c.message_send(MessageSendRequest {
        ttl_seconds: 1,
        ..send("", "short-lived")
    })
    .await
    .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let listed = c
            .message_list(MessageListRequest::default())
            .await
            .unwrap()
            .messages;
        if listed.iter().all(|m| m.content != "short-lived") {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the message never expired"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(
        c.message_prune(MessagePruneRequest {}).await.unwrap().count,
        1
    );
}

#[tokio::test]
async fn task_rpcs_create_get_list_claim_complete_update_delete_clear() {
    let (_tmp, node) = node();
    let c = node.client("tasks");
    let t = c
        .task_create(TaskCreateRequest {
            title: "port the parser".into(),
            description: "to nom".into(),
            parent_session_id: "s1".into(),
        })
        .await
        .unwrap()
        .task
        .unwrap();
    assert_eq!(t.status, "pending");
    let g = c
        .task_get(TaskGetRequest { id: t.id.clone() })
        .await
        .unwrap();
    assert!(g.found);
    assert!(
        !c.task_get(TaskGetRequest { id: "nope".into() })
            .await
            .unwrap()
            .found
    );

    let won = c
        .task_claim(TaskClaimRequest {
            task_id: t.id.clone(),
            agent_id: "w1".into(),
            worktree: "/wt/1".into(),
        })
        .await
        .unwrap();
    assert!(won.success);
    assert_eq!(won.task.as_ref().unwrap().claimed_by, "w1");
    let lost = c
        .task_claim(TaskClaimRequest {
            task_id: t.id.clone(),
            agent_id: "w2".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(!lost.success, "a lost claim is success=false");
    assert!(lost.error.contains("w1"), "{}", lost.error);

    let claimed = c
        .task_list(TaskListRequest {
            status: "claimed".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(claimed.tasks.len(), 1);
    let done = c
        .task_complete(TaskCompleteRequest {
            task_id: t.id.clone(),
            result: "merged".into(),
        })
        .await
        .unwrap();
    assert!(done.success);
    assert_eq!(done.task.unwrap().status, "done");
    let upd = c
        .task_update(TaskUpdateRequest {
            task_id: t.id.clone(),
            status: "blocked".into(),
            result: String::new(),
        })
        .await
        .unwrap();
    assert_eq!(upd.task.unwrap().status, "blocked");
    let unknown = c
        .task_claim(TaskClaimRequest {
            task_id: "nope".into(),
            agent_id: "w".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(unknown.code, tonic::Code::NotFound);
    let by_session = c
        .task_list(TaskListRequest {
            parent_session_id: "s1".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(by_session.tasks.len(), 1);
    assert!(
        c.task_delete(TaskDeleteRequest { id: t.id.clone() })
            .await
            .unwrap()
            .success
    );
    c.task_create(TaskCreateRequest {
        title: "a".into(),
        ..Default::default()
    })
    .await
    .unwrap();
    assert_eq!(
        c.task_clear(TaskClearRequest {
            status: "pending".into()
        })
        .await
        .unwrap()
        .count,
        1
    );
}

#[tokio::test]
async fn health_reports_version_and_store() {
    let (_tmp, node) = node();
    common::wait_healthy(&node.addr).await;
    let h = node
        .client("default")
        .health(HealthCheckRequest {})
        .await
        .unwrap();
    assert!(h.healthy);
    assert_eq!(h.version, env!("CARGO_PKG_VERSION"));
    assert_eq!(h.db_path, node.dir.display().to_string());
    assert_eq!(h.pid, i64::from(node.pid()));
    assert!(h.started_at_unix > 1_700_000_000);
}

#[tokio::test]
async fn projects_never_see_each_others_data() {
    let (_tmp, node) = node();
    let a = node.client("alpha");
    let b = node.client("beta");
    a.memory_add(MemoryAddRequest {
        content: "alpha secret roadmap".into(),
        ..Default::default()
    })
    .await
    .unwrap();
    a.state_set(StateSetRequest {
        key: "k".into(),
        value: "a".into(),
        ..Default::default()
    })
    .await
    .unwrap();
    a.task_create(TaskCreateRequest {
        title: "alpha task".into(),
        ..Default::default()
    })
    .await
    .unwrap();
    assert!(b
        .memory_list(MemoryListRequest::default())
        .await
        .unwrap()
        .memories
        .is_empty());
    let search = b
        .memory_search(MemorySearchRequest {
            query: "roadmap".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(search.memories.is_empty());
    assert!(
        !b.state_get(StateGetRequest {
            key: "k".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .found
    );
    assert!(b
        .task_list(TaskListRequest::default())
        .await
        .unwrap()
        .tasks
        .is_empty());
    assert_eq!(
        b.memory_clear(MemoryClearRequest {}).await.unwrap().count,
        0
    );
    assert_eq!(
        a.memory_list(MemoryListRequest::default())
            .await
            .unwrap()
            .memories
            .len(),
        1
    );
}

#[tokio::test]
async fn a_write_sent_twice_with_one_request_id_applies_once() {
    let (_tmp, node) = node();
    let channel = aide::raft::network::channel(&node.addr).unwrap();
    let mut raw = message_service_client::MessageServiceClient::new(channel);
    let send = || {
        let mut r = tonic::Request::new(MessageSendRequest {
            from: "a".into(),
            content: "once".into(),
            ..Default::default()
        });
        r.metadata_mut()
            .insert("x-aide-request-id", "retry-me-1".parse().unwrap());
        r
    };
    let first = raw.send(send()).await.unwrap();
    let second = raw.send(send()).await.unwrap();
    assert_eq!(
        first.get_ref().message,
        second.get_ref().message,
        "the retry gets the first answer"
    );
    let listed = node
        .client("default")
        .message_list(MessageListRequest::default())
        .await
        .unwrap();
    assert_eq!(listed.messages.len(), 1, "and the message exists once");
    let index = reported_index(first.metadata());
    assert!(index > 0, "responses carry the applied index");
}

#[tokio::test]
async fn every_response_reports_the_applied_index() {
    let (_tmp, node) = node();
    let written = node
        .client("p")
        .state_set(StateSetRequest {
            key: "k".into(),
            value: "v".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(written.state.is_some());
    let channel = aide::raft::network::channel(&node.addr).unwrap();
    let after_write = {
        let mut raw = state_service_client::StateServiceClient::new(channel.clone());
        let got = raw
            .get(StateGetRequest {
                key: "k".into(),
                ..Default::default()
            })
            .await
            .unwrap();
        reported_index(got.metadata())
    };
    assert!(after_write > 0);
    // Calls that are not reads of the data report it too: health, cluster status, a watch.
    let mut health = health_service_client::HealthServiceClient::new(channel.clone());
    let checked = health.check(HealthCheckRequest {}).await.unwrap();
    assert!(reported_index(checked.metadata()) >= after_write);
    let mut cluster =
        aide::grpc::pb::cluster::cluster_service_client::ClusterServiceClient::new(channel.clone());
    let status = cluster
        .status(aide::grpc::pb::cluster::StatusRequest {})
        .await
        .unwrap();
    assert!(reported_index(status.metadata()) >= after_write);
    let mut swarm = swarm_service_client::SwarmServiceClient::new(channel.clone());
    let watch = swarm
        .watch_tasks(WatchTasksRequest::default())
        .await
        .unwrap();
    assert!(reported_index(watch.metadata()) >= after_write);
    // And so does a refusal.
    let mut raw = state_service_client::StateServiceClient::new(channel);
    let err = raw
        .get(StateGetRequest {
            key: String::new(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err:?}");
    assert!(reported_index(err.metadata()) >= after_write);
}

#[tokio::test]
async fn watch_streams_deliver_task_message_and_state_changes() {
    let (_tmp, node) = node();
    let c = node.client("swarm");
    let channel = aide::raft::network::channel(&node.addr).unwrap();
    let mut swarm = swarm_service_client::SwarmServiceClient::new(channel);
    let mut tasks = swarm
        .watch_tasks(with_project(WatchTasksRequest::default()))
        .await
        .unwrap()
        .into_inner();
    let mut msgs = swarm
        .watch_messages(with_project(WatchMessagesRequest {
            agent_id: "w1".into(),
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner();
    let mut states = swarm
        .watch_state(with_project(WatchStateRequest {
            key_prefix: "build.".into(),
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner();

    let t = c
        .task_create(TaskCreateRequest {
            title: "watched".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .task
        .unwrap();
    c.task_claim(TaskClaimRequest {
        task_id: t.id.clone(),
        agent_id: "w1".into(),
        ..Default::default()
    })
    .await
    .unwrap();
    c.message_send(MessageSendRequest {
        from: "x".into(),
        to: "w2".into(),
        content: "not for w1".into(),
        ..Default::default()
    })
    .await
    .unwrap();
    c.message_send(MessageSendRequest {
        from: "x".into(),
        to: "w1".into(),
        content: "for w1".into(),
        ..Default::default()
    })
    .await
    .unwrap();
    c.state_set(StateSetRequest {
        key: "other".into(),
        value: "1".into(),
        ..Default::default()
    })
    .await
    .unwrap();
    c.state_set(StateSetRequest {
        key: "build.step".into(),
        value: "2".into(),
        ..Default::default()
    })
    .await
    .unwrap();
    c.state_delete(StateDeleteRequest {
        key: "build.step".into(),
    })
    .await
    .unwrap();

    let created = within(tasks.next()).await.unwrap().unwrap();
    let claimed = within(tasks.next()).await.unwrap().unwrap();
    assert_eq!(
        (created.status.as_str(), claimed.status.as_str()),
        ("pending", "claimed")
    );
    let m = within(msgs.next()).await.unwrap().unwrap();
    assert_eq!(
        m.content, "for w1",
        "a message to another agent is filtered out"
    );
    let set = within(states.next()).await.unwrap().unwrap();
    let del = within(states.next()).await.unwrap().unwrap();
    assert_eq!(
        (set.change.as_str(), del.change.as_str()),
        ("set", "delete")
    );
    assert_eq!(set.state.unwrap().key, "build.step");
}

fn with_project<T>(m: T) -> tonic::Request<T> {
    let mut r = tonic::Request::new(m);
    r.metadata_mut()
        .insert("x-aide-project", "swarm".parse().unwrap());
    r
}

async fn within<F: std::future::Future>(f: F) -> F::Output {
    tokio::time::timeout(std::time::Duration::from_secs(5), f)
        .await
        .expect("no change arrived within 5 s")
}
