//! A client generated from SPEC.md 1.1 alone (tests/proto/spec_client.proto: its own message
//! names, the spec's package, services, RPCs and field numbers) works against a node.

mod common;

#[allow(clippy::all, dead_code)]
mod spec {
    include!(concat!(env!("OUT_DIR"), "/spec_client/aidememory.rs"));
}

use common::NodeProc;
use spec::*;
use tokio_stream::StreamExt;

#[tokio::test]
async fn a_client_built_from_the_spec_alone_works() {
    let tmp = tempfile::tempdir().unwrap();
    let node = NodeProc::start(&tmp.path().join("n1"), &[]);
    let channel = aide::raft::network::channel(&node.addr).unwrap();
    let mut mem = memory_service_client::MemoryServiceClient::new(channel.clone());
    let mut st = state_service_client::StateServiceClient::new(channel.clone());
    let mut dec = decision_service_client::DecisionServiceClient::new(channel.clone());
    let mut msg = message_service_client::MessageServiceClient::new(channel.clone());
    let mut task = task_service_client::TaskServiceClient::new(channel.clone());
    let mut health = health_service_client::HealthServiceClient::new(channel.clone());
    let mut swarm = swarm_service_client::SwarmServiceClient::new(channel);

    common::wait_healthy(&node.addr).await;
    let h = health.check(Nothing {}).await.unwrap().into_inner();
    assert!(h.healthy && !h.version.is_empty());

    let m = mem
        .add(AddIn {
            content: "spec clients interoperate".into(),
            category: "discovery".into(),
            tags: vec!["compat".into()],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .memory
        .unwrap();
    assert_eq!(m.category, "discovery");
    assert_eq!(
        mem.get(ById { id: m.id.clone() })
            .await
            .unwrap()
            .into_inner()
            .memory
            .unwrap()
            .content,
        m.content
    );
    let found = mem
        .search(SearchIn {
            query: "interoperate".into(),
            limit: 5,
            category: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(found.memories.len(), 1);
    assert_eq!(
        mem.list(ListIn {
            category: "discovery".into(),
            limit: 0
        })
        .await
        .unwrap()
        .into_inner()
        .memories
        .len(),
        1
    );
    assert_eq!(
        mem.touch(TouchIn {
            ids: vec![m.id.clone()]
        })
        .await
        .unwrap()
        .into_inner()
        .touched,
        1
    );

    let s = st
        .set(StateSetIn {
            key: "k".into(),
            value: "v".into(),
            agent_id: "a".into(),
            updated_at: None,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(s.state.unwrap().key, "agent:a:k");
    let g = st
        .get(StateGetIn {
            key: "k".into(),
            agent_id: "a".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(g.found);
    assert_eq!(
        st.list(AgentIn {
            agent_id: "a".into()
        })
        .await
        .unwrap()
        .into_inner()
        .states
        .len(),
        1
    );

    dec.set(DecisionIn {
        topic: "t".into(),
        decision: "one".into(),
        precedence: Some(2),
        ..Default::default()
    })
    .await
    .unwrap();
    let d = dec
        .set(DecisionIn {
            topic: "t".into(),
            decision: "two".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(d.decision.unwrap().precedence, 2);
    assert_eq!(
        dec.history(TopicIn { topic: "t".into() })
            .await
            .unwrap()
            .into_inner()
            .decisions
            .len(),
        2
    );
    assert!(
        dec.get(TopicIn { topic: "t".into() })
            .await
            .unwrap()
            .into_inner()
            .found
    );

    let mut watch = swarm
        .watch_tasks(WatchTasksIn::default())
        .await
        .unwrap()
        .into_inner();
    let sent = msg
        .send(SendIn {
            from: "a".into(),
            to: "b".into(),
            content: "hi".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let id = sent.message.unwrap().id;
    assert!(
        msg.ack(AckIn {
            message_id: id,
            agent_id: "b".into()
        })
        .await
        .unwrap()
        .into_inner()
        .success
    );
    let listed = msg
        .list(MessagesIn {
            agent_id: "b".into(),
            include_read: true,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.messages[0].read_by, ["b"]);

    let t = task
        .create(CreateIn {
            title: "spec task".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .task
        .unwrap();
    let claim = task
        .claim(ClaimIn {
            task_id: t.id.clone(),
            agent_id: "a".into(),
            worktree: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(claim.success);
    let lost = task
        .claim(ClaimIn {
            task_id: t.id.clone(),
            agent_id: "b".into(),
            worktree: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(!lost.success && !lost.error.is_empty());
    assert!(
        task.complete(CompleteIn {
            task_id: t.id.clone(),
            result: "ok".into()
        })
        .await
        .unwrap()
        .into_inner()
        .success
    );
    let seen = tokio::time::timeout(std::time::Duration::from_secs(5), watch.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(seen.id, t.id);

    assert_eq!(mem.clear(Nothing {}).await.unwrap().into_inner().count, 1);
    assert!(
        task.delete(ById { id: t.id })
            .await
            .unwrap()
            .into_inner()
            .success
    );
}
