//! Unit tests of the state machine, domain by domain, over a real (temporary) sled tree.

use super::{apply_entry, Effect, RequestChanges, RequestIndex};
use crate::command::{Command, CommandResult, Envelope, Rejection};
use crate::model::*;
use crate::storage::keys;
use crate::storage::{records, Txn};

const SEC: i64 = 1_000_000_000;

struct Harness {
    _db: sled::Db,
    tree: sled::Tree,
    requests: RequestIndex,
    index: u64,
    now: i64,
    seq: u64,
}

impl Harness {
    fn new() -> Self {
        let db = sled::Config::new().temporary(true).open().unwrap();
        let tree = db.open_tree("state").unwrap();
        Harness {
            _db: db,
            tree,
            requests: RequestIndex::default(),
            index: 0,
            now: 1_000 * SEC,
            seq: 0,
        }
    }

    fn envelope(&mut self, project: &str, command: Command) -> Envelope {
        self.seq += 1;
        Envelope {
            request_id: format!("req-{}", self.seq),
            project: project.to_string(),
            now: self.now,
            stamp: Stamp {
                hlc: self.seq,
                origin: 9,
            },
            command,
            accessor: String::new(),
        }
    }

    /// Applies envelopes as one batch (one log entry each), like one `apply` call of Raft.
    fn batch(&mut self, envs: &[Envelope]) -> (Vec<CommandResult>, Vec<Effect>) {
        let mut txn = Txn::new(&self.tree);
        let mut effects = Vec::new();
        let mut changes = RequestChanges::default();
        let mut out = Vec::new();
        for env in envs {
            self.index += 1;
            out.extend(
                apply_entry(
                    &mut txn,
                    &self.requests,
                    &mut changes,
                    std::slice::from_ref(env),
                    self.index,
                    &mut effects,
                )
                .unwrap(),
            );
        }
        self.tree.apply_batch(txn.into_batch()).unwrap();
        self.requests.commit(changes);
        (out, effects)
    }

    /// Applies envelopes as one log entry and stores it.
    fn entry(&mut self, envs: &[Envelope]) -> Vec<CommandResult> {
        self.index += 1;
        let mut txn = Txn::new(&self.tree);
        let mut changes = RequestChanges::default();
        let out = apply_entry(
            &mut txn,
            &self.requests,
            &mut changes,
            envs,
            self.index,
            &mut Vec::new(),
        )
        .unwrap();
        self.tree.apply_batch(txn.into_batch()).unwrap();
        self.requests.commit(changes);
        out
    }

    fn run(&mut self, project: &str, command: Command) -> CommandResult {
        let env = self.envelope(project, command);
        self.batch(&[env]).0.remove(0)
    }
}

fn memory(id: &str, content: &str, tags: &[&str]) -> Memory {
    Memory {
        id: id.to_string(),
        category: Category::Learning,
        content: content.to_string(),
        tags: tags.iter().map(|t| t.to_string()).collect(),
        priority: 0.0,
        plan: String::new(),
        agent: String::new(),
        namespace: String::new(),
        created_at: 5,
        updated_at: 5,
        access_count: 0,
        last_accessed: None,
        stamp: Stamp::default(),
    }
}

fn decision(topic: &str, text: &str) -> Decision {
    Decision {
        topic: topic.to_string(),
        decision: text.to_string(),
        rationale: String::new(),
        details: String::new(),
        references: Vec::new(),
        decided_by: String::new(),
        created_at: 1,
        precedence: 0,
        seq: 0,
        stamp: Stamp::default(),
    }
}

fn state(key: &str, agent: &str, value: &str, at: i64) -> StateEntry {
    StateEntry {
        key: scoped_key(agent, key),
        value: value.to_string(),
        agent: agent.to_string(),
        updated_at: at,
        stamp: Stamp::default(),
    }
}

