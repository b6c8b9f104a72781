//! The gRPC surface of a node: thin handlers that validate, convert, propose or read, and
//! convert back. Protobuf conversions live in [`convert`], metadata in [`meta`], and the one
//! mapping from errors to status codes in [`error`].

pub mod convert;
pub mod error;
pub mod meta;

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
        Ok(self.node.write(&meta.write, build).await?)
    }

    /// Waits for the read barrier `meta` asks for, then reads the store.
    async fn read<T>(
        &self,
        meta: &RequestMeta,
        read: impl FnOnce(&Store) -> Result<T, NodeError>,
    ) -> Result<(T, u64), Status> {
        let index = self.node.read_barrier(meta.read).await?;
        Ok((read(&self.node.store)?, index))
    }
}

/// A result of a different kind than the command produces: a bug, reported as INTERNAL.
fn unexpected(r: CommandResult) -> Status {
    Status::internal(format!("unexpected command result {r:?}"))
}

/// Every service of a node on one router: the public API, the cluster API and the Raft transport.
pub fn router(node: Arc<Node>) -> Router {
    let api = Api { node: node.clone() };
    let limit = MAX_REQUEST_BYTES;
    tonic::transport::Server::builder()
        .tcp_nodelay(true)
        .add_service(MemoryServiceServer::new(api.clone()).max_decoding_message_size(limit))
        .add_service(StateServiceServer::new(api.clone()).max_decoding_message_size(limit))
        .add_service(DecisionServiceServer::new(api.clone()).max_decoding_message_size(limit))
        .add_service(MessageServiceServer::new(api.clone()).max_decoding_message_size(limit))
        .add_service(TaskServiceServer::new(api.clone()).max_decoding_message_size(limit))
        .add_service(HealthServiceServer::new(api.clone()))
        .add_service(SwarmServiceServer::new(api.clone()))
        .add_service(cluster::service(node.clone()))
        .add_service(raft::service(node))
}
