//! Group commit: concurrent proposals made on this node (its clients' writes, and on the leader
//! the batches other nodes forward) are merged into one Raft entry, so that
//! many client writes share one log append, one fsync and one replication round. At most
//! [`MAX_IN_FLIGHT`] merged proposals are under way at once; while they are, new writes queue
//! up and go out together in the next one. A lone write goes out at once.

use super::propose::ProposeError;
use super::Node;
use crate::command::{CommandResult, Envelope};
use std::sync::{Arc, Weak};
use tokio::sync::{mpsc, oneshot, Semaphore};

/// Merged proposals under way at once.
pub const MAX_IN_FLIGHT: usize = 1;
/// Merged batches a follower forwards to the leader at once: the leader merges them with its
/// own, so a follower need not wait for one to commit before sending the next.
pub const MAX_FORWARDS_IN_FLIGHT: usize = 4;
/// The most envelopes in one Raft entry.
pub const MAX_ENVELOPES: usize = 1024;
/// Roughly the most bytes of envelopes in one Raft entry (one write larger than this goes
/// alone). Small enough that 8 entries replicate within one heartbeat interval.
pub const MAX_BYTES: usize = 256 * 1024;

type Outcome = Result<(Vec<CommandResult>, u64), ProposeError>;

struct Pending {
    envelopes: Vec<Envelope>,
    bytes: usize,
    /// Forwarded by another node: propose here or fail, never forward again.
    local_only: bool,
    reply: oneshot::Sender<Outcome>,
}

/// The queue of proposals waiting to be merged.
pub(crate) struct Batcher {
    tx: mpsc::UnboundedSender<Pending>,
}

impl Batcher {
    /// A batcher and the receiving end its loop consumes.
    pub(crate) fn new() -> (Batcher, BatchQueue) {
        let (tx, rx) = mpsc::unbounded_channel();
        (Batcher { tx }, BatchQueue { rx })
    }

    /// Proposes `envelopes` in the next merged entry (one attempt); `local_only` when they
    /// were forwarded here and must not travel further.
    pub(crate) async fn submit(&self, envelopes: Vec<Envelope>, local_only: bool) -> Outcome {
        let bytes = envelopes.iter().map(approx_bytes).sum();
        let (reply, answer) = oneshot::channel();
        self.tx
            .send(Pending {
                envelopes,
                bytes,
                local_only,
                reply,
            })
            .map_err(|_| ProposeError::ShuttingDown)?;
        answer.await.map_err(|_| ProposeError::ShuttingDown)?
    }
}

/// The receiving end of a [`Batcher`].
pub(crate) struct BatchQueue {
    rx: mpsc::UnboundedReceiver<Pending>,
}

impl BatchQueue {
    /// Merges and proposes until the node is gone.
    pub(crate) async fn run(mut self, node: Weak<Node>) {
        let leading = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
        let forwarding = Arc::new(Semaphore::new(MAX_FORWARDS_IN_FLIGHT));
        while let Some(first) = self.rx.recv().await {
            let Some(strong) = node.upgrade() else { return };
            let leads = strong.leader().is_some_and(|(id, _)| id == strong.id);
            drop(strong);
            let permits = if leads { &leading } else { &forwarding };
            let Ok(permit) = permits.clone().acquire_owned().await else {
                return;
            };
            let mut bytes = first.bytes;
            let mut count = first.envelopes.len();
            let mut batch = vec![first];
            while count < MAX_ENVELOPES && bytes < MAX_BYTES {
                match self.rx.try_recv() {
                    Ok(p) => {
                        bytes += p.bytes;
                        count += p.envelopes.len();
                        batch.push(p);
                    }
                    Err(_) => break,
                }
            }
            let Some(node) = node.upgrade() else { return };
            tokio::spawn(async move {
                // A leader that stepped down since refuses the local proposal as not leading,
                // which every writer retries.
                let _permit = permit;
                let (local_only, others): (Vec<Pending>, Vec<Pending>) =
                    batch.into_iter().partition(|p| p.local_only);
                if leads {
                    let all = local_only.into_iter().chain(others).collect();
                    propose(&node, all, true).await;
                } else {
                    for p in local_only {
                        let _ = p.reply.send(Err(ProposeError::NotLeader));
                    }
                    propose(&node, others, false).await;
                }
            });
        }
    }
}

/// Proposes the merged envelopes of `batch` (on this node when `local`) and hands each its results.
async fn propose(node: &Node, batch: Vec<Pending>, local: bool) {
    if batch.is_empty() {
        return;
    }
    let mut sizes = Vec::with_capacity(batch.len());
    let mut replies = Vec::with_capacity(batch.len());
    let mut envelopes = Vec::new();
    for p in batch {
        sizes.push(p.envelopes.len());
        replies.push(p.reply);
        envelopes.extend(p.envelopes);
    }
    let outcome = if local {
        node.propose_local(envelopes).await
    } else {
        node.propose_once(envelopes).await
    };
    match outcome {
        Ok((results, index)) => {
            let mut results = results.into_iter();
            for (n, reply) in sizes.into_iter().zip(replies) {
                let mine: Vec<CommandResult> = results.by_ref().take(n).collect();
                let _ = reply.send(Ok((mine, index)));
            }
        }
        Err(e) => {
            for reply in replies {
                let _ = reply.send(Err(e.clone()));
            }
        }
    }
}

/// About how many bytes an envelope takes in the log.
fn approx_bytes(e: &Envelope) -> usize {
    use crate::command::Command::*;
    let payload = match &e.command {
        MemoryAdd(m) => m.content.len() + m.tags.iter().map(String::len).sum::<usize>(),
        DecisionSet { decision: d, .. } => d.decision.len() + d.rationale.len() + d.details.len(),
        StateSet(s) => s.key.len() + s.value.len(),
        MessageSend(m) => m.content.len(),
        TaskCreate(t) => t.title.len() + t.description.len(),
        TaskComplete { result, .. } => result.len(),
        MemoryTouch { ids } => ids.iter().map(String::len).sum(),
        _ => 0,
    };
    payload + e.project.len() + e.request_id.len() + 64
}
