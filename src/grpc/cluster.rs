//! ClusterService: membership and status for operators, and the forward and read-index calls
//! nodes make of the leader.

use super::pb::cluster::{
    self as pb,
    cluster_service_server::{ClusterService, ClusterServiceServer},
};
use crate::command::Envelope;
use crate::node::{Node, NodeError};
use crate::raft::network::MAX_MESSAGE_BYTES;
use crate::storage::codec::{decode, encode};
use openraft::BasicNode;
use std::collections::BTreeMap;
use std::sync::Arc;
use tonic::{Request, Response, Status};

/// The cluster service of `node`.
pub fn service(node: Arc<Node>) -> ClusterServiceServer<Cluster> {
    ClusterServiceServer::new(Cluster { node })
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES)
}

/// The handlers.
pub struct Cluster {
    node: Arc<Node>,
}

impl Cluster {
    /// For a membership change by an operator's key: the key checked again once this node has
    /// caught up with the leader (a node behind a revocation must not let a revoked admin change
    /// the membership). Calls nodes forward, and calls without keys, need no more.
    async fn still_admin<T>(&self, req: &Request<T>) -> Result<(), Status> {
        let Some(caller) = req.extensions().get::<crate::auth::Caller>() else {
            return Ok(());
        };
        if caller.key.is_none() {
            return Ok(());
        }
        self.node
            .read_barrier(crate::node::ReadOptions::default())
            .await?;
        crate::auth::still_allowed(&self.node.store, caller)
    }
}

#[tonic::async_trait]
impl ClusterService for Cluster {
    async fn init(
        &self,
        _: Request<pb::InitRequest>,
    ) -> Result<Response<pb::InitResponse>, Status> {
        let raft = &self.node.raft;
        if raft
            .is_initialized()
            .await
            .map_err(|e| Status::internal(e.to_string()))?
        {
            let members: Vec<String> = self
                .node
                .members()
                .iter()
                .map(|m| format!("{}@{}", m.node_id, m.address))
                .collect();
            return Err(Status::failed_precondition(format!(
                "node {} is already part of a cluster (members {})",
                self.node.id,
                members.join(", ")
            )));
        }
        let members = BTreeMap::from([(
            self.node.id,
            BasicNode {
                addr: self.node.addr.clone(),
            },
        )]);
        raft.initialize(members)
            .await
            .map_err(|e| Status::internal(e.to_string()))?;
        self.node.vote.open();
        crate::node::naming::at_birth(&self.node).await;
        Ok(Response::new(pb::InitResponse {
            node_id: self.node.id,
            members: self.node.members(),
        }))
    }

    async fn join(
        &self,
        req: Request<pb::JoinRequest>,
    ) -> Result<Response<pb::JoinResponse>, Status> {
        self.still_admin(&req).await?;
        let r = req.into_inner();
        crate::command::validate::required_name("address", &r.address)?;
        let id = self.node.join(r.node_id, &r.address, r.itself).await?;
        Ok(Response::new(pb::JoinResponse {
            node_id: id,
            leader_id: self.node.leader().map_or(0, |(l, _)| l),
            members: self.node.members(),
        }))
    }

    async fn leave(
        &self,
        req: Request<pb::LeaveRequest>,
    ) -> Result<Response<pb::LeaveResponse>, Status> {
        self.still_admin(&req).await?;
        let members = self.node.remove(self.node.id).await?;
        Ok(Response::new(pb::LeaveResponse { members }))
    }

    async fn remove(
        &self,
        req: Request<pb::RemoveRequest>,
    ) -> Result<Response<pb::RemoveResponse>, Status> {
        self.still_admin(&req).await?;
        let members = self.node.remove(req.into_inner().node_id).await?;
        Ok(Response::new(pb::RemoveResponse { members }))
    }

