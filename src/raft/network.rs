//! The Raft network over tonic: each request is bincode-encoded into a `RaftPayload` and sent to
//! the target node's `RaftService`; the answer carries the remote result, errors included.

use super::{NodeId, TypeConfig};
use crate::grpc::pb::raft::raft_service_client::RaftServiceClient;
use crate::grpc::pb::raft::RaftPayload;
use crate::storage::codec::{decode, encode};
use openraft::error::{
    InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::BasicNode;
use serde::de::DeserializeOwned;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tonic::transport::{Channel, Endpoint};

/// The largest Raft message a node accepts or sends: snapshot chunks and entry batches fit in it.
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024 * 1024;

/// The metadata that names the node a Raft message is for: a node refuses messages for another
/// id, so that a process answering at a member's address (the member's data lost and a fresh
/// node started there, or two members' addresses swapped) is never taken for that member.
pub const TARGET: &str = "x-aide-raft-target";

/// The peers a node is cut off from by a failpoint (`aide serve --failpoints`, for fault
/// injection): it sends them no Raft traffic, and unless the cut is one-way, accepts none of theirs.
pub type Isolation = std::sync::Arc<std::sync::RwLock<Cut>>;

/// What a failpoint cuts.
#[derive(Debug, Default)]
pub struct Cut {
    pub peers: std::collections::HashSet<NodeId>,
    /// Only what this node sends is lost; what the peers send still arrives.
    pub one_way: bool,
}

/// Whether traffic to `peer` is cut by `isolation`.
pub fn isolated(isolation: &Isolation, peer: NodeId) -> bool {
    isolation
        .read()
        .unwrap_or_else(|p| p.into_inner())
        .peers
        .contains(&peer)
}

/// Whether traffic from `peer` is cut by `isolation`.
pub fn isolated_from(isolation: &Isolation, peer: NodeId) -> bool {
    let cut = isolation.read().unwrap_or_else(|p| p.into_inner());
    !cut.one_way && cut.peers.contains(&peer)
}

/// Makes the clients openraft talks to each peer with, over the node's shared [`Channels`]:
/// openraft asks for a client for every leadership check of a linearizable read (besides one per
/// replication stream), and a new connection each time would cost every such read a TCP and
/// HTTP/2 handshake with each follower.
#[derive(Clone)]
pub struct Network {
    pub isolation: Isolation,
    /// The node's store: where the node secret its calls carry is kept.
    pub store: crate::storage::Store,
    pub channels: Channels,
    /// Set, with the reason, once this node learns it was removed from the cluster.
    pub removal: Removal,
    /// This node's log: appends name its last index ([`LAST_LOG`]).
    pub log: super::log_store::LogStore,
}

/// The metadata of an append that names the index of the sender's last log entry: a node that
/// started empty votes only once its log reaches it (`node::vote`).
pub const LAST_LOG: &str = "x-aide-last-log";

/// Where a node learns that it was removed from the cluster: see [`announce_removal`].
pub type Removal = Arc<tokio::sync::watch::Sender<Option<String>>>;

/// The metadata of a refusal that says the sender was removed from the cluster.
pub const REMOVED: &str = "x-aide-removed";

/// Records in `store`'s data directory that this node was removed, and `why`, then tells
/// whoever waits on `removal` (the first time only): the node stops and does not serve again.
pub fn announce_removal(store: &crate::storage::Store, removal: &Removal, why: String) {
    if removal.borrow().is_some() {
        return;
    }
    tracing::warn!("{why}; this node stops");
    if let Err(e) = store.mark_removed(&why) {
        tracing::error!(error = %e, "could not record the removal in the data directory");
    }
    removal.send_replace(Some(why));
}

/// Which of a peer's two connections a call takes.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub enum Lane {
    /// Appends, heartbeats, votes, forwarded writes and other node-to-node calls.
    Raft,
    /// Snapshots, so that their chunks do not hold up heartbeats and leadership checks.
    Snapshot,
}

/// The channels a node keeps to other nodes, by address and lane, each made again when the
/// TLS settings change. Cheap to clone (shared).
#[derive(Clone, Default)]
pub struct Channels(Arc<Mutex<ChannelMap>>);

