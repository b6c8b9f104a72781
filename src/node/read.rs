//! The read barrier: before a read is served from the local store, this makes sure the store
//! reflects what the client asked for — everything committed before the read (linearizable, the
//! default), at least a given log index, or whatever this node has (stale).

use super::quorum::Serving;
use super::{Node, NodeError};
use crate::grpc::pb::cluster::cluster_service_client::ClusterServiceClient;
use crate::grpc::pb::cluster::ReadIndexRequest;
use openraft::error::{CheckIsLeaderError, RaftError};
use std::sync::Weak;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

/// How long a read waits for this node to apply the index it needs.
pub const READ_WAIT: Duration = Duration::from_secs(5);

/// Marks a refusal of a min-index the cluster never committed ([`NodeError::ForeignIndex`]): a
/// client that only remembered the index reads again without it.
pub const FOREIGN_INDEX: &str = "x-aide-foreign-index";

/// How long a read waits for its min-index before it asks whether the cluster ever committed it.
const FOREIGN_CHECK: Duration = Duration::from_millis(200);

/// How fresh a read must be.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Consistency {
    /// Reflects every write acknowledged before the read began (read index through the leader).
    #[default]
    Linearizable,
    /// Whatever this node has applied.
    Stale,
}

/// What a read asks for.
#[derive(Debug, Clone, Copy, Default)]
pub struct ReadOptions {
    pub consistency: Consistency,
    /// Wait until this node has applied at least this index.
    pub min_index: Option<u64>,
}

impl Node {
    /// Waits until a read with `opts` may be served here; returns the applied index it reflects.
    pub async fn read_barrier(&self, opts: ReadOptions) -> Result<u64, NodeError> {
        // Even a stale read reflects every write this node has applied and answered (whose
        // changes may still be held in memory: waiting for them has them written at once); a
        // write it forwarded to the leader is read back with its index as the min-index.
        let floor = opts.min_index.unwrap_or(0).max(self.answered_index());
        match opts.min_index {
            Some(min) if min > self.applied_index() => {
                let started = tokio::time::Instant::now();
                if let Ok(reached) =
                    tokio::time::timeout(FOREIGN_CHECK, self.wait_applied(floor)).await
                {
                    reached?;
                } else {
                    self.check_not_foreign(min).await?;
                    let left = READ_WAIT.saturating_sub(started.elapsed());
                    self.wait_applied_within(floor, left).await?;
                }
            }
            _ => self.wait_applied(floor).await?,
        }
        if opts.consistency == Consistency::Linearizable {
            let index = self.read_index().await?;
            self.wait_applied(index).await?;
        }
        Ok(self.applied_index())
    }

    /// Refuses a min-index this cluster never committed: every index a client is given was
    /// committed, and the read index covers all of them, so one past it comes from another
    /// cluster (one that ran at the same addresses before, whose index a client kept). Without
    /// a leader to ask, the read just goes on waiting.
    async fn check_not_foreign(&self, min: u64) -> Result<(), NodeError> {
        if let Ok(Ok(read)) = tokio::time::timeout(Duration::from_secs(1), self.read_index()).await
        {
            if read < min {
                return Err(NodeError::ForeignIndex { index: min, read });
            }
        }
        Ok(())
    }

    /// The index a linearizable read must wait for: the leader's commit index after it confirmed
    /// its leadership with a quorum. Concurrent reads share one: each round is asked for after
    /// every read it answers began, so it is as fresh as each of them needs.
    pub async fn read_index(&self) -> Result<u64, NodeError> {
        let (tx, rx) = oneshot::channel();
        self.reads
            .tx
            .send(tx)
            .map_err(|_| NodeError::ShuttingDown)?;
        rx.await.map_err(|_| NodeError::ShuttingDown)?
    }

    /// One read index, from this node if it leads, else from the leader.
    async fn read_index_once(&self) -> Result<u64, NodeError> {
        match self.raft.get_read_log_id().await {
            Ok((read, _)) => {
                let index = read.map_or(0, |l| l.index);
                // Confirmed in the leadership this node restored at start (the read log id's
                // term says which leadership confirmed it, which the metrics, read later, may
                // not), it may have acknowledged any entry of its log: a read reflects them all.
                let term = read.map(|l| l.leader_id.term);
                Ok(match self.restored_lead {
                    Some((restored, last)) if term == Some(restored) => index.max(last),
                    _ => index,
                })
            }
            Err(RaftError::APIError(CheckIsLeaderError::ForwardToLeader(f))) => {
                let Some(node) = f.leader_node.filter(|_| self.leader_silence().is_none()) else {
                    // Without a leader for longer than an election takes: say why, and that
                    // trying again at once will not help.
                    return Err(self.no_leader_error(Serving::Read));
                };
                if let Some(id) = f.leader_id {
                    if crate::raft::network::isolated(&self.isolation, id) {
                        return Err(NodeError::Unavailable(format!(
                            "the leader, node {id}, is cut off by a failpoint"
                        )));
                    }
                }
                let mut client = ClusterServiceClient::new(self.peer(&node.addr)?);
                let mut req = self.node_request(ReadIndexRequest {});
                req.set_timeout(READ_WAIT);
                let resp = client.read_index(req).await.map_err(|s| {
                    if s.metadata().contains_key(super::GAVE_UP) {
                        return NodeError::GaveUp(s.message().to_string());
                    }
                    NodeError::Unavailable(format!(
                        "the leader at {} could not confirm a read: {}",
                        node.addr,
                        s.message()
                    ))
                })?;
                Ok(resp.into_inner().index)
            }
            Err(RaftError::APIError(CheckIsLeaderError::QuorumNotEnough(_))) => {
                Err(match self.no_quorum_text(Serving::Read) {
                    Some(text) => NodeError::GaveUp(text),
                    None => NodeError::Unavailable(
                        "no quorum to confirm a linearizable read just now: a majority of the \
                         voters did not answer the leader"
                            .to_string(),
                    ),
                })
            }
            Err(RaftError::Fatal(_)) => Err(NodeError::ShuttingDown),
        }
    }

