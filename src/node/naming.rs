//! Naming the cluster: a leader whose cluster has no id yet proposes one
//! ([`Command::ClusterId`]); the first applied is the cluster's for good (see
//! [`crate::apply::cluster`]). A node that makes a new cluster names it before it serves (or
//! answers `cluster init`), so that it refuses another cluster's messages from the start; the
//! background task names clusters made before ids were (and retries a naming that failed).

use super::propose::WriteMeta;
use super::Node;
use crate::command::Command;
use std::sync::Arc;
use std::time::Duration;

/// How often the background task looks again.
const EVERY: Duration = Duration::from_secs(1);

/// How long a new cluster's node waits for its name before it serves anyway (the background
/// task goes on trying).
const AT_BIRTH: Duration = Duration::from_secs(5);

fn known(node: &Node) -> bool {
    match crate::apply::cluster::known(&node.store) {
        Ok(id) => id.is_some(),
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the cluster's id");
            false
        }
    }
}

/// Names this node's cluster, when it leads one without a name, and waits until the name is in
/// its store; a failure is logged (the background task tries again).
pub async fn name(node: &Node) {
    if known(node) || node.raft.metrics().borrow().current_leader != Some(node.id) {
        return;
    }
    let meta = WriteMeta {
        project: String::new(),
        request_id: String::new(),
        accessor: String::new(),
    };
    let id = ulid::Ulid::new().to_string();
    let written = node.write(&meta, |_| Ok(Command::ClusterId { id })).await;
    // Applied (or another leader's was first): known once its batch is in the store.
    let landed = match written {
        Ok((_, index)) => node.wait_applied_within(index, AT_BIRTH).await,
        Err(e) => Err(e),
    };
    if let Err(e) = landed {
        tracing::warn!(error = %e, "naming the cluster failed; trying again");
    }
}

/// Names the cluster this node has just made of itself, once it leads it (a single voter elects
/// itself at once), within 5 s (the background task goes on after): before the node serves, or
/// `cluster init` answers.
pub async fn at_birth(node: &Node) {
    let named = async {
        let _ = node
            .raft
            .wait(None)
            .current_leader(node.id, "a new single-node cluster elects itself")
            .await;
        name(node).await;
    };
    let _ = tokio::time::timeout(AT_BIRTH, named).await;
}

/// Runs until this node knows its cluster's id: whenever it leads a cluster without one, it
/// names it.
pub async fn run(node: Arc<Node>) {
    while !known(&node) {
        name(&node).await;
        tokio::time::sleep(EVERY).await;
    }
}
