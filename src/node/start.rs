//! Starting and stopping a node: open the store and the search index, resolve the node's
//! identity, start Raft (initializing a single-node cluster or joining one), serve gRPC, and on
//! shutdown stop in the reverse order so that nothing acknowledged is lost.

use super::{clock::Clock, expiry, membership, naming, Node};
use crate::grpc;
use crate::grpc::pb::cluster::cluster_service_client::ClusterServiceClient;
use crate::grpc::pb::cluster::JoinRequest;
use crate::raft::log_store::LogStore;
use crate::raft::network::Network;
use crate::raft::state_machine::{stored_applied, Followers, StateMachine};
use crate::raft::{NodeId, Raft, RaftTiming};
use crate::search::{SearchError, SearchIndex};
use crate::storage::{Store, StoreError};
use openraft::BasicNode;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{broadcast, oneshot, watch};
use tokio::task::JoinHandle;

/// Where a node listens when no address is given.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:7420";

/// How a node is started (the flags of `aide serve`).
#[derive(Debug, Clone)]
pub struct NodeConfig {
    pub data_dir: PathBuf,
    /// `host:port` to listen on; port 0 picks a free port.
    pub listen: String,
    /// `host:port` other nodes and clients use; the bound address when unset.
    pub advertise: Option<String>,
    /// The node id for a new data directory (1 when unset and not joining).
    pub node_id: Option<NodeId>,
    /// Any member of the cluster to join, for a new data directory.
    pub join: Option<String>,
    /// Whether a new data directory not joining a cluster becomes a single-node cluster.
    pub init: bool,
    pub timing: RaftTiming,
    /// Allow fault-injection failpoints (testing only).
    pub failpoints: bool,
    /// Testing only (with `failpoints`): how long each applied batch waits before it is written
    /// to the store, to make the moment between an answer and its write observable.
    pub landing_delay: std::time::Duration,
    /// How long applied changes may be held in memory when no reader waits for them
    /// ([`crate::raft::landing::HOLD`] but in tests).
    pub landing_hold: std::time::Duration,
    /// How long the leader holds a proposal for the rest of its cohort ([`super::batch::COHORT_WAIT`]
    /// but in tests).
    pub cohort_wait: std::time::Duration,
    /// Testing only (with `failpoints`): how long each snapshot's copy of the store waits
    /// before it starts, to make writes during a copy observable.
    pub snapshot_copy_delay: std::time::Duration,
    /// Serve TLS with these files, and present them to other nodes.
    pub tls: Option<crate::tls::TlsFiles>,
    /// The (admin) API key a new node joining a cluster that requires keys sends.
    pub api_key: Option<String>,
}

impl NodeConfig {
    /// A single node on `data_dir` listening on `listen`, with default timing.
    pub fn new(data_dir: impl Into<PathBuf>, listen: impl Into<String>) -> Self {
        NodeConfig {
            data_dir: data_dir.into(),
            listen: listen.into(),
            advertise: None,
            node_id: None,
            join: None,
            init: true,
            timing: RaftTiming::default(),
            failpoints: false,
            landing_delay: std::time::Duration::ZERO,
            landing_hold: crate::raft::landing::HOLD,
            cohort_wait: super::batch::COHORT_WAIT,
            snapshot_copy_delay: std::time::Duration::ZERO,
            tls: None,
            api_key: None,
        }
    }
}

/// Why a node could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Search(#[from] SearchError),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: String,
        source: std::io::Error,
    },
    #[error("{0}")]
    Config(String),
    #[error("cannot join the cluster through {addr}: {why}")]
    Join { addr: String, why: String },
    #[error("raft: {0}")]
    Raft(String),
}

/// A started node: its shared state, its address, and what it takes to stop it.
pub struct RunningNode {
    pub node: Arc<Node>,
    /// The address the server is bound to.
    pub local_addr: SocketAddr,
    server: JoinHandle<Result<(), tonic::transport::Error>>,
    stop_server: oneshot::Sender<()>,
    background: Vec<JoinHandle<()>>,
    /// Writes applied changes to the store behind the state machine.
    lander: JoinHandle<()>,
    closing: watch::Sender<bool>,
    /// Why this node was removed from the cluster, once it knows.
    removed: watch::Receiver<Option<String>>,
}

