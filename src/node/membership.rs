//! Membership changes, done on the leader (any other node passes them on): a joining node
//! becomes a learner at once and a voter once it has caught up; removing a node is refused when
//! the voters left could not form a quorum.

use super::{Node, NodeError};
use crate::grpc::pb::cluster::cluster_service_client::ClusterServiceClient;
use crate::grpc::pb::cluster::{self as pb, NodeInfoRequest};
use crate::raft::NodeId;
use openraft::{BasicNode, ChangeMembers, ServerState};
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;
use tonic::{Code, Status};

/// A learner within this many entries of the leader's log counts as caught up.
pub const CAUGHT_UP_ENTRIES: u64 = 64;
/// How long a status probe of another node may take.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(1);

impl Node {
    /// The members as this node knows them: id, address, and whether each votes.
    pub fn members(&self) -> Vec<pb::Member> {
        let m = self.raft.metrics().borrow().membership_config.clone();
        let voters: BTreeSet<NodeId> = m.membership().voter_ids().collect();
        m.membership()
            .nodes()
            .map(|(id, n)| pb::Member {
                node_id: *id,
                address: n.addr.clone(),
                role: if voters.contains(id) {
                    "voter"
                } else {
                    "learner"
                }
                .to_string(),
            })
            .collect()
    }

    /// The leader's address when another node leads; `None` when this node leads.
    fn leader_elsewhere(&self) -> Result<Option<String>, NodeError> {
        match self.leader() {
            Some((id, _)) if id == self.id => Ok(None),
            Some((_, addr)) => Ok(Some(addr)),
            // Without a leader for longer than an election takes: say why now, rather than
            // have the client try until its time runs out.
            None => Err(self.no_leader_error(super::quorum::Serving::Write)),
        }
    }

    fn cluster_client(
        &self,
        addr: &str,
    ) -> Result<ClusterServiceClient<tonic::transport::Channel>, NodeError> {
        Ok(ClusterServiceClient::new(self.peer(addr)?))
    }

    /// Adds a node at `addr` as a learner; `asked` 0 picks the next free id. Joining again with
    /// the same address is answered with the id it already has. `itself`: the node asks for
    /// itself as it starts (empty, and not serving yet).
    pub async fn join(&self, asked: NodeId, addr: &str, itself: bool) -> Result<NodeId, NodeError> {
        if let Some(leader) = self.leader_elsewhere()? {
            let resp = self
                .cluster_client(&leader)?
                .join(self.node_request(pb::JoinRequest {
                    node_id: asked,
                    address: addr.to_string(),
                    itself,
                }))
                .await
                .map_err(|s| refusal_or_unavailable(&leader, s))?;
            return Ok(resp.into_inner().node_id);
        }
        // One join at a time, so two new nodes never get the same id.
        let _one_at_a_time = self.join_lock.lock().await;
        let current = self.members();
        if let Some(m) = current.iter().find(|m| m.address == addr) {
            // A node joins with an empty store. A learner that asks again (it restarted before
            // it knew its id) gets its id back; a voter must not come back empty under its old
            // id, with no memory of its log or its votes: that could lose committed writes.
            if m.role == "voter" && (asked == 0 || asked == m.node_id) {
                return Err(NodeError::FailedPrecondition(format!(
                    "address {addr} belongs to voter {id}, and a node that joins starts empty: \
                     a voter that lost its data must not vote again under its old id; remove it \
                     first (aide cluster remove {id}), then join",
                    id = m.node_id
                )));
            }
            if asked == 0 || asked == m.node_id {
                return Ok(m.node_id);
            }
            return Err(NodeError::FailedPrecondition(format!(
                "address {addr} already belongs to node {}; remove it first",
                m.node_id
            )));
        }
        // The node at `addr` runs under an id of its own (given with --node-id when it
        // started), and must be added under that one: a member under another id would never
        // hear from it. When it answers, its id is the one asked for, or must equal it.
        let mut asked = asked;
        if !itself {
            if let Some(runs_as) = self.joins_empty(addr).await?.filter(|&id| id != 0) {
                if asked != 0 && asked != runs_as {
                    return Err(NodeError::FailedPrecondition(format!(
                        "the node at {addr} runs as node {runs_as}, not node {asked}: join it \
                         without --node-id (or with --node-id {runs_as}), or start it again on an \
                         empty data directory with `--no-init --node-id {asked}`"
                    )));
                }
                asked = runs_as;
            }
        }
        // Ids are never given twice: a removed node's id stays its own, so that its messages,
        // should it run again, are told apart from a new node's (and refused).
        let removed = self
            .removed_ids
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let free = current
            .iter()
            .map(|m| m.node_id)
            .chain(removed.iter().copied())
            .max()
            .unwrap_or(0)
            + 1;
        let id = if asked != 0 {
            if let Some(m) = current.iter().find(|m| m.node_id == asked) {
                return Err(NodeError::FailedPrecondition(format!(
                    "node id {asked} is already the member at {}; start the new node on an \
                     empty data directory with `--no-init --node-id {free}` (or with --join and \
                     no --node-id or node_id in its config file, so that it is given one)",
                    m.address
                )));
            }
            if removed.contains(&asked) {
                return Err(NodeError::FailedPrecondition(format!(
                    "node id {asked} belonged to a node removed from this cluster, and ids are \
                     not given again; start the new node on an empty data directory with \
                     `--no-init --node-id {free}` (or with --join and no --node-id or node_id in its \
                     config file, so that it is given one)"
                )));
            }
            asked
        } else {
            free
        };
        self.raft
            .add_learner(
                id,
                BasicNode {
                    addr: addr.to_string(),
                },
                false,
            )
            .await
            .map_err(|e| NodeError::Raft(e.to_string()))?;
        tracing::info!(
            node = id,
            addr,
            "added a learner; it becomes a voter once caught up"
        );
        Ok(id)
    }

