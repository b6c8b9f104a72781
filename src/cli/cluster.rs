//! `aide cluster`: init, join, leave, remove, status, members.

use super::print::Printer;
use super::CliError;
use crate::client::Client;
use crate::grpc::pb::cluster::{self as pb, Member, NodeStatus};
use clap::Subcommand;
use serde_json::{json, Value};
use tonic::Code;

#[derive(Debug, Subcommand)]
pub enum ClusterCmd {
    /// Make the node (started with --no-init) the first member of a new cluster.
    Init,
    /// Add the node listening at ADDR to the cluster: a learner first, a voter once caught up.
    /// (`aide serve --join MEMBER` does this for a new node by itself.)
    Join {
        addr: String,
        /// The id the node was started with (`aide serve --no-init --node-id N`); asked of the
        /// node itself when unset, and checked against it when given.
        #[arg(long)]
        node_id: Option<u64>,
    },
    /// Remove the node this command talks to (--remote) from its cluster.
    Leave,
    /// Remove a node from the cluster (refused when the rest could not form a quorum).
    Remove { node_id: u64 },
    /// Every node: id, address, role, state, term, last log and applied index, lag, reachable.
    Status,
    /// The members as the node knows them.
    Members,
}

fn member_json(m: &Member) -> Value {
    json!({ "node_id": m.node_id, "address": m.address, "role": m.role })
}

fn members_json(ms: &[Member]) -> Value {
    Value::Array(ms.iter().map(member_json).collect())
}

fn status_json(n: &NodeStatus) -> Value {
    // What an unreachable node's figures would be is not known: null.
    let known = |v: u64| n.reachable.then_some(v);
    json!({
        "node_id": n.node_id,
        "address": n.address,
        "role": n.role,
        "state": n.state,
        "term": known(n.term),
        "last_log_index": known(n.last_log_index),
        "applied_index": known(n.applied_index),
        "lag": known(n.lag),
        "reachable": n.reachable,
        "no_quorum_ms": n.no_quorum_ms,
        "no_leader_ms": n.no_leader_ms,
        "cluster_id": n.cluster_id,
    })
}

/// What `status` and `members` say of a node that has no cluster yet.
const NOT_A_MEMBER: &str = "this node is in no cluster yet (it was started with --no-init): add \
    it with `aide cluster join ADDR` run against a member, or start a new cluster with `aide \
    cluster init` against it";

/// The id the node at `addr` runs with.
async fn new_node_id(addr: &str) -> Result<u64, CliError> {
    let newcomer = Client::new(crate::client::ClientConfig {
        endpoints: vec![addr.to_string()],
        timeout: std::time::Duration::from_secs(5),
        ..Default::default()
    })?;
    let info = newcomer
        .cluster_node_info(pb::NodeInfoRequest {})
        .await
        .map_err(|e| {
            CliError::Failed(match e.code {
                // Only a node with API keys of its own asks for one: it holds data.
                Code::Unauthenticated | Code::PermissionDenied => format!(
                    "the node at {addr} is not empty: it asks for an API key of its own, so it \
                     holds data of its own (a node started without --no-init or --join makes a \
                     cluster of its own), and a node joins with none; start it on an empty data \
                     directory with `aide serve --no-init --node-id N --listen {addr}` (N an \
                     id no member has or had), then join it"
                ),
                _ => format!(
                    "cannot reach the new node at {addr} ({e}); start it first with `aide serve \
                     --no-init --node-id N --listen {addr}`, N an id no member has or had (or \
                     start it with `aide serve --join MEMBER`, which joins it under a free id)"
                ),
            })
        })?;
    // The leader refuses an id that is taken (or was a removed node's), naming a free one.
    Ok(info.status.map_or(0, |s| s.node_id))
}