/// Starts a node.
pub async fn start(config: NodeConfig) -> Result<RunningNode, StartError> {
    if config.node_id == Some(0) {
        return Err(StartError::Config(
            "node id 0 is reserved (it means \"no node\"); use 1 or more".to_string(),
        ));
    }

    let listener = tokio::net::TcpListener::bind(&config.listen)
        .await
        .map_err(|source| StartError::Bind {
            addr: config.listen.clone(),
            source,
        })?;
    let local_addr = listener.local_addr().map_err(|source| StartError::Bind {
        addr: config.listen.clone(),
        source,
    })?;
    // TLS files are read before anything is written: a bad file changes nothing on disk.
    let tls = match &config.tls {
        Some(files) => {
            let reloading = crate::tls::Reloading::new(files.clone())
                .map_err(|e| StartError::Config(e.to_string()))?;
            crate::tls::set_client(Some(
                crate::tls::ClientTls::from_files(files)
                    .map_err(|e| StartError::Config(e.to_string()))?,
            ));
            Some(reloading)
        }
        None => None,
    };
    // The store is opened once the address is known to be good: bad flags change nothing on disk.
    let mut store = Store::open(&config.data_dir)?;
    if let Some(why) = store.removed_mark()? {
        return Err(StartError::Config(format!(
            "the data directory {} belongs to a node that was removed from its cluster ({why}); \
             it cannot serve again: to add this machine to the cluster again, start it on an \
             empty data directory with --join (it gets a new id), or use another --data-dir",
            config.data_dir.display()
        )));
    }
    let (applied, membership) = stored_applied(&store)?;
    let applied = applied.map_or(0, |l| l.index);
    check_durable(&store, applied)?;
    let (applied_tx, applied_rx) = watch::channel(applied);
    let mut log = LogStore::open(store.clone(), applied_rx.clone())?;
    crate::auth::bootstrap_token(&config.data_dir)
        .map_err(|e| StoreError::io(&config.data_dir, e))?;
    let search = Arc::new(SearchIndex::open(&store, applied)?);
    let advertise = match &config.advertise {
        Some(a) => a.clone(),
        None if local_addr.ip().is_unspecified() => {
            return Err(StartError::Config(format!(
                "listening on {local_addr}: pass --advertise HOST:PORT so other nodes know where to reach this one"
            )))
        }
        None => local_addr.to_string(),
    };

    let fresh = store.meta().node_id.is_none();
    let id = match (store.meta().node_id, config.node_id) {
        (Some(stored), Some(asked)) if stored != asked => {
            return Err(StartError::Config(format!(
                "the data directory {} belongs to node {stored}, not node {asked}; drop --node-id or use another --data-dir",
                config.data_dir.display()
            )))
        }
        (Some(stored), _) => stored,
        (None, asked) => match &config.join {
            Some(target) => join(target, asked.unwrap_or(0), &advertise, config.api_key.as_deref()).await?,
            None => asked.unwrap_or(1),
        },
    };
    if fresh && config.join.is_some() {
        // The cluster knows this node by its id from now on.
        store.set_node_id(id)?;
    }
    if let (false, Some(target)) = (fresh, &config.join) {
        tracing::info!(
            node = id,
            through = %target,
            "--join is ignored: this data directory already belongs to node {id}, which comes \
             back as the member it was"
        );
    }

    let (events, _) = broadcast::channel(4096);
    let answered = Arc::new(std::sync::atomic::AtomicU64::new(applied));
    let landing_failed = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let followers = Followers {
        search: search.clone(),
        events: events.clone(),
        applied: applied_tx,
        answered: answered.clone(),
        landing_failed: landing_failed.clone(),
        keys: store.keys.clone(),
        cluster: store.cluster.clone(),
        removed: Arc::new(std::sync::RwLock::new(
            crate::raft::state_machine::stored_removed(&store)?,
        )),
    };
    let removed_ids = followers.removed.clone();
    let (removal, removed_rx) = watch::channel(None::<String>);
    let removal = Arc::new(removal);
    let landing = Arc::new(crate::raft::landing::Landing::new(
        config.landing_hold,
        config.landing_delay,
    ));
    landing.members(membership.membership());
    let lander_followers = followers.clone();
    let isolation = crate::raft::network::Isolation::default();
    let channels = crate::raft::network::Channels::default();
    let raft_config =
        crate::raft::config(&config.timing).map_err(|e| StartError::Raft(e.to_string()))?;
    let restored_lead = super::read::restored_leadership(&mut log, id)
        .await
        .map_err(|e| StartError::Raft(e.to_string()))?;
    let network = Network {
        isolation: isolation.clone(),
        store: store.clone(),
        channels: channels.clone(),
        removal: removal.clone(),
        log: log.clone(),
    };
    let raft_log = log.clone();
    let raft = Raft::new(
        id,
        Arc::new(raft_config),
        network.clone(),
        log,
        StateMachine::new(store.clone(), followers, landing.clone())
            .map_err(StartError::Store)?
            .with_copy_delay(config.snapshot_copy_delay),
    )
    .await
    .map_err(|e| StartError::Raft(e.to_string()))?;
    let heard = crate::raft::prevote::Heard::default();
    tokio::spawn(crate::raft::prevote::run(
        raft.clone(),
        network,
        heard.clone(),
        id,
        config.timing.clone(),
    ));
    let initialized = raft
        .is_initialized()
        .await
        .map_err(|e| StartError::Raft(e.to_string()))?;
    let initializing = !initialized && fresh && config.init && config.join.is_none();
    if initializing {
        let members = BTreeMap::from([(
            id,
            BasicNode {
                addr: advertise.clone(),
            },
        )]);
        raft.initialize(members)
            .await
            .map_err(|e| StartError::Raft(e.to_string()))?;
        tracing::info!(node = id, addr = %advertise, "initialized a new single-node cluster");
    }
    if fresh && config.join.is_none() {
        store.set_node_id(id)?;
    }
    // A node that is its cluster's only voter elects itself in a moment: it serves once it
    // leads (a first `cluster status` or write then finds the leader), or after 5 s regardless.
    // (Just initialized, it is alone even if the metrics do not show its membership yet.)
    let alone = initializing
        || raft
            .metrics()
            .borrow()
            .membership_config
            .membership()
            .voter_ids()
            .eq([id]);
    if alone {
        let _ = raft
            .wait(Some(std::time::Duration::from_secs(5)))
            .current_leader(id, "a single-voter cluster elects itself")
            .await;
    }

    // Started once nothing above can fail (it keeps the store open); what the state machine
    // held before waits for it. Stopped last at shutdown, after it has written what is held.
    let lander = tokio::spawn(crate::raft::landing::run(
        landing.clone(),
        store.state.clone(),
        lander_followers,
    ));
    // Closed when the node has no membership at start and has not just made a new cluster
    // of itself.
    let vote = super::vote::VoteGate::load(
        &store,
        !initializing && membership.membership().voter_ids().next().is_none(),
    )?;
    let (closing, closing_rx) = watch::channel(false);
    let (batcher, batch_queue) = super::batch::Batcher::new(config.cohort_wait);
    let (reads, read_rounds) = super::read::ReadIndexQueue::new();
    let node = Arc::new(Node {
        id,
        addr: advertise.clone(),
        raft,
        clock: Clock::new(store.meta().store_id),
        store,
        search,
        events,
        applied: applied_rx,
        answered,
        landing_failed,
        landing,
        started_at: super::wall_nanos() / 1_000_000_000,
        channels,
        closing: closing_rx,
        join_lock: tokio::sync::Mutex::new(()),
        batcher,
        reads,
        restored_lead,
        patience: config.timing.patience(),
        leadership: Default::default(),
        failpoints: config.failpoints,
        isolation,
        audit: Arc::new(crate::audit::AuditLog::new(&config.data_dir)),
        tls: tls.is_some(),
        removed_ids,
        removal,
        vote,
        heard,
        lease: config.timing.lease(),
        log: raft_log,
    });
    tokio::spawn(batch_queue.run(Arc::downgrade(&node)));
    tokio::spawn(read_rounds.run(Arc::downgrade(&node)));
    tokio::spawn(super::quorum::watch_leadership(Arc::downgrade(&node)));

    if initializing {
        naming::at_birth(&node).await;
    }

    let (stop_server, stopped) = oneshot::channel::<()>();
    let router = grpc::router(node.clone());
    // Our own listener, so the server's nodelay setting does not reach the accepted sockets:
    // set it here, or every small response waits for the peer's delayed ACK (about 40 ms).
    let stopped = async {
        let _ = stopped.await;
    };
    let mut background = Vec::new();
    let server = match &tls {
        Some(reloading) => {
            background.push(tokio::spawn(reloading.clone().watch()));
            let incoming = reloading
                .clone()
                .incoming(listener, node.audit.clone(), node.id);
            tokio::spawn(router.serve_with_incoming_shutdown(incoming, stopped))
        }
        None => {
            let incoming = tokio_stream::StreamExt::map(
                tokio_stream::wrappers::TcpListenerStream::new(listener),
                |conn| {
                    conn.map(|stream| {
                        let _ = stream.set_nodelay(true);
                        crate::wire::Unvectored(stream)
                    })
                },
            );
            tokio::spawn(router.serve_with_incoming_shutdown(incoming, stopped))
        }
    };
    background.extend([
        tokio::spawn(expiry::run(node.clone())),
        tokio::spawn(naming::run(node.clone())),
        tokio::spawn(membership::promote_learners(node.clone())),
        tokio::spawn(record_durable(node.clone())),
        tokio::spawn(node.audit.clone().flush_periodically()),
    ]);
    if fresh && config.join.is_some() {
        background.push(tokio::spawn(warn_if_unreached(node.clone())));
    }
    tracing::info!(node = id, addr = %advertise, data = %config.data_dir.display(), "node started");
    Ok(RunningNode {
        node,
        local_addr,
        server,
        stop_server,
        background,
        lander,
        closing,
        removed: removed_rx,
    })
}