fn message(from: &str, to: &str, expires_at: i64) -> Message {
    Message {
        id: 0,
        from: from.to_string(),
        to: to.to_string(),
        content: "hi".to_string(),
        kind: String::new(),
        read_by: Vec::new(),
        created_at: 0,
        expires_at,
        priority: String::new(),
        parent_session_id: String::new(),
        stamp: Stamp::default(),
    }
}

fn task(id: &str) -> Task {
    Task {
        id: id.to_string(),
        title: "t".to_string(),
        description: String::new(),
        status: TaskStatus::Pending,
        claimed_by: String::new(),
        worktree: String::new(),
        result: String::new(),
        created_at: 0,
        claimed_at: None,
        completed_at: None,
        parent_session_id: String::new(),
        stamp: Stamp::default(),
    }
}

#[test]
fn command_variants_keep_their_serialized_order() {
    // The log stores commands by variant index: reordering variants would misread old entries.
    let in_order = [
        Command::MemoryAdd(memory("A", "x", &[])),
        Command::MemoryDelete { id: "A".into() },
        Command::MemoryClear,
        Command::MemoryTouch { ids: vec![] },
        Command::DecisionSet {
            decision: decision("t", "d"),
            precedence: None,
        },
        Command::DecisionDelete { topic: "t".into() },
        Command::DecisionClear,
        Command::StateSet(state("k", "", "v", 0)),
        Command::StateDelete { key: "k".into() },
        Command::StateClear { agent: "".into() },
        Command::StateCleanup { older_than: 0 },
        Command::MessageSend(message("a", "", 0)),
        Command::MessageAck {
            id: 1,
            agent: "a".into(),
        },
        Command::MessagePrune,
        Command::TaskCreate(task("t")),
        Command::TaskClaim {
            id: "t".into(),
            agent: "a".into(),
            worktree: "".into(),
        },
        Command::TaskComplete {
            id: "t".into(),
            result: "".into(),
        },
        Command::TaskUpdate {
            id: "t".into(),
            status: None,
            result: None,
        },
        Command::TaskDelete { id: "t".into() },
        Command::TaskClear { status: None },
        Command::MessageExpireAll,
        Command::AuthEnable {
            key: ApiKey::default(),
            node_secret: String::new(),
        },
        Command::AuthKeyCreate(ApiKey::default()),
        Command::AuthKeyRevoke {
            accessor: String::new(),
        },
        Command::ClusterId { id: "C".into() },
    ];
    let names: Vec<&str> = in_order.iter().map(|c| c.name()).collect();
    for (index, command) in in_order.iter().enumerate() {
        let bytes = crate::storage::codec::encode(command);
        // bytes[0] is the record format; bytes[1] the variant index (a one-byte varint).
        assert_eq!(bytes[1] as usize, index, "variant {} moved", names[index]);
        let back: Command = crate::storage::codec::decode(&bytes).unwrap();
        assert_eq!(&back, command);
    }
}

#[test]
fn memories_add_replace_touch_delete_and_clear() {
    let mut h = Harness::new();
    let added = h.run("p", Command::MemoryAdd(memory("M1", "first", &["a"])));
    let CommandResult::Memory(m) = added else {
        panic!("{added:?}")
    };
    assert_eq!(m.stamp.origin, 9, "the proposal's stamp is recorded");
    // An import with the same id replaces the memory.
    h.run("p", Command::MemoryAdd(memory("M1", "replaced", &["a"])));
    h.run("p", Command::MemoryAdd(memory("M2", "second", &[])));
    assert_eq!(
        records::memory(&h.tree, "p", "M1")
            .unwrap()
            .unwrap()
            .content,
        "replaced"
    );

    h.now += 7;
    let touched = h.run(
        "p",
        Command::MemoryTouch {
            ids: vec!["M1".into(), "missing".into()],
        },
    );
    assert_eq!(touched, CommandResult::Count(1));
    let m1 = records::memory(&h.tree, "p", "M1").unwrap().unwrap();
    assert_eq!((m1.access_count, m1.last_accessed), (1, Some(h.now)));

    assert_eq!(
        h.run("p", Command::MemoryDelete { id: "M1".into() }),
        CommandResult::Done(true)
    );
    assert_eq!(
        h.run("p", Command::MemoryDelete { id: "M1".into() }),
        CommandResult::Done(false)
    );
    assert!(
        h.tree
            .get(keys::tombstone(&keys::memory("p", "M1")))
            .unwrap()
            .is_some(),
        "a delete leaves a tombstone"
    );

    h.run("other", Command::MemoryAdd(memory("M3", "elsewhere", &[])));
    assert_eq!(h.run("p", Command::MemoryClear), CommandResult::Count(1));
    assert!(records::memories(&h.tree, "p", None, &[], 10)
        .unwrap()
        .is_empty());
    assert_eq!(
        records::memories(&h.tree, "other", None, &[], 10)
            .unwrap()
            .len(),
        1,
        "clear stays in its project"
    );
}