pub async fn run(cmd: ClusterCmd, c: &Client, out: &Printer) -> Result<(), CliError> {
    match cmd {
        ClusterCmd::Init => {
            let r = c.cluster_init(pb::InitRequest {}).await?;
            out.either(
                format!("Initialized a new cluster with node {}", r.node_id),
                json!({ "node_id": r.node_id, "members": members_json(&r.members) }),
            );
        }
        ClusterCmd::Join { addr, node_id } => {
            let addr = super::host_port(&addr)
                .map_err(|e| CliError::Usage(format!("cluster join: {e}")))?;
            // Asked of the node even when given: it must answer (start it first), and the
            // leader refuses an id other than the one it runs as.
            let runs_as = new_node_id(&addr).await;
            // Run again for a node that has joined since: nothing to do (the leader refuses a
            // voter's address, as a node that lost its data must not come back under its id),
            // also while that node is down.
            let known = node_id.or(runs_as.as_ref().ok().copied().filter(|&id| id != 0));
            let members = c.cluster_members(pb::MembersRequest {}).await?;
            if let Some(m) = members.members.iter().find(|m| {
                m.address == addr && m.role == "voter" && known.is_none_or(|id| m.node_id == id)
            }) {
                out.either(
                    format!("Node {} at {addr} is already a voter", m.node_id),
                    json!({ "node_id": m.node_id, "leader_id": members.leader_id, "members": members_json(&members.members) }),
                );
                return Ok(());
            }
            let runs_as = runs_as?;
            let node_id = node_id.unwrap_or(runs_as);
            let r = c
                .cluster_join(pb::JoinRequest {
                    node_id,
                    address: addr.clone(),
                    itself: false,
                })
                .await?;
            out.either(
                format!("Added node {} at {addr} as a learner; it becomes a voter once caught up", r.node_id),
                json!({ "node_id": r.node_id, "leader_id": r.leader_id, "members": members_json(&r.members) }),
            );
        }
        ClusterCmd::Leave => {
            // The node that answers is the one that leaves: with several endpoints the call
            // could be sent to the leader or fail over to another node.
            let endpoints = c.endpoints();
            if endpoints.len() != 1 {
                return Err(CliError::Usage(format!(
                    "`aide cluster leave` removes the node it talks to; name that node alone with \
                     --remote HOST:PORT (this client has {} endpoints: {}), or remove a node by id \
                     with `aide cluster remove ID`",
                    endpoints.len(),
                    endpoints.join(", ")
                )));
            }
            let id = c
                .cluster_node_info(pb::NodeInfoRequest {})
                .await?
                .status
                .map(|s| s.node_id);
            let r = c.cluster_leave(pb::LeaveRequest {}).await?;
            let who = id.map_or_else(|| "the node".to_string(), |id| format!("node {id}"));
            out.either(
                format!("{who} at {} left the cluster", endpoints[0]),
                json!({ "node_id": id, "members": members_json(&r.members) }),
            );
        }
        ClusterCmd::Remove { node_id } => {
            let r = c.cluster_remove(pb::RemoveRequest { node_id }).await?;
            out.either(
                format!("Removed node {node_id}"),
                json!({ "members": members_json(&r.members) }),
            );
        }
        ClusterCmd::Status => {
            let r = c.cluster_status(pb::StatusRequest {}).await?;
            if out.json() {
                out.value(&json!({
                    "leader_id": r.leader_id,
                    "term": r.term,
                    "cluster_id": r.cluster_id,
                    "nodes": r.nodes.iter().map(status_json).collect::<Vec<_>>(),
                }));
            } else {
                println!(
                    "{:<4} {:<22} {:<8} {:<10} {:>5} {:>9} {:>9} {:>6}  REACHABLE",
                    "ID", "ADDRESS", "ROLE", "STATE", "TERM", "LAST LOG", "APPLIED", "LAG"
                );
                for n in &r.nodes {
                    // What an unreachable node's figures would be is not known.
                    let known = |v: u64| {
                        if n.reachable {
                            v.to_string()
                        } else {
                            "-".to_string()
                        }
                    };
                    println!(
                        "{:<4} {:<22} {:<8} {:<10} {:>5} {:>9} {:>9} {:>6}  {}",
                        n.node_id,
                        n.address,
                        n.role,
                        n.state,
                        known(n.term),
                        known(n.last_log_index),
                        known(n.applied_index),
                        known(n.lag),
                        if n.reachable { "yes" } else { "no" }
                    );
                }
                if r.nodes.is_empty() {
                    eprintln!("{NOT_A_MEMBER}");
                }
                for n in r.nodes.iter().filter(|n| n.no_leader_ms > 0) {
                    eprintln!(
                        "node {} has known no leader for {:.1} s: electing one needs a majority of \
                         the voters running and reaching each other (those shown unreachable are \
                         not); stale reads (`--consistency stale`) are still served",
                        n.node_id,
                        n.no_leader_ms as f64 / 1000.0
                    );
                }
                for n in r.nodes.iter().filter(|n| n.no_quorum_ms > 0) {
                    eprintln!(
                        "node {} leads, but for {:.1} s no majority of the voters has answered \
                         it: it can neither commit writes nor confirm reads (the others may have \
                         elected a leader of their own)",
                        n.node_id,
                        n.no_quorum_ms as f64 / 1000.0
                    );
                }
            }
        }
        ClusterCmd::Members => {
            let r = c.cluster_members(pb::MembersRequest {}).await?;
            if out.json() {
                out.value(
                    &json!({ "leader_id": r.leader_id, "members": members_json(&r.members) }),
                );
            } else {
                if r.members.is_empty() {
                    eprintln!("{NOT_A_MEMBER}");
                }
                for m in &r.members {
                    let leader = if m.node_id == r.leader_id {
                        " (leader)"
                    } else {
                        ""
                    };
                    println!("{} {} {}{leader}", m.node_id, m.address, m.role);
                }
                if r.leader_id == 0 && !r.members.is_empty() {
                    eprintln!(
                        "no leader: the node asked knows none just now (an election may be under \
                         way; `aide cluster status` shows which nodes answer)"
                    );
                }
            }
        }
    }
    Ok(())
}
