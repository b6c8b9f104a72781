//! Many agents claiming one task at the same time: exactly one wins.

mod common;

use aide::grpc::pb::aidememory::*;
use common::NodeProc;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_claims_have_exactly_one_winner() {
    let tmp = tempfile::tempdir().unwrap();
    let node = NodeProc::start(&tmp.path().join("n1"), &[]);
    for round in 0..3 {
        let c = node.client("swarm");
        let task = c
            .task_create(TaskCreateRequest {
                title: format!("contested {round}"),
                ..Default::default()
            })
            .await
            .unwrap()
            .task
            .unwrap();
        let claims = (0..64).map(|i| {
            // Each agent has its own connection, as separate processes would.
            let c = node.client("swarm");
            let id = task.id.clone();
            tokio::spawn(async move {
                let r = c
                    .task_claim(TaskClaimRequest {
                        task_id: id,
                        agent_id: format!("agent-{i}"),
                        ..Default::default()
                    })
                    .await
                    .unwrap();
                (format!("agent-{i}"), r)
            })
        });
        let results = futures::future::join_all(claims).await;
        let winners: Vec<String> = results
            .iter()
            .map(|r| r.as_ref().unwrap())
            .filter(|(_, r)| r.success)
            .map(|(a, _)| a.clone())
            .collect();
        assert_eq!(winners.len(), 1, "round {round}: winners {winners:?}");
        for (_, r) in results
            .iter()
            .map(|r| r.as_ref().unwrap())
            .filter(|(_, r)| !r.success)
        {
            assert_eq!(r.error, format!("task already claimed by {}", winners[0]));
        }
        let stored = c
            .task_get(TaskGetRequest { id: task.id })
            .await
            .unwrap()
            .task
            .unwrap();
        assert_eq!(stored.claimed_by, winners[0]);
    }
}