/// Refuses a store whose database holds less than it once recorded as durable: it lost data
/// (sled takes a damaged file for a torn write and opens what is left), the vote included. The
/// mark is written after the database is flushed, so a sound database holds at least up to it.
/// The log checks its own records when it opens.
fn check_durable(store: &Store, applied: u64) -> Result<(), StartError> {
    let Some(mark) = store.durable_mark()? else {
        return Ok(());
    };
    if applied < mark {
        return Err(StoreError::Damaged {
            dir: store.dir().to_path_buf(),
            problem: format!(
                "its database once held the log up to index {mark} but now holds only up to \
                 {applied}: part of it was lost or damaged; {}",
                crate::storage::RECOVERY
            ),
        }
        .into());
    }
    Ok(())
}

/// Runs until the node stops: about once a second, when the node has applied more, flushes the
/// store and records the applied index as durable.
async fn record_durable(node: Arc<Node>) {
    let mut recorded = node.store.durable_mark().ok().flatten().unwrap_or(0);
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let applied = node.applied_index();
        if applied <= recorded {
            continue;
        }
        match node.store.record_durable(applied).await {
            Ok(()) => recorded = applied,
            Err(e) => tracing::warn!(error = %e, "cannot record the durable index"),
        }
    }
}

/// A node that joined but that no leader has reached after a while (it holds no membership: the
/// leader sends it with its first entries) says so in its log, once: the others connect to the
/// address it gave them, which may be wrong.
async fn warn_if_unreached(node: Arc<Node>) {
    const WAIT: Duration = Duration::from_secs(10);
    let mut metrics = node.raft.metrics();
    let reached = metrics.wait_for(|m| m.membership_config.membership().nodes().next().is_some());
    if tokio::time::timeout(WAIT, reached).await.is_err() {
        tracing::warn!(
            node = node.id,
            addr = %node.addr,
            "joined {} s ago, and no leader has reached this node yet: the other nodes connect \
             to {}, the address it gave them (--advertise, else --listen); check that they can \
             reach it there",
            WAIT.as_secs(),
            node.addr
        );
    }
}

