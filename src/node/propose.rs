//! The write path. A handler hands [`Node::write`] a function that builds its command from the
//! time and stamp fixed here; the envelope is proposed through Raft on this node when it leads,
//! or forwarded to the leader. Across a leader change the same envelope is retried: its request
//! id makes the state machine apply it once.

use super::quorum::Serving;
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
#[derive(Debug, Clone, Default)]
pub struct WriteMeta {
    pub project: String,
    /// Empty: generated here (the write is then not recognised if the client retries it).
    pub request_id: String,
    /// The caller's API key accessor id (empty: none).
    pub accessor: String,
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
            accessor: meta.accessor.clone(),
        };
        let (mut results, index) = self.propose(vec![env]).await?;
        match results.pop() {
            Some(CommandResult::Rejected(r)) => Err(r.into()),
            Some(r) => Ok((r, index)),
            None => Err(NodeError::Raft("the proposal returned no result".into())),
        }
    }

    /// Proposes envelopes, merged with other concurrent proposals into one log entry, through
    /// the leader wherever it is; retried across leader changes until [`WRITE_TIMEOUT`].
    pub async fn propose(
        &self,
        envelopes: Vec<Envelope>,
    ) -> Result<(Vec<CommandResult>, u64), NodeError> {
        let deadline = Instant::now() + WRITE_TIMEOUT;
        let mut metrics = self.raft.metrics();
        loop {
            let error = match self.batcher.submit(envelopes.clone(), false).await {
                Ok(done) => return Ok(done),
                Err(e) if e.retryable() => e,
                Err(e) => return Err(e.into()),
            };
            // No leader for longer than an election takes: say so now rather than when the
            // client's time runs out. (A leader that cannot commit says so itself: GaveUp.)
            if let (ProposeError::NoLeader, Some(d)) = (&error, self.leaderless_for()) {
                return Err(NodeError::GaveUp(self.no_leader_text(d, Serving::Write)));
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(error.into());
            }
            // Wait for the cluster to change (an election, a new leader), briefly.
            let _ =
                tokio::time::timeout(left.min(Duration::from_millis(200)), metrics.changed()).await;
        }
    }

    /// One attempt: propose on this node if it leads, else forward to the leader.
    pub(crate) async fn propose_once(
        &self,
        envelopes: Vec<Envelope>,
    ) -> Result<(Vec<CommandResult>, u64), ProposeError> {
        match self.leader() {
            Some((id, _)) if id == self.id => self.propose_local(envelopes).await,
            Some((id, _)) if crate::raft::network::isolated(&self.isolation, id) => {
                Err(ProposeError::Unavailable(format!(
                    "the leader, node {id}, is cut off by a failpoint"
                )))
            }
            Some((_, addr)) => self.forward(&addr, &envelopes).await,
            None => Err(ProposeError::NoLeader),
        }
    }

    /// Proposes envelopes another node forwarded, merged with this node's own, only here.
    pub(crate) async fn propose_forwarded(
        &self,
        envelopes: Vec<Envelope>,
    ) -> Result<(Vec<CommandResult>, u64), ProposeError> {
        self.batcher.submit(envelopes, true).await
    }

    /// Proposes on this node, which must lead.
    pub(crate) async fn propose_local(
        &self,
        envelopes: Vec<Envelope>,
    ) -> Result<(Vec<CommandResult>, u64), ProposeError> {
        // A leader cut off from the others may never see its entry committed nor cut away (it
        // may catch up later by a snapshot): the write is given up, to be retried with its
        // request id, rather than waited for forever; at once when the leader has heard from
        // no majority of the voters for longer than an election takes.
        if let Some(text) = self.no_quorum_text(Serving::Write) {
            return Err(ProposeError::GaveUp(text));
        }
        let started = Instant::now();
        let write = self.raft.client_write(Proposal {
            envelopes: envelopes.into(),
        });
        tokio::pin!(write);
        let written = loop {
            tokio::select! {
                written = &mut write => break written,
                _ = tokio::time::sleep(Duration::from_millis(200)) => {}
            }
            if let Some(text) = self.no_quorum_text(Serving::Write) {
                return Err(ProposeError::GaveUp(text));
            }
            if started.elapsed() >= WRITE_TIMEOUT {
                return Err(ProposeError::Unavailable(format!(
                    "the write was not committed within {WRITE_TIMEOUT:?} (the leader may be cut \
                     off); it may still be applied, and a retry with its request id is applied \
                     once"
                )));
            }
        };
        match written {
            Ok(resp) => Ok((resp.data.results, resp.log_id.index)),
            Err(RaftError::APIError(ClientWriteError::ForwardToLeader(_))) => {
                Err(ProposeError::NotLeader)
            }
            Err(RaftError::APIError(e)) => Err(ProposeError::Raft(e.to_string())),
            Err(RaftError::Fatal(_)) => Err(ProposeError::ShuttingDown),
        }
    }

    async fn forward(
        &self,
        addr: &str,
        envelopes: &[Envelope],
    ) -> Result<(Vec<CommandResult>, u64), ProposeError> {
        let channel = self
            .peer(addr)
            .map_err(|e| ProposeError::Unavailable(e.to_string()))?;
        let mut client = ClusterServiceClient::new(channel)
            .max_decoding_message_size(crate::raft::network::MAX_MESSAGE_BYTES)
            .max_encoding_message_size(crate::raft::network::MAX_MESSAGE_BYTES);
        let mut req = self.node_request(ForwardRequest {
            envelopes: encode(envelopes),
        });
        req.set_timeout(WRITE_TIMEOUT);
        // Only an answer from the leader that it failed the write, or that it gave up waiting
        // for a quorum, is final; a lost connection (unavailable, cancelled, unknown) or a
        // leader that moved is tried again.
        let resp = client.forward(req).await.map_err(|s| match s.code() {
            _ if s.metadata().contains_key(super::GAVE_UP) => {
                ProposeError::GaveUp(s.message().to_string())
            }
            // "node N is not the leader": a leader change under way.
            tonic::Code::FailedPrecondition => ProposeError::NotLeader,
            tonic::Code::Internal | tonic::Code::InvalidArgument | tonic::Code::Unimplemented => {
                ProposeError::Raft(format!(
                    "the leader at {addr} failed the write: {}",
                    s.message()
                ))
            }
            _ => ProposeError::Unavailable(format!(
                "the leader at {addr} did not take the write: {}",
                s.message()
            )),
        })?;
        let resp = resp.into_inner();
        let results: Vec<CommandResult> =
            decode(&resp.results).map_err(|e| ProposeError::Raft(e.to_string()))?;
        Ok((results, resp.log_index))
    }
}