#[test]
fn writes_earlier_in_a_batch_are_seen_by_later_commands() {
    let mut h = Harness::new();
    let envs = [
        h.envelope("p", Command::MemoryAdd(memory("M1", "x", &[]))),
        h.envelope("p", Command::MemoryAdd(memory("M2", "y", &[]))),
        h.envelope("p", Command::MemoryDelete { id: "M1".into() }),
        h.envelope("p", Command::MemoryClear),
    ];
    let (results, effects) = h.batch(&envs);
    assert_eq!(results[2], CommandResult::Done(true));
    assert_eq!(results[3], CommandResult::Count(1));
    let removed = effects
        .iter()
        .filter(|e| matches!(e, Effect::MemoryRemoved { .. }))
        .count();
    assert_eq!(removed, 2, "the search index hears of both removals");
}

#[test]
fn decisions_merged_into_one_entry_are_all_kept_in_order() {
    let mut h = Harness::new();
    let envs: Vec<Envelope> = ["a", "b", "c"]
        .iter()
        .map(|text| {
            h.envelope(
                "p",
                Command::DecisionSet {
                    decision: decision("db", text),
                    precedence: None,
                },
            )
        })
        .collect();
    h.batch(&envs);
    let history: Vec<String> = records::decision_history(&h.tree, "p", "db")
        .unwrap()
        .into_iter()
        .map(|d| d.decision)
        .collect();
    assert_eq!(history, ["a", "b", "c"]);
}

#[test]
fn decisions_append_and_carry_precedence_forward() {
    let mut h = Harness::new();
    h.run(
        "p",
        Command::DecisionSet {
            decision: decision("db", "postgres"),
            precedence: Some(5),
        },
    );
    let second = h.run(
        "p",
        Command::DecisionSet {
            decision: decision("db", "sqlite"),
            precedence: None,
        },
    );
    let CommandResult::Decision(d) = second else {
        panic!()
    };
    assert_eq!(
        d.precedence, 5,
        "an unset precedence carries the previous revision's"
    );
    h.run(
        "p",
        Command::DecisionSet {
            decision: decision("api", "grpc"),
            precedence: None,
        },
    );
    let history: Vec<String> = records::decision_history(&h.tree, "p", "db")
        .unwrap()
        .into_iter()
        .map(|d| d.decision)
        .collect();
    assert_eq!(history, ["postgres", "sqlite"]);
    assert_eq!(
        records::decision(&h.tree, "p", "db")
            .unwrap()
            .unwrap()
            .decision,
        "sqlite"
    );
    let topics: Vec<String> = records::decisions(&h.tree, "p")
        .unwrap()
        .into_iter()
        .map(|d| d.topic)
        .collect();
    assert_eq!(topics, ["api", "db"]);

    assert_eq!(
        h.run("p", Command::DecisionDelete { topic: "db".into() }),
        CommandResult::Count(2)
    );
    assert!(records::decision(&h.tree, "p", "db").unwrap().is_none());
    assert_eq!(h.run("p", Command::DecisionClear), CommandResult::Count(1));
    assert!(records::decisions(&h.tree, "p").unwrap().is_empty());
}

