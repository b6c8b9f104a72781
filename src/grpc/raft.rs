//! RaftService: the receiving end of the node-to-node Raft transport.

use super::pb::raft::{
    raft_service_server::{RaftService, RaftServiceServer},
    RaftPayload,
};
use crate::node::{Node, VoteBarrier, VOTE_BARRIER};
use crate::raft::network::{MAX_MESSAGE_BYTES, TARGET};
use crate::storage::codec::{decode, encode};
use std::sync::Arc;
use tonic::{Request, Response, Status};

/// The Raft transport service of `node`.
pub fn service(node: Arc<Node>) -> RaftServiceServer<Transport> {
    RaftServiceServer::new(Transport {
        node,
        misaddressed: Throttle::default(),
        unvoting: Throttle::default(),
        removed: Throttle::default(),
    })
    .max_decoding_message_size(MAX_MESSAGE_BYTES)
    .max_encoding_message_size(MAX_MESSAGE_BYTES)
}

/// The handlers.
pub struct Transport {
    node: Arc<Node>,
    /// Warnings of messages refused for another node id.
    misaddressed: Throttle,
    /// Warnings of vote requests refused for lack of a log.
    unvoting: Throttle,
    /// Warnings of messages refused from removed nodes.
    removed: Throttle,
}

fn payload<T: serde::de::DeserializeOwned>(req: Request<RaftPayload>) -> Result<T, Status> {
    decode(&req.into_inner().data)
        .map_err(|e| Status::invalid_argument(format!("raft message: {e}")))
}

impl Transport {
    /// Refuses a message meant for another node (see [`TARGET`]), and traffic from a peer this
    /// node is cut off from by a failpoint.
    fn admit(&self, target: Option<u64>, from: Option<crate::raft::NodeId>) -> Result<(), Status> {
        let me = self.node.id;
        if let Some(target) = target.filter(|&t| t != me) {
            let refusal = format!(
                "this is node {me} at {}, not node {target}: the cluster lists node {target} at \
                 this address, but that node's data is not here (a node started empty in its \
                 place, or another node's address given to it); remove node {target} with \
                 `aide cluster remove {target}` and join this one, or start node {target} here \
                 with its own data directory",
                self.node.addr
            );
            if self.misaddressed.should_warn() {
                tracing::warn!(
                    node = me,
                    target,
                    "refusing Raft messages for another node: {refusal}"
                );
            }
            return Err(Status::failed_precondition(refusal));
        }
        match from {
            Some(id) if crate::raft::network::isolated_from(&self.node.isolation, id) => Err(
                Status::unavailable(format!("node {id} is cut off by a failpoint")),
            ),
            Some(id) if self.node.was_removed(id) => {
                let refusal = format!(
                    "node {id} was removed from the cluster, and a removed node takes no part \
                     again (its data stops at its removal; ids are not given again): to add \
                     its machine back, start it on an empty data directory with --join"
                );
                if self.removed.should_warn() {
                    tracing::warn!(node = me, from = id, "refusing Raft messages: {refusal}");
                }
                let mut status = Status::failed_precondition(refusal);
                status.metadata_mut().insert(
                    crate::raft::network::REMOVED,
                    tonic::metadata::MetadataValue::from(id),
                );
                Err(status)
            }
            _ => Ok(()),
        }
    }

    /// Refuses to vote while this node, started empty, lacks entries its cluster had committed
    /// (see [`VoteBarrier`]): until a leader has reached it, and its log reaches as far as the
    /// leader's log reached then.
    async fn may_vote(&self) -> Result<(), Status> {
        let me = self.node.id;
        let barrier = *self
            .node
            .vote_barrier
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let refusal = match barrier {
            VoteBarrier::Open => return Ok(()),
            VoteBarrier::Empty => format!(
                "node {me} cannot vote: it has no log yet (it was started empty in place of a \
                 voter); it votes once it has the entries a leader sends it"
            ),
            VoteBarrier::Until(index) => {
                let last = self
                    .node
                    .raft
                    .metrics()
                    .borrow()
                    .last_log_index
                    .unwrap_or(0);
                if last >= index {
                    self.open_barrier().await?;
                    return Ok(());
                }
                format!(
                    "node {me} cannot vote yet: it started empty and its log reaches index \
                     {last}, short of index {index}, which its cluster had committed when a \
                     leader first reached it"
                )
            }
        };
        if self.unvoting.should_warn() {
            tracing::warn!(node = me, "refusing a vote request: {refusal}");
        }
        Err(Status::failed_precondition(refusal))
    }