    /// Waits until this node has applied `index`.
    pub async fn wait_applied(&self, index: u64) -> Result<(), NodeError> {
        self.wait_applied_within(index, READ_WAIT).await
    }

    /// Waits up to `limit` until this node has applied `index`.
    pub(super) async fn wait_applied_within(
        &self,
        index: u64,
        limit: Duration,
    ) -> Result<(), NodeError> {
        // Its changes may be held in memory: have them written now (or once applied).
        let _wanted = (self.applied_index() < index).then(|| self.landing.want(index));
        let mut applied = self.applied.clone();
        let failed = || {
            self.landing_failed
                .load(std::sync::atomic::Ordering::Acquire)
        };
        let reached = async {
            applied
                .wait_for(|a| *a >= index || failed())
                .await
                .map(|_| ())
        };
        match tokio::time::timeout(limit, reached).await {
            Ok(Ok(_)) if self.applied_index() < index && failed() => Err(NodeError::Unavailable(
                "this node could not write applied entries to its store (its log says why); \
                 ask another node"
                    .into(),
            )),
            Ok(Ok(_)) => Ok(()),
            Ok(Err(_)) => Err(NodeError::ShuttingDown),
            Err(_) => Err(NodeError::IndexTimeout(limit, index, self.applied_index())),
        }
    }
}

/// The term and last log index of a node whose leadership openraft restores at start. A node
/// whose saved vote is a committed one for itself leads again at once, without an election,
/// knowing the commit index it last saved, which is not flushed and can be older than entries it
/// acknowledged before it stopped. Its read index (that commit index, or the first entry of its
/// term) would then miss those writes, so the reads that leadership confirms wait for every entry
/// of its log at start: entries of its own term, which it commits as its followers come back.
pub(crate) async fn restored_leadership(
    log: &mut crate::raft::log_store::LogStore,
    id: crate::raft::NodeId,
) -> Result<Option<(u64, u64)>, crate::raft::StorageError> {
    use openraft::storage::RaftLogStorage;
    let Some(vote) = log.read_vote().await? else {
        return Ok(None);
    };
    if !vote.committed || vote.leader_id.node_id != id {
        return Ok(None);
    }
    let last = log.get_log_state().await?.last_log_id;
    Ok(Some((vote.leader_id.term, last.map_or(0, |l| l.index))))
}

type ReadIndexReply = oneshot::Sender<Result<u64, NodeError>>;

/// Reads waiting for a read index.
pub(crate) struct ReadIndexQueue {
    tx: mpsc::UnboundedSender<ReadIndexReply>,
}

/// The receiving end of a [`ReadIndexQueue`].
pub(crate) struct ReadIndexRounds {
    rx: mpsc::UnboundedReceiver<ReadIndexReply>,
}

impl ReadIndexQueue {
    pub(crate) fn new() -> (ReadIndexQueue, ReadIndexRounds) {
        let (tx, rx) = mpsc::unbounded_channel();
        (ReadIndexQueue { tx }, ReadIndexRounds { rx })
    }
}

impl ReadIndexRounds {
    /// Until the node is gone: takes every read waiting, asks one read index for all of them,
    /// and answers each; reads that arrive meanwhile wait for the next round.
    pub(crate) async fn run(mut self, node: Weak<Node>) {
        while let Some(first) = self.rx.recv().await {
            let mut waiting = vec![first];
            while let Ok(w) = self.rx.try_recv() {
                waiting.push(w);
            }
            let Some(strong) = node.upgrade() else { return };
            let outcome = strong.read_index_once().await;
            drop(strong);
            for w in waiting {
                let _ = w.send(copy(&outcome));
            }
        }
    }
}

/// The same outcome for another waiting read.
fn copy(r: &Result<u64, NodeError>) -> Result<u64, NodeError> {
    match r {
        Ok(i) => Ok(*i),
        Err(NodeError::NoLeader) => Err(NodeError::NoLeader),
        Err(NodeError::ShuttingDown) => Err(NodeError::ShuttingDown),
        Err(NodeError::GaveUp(m)) => Err(NodeError::GaveUp(m.clone())),
        Err(e) => Err(NodeError::Unavailable(e.to_string())),
    }
}
