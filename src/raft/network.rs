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
use std::time::Duration;
use tonic::transport::{Channel, Endpoint};

/// The largest Raft message a node accepts or sends: snapshot chunks and entry batches fit in it.
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024 * 1024;

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

/// Makes the clients openraft talks to each peer with. They share connections: openraft asks
/// for a client for every leadership check of a linearizable read (besides one per replication
/// stream), and a new connection each time would cost every such read a TCP and HTTP/2
/// handshake with each follower. Snapshots go over a connection of their own, so that their
/// chunks do not hold up heartbeats and leadership checks.
#[derive(Clone)]
pub struct Network {
    pub isolation: Isolation,
    /// The node's store: where the node secret its calls carry is kept.
    pub store: crate::storage::Store,
    /// The connections to each peer, with the address and TLS generation they were made with.
    connections: std::sync::Arc<std::sync::Mutex<Connections>>,
}

/// Which of a peer's two connections a call takes.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
enum Lane {
    /// Appends, heartbeats, votes.
    Raft,
    Snapshot,
}

/// The connections a [`Network`] shares: (peer, lane) → (address, TLS generation, client).
type Connections = std::collections::HashMap<(NodeId, Lane), (String, u64, PeerClient)>;

type PeerClient = Result<RaftServiceClient<Channel>, String>;

impl Network {
    /// A network with no connections yet.
    pub fn new(isolation: Isolation, store: crate::storage::Store) -> Network {
        Network {
            isolation,
            store,
            connections: Default::default(),
        }
    }

    /// The client for `target` at `addr` on `lane` with the TLS settings now, made when there
    /// is none (or only one for another address or older TLS settings, which it replaces).
    fn client(&self, target: NodeId, addr: &str, lane: Lane) -> PeerClient {
        let generation = crate::tls::generation();
        let mut connections = self.connections.lock().unwrap_or_else(|p| p.into_inner());
        match connections.get(&(target, lane)) {
            Some((a, g, client)) if a == addr && *g == generation => client.clone(),
            _ => {
                let client = connect(addr);
                connections.insert(
                    (target, lane),
                    (addr.to_string(), generation, client.clone()),
                );
                client
            }
        }
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

fn connect(addr: &str) -> Result<RaftServiceClient<Channel>, String> {
    channel(addr)
        .map(|c| {
            RaftServiceClient::new(c)
                .max_decoding_message_size(MAX_MESSAGE_BYTES)
                .max_encoding_message_size(MAX_MESSAGE_BYTES)
        })
        .map_err(|e| format!("bad peer address {addr:?}: {e}"))
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
    async fn call<Req, Resp, E>(
        &mut self,
        rpc: Rpc,
        req: &Req,
        option: &RPCOption,
    ) -> Result<Resp, RPCError<NodeId, BasicNode, RaftError<NodeId, E>>>
    where
        Req: serde::Serialize,
        Resp: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
    {
        if isolated(&self.network.isolation, self.target) {
            return Err(RPCError::Unreachable(Unreachable::new(&TransportError(
                format!("node {} is cut off by a failpoint", self.target),
            ))));
        }
        let lane = match rpc {
            Rpc::Snapshot => Lane::Snapshot,
            Rpc::Append | Rpc::Vote => Lane::Raft,
        };
        let mut client = match self.network.client(self.target, &self.addr, lane) {
            Ok(c) => c,
            Err(e) => return Err(RPCError::Unreachable(Unreachable::new(&TransportError(e)))),
        };
        let mut request = tonic::Request::new(RaftPayload { data: encode(req) });
        crate::auth::as_node(&self.network.store, &mut request);
        request.set_timeout(option.hard_ttl());
        let response = match rpc {
            Rpc::Append => client.append_entries(request).await,
            Rpc::Vote => client.vote(request).await,
            Rpc::Snapshot => client.install_snapshot(request).await,
        };
        let payload = match response {
            Ok(r) => r.into_inner(),
            Err(status) => {
                let e = TransportError(format!("{}: {}", status.code(), status.message()));
                return Err(match status.code() {
                    tonic::Code::Unavailable => RPCError::Unreachable(Unreachable::new(&e)),
                    _ => RPCError::Network(NetworkError::new(&e)),
                });
            }
        };
        let result: Result<Resp, RaftError<NodeId, E>> = decode(&payload.data)
            .map_err(|e| RPCError::Network(NetworkError::new(&TransportError(e.to_string()))))?;
        result.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
    }
}

#[derive(Clone, Copy)]
enum Rpc {
    Append,
    Vote,
    Snapshot,
}

impl RaftNetwork<TypeConfig> for Peer {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        self.call(Rpc::Append, &rpc, &option).await
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<
        InstallSnapshotResponse<NodeId>,
        RPCError<NodeId, BasicNode, RaftError<NodeId, InstallSnapshotError>>,
    > {
        self.call(Rpc::Snapshot, &rpc, &option).await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        self.call(Rpc::Vote, &rpc, &option).await
    }
}
