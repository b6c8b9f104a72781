//! Group commit on a cluster: writers that each write again as soon as they are answered share
//! one Raft entry per round, not two (a test binary of its own, so that no other test's nodes
//! compete for the CPU while the writers come back).

mod common;

use aide::client::ReadMode;
use aide::grpc::pb::aidememory::StateSetRequest;
use common::cluster::Cluster;
use std::collections::BTreeSet;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writers_that_write_again_at_once_share_one_entry_per_round() {
    const WRITERS: usize = 4;
    const ROUNDS: usize = 30;
    // The leader holds a proposal up to 3 ms for its cohort; a debug build on a slow machine
    // takes longer than that to answer four writers and read their next calls, so here it
    // may hold for 200 ms: what is checked is that it holds, not how fast the writers are.
    let mut c = Cluster::start(3, &["--failpoints", "--cohort-wait-ms", "200"]).await;
    let leader = c.leader().await;
    let writers = (0..WRITERS).map(|w| {
        // Each writer has its own connection to the leader, as separate agents would.
        let client = c.client(leader, "p", ReadMode::Linearizable);
        tokio::spawn(async move {
            let mut indexes = Vec::new();
            for round in 0..ROUNDS {
                client
                    .state_set(StateSetRequest {
                        key: format!("w{w}"),
                        value: format!("round {round}"),
                        ..Default::default()
                    })
                    .await
                    .unwrap();
                indexes.push(client.last_index());
            }
            indexes
        })
    });
    let mut entries = BTreeSet::new();
    for w in futures::future::join_all(writers).await {
        entries.extend(w.unwrap());
    }
    // The count, for `cargo test --test group_commit -- --nocapture` (docs/performance.md).
    println!("{} entries for {ROUNDS} rounds", entries.len());
    // Every round needs an entry; without the leader holding a proposal back for the rest of
    // its cohort, the writers split into two groups taking turns: two entries a round. (A
    // round whose last writer comes back after the wait also takes two, so the bound is
    // halfway between.)
    assert!(
        entries.len() <= ROUNDS * 3 / 2,
        "{WRITERS} writers' {} writes took {} entries; about one per round ({ROUNDS}) was expected",
        WRITERS * ROUNDS,
        entries.len()
    );
    // And each writer's last value is there.
    let r = c.client(leader, "p", ReadMode::Linearizable);
    for w in 0..WRITERS {
        let got = r
            .state_get(aide::grpc::pb::aidememory::StateGetRequest {
                key: format!("w{w}"),
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(
            got.state.map(|s| s.value).as_deref(),
            Some(format!("round {}", ROUNDS - 1).as_str())
        );
    }
}
