//! RaftService: the receiving end of the node-to-node Raft transport.

use super::pb::raft::{
    raft_service_server::{RaftService, RaftServiceServer},
    RaftPayload,
};
use crate::node::Node;
use crate::raft::network::MAX_MESSAGE_BYTES;
use crate::storage::codec::{decode, encode};
use std::sync::Arc;
use tonic::{Request, Response, Status};

/// The Raft transport service of `node`.
pub fn service(node: Arc<Node>) -> RaftServiceServer<Transport> {
    RaftServiceServer::new(Transport { node })
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES)
}

/// The handlers.
pub struct Transport {
    node: Arc<Node>,
}

fn payload<T: serde::de::DeserializeOwned>(req: Request<RaftPayload>) -> Result<T, Status> {
    decode(&req.into_inner().data)
        .map_err(|e| Status::invalid_argument(format!("raft message: {e}")))
}

impl Transport {
    /// Refuses traffic from a peer this node is cut off from by a failpoint.
    fn admit(&self, from: Option<crate::raft::NodeId>) -> Result<(), Status> {
        match from {
            Some(id) if crate::raft::network::isolated_from(&self.node.isolation, id) => Err(
                Status::unavailable(format!("node {id} is cut off by a failpoint")),
            ),
            _ => Ok(()),
        }
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
        let req: openraft::raft::AppendEntriesRequest<crate::raft::TypeConfig> = payload(req)?;
        self.admit(req.vote.leader_id().voted_for())?;
        let result = self.node.raft.append_entries(req).await;
        reply(&result)
    }

    async fn vote(&self, req: Request<RaftPayload>) -> Result<Response<RaftPayload>, Status> {
        let req: openraft::raft::VoteRequest<crate::raft::NodeId> = payload(req)?;
        self.admit(req.vote.leader_id().voted_for())?;
        let result = self.node.raft.vote(req).await;
        reply(&result)
    }

    async fn install_snapshot(
        &self,
        req: Request<RaftPayload>,
    ) -> Result<Response<RaftPayload>, Status> {
        let req: openraft::raft::InstallSnapshotRequest<crate::raft::TypeConfig> = payload(req)?;
        self.admit(req.vote.leader_id().voted_for())?;
        let result = self.node.raft.install_snapshot(req).await;
        reply(&result)
    }
}
