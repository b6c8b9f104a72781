//! The gRPC surface of a node: thin handlers that validate, convert, propose or read, and
//! convert back. Protobuf conversions live in [`convert`], metadata in [`meta`], and the one
//! mapping from errors to status codes in [`error`].

pub mod convert;
pub mod error;
pub mod meta;

pub mod auth;
mod cluster;
mod decision;
mod health;
mod memory;
mod message;
mod raft;
mod state;
mod swarm;
mod task;

/// The generated protobuf types and services.
pub mod pb {
    /// The public API, package `aidememory`.
    pub mod aidememory {
        tonic::include_proto!("aidememory");
    }
    /// The cluster admin API.
    pub mod cluster {
        tonic::include_proto!("aide.cluster");
    }
    /// The node-to-node Raft transport.
    pub mod raft {
        tonic::include_proto!("aide.raft");
    }
    /// API keys and the audit log.
    pub mod auth {
        tonic::include_proto!("aide.auth");
    }
}

use crate::command::{Command, CommandResult};
use crate::node::{Node, NodeError, Tick};
use crate::storage::Store;
use meta::RequestMeta;
use pb::aidememory::{
    decision_service_server::DecisionServiceServer, health_service_server::HealthServiceServer,
    memory_service_server::MemoryServiceServer, message_service_server::MessageServiceServer,
    state_service_server::StateServiceServer, swarm_service_server::SwarmServiceServer,
    task_service_server::TaskServiceServer,
};
use std::sync::Arc;
use tonic::transport::server::Router;
use tonic::Status;

/// The largest request a client may send: 8 MiB (content limits are far below it).
pub const MAX_REQUEST_BYTES: usize = 8 * 1024 * 1024;

/// The handlers of every service, over one node.
#[derive(Clone)]
pub struct Api {
    node: Arc<Node>,
}

impl Api {
    /// The handlers of every public service, over `node` (the router builds its own; the fuzz
    /// targets call the handlers directly).
    pub fn new(node: Arc<Node>) -> Api {
        Api { node }
    }

    /// Builds a command at the time fixed for it, proposes it, and returns its result and index.
    async fn write(
        &self,
        meta: &RequestMeta,
        build: impl FnOnce(Tick) -> Result<Command, crate::command::validate::Invalid>,
    ) -> Result<(CommandResult, u64), Status> {
        let mut named = None;
        let r = self
            .node
            .write(&meta.write, |t| {
                let c = build(t)?;
                named = Some((c.name(), c.target()));
                Ok(c)
            })
            .await;
        // Every write is audited, with its outcome; one refused before it was built is not a write.
        if let Some((operation, target)) = named {
            self.node.audit.write(&crate::audit::AuditEntry {
                node: self.node.id,
                accessor: meta.accessor.clone(),
                project: meta.project().to_string(),
                operation: operation.to_string(),
                target,
                result: match &r {
                    Ok(_) => "ok".to_string(),
                    Err(e) => format!("error: {e}"),
                },
            });
        }
        Ok(r?)
    }

    /// Waits for the read barrier `meta` asks for, then reads the store.
    async fn read<T>(
        &self,
        meta: &RequestMeta,
        read: impl FnOnce(&Store) -> Result<T, NodeError>,
    ) -> Result<(T, u64), Status> {
        let index = self.barrier(meta).await?;
        Ok((read(&self.node.store)?, index))
    }

    /// The read barrier `meta` asks for; then the caller's key is checked again, against the
    /// state the read will see (a key revoked before a linearizable read began is refused even
    /// by a node that had not applied the revocation when the read came in).
    async fn barrier(&self, meta: &RequestMeta) -> Result<u64, Status> {
        let index = self.node.read_barrier(meta.read).await?;
        if let Err(status) = crate::auth::still_allowed(&self.node.store, &meta.caller) {
            self.refused(meta, "read", &status);
            return Err(status);
        }
        Ok(index)
    }

    /// An audit line for a call refused after the guard let it in.
    fn refused(&self, meta: &RequestMeta, operation: &str, status: &Status) {
        self.node.audit.refused(&crate::audit::AuditEntry {
            node: self.node.id,
            accessor: meta.accessor.clone(),
            project: meta.project().to_string(),
            operation: operation.to_string(),
            target: String::new(),
            result: format!("denied: {}", status.message()),
        });
    }
}

/// A result of a different kind than the command produces: a bug, reported as INTERNAL.
fn unexpected(r: CommandResult) -> Status {
    Status::internal(format!("unexpected command result {r:?}"))
}

/// The router with the guard in front of every service.
pub type GuardedRouter = Router<tower_layer::Stack<crate::auth::GuardLayer, tower_layer::Identity>>;

/// Every service of a node on one router behind the guard: the public API, the cluster API,
/// API keys and the Raft transport.
pub fn router(node: Arc<Node>) -> GuardedRouter {
    let api = Api { node: node.clone() };
    let limit = MAX_REQUEST_BYTES;
    let guard = crate::auth::GuardLayer(Arc::new(crate::auth::GuardState {
        store: node.store.clone(),
        applied: node.applied.clone(),
        audit: node.audit.clone(),
        node_id: node.id,
        tls: node.tls,
    }));
    tonic::transport::Server::builder()
        .tcp_nodelay(true)
        .layer(guard)
        .add_service(MemoryServiceServer::new(api.clone()).max_decoding_message_size(limit))
        .add_service(StateServiceServer::new(api.clone()).max_decoding_message_size(limit))
        .add_service(DecisionServiceServer::new(api.clone()).max_decoding_message_size(limit))
        .add_service(MessageServiceServer::new(api.clone()).max_decoding_message_size(limit))
        .add_service(TaskServiceServer::new(api.clone()).max_decoding_message_size(limit))
        .add_service(HealthServiceServer::new(api.clone()))
        .add_service(SwarmServiceServer::new(api.clone()))
        .add_service(cluster::service(node.clone()))
        .add_service(pb::auth::auth_service_server::AuthServiceServer::new(
            auth::Auth { node: node.clone() },
        ))
        .add_service(raft::service(node))
}