/// (address, lane) -> (the TLS settings' generation it was made with, the channel).
type ChannelMap = HashMap<(String, Lane), (u64, Channel)>;

impl Channels {
    /// The channel to `addr` on `lane` with the TLS settings now.
    pub fn get(&self, addr: &str, lane: Lane) -> Result<Channel, String> {
        let generation = crate::tls::generation();
        let mut channels = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let key = (addr.to_string(), lane);
        if let Some((g, c)) = channels.get(&key) {
            if *g == generation {
                return Ok(c.clone());
            }
        }
        let c = channel(addr).map_err(|e| format!("bad peer address {addr:?}: {e}"))?;
        channels.insert(key, (generation, c.clone()));
        Ok(c)
    }
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = Peer;

    async fn new_client(&mut self, target: NodeId, node: &BasicNode) -> Peer {
        Peer {
            target,
            addr: node.addr.clone(),
            network: self.clone(),
        }
    }
}

/// A lazily connected channel to `addr` (`host:port`).
pub fn channel(addr: &str) -> Result<Channel, tonic::transport::Error> {
    let tls = crate::tls::client();
    let coalesce = tls.is_none();
    let endpoint = match tls {
        Some(tls) => Endpoint::from_shared(format!("https://{addr}"))?.tls_config(tls)?,
        None => Endpoint::from_shared(format!("http://{addr}"))?,
    };
    Ok(endpoint
        .connect_timeout(Duration::from_secs(1))
        .http2_keep_alive_interval(Duration::from_secs(10))
        .keep_alive_while_idle(true)
        .connect_with_connector_lazy(crate::wire::Connector { coalesce }))
}

/// The way to one peer: each call takes the network's current connection for it.
pub struct Peer {
    target: NodeId,
    addr: String,
    network: Network,
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct TransportError(String);

impl Peer {
    /// The way to node `target` at `addr`.
    pub fn new(target: NodeId, addr: String, network: Network) -> Peer {
        Peer {
            target,
            addr,
            network,
        }
    }

    /// Asks the peer whether it would vote for this node (see [`super::prevote`]), waiting at
    /// most `limit`. A node of a version before pre-votes answers yes: it votes by openraft's
    /// rules alone.
    pub async fn pre_vote(
        &mut self,
        req: &super::prevote::PreVoteRequest,
        limit: Duration,
    ) -> Result<super::prevote::PreVoteAnswer, String> {
        let option = RPCOption::new(limit);
        match self
            .call::<_, _, openraft::error::Infallible>(Rpc::PreVote, req, &option)
            .await
        {
            Ok(Ok(answer)) => Ok(answer),
            Ok(Err(e)) => Err(e.to_string()),
            Err(status) if status.code() == tonic::Code::Unimplemented => {
                Ok(super::prevote::PreVoteAnswer {
                    granted: true,
                    reason: String::new(),
                })
            }
            Err(status) => Err(format!("{}: {}", status.code(), status.message())),
        }
    }

