//! Three and more real nodes over real gRPC on loopback: replication, writes on followers, the
//! leader killed, a late joiner catching up by snapshot, leave and remove, restarts, read
//! consistency levels (linearizable reads reusing the leader's connections), read-your-writes
//! with the min-index, client failover, watch streams on followers, and the cluster CLI.

mod common;

use aide::client::ReadMode;
use aide::grpc::pb::aidememory::*;
use aide::grpc::pb::cluster::{cluster_service_client::ClusterServiceClient, StatusRequest};
use common::cluster::Cluster;
use common::{cli, cli_with_config, client_for, reported_index, wait_healthy};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio_stream::StreamExt;

fn set(key: &str, value: &str) -> StateSetRequest {
    StateSetRequest {
        key: key.into(),
        value: value.into(),
        ..Default::default()
    }
}

fn get(key: &str) -> StateGetRequest {
    StateGetRequest {
        key: key.into(),
        ..Default::default()
    }
}

async fn value_at(c: &aide::client::Client, key: &str) -> Option<String> {
    let r = c.state_get(get(key)).await.unwrap();
    r.found.then(|| r.state.unwrap().value)
}

/// The term node `i` leads in, if it leads.
async fn leading_term(c: &Cluster, i: usize) -> Option<u64> {
    let status = c
        .client(i, "p", ReadMode::Stale)
        .cluster_node_info(aide::grpc::pb::cluster::NodeInfoRequest {})
        .await
        .ok()?
        .status?;
    (status.state == "leader").then_some(status.term)
}

/// A node that leads, and its term, as that node reports them.
async fn leader_and_term(c: &mut Cluster) -> (usize, u64) {
    let deadline = Instant::now() + common::cluster::SETTLE;
    loop {
        let l = c.leader().await;
        if let Some(term) = leading_term(c, l).await {
            return (l, term);
        }
        assert!(Instant::now() < deadline, "no node kept leading");
    }
}

/// Adds a fourth node, waits until it is a voter with every entry up to `last`, checks that
/// it caught up by a snapshot, and returns its position.
async fn join_by_snapshot(c: &mut Cluster, last: u64) -> usize {
    let new = c.add_node().await;
    c.wait_voters(4).await;
    c.wait_applied(last).await;
    assert!(
        c.nodes[new].log_text().contains("installed a snapshot"),
        "the new node caught up without a snapshot; log:\n{}",
        c.nodes[new].log_text()
    );
    new
}

