//! Elections that ask first (a pre-vote, as etcd's PreVote), run by the node instead of by
//! openraft (its own elections are switched off in [`super::config`]).
//!
//! openraft 0.9 starts an election, at a new term, as soon as a follower has heard nothing from
//! the leader for a while. A follower that was only paused (a stopped process, a long pause of
//! its machine) or cut off alone does so while the leader is fine; its higher term then makes
//! the leader step down when they meet again, and the cluster takes no writes until a new
//! leader is elected. A node cut off alone raises its term every election timeout. So a node
//! here first asks the other voters whether they would vote for it, which changes nothing on
//! either side: a voter says yes only when it has not heard from a leader for the leader lease
//! itself, does not lead, may vote, and holds no later log. Only with a majority of yeses (in
//! every configuration of a joint membership) does the node tell openraft to elect. A dead
//! leader still costs what it did: the followers have not heard from it either, so the first
//! to ask gets its yes.

use super::network::{Network, Peer};
use super::{LogId, NodeId, Raft, RaftTiming};
use openraft::storage::RaftLogStorage;
use openraft::ServerState;
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// When this node last heard from a leader it follows (an append or a snapshot it took), or
/// gave its vote. Cheap to share.
#[derive(Debug, Clone)]
pub struct Heard(Arc<(Instant, AtomicU64)>);

impl Default for Heard {
    /// Now: a node that starts waits a whole timeout before it asks.
    fn default() -> Self {
        Heard(Arc::new((Instant::now(), AtomicU64::new(0))))
    }
}

impl Heard {
    /// Records that it heard from its leader now.
    pub fn now(&self) {
        let (base, at) = &*self.0;
        at.fetch_max(base.elapsed().as_micros() as u64, Ordering::Relaxed);
    }

    /// How long ago it last heard from a leader.
    pub fn age(&self) -> Duration {
        let (base, at) = &*self.0;
        base.elapsed()
            .saturating_sub(Duration::from_micros(at.load(Ordering::Relaxed)))
    }
}

/// "Would you vote for me?"
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PreVoteRequest {
    pub candidate: NodeId,
    /// The candidate's last log entry.
    pub last_log_id: Option<LogId>,
}

/// The answer, and when it is no, why.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PreVoteAnswer {
    pub granted: bool,
    pub reason: String,
}

/// What this node, `id`, answers `req` with, given how long ago it heard from a leader and its
/// own last log entry (`vote_refusal`: why it may not vote at all, if it may not); `lease`: how
/// long after hearing from its leader a follower refuses, `patience`: how long a leader that no
/// majority answers still refuses.
pub fn answer(
    raft: &Raft,
    id: NodeId,
    heard: &Heard,
    (lease, patience): (Duration, Duration),
    last_log_id: Option<LogId>,
    vote_refusal: Option<String>,
    req: &PreVoteRequest,
) -> PreVoteAnswer {
    let no = |reason: String| PreVoteAnswer {
        granted: false,
        reason,
    };
    if let Some(why) = vote_refusal {
        return no(why);
    }
    let (state, leader, term, committed, quorum_ack) = {
        let m = raft.metrics();
        let m = m.borrow();
        (
            m.state,
            m.current_leader,
            m.current_term,
            m.vote.committed,
            m.millis_since_quorum_ack,
        )
    };
    if state == ServerState::Leader {
        // A leader that a majority answered lately; one that no majority has answered for as
        // long as a write waits (openraft 0.9 does not make it step down) lets another be
        // elected. (Not the lease: on a loaded machine a few late answers are no reason.)
        if quorum_ack.is_some_and(|ms| ms < patience.as_millis() as u64) {
            return no(format!("node {id} leads, in term {term}"));
        }
    } else if committed {
        // Following a leader: as openraft's lease on the vote itself, which applies only then.
        let age = heard.age();
        if age < lease {
            let leader = leader.map_or("its leader".to_string(), |l| format!("node {l}"));
            return no(format!(
                "node {id} heard from {leader} {} ms ago",
                age.as_millis()
            ));
        }
    }
    // The rule of the vote itself: the candidate's log is at least as up to date.
    if !matches!(
        req.last_log_id.as_ref().partial_cmp(&last_log_id.as_ref()),
        Some(std::cmp::Ordering::Greater | std::cmp::Ordering::Equal)
    ) {
        return no(format!(
            "node {id}'s log ends later ({last_log_id:?}) than node {}'s ({:?})",
            req.candidate, req.last_log_id
        ));
    }
    PreVoteAnswer {
        granted: true,
        reason: String::new(),
    }
}

/// Whether `granted` (node ids, the candidate among them) is a majority of every configuration
/// in `configs` (one, or two during a joint membership change).
fn majority(configs: &[BTreeSet<NodeId>], granted: &BTreeSet<NodeId>) -> bool {
    configs
        .iter()
        .all(|c| c.intersection(granted).count() * 2 > c.len())
}

/// A random duration in `min..max` (milliseconds).
fn between(min: u64, max: u64) -> Duration {
    let r = getrandom::u64().unwrap_or_else(|_| {
        // Without the system's randomness, the clock's nanoseconds still part the nodes.
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| u64::from(d.subsec_nanos()))
    });
    Duration::from_millis(min + r % max.saturating_sub(min).max(1))
}

