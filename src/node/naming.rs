//! Naming the cluster: a leader whose cluster has no id yet proposes one
//! ([`Command::ClusterId`]); the first applied is the cluster's for good (see
//! [`crate::apply::cluster`]).

use super::propose::WriteMeta;
use super::Node;
use crate::command::Command;
use std::sync::Arc;
use std::time::Duration;

/// How long a leader waits before proposing the id again after a failed proposal.
const RETRY: Duration = Duration::from_secs(1);

/// Runs until this node knows its cluster's id: whenever it leads a cluster without one, it
/// proposes one.
pub async fn run(node: Arc<Node>) {
    let mut metrics = node.raft.metrics();
    loop {
        match crate::apply::cluster::known(&node.store) {
            Ok(Some(_)) => return,
            Ok(None) => {}
            Err(e) => tracing::warn!(error = %e, "cannot read the cluster's id"),
        }
        let leads = metrics.borrow().current_leader == Some(node.id);
        if leads {
            let meta = WriteMeta {
                project: String::new(),
                request_id: String::new(),
                accessor: String::new(),
            };
            let id = ulid::Ulid::new().to_string();
            match node.write(&meta, |_| Ok(Command::ClusterId { id })).await {
                // Applied (or another leader's was first): committed either way, and known
                // here once its batch is in the store.
                Ok(_) => return,
                Err(e) => {
                    tracing::warn!(error = %e, "proposing the cluster's id failed; trying again");
                    tokio::time::sleep(RETRY).await;
                }
            }
        } else {
            // Until this node leads, or learns the id from its leader.
            tokio::select! {
                changed = metrics.changed() => if changed.is_err() { return },
                _ = tokio::time::sleep(RETRY) => {}
            }
        }
    }
}