/// Sets key `k{n}` to `v{n}` through `w`.
async fn set_numbered(w: &aide::client::Client, n: usize) {
    w.state_set(set(&format!("k{n}"), &format!("v{n}")))
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_on_a_follower_reaches_every_node() {
    let mut c = Cluster::start(3, &[]).await;
    let f = c.follower().await;
    let w = c.client(f, "p", ReadMode::Linearizable);
    w.state_set(set("k", "from-a-follower")).await.unwrap();
    assert!(
        w.last_index() > 0,
        "a write reports the index it applied at"
    );

    // A linearizable read sees it at once, whichever node serves it.
    for i in 0..3 {
        let r = c.client(i, "p", ReadMode::Linearizable);
        assert_eq!(value_at(&r, "k").await.as_deref(), Some("from-a-follower"));
    }
    // And every node holds its own copy.
    c.wait_applied(w.last_index()).await;
    for i in 0..3 {
        let r = c.client(i, "p", ReadMode::Stale);
        assert_eq!(value_at(&r, "k").await.as_deref(), Some("from-a-follower"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_leader_loses_no_acknowledged_write() {
    let mut c = Cluster::start(3, &[]).await;
    let addrs = c.addrs();
    let acked: Arc<Mutex<BTreeMap<String, String>>> = Default::default();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));

    // Four writers, each through every endpoint, write until told to stop.
    let mut writers = Vec::new();
    for w in 0..4 {
        let client = client_for(&addrs, "p", ReadMode::Linearizable);
        let acked = acked.clone();
        let stop = stop.clone();
        writers.push(tokio::spawn(async move {
            let mut n = 0u32;
            let mut failures = 0u32;
            while !stop.load(std::sync::atomic::Ordering::SeqCst) && n < 2_000 {
                let key = format!("w{w}-{n}");
                match client.state_set(set(&key, &key)).await {
                    Ok(_) => {
                        acked.lock().unwrap().insert(key.clone(), key);
                    }
                    Err(_) => failures += 1,
                }
                n += 1;
            }
            failures
        }));
    }
    // Let some writes land, then kill the leader.
    let deadline = Instant::now() + Duration::from_secs(20);
    while acked.lock().unwrap().len() < 100 {
        assert!(Instant::now() < deadline, "no writes before the kill");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let old = c.leader().await;
    c.nodes[old].kill();
    let before_kill = acked.lock().unwrap().len();

    // A new leader is elected among the survivors and the writers go on.
    let new = c.leader().await;
    assert_ne!(new, old);
    let deadline = Instant::now() + Duration::from_secs(20);
    while acked.lock().unwrap().len() < before_kill + 100 {
        assert!(
            Instant::now() < deadline,
            "writes did not resume after the leader died"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    for w in writers {
        w.await.unwrap();
    }

    // Every acknowledged write is on the survivors.
    let acked = acked.lock().unwrap().clone();
    let survivors: Vec<String> = c.running_addrs();
    for addr in &survivors {
        let r = client_for(std::slice::from_ref(addr), "p", ReadMode::Linearizable);
        let listed = r.state_list(StateListRequest::default()).await.unwrap();
        let stored: BTreeMap<String, String> = listed
            .states
            .into_iter()
            .map(|s| (s.key, s.value))
            .collect();
        for (k, v) in &acked {
            assert_eq!(
                stored.get(k),
                Some(v),
                "acknowledged write {k} lost on {addr}"
            );
        }
    }

    // The old leader comes back as a follower and catches up.
    c.nodes[old].restart();
    let r = c.client(old, "p", ReadMode::Linearizable);
    let (k, v) = acked.iter().next_back().unwrap();
    assert_eq!(value_at(&r, k).await.as_ref(), Some(v));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_joiner_catches_up_by_snapshot_and_searches() {
    let mut c = Cluster::start(3, &["--snapshot-every", "50"]).await;
    let w = c.client(0, "p", ReadMode::Linearizable);
    for i in 0..200 {
        let content = if i == 137 {
            "The deploy pipeline needs the authentication token rotated weekly".to_string()
        } else {
            format!("Filler note number {i} about nothing in particular")
        };
        w.memory_add(MemoryAddRequest {
            content,
            category: "learning".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    }
    let last = w.last_index();
    c.wait_applied(last).await;

    let new = join_by_snapshot(&mut c, last).await;
    // Its own copy answers searches and lists.
    let r = c.client(new, "p", ReadMode::Stale);
    let found = r
        .memory_search(MemorySearchRequest {
            query: "authent".into(),
            limit: 5,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(found.memories.len(), 1);
    assert!(found.memories[0].content.contains("authentication token"));
    let listed = r
        .memory_list(MemoryListRequest {
            limit: 1000,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(listed.memories.len(), 200);
    // And it takes writes like any member.
    r.state_set(set("from-the-joiner", "yes")).await.unwrap();
    assert_eq!(
        value_at(&w, "from-the-joiner").await.as_deref(),
        Some("yes")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_go_on_while_a_snapshot_copies_the_store_and_a_joiner_gets_them_all() {
    // Each snapshot's copy of the store waits 3 s before it starts (a failpoint): a copy of a
    // large store takes that long. Writes must not wait for it.
    let mut c = Cluster::start(
        3,
        &[
            "--snapshot-every",
            "30",
            "--failpoints",
            "--snapshot-copy-delay-ms",
            "3000",
        ],
    )
    .await;
    let leader = c.leader().await;
    let w = c.client(leader, "p", ReadMode::Linearizable);
    let copying = |c: &Cluster| {
        let log = c.nodes[leader].log_text();
        log.contains("copying the store for a snapshot") && !log.contains("built a snapshot")
    };
    let mut n = 0;
    // Writes until the leader is copying its first snapshot (its 30th entry is applied).
    let deadline = Instant::now() + Duration::from_secs(20);
    while !copying(&c) {
        assert!(Instant::now() < deadline, "the leader built no snapshot");
        set_numbered(&w, n).await;
        n += 1;
    }
    // Forty more, each answered while the copy waits (the copy would hold them back if it
    // were taken with applies stopped).
    for _ in 0..40 {
        set_numbered(&w, n).await;
        n += 1;
    }
    assert!(
        copying(&c),
        "the leader's snapshot was built before 40 writes were answered: they waited for its copy"
    );
    // Once built, a snapshot holds the state at its own index: a node that joins after the
    // leader's log was cut at a second one installs it, replays the log after it, and has
    // every write.
    let built = |c: &Cluster| {
        c.nodes[leader]
            .log_text()
            .matches("built a snapshot")
            .count()
    };
    let deadline = Instant::now() + Duration::from_secs(40);
    while built(&c) < 2 {
        assert!(
            Instant::now() < deadline,
            "the leader built no second snapshot"
        );
        if copying(&c) {
            tokio::time::sleep(Duration::from_millis(50)).await;
        } else {
            set_numbered(&w, n).await;
            n += 1;
        }
    }
    let last = w.last_index();
    let new = join_by_snapshot(&mut c, last).await;
    let r = c.client(new, "p", ReadMode::Stale);
    for i in 0..n {
        assert_eq!(
            value_at(&r, &format!("k{i}")).await.as_deref(),
            Some(format!("v{i}").as_str()),
            "key k{i} on the joiner"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_saved_snapshot_older_than_the_log_is_rebuilt_and_a_joiner_still_catches_up() {
    // A node that stops between installing a leader's snapshot and saving it keeps an older
    // snapshot than its log's start (openraft refused to start on that); the window is made
    // here by putting an older snapshot back.
    let mut c = Cluster::start(1, &["--snapshot-every", "10"]).await;
    let w = c.client(0, "p", ReadMode::Linearizable);
    let built = |c: &Cluster| c.nodes[0].log_text().matches("built a snapshot").count();
    let snapshots = c.nodes[0].dir.join("snapshots");
    let copy = |from: &std::path::Path, to: &std::path::Path| {
        std::fs::create_dir_all(to).unwrap();
        for f in std::fs::read_dir(from).unwrap() {
            let f = f.unwrap();
            std::fs::copy(f.path(), to.join(f.file_name())).unwrap();
        }
    };
    let mut n = 0;
    while built(&c) < 1 {
        assert!(n < 200, "no snapshot after {n} writes");
        set_numbered(&w, n).await;
        n += 1;
    }
    let old = tempfile::tempdir().unwrap();
    copy(&snapshots, old.path());
    // Later snapshots, and the log cut past the first one.
    while built(&c) < 4 {
        assert!(n < 400, "no fourth snapshot after {n} writes");
        set_numbered(&w, n).await;
        n += 1;
    }
    assert!(c.nodes[0].terminate(), "a clean stop on SIGTERM");
    copy(old.path(), &snapshots);
    c.nodes[0].restart();
    wait_healthy(&c.nodes[0].addr).await;
    let log = c.nodes[0].log_text();
    assert!(log.contains("older than the log's start"), "{log}");

    // A node that joins gets a snapshot it can go on from, and every key.
    set_numbered(&w, n).await;
    let last = w.last_index();
    let new = c.add_node().await;
    c.wait_voters(2).await;
    c.wait_applied(last).await;
    let r = c.client(new, "p", ReadMode::Stale);
    for i in 0..=n {
        assert_eq!(
            value_at(&r, &format!("k{i}")).await.as_deref(),
            Some(format!("v{i}").as_str()),
            "key k{i} on the joiner"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remove_and_leave_keep_the_data_and_refuse_to_lose_the_quorum() {
    let mut c = Cluster::start(3, &[]).await;
    let w = client_for(&c.addrs(), "p", ReadMode::Linearizable);
    w.state_set(set("kept", "1")).await.unwrap();

    // With one follower down, removing the other would leave one of two voters: refused.
    let leader = c.leader().await;
    let followers: Vec<usize> = (0..3).filter(|&i| i != leader).collect();
    c.nodes[followers[0]].kill();
    let refused = cli(
        &c.nodes[leader].addr,
        &["cluster", "remove", &c.nodes[followers[1]].id.to_string()],
    );
    assert!(
        !refused.ok,
        "removing a live voter without a quorum left was accepted"
    );
    assert!(
        refused.stderr.contains("quorum"),
        "the refusal explains itself: {}",
        refused.stderr
    );
    // Removing the dead one is fine, and says so.
    let dead = c.nodes[followers[0]].id;
    let removed = cli(
        &c.nodes[leader].addr,
        &["cluster", "remove", &dead.to_string()],
    );
    assert_eq!(removed.out().trim(), format!("Removed node {dead}"));
    // Removing it again: it is gone, and the refusal says so.
    let again = cli(
        &c.nodes[leader].addr,
        &["cluster", "remove", &dead.to_string()],
    );
    assert!(
        !again.ok && again.stderr.contains("it left or was removed"),
        "{}",
        again.stderr
    );

    // The other follower leaves on its own. Which node leaves is the one the command talks
    // to: with several endpoints that is not clear, and the command says so.
    let leaving = followers[1];
    let both = format!("{},{}", c.nodes[leader].addr, c.nodes[leaving].addr);
    let unclear = cli(&both, &["cluster", "leave"]);
    assert!(!unclear.ok, "a leave with two endpoints was accepted");
    assert!(unclear.stderr.contains("--remote"), "{}", unclear.stderr);
    let left = cli(
        &c.nodes[leaving].addr,
        &["cluster", "leave", "--format", "json"],
    )
    .json();
    let members = left["members"].as_array().unwrap();
    assert_eq!(members.len(), 1, "{left}");
    assert_eq!(members[0]["node_id"], c.nodes[leader].id);
    assert_eq!(left["node_id"], c.nodes[leaving].id, "{left}");

    // The one node left has everything and still takes writes alone.
    let r = c.client(leader, "p", ReadMode::Linearizable);
    assert_eq!(value_at(&r, "kept").await.as_deref(), Some("1"));
    r.state_set(set("after", "2")).await.unwrap();
    // The last voter cannot be removed.
    let last = cli(
        &c.nodes[leader].addr,
        &["cluster", "remove", &c.nodes[leader].id.to_string()],
    );
    assert!(!last.ok);
    assert!(last.stderr.contains("last voter"), "{}", last.stderr);
}

/// A removed node stops, whether it learns of its removal at once or runs again later with its
/// old data; its data directory cannot serve again; and its id is never given to a new node.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_node_stops_and_its_id_is_not_given_again() {
    let mut c = Cluster::start(3, &[]).await;
    let leader = c.leader().await;
    let at_leader = c.nodes[leader].addr.clone();
    let w = client_for(
        std::slice::from_ref(&at_leader),
        "p",
        ReadMode::Linearizable,
    );
    w.state_set(set("kept", "1")).await.unwrap();
    let followers: Vec<usize> = (0..3).filter(|&i| i != leader).collect();
    let (down, up) = (followers[0], followers[1]);
    let (down_id, up_id) = (c.nodes[down].id, c.nodes[up].id);

    // Removed while it was down: started again with its old data, it campaigns, the members
    // refuse it as removed, and it stops by itself instead of serving what it had.
    c.nodes[down].kill();
    let removed = cli(&at_leader, &["cluster", "remove", &down_id.to_string()]);
    assert!(removed.ok, "{}", removed.stderr);
    c.nodes[down].restart();
    assert!(
        c.nodes[down].wait_exit(Duration::from_secs(20)),
        "a removed node started again kept running; its log:\n{}",
        c.nodes[down].log_text()
    );
    assert!(
        c.nodes[down]
            .log_text()
            .contains("was removed from the cluster"),
        "{}",
        c.nodes[down].log_text()
    );

    // Removed while it runs: it stops too, and its data directory refuses to serve again.
    let removed = cli(&at_leader, &["cluster", "remove", &up_id.to_string()]);
    assert!(removed.ok, "{}", removed.stderr);
    assert!(
        c.nodes[up].wait_exit(Duration::from_secs(20)),
        "a removed node kept running; its log:\n{}",
        c.nodes[up].log_text()
    );
    let again = c.nodes[up].try_restart();
    assert!(
        again.is_err(),
        "a removed node's data directory served again"
    );
    assert!(
        c.nodes[up].log_text().contains("removed from its cluster"),
        "{}",
        c.nodes[up].log_text()
    );

    // A new node gets an id no node had, and asking for a removed one is refused with a free one.
    let reuse = common::NodeProc::start(&c.dir(9), &["--no-init", "--node-id", &up_id.to_string()]);
    let refused = cli(&at_leader, &["cluster", "join", &reuse.addr]);
    assert!(!refused.ok, "a removed node's id was given again");
    assert!(refused.stderr.contains("removed"), "{}", refused.stderr);
    drop(reuse);
    let added = c.add_node().await;
    let new_id = c.nodes[added].id;
    assert!(
        ![c.nodes[leader].id, down_id, up_id].contains(&new_id),
        "the new node got id {new_id}, which a node had before"
    );
    c.wait_voters(2).await;
    let r = c.client(added, "p", ReadMode::Linearizable);
    assert_eq!(value_at(&r, "kept").await.as_deref(), Some("1"));
}

/// A 3-node cluster, its leader's position, and a client of the leader that has set `key` to 1.
async fn three_nodes_with(key: &str) -> (Cluster, usize, aide::client::Client) {
    let mut c = Cluster::start(3, &[]).await;
    let leader = c.leader().await;
    let w = client_for(
        std::slice::from_ref(&c.nodes[leader].addr),
        "p",
        ReadMode::Linearizable,
    );
    w.state_set(set(key, "1")).await.unwrap();
    (c, leader, w)
}

/// `cluster status --format json` asked of `addr`, and node `id`'s row in it.
fn status_and_row(addr: &str, id: u64) -> (serde_json::Value, serde_json::Value) {
    let status = cli(addr, &["cluster", "status", "--format", "json"]).json();
    let row = status["nodes"]
        .as_array()
        .and_then(|nodes| nodes.iter().find(|n| n["node_id"] == id).cloned())
        .unwrap_or_else(|| panic!("node {id} is not in the status: {status}"));
    (status, row)
}

/// A fresh node started where a voter was (its data lost, `--no-init` on the voter's address) is
/// not taken for that voter: it refuses the Raft messages meant for the voter's id, so it never
/// gets the cluster's log nor answers votes in the voter's name; `cluster status` shows the voter
/// unreachable and what answers in its place; the two others go on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fresh_node_at_a_voters_address_is_not_taken_for_it() {
    let (mut c, leader, w) = three_nodes_with("before").await;
    // A follower other than node 1 (which the fresh node below will call itself).
    let f = (0..3).find(|&i| i != leader && c.nodes[i].id != 1).unwrap();
    let (addr, id) = (c.nodes[f].addr.clone(), c.nodes[f].id);
    c.nodes[f].kill();
    // An empty directory and no --node-id: the fresh node calls itself node 1.
    let stranger = common::NodeProc::start_on(&c.dir(9), &addr, &["--no-init"]);
    assert_ne!(stranger.id, id);
    w.state_set(set("after", "2")).await.unwrap();
    // Until the leader's messages for node `id` reach it: refused (said in its log), or taken.
    let refusal = format!("not node {id}");
    let stranger_info = client_for(std::slice::from_ref(&addr), "p", ReadMode::Stale);
    let info = || async {
        stranger_info
            .cluster_node_info(aide::grpc::pb::cluster::NodeInfoRequest {})
            .await
            .unwrap()
            .status
            .unwrap()
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while !stranger.log_text().contains(&refusal) && info().await.last_log_index == 0 {
        assert!(
            Instant::now() < deadline,
            "the leader's messages for node {id} did not arrive:\n{}",
            stranger.log_text()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    w.state_set(set("later", "3")).await.unwrap();
    let info = info().await;
    assert_eq!(
        (info.last_log_index, info.applied_index),
        (0, 0),
        "the fresh node took the cluster's log: {info:?}"
    );
    let (status, row) = status_and_row(&c.nodes[leader].addr, id);
    assert_eq!(row["reachable"], false, "{status}");
    // Its figures are not known: null, not 0.
    assert_eq!(row["lag"], serde_json::Value::Null, "{status}");
    assert_eq!(row["applied_index"], serde_json::Value::Null, "{status}");
    assert_eq!(
        row["state"],
        format!("node-{}-here", stranger.id),
        "{status}"
    );
}

/// The id of the cluster `node` belongs to, once it knows one (a cluster's first leader names it).
async fn cluster_id_of(node: &common::NodeProc) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let status = own_status(node);
        if let Some(id) = status["cluster_id"].as_str().filter(|id| !id.is_empty()) {
            return id.to_string();
        }
        assert!(
            Instant::now() < deadline,
            "node {} names no cluster: {status}",
            node.id
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A node of another cluster started at a member's address under that member's id (a second
/// cluster set up on the same ports while the first still runs) keeps its own data: it refuses
/// the first cluster's Raft messages, which name their cluster, instead of following its leader
/// and giving up its log for the first cluster's; `cluster status` of the first shows the member
/// unreachable and another cluster in its place; both clusters go on. Nor does `cluster join`
/// add a node that holds data of its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_of_another_cluster_at_a_members_address_keeps_its_own_data() {
    let (mut c, leader, w) = three_nodes_with("first").await;
    let first = cluster_id_of(&c.nodes[leader]).await;
    let f = (0..3).find(|&i| i != leader).unwrap();
    let (addr, id) = (c.nodes[f].addr.clone(), c.nodes[f].id);
    c.nodes[f].kill();
    // A cluster of its own (an empty directory, no --join): it leads itself under the same id.
    let other = common::NodeProc::start_on(&c.dir(9), &addr, &["--node-id", &id.to_string()]);
    let mine = client_for(std::slice::from_ref(&addr), "p", ReadMode::Linearizable);
    mine.state_set(set("mine", "kept")).await.unwrap();
    let second = cluster_id_of(&other).await;
    assert_ne!(first, second, "two clusters named alike");
    // The first cluster's leader sends to its member's address all along; its messages are
    // refused, naming both clusters.
    let refusal = format!("comes from cluster {first}");
    let deadline = Instant::now() + Duration::from_secs(30);
    while !other.log_text().contains(&refusal) {
        assert!(
            Instant::now() < deadline,
            "the first cluster's messages were not refused:\n{}",
            other.log_text()
        );
        w.state_set(set("after", "2")).await.unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(value_at(&mine, "mine").await.as_deref(), Some("kept"));
    assert_eq!(
        value_at(&mine, "first").await,
        None,
        "it took the first cluster's data"
    );
    let own = own_status(&other);
    assert_eq!(own["state"], "leader", "{own}");
    assert_eq!(own["cluster_id"], second, "{own}");
    mine.state_set(set("mine", "still")).await.unwrap();

    let (status, row) = status_and_row(&c.nodes[leader].addr, id);
    assert_eq!(status["cluster_id"], first, "{status}");
    assert_eq!(row["reachable"], false, "{status}");
    assert_eq!(
        (&row["state"], &row["cluster_id"]),
        (&"other-cluster".into(), &second.clone().into()),
        "{status}"
    );
    w.state_set(set("later", "3")).await.unwrap();
    assert_eq!(value_at(&w, "later").await.as_deref(), Some("3"));

    // The other calls between nodes (here the read index a follower asks its leader for) name
    // the cluster as well, and the other cluster's node refuses them.
    let mut at_other = ClusterServiceClient::connect(format!("http://{addr}"))
        .await
        .unwrap();
    let mut ask = tonic::Request::new(aide::grpc::pb::cluster::ReadIndexRequest {});
    ask.metadata_mut()
        .insert("x-aide-cluster", first.parse().unwrap());
    let refused = at_other.read_index(ask).await.unwrap_err();
    assert_eq!(
        refused.code(),
        tonic::Code::FailedPrecondition,
        "{refused:?}"
    );
    assert!(
        refused
            .message()
            .contains(&format!("comes from a node of cluster {first}")),
        "{refused:?}"
    );

    // Nor does a node with data of its own join: `cluster join` refuses it, saying why.
    let own = common::NodeProc::start(&c.dir(10), &[]);
    cluster_id_of(&own).await;
    let refused = cli(&c.nodes[leader].addr, &["cluster", "join", &own.addr]);
    assert!(!refused.ok, "a node with a cluster of its own joined");
    assert!(
        refused.stderr.contains("is not empty"),
        "{}",
        refused.stderr
    );
    let members = cli(
        &c.nodes[leader].addr,
        &["cluster", "members", "--format", "json"],
    )
    .json();
    assert_eq!(members["members"].as_array().unwrap().len(), 3, "{members}");
}

/// A voter whose data was lost, started again empty under its own id while the leader runs, is
/// brought back by the leader (its log went back to nothing; the leader searches it again and
/// sends it the state) and has every write; the cluster takes writes throughout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_voter_started_again_empty_catches_up_from_the_leader() {
    let mut c = Cluster::start(3, &["--snapshot-every", "20"]).await;
    let w = client_for(&c.addrs(), "p", ReadMode::Linearizable);
    for i in 0..30 {
        w.state_set(set(&format!("k{i}"), "before")).await.unwrap();
    }
    let leader = c.leader().await;
    let wiped = (0..3).find(|&i| i != leader).unwrap();
    c.nodes[wiped].kill();
    std::fs::remove_dir_all(&c.nodes[wiped].dir).unwrap();
    let id = c.nodes[wiped].id.to_string();
    let addr = c.nodes[wiped].addr.clone();
    let dir = c.nodes[wiped].dir.clone();
    c.nodes[wiped] = common::NodeProc::start_on(
        &dir,
        &addr,
        &["--snapshot-every", "20", "--no-init", "--node-id", &id],
    );
    for i in 0..10 {
        w.state_set(set(&format!("k{i}"), "after")).await.unwrap();
    }
    c.wait_applied(w.last_index()).await;
    let at_wiped = c.client(wiped, "p", ReadMode::Stale);
    assert_eq!(value_at(&at_wiped, "k0").await.as_deref(), Some("after"));
    assert_eq!(value_at(&at_wiped, "k29").await.as_deref(), Some("before"));
    w.state_set(set("still", "writing")).await.unwrap();
}

/// A voter whose data was lost, started again empty under its own id (`--no-init --node-id N`),
/// does not vote before a leader has given it the log: with its vote, a member that missed the
/// last write would be elected without it, and that acknowledged write would be lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_voter_started_again_empty_does_not_vote_away_an_acknowledged_write() {
    use aide::grpc::pb::cluster::IsolationRequest;
    let mut c = Cluster::start(3, &["--failpoints"]).await;
    let leader = c.leader().await;
    let behind = c.follower().await;
    let wiped = (0..3).find(|&i| i != leader && i != behind).unwrap();
    // `behind` is cut off from the two others, both ways: the write commits on the other two.
    let ids: Vec<u64> = c.nodes.iter().map(|n| n.id).collect();
    for i in 0..3 {
        let isolate_from = if i == behind {
            ids.iter()
                .copied()
                .filter(|&id| id != ids[behind])
                .collect()
        } else {
            vec![ids[behind]]
        };
        c.client(i, "p", ReadMode::Stale)
            .cluster_set_isolation(IsolationRequest {
                isolate_from,
                one_way: false,
            })
            .await
            .unwrap();
    }
    c.client(leader, "p", ReadMode::Linearizable)
        .state_set(set("acknowledged", "1"))
        .await
        .unwrap();
    // The leader stops; `wiped` loses its data and starts again empty under its own id; `behind`
    // is healed and campaigns.
    c.nodes[leader].kill();
    c.nodes[wiped].kill();
    std::fs::remove_dir_all(&c.nodes[wiped].dir).unwrap();
    let id = ids[wiped].to_string();
    let addr = c.nodes[wiped].addr.clone();
    let dir = c.nodes[wiped].dir.clone();
    c.nodes[wiped] = common::NodeProc::start_on(
        &dir,
        &addr,
        &["--failpoints", "--no-init", "--node-id", &id],
    );
    c.client(behind, "p", ReadMode::Stale)
        .cluster_set_isolation(IsolationRequest::default())
        .await
        .unwrap();
    let state_of_behind = || async {
        c.client(behind, "p", ReadMode::Stale)
            .cluster_node_info(aide::grpc::pb::cluster::NodeInfoRequest {})
            .await
            .unwrap()
            .status
            .unwrap()
            .state
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while !c.nodes[wiped].log_text().contains("cannot vote") {
        assert_ne!(
            state_of_behind().await,
            "leader",
            "the member without the write was elected"
        );
        assert!(
            Instant::now() < deadline,
            "no vote request reached the empty node"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_ne!(state_of_behind().await, "leader");
    // The old leader comes back with its log, is elected, and the write is there.
    c.nodes[leader].restart();
    let r = client_for(&c.addrs(), "p", ReadMode::Linearizable);
    let value = value_at(&r, "acknowledged").await;
    assert_eq!(
        value.as_deref(),
        Some("1"),
        "the acknowledged write was lost; the logs of the leader, the wiped node and the one \
         behind:\n{}\n---\n{}\n---\n{}",
        c.nodes[leader].log_text(),
        c.nodes[wiped].log_text(),
        c.nodes[behind].log_text()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_voter_cannot_join_again_empty_and_a_change_that_could_never_commit_is_refused() {
    let mut c = Cluster::start(2, &[]).await;
    let leader = c.leader().await;
    let follower = 1 - leader;
    let (addr, id) = (c.nodes[follower].addr.clone(), c.nodes[follower].id);
    // A node that joins starts with an empty store; one at a voter's address (a voter whose
    // data was lost, restarted with --join) is refused, through either node.
    for through in [leader, follower] {
        let again = aide::client::Client::new(aide::client::ClientConfig {
            endpoints: vec![c.nodes[through].addr.clone()],
            ..Default::default()
        })
        .unwrap()
        .cluster_join(aide::grpc::pb::cluster::JoinRequest {
            node_id: 0,
            address: addr.clone(),
            ..Default::default()
        })
        .await
        .expect_err("a voter's address joined again");
        assert_eq!(again.code, tonic::Code::FailedPrecondition, "{again:?}");
        assert!(
            again.message.contains(&format!("belongs to voter {id}"))
                && again.message.contains("remove it first"),
            "{}",
            again.message
        );
    }
    // `aide cluster join` run again for a node that joined says so, and changes nothing.
    let rerun = cli(&c.nodes[leader].addr, &["cluster", "join", &addr]);
    assert_eq!(
        rerun.out().trim(),
        format!("Node {id} at {addr} is already a voter")
    );

    // With the follower dead, removing it needs both voters to agree (Raft's joint
    // consensus): it could never commit, so it is refused at once with the reason.
    c.nodes[follower].kill();
    // Run again while that voter is down: still a voter, nothing to start first.
    let rerun = cli(&c.nodes[leader].addr, &["cluster", "join", &addr]);
    assert_eq!(
        rerun.out().trim(),
        format!("Node {id} at {addr} is already a voter")
    );
    let started = Instant::now();
    let refused = cli(
        &c.nodes[leader].addr,
        &["cluster", "remove", &id.to_string()],
    );
    assert!(!refused.ok, "a removal that cannot commit was accepted");
    assert!(
        refused.stderr.contains("could never commit"),
        "{}",
        refused.stderr
    );
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "the refusal took {:?}",
        started.elapsed()
    );
    // Nothing was changed: both are still members, and the follower is welcome back.
    c.nodes[follower].restart();
    let w = client_for(&c.addrs(), "p", ReadMode::Linearizable);
    w.state_set(set("after", "1")).await.unwrap();
    let members = cli(
        &c.nodes[leader].addr,
        &["cluster", "members", "--format", "json"],
    )
    .json();
    assert_eq!(members["members"].as_array().unwrap().len(), 2, "{members}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_member_comes_back_with_its_data_and_identity() {
    let mut c = Cluster::start(3, &[]).await;
    let f = c.follower().await;
    let id = c.nodes[f].id;
    let w = client_for(&c.addrs(), "p", ReadMode::Linearizable);
    w.state_set(set("before", "1")).await.unwrap();
    c.wait_applied(w.last_index()).await;
    assert!(c.nodes[f].terminate(), "a clean stop on SIGTERM");

    // The others go on without it.
    let l = c.leader().await;
    let lw = c.client(l, "p", ReadMode::Linearizable);
    lw.state_set(set("while-down", "2")).await.unwrap();

    c.nodes[f].restart();
    assert_eq!(c.nodes[f].id, id, "the same node id");
    let r = c.client_at_index(f, "p", lw.last_index());
    assert_eq!(value_at(&r, "before").await.as_deref(), Some("1"));
    assert_eq!(value_at(&r, "while-down").await.as_deref(), Some("2"));
    c.wait_voters(3).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_reads_are_served_without_a_quorum_and_linearizable_reads_are_not() {
    let mut c = Cluster::start(3, &[]).await;
    let w = client_for(&c.addrs(), "p", ReadMode::Linearizable);
    w.state_set(set("k", "v")).await.unwrap();
    c.wait_applied(w.last_index()).await;

    // Two of three nodes die: the survivor cannot know it is current.
    let keep = c.follower().await;
    for i in 0..3 {
        if i != keep {
            c.nodes[i].kill();
        }
    }
    let stale = c.client(keep, "p", ReadMode::Stale);
    assert_eq!(value_at(&stale, "k").await.as_deref(), Some("v"));
    let mut lin = aide::client::ClientConfig {
        endpoints: vec![c.nodes[keep].addr.clone()],
        project: Some("p".into()),
        ..Default::default()
    };
    lin.timeout = Duration::from_secs(3);
    let lin = aide::client::Client::new(lin).unwrap();
    let err = lin.state_get(get("k")).await.unwrap_err();
    assert!(
        matches!(
            err.code,
            tonic::Code::Unavailable | tonic::Code::DeadlineExceeded
        ),
        "a linearizable read without a quorum fails rather than answering: {err:?}"
    );
}

/// What `aide cluster status --format json` at `node` says of that node itself.
fn own_status(node: &common::NodeProc) -> serde_json::Value {
    status_and_row(&node.addr, node.id).1
}

/// Without a quorum a write or a linearizable read fails saying why, once the node has waited
/// longer than an election takes, and the client stops there rather than trying until its own
/// time runs out: a leader that lost its followers says no majority answers it, a node left
/// alone that it has known no leader.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_without_a_quorum_fails_saying_why() {
    let mut c = Cluster::start(3, &[]).await;
    let leader = c.leader().await;
    let followers: Vec<usize> = (0..3).filter(|&i| i != leader).collect();
    for &f in &followers {
        c.nodes[f].kill();
    }
    // The client's own timeout is 15 s: each failure below comes before it.
    let timeout = Duration::from_secs(15);
    let alone = |addr: &str| {
        aide::client::Client::new(aide::client::ClientConfig {
            endpoints: vec![addr.to_string()],
            project: Some("p".into()),
            timeout,
            ..Default::default()
        })
        .unwrap()
    };
    let asked = Instant::now();
    let err = alone(&c.nodes[leader].addr)
        .state_set(set("k", "v"))
        .await
        .unwrap_err();
    assert!(asked.elapsed() < timeout, "{err:?}");
    assert_eq!(err.code, tonic::Code::Unavailable, "{err:?}");
    assert!(
        err.message.starts_with("no quorum") && err.message.contains("2 of the 3 voters"),
        "the leader without its followers: {err:?}"
    );
    let asked = Instant::now();
    let err = alone(&c.nodes[leader].addr)
        .state_get(get("k"))
        .await
        .unwrap_err();
    assert!(asked.elapsed() < timeout, "{err:?}");
    assert!(
        err.message.starts_with("no quorum")
            && err.message.contains("confirm a linearizable read")
            && err.message.contains("--consistency stale"),
        "a linearizable read at the leader without its followers: {err:?}"
    );
    // `cluster status` at that leader says so too.
    let status = c.nodes[leader].cli(&["cluster", "status"]);
    assert!(
        status
            .stderr
            .contains(&format!("node {} leads, but for", c.nodes[leader].id)),
        "{status:?}"
    );
    let me = own_status(&c.nodes[leader]);
    assert!(me["no_quorum_ms"].as_u64().unwrap() >= 3000, "{me}");
    // Started again with its followers still down, it leads again at once (its vote says so)
    // without ever hearing from them: that is a leader without a quorum too.
    c.nodes[leader].kill();
    c.nodes[leader].restart();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let me = own_status(&c.nodes[leader]);
        if me["state"] == "leader" && me["no_quorum_ms"].as_u64().unwrap() >= 3000 {
            break;
        }
        assert!(Instant::now() < deadline, "never reported: {me}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let err = alone(&c.nodes[leader].addr)
        .state_set(set("k", "v"))
        .await
        .unwrap_err();
    assert!(err.message.starts_with("no quorum"), "{err:?}");
    c.nodes[leader].kill();
    // The leader stops again; a follower started again alone finds no leader.
    c.nodes[followers[0]].restart();
    let asked = Instant::now();
    let err = alone(&c.nodes[followers[0]].addr)
        .state_set(set("k", "v"))
        .await
        .unwrap_err();
    assert!(asked.elapsed() < timeout, "{err:?}");
    assert!(
        err.message.starts_with("no leader") && err.message.contains("needs 2 of the 3 voters"),
        "a node left alone: {err:?}"
    );
    let err = alone(&c.nodes[followers[0]].addr)
        .state_get(get("k"))
        .await
        .unwrap_err();
    assert!(
        err.message.starts_with("no leader") && err.message.contains("--consistency stale"),
        "a linearizable read at a node left alone: {err:?}"
    );
    let status = c.nodes[followers[0]].cli(&["cluster", "status"]);
    assert!(
        status.stderr.contains(&format!(
            "node {} has known no leader for",
            c.nodes[followers[0]].id
        )),
        "{status:?}"
    );
    // Through the CLI, with the survivor and a node that is gone: the same reason.
    let remote = format!("{},{}", c.nodes[followers[0]].addr, c.nodes[leader].addr);
    let asked = Instant::now();
    let out = common::cli(&remote, &["--project", "p", "state", "set", "k", "v"]);
    assert!(asked.elapsed() < timeout, "{out:?}");
    assert!(
        !out.ok && out.stderr.contains("no leader"),
        "{}",
        out.stderr
    );
    // A membership change there: the same reason, not a wait until the client gives up.
    let asked = Instant::now();
    let gone = c.nodes[leader].id.to_string();
    let out = c.nodes[followers[0]].cli(&["cluster", "remove", &gone]);
    assert!(asked.elapsed() < Duration::from_secs(5), "{out:?}");
    assert!(
        !out.ok && out.stderr.contains("has known no leader for"),
        "{}",
        out.stderr
    );
}

/// The leader answers a write before the write is in its database (it is in the Raft log of a
/// quorum by then); a stale read at the leader must still see it, at once. (A follower answers
/// a write it forwarded when the leader has applied it: a stale read there may not see it yet,
/// which is what `--min-index` is for.) Each batch waits 30 ms before its write here, so that a
/// read that did not wait for it would miss it every time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_read_at_the_leader_sees_every_write_it_answered() {
    let mut c = Cluster::start(3, &["--failpoints", "--landing-delay-ms", "30"]).await;
    let (mut l, mut term) = leader_and_term(&mut c).await;
    let mut w = c.client(l, "p", ReadMode::Stale);
    let mut channel = aide::raft::network::channel(&c.nodes[l].addr).unwrap();
    let mut checked = 0;
    for i in 0..20 {
        let mut cluster = ClusterServiceClient::new(channel.clone());
        w.state_set(set("seen", &i.to_string())).await.unwrap();
        // The node's status does not claim an index as applied before reads could see it.
        let status = cluster.status(StatusRequest::default()).await.unwrap();
        let reported = reported_index(status.metadata());
        let own = status.get_ref().nodes.iter().find(|n| n.state == "leader");
        let own = own.map(|n| (n.node_id, n.applied_index));
        let seen = value_at(&w, "seen").await;
        if leading_term(&c, l).await != Some(term) {
            // An election on a slow machine: another node may have answered this write (the
            // premise is gone). The next writes go to the new leader.
            (l, term) = leader_and_term(&mut c).await;
            w = c.client(l, "p", ReadMode::Stale);
            channel = aide::raft::network::channel(&c.nodes[l].addr).unwrap();
            continue;
        }
        let (id, own) = own.expect("the leader reports itself");
        assert_eq!(id, c.nodes[l].id);
        assert!(
            own <= reported,
            "status of the leader right after write {i}: applied index {own}, but its reads \
             reflect {reported}"
        );
        assert_eq!(
            seen,
            Some(i.to_string()),
            "a stale read at the leader right after its answer to write {i}"
        );
        checked += 1;
    }
    assert!(
        checked >= 10,
        "only {checked} of 20 writes checked: the leadership kept moving"
    );
    // Likewise a watch that begins right after an answer does not report that change as new.
    let mut swarm = swarm_service_client::SwarmServiceClient::new(channel);
    w.state_set(set("watched", "before")).await.unwrap();
    let mut req = tonic::Request::new(WatchStateRequest::default());
    req.metadata_mut()
        .insert("x-aide-project", "p".parse().unwrap());
    let mut changes = swarm.watch_state(req).await.unwrap().into_inner();
    w.state_set(set("watched", "after")).await.unwrap();
    let first = tokio::time::timeout(Duration::from_secs(10), changes.next())
        .await
        .expect("the watch delivered the later change")
        .unwrap()
        .unwrap();
    assert_eq!(
        first.state.unwrap().value,
        "after",
        "the first change watched"
    );
}

/// Applied changes are held in memory for a moment and written to the store several entries
/// at a time; a read that needs them has them written at once. Here the nodes may hold them for
/// ten minutes: each read below would wait out its 5 s bound and fail if it did not. (Watch
/// streams and the search index learn of changes when they land: with such a hold and no read,
/// ten minutes late.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_have_the_changes_they_need_written_at_once() {
    let mut c = Cluster::start(3, &["--failpoints", "--landing-hold-ms", "600000"]).await;
    let (l, term) = leader_and_term(&mut c).await;
    let f = (0..3).find(|&i| i != l).unwrap();
    let w = c.client(l, "p", ReadMode::Stale);
    let lin = c.client(f, "p", ReadMode::Linearizable);
    // Readers at the follower that ask for an index far ahead (each waits, then is refused as
    // an index the cluster never committed), one after another throughout, do not keep the
    // others' entries from being written at once.
    let far = c.client_at_index(f, "p", u64::MAX / 2);
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let waiting = tokio::spawn({
        let done = done.clone();
        async move {
            let mut refusals = Vec::new();
            while !done.load(std::sync::atomic::Ordering::SeqCst) {
                refusals.push(far.state_get(get("held")).await.unwrap_err());
            }
            refusals
        }
    });
    let mut checked = 0;
    for i in 0..5 {
        w.state_set(set("held", &i.to_string())).await.unwrap();
        let seen = value_at(&w, "held").await;
        // Unless an election on a slow machine had another node answer the write.
        if leading_term(&c, l).await == Some(term) {
            assert_eq!(
                seen,
                Some(i.to_string()),
                "a stale read at the leader after write {i}"
            );
            checked += 1;
        }
        let at_follower = c.client_at_index(f, "p", w.last_index());
        assert_eq!(
            value_at(&at_follower, "held").await,
            Some(i.to_string()),
            "a read at a follower with the min-index of write {i}"
        );
    }
    w.state_set(set("held", "last")).await.unwrap();
    assert_eq!(
        value_at(&lin, "held").await.as_deref(),
        Some("last"),
        "a linearizable read at a follower"
    );
    done.store(true, std::sync::atomic::Ordering::SeqCst);
    // Refused as never committed; one whose read index came late (a loaded machine) may
    // have waited out its time instead.
    let refusals = waiting.await.unwrap();
    assert!(
        refusals
            .iter()
            .any(|e| e.code == tonic::Code::FailedPrecondition),
        "{refusals:?}"
    );
    for err in refusals {
        assert!(
            matches!(
                err.code,
                tonic::Code::FailedPrecondition | tonic::Code::DeadlineExceeded
            ),
            "{err:?}"
        );
    }
    assert!(
        checked >= 3,
        "only {checked} of 5 reads at the leader checked"
    );
}

/// The TCP connections on this machine (any state, TIME_WAIT included) with an end on `port`
/// other than its listening socket, from /proc/net/tcp.
fn connections_to(port: u16) -> usize {
    let table = std::fs::read_to_string("/proc/net/tcp").unwrap();
    let port_of = |addr: &str| u16::from_str_radix(addr.rsplit(':').next().unwrap(), 16).unwrap();
    table
        .lines()
        .skip(1)
        .filter(|line| {
            let cols: Vec<&str> = line.split_whitespace().collect();
            let (local, remote) = (port_of(cols[1]), port_of(cols[2]));
            remote == port || (local == port && remote != 0)
        })
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn linearizable_reads_share_the_leaders_connections_to_the_followers() {
    // Each linearizable read confirms the leadership with every follower. Were that a new
    // connection each time, every read would pay a TCP and HTTP/2 handshake per follower, and a
    // steady stream of reads would fill the machine with TIME_WAIT sockets.
    let mut c = Cluster::start(3, &[]).await;
    let l = c.leader().await;
    let r = c.client(l, "p", ReadMode::Linearizable);
    r.state_set(set("k", "v")).await.unwrap();
    let ports: Vec<u16> = (0..3)
        .filter(|&i| i != l)
        .map(|i| c.nodes[i].addr.rsplit(':').next().unwrap().parse().unwrap())
        .collect();
    let before: usize = ports.iter().map(|&p| connections_to(p)).sum();
    for _ in 0..200 {
        assert_eq!(value_at(&r, "k").await.as_deref(), Some("v"));
    }
    let after: usize = ports.iter().map(|&p| connections_to(p)).sum();
    assert!(
        after <= before + 4,
        "200 linearizable reads left {} connections to the followers (there were {before})",
        after
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_reads_its_clients_writes_with_the_min_index() {
    let mut c = Cluster::start(3, &[]).await;
    let l = c.leader().await;
    let f = c.follower().await;
    let w = c.client(l, "p", ReadMode::Linearizable);
    for i in 0..20 {
        w.state_set(set("counter", &i.to_string())).await.unwrap();
        // Read back at the follower, served from its own copy once it has the write.
        let r = c.client_at_index(f, "p", w.last_index());
        assert_eq!(value_at(&r, "counter").await, Some(i.to_string()));
    }
    // An index the cluster never committed cannot be one of its clients' writes: it is refused
    // with a clear error rather than waited for.
    let far = c.client_at_index(f, "p", w.last_index() + 1_000_000);
    let err = far.state_get(get("counter")).await.unwrap_err();
    assert_eq!(err.code, tonic::Code::FailedPrecondition, "{err:?}");
    assert!(
        err.message.contains("was never committed by this cluster"),
        "{err:?}"
    );

    // The CLI does the same with `--min-index last`: it keeps the index of its last write.
    let home = tempfile::tempdir().unwrap();
    let config = home.path().join("config.yaml");
    let follower = &c.nodes[f].addr;
    for v in ["42", "43"] {
        cli_with_config(
            follower,
            &config,
            &["--project", "p", "state", "set", "cli", v],
        )
        .out();
    }
    assert!(home.path().join("last-index.json").exists());
    let out = cli_with_config(
        follower,
        &config,
        &[
            "--project",
            "p",
            "--consistency",
            "stale",
            "--min-index",
            "last",
            "--format",
            "json",
            "state",
            "get",
            "cli",
        ],
    )
    .json();
    assert_eq!(out["value"], "43", "{out}");
    let bad = cli(follower, &["--min-index", "soon", "state", "get", "cli"]);
    assert!(!bad.ok);
    assert!(
        bad.stderr.contains("neither a log index nor `last`"),
        "{}",
        bad.stderr
    );
}

/// `--min-index last` kept an index from a cluster that ran at the same address before (stopped,
/// its data deleted, a new one started there): the new cluster never committed it, so the read
/// is served without it and the CLI forgets it, instead of waiting for an index the new
/// cluster may not reach for a long time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_index_kept_from_an_earlier_cluster_at_the_same_address_is_forgotten() {
    let home = tempfile::tempdir().unwrap();
    let config = home.path().join("config.yaml");
    let data = tempfile::tempdir().unwrap();
    let dir = data.path().join("node");
    let mut first = common::NodeProc::start(&dir, &[]);
    let addr = first.addr.clone();
    wait_healthy(&addr).await;
    let run =
        |args: &[&str]| cli_with_config(&addr, &config, &[&["--project", "p"], args].concat());
    for i in 0..20 {
        run(&["state", "set", "k", &i.to_string()]).out();
    }
    first.kill();
    std::fs::remove_dir_all(&dir).unwrap();
    let _second = common::NodeProc::start_on(&dir, &addr, &[]);
    wait_healthy(&addr).await;
    run(&["state", "set", "fresh", "yes"]).out();

    let read = run(&["--min-index", "last", "state", "get", "fresh"]);
    assert_eq!(read.out().trim(), "yes");
    assert!(read.stderr.contains("it is forgotten"), "{}", read.stderr);
    // Forgotten: the next read has the new cluster's index, and nothing to say.
    let again = run(&["--min-index", "last", "state", "get", "fresh"]);
    assert_eq!(again.out().trim(), "yes");
    assert_eq!(again.stderr, "");
    // An index given by hand is the caller's: refused, not dropped.
    let given = run(&["--min-index", "1000000", "state", "get", "fresh"]);
    assert!(
        !given.ok && given.stderr.contains("was never committed by this cluster"),
        "{}",
        given.stderr
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_client_fails_over_when_its_node_dies() {
    let mut c = Cluster::start(3, &[]).await;
    let client = aide::client::Client::connect(aide::client::ClientConfig {
        endpoints: c.addrs(),
        project: Some("p".into()),
        ..Default::default()
    })
    .await
    .unwrap();
    client.state_set(set("a", "1")).await.unwrap();
    let using = client.endpoint().to_string();
    let i = c.addrs().iter().position(|a| *a == using).unwrap();
    c.nodes[i].kill();

    // The next calls go to a live node and see everything written before.
    assert_eq!(value_at(&client, "a").await.as_deref(), Some("1"));
    assert_ne!(client.endpoint(), using, "reads moved to a live node");
    client.state_set(set("b", "2")).await.unwrap();
    assert_eq!(value_at(&client, "b").await.as_deref(), Some("2"));

    // The CLI with a list of nodes does the same.
    let list = c.addrs().join(",");
    let out = cli(
        &list,
        &["--project", "p", "state", "get", "b", "--format", "json"],
    )
    .json();
    assert_eq!(out["value"], "2");
}

/// The term node `i` reports, whatever its role.
async fn term_at(c: &Cluster, i: usize) -> u64 {
    c.client(i, "p", ReadMode::Stale)
        .cluster_node_info(aide::grpc::pb::cluster::NodeInfoRequest {})
        .await
        .unwrap()
        .status
        .unwrap()
        .term
}

/// Cuts node `i` off from the others both ways (an empty `peers`: heals it).
async fn cut_off(c: &Cluster, i: usize, on: bool) {
    for j in 0..c.nodes.len() {
        let peers: Vec<u64> = match (on, j == i) {
            (false, _) => Vec::new(),
            (true, true) => (0..c.nodes.len())
                .filter(|&k| k != i)
                .map(|k| c.nodes[k].id)
                .collect(),
            (true, false) => vec![c.nodes[i].id],
        };
        c.client(j, "p", ReadMode::Stale)
            .cluster_set_isolation(aide::grpc::pb::cluster::IsolationRequest {
                isolate_from: peers,
                one_way: false,
            })
            .await
            .expect("set a failpoint");
    }
}

/// A follower that stops hearing from the leader for several election timeouts (paused, or cut
/// off alone) asks the others before it campaigns; they still hear from the leader and say no,
/// so its term does not rise and, back in touch, it does not unseat the leader.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_or_cut_off_follower_does_not_unseat_the_leader() {
    let mut c = Cluster::start(3, &["--failpoints"]).await;
    // Paused for about three election timeouts (the pause is the fault: its length is the test).
    // A follower that campaigns on waking unseats the leader every time; on a machine loaded by
    // many tests at once, heartbeats late by more than the lease can also bring an election of
    // their own now and then: so up to three rounds, one of which must leave leader and term be.
    let mut rounds = Vec::new();
    for _ in 0..3 {
        let (l, term) = leader_and_term(&mut c).await;
        let f = (0..3).find(|&i| i != l).unwrap();
        let w = client_for(&[c.nodes[l].addr.clone()], "p", ReadMode::Linearizable);
        // SAFETY: signals a child process this test started.
        assert_eq!(
            unsafe { libc::kill(c.nodes[f].pid() as i32, libc::SIGSTOP) },
            0
        );
        tokio::time::sleep(Duration::from_millis(1800)).await;
        // SAFETY: as above.
        unsafe { libc::kill(c.nodes[f].pid() as i32, libc::SIGCONT) };
        w.state_set(set("a", "1")).await.unwrap();
        c.wait_applied(w.last_index()).await;
        let after = (leading_term(&c, l).await, term_at(&c, f).await);
        if after == (Some(term), term) {
            rounds.clear();
            break;
        }
        rounds.push(format!("term {term}, leader {l}: then {after:?}"));
    }
    assert!(
        rounds.is_empty(),
        "the paused follower unseated the leader: {rounds:?}"
    );

    // Cut off alone for about four election timeouts: it cannot reach a majority, so its term
    // stays whatever the others do; back, it has what was written meanwhile.
    let (l, term) = leader_and_term(&mut c).await;
    let f = (0..3).find(|&i| i != l).unwrap();
    let w = client_for(&c.addrs(), "p", ReadMode::Linearizable);
    cut_off(&c, f, true).await;
    let cut_at = Instant::now();
    w.state_set(set("b", "2")).await.unwrap();
    tokio::time::sleep(Duration::from_millis(2500).saturating_sub(cut_at.elapsed())).await;
    assert_eq!(
        term_at(&c, f).await,
        term,
        "the term of a follower cut off alone"
    );
    cut_off(&c, f, false).await;
    w.state_set(set("c", "3")).await.unwrap();
    c.wait_applied(w.last_index()).await;
    let fc = c.client(f, "p", ReadMode::Stale);
    assert_eq!(value_at(&fc, "b").await.as_deref(), Some("2"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_client_fails_over_when_its_node_stops_answering() {
    let mut c = Cluster::start(3, &[]).await;
    let f = c.follower().await;
    let w = client_for(&c.addrs(), "p", ReadMode::Linearizable);
    w.state_set(set("a", "1")).await.unwrap();
    c.wait_applied(w.last_index()).await;
    // The follower first in the list stops (its connections stay open, nothing answers).
    let mut endpoints = vec![c.nodes[f].addr.clone()];
    endpoints.extend(c.addrs().into_iter().filter(|a| *a != c.nodes[f].addr));
    let client = aide::client::Client::new(aide::client::ClientConfig {
        endpoints,
        project: Some("p".into()),
        read_mode: ReadMode::Stale,
        timeout: Duration::from_secs(9),
        ..Default::default()
    })
    .unwrap();
    assert_eq!(value_at(&client, "a").await.as_deref(), Some("1"));
    // SAFETY: signals a child process this test started.
    assert_eq!(
        unsafe { libc::kill(c.nodes[f].pid() as i32, libc::SIGSTOP) },
        0
    );

    let read = tokio::time::timeout(Duration::from_secs(30), value_at(&client, "a")).await;
    let wrote =
        tokio::time::timeout(Duration::from_secs(30), client.state_set(set("b", "2"))).await;
    // SAFETY: as above.
    unsafe { libc::kill(c.nodes[f].pid() as i32, libc::SIGCONT) };
    assert_eq!(
        read.expect("a read hung on the stopped node").as_deref(),
        Some("1")
    );
    wrote.expect("a write hung on the stopped node").unwrap();
    assert_ne!(
        client.endpoint(),
        c.nodes[f].addr,
        "calls moved to a live node"
    );
    assert_eq!(value_at(&client, "b").await.as_deref(), Some("2"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watch_on_a_node_that_catches_up_by_snapshot_ends_instead_of_missing_changes() {
    use aide::grpc::pb::cluster::IsolationRequest;
    let mut c = Cluster::start(3, &["--failpoints", "--snapshot-every", "10"]).await;
    let l = c.leader().await;
    let f = c.follower().await;
    let channel = aide::raft::network::channel(&c.nodes[f].addr).unwrap();
    let mut req = tonic::Request::new(WatchStateRequest::default());
    req.metadata_mut()
        .insert("x-aide-project", "p".parse().unwrap());
    let mut changes = swarm_service_client::SwarmServiceClient::new(channel)
        .watch_state(req)
        .await
        .unwrap()
        .into_inner();
    // The follower is cut off while the others write on and cut their log past it.
    let isolate = |cut: Vec<u64>, i: usize| {
        let client = c.client(i, "p", ReadMode::Stale);
        async move {
            client
                .cluster_set_isolation(IsolationRequest {
                    isolate_from: cut,
                    one_way: false,
                })
                .await
                .unwrap();
        }
    };
    let ids: Vec<u64> = c.nodes.iter().map(|n| n.id).collect();
    for i in 0..3 {
        let cut = if i == f {
            ids.iter().copied().filter(|&id| id != ids[f]).collect()
        } else {
            vec![ids[f]]
        };
        isolate(cut, i).await;
    }
    let w = c.client(l, "p", ReadMode::Linearizable);
    for n in 0..40 {
        set_numbered(&w, n).await;
    }
    for i in 0..3 {
        isolate(Vec::new(), i).await;
    }
    c.wait_applied(w.last_index()).await;
    assert!(
        c.nodes[f].log_text().contains("installed a snapshot"),
        "the follower caught up without a snapshot"
    );
    // The stream does not go on as if nothing was missed: it ends, saying why. (On a slow
    // machine the leader may not have cut its log yet when the follower comes back: the
    // follower then applies the first entries from the log, and the stream reports them, in
    // order, before the snapshot ends it.)
    let mut next = 0;
    let status = loop {
        let message = tokio::time::timeout(Duration::from_secs(10), changes.next())
            .await
            .expect("the watch said nothing")
            .expect("the watch ended without a word");
        match message {
            Ok(change) => {
                let key = change.state.unwrap().key;
                assert_eq!(key, format!("k{next}"), "a change out of order");
                next += 1;
            }
            Err(status) => break status,
        }
    };
    assert!(
        next < 40,
        "every change arrived: no snapshot was installed after the first"
    );
    assert_eq!(status.code(), tonic::Code::Aborted, "{status:?}");
    assert!(status.message().contains("snapshot"), "{status:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_streams_work_on_a_follower() {
    let mut c = Cluster::start(3, &[]).await;
    let f = c.follower().await;
    let l = c.leader().await;
    let channel = aide::raft::network::channel(&c.nodes[f].addr).unwrap();
    let mut swarm = swarm_service_client::SwarmServiceClient::new(channel);
    let mut req = tonic::Request::new(WatchTasksRequest::default());
    req.metadata_mut()
        .insert("x-aide-project", "p".parse().unwrap());
    let mut tasks = swarm.watch_tasks(req).await.unwrap().into_inner();

    let w = c.client(l, "p", ReadMode::Linearizable);
    let t = w
        .task_create(TaskCreateRequest {
            title: "watched from afar".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .task
        .unwrap();
    let seen = tokio::time::timeout(Duration::from_secs(10), tasks.next())
        .await
        .expect("the follower's stream delivered the task")
        .unwrap()
        .unwrap();
    assert_eq!(seen.id, t.id);
    assert_eq!(seen.title, "watched from afar");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cluster_cli_shows_members_and_adds_a_node() {
    let mut c = Cluster::start(3, &[]).await;
    let l = c.leader().await;
    let leader_id = c.nodes[l].id;
    let any = &c.nodes[(l + 1) % 3].addr;

    let members = cli(any, &["cluster", "members"]).out().to_string();
    assert_eq!(members.lines().count(), 3, "{members}");
    assert!(
        members.contains(&format!("{leader_id} {} voter (leader)", c.nodes[l].addr)),
        "{members}"
    );
    let status = cli(any, &["cluster", "status", "--format", "json"]).json();
    assert_eq!(status["leader_id"], leader_id);
    let nodes = status["nodes"].as_array().unwrap();
    assert_eq!(nodes.len(), 3);
    assert!(nodes.iter().all(|n| n["reachable"] == true), "{status}");
    let text = cli(any, &["cluster", "status"]).out().to_string();
    assert!(text.starts_with("ID"), "{text}");
    assert_eq!(text.lines().count(), 4, "{text}");

    // A node started with --no-init is added with `aide cluster join` through any member, once
    // its id is one the cluster does not use.
    let clash = common::NodeProc::start(&c.dir(4), &["--no-init"]);
    let refused = cli(any, &["cluster", "join", &clash.addr]);
    assert!(!refused.ok);
    assert!(
        refused.stderr.contains("--no-init --node-id 4"),
        "{}",
        refused.stderr
    );
    let nobody = clash.addr.clone();
    drop(clash);
    // A node that does not answer is not added: the hint to start it names --node-id.
    let refused = cli(any, &["cluster", "join", &nobody, "--node-id", "9"]);
    assert!(
        !refused.ok && refused.stderr.contains("--no-init --node-id N"),
        "{}",
        refused.stderr
    );
    let fourth = common::NodeProc::start(&c.dir(5), &["--no-init", "--node-id", "4"]);
    // An id other than the one the node runs as is refused, naming both.
    let wrong = cli(any, &["cluster", "join", &fourth.addr, "--node-id", "9"]);
    assert!(
        !wrong.ok && wrong.stderr.contains("runs as node 4, not node 9"),
        "{}",
        wrong.stderr
    );
    let joined = cli(any, &["cluster", "join", &fourth.addr, "--node-id", "4"])
        .out()
        .to_string();
    assert!(joined.starts_with("Added node "), "{joined}");
    c.nodes.push(fourth);
    c.wait_voters(4).await;
    let w = client_for(
        std::slice::from_ref(&c.nodes[3].addr),
        "p",
        ReadMode::Linearizable,
    );
    w.state_set(set("via-the-fourth", "ok")).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_isolated_leader_stops_serving_and_the_majority_goes_on() {
    use aide::grpc::pb::cluster::IsolationRequest;
    let mut c = Cluster::start(3, &["--failpoints"]).await;
    let old = c.leader().await;
    let w = client_for(&c.addrs(), "p", ReadMode::Linearizable);
    w.state_set(set("k", "before")).await.unwrap();

    // Cut the leader off from both followers, both ways.
    let ids: Vec<u64> = c.nodes.iter().map(|n| n.id).collect();
    for i in 0..3 {
        let cut: Vec<u64> = if i == old {
            ids.iter().copied().filter(|&id| id != ids[old]).collect()
        } else {
            vec![ids[old]]
        };
        c.client(i, "p", ReadMode::Stale)
            .cluster_set_isolation(IsolationRequest {
                isolate_from: cut,
                one_way: false,
            })
            .await
            .unwrap();
    }
    // The old leader can no longer confirm a read or commit a write.
    let mut short = aide::client::ClientConfig {
        endpoints: vec![c.nodes[old].addr.clone()],
        project: Some("p".into()),
        ..Default::default()
    };
    short.timeout = Duration::from_secs(2);
    let alone = aide::client::Client::new(short).unwrap();
    assert!(
        alone.state_get(get("k")).await.is_err(),
        "a linearizable read on the cut-off leader"
    );
    assert!(
        alone.state_set(set("k", "lost?")).await.is_err(),
        "a write on the cut-off leader"
    );
    // A read that asks only for its client's own writes (the min-index, no consistency named)
    // is served from the node's copy with no round trip to a leader: the cut-off node has them.
    let mine = aide::client::Client::new(aide::client::ClientConfig {
        endpoints: vec![c.nodes[old].addr.clone()],
        project: Some("p".into()),
        read_mode: ReadMode::OwnWrites,
        min_index: Some(w.last_index()),
        min_index_is_hint: false,
        timeout: Duration::from_secs(2),
        ..Default::default()
    })
    .unwrap();
    assert_eq!(value_at(&mine, "k").await.as_deref(), Some("before"));
    // So does the CLI's `--min-index`; named, `--consistency linearizable` still asks the leader.
    let index = w.last_index().to_string();
    let cut_off = &c.nodes[old].addr;
    let own = ["--project", "p", "--min-index", &index, "state", "get", "k"];
    assert_eq!(cli(cut_off, &own).out().trim(), "before");
    let strict = cli(
        cut_off,
        &[&["--consistency", "linearizable"], &own[..]].concat(),
    );
    assert!(!strict.ok, "a linearizable read on the cut-off node");

    // The two others elect a leader and take writes.
    let f = (0..3).find(|&i| i != old).unwrap();
    let majority = c.client(f, "p", ReadMode::Linearizable);
    majority.state_set(set("k", "after")).await.unwrap();
    assert_eq!(value_at(&majority, "k").await.as_deref(), Some("after"));

    // Healed, the old leader follows and answers as the majority does. (The write it could not
    // commit had an unknown outcome: it may still be applied, retried through the new leader.)
    for i in 0..3 {
        c.client(i, "p", ReadMode::Stale)
            .cluster_set_isolation(IsolationRequest::default())
            .await
            .unwrap();
    }
    let healed = c.client(old, "p", ReadMode::Linearizable);
    let seen = value_at(&healed, "k").await;
    assert!(
        matches!(seen.as_deref(), Some("after") | Some("lost?")),
        "{seen:?}"
    );
    // Both sides agree (read again if that late write landed between the two reads).
    let mut agreed = false;
    for _ in 0..3 {
        if value_at(&majority, "k").await == value_at(&healed, "k").await {
            agreed = true;
            break;
        }
    }
    assert!(agreed, "both sides agree once healed");

    // Without --failpoints a node refuses the call.
    let plain = Cluster::start(1, &[]).await;
    let err = plain
        .client(0, "p", ReadMode::Stale)
        .cluster_set_isolation(IsolationRequest {
            isolate_from: vec![2],
            one_way: false,
        })
        .await
        .unwrap_err();
    assert_eq!(err.code, tonic::Code::FailedPrecondition);
}

/// A node that joins under an address the others cannot reach (a wrong `--advertise`) says so
/// in its log, rather than waiting silently as a learner that no leader reaches.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_joiner_that_no_leader_reaches_says_so() {
    let tmp = tempfile::tempdir().unwrap();
    let first = common::NodeProc::start(&tmp.path().join("n1"), &[]);
    // A port where nothing listens.
    let wrong = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().to_string()
    };
    let joiner = common::NodeProc::start(
        &tmp.path().join("n2"),
        &["--join", &first.addr, "--advertise", &wrong],
    );
    // Its "serving on" line gives the address it listens on (the advertised one after it).
    assert_ne!(joiner.addr, wrong);
    let deadline = Instant::now() + Duration::from_secs(40);
    while !joiner
        .log_text()
        .contains("no leader has reached this node")
    {
        assert!(
            Instant::now() < deadline,
            "no warning in the joiner's log:\n{}",
            joiner.log_text()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(joiner.log_text().contains(&wrong), "{}", joiner.log_text());
}
