//! Group commit: concurrent proposals made on this node (its clients' writes, and on the leader
//! the batches other nodes forward) are merged into one Raft entry, so that
//! many client writes share one log append, one fsync and one replication round. At most
//! [`MAX_IN_FLIGHT`] merged proposals are under way at once; while they are, new writes queue
//! up and go out together in the next one. A lone write goes out at once.
//!
//! A leader with other members to replicate to also keeps its writers in one cohort: writers
//! that write again as soon as they are answered would otherwise settle into two groups that
//! take turns (one waits while the other's entry is under way), each in an entry of its own,
//! and every entry costs each node a log append, an fsync, a replication round and an apply
//! whatever it carries. So when an entry is answered, the leader expects its writers back
//! together with those that waited meanwhile, and holds the next proposal until they are in
//! it or [`COHORT_WAIT`] has passed (measured in docs/performance.md). The count it expects
//! comes from what it just saw, so writers that do not come back cost one wait at most.

use super::propose::ProposeError;
use super::Node;
use crate::command::{CommandResult, Envelope};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot, Semaphore};
use tokio::time::Instant;

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
/// The longest a leader holds a merged proposal back for the rest of its cohort.
pub const COHORT_WAIT: Duration = Duration::from_millis(3);

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
    cohort: Arc<Cohort>,
}

/// What the leader knows of its writers: how many envelopes wait in the queue, and how many it
/// expects in its next proposal.
#[derive(Default)]
struct Cohort {
    queued: AtomicUsize,
    expected: AtomicUsize,
}

impl Batcher {
    /// A batcher and the receiving end its loop consumes, whose proposals wait up to `wait`
    /// for the rest of their cohort.
    pub(crate) fn new(wait: Duration) -> (Batcher, BatchQueue) {
        let (tx, rx) = mpsc::unbounded_channel();
        let cohort = Arc::new(Cohort::default());
        (
            Batcher {
                tx,
                cohort: cohort.clone(),
            },
            BatchQueue { rx, cohort, wait },
        )
    }

    /// Proposes `envelopes` in the next merged entry (one attempt); `local_only` when they
    /// were forwarded here and must not travel further.
    pub(crate) async fn submit(&self, envelopes: Vec<Envelope>, local_only: bool) -> Outcome {
        let bytes = envelopes.iter().map(approx_bytes).sum();
        let (reply, answer) = oneshot::channel();
        let count = envelopes.len();
        self.cohort.queued.fetch_add(count, Ordering::SeqCst);
        self.tx
            .send(Pending {
                envelopes,
                bytes,
                local_only,
                reply,
            })
            .map_err(|_| {
                self.cohort.queued.fetch_sub(count, Ordering::SeqCst);
                ProposeError::ShuttingDown
            })?;
        answer.await.map_err(|_| ProposeError::ShuttingDown)?
    }
}

/// The receiving end of a [`Batcher`].
pub(crate) struct BatchQueue {
    rx: mpsc::UnboundedReceiver<Pending>,
    cohort: Arc<Cohort>,
    /// How long a proposal waits for the rest of its cohort ([`COHORT_WAIT`] but in tests).
    wait: Duration,
}

impl BatchQueue {
    /// Merges and proposes until the node is gone.
    pub(crate) async fn run(mut self, node: Weak<Node>) {
        let leading = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
        let forwarding = Arc::new(Semaphore::new(MAX_FORWARDS_IN_FLIGHT));
        while let Some(first) = self.rx.recv().await {
            let Some(strong) = node.upgrade() else { return };
            let leads = strong.leader().is_some_and(|(id, _)| id == strong.id);
            let replicates = leads
                && (strong.raft.metrics().borrow().membership_config)
                    .membership()
                    .nodes()
                    .count()
                    > 1;
            drop(strong);
            let permits = if leads { &leading } else { &forwarding };
            let Ok(permit) = permits.clone().acquire_owned().await else {
                return;
            };
            let expected = if replicates {
                self.cohort.expected.load(Ordering::SeqCst)
            } else {
                0
            };
            let batch = self.gather(first, expected).await;
            let Some(node) = node.upgrade() else { return };
            let cohort = replicates.then(|| self.cohort.clone());
            tokio::spawn(async move {
                // A leader that stepped down since refuses the local proposal as not leading,
                // which every writer retries.
                let _permit = permit;
                let (local_only, others): (Vec<Pending>, Vec<Pending>) =
                    batch.into_iter().partition(|p| p.local_only);
                if leads {
                    let all = local_only.into_iter().chain(others).collect();
                    propose(&node, all, true, cohort.as_deref()).await;
                } else {
                    for p in local_only {
                        let _ = p.reply.send(Err(ProposeError::NotLeader));
                    }
                    propose(&node, others, false, None).await;
                }
            });
        }
    }

    /// `first` and what else waits in the queue, up to the limits of one entry; while it holds
    /// fewer than `expected` envelopes, it waits for more, up to the queue's `wait`.
    async fn gather(&mut self, first: Pending, expected: usize) -> Vec<Pending> {
        let until = Instant::now() + self.wait;
        let mut bytes = first.bytes;
        let mut count = first.envelopes.len();
        let mut batch = vec![first];
        while count < MAX_ENVELOPES && bytes < MAX_BYTES {
            let next = match self.rx.try_recv() {
                Ok(p) => p,
                Err(_) if count >= expected => break,
                Err(_) => match tokio::time::timeout_at(until, self.rx.recv()).await {
                    Ok(Some(p)) => p,
                    _ => break,
                },
            };
            bytes += next.bytes;
            count += next.envelopes.len();
            batch.push(next);
        }
        self.cohort.queued.fetch_sub(count, Ordering::SeqCst);
        batch
    }
}

/// Proposes the merged envelopes of `batch` (on this node when `local`) and hands each its
/// results; with `cohort`, also what the next proposal may expect.
async fn propose(node: &Node, batch: Vec<Pending>, local: bool, cohort: Option<&Cohort>) {
    if batch.is_empty() {
        return;
    }
    let mut sizes = Vec::with_capacity(batch.len());
    let mut replies = Vec::with_capacity(batch.len());
    let mut envelopes = Vec::with_capacity(batch.iter().map(|p| p.envelopes.len()).sum());
    for p in batch {
        sizes.push(p.envelopes.len());
        replies.push(p.reply);
        envelopes.extend(p.envelopes);
    }
    let count = envelopes.len();
    let outcome = if local {
        node.propose_local(envelopes).await
    } else {
        node.propose_once(envelopes).await
    };
    if let Some(cohort) = cohort {
        // The writers answered here and those waiting now; counted before the answers go out,
        // so that none is counted twice when it writes again at once.
        let next = match outcome {
            Ok(_) => count + cohort.queued.load(Ordering::SeqCst),
            Err(_) => 0,
        };
        cohort.expected.store(next, Ordering::SeqCst);
    }
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
