//! Message expiry: only the leader expires messages, by proposing a command, so every node
//! deletes the same messages at the same log index.

use super::propose::WriteMeta;
use super::{wall_nanos, Node};
use crate::command::Command;
use crate::model::Message;
use crate::storage::keys::{self, Table};
use crate::storage::records;
use std::ops::ControlFlow;
use std::sync::Arc;
use std::time::Duration;

/// How often the leader looks for expired messages.
pub const EXPIRY_INTERVAL: Duration = Duration::from_secs(30);

/// Runs until the node stops: every [`EXPIRY_INTERVAL`], when this node leads and some message
/// has expired, proposes [`Command::MessageExpireAll`].
pub async fn run(node: Arc<Node>) {
    let mut tick = tokio::time::interval(EXPIRY_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if node.raft.metrics().borrow().current_leader != Some(node.id) {
            continue;
        }
        match any_expired(&node) {
            Ok(true) => {}
            Ok(false) => continue,
            Err(e) => {
                tracing::warn!(error = %e, "cannot scan messages for expiry");
                continue;
            }
        }
        let meta = WriteMeta {
            project: String::new(),
            request_id: String::new(),
            accessor: String::new(),
        };
        if let Err(e) = node.write(&meta, |_| Ok(Command::MessageExpireAll)).await {
            tracing::warn!(error = %e, "proposing message expiry failed");
        }
    }
}

fn any_expired(node: &Node) -> Result<bool, crate::storage::StoreError> {
    let now = wall_nanos();
    let mut found = false;
    records::scan(
        &node.store.state,
        &keys::table_prefix(Table::Message),
        false,
        |_, m: Message| {
            if m.expired(now) {
                found = true;
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        },
    )?;
    Ok(found)
}