/// Runs this node's elections until its Raft core stops.
pub async fn run(raft: Raft, mut network: Network, heard: Heard, id: NodeId, timing: RaftTiming) {
    let lease = timing.lease();
    let mut last_try: Option<Instant> = None;
    let mut last_vote = None;
    let mut last_told = None;
    // Redrawn after every attempt, so that two nodes that timed out together part.
    let mut wait = between(timing.election_min_ms, timing.election_max_ms);
    loop {
        tokio::time::sleep(Duration::from_millis(20)).await;
        let (state, vote, voter, alone, running) = {
            let m = raft.metrics();
            let m = m.borrow();
            let configs = m.membership_config.membership().get_joint_config();
            (
                m.state,
                m.vote,
                configs.iter().any(|c| c.contains(&id)),
                configs.iter().all(|c| c.len() == 1 && c.contains(&id)),
                m.running_state.is_ok(),
            )
        };
        if !running || state == ServerState::Shutdown {
            return;
        }
        // As openraft's own timer: a new vote (a term, a leader) or leading starts the wait
        // over, so that a leader that steps down does not campaign at once.
        if last_vote != Some(vote) || state == ServerState::Leader {
            last_vote = Some(vote);
            heard.now();
        }
        if state == ServerState::Leader || !voter {
            continue;
        }
        // A single voter's election is under way (it needs only its own vote on disk).
        if alone && state == ServerState::Candidate {
            continue;
        }
        // A follower that knew a leader gives it the lease first, as openraft's own timer did.
        let timeout = if alone {
            Duration::ZERO
        } else if vote.committed {
            lease + wait
        } else {
            wait
        };
        let since_try = last_try.map_or(Duration::MAX, |t| t.elapsed());
        if heard.age() < timeout || since_try < if alone { lease } else { timeout } {
            continue;
        }
        last_try = Some(Instant::now());
        wait = between(timing.election_min_ms, timing.election_max_ms);
        if !alone {
            let last_log_id = match network.log.get_log_state().await {
                Ok(s) => s.last_log_id,
                Err(e) => {
                    tracing::warn!(node = id, error = %e, "cannot read the log's end for a pre-vote");
                    continue;
                }
            };
            let req = PreVoteRequest {
                candidate: id,
                last_log_id,
            };
            // Whom to ask: the voters of every configuration in force, as they are now.
            let (configs, nodes) = {
                let m = raft.metrics();
                let m = m.borrow();
                let membership = m.membership_config.membership();
                let nodes: Vec<(NodeId, String)> = membership
                    .nodes()
                    .map(|(id, n)| (*id, n.addr.clone()))
                    .collect();
                (membership.get_joint_config().clone(), nodes)
            };
            let mut asks = tokio::task::JoinSet::new();
            for (peer, addr) in nodes {
                if peer == id || !configs.iter().any(|c| c.contains(&peer)) {
                    continue;
                }
                let mut to = Peer::new(peer, addr, network.clone());
                let req = req.clone();
                let limit = Duration::from_millis(timing.election_min_ms);
                asks.spawn(async move { (peer, to.pre_vote(&req, limit).await) });
            }
            let mut granted = BTreeSet::from([id]);
            let mut refusals = Vec::new();
            while let Some(done) = asks.join_next().await {
                match done {
                    Ok((peer, Ok(a))) if a.granted => {
                        granted.insert(peer);
                    }
                    Ok((_, Ok(a))) => refusals.push(a.reason),
                    Ok((peer, Err(e))) => refusals.push(format!("node {peer}: {e}")),
                    Err(_) => {}
                }
                if majority(&configs, &granted) {
                    break;
                }
            }
            if !majority(&configs, &granted) {
                // Once, then every ten seconds while it lasts.
                if last_told.is_none_or(|t: Instant| t.elapsed() >= Duration::from_secs(10)) {
                    last_told = Some(Instant::now());
                    tracing::info!(
                        node = id,
                        "no leader heard from for {} ms, but no majority would elect this \
                         node: {}",
                        heard.age().as_millis(),
                        refusals.join("; ")
                    );
                }
                continue;
            }
            last_told = None;
            // Unless the cluster moved on while the others were asked (this node voted for
            // another candidate, or heard from a leader).
            let moved = raft.metrics().borrow().vote != vote;
            if moved || heard.age() < timeout {
                continue;
            }
            tracing::info!(
                node = id,
                "a majority would elect this node: starting an election"
            );
        }
        if raft.trigger().elect().await.is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_majority_is_needed_in_every_configuration() {
        let c = |ids: &[u64]| ids.iter().copied().collect::<BTreeSet<u64>>();
        assert!(majority(&[c(&[1, 2, 3])], &c(&[1, 3])));
        assert!(!majority(&[c(&[1, 2, 3])], &c(&[1])));
        assert!(!majority(&[c(&[1, 2, 3, 4])], &c(&[1, 2])));
        // Joint: old {1,2,3}, new {3,4,5}: {1,2} alone is not enough.
        assert!(!majority(&[c(&[1, 2, 3]), c(&[3, 4, 5])], &c(&[1, 2])));
        assert!(majority(&[c(&[1, 2, 3]), c(&[3, 4, 5])], &c(&[1, 3, 4])));
    }
}
