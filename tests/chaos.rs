//! Fault injection: real nodes, a concurrent workload (state writes and linearizable reads on a
//! few keys, memory adds, claims of a few tasks), and process faults while it runs (SIGKILL of the leader, of a follower, of every
//! node; SIGSTOP of the leader or a follower for longer than an election timeout; the leader,
//! or a minority holding it, cut off from the rest by failpoints in the node-to-node transport,
//! which nodes started with `--failpoints` accept). Every
//! operation is recorded (invoked, returned, or unknown when it failed or timed out) and the
//! history is checked key by key for linearizability with `aide::check`; every acknowledged
//! memory must be stored exactly once (and nothing nobody added), and each task won by at most
//! one claim, the one the task names. The schedule of faults
//! and operations comes from a seed, so a run can be repeated.
//!
//! CI runs a short form; `scripts/chaos.sh --seed N --duration SECONDS [--nodes 5]` a long one.

mod common;

use aide::check::{self, Append, LogRead, Operation, RegisterOp};
use aide::client::{Client, ClientConfig, ReadMode};
use aide::grpc::pb::aidememory::{
    DecisionHistoryRequest, DecisionSetRequest, MemoryAddRequest, MemoryListRequest,
    MessageListRequest, MessageSendRequest, StateGetRequest, StateGetResponse, StateSetRequest,
    TaskClaimRequest, TaskCreateRequest, TaskGetRequest,
};
use aide::grpc::pb::cluster::IsolationRequest;
use common::cluster::Cluster;
use common::rng::Rng;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(Default)]
struct Tally {
    ok: u64,
    failed: u64,
    unknown: u64,
}

struct Recorder {
    start: Instant,
    history: Mutex<BTreeMap<String, Vec<Operation>>>,
    tally: Mutex<Tally>,
    /// Memory contents added, and whether the add was acknowledged.
    memories: Mutex<Vec<(String, bool)>>,
    /// Task claims: (task id, agent, Some(won) or None when the outcome is unknown).
    claims: Mutex<Vec<(String, String, Option<bool>)>>,
    /// The tasks the clients compete for.
    tasks: Vec<String>,
    /// Decisions appended: (topic, text, invoked, returned when acknowledged).
    decisions: Mutex<Vec<Appended>>,
    /// Reads of a topic's history.
    histories: Mutex<Vec<(String, LogRead)>>,
    /// Broadcast messages sent, with the id the node gave each acknowledged one.
    messages: Mutex<Vec<(Appended, Option<u64>)>>,
}

/// One append of a decision or a message whose outcome the checks compare with what is stored.
#[derive(Clone, Debug)]
struct Appended {
    topic: String,
    text: String,
    invoked: u64,
    returned: Option<u64>,
}

impl Recorder {
    fn now(&self) -> u64 {
        self.start.elapsed().as_nanos() as u64
    }

    /// Counts a write-like call: acknowledged, or of unknown outcome.
    fn count(&self, acknowledged: bool) {
        let mut t = self.tally.lock().unwrap();
        if acknowledged {
            t.ok += 1
        } else {
            t.unknown += 1
        }
    }

    /// Records a read of `key` by `client`, invoked at `invoked`, that has just returned `r`.
    fn record_read(&self, key: &str, client: u64, invoked: u64, r: StateGetResponse) {
        let seen = r.found.then(|| r.state.unwrap_or_default().value);
        let returned = Some(self.now());
        self.record(
            key,
            Operation {
                client,
                invoked,
                returned,
                op: RegisterOp::Read(seen),
            },
        );
    }

    fn record(&self, key: &str, op: Operation) {
        self.history
            .lock()
            .unwrap()
            .entry(key.to_string())
            .or_default()
            .push(op);
    }
}

const KEYS: u64 = 6;
const CLIENTS: u64 = 6;
const TASKS: usize = 20;

