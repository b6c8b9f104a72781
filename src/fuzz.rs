//! What the fuzz targets in `fuzz/` run, kept in the library so that a test on stable Rust runs
//! the same code over generated inputs (`tests/fuzz_inputs.rs`):
//! - [`client_request`]: bytes decoded as the request of one of the API's RPCs (the first byte
//!   picks which, the second the request's metadata) and handled by a real in-process node;
//! - [`raft_message`]: bytes decoded as one of the node-to-node Raft messages, as the transport
//!   decodes them, and encoded again;
//! - [`stored_entry`]: bytes decoded as a stored Raft log entry, a stored record or a snapshot;
//!   a log entry that decodes is applied to a scratch store, as a restarted node would.
//!
//! None may panic; bad bytes give errors.

use crate::apply::{apply_entry, RequestChanges, RequestIndex};
use crate::grpc::pb::aidememory::{self as pb, *};
use crate::grpc::Api;
use crate::node::{start, NodeConfig, RunningNode};
use crate::storage::codec::{decode, encode};
use crate::storage::{snapshot, Txn};
use prost::Message as _;
use std::sync::OnceLock;
use tonic::Request;

/// One in-process node shared by every input of a fuzzing process.
struct Target {
    runtime: tokio::runtime::Runtime,
    api: Api,
    _node: RunningNode,
}

fn target() -> &'static Target {
    static TARGET: OnceLock<Target> = OnceLock::new();
    TARGET.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("aide-fuzz-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("a tokio runtime");
        let node = runtime
            .block_on(start(NodeConfig::new(&dir, "127.0.0.1:0")))
            .expect("the fuzzing node starts");
        let api = Api::new(node.node.clone());
        Target {
            runtime,
            api,
            _node: node,
        }
    })
}

/// The metadata an input's second byte chooses: projects valid and not, consistency levels,
/// minimum indexes.
fn request<T>(message: T, choice: u8) -> Request<T> {
    let mut req = Request::new(message);
    let md = req.metadata_mut();
    let project = [
        "default",
        "p",
        "",
        "../etc",
        "x y",
        "ünï",
        &"long".repeat(100),
    ];
    if let Ok(v) = project[choice as usize % project.len()].parse() {
        md.insert(crate::grpc::meta::PROJECT, v);
    }
    if choice & 0x10 != 0 {
        md.insert(crate::grpc::meta::CONSISTENCY, "stale".parse().unwrap());
    }
    if choice & 0x20 != 0 {
        md.insert(crate::grpc::meta::CONSISTENCY, "sometimes".parse().unwrap());
    }
    if choice & 0x40 != 0 {
        md.insert(crate::grpc::meta::MIN_INDEX, "notanumber".parse().unwrap());
    }
    if choice & 0x80 != 0 {
        md.insert(crate::grpc::meta::REQUEST_ID, "fuzz".parse().unwrap());
    }
    req
}

macro_rules! dispatch {
    ($pick:expr, $choice:expr, $bytes:expr, $api:expr; $( $module:ident :: $trait:ident :: $method:ident ($req:ty) ),* $(,)?) => {{
        let calls: &[&str] = &[$(stringify!($method)),*];
        let mut i = 0usize;
        let pick = $pick as usize % calls.len();
        $(
            if i == pick {
                if let Ok(m) = <$req>::decode($bytes) {
                    let r = <Api as pb::$module::$trait>::$method($api, request(m, $choice)).await;
                    return Some(r.map(|_| ()));
                }
                return None;
            }
            i += 1;
        )*
        unreachable!("{i} calls, {pick} picked")
    }};
}

/// Decodes `data` as a client request and has the node handle it: `None` when the bytes are no
/// such request, else what the handler answered.
pub fn client_request(data: &[u8]) -> Option<Result<(), tonic::Status>> {
    let [pick, choice, bytes @ ..] = data else {
        return None;
    };
    let t = target();
    t.runtime.block_on(async {
        let api = &t.api;
        dispatch!(*pick, *choice, bytes, api;
            memory_service_server::MemoryService::add(MemoryAddRequest),
            memory_service_server::MemoryService::get(MemoryGetRequest),
            memory_service_server::MemoryService::search(MemorySearchRequest),
            memory_service_server::MemoryService::list(MemoryListRequest),
            memory_service_server::MemoryService::delete(MemoryDeleteRequest),
            memory_service_server::MemoryService::touch(MemoryTouchRequest),
            state_service_server::StateService::get(StateGetRequest),
            state_service_server::StateService::set(StateSetRequest),
            state_service_server::StateService::list(StateListRequest),
            state_service_server::StateService::delete(StateDeleteRequest),
            state_service_server::StateService::clear(StateClearRequest),
            state_service_server::StateService::cleanup(StateCleanupRequest),
            decision_service_server::DecisionService::set(DecisionSetRequest),
            decision_service_server::DecisionService::get(DecisionGetRequest),
            decision_service_server::DecisionService::list(DecisionListRequest),
            decision_service_server::DecisionService::history(DecisionHistoryRequest),
            decision_service_server::DecisionService::delete(DecisionDeleteRequest),
            message_service_server::MessageService::send(MessageSendRequest),
            message_service_server::MessageService::list(MessageListRequest),
            message_service_server::MessageService::ack(MessageAckRequest),
            message_service_server::MessageService::prune(MessagePruneRequest),
            task_service_server::TaskService::create(TaskCreateRequest),
            task_service_server::TaskService::get(TaskGetRequest),
            task_service_server::TaskService::list(TaskListRequest),
            task_service_server::TaskService::claim(TaskClaimRequest),
            task_service_server::TaskService::complete(TaskCompleteRequest),
            task_service_server::TaskService::update(TaskUpdateRequest),
            task_service_server::TaskService::delete(TaskDeleteRequest),
            swarm_service_server::SwarmService::watch_tasks(WatchTasksRequest),
            swarm_service_server::SwarmService::watch_messages(WatchMessagesRequest),
            swarm_service_server::SwarmService::watch_state(WatchStateRequest),
            health_service_server::HealthService::check(HealthCheckRequest),
        )
    })
}