#[test]
fn state_keys_are_scoped_and_cleaned_up_by_age() {
    let mut h = Harness::new();
    h.run("p", Command::StateSet(state("mode", "", "fast", 10 * SEC)));
    h.run("p", Command::StateSet(state("step", "a1", "3", 10 * SEC)));
    h.run("p", Command::StateSet(state("step", "a2", "7", 900 * SEC)));
    assert_eq!(
        records::state(&h.tree, "p", "agent:a1:step")
            .unwrap()
            .unwrap()
            .value,
        "3"
    );
    assert_eq!(records::states(&h.tree, "p", "a2").unwrap().len(), 1);
    assert_eq!(records::states(&h.tree, "p", "").unwrap().len(), 3);

    // Only agent-scoped keys older than the cutoff go.
    assert_eq!(
        h.run(
            "p",
            Command::StateCleanup {
                older_than: 500 * SEC
            }
        ),
        CommandResult::Count(1)
    );
    assert!(records::state(&h.tree, "p", "agent:a1:step")
        .unwrap()
        .is_none());
    assert!(records::state(&h.tree, "p", "mode").unwrap().is_some());

    assert_eq!(
        h.run("p", Command::StateClear { agent: "a2".into() }),
        CommandResult::Count(1)
    );
    assert_eq!(
        h.run("p", Command::StateDelete { key: "mode".into() }),
        CommandResult::Done(true)
    );
    assert_eq!(
        h.run("p", Command::StateDelete { key: "mode".into() }),
        CommandResult::Done(false)
    );
}

#[test]
fn message_ids_increase_and_acks_are_idempotent() {
    let mut h = Harness::new();
    let far = h.now + 3600 * SEC;
    let ids: Vec<u64> = [("p", "b"), ("q", ""), ("p", "")]
        .iter()
        .map(
            |(project, to)| match h.run(project, Command::MessageSend(message("a", to, far))) {
                CommandResult::Message(m) => m.id,
                other => panic!("{other:?}"),
            },
        )
        .collect();
    assert_eq!(ids, [1, 2, 3]);
    let ack = || Command::MessageAck {
        id: 1,
        agent: "b".into(),
    };
    assert_eq!(h.run("p", ack()), CommandResult::Done(true));
    assert_eq!(h.run("p", ack()), CommandResult::Done(true));
    let m = records::message(&h.tree, "p", 1).unwrap().unwrap();
    assert_eq!(m.read_by, ["b"], "acked once");
    assert!(records::messages(&h.tree, "p", "b", false, "", h.now)
        .unwrap()
        .iter()
        .all(|m| m.id != 1));
    assert_eq!(
        records::messages(&h.tree, "p", "b", true, "", h.now)
            .unwrap()
            .len(),
        2
    );
    assert_eq!(
        records::messages(&h.tree, "p", "c", false, "", h.now)
            .unwrap()
            .len(),
        1,
        "c sees only the broadcast"
    );
}

#[test]
fn expired_messages_are_never_listed_and_are_pruned() {
    let mut h = Harness::new();
    h.run("p", Command::MessageSend(message("a", "", h.now + SEC)));
    h.run(
        "p",
        Command::MessageSend(message("a", "", h.now + 100 * SEC)),
    );
    h.run("q", Command::MessageSend(message("a", "", h.now + SEC)));
    let later = h.now + 10 * SEC;
    assert_eq!(
        records::messages(&h.tree, "p", "", true, "", later)
            .unwrap()
            .len(),
        1
    );
    h.now = later;
    assert_eq!(
        h.run(
            "p",
            Command::MessageAck {
                id: 1,
                agent: "b".into()
            }
        ),
        CommandResult::Done(false),
        "an expired message cannot be acked"
    );
    assert_eq!(h.run("p", Command::MessagePrune), CommandResult::Count(1));
    assert_eq!(
        h.run("p", Command::MessageExpireAll),
        CommandResult::Count(1),
        "the other project's"
    );
}