/// One client: random writes of unique values and linearizable reads, until told to stop.
async fn client_loop(
    id: u64,
    seed: u64,
    endpoints: Vec<String>,
    rec: Arc<Recorder>,
    stop: Arc<AtomicBool>,
) {
    let client = Client::new(ClientConfig {
        endpoints,
        project: Some("chaos".into()),
        read_mode: ReadMode::Linearizable,
        min_index: None,
        min_index_is_hint: false,
        timeout: Duration::from_secs(2),
        api_key: None,
    })
    .unwrap();
    let mut rng = Rng(seed ^ (id + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15));
    let mut n = 0u64;
    while !stop.load(Ordering::SeqCst) {
        n += 1;
        let key = format!("k{}", rng.below(KEYS));
        let invoked = rec.now();
        let pick = rng.below(13);
        if pick == 10 {
            let topic = format!("d{}", rng.below(2));
            let text = format!("decision c{id}-{n}");
            let r = client
                .decision_set(DecisionSetRequest {
                    topic: topic.clone(),
                    decision: text.clone(),
                    ..Default::default()
                })
                .await;
            let returned = r.is_ok().then(|| rec.now());
            rec.count(returned.is_some());
            rec.decisions.lock().unwrap().push(Appended {
                topic,
                text,
                invoked,
                returned,
            });
            continue;
        }
        if pick == 11 {
            let topic = format!("d{}", rng.below(2));
            if let Ok(r) = client
                .decision_history(DecisionHistoryRequest {
                    topic: topic.clone(),
                })
                .await
            {
                rec.tally.lock().unwrap().ok += 1;
                let read = LogRead {
                    invoked,
                    returned: rec.now(),
                    values: r.decisions.into_iter().map(|d| d.decision).collect(),
                };
                rec.histories.lock().unwrap().push((topic, read));
            } else {
                rec.tally.lock().unwrap().failed += 1;
            }
            continue;
        }
        if pick == 12 {
            let text = format!("message c{id}-{n}");
            let r = client
                .message_send(MessageSendRequest {
                    from: format!("c{id}"),
                    content: text.clone(),
                    ..Default::default()
                })
                .await;
            let sent = r.ok().and_then(|r| r.message).map(|m| m.id);
            rec.count(sent.is_some());
            let returned = sent.is_some().then(|| rec.now());
            let m = Appended {
                topic: String::new(),
                text,
                invoked,
                returned,
            };
            rec.messages.lock().unwrap().push((m, sent));
            continue;
        }
        if pick == 8 {
            let content = format!("memory c{id}-{n}");
            let acked = client
                .memory_add(MemoryAddRequest {
                    content: content.clone(),
                    ..Default::default()
                })
                .await
                .is_ok();
            rec.count(acked);
            rec.memories.lock().unwrap().push((content, acked));
            continue;
        }
        if pick == 9 {
            let task = rec.tasks[rng.below(rec.tasks.len() as u64) as usize].clone();
            let agent = format!("c{id}");
            let won = client
                .task_claim(TaskClaimRequest {
                    task_id: task.clone(),
                    agent_id: agent.clone(),
                    ..Default::default()
                })
                .await
                .ok()
                .map(|r| r.success);
            rec.count(won.is_some());
            rec.claims.lock().unwrap().push((task, agent, won));
            continue;
        }
        if pick < 4 {
            let value = format!("c{id}-{n}");
            let r = client
                .state_set(StateSetRequest {
                    key: key.clone(),
                    value: value.clone(),
                    ..Default::default()
                })
                .await;
            // A failed write may still have been applied: its outcome is unknown.
            let returned = r.is_ok().then(|| rec.now());
            rec.count(returned.is_some());
            rec.record(
                &key,
                Operation {
                    client: id,
                    invoked,
                    returned,
                    op: RegisterOp::Write(value),
                },
            );
        } else {
            match client
                .state_get(StateGetRequest {
                    key: key.clone(),
                    ..Default::default()
                })
                .await
            {
                Ok(r) => {
                    rec.tally.lock().unwrap().ok += 1;
                    rec.record_read(&key, id, invoked, r);
                }
                // A read that failed saw nothing: it constrains nothing.
                Err(_) => rec.tally.lock().unwrap().failed += 1,
            }
        }
    }
}

