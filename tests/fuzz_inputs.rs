//! The fuzz targets' code (`aide::fuzz`, run by `cargo fuzz` from `fuzz/`) on stable Rust, over
//! inputs generated from a seed: valid encodings of requests, Raft messages and stored entries,
//! mutated (bytes flipped, cut, repeated, inserted), and plain random bytes. Nothing may panic,
//! and the node that handled the client requests still answers.

mod common;

use aide::command::{Command, Envelope, Proposal};
use aide::grpc::pb::aidememory::*;
use aide::model::{Decision, Memory, Stamp, StateEntry};
use aide::raft::{Entry, TypeConfig};
use aide::storage::codec::encode;
use common::rng::Rng;
use openraft::raft::{AppendEntriesRequest, VoteRequest};
use openraft::{CommittedLeaderId, EntryPayload, LogId, Vote};
use prost::Message;

/// A seed as it is or with up to three mutations, or random bytes.
fn mutate(rng: &mut Rng, seeds: &[Vec<u8>]) -> Vec<u8> {
    let mut b = seeds[rng.pick(seeds.len())].clone();
    for _ in 0..rng.pick(4) {
        match rng.pick(6) {
            0 if !b.is_empty() => {
                let i = rng.pick(b.len());
                b[i] ^= 1 << rng.pick(8);
            }
            1 if !b.is_empty() => {
                let i = rng.pick(b.len());
                b.truncate(i);
            }
            2 if !b.is_empty() => {
                let i = rng.pick(b.len());
                let tail = b[i..].to_vec();
                b.extend_from_slice(&tail);
            }
            3 => {
                let i = rng.pick(b.len() + 1);
                b.insert(i, rng.next() as u8);
            }
            4 if !b.is_empty() => {
                let i = rng.pick(b.len());
                b[i] = [0, 0xff, 0x7f, 0x80][rng.pick(4)];
            }
            _ => {
                b = (0..rng.pick(64)).map(|_| rng.next() as u8).collect();
            }
        }
    }
    b
}

fn with_prefix(rng: &mut Rng, prefix: usize, body: Vec<u8>) -> Vec<u8> {
    let mut v: Vec<u8> = (0..prefix).map(|_| rng.next() as u8).collect();
    v.extend(body);
    v
}

#[test]
fn client_requests_of_any_shape_get_answers_not_panics() {
    let seeds: Vec<Vec<u8>> = vec![
        MemoryAddRequest {
            content: "a memory about fuzzing".into(),
            category: "gotcha".into(),
            tags: vec!["t".into(), "scope:global".into()],
            ..Default::default()
        }
        .encode_to_vec(),
        MemorySearchRequest {
            query: "fuzz* AND (memory OR \"x".into(),
            limit: -5,
            category: "learning".into(),
            ..Default::default()
        }
        .encode_to_vec(),
        StateSetRequest {
            key: "k".into(),
            value: "v".into(),
            agent_id: "a".into(),
            ..Default::default()
        }
        .encode_to_vec(),
        StateCleanupRequest {
            max_age: "-1h".into(),
        }
        .encode_to_vec(),
        DecisionSetRequest {
            topic: "db".into(),
            decision: "sled".into(),
            precedence: Some(i32::MIN),
            ..Default::default()
        }
        .encode_to_vec(),
        MessageSendRequest {
            from: "a".into(),
            content: "hi".into(),
            ttl_seconds: i32::MAX,
            ..Default::default()
        }
        .encode_to_vec(),
        MessageAckRequest {
            message_id: u64::MAX,
            agent_id: "a".into(),
        }
        .encode_to_vec(),
        TaskClaimRequest {
            task_id: "01H".into(),
            agent_id: "w".into(),
            worktree: "/tmp".into(),
        }
        .encode_to_vec(),
        Vec::new(),
    ];
    let mut rng = Rng(0x5EED_0001);
    let mut answers: std::collections::BTreeMap<String, u32> = Default::default();
    for _ in 0..20_000 {
        let body = mutate(&mut rng, &seeds);
        let input = with_prefix(&mut rng, 2, body);
        let answer = match aide::fuzz::client_request(&input) {
            None => "not decoded".to_string(),
            Some(Ok(())) => "ok".to_string(),
            Some(Err(status)) => {
                if aide::fuzz::is_internal(&status) {
                    println!("{input:?}: {status:?}");
                }
                format!("{:?}", status.code())
            }
        };
        *answers.entry(answer).or_default() += 1;
    }
    println!("{answers:?}");
    assert!(aide::fuzz::node_answers(), "the node stopped answering");
    // The inputs reach the handlers: many are served, many refused as invalid, and a bug would
    // show as Internal or Unknown.
    assert!(answers.get("ok").copied().unwrap_or(0) > 300, "{answers:?}");
    assert!(
        answers.get("InvalidArgument").copied().unwrap_or(0) > 100,
        "{answers:?}"
    );
    assert!(
        !answers.contains_key("Internal") && !answers.contains_key("Unknown"),
        "{answers:?}"
    );
}

fn entry(index: u64) -> Entry {
    Entry {
        log_id: LogId::new(CommittedLeaderId::new(3, 1), index),
        payload: EntryPayload::Normal(proposal()),
    }
}

fn proposal() -> Proposal {
    let env = |command| Envelope {
        request_id: "r1".into(),
        project: "p".into(),
        now: 1_700_000_000_000_000_000,
        stamp: Stamp { hlc: 7, origin: 1 },
        command,
        accessor: String::new(),
    };
    Proposal {
        envelopes: vec![
            env(Command::MemoryAdd(Memory {
                id: "01HZZZZZZZZZZZZZZZZZZZZZZZ".into(),
                content: "stored".into(),
                ..Default::default()
            })),
            env(Command::StateSet(StateEntry {
                key: "k".into(),
                value: "v".into(),
                ..Default::default()
            })),
            env(Command::DecisionSet {
                decision: Decision {
                    topic: "t".into(),
                    decision: "d".into(),
                    ..Default::default()
                },
                precedence: None,
            }),
        ]
        .into(),
    }
}

#[test]
fn raft_messages_of_any_shape_decode_or_fail_cleanly() {
    let vote = Vote::new_committed(3, 1);
    let seeds: Vec<Vec<u8>> = vec![
        encode(&AppendEntriesRequest::<TypeConfig> {
            vote,
            prev_log_id: Some(LogId::new(CommittedLeaderId::new(3, 1), 9)),
            entries: vec![entry(10), entry(11)],
            leader_commit: Some(LogId::new(CommittedLeaderId::new(3, 1), 9)),
        }),
        encode(&VoteRequest::<u64>::new(vote, None)),
        Vec::new(),
    ];
    let mut rng = Rng(0x5EED_0002);
    for _ in 0..20_000 {
        let body = mutate(&mut rng, &seeds);
        let input = with_prefix(&mut rng, 1, body);
        aide::fuzz::raft_message(&input);
    }
}

#[test]
fn stored_entries_of_any_shape_decode_or_fail_cleanly() {
    let seeds: Vec<Vec<u8>> = vec![
        encode(&entry(5)),
        encode(&proposal()),
        encode(&Memory::default()),
        aide::storage::snapshot::encode(&vec![(b"k".to_vec(), b"v".to_vec())]),
        Vec::new(),
    ];
    let mut rng = Rng(0x5EED_0003);
    for _ in 0..20_000 {
        let body = mutate(&mut rng, &seeds);
        let input = with_prefix(&mut rng, 1, body);
        aide::fuzz::stored_entry(&input);
    }
}