/// Why one attempt to propose failed.
#[derive(Debug, Clone)]
pub(crate) enum ProposeError {
    /// No leader is known.
    NoLeader,
    /// This node stopped leading while proposing.
    NotLeader,
    /// The leader could not be reached or did not take it.
    Unavailable(String),
    /// The leader waited its patience for a quorum (here, or when it answered a forwarded
    /// write): trying again at once would only add entries it cannot commit.
    GaveUp(String),
    Raft(String),
    ShuttingDown,
}

impl ProposeError {
    /// Whether trying again (after the cluster settles) may succeed.
    pub(crate) fn retryable(&self) -> bool {
        matches!(
            self,
            ProposeError::NoLeader | ProposeError::NotLeader | ProposeError::Unavailable(_)
        )
    }
}

impl From<ProposeError> for NodeError {
    fn from(e: ProposeError) -> NodeError {
        match e {
            ProposeError::NoLeader | ProposeError::NotLeader => NodeError::NoLeader,
            ProposeError::Unavailable(m) => NodeError::Unavailable(m),
            ProposeError::GaveUp(m) => NodeError::GaveUp(m),
            ProposeError::Raft(m) => NodeError::Raft(m),
            ProposeError::ShuttingDown => NodeError::ShuttingDown,
        }
    }
}