impl Appended {
    fn append(&self) -> Append {
        Append {
            value: self.text.clone(),
            invoked: self.invoked,
            returned: self.returned,
        }
    }
}

/// Cuts the nodes at `side` off from the others, both ways; an empty side heals every cut.
async fn partition(cluster: &Cluster, side: &[usize]) {
    let ids: Vec<u64> = cluster.nodes.iter().map(|n| n.id).collect();
    for (i, _) in cluster.nodes.iter().enumerate() {
        let mine = side.contains(&i);
        let cut: Vec<u64> = if side.is_empty() {
            Vec::new()
        } else {
            (0..ids.len())
                .filter(|&j| side.contains(&j) != mine)
                .map(|j| ids[j])
                .collect()
        };
        let c = cluster.client(i, "chaos", ReadMode::Stale);
        c.cluster_set_isolation(IsolationRequest {
            isolate_from: cut,
            one_way: false,
        })
        .await
        .expect("set a failpoint");
    }
}

fn signal(pid: u32, sig: &str) {
    let _ = std::process::Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .status();
}

/// Runs one seeded chaos run and returns its summary; panics with the failing history on a
/// violation.
async fn run(seed: u64, nodes: usize, secs: u64) -> String {
    // A snapshot every 100 entries: snapshots are built while writes go on, and nodes added or
    // restarted catch up from them.
    let mut cluster = Cluster::start(nodes, &["--failpoints", "--snapshot-every", "100"]).await;
    let setup = Client::new(ClientConfig {
        endpoints: cluster.addrs(),
        project: Some("chaos".into()),
        ..Default::default()
    })
    .unwrap();
    let mut tasks = Vec::new();
    for i in 0..TASKS {
        let t = setup
            .task_create(TaskCreateRequest {
                title: format!("task {i}"),
                ..Default::default()
            })
            .await
            .unwrap();
        tasks.push(t.task.unwrap().id);
    }
    let rec = Arc::new(Recorder {
        start: Instant::now(),
        history: Mutex::new(BTreeMap::new()),
        tally: Mutex::new(Tally::default()),
        memories: Mutex::new(Vec::new()),
        claims: Mutex::new(Vec::new()),
        tasks,
        decisions: Mutex::new(Vec::new()),
        histories: Mutex::new(Vec::new()),
        messages: Mutex::new(Vec::new()),
    });
    let stop = Arc::new(AtomicBool::new(false));
    let mut clients = Vec::new();
    for id in 0..CLIENTS {
        clients.push(tokio::spawn(client_loop(
            id,
            seed,
            cluster.addrs(),
            rec.clone(),
            stop.clone(),
        )));
    }

    let mut rng = Rng(seed.max(1));
    let mut faults: BTreeMap<&str, u32> = BTreeMap::new();
    let end = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < end {
        tokio::time::sleep(Duration::from_millis(700 + rng.below(800))).await;
        let leader = cluster.leader().await;
        let follower = (0..nodes).find(|&i| i != leader).unwrap();
        let fault = match rng.below(9) {
            8 => {
                // A membership change under load: a fresh node joins, becomes a voter, and is
                // removed again.
                let added = cluster.add_node().await;
                cluster.wait_voters(nodes + 1).await;
                tokio::time::sleep(Duration::from_millis(200 + rng.below(500))).await;
                cluster.remove_node(added).await;
                cluster.wait_voters(nodes).await;
                "add a node, then remove it"
            }
            7 => {
                // The leader's messages to one follower are lost; the follower's still arrive.
                let c = cluster.client(leader, "chaos", ReadMode::Stale);
                let cut = IsolationRequest {
                    isolate_from: vec![cluster.nodes[follower].id],
                    one_way: true,
                };
                c.cluster_set_isolation(cut).await.expect("set a failpoint");
                tokio::time::sleep(Duration::from_millis(1000 + rng.below(1000))).await;
                partition(&cluster, &[]).await;
                "lose the leader's messages to a follower"
            }
            5 => {
                partition(&cluster, &[leader]).await;
                tokio::time::sleep(Duration::from_millis(1000 + rng.below(1000))).await;
                partition(&cluster, &[]).await;
                "isolate the leader"
            }
            6 => {
                // A minority with the leader in it, cut off from the majority.
                let size = ((nodes - 1) / 2).max(1);
                let mut minority = vec![leader];
                minority.extend((0..nodes).filter(|&i| i != leader).take(size - 1));
                partition(&cluster, &minority).await;
                tokio::time::sleep(Duration::from_millis(1000 + rng.below(1000))).await;
                partition(&cluster, &[]).await;
                "split the leader's minority off"
            }
            0 => {
                cluster.nodes[leader].kill();
                tokio::time::sleep(Duration::from_millis(300 + rng.below(1200))).await;
                cluster.nodes[leader].restart();
                "kill the leader"
            }
            1 => {
                cluster.nodes[follower].kill();
                tokio::time::sleep(Duration::from_millis(300 + rng.below(1200))).await;
                cluster.nodes[follower].restart();
                "kill a follower"
            }
            2 => {
                for n in cluster.nodes.iter_mut() {
                    n.kill();
                }
                tokio::time::sleep(Duration::from_millis(200 + rng.below(500))).await;
                for n in cluster.nodes.iter_mut() {
                    n.restart();
                }
                "kill every node"
            }
            3 => {
                let pid = cluster.nodes[leader].pid();
                signal(pid, "STOP");
                tokio::time::sleep(Duration::from_millis(900 + rng.below(900))).await;
                signal(pid, "CONT");
                "pause the leader"
            }
            _ => {
                let pid = cluster.nodes[follower].pid();
                signal(pid, "STOP");
                tokio::time::sleep(Duration::from_millis(900 + rng.below(900))).await;
                signal(pid, "CONT");
                "pause a follower"
            }
        };
        eprintln!("{:>7.3} s: {fault}", rec.now() as f64 / 1e9);
        *faults.entry(fault).or_default() += 1;
    }
    // Heal, let the clients see the healed cluster for a moment, then stop them.
    cluster.wait_voters(nodes).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::SeqCst);
    for c in clients {
        c.await.unwrap();
    }
    // A final read of every key, after everything, through a fresh client.
    let last = Client::new(ClientConfig {
        endpoints: cluster.addrs(),
        project: Some("chaos".into()),
        ..Default::default()
    })
    .unwrap();
    for k in 0..KEYS {
        let key = format!("k{k}");
        let invoked = rec.now();
        let r = last
            .state_get(StateGetRequest {
                key: key.clone(),
                ..Default::default()
            })
            .await
            .unwrap();
        rec.record_read(&key, 999, invoked, r);
    }

    let mut violations = Vec::new();
    // Memories: every acknowledged add is there, none twice, none that nobody added.
    let stored = last
        .memory_list(MemoryListRequest {
            limit: 10_000,
            ..Default::default()
        })
        .await
        .unwrap()
        .memories;
    let mut count: BTreeMap<String, usize> = BTreeMap::new();
    for m in &stored {
        *count.entry(m.content.clone()).or_default() += 1;
    }
    let added = rec.memories.lock().unwrap().clone();
    for (content, acked) in &added {
        let n = count.get(content).copied().unwrap_or(0);
        if (*acked && n != 1) || n > 1 {
            violations.push(format!(
                "memory {content:?} (acknowledged: {acked}) is stored {n} times"
            ));
        }
    }
    for content in count.keys() {
        if !added.iter().any(|(c, _)| c == content) {
            violations.push(format!("memory {content:?} was never added"));
        }
    }
    // Tasks: at most one claim of each wins, and the task names that winner.
    for task in &rec.tasks {
        let claims: Vec<(String, String, Option<bool>)> = rec
            .claims
            .lock()
            .unwrap()
            .iter()
            .filter(|c| &c.0 == task)
            .cloned()
            .collect();
        let winners: Vec<&String> = claims
            .iter()
            .filter(|c| c.2 == Some(true))
            .map(|c| &c.1)
            .collect();
        let holder = last
            .task_get(TaskGetRequest { id: task.clone() })
            .await
            .unwrap()
            .task
            .unwrap_or_default()
            .claimed_by;
        let may_hold = |a: &String| claims.iter().any(|c| &c.1 == a && c.2 != Some(false));
        if winners.len() > 1 {
            violations.push(format!("task {task} was won by {winners:?}"));
        } else if let Some(w) = winners.first() {
            if holder != **w {
                violations.push(format!(
                    "task {task} was won by {w} but is held by {holder:?}"
                ));
            }
        } else if !holder.is_empty() && !may_hold(&holder) {
            violations.push(format!(
                "task {task} is held by {holder:?}, whose claim did not win"
            ));
        }
    }

    // Decisions: each topic an append-only log.
    let decisions = rec.decisions.lock().unwrap().clone();
    let histories = rec.histories.lock().unwrap().clone();
    for topic in ["d0", "d1"] {
        let stored: Vec<String> = last
            .decision_history(DecisionHistoryRequest {
                topic: topic.to_string(),
            })
            .await
            .unwrap()
            .decisions
            .into_iter()
            .map(|d| d.decision)
            .collect();
        let appends: Vec<Append> = decisions
            .iter()
            .filter(|d| d.topic == topic)
            .map(Appended::append)
            .collect();
        let reads: Vec<LogRead> = histories
            .iter()
            .filter(|(t, _)| t == topic)
            .map(|(_, r)| r.clone())
            .collect();
        for p in check::append_log(&appends, &reads, &stored) {
            violations.push(format!("decision topic {topic}: {p}"));
        }
    }
    // Broadcast messages: a log ordered by id; the id a sender was given is the stored one.
    let mut stored = last
        .message_list(MessageListRequest {
            agent_id: "checker".into(),
            include_read: true,
            ..Default::default()
        })
        .await
        .unwrap()
        .messages;
    stored.sort_by_key(|m| m.id);
    let sent = rec.messages.lock().unwrap().clone();
    for (m, id) in &sent {
        if let Some(id) = id {
            if !stored.iter().any(|s| s.id == *id && s.content == m.text) {
                violations.push(format!(
                    "message {:?} was given id {id}, which does not hold it",
                    m.text
                ));
            }
        }
    }
    if stored.windows(2).any(|w| w[0].id == w[1].id) {
        violations.push("two messages share an id".to_string());
    }
    let appends: Vec<Append> = sent.iter().map(|(m, _)| m.append()).collect();
    let contents: Vec<String> = stored.into_iter().map(|m| m.content).collect();
    for p in check::append_log(&appends, &[], &contents) {
        violations.push(format!("messages: {p}"));
    }

    let history = rec.history.lock().unwrap().clone();
    let t = rec.tally.lock().unwrap();
    let faults_text: Vec<String> = faults.iter().map(|(f, n)| format!("{f} ×{n}")).collect();
    if let Err(v) = check::registers(&history, None) {
        violations.push(v.to_string());
    }
    let summary = format!(
        "seed {seed}, {nodes} nodes, {secs} s: operations ok {}, failed {}, indeterminate {}; faults: {}; violations: {}",
        t.ok,
        t.failed,
        t.unknown,
        faults_text.join(", "),
        violations.len()
    );
    if !violations.is_empty() {
        // With AIDE_KEEP_LOGS=DIR the cluster leaves the nodes' logs there as it drops.
        panic!("{summary}\n{}", violations.join("\n"));
    }
    summary
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_short_chaos_run_stays_linearizable() {
    let summary = run(7, 3, 8).await;
    println!("{summary}");
}

/// The long form: `scripts/chaos.sh` sets AIDE_CHAOS_SEED, AIDE_CHAOS_SECS and AIDE_CHAOS_NODES.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn chaos_run() {
    let env = |k: &str, d: u64| {
        std::env::var(k)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(d)
    };
    let summary = run(
        env("AIDE_CHAOS_SEED", 1),
        env("AIDE_CHAOS_NODES", 3) as usize,
        env("AIDE_CHAOS_SECS", 60),
    )
    .await;
    println!("{summary}");
}