/// Whether the fuzzing node still answers; the stable test checks it after its inputs.
pub fn node_answers() -> bool {
    let t = target();
    t.runtime.block_on(async {
        let r = <Api as pb::health_service_server::HealthService>::check(
            &t.api,
            Request::new(HealthCheckRequest {}),
        )
        .await;
        r.is_ok_and(|r| r.into_inner().healthy)
    })
}

/// Decodes `data` as a Raft message (the first byte picks which) and encodes it again.
pub fn raft_message(data: &[u8]) {
    use crate::raft::{NodeId, TypeConfig};
    use openraft::raft::*;
    let [pick, bytes @ ..] = data else {
        return;
    };
    fn again<T: serde::Serialize + serde::de::DeserializeOwned>(bytes: &[u8]) {
        if let Ok(m) = decode::<T>(bytes) {
            let _ = decode::<T>(&encode(&m)).expect("what was encoded decodes");
        }
    }
    match pick % 6 {
        0 => again::<AppendEntriesRequest<TypeConfig>>(bytes),
        1 => again::<VoteRequest<NodeId>>(bytes),
        2 => again::<InstallSnapshotRequest<TypeConfig>>(bytes),
        3 => again::<Result<AppendEntriesResponse<NodeId>, openraft::error::RaftError<NodeId>>>(
            bytes,
        ),
        4 => again::<Result<VoteResponse<NodeId>, openraft::error::RaftError<NodeId>>>(bytes),
        _ => again::<
            Result<
                InstallSnapshotResponse<NodeId>,
                openraft::error::RaftError<NodeId, openraft::error::InstallSnapshotError>,
            >,
        >(bytes),
    }
}

/// Decodes `data` as something a node reads back from its disk (the first byte picks what); a
/// log entry that decodes is applied to a scratch store.
pub fn stored_entry(data: &[u8]) {
    let [pick, bytes @ ..] = data else {
        return;
    };
    match pick % 8 {
        0 => {
            let Ok(entry) = decode::<crate::raft::Entry>(bytes) else {
                return;
            };
            if let openraft::EntryPayload::Normal(p) = entry.payload {
                apply_scratch(&p);
            }
        }
        1 => {
            let _ = decode::<crate::model::Memory>(bytes);
        }
        2 => {
            let _ = decode::<crate::model::Decision>(bytes);
        }
        3 => {
            let _ = decode::<crate::model::Task>(bytes);
        }
        4 => {
            let _ = decode::<crate::model::Message>(bytes);
        }
        5 => {
            let _ = decode::<crate::model::StateEntry>(bytes);
        }
        6 => {
            let _ = snapshot::decode(bytes);
        }
        _ => {
            let _ = decode::<crate::command::Proposal>(bytes).map(|p| apply_scratch(&p));
        }
    }
}

fn apply_scratch(p: &crate::command::Proposal) {
    thread_local! {
        static SCRATCH: sled::Tree = sled::Config::new()
            .temporary(true)
            .cache_capacity(8 * 1024 * 1024)
            .open()
            .and_then(|db| db.open_tree("state"))
            .expect("a scratch store");
    }
    SCRATCH.with(|tree| {
        let mut txn = Txn::new(tree);
        let mut effects = Vec::new();
        let mut changes = RequestChanges::default();
        let _ = apply_entry(
            &mut txn,
            &RequestIndex::default(),
            &mut changes,
            &p.envelopes,
            1,
            &mut effects,
        );
    });
}

/// Whether a handler's error is a bug of ours rather than an answer to bad input.
pub fn is_internal(status: &tonic::Status) -> bool {
    matches!(status.code(), tonic::Code::Internal | tonic::Code::Unknown)
}
