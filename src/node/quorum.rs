//! Whether writes can commit: a leader that has heard from no majority of the voters for
//! longer than a write waits for one, and a node that finds no leader, say so (to a write that
//! fails, and in `cluster status`) instead of leaving the client to time out.

use super::Node;
use crate::raft::NodeId;
use openraft::ServerState;
use std::sync::{Mutex, Weak};
use std::time::{Duration, Instant};

/// Since when this node has led, in which term (openraft's time since a quorum last answered
/// is unknown until one has answered at all: a leader restored at start with its followers
/// down, or elected just before they died).
#[derive(Default)]
pub(crate) struct Leadership(Mutex<Option<(u64, Instant)>>);

impl Leadership {
    fn since(&self) -> Option<Instant> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .map(|(_, t)| t)
    }
}

/// Until the node is gone: notes when it starts leading in each term.
pub(crate) async fn watch_leadership(node: Weak<Node>) {
    let Some(mut metrics) = node.upgrade().map(|n| n.raft.metrics()) else {
        return;
    };
    loop {
        let (leading, term) = {
            let m = metrics.borrow_and_update();
            (m.state == ServerState::Leader, m.current_term)
        };
        let Some(n) = node.upgrade() else { return };
        {
            let mut slot = n.leadership.0.lock().unwrap_or_else(|p| p.into_inner());
            match *slot {
                Some((t, _)) if leading && t == term => {}
                _ if leading => *slot = Some((term, Instant::now())),
                _ => *slot = None,
            }
        }
        drop(n);
        if metrics.changed().await.is_err() {
            return;
        }
    }
}

impl Node {
    /// When this node leads but no majority of the voters has answered it for at least
    /// [`Node::patience`]: for how long.
    pub(crate) fn quorum_silence(&self) -> Option<Duration> {
        let metrics = self.raft.metrics();
        let m = metrics.borrow();
        if m.state != ServerState::Leader {
            return None;
        }
        // A single voter is its own majority.
        m.membership_config.membership().voter_ids().nth(1)?;
        let silent = match m.millis_since_quorum_ack {
            Some(ms) => Duration::from_millis(ms),
            None => self.leadership.since()?.elapsed(),
        };
        (silent >= self.patience).then_some(silent)
    }

    /// Why a write is not committed, when this node leads without a quorum.
    pub(crate) fn no_quorum_text(&self) -> Option<String> {
        let silent = self.quorum_silence()?;
        Some(format!(
            "no quorum: node {} leads, but for {:.1} s no majority of the voters has answered \
             it (down, cut off or too slow); {}: the write is not committed (it may still be \
             applied if they come back; retrying it applies it once)",
            self.id,
            silent.as_secs_f64(),
            self.majority_text()
        ))
    }

    /// Why a write found no leader for `waited`.
    pub(crate) fn no_leader_text(&self, waited: Duration) -> String {
        if self.voter_configs().is_empty() {
            return format!(
                "no leader: node {} is in no cluster yet (`aide cluster init` starts one, \
                 `aide cluster join` adds it to one)",
                self.id
            );
        }
        format!(
            "no leader: none was elected in {:.1} s; electing one needs {} running and \
             reaching each other (`aide cluster status` shows which answer)",
            waited.as_secs_f64(),
            self.majority_text()
        )
    }

    /// The voters of each configuration in force (two during a membership change).
    fn voter_configs(&self) -> Vec<Vec<NodeId>> {
        let metrics = self.raft.metrics();
        let m = metrics.borrow();
        m.membership_config
            .membership()
            .get_joint_config()
            .iter()
            .filter(|c| !c.is_empty())
            .map(|c| c.iter().copied().collect())
            .collect()
    }

    /// "2 of the 3 voters (nodes 1, 2 and 3)", or both majorities during a change.
    fn majority_text(&self) -> String {
        let of = |voters: &[NodeId]| {
            format!(
                "{} of the {} voters ({})",
                voters.len() / 2 + 1,
                voters.len(),
                id_list(voters)
            )
        };
        match self.voter_configs().as_slice() {
            [one] => of(one),
            [old, new] => format!(
                "{} and {} (a membership change is under way)",
                of(old),
                of(new)
            ),
            _ => "a majority of the voters".to_string(),
        }
    }
}

/// "nodes 1, 2 and 3".
fn id_list(ids: &[NodeId]) -> String {
    let names: Vec<String> = ids.iter().map(|i| i.to_string()).collect();
    match names.split_last() {
        None => String::new(),
        Some((last, [])) => format!("node {last}"),
        Some((last, rest)) => format!("nodes {} and {last}", rest.join(", ")),
    }
}