    /// Removes node `id`, refusing when the voters left could not reach a quorum; returns the
    /// members once the change is committed. A node that removed itself stops (see
    /// [`crate::node::RunningNode::removed`]).
    pub async fn remove(&self, id: NodeId) -> Result<Vec<pb::Member>, NodeError> {
        let members = self.remove_member(id).await?;
        if id == self.id {
            crate::raft::network::announce_removal(
                &self.store,
                &self.removal,
                format!("node {id} was removed from the cluster (it left, or `cluster remove {id}` was asked of it)"),
            );
        }
        Ok(members)
    }

    async fn remove_member(&self, id: NodeId) -> Result<Vec<pb::Member>, NodeError> {
        if let Some(leader) = self.leader_elsewhere()? {
            let r = self
                .cluster_client(&leader)?
                .remove(self.node_request(pb::RemoveRequest { node_id: id }))
                .await
                .map_err(|s| refusal_or_unavailable(&leader, s))?;
            return Ok(r.into_inner().members);
        }
        let members = self.members();
        let Some(target) = members.iter().find(|m| m.node_id == id) else {
            let gone = self
                .removed_ids
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .contains(&id);
            let ids: Vec<String> = members.iter().map(|m| m.node_id.to_string()).collect();
            return Err(NodeError::NotFound(format!(
                "node {id} is not a member of the cluster{} (the members are {})",
                if gone { ": it left or was removed" } else { "" },
                ids.join(", ")
            )));
        };
        let voters: Vec<&pb::Member> = members.iter().filter(|m| m.role == "voter").collect();
        // Probed together: each unreachable one costs a probe's timeout.
        let answered = futures::future::join_all(voters.iter().map(|m| async move {
            (m.node_id == self.id || self.probe(&m.address).await.is_ok()).then_some(m.node_id)
        }))
        .await;
        let reachable: BTreeSet<NodeId> = answered.into_iter().flatten().collect();
        // The change commits only once a quorum of the voters as they are now has it (and,
        // for a voter, a quorum of those that stay: Raft's joint consensus).
        let quorum = voters.len() / 2 + 1;
        if reachable.len() < quorum {
            return Err(NodeError::FailedPrecondition(format!(
                "removing node {id} must be agreed by {quorum} of the {} voters, but only {} of \
                 them can be reached ({}), so the change could never commit; bring the unreachable \
                 voters back first",
                voters.len(),
                reachable.len(),
                reachable
                    .iter()
                    .map(|n| format!("node {n}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
        let change = if target.role == "voter" {
            let remaining: Vec<&pb::Member> =
                voters.iter().copied().filter(|m| m.node_id != id).collect();
            if remaining.is_empty() {
                return Err(NodeError::FailedPrecondition(format!(
                    "node {id} is the last voter; removing it would leave no cluster"
                )));
            }
            let left = remaining
                .iter()
                .filter(|m| reachable.contains(&m.node_id))
                .count();
            let quorum = remaining.len() / 2 + 1;
            if left < quorum {
                return Err(NodeError::FailedPrecondition(format!(
                    "removing node {id} would leave {} voters of which only {left} can be reached, \
                     and a quorum needs {quorum}; bring the unreachable nodes back (or remove them) first",
                    remaining.len()
                )));
            }
            ChangeMembers::RemoveVoters(BTreeSet::from([id]))
        } else {
            ChangeMembers::RemoveNodes(BTreeSet::from([id]))
        };
        self.raft
            .change_membership(change, false)
            .await
            .map_err(|e| NodeError::Raft(e.to_string()))?;
        tracing::info!(node = id, "removed a node from the cluster");
        Ok(self.members())
    }

    /// What node `addr` says of itself.
    pub async fn probe(&self, addr: &str) -> Result<pb::NodeStatus, NodeError> {
        self.probe_status(addr)
            .await
            .map_err(|s| NodeError::Unavailable(format!("{addr}: {}", s.message())))
    }

    /// [`Node::probe`], with the status code of a failure.
    async fn probe_status(&self, addr: &str) -> Result<pb::NodeStatus, Status> {
        let mut req = self.node_request(NodeInfoRequest {});
        req.set_timeout(PROBE_TIMEOUT);
        let mut client = self
            .cluster_client(addr)
            .map_err(|e| Status::unavailable(e.to_string()))?;
        let resp = tokio::time::timeout(PROBE_TIMEOUT, client.node_info(req))
            .await
            .map_err(|_| {
                Status::unavailable(format!("did not answer within {PROBE_TIMEOUT:?}"))
            })??;
        resp.into_inner()
            .status
            .ok_or_else(|| Status::unavailable("sent no status"))
    }

    /// Refuses to add the node at `addr` when it holds data: a node joins empty, and one with a
    /// log of its own (started without --no-init or --join, it made a cluster of its own) would
    /// refuse this cluster's messages or mix its data with this cluster's. One that does not
    /// answer yet is added, and catches up once it runs. The id the node runs as, when it
    /// answered.
    async fn joins_empty(&self, addr: &str) -> Result<Option<NodeId>, NodeError> {
        let refused = |what: String| {
            Err(NodeError::FailedPrecondition(format!(
                "the node at {addr} is not empty: {what} (a node started without --no-init or \
                 --join makes a cluster of its own), and a node joins with none; start it on an \
                 empty data directory with --no-init, then join it, or with --join ADDR"
            )))
        };
        let s = match self.probe_status(addr).await {
            Ok(s) => s,
            // Only a node with API keys of its own refuses the cluster's node credentials.
            Err(s) if matches!(s.code(), Code::Unauthenticated | Code::PermissionDenied) => {
                return refused(format!(
                    "it refuses this cluster's node credentials, so it has API keys of its own \
                     ({})",
                    s.message()
                ));
            }
            Err(_) => return Ok(None),
        };
        let ours = crate::apply::cluster::known(&self.store).map_err(NodeError::Store)?;
        if !s.cluster_id.is_empty() && ours.as_deref() == Some(s.cluster_id.as_str()) {
            return Err(NodeError::FailedPrecondition(format!(
                "the node at {addr} is node {} of this cluster already (under another address)",
                s.node_id
            )));
        }
        if s.last_log_index > 0 || !s.cluster_id.is_empty() {
            let of = if s.cluster_id.is_empty() {
                String::new()
            } else {
                format!(" of cluster {}", s.cluster_id)
            };
            return refused(format!(
                "it holds the data{of} up to log index {}",
                s.last_log_index
            ));
        }
        Ok(Some(s.node_id))
    }

    /// What this node knows of itself.
    pub fn self_status(&self) -> pb::NodeStatus {
        let m = self.raft.metrics().borrow().clone();
        let voter = m
            .membership_config
            .membership()
            .voter_ids()
            .any(|v| v == self.id);
        pb::NodeStatus {
            node_id: self.id,
            address: self.addr.clone(),
            role: if voter { "voter" } else { "learner" }.to_string(),
            state: match m.state {
                ServerState::Leader => "leader",
                ServerState::Follower => "follower",
                ServerState::Candidate => "candidate",
                ServerState::Learner => "learner",
                ServerState::Shutdown => "shutdown",
            }
            .to_string(),
            term: m.current_term,
            last_log_index: m.last_log_index.unwrap_or(0),
            // What reads here reflect: the batch of openraft's last applied entry may still
            // be landing in the store.
            applied_index: self.applied_index(),
            lag: 0,
            reachable: true,
            no_quorum_ms: self
                .quorum_silence()
                .map_or(0, |silent| silent.as_millis() as u64),
            no_leader_ms: self.leaderless_for().map_or(0, |d| d.as_millis() as u64),
            cluster_id: crate::apply::cluster::known(&self.store)
                .ok()
                .flatten()
                .map_or_else(String::new, |id| id.to_string()),
        }
    }
}

/// Runs until the node stops: while this node leads, promotes every learner that has caught up.
pub async fn promote_learners(node: Arc<Node>) {
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    loop {
        tick.tick().await;
        let m = node.raft.metrics().borrow().clone();
        if m.current_leader != Some(node.id) {
            continue;
        }
        let last = m.last_log_index.unwrap_or(0);
        let Some(replication) = &m.replication else {
            continue;
        };
        let ready: BTreeSet<NodeId> = m
            .membership_config
            .membership()
            .learner_ids()
            .filter(|id| {
                replication
                    .get(id)
                    .and_then(|matched| *matched)
                    .is_some_and(|l| l.index + CAUGHT_UP_ENTRIES >= last)
            })
            .collect();
        if ready.is_empty() {
            continue;
        }
        match node
            .raft
            .change_membership(ChangeMembers::AddVoterIds(ready.clone()), true)
            .await
        {
            Ok(_) => tracing::info!(nodes = ?ready, "promoted caught-up learners to voters"),
            Err(e) => tracing::warn!(nodes = ?ready, error = %e, "promoting learners failed"),
        }
    }
}

/// A refusal the leader gave (kept as it is, so it is not retried), else the leader could not
/// be asked.
fn refusal_or_unavailable(leader: &str, s: tonic::Status) -> NodeError {
    match s.code() {
        tonic::Code::FailedPrecondition => NodeError::FailedPrecondition(s.message().to_string()),
        tonic::Code::NotFound => NodeError::NotFound(s.message().to_string()),
        _ => NodeError::Unavailable(format!("the leader at {leader}: {}", s.message())),
    }
}