#[test]
fn a_task_is_claimed_once_and_moves_through_its_states() {
    let mut h = Harness::new();
    h.run("p", Command::TaskCreate(task("t1")));
    let claim = |agent: &str| Command::TaskClaim {
        id: "t1".into(),
        agent: agent.into(),
        worktree: String::new(),
    };
    // Many claims in one batch: exactly one wins.
    let envs: Vec<Envelope> = (0..20)
        .map(|i| h.envelope("p", claim(&format!("agent{i}"))))
        .collect();
    let (results, _) = h.batch(&envs);
    let winners: Vec<&CommandResult> = results
        .iter()
        .filter(|r| matches!(r, CommandResult::Task { success: true, .. }))
        .collect();
    assert_eq!(winners.len(), 1);
    let CommandResult::Task { error, .. } = &results[1] else {
        panic!()
    };
    assert_eq!(error, "task already claimed by agent0");

    let done = h.run(
        "p",
        Command::TaskComplete {
            id: "t1".into(),
            result: "ok".into(),
        },
    );
    let CommandResult::Task {
        task: Some(t),
        success: true,
        ..
    } = done
    else {
        panic!("{done:?}")
    };
    assert_eq!(
        (t.status, t.result.as_str(), t.completed_at),
        (TaskStatus::Done, "ok", Some(h.now))
    );
    let again = h.run(
        "p",
        Command::TaskComplete {
            id: "t1".into(),
            result: "".into(),
        },
    );
    assert!(matches!(again, CommandResult::Task { success: false, .. }));

    let reopened = h.run(
        "p",
        Command::TaskUpdate {
            id: "t1".into(),
            status: Some(TaskStatus::Pending),
            result: None,
        },
    );
    let CommandResult::Task { task: Some(t), .. } = reopened else {
        panic!()
    };
    assert_eq!((t.status, t.claimed_by.as_str()), (TaskStatus::Pending, ""));

    assert_eq!(
        h.run("p", claim_missing()),
        CommandResult::Rejected(Rejection::NotFound {
            kind: "task".into(),
            id: "nope".into()
        })
    );
    h.run("p", Command::TaskCreate(task("t2")));
    assert_eq!(
        h.run(
            "p",
            Command::TaskClear {
                status: Some(TaskStatus::Pending)
            }
        ),
        CommandResult::Count(2)
    );
    assert_eq!(
        h.run("p", Command::TaskDelete { id: "t1".into() }),
        CommandResult::Done(false)
    );
}

fn claim_missing() -> Command {
    Command::TaskClaim {
        id: "nope".into(),
        agent: "a".into(),
        worktree: String::new(),
    }
}

#[test]
fn a_retried_request_applies_once() {
    let mut h = Harness::new();
    let env = h.envelope("p", Command::MessageSend(message("a", "", i64::MAX)));
    let (first, _) = h.batch(std::slice::from_ref(&env));
    let (second, effects) = h.batch(std::slice::from_ref(&env));
    assert_eq!(first, second, "the retry gets the first answer");
    assert!(effects.is_empty(), "and changes nothing");
    assert_eq!(
        records::messages(&h.tree, "p", "", true, "", 0)
            .unwrap()
            .len(),
        1
    );

    // The index derived from the store agrees with the one kept in memory.
    assert_eq!(RequestIndex::load(&h.tree).unwrap().len(), h.requests.len());

    // Once the window has passed the id is forgotten (a few old records per entry), and the
    // same id applies again as a new request.
    h.now += super::DEDUP_WINDOW_NANOS + SEC;
    h.run("p", Command::MessagePrune);
    assert_eq!(
        RequestIndex::load(&h.tree).unwrap().len(),
        1,
        "only the prune is remembered"
    );
    assert_eq!(h.requests.len(), 1);
}