    async fn call<Req, Resp, E>(
        &mut self,
        rpc: Rpc,
        req: &Req,
        option: &RPCOption,
    ) -> Result<Result<Resp, RpcError<E>>, tonic::Status>
    where
        Req: serde::Serialize,
        Resp: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
    {
        if isolated(&self.network.isolation, self.target) {
            return Ok(Err(RPCError::Unreachable(Unreachable::new(
                &TransportError(format!("node {} is cut off by a failpoint", self.target)),
            ))));
        }
        let lane = match rpc {
            Rpc::Snapshot => Lane::Snapshot,
            Rpc::Append | Rpc::Vote | Rpc::PreVote => Lane::Raft,
        };
        let mut client = match self.network.channels.get(&self.addr, lane) {
            Ok(c) => RaftServiceClient::new(c)
                .max_decoding_message_size(MAX_MESSAGE_BYTES)
                .max_encoding_message_size(MAX_MESSAGE_BYTES),
            Err(e) => {
                return Ok(Err(RPCError::Unreachable(Unreachable::new(
                    &TransportError(e),
                ))))
            }
        };
        let mut request = tonic::Request::new(RaftPayload { data: encode(req) });
        request
            .metadata_mut()
            .insert(TARGET, tonic::metadata::MetadataValue::from(self.target));
        if let Rpc::Append = rpc {
            request.metadata_mut().insert(
                LAST_LOG,
                tonic::metadata::MetadataValue::from(self.network.log.last_index_now()),
            );
        }
        crate::apply::cluster::mark(&self.network.store, request.metadata_mut());
        crate::auth::as_node(&self.network.store, &mut request);
        request.set_timeout(option.hard_ttl());
        let response = match rpc {
            Rpc::Append => client.append_entries(request).await,
            Rpc::Vote => client.vote(request).await,
            Rpc::PreVote => client.pre_vote(request).await,
            Rpc::Snapshot => client.install_snapshot(request).await,
        };
        if let Err(status) = &response {
            // Only a refusal from this node's own cluster (as far as the two know) says it
            // was removed: another cluster's may have removed a node of the same id.
            let same_cluster = || {
                let ours = crate::apply::cluster::known(&self.network.store)
                    .ok()
                    .flatten();
                ours.is_none()
                    || ours.as_deref() == crate::apply::cluster::named(status.metadata().as_ref())
            };
            if status.metadata().get(REMOVED).is_some() && same_cluster() {
                announce_removal(
                    &self.network.store,
                    &self.network.removal,
                    format!(
                        "node {} refuses this node: {}",
                        self.target,
                        status.message()
                    ),
                );
            }
        }
        let payload = response?.into_inner();
        Ok(
            match decode::<Result<Resp, RaftError<NodeId, E>>>(&payload.data) {
                Ok(result) => {
                    result.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
                }
                Err(e) => Err(RPCError::Network(NetworkError::new(&TransportError(
                    e.to_string(),
                )))),
            },
        )
    }
}

/// What openraft is told of a call the peer refused (an unavailable peer, or another node at
/// the peer's address, is unreachable: openraft backs off from it).
fn refused<E: std::error::Error>(status: tonic::Status) -> RpcError<E> {
    let e = TransportError(format!("{}: {}", status.code(), status.message()));
    match status.code() {
        tonic::Code::Unavailable | tonic::Code::FailedPrecondition => {
            RPCError::Unreachable(Unreachable::new(&e))
        }
        _ => RPCError::Network(NetworkError::new(&e)),
    }
}

type RpcError<E = openraft::error::Infallible> = RPCError<NodeId, BasicNode, RaftError<NodeId, E>>;

#[derive(Clone, Copy)]
enum Rpc {
    Append,
    Vote,
    PreVote,
    Snapshot,
}

impl RaftNetwork<TypeConfig> for Peer {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RpcError> {
        self.call(Rpc::Append, &rpc, &option)
            .await
            .unwrap_or_else(|status| Err(refused(status)))
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<InstallSnapshotResponse<NodeId>, RpcError<InstallSnapshotError>> {
        self.call(Rpc::Snapshot, &rpc, &option)
            .await
            .unwrap_or_else(|status| Err(refused(status)))
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RpcError> {
        match self.call(Rpc::Vote, &rpc, &option).await {
            Ok(answer) => answer,
            // The peer wants the cluster's node secret, which this node does not hold: keys were
            // enabled by an entry it has not applied, so the peer's log is ahead of its own.
            // Told so as a refusal from a node with a greater log (not as an unreachable peer,
            // which openraft would retry). Such a node rarely gets this far: its pre-votes
            // (`prevote`) need the secret too, and without a majority of them it does not
            // campaign.
            Err(status) if status.code() == tonic::Code::Unauthenticated => match rpc.last_log_id {
                Some(last) => {
                    tracing::info!(
                        peer = self.target,
                        "a peer refused this node's vote request for lack of the node \
                         secret (keys were enabled by an entry not applied here yet): \
                         waiting for the leader"
                    );
                    let mut vote = rpc.vote;
                    vote.committed = false;
                    Ok(VoteResponse {
                        vote,
                        vote_granted: false,
                        last_log_id: Some(openraft::LogId::new(last.leader_id, last.index + 1)),
                    })
                }
                None => Err(refused(status)),
            },
            Err(status) => Err(refused(status)),
        }
    }
}
