//! The write path. A handler hands [`Node::write`] a function that builds its command from the
//! time and stamp fixed here; the envelope is proposed through Raft on this node when it leads,
//! or forwarded to the leader. Across a leader change the same envelope is retried: its request
//! id makes the state machine apply it once.

use super::{Node, NodeError, Tick};
use crate::command::validate::Invalid;
use crate::command::{Command, CommandResult, Envelope, Proposal};
use crate::grpc::pb::cluster::cluster_service_client::ClusterServiceClient;
use crate::grpc::pb::cluster::ForwardRequest;
use crate::storage::codec::{decode, encode};
use openraft::error::{ClientWriteError, RaftError};
use std::time::{Duration, Instant};

/// How long a write keeps trying to reach a leader before it fails.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// Where a write comes from: its project and request id.
#[derive(Debug, Clone)]
pub struct WriteMeta {
    pub project: String,
    /// Empty: generated here (the write is then not recognised if the client retries it).
    pub request_id: String,
}

impl Node {
    /// Fixes the time and stamp, builds the command, proposes it, and returns its result with
    /// the log index it was applied at. A command the state machine rejected is an error.
    pub async fn write(
        &self,
        meta: &WriteMeta,
        build: impl FnOnce(Tick) -> Result<Command, Invalid>,
    ) -> Result<(CommandResult, u64), NodeError> {
        let tick = self.clock.tick();
        let command = build(tick)?;
        let request_id = if meta.request_id.is_empty() {
            ulid::Ulid::new().to_string()
        } else {
            meta.request_id.clone()
        };
        let env = Envelope {
            request_id,
            project: meta.project.clone(),
            now: tick.now,
            stamp: tick.stamp,
            command,
        };
        let (mut results, index) = self.propose(vec![env]).await?;
        match results.pop() {
            Some(CommandResult::Rejected(r)) => Err(r.into()),
            Some(r) => Ok((r, index)),
            None => Err(NodeError::Raft("the proposal returned no result".into())),
        }
    }

    /// Proposes envelopes as one log entry, through the leader wherever it is.
    pub async fn propose(
        &self,
        envelopes: Vec<Envelope>,
    ) -> Result<(Vec<CommandResult>, u64), NodeError> {
        let deadline = Instant::now() + WRITE_TIMEOUT;
        let mut metrics = self.raft.metrics();
        loop {
            let last_error;
            match self.propose_local(envelopes.clone()).await {
                Ok(done) => return Ok(done),
                Err(NotLeader::Leader(addr)) => match self.forward(&addr, &envelopes).await {
                    Ok(done) => return Ok(done),
                    Err(e @ (NodeError::Unavailable(_) | NodeError::NoLeader)) => last_error = e,
                    Err(e) => return Err(e),
                },
                Err(NotLeader::Unknown) => last_error = NodeError::NoLeader,
                Err(NotLeader::Failed(e)) => return Err(e),
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(last_error);
            }
            // Wait for the cluster to change (an election, a new leader), briefly.
            let _ =
                tokio::time::timeout(left.min(Duration::from_millis(200)), metrics.changed()).await;
        }
    }

    /// Proposes on this node if it leads.
    pub(crate) async fn propose_local(
        &self,
        envelopes: Vec<Envelope>,
    ) -> Result<(Vec<CommandResult>, u64), NotLeader> {
        match self.raft.client_write(Proposal { envelopes }).await {
            Ok(resp) => Ok((resp.data.results, resp.log_id.index)),
            Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f))) => match f.leader_node {
                Some(node) if f.leader_id != Some(self.id) => Err(NotLeader::Leader(node.addr)),
                _ => Err(NotLeader::Unknown),
            },
            Err(RaftError::APIError(e)) => Err(NotLeader::Failed(NodeError::Raft(e.to_string()))),
            Err(RaftError::Fatal(_)) => Err(NotLeader::Failed(NodeError::ShuttingDown)),
        }
    }

    async fn forward(
        &self,
        addr: &str,
        envelopes: &[Envelope],
    ) -> Result<(Vec<CommandResult>, u64), NodeError> {
        let mut client = ClusterServiceClient::new(self.peer(addr)?)
            .max_decoding_message_size(crate::raft::network::MAX_MESSAGE_BYTES)
            .max_encoding_message_size(crate::raft::network::MAX_MESSAGE_BYTES);
        let mut req = tonic::Request::new(ForwardRequest {
            envelopes: encode(envelopes),
        });
        req.set_timeout(WRITE_TIMEOUT);
        let resp = client.forward(req).await.map_err(|s| match s.code() {
            tonic::Code::Unavailable
            | tonic::Code::FailedPrecondition
            | tonic::Code::DeadlineExceeded => NodeError::Unavailable(format!(
                "the leader at {addr} did not take the write: {}",
                s.message()
            )),
            _ => NodeError::Raft(format!(
                "the leader at {addr} failed the write: {}",
                s.message()
            )),
        })?;
        let resp = resp.into_inner();
        let results: Vec<CommandResult> = decode(&resp.results)?;
        Ok((results, resp.log_index))
    }
}

/// Why a proposal did not happen on this node.
pub(crate) enum NotLeader {
    /// Another node leads, at this address.
    Leader(String),
    /// No leader is known.
    Unknown,
    Failed(NodeError),
}