#[test]
fn a_retried_state_set_or_memory_add_gets_its_first_result_from_a_small_record() {
    let mut h = Harness::new();
    let value = "v".repeat(300);
    let set = h.envelope("p", Command::StateSet(state("k", "", &value, 5)));
    let (first, _) = h.batch(std::slice::from_ref(&set));
    let content = "remembered text ".repeat(40);
    let add = h.envelope("p", Command::MemoryAdd(memory("m1", &content, &["t"])));
    let (first_add, _) = h.batch(std::slice::from_ref(&add));

    // The records hold neither the value nor the content.
    let mut record_bytes = 0;
    for item in h.tree.scan_prefix([b'q']) {
        let (_, v) = item.unwrap();
        record_bytes += v.len();
        assert!(!String::from_utf8_lossy(&v).contains("vvvvvvvvvv"));
        assert!(!String::from_utf8_lossy(&v).contains("remembered text"));
    }
    assert!(
        record_bytes > 0 && record_bytes < 200,
        "{record_bytes} bytes"
    );

    // Retried (by a client, so proposed again under a later stamp), each gets its first result
    // back, value and content included, and changes nothing; also after a restart.
    for reload in [false, true] {
        if reload {
            h.requests = RequestIndex::load(&h.tree).unwrap();
        }
        let mut again = set.clone();
        again.stamp.hlc += 100;
        let (second, effects) = h.batch(std::slice::from_ref(&again));
        assert_eq!(second, first);
        assert!(effects.is_empty());
        let mut again = add.clone();
        again.stamp.hlc += 100;
        let (second, effects) = h.batch(std::slice::from_ref(&again));
        assert_eq!(second, first_add);
        assert!(effects.is_empty());
    }

    // Twice in one entry, the second gets the first's result.
    let once = h.envelope("p", Command::StateSet(state("k2", "", &value, 5)));
    let out = h.entry(&[once.clone(), once]);
    assert_eq!(out[0], out[1]);
    assert!(matches!(&out[1], CommandResult::State(s) if s.value == value));

    // The same id for another value is refused, naming the problem; the first value stays.
    let mut other = set.clone();
    other.command = Command::StateSet(state("k", "", "something else", 5));
    let (refused, _) = h.batch(std::slice::from_ref(&other));
    match &refused[0] {
        CommandResult::Rejected(Rejection::Invalid(m)) => {
            assert!(m.contains("req-1") && m.contains("already used"), "{m}")
        }
        r => panic!("not refused: {r:?}"),
    }
    let stored: StateEntry = records::get(&h.tree, &keys::state("p", "k"))
        .unwrap()
        .unwrap();
    assert_eq!(stored.value, value);

    // So is a memory add's id for other content, or for another kind of write; the message
    // names the id the client sent, without the hash the gRPC layer appends to it.
    let mut add = h.envelope("p", Command::MemoryAdd(memory("m2", "first", &[])));
    add.request_id = "client-7/00112233aabbccdd".into();
    h.batch(std::slice::from_ref(&add));
    for command in [
        Command::MemoryAdd(memory("m2", "second", &[])),
        Command::StateSet(state("k", "", "first", 5)),
    ] {
        let mut other = add.clone();
        other.command = command;
        let (refused, effects) = h.batch(std::slice::from_ref(&other));
        assert!(effects.is_empty());
        match &refused[0] {
            CommandResult::Rejected(Rejection::Invalid(m)) => {
                assert!(m.contains("\"client-7\"") && !m.contains("aabb"), "{m}")
            }
            r => panic!("not refused: {r:?}"),
        }
    }
}