/// Asks a member to add a node at `advertise`; returns the node id the cluster gave it.
async fn join(
    target: &str,
    asked: NodeId,
    advertise: &str,
    api_key: Option<&str>,
) -> Result<NodeId, StartError> {
    let err = |why: String| StartError::Join {
        addr: target.to_string(),
        why,
    };
    let channel = crate::raft::network::channel(target).map_err(|e| err(e.to_string()))?;
    let mut client = ClusterServiceClient::new(channel);
    // A cluster in the middle of an election or of another membership change answers with a
    // transient error: try again for a while. A refusal (bad id, address taken) is final.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let mut told = None;
    let resp = loop {
        let mut req = tonic::Request::new(JoinRequest {
            node_id: asked,
            address: advertise.to_string(),
            itself: true,
        });
        req.set_timeout(Duration::from_secs(10));
        if let Some(key) = api_key {
            let v = crate::auth::bearer_value(key)
                .ok_or_else(|| err("the API key cannot be sent as gRPC metadata".to_string()))?;
            req.metadata_mut().insert("authorization", v);
        }
        let answer = client.join(req).await;
        // Not an aide node, or TLS on one side only: retrying cannot help.
        if let Some(e) = answer
            .as_ref()
            .err()
            .and_then(|s| crate::client::mismatch(target, s))
        {
            return Err(err(e.message));
        }
        match answer {
            Ok(resp) => break resp,
            Err(s)
                if !matches!(
                    s.code(),
                    tonic::Code::InvalidArgument
                        | tonic::Code::FailedPrecondition
                        | tonic::Code::NotFound
                        | tonic::Code::AlreadyExists
                        | tonic::Code::Unauthenticated
                        | tonic::Code::PermissionDenied
                ) && !is_certificate_error(&s)
                    && std::time::Instant::now() < deadline =>
            {
                // Once, then every five seconds while it lasts.
                if told.is_none_or(|t: std::time::Instant| t.elapsed() >= Duration::from_secs(5)) {
                    told = Some(std::time::Instant::now());
                    tracing::info!(through = target, error = %s.message(), "joining: trying again");
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(s) => {
                let mut why = s.message().to_string();
                if crate::tls::client().is_some() {
                    why.push_str(
                        " (with TLS: the member refuses a certificate its CA did not sign; \
                         check --tls-cert and --tls-ca)",
                    );
                }
                return Err(err(why));
            }
        }
    };
    let id = resp.into_inner().node_id;
    tracing::info!(
        node = id,
        through = target,
        "joined the cluster as a learner"
    );
    Ok(id)
}

/// Whether a call failed because one side's TLS certificate was refused: trying again cannot help.
fn is_certificate_error(s: &tonic::Status) -> bool {
    let mut text = s.to_string();
    let mut source = std::error::Error::source(s);
    while let Some(e) = source {
        text.push_str(&e.to_string());
        source = e.source();
    }
    text.contains("certificate")
}

impl RunningNode {
    /// Waits until this node learns that it was removed from the cluster (by its own `cluster
    /// leave`, or from a member that refuses its Raft messages); returns why. Its data directory
    /// says so by then, and the node should stop: it would serve data that stopped at its removal.
    pub async fn removed(&self) -> String {
        let mut rx = self.removed.clone();
        let why = match rx.wait_for(Option::is_some).await {
            Ok(why) => why.clone().unwrap_or_default(),
            Err(_) => return std::future::pending().await,
        };
        why
    }

    /// Stops serving, stops Raft, commits the search index and flushes the store.
    pub async fn shutdown(self) {
        let _ = self.closing.send(true);
        let _ = self.stop_server.send(());
        match tokio::time::timeout(Duration::from_secs(5), self.server).await {
            Ok(Ok(Err(e))) => tracing::warn!(error = %e, "the gRPC server stopped with an error"),
            Err(_) => tracing::warn!("the gRPC server did not stop within 5 s"),
            _ => {}
        }
        for task in self.background {
            task.abort();
        }
        if let Err(e) = self.node.raft.shutdown().await {
            tracing::warn!(error = %e, "raft did not shut down cleanly");
        }
        // The last batch answered may still be landing: wait for it, so that the flush below
        // includes it (one that lands later anyway is applied again from the log at the next
        // start).
        if let Err(e) = self.node.wait_applied(self.node.answered_index()).await {
            tracing::warn!(error = %e, "the last applied entries did not reach the store");
        }
        self.lander.abort();
        self.node.search.shutdown(self.node.applied_index());
        self.node.audit.close();
        if let Err(e) = self
            .node
            .store
            .record_durable(self.node.applied_index())
            .await
        {
            tracing::error!(error = %e, "flushing the store at shutdown failed");
        }
        tracing::info!(node = self.node.id, "node stopped");
    }
}
