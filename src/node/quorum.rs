//! Whether the cluster can serve: a leader that no majority of the voters has answered for
//! longer than a write waits, and a node that has known no leader that long, say so (to the
//! write or read that fails, marked so that the client stops trying, and in `cluster status`)
//! instead of leaving the client to time out.

use super::Node;
use crate::raft::NodeId;
use openraft::ServerState;
use std::sync::{Mutex, Weak};
use std::time::{Duration, Instant};

/// Marks a node's answer that it waited [`Node::patience`] for a leader or a quorum and gave
/// up: trying the same node again at once would only wait again.
pub const GAVE_UP: &str = "x-aide-gave-up";

/// Since when this node has led (in which term), or has known no leader.
#[derive(Default)]
pub(crate) struct Leadership(Mutex<Watched>);

#[derive(Default)]
struct Watched {
    /// openraft's time since a quorum last answered is unknown until one has answered at all
    /// (a leader restored at start with its followers down, or elected just before they died).
    leading: Option<(u64, Instant)>,
    leaderless: Option<Instant>,
}

impl Leadership {
    fn get<T>(&self, f: impl FnOnce(&Watched) -> T) -> T {
        f(&self.0.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

/// Until the node is gone: notes when it starts leading in each term, and since when it has
/// known no leader.
pub(crate) async fn watch_leadership(node: Weak<Node>) {
    let Some(mut metrics) = node.upgrade().map(|n| n.raft.metrics()) else {
        return;
    };
    loop {
        let (leading, term, known) = {
            let m = metrics.borrow_and_update();
            (
                m.state == ServerState::Leader,
                m.current_term,
                m.current_leader.is_some(),
            )
        };
        let Some(n) = node.upgrade() else { return };
        {
            let mut w = n.leadership.0.lock().unwrap_or_else(|p| p.into_inner());
            match w.leading {
                Some((t, _)) if leading && t == term => {}
                _ if leading => w.leading = Some((term, Instant::now())),
                _ => w.leading = None,
            }
            match (known, w.leaderless) {
                (true, _) => w.leaderless = None,
                (false, None) => w.leaderless = Some(Instant::now()),
                (false, Some(_)) => {}
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
            None => self.leadership.get(|w| w.leading)?.1.elapsed(),
        };
        (silent >= self.patience).then_some(silent)
    }

    /// How long this node has known no leader, once that is at least [`Node::patience`].
    pub(crate) fn leaderless_for(&self) -> Option<Duration> {
        let since = self
            .leadership
            .get(|w| w.leaderless)
            .map(|t| t.elapsed())
            .or_else(|| self.leader_silence())?;
        (since >= self.patience).then_some(since)
    }

    /// Why a write is not committed, or a linearizable read not confirmed, when this node
    /// leads without a quorum.
    pub(crate) fn no_quorum_text(&self, what: Serving) -> Option<String> {
        let silent = self.quorum_silence()?;
        Some(format!(
            "no quorum: node {} leads, but for {:.1} s it has not heard from enough voters to \
             {} (it needs {}; the others are down, cut off or too slow){}",
            self.id,
            silent.as_secs_f64(),
            match what {
                Serving::Write => "commit a write",
                Serving::Read => "confirm a linearizable read",
            },
            self.majority_text(),
            match what {
                Serving::Write => {
                    ": the write is not committed; it may still be applied if they come back, \
                     and retrying it applies it once"
                }
                Serving::Read => STALE_HINT,
            }
        ))
    }

    /// The error of a call this node cannot serve for lack of a leader: the reason, once it has
    /// known none for longer than an election takes (the client then stops trying), else a
    /// plain "no leader yet" to be retried.
    pub(crate) fn no_leader_error(&self, what: Serving) -> super::NodeError {
        match self.leaderless_for() {
            Some(d) => super::NodeError::GaveUp(self.no_leader_text(d, what)),
            None => super::NodeError::NoLeader,
        }
    }

    /// Why this node cannot serve `what`, having known no leader for `waited`.
    pub(crate) fn no_leader_text(&self, waited: Duration, what: Serving) -> String {
        let hint = match what {
            Serving::Write => "",
            Serving::Read => STALE_HINT,
        };
        if self.voter_configs().is_empty() {
            return format!(
                "no leader: node {} is in no cluster yet (`aide cluster init` starts one, \
                 `aide cluster join` adds it to one){hint}",
                self.id
            );
        }
        format!(
            "no leader: node {} has known no leader for {:.1} s; electing one needs {} running \
             and reaching each other (`aide cluster status` shows which answer){hint}",
            self.id,
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
                "{} and {}, a membership change being under way",
                of(old),
                of(new)
            ),
            _ => "a majority of the voters".to_string(),
        }
    }
}

/// What a node could not serve.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Serving {
    Write,
    Read,
}

const STALE_HINT: &str = "; a stale read (`--consistency stale`) is served from a node's own copy";

/// "nodes 1, 2 and 3".
fn id_list(ids: &[NodeId]) -> String {
    let names: Vec<String> = ids.iter().map(|i| i.to_string()).collect();
    match names.split_last() {
        None => String::new(),
        Some((last, [])) => format!("node {last}"),
        Some((last, rest)) => format!("nodes {} and {last}", rest.join(", ")),
    }
}
