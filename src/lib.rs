//! aide: the shared memory of AI coding agents, as a Raft-replicated cluster node.
//!
//! Module map — each module owns one thing:
//! - [`model`] — the domain types (memories, decisions, state, messages, tasks, API keys). No I/O.
//! - [`command`] — the `Command` enum for every write, its envelope and result, and validation.
//! - [`apply`] — the deterministic state machine: one envelope → writes on a storage transaction.
//! - [`storage`] — sled: data directory, trees, key encodings, typed records, snapshots.
//! - [`search`] — the tantivy index over memories, derived from the store.
//! - [`raft`] — openraft glue: type config, log store, state machine adapter, network.
//! - [`node`] — one running node: start/stop, the write path, the read barrier, membership.
//! - [`config`] — the configuration files of `aide serve` and of the client.
//! - [`grpc`] — the gRPC services: thin handlers, conversions, metadata, error mapping.
//! - [`client`] — the typed client the CLI, benchmarks and tests use to talk to nodes.
//! - [`bench`] — the closed-loop load generator behind `aide bench`.
//! - [`mcp`] — `aide mcp`: the MCP server Claude Code talks to.
//! - [`check`] — the linearizability and append-only-log checkers for histories under faults.
//! - [`auth`] — API keys, the role each RPC needs, and the guard in front of every service.
//! - [`audit`] — the audit log of writes, refusals, membership and key changes.
//! - [`tls`] — TLS for servers and clients, certificate reloading, development certificates.
//! - [`wire`] — the TCP connections under gRPC (one write per small call).
//! - [`fuzz`] — what the fuzz targets in `fuzz/` run (also run on stable by a test).
//! - [`cli`] — the `aide` command line.

pub mod apply;
pub mod audit;
pub mod auth;
pub mod bench;
pub mod check;
pub mod cli;
pub mod client;
pub mod command;
pub mod config;
pub mod fuzz;
pub mod grpc;
pub mod mcp;
pub mod model;
pub mod node;
pub mod raft;
pub mod search;
pub mod storage;
pub mod tls;
pub mod wire;

/// The version of this build.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
/// The commit this build was made from.
pub const COMMIT: &str = env!("AIDE_COMMIT");
/// When this build was made (UTC).
pub const BUILD_DATE: &str = env!("AIDE_BUILD_DATE");