    async fn status(
        &self,
        _: Request<pb::StatusRequest>,
    ) -> Result<Response<pb::StatusResponse>, Status> {
        let node = &self.node;
        let me = node.self_status();
        let me_ref = &me;
        let probes = node.members().into_iter().map(|m| async move {
            if m.node_id == node.id {
                return me_ref.clone();
            }
            // Another node answering at the member's address is not the member (it refuses
            // the member's Raft messages), nor is a node of another cluster under the member's
            // id: the member is shown unreachable, its state naming what answers there (and
            // its cluster id that of the other cluster).
            let (state, cluster_id) = match node.probe(&m.address).await {
                Ok(s) if s.node_id != m.node_id => {
                    (format!("node-{}-here", s.node_id), String::new())
                }
                Ok(s) if !crate::apply::cluster::same(&s.cluster_id, &me_ref.cluster_id) => {
                    ("other-cluster".to_string(), s.cluster_id)
                }
                Ok(mut s) => {
                    s.role = m.role.clone();
                    return s;
                }
                Err(_) => ("unknown".to_string(), String::new()),
            };
            pb::NodeStatus {
                node_id: m.node_id,
                address: m.address,
                role: m.role,
                state,
                reachable: false,
                cluster_id,
                ..Default::default()
            }
        });
        let mut nodes = futures::future::join_all(probes).await;
        let leader_id = node.leader().map_or(0, |(l, _)| l);
        // Lag behind the leader's log; when the leader cannot be asked, behind the longest log
        // of those that answered.
        let leader_last = nodes
            .iter()
            .find(|n| n.node_id == leader_id && n.reachable)
            .or_else(|| {
                nodes
                    .iter()
                    .filter(|n| n.reachable)
                    .max_by_key(|n| n.last_log_index)
            })
            .map_or(0, |n| n.last_log_index);
        for n in nodes.iter_mut().filter(|n| n.reachable) {
            n.lag = leader_last.saturating_sub(n.applied_index);
        }
        nodes.sort_by_key(|n| n.node_id);
        Ok(Response::new(pb::StatusResponse {
            leader_id,
            term: me.term,
            cluster_id: me.cluster_id,
            nodes,
        }))
    }

    async fn members(
        &self,
        _: Request<pb::MembersRequest>,
    ) -> Result<Response<pb::MembersResponse>, Status> {
        Ok(Response::new(pb::MembersResponse {
            leader_id: self.node.leader().map_or(0, |(l, _)| l),
            members: self.node.members(),
        }))
    }

    async fn node_info(
        &self,
        _: Request<pb::NodeInfoRequest>,
    ) -> Result<Response<pb::NodeInfoResponse>, Status> {
        Ok(Response::new(pb::NodeInfoResponse {
            status: Some(self.node.self_status()),
        }))
    }

    async fn set_isolation(
        &self,
        req: Request<pb::IsolationRequest>,
    ) -> Result<Response<pb::IsolationResponse>, Status> {
        if !self.node.failpoints {
            return Err(Status::failed_precondition(
                "failpoints are off on this node; they are for fault injection and need \
                 `aide serve --failpoints`",
            ));
        }
        let req = req.into_inner();
        let mut cut = self
            .node
            .isolation
            .write()
            .unwrap_or_else(|p| p.into_inner());
        cut.peers = req.isolate_from.into_iter().collect();
        cut.one_way = req.one_way;
        let mut isolated_from: Vec<u64> = cut.peers.iter().copied().collect();
        isolated_from.sort_unstable();
        tracing::warn!(
            ?isolated_from,
            one_way = req.one_way,
            "failpoint: cut off from peers"
        );
        Ok(Response::new(pb::IsolationResponse { isolated_from }))
    }

    async fn forward(
        &self,
        req: Request<pb::ForwardRequest>,
    ) -> Result<Response<pb::ForwardResponse>, Status> {
        let envelopes: Vec<Envelope> = decode(&req.into_inner().envelopes)
            .map_err(|e| Status::invalid_argument(format!("forwarded envelopes: {e}")))?;
        match self.node.propose_forwarded(envelopes).await {
            Ok((results, log_index)) => Ok(Response::new(pb::ForwardResponse {
                results: encode(&results),
                log_index,
            })),
            Err(crate::node::ProposeError::NotLeader) => Err(Status::failed_precondition(format!(
                "node {} is not the leader",
                self.node.id
            ))),
            Err(e) => Err(NodeError::from(e).into()),
        }
    }

    async fn read_index(
        &self,
        _: Request<pb::ReadIndexRequest>,
    ) -> Result<Response<pb::ReadIndexResponse>, Status> {
        // Only the leader answers: a node that lost leadership must not send the asker on.
        if self.node.leader().is_none_or(|(id, _)| id != self.node.id) {
            return Err(Status::from(NodeError::Unavailable(format!(
                "node {} does not lead and cannot confirm a read",
                self.node.id
            ))));
        }
        match self.node.read_index().await {
            Ok(index) => Ok(Response::new(pb::ReadIndexResponse { index })),
            Err(e @ NodeError::GaveUp(_)) => Err(e.into()),
            Err(e) => Err(Status::from(NodeError::Unavailable(format!(
                "node {} cannot confirm a read: {e}",
                self.node.id
            )))),
        }
    }
}