    /// A leader's append shows its log reaching index `shown`: a node that started empty
    /// votes only once its own log reaches the index the first such message showed (kept in
    /// the store before the message is taken). Entries committed after that were acknowledged
    /// by this node as it is now, with its log, so the barrier does not move.
    async fn leader_shows(&self, shown: u64) -> Result<(), Status> {
        if *self
            .node
            .vote_barrier
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            != VoteBarrier::Empty
        {
            return Ok(());
        }
        let store = &self.node.store;
        let keep = |e: String| Status::internal(format!("keeping the vote barrier: {e}"));
        store
            .raft_meta
            .insert(VOTE_BARRIER, &shown.to_be_bytes())
            .map_err(|e| keep(e.to_string()))?;
        store.flush().await.map_err(|e| keep(e.to_string()))?;
        let mut barrier = self
            .node
            .vote_barrier
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if *barrier == VoteBarrier::Empty {
            *barrier = VoteBarrier::Until(shown);
            tracing::info!(
                node = self.node.id,
                index = shown,
                "a leader reached this empty node: it votes once its log reaches that index"
            );
        }
        Ok(())
    }

    /// The log has reached the barrier: the node votes from now on.
    async fn open_barrier(&self) -> Result<(), Status> {
        let store = &self.node.store;
        store
            .raft_meta
            .remove(VOTE_BARRIER)
            .map_err(|e| Status::internal(format!("lifting the vote barrier: {e}")))?;
        store
            .flush()
            .await
            .map_err(|e| Status::internal(format!("lifting the vote barrier: {e}")))?;
        *self
            .node
            .vote_barrier
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = VoteBarrier::Open;
        Ok(())
    }
}

/// The node a message names as its target, when it names one.
fn target<T>(req: &Request<T>) -> Result<Option<u64>, Status> {
    match req.metadata().get(TARGET) {
        None => Ok(None),
        Some(v) => v
            .to_str()
            .ok()
            .and_then(|v| v.parse().ok())
            .map(Some)
            .ok_or_else(|| Status::invalid_argument(format!("{TARGET} is not a node id"))),
    }
}

/// At most one warning every ten seconds (the sender retries every half second or so).
#[derive(Default)]
struct Throttle(std::sync::Mutex<Option<std::time::Instant>>);

impl Throttle {
    fn should_warn(&self) -> bool {
        let mut last = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let now = std::time::Instant::now();
        if last.is_some_and(|t| now.duration_since(t) < std::time::Duration::from_secs(10)) {
            return false;
        }
        *last = Some(now);
        true
    }
}

fn reply<T: serde::Serialize>(result: &T) -> Result<Response<RaftPayload>, Status> {
    Ok(Response::new(RaftPayload {
        data: encode(result),
    }))
}

#[tonic::async_trait]
impl RaftService for Transport {
    async fn append_entries(
        &self,
        req: Request<RaftPayload>,
    ) -> Result<Response<RaftPayload>, Status> {
        let to = target(&req)?;
        let leader_last = req
            .metadata()
            .get(crate::raft::network::LAST_LOG)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0);
        let req: openraft::raft::AppendEntriesRequest<crate::raft::TypeConfig> = payload(req)?;
        self.admit(to, req.vote.leader_id().voted_for())?;
        // How far the leader's log reaches: the last index it names (a leader holds every
        // committed entry), and what the message itself shows.
        let shown = req
            .prev_log_id
            .map_or(0, |l| l.index + req.entries.len() as u64)
            .max(req.leader_commit.map_or(0, |l| l.index))
            .max(leader_last);
        self.leader_shows(shown).await?;
        let result = self.node.raft.append_entries(req).await;
        reply(&result)
    }

    async fn vote(&self, req: Request<RaftPayload>) -> Result<Response<RaftPayload>, Status> {
        let to = target(&req)?;
        let req: openraft::raft::VoteRequest<crate::raft::NodeId> = payload(req)?;
        self.admit(to, req.vote.leader_id().voted_for())?;
        self.may_vote().await?;
        let result = self.node.raft.vote(req).await;
        reply(&result)
    }

    async fn install_snapshot(
        &self,
        req: Request<RaftPayload>,
    ) -> Result<Response<RaftPayload>, Status> {
        let to = target(&req)?;
        let req: openraft::raft::InstallSnapshotRequest<crate::raft::TypeConfig> = payload(req)?;
        self.admit(to, req.vote.leader_id().voted_for())?;
        let result = self.node.raft.install_snapshot(req).await;
        reply(&result)
    }
}
