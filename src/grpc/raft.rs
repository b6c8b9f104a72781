//! RaftService: the receiving end of the node-to-node Raft transport.

use super::pb::raft::{
    raft_service_server::{RaftService, RaftServiceServer},
    RaftPayload,
};
use crate::node::Node;
use crate::raft::network::{MAX_MESSAGE_BYTES, TARGET};
use crate::raft::prevote::{self, PreVoteRequest};
use crate::storage::codec::{decode, encode};
use openraft::raft::AppendEntriesResponse;
use openraft::storage::RaftLogStorage;
use std::sync::Arc;
use tonic::{Request, Response, Status};

/// The Raft transport service of `node`.
pub fn service(node: Arc<Node>) -> RaftServiceServer<Transport> {
    RaftServiceServer::new(Transport {
        node,
        misaddressed: Throttle::default(),
        foreign: Throttle::default(),
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
    /// Warnings of messages refused from another cluster.
    foreign: Throttle,
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
    /// Refuses a message meant for another node (see [`TARGET`]) or from another cluster (see
    /// [`crate::apply::cluster::CLUSTER`]), and traffic from a peer this node is cut off from by
    /// a failpoint.
    fn admit(
        &self,
        target: Option<u64>,
        cluster: Option<String>,
        from: Option<crate::raft::NodeId>,
    ) -> Result<(), Status> {
        let me = self.node.id;
        let mine = crate::apply::cluster::foreign(&self.node.store, cluster.as_deref())
            .map_err(|e| Status::internal(format!("reading the cluster's id: {e}")))?;
        if let (Some(mine), Some(theirs)) = (mine, cluster) {
            let refusal = format!(
                "node {me} at {} holds the data of cluster {mine}, and this message comes \
                 from cluster {theirs}, which lists a node {me} at this address: a node \
                 takes part only in the cluster whose data it holds (two clusters were set \
                 up on the same addresses, or a node started here on another cluster's \
                 data); stop this node and start cluster {theirs}'s node {me} here, or \
                 remove node {me} from cluster {theirs} with `aide cluster remove {me}` run \
                 against one of its members",
                self.node.addr
            );
            if self.foreign.should_warn() {
                tracing::warn!(node = me, "refusing Raft messages: {refusal}");
            }
            return Err(Status::failed_precondition(refusal));
        }
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
                // Whose removal it is: a node of another cluster under the same id ignores it.
                crate::apply::cluster::mark(&self.node.store, status.metadata_mut());
                Err(status)
            }
            _ => Ok(()),
        }
    }

    /// Notes a message from a leader whose vote is at least this node's (its leader, or a newer
    /// one): see [`crate::raft::prevote`].
    fn heard_from(&self, vote: &openraft::Vote<crate::raft::NodeId>) {
        let mine = self.node.raft.metrics().borrow().vote;
        if vote.committed && vote >= &mine {
            self.node.heard.now();
        }
    }

    /// Refuses to vote while this node, started empty, lacks entries its cluster had committed
    /// (see [`crate::node::vote`]).
    async fn may_vote(&self) -> Result<(), Status> {
        let last = self
            .node
            .raft
            .metrics()
            .borrow()
            .last_log_index
            .unwrap_or(0);
        let Err(why) = self.node.vote.may_vote(&self.node.store, last).await else {
            return Ok(());
        };
        let refusal = format!("node {} cannot vote: {why}", self.node.id);
        if self.unvoting.should_warn() {
            tracing::warn!(node = self.node.id, "refusing a vote request: {refusal}");
        }
        Err(Status::failed_precondition(refusal))
    }
}

/// The cluster a message comes from, when its sender named it.
fn cluster<T>(req: &Request<T>) -> Option<String> {
    crate::apply::cluster::named(req.metadata().as_ref()).map(str::to_string)
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
        let (to, from_cluster) = (target(&req)?, cluster(&req));
        // The end of the leader's log, which a node that started empty must reach before it
        // votes (a leader holds every committed entry): the last index it names, and what the
        // message itself shows.
        let leader_last = self.node.vote.waits_for_a_leader().then(|| {
            req.metadata()
                .get(crate::raft::network::LAST_LOG)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0)
        });
        let req: openraft::raft::AppendEntriesRequest<crate::raft::TypeConfig> = payload(req)?;
        self.admit(to, from_cluster, req.vote.leader_id().voted_for())?;
        if let Some(leader_last) = leader_last {
            let shown = req
                .prev_log_id
                .map_or(0, |l| l.index + req.entries.len() as u64)
                .max(req.leader_commit.map_or(0, |l| l.index))
                .max(leader_last);
            self.node
                .vote
                .leader_reached(&self.node.store, shown)
                .await
                .map_err(|e| Status::internal(format!("keeping the vote barrier: {e}")))?;
        }
        // Heard from the leader as the message arrives (as openraft's lease counts it), not
        // only once it is taken: taking it waits for the log's flush, which can outlast a
        // heartbeat under load.
        self.heard_from(&req.vote);
        let result = self.node.raft.append_entries(req).await;
        if matches!(&result, Ok(r) if !matches!(r, AppendEntriesResponse::HigherVote(_))) {
            self.node.heard.now();
        }
        reply(&result)
    }

    async fn vote(&self, req: Request<RaftPayload>) -> Result<Response<RaftPayload>, Status> {
        let (to, from_cluster) = (target(&req)?, cluster(&req));
        let req: openraft::raft::VoteRequest<crate::raft::NodeId> = payload(req)?;
        self.admit(to, from_cluster, req.vote.leader_id().voted_for())?;
        self.may_vote().await?;
        let result = self.node.raft.vote(req).await;
        if matches!(&result, Ok(r) if r.vote_granted) {
            self.node.heard.now();
        }
        reply(&result)
    }

    async fn pre_vote(&self, req: Request<RaftPayload>) -> Result<Response<RaftPayload>, Status> {
        let (to, from_cluster) = (target(&req)?, cluster(&req));
        let req: PreVoteRequest = payload(req)?;
        self.admit(to, from_cluster, Some(req.candidate))?;
        let refusal = self.may_vote().await.err().map(|s| s.message().to_string());
        let last_log_id = self
            .node
            .log
            .clone()
            .get_log_state()
            .await
            .map_err(|e| Status::internal(format!("reading the log's end: {e}")))?
            .last_log_id;
        let answer = prevote::answer(
            &self.node.raft,
            self.node.id,
            &self.node.heard,
            (self.node.lease, self.node.patience),
            last_log_id,
            refusal,
            &req,
        );
        reply(&Ok::<_, openraft::error::RaftError<crate::raft::NodeId>>(
            answer,
        ))
    }

    async fn install_snapshot(
        &self,
        req: Request<RaftPayload>,
    ) -> Result<Response<RaftPayload>, Status> {
        let (to, from_cluster) = (target(&req)?, cluster(&req));
        let req: openraft::raft::InstallSnapshotRequest<crate::raft::TypeConfig> = payload(req)?;
        self.admit(to, from_cluster, req.vote.leader_id().voted_for())?;
        let vote = req.vote;
        self.heard_from(&vote);
        let result = self.node.raft.install_snapshot(req).await;
        if matches!(&result, Ok(r) if r.vote == vote) {
            self.node.heard.now();
        }
        reply(&result)
    }
}