#[test]
fn request_records_of_an_earlier_build_still_make_a_retry_apply_once() {
    let mut h = Harness::new();
    let env = h.envelope("p", Command::MessageSend(message("a", "", i64::MAX)));
    let (first, _) = h.batch(std::slice::from_ref(&env));
    // Rewrite its record as an earlier build kept it: tag `r`, whole results.
    #[derive(serde::Serialize)]
    struct WholeRequests {
        items: Vec<(String, CommandResult)>,
    }
    let (key, _) = h.tree.scan_prefix([b'q']).next().unwrap().unwrap();
    h.tree.remove(&key).unwrap();
    let mut legacy = key.to_vec();
    legacy[0] = b'r';
    let whole = WholeRequests {
        items: vec![(env.request_id.clone(), first[0].clone())],
    };
    h.tree
        .insert(legacy, crate::storage::codec::encode(&whole))
        .unwrap();
    h.requests = RequestIndex::load(&h.tree).unwrap();
    assert_eq!(h.requests.len(), 1);

    let (second, effects) = h.batch(std::slice::from_ref(&env));
    assert_eq!(second, first);
    assert!(effects.is_empty());
    // And it is dropped once out of the window, like any other.
    h.now += super::DEDUP_WINDOW_NANOS + SEC;
    h.run("p", Command::MessagePrune);
    assert_eq!(h.tree.scan_prefix([b'r']).count(), 0);
}

#[test]
fn a_request_repeated_inside_one_entry_applies_once() {
    let mut h = Harness::new();
    let env = h.envelope("p", Command::MessageSend(message("a", "", i64::MAX)));
    let out = h.entry(&[env.clone(), env]);
    assert_eq!(out[0], out[1]);
    assert_eq!(
        records::messages(&h.tree, "p", "", true, "", 0)
            .unwrap()
            .len(),
        1
    );
}

#[test]
fn replaying_the_same_envelopes_gives_the_same_bytes() {
    let build = || {
        let mut h = Harness::new();
        let far = h.now + 3600 * SEC;
        let envs = vec![
            h.envelope("p", Command::MemoryAdd(memory("M1", "x", &["t"]))),
            h.envelope("p", Command::TaskCreate(task("t1"))),
            h.envelope(
                "p",
                Command::TaskClaim {
                    id: "t1".into(),
                    agent: "a".into(),
                    worktree: String::new(),
                },
            ),
            h.envelope("p", Command::MessageSend(message("a", "", far))),
            h.envelope("p", Command::StateSet(state("k", "a", "v", 1))),
            h.envelope(
                "p",
                Command::DecisionSet {
                    decision: decision("d", "x"),
                    precedence: None,
                },
            ),
            h.envelope("p", Command::MemoryDelete { id: "M1".into() }),
        ];
        h.batch(&envs);
        crate::storage::snapshot::copy_tree(&h.tree).unwrap()
    };
    assert_eq!(build(), build());
}

#[test]
fn a_write_whose_key_was_revoked_before_it_applies_is_refused() {
    use crate::model::{ApiKey, Role};
    let mut h = Harness::new();
    let key = |accessor: &str| ApiKey {
        accessor: accessor.to_string(),
        hash: "h".to_string(),
        role: Role::Write,
        projects: vec!["p".to_string()],
        ..Default::default()
    };
    let set = |v: &str| Command::StateSet(state("k", "", v, 1));
    // Before keys are enabled an accessor means nothing.
    let mut early = h.envelope("p", set("early"));
    early.accessor = "K1".into();
    assert!(matches!(h.batch(&[early]).0[0], CommandResult::State(_)));
    h.run(
        "",
        Command::AuthEnable {
            key: key("ADMIN"),
            node_secret: "s".into(),
        },
    );
    h.run("", Command::AuthKeyCreate(key("K1")));
    let mut live = h.envelope("p", set("live"));
    live.accessor = "K1".into();
    let mut revoke = h.envelope(
        "",
        Command::AuthKeyRevoke {
            accessor: "K1".into(),
        },
    );
    revoke.request_id = "revoke".into();
    let mut late = h.envelope("p", set("late"));
    late.accessor = "K1".into();
    let mut stranger = h.envelope("p", set("stranger"));
    stranger.accessor = "NOPE".into();
    let (results, _) = h.batch(&[live, revoke, late, stranger]);
    assert!(matches!(results[0], CommandResult::State(_)));
    for r in &results[2..] {
        assert!(
            matches!(r, CommandResult::Rejected(Rejection::Unauthorized(_))),
            "{r:?}"
        );
    }
    assert_eq!(
        records::state(&h.tree, "p", "k").unwrap().unwrap().value,
        "live"
    );
}
