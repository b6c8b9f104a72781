//! The typed client every caller (CLI, benchmark, tests) uses to talk to nodes. It knows a list
//! of endpoints, orders them by measured round trip, sends each call to the nearest reachable
//! one and fails over to the next when it cannot be reached. Writes carry a request id that
//! stays the same across retries, so a retried write applies once; every response's applied
//! index is remembered so a later read can ask for at least it.
//!
//! Writes go to the leader when it is one of the endpoints (learned from the membership when
//! the client probes, and again after a write fails over): any node would forward them there,
//! and going directly saves that hop. Reads stay on the nearest node.

mod rpc;

use crate::grpc::meta::{unindexed, APPLIED_INDEX, CONSISTENCY, MIN_INDEX, PROJECT, REQUEST_ID};
use crate::grpc::pb::aidememory::health_service_client::HealthServiceClient;
use crate::grpc::pb::aidememory::HealthCheckRequest;
use crate::grpc::pb::cluster::cluster_service_client::ClusterServiceClient;
use crate::grpc::pb::cluster::MembersRequest;
use std::future::Future;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tonic::transport::Channel;
use tonic::{Code, Request, Response, Status};

/// The endpoint used when none is configured.
pub const DEFAULT_ENDPOINT: &str = crate::node::DEFAULT_LISTEN;

/// A failed call, as the caller should show it.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct ClientError {
    pub code: Code,
    pub message: String,
}

impl From<Status> for ClientError {
    fn from(s: Status) -> Self {
        ClientError {
            code: s.code(),
            message: s.message().to_string(),
        }
    }
}

/// How fresh reads must be.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ReadMode {
    /// Confirmed through the leader (after the min-index too, when one is set).
    #[default]
    Linearizable,
    /// The node's own copy.
    Stale,
    /// The node's own copy once it has applied the min-index (this client's own writes): no
    /// round trip to the leader. Without a min-index, as linearizable.
    OwnWrites,
}

/// How to reach the cluster.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// `host:port` of one or more nodes.
    pub endpoints: Vec<String>,
    /// The project every call belongs to; the node's default when unset.
    pub project: Option<String>,
    pub read_mode: ReadMode,
    /// Reads wait for at least this applied index.
    pub min_index: Option<u64>,
    /// The min-index is what this client remembers of its last write (`--min-index last`),
    /// not the caller's: when the cluster says it never committed it (an index kept from a
    /// cluster that ran at the same addresses before), reads go on without it.
    pub min_index_is_hint: bool,
    /// How long one call may take before it is tried elsewhere.
    pub timeout: Duration,
    /// Sent as `authorization: Bearer <key>` with every call.
    pub api_key: Option<String>,
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            endpoints: vec![DEFAULT_ENDPOINT.to_string()],
            project: None,
            read_mode: ReadMode::Linearizable,
            min_index: None,
            min_index_is_hint: false,
            timeout: Duration::from_secs(15),
            api_key: None,
        }
    }
}

struct Endpoint {
    addr: String,
    channel: Channel,
}

/// A connection to a cluster. Cheap to clone.
#[derive(Clone)]
pub struct Client {
    endpoints: Arc<Vec<Endpoint>>,
    /// The index in `endpoints` of the one in use.
    current: Arc<AtomicUsize>,
    /// The index in `endpoints` of the leader, or [`NO_LEADER`].
    leader: Arc<AtomicUsize>,
    config: Arc<ClientConfig>,
    /// The highest applied index any response reported.
    last_index: Arc<AtomicU64>,
    /// Measured round trips, by endpoint, from the last probe.
    rtts: Arc<Mutex<Vec<Option<Duration>>>>,
    /// Whether the cluster refused the min-index as one it never committed (see
    /// [`ClientConfig::min_index_is_hint`]).
    hint_refused: Arc<std::sync::atomic::AtomicBool>,
}

/// Whether a call changes state (and needs a request id) or reads it.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Write,
    Read,
}

impl Client {
    /// A client for `config`. No connection is made until the first call; with several endpoints,
    /// [`Client::probe`] orders them by round trip.
    pub fn new(config: ClientConfig) -> Result<Client, ClientError> {
        if config.endpoints.is_empty() {
            return Err(ClientError {
                code: Code::InvalidArgument,
                message: "no endpoint given".to_string(),
            });
        }
        let mut endpoints = Vec::new();
        for addr in &config.endpoints {
            let channel = crate::raft::network::channel(addr).map_err(|e| ClientError {
                code: Code::InvalidArgument,
                message: format!("{addr:?} is not a HOST:PORT address ({e})"),
            })?;
            endpoints.push(Endpoint {
                addr: addr.clone(),
                channel,
            });
        }
        let n = endpoints.len();
        Ok(Client {
            endpoints: Arc::new(endpoints),
            current: Arc::new(AtomicUsize::new(0)),
            leader: Arc::new(AtomicUsize::new(NO_LEADER)),
            config: Arc::new(config),
            last_index: Arc::new(AtomicU64::new(0)),
            rtts: Arc::new(Mutex::new(vec![None; n])),
            hint_refused: Arc::default(),
        })
    }

    /// A client for `config`, already pointed at the nearest reachable endpoint.
    pub async fn connect(config: ClientConfig) -> Result<Client, ClientError> {
        let client = Client::new(config)?;
        if client.endpoints.len() > 1 {
            client.probe().await;
        }
        Ok(client)
    }

    /// Measures the round trip to every endpoint and switches to the nearest reachable one.
    pub async fn probe(&self) -> Vec<(String, Option<Duration>)> {
        let probes = self.endpoints.iter().map(|e| async move {
            let start = Instant::now();
            let mut req = Request::new(HealthCheckRequest {});
            req.set_timeout(Duration::from_secs(1));
            self.authorize(&mut req);
            let ok = tokio::time::timeout(
                Duration::from_secs(1),
                HealthServiceClient::new(e.channel.clone()).check(req),
            )
            .await;
            match ok {
                Ok(Ok(_)) => Some(start.elapsed()),
                _ => None,
            }
        });
        let rtts = futures::future::join_all(probes).await;
        if let Some((best, _)) = rtts
            .iter()
            .enumerate()
            .filter_map(|(i, r)| r.map(|d| (i, d)))
            .min_by_key(|(_, d)| *d)
        {
            self.current.store(best, Ordering::SeqCst);
        }
        *self.rtts.lock().unwrap_or_else(|p| p.into_inner()) = rtts.clone();
        self.learn_leader().await;
        self.endpoints
            .iter()
            .map(|e| e.addr.clone())
            .zip(rtts)
            .collect()
    }

    /// Asks the node in use who leads, and sends writes there when it is one of the endpoints.
    async fn learn_leader(&self) {
        let n = self.endpoints.len();
        if n < 2 {
            return;
        }
        let i = self.current.load(Ordering::SeqCst) % n;
        let mut req = Request::new(MembersRequest {});
        req.set_timeout(Duration::from_secs(1));
        self.authorize(&mut req);
        let found = ClusterServiceClient::new(self.endpoints[i].channel.clone())
            .members(req)
            .await
            .ok()
            .and_then(|r| {
                let r = r.into_inner();
                let addr = r
                    .members
                    .into_iter()
                    .find(|m| m.node_id == r.leader_id)?
                    .address;
                self.endpoints.iter().position(|e| e.addr == addr)
            });
        self.leader
            .store(found.unwrap_or(NO_LEADER), Ordering::SeqCst);
    }

    /// Every endpoint, in the order given.
    pub fn endpoints(&self) -> Vec<String> {
        self.endpoints.iter().map(|e| e.addr.clone()).collect()
    }

    /// The endpoint calls go to now.
    pub fn endpoint(&self) -> &str {
        &self.endpoints[self.current.load(Ordering::SeqCst) % self.endpoints.len()].addr
    }

    /// The highest applied index a response reported: the index of this client's last write
    /// or newer.
    pub fn last_index(&self) -> u64 {
        self.last_index.load(Ordering::SeqCst)
    }

    /// Whether the cluster refused the remembered min-index as one it never committed (the
    /// reads went on without it).
    pub fn min_index_refused(&self) -> bool {
        self.hint_refused.load(Ordering::SeqCst)
    }

    /// The project calls belong to.
    pub fn project(&self) -> Option<&str> {
        self.config.project.as_deref()
    }

    /// Adds the API key, if any, to `req`; false when the key cannot be sent as metadata.
    fn authorize<T>(&self, req: &mut Request<T>) -> bool {
        let Some(key) = &self.config.api_key else {
            return true;
        };
        match crate::auth::bearer_value(key) {
            Some(v) => {
                req.metadata_mut().insert("authorization", v);
                true
            }
            None => false,
        }
    }

    fn decorate<T>(
        &self,
        msg: T,
        kind: Kind,
        request_id: &str,
        min_index: Option<u64>,
    ) -> Result<Request<T>, ClientError> {
        let mut req = Request::new(msg);
        req.set_timeout(self.config.timeout);
        let md = req.metadata_mut();
        let bad = |what: &str| ClientError {
            code: Code::InvalidArgument,
            message: format!("{what} cannot be sent as gRPC metadata"),
        };
        if let Some(p) = &self.config.project {
            md.insert(PROJECT, p.parse().map_err(|_| bad("the project name"))?);
        }
        if self.config.api_key.is_some() && !self.authorize(&mut req) {
            return Err(bad("the API key"));
        }
        let md = req.metadata_mut();
        match kind {
            Kind::Write => {
                md.insert(
                    REQUEST_ID,
                    unindexed(request_id.parse().map_err(|_| bad("the request id"))?),
                );
            }
            Kind::Read => {
                // A read with a min-index and no consistency named is served by the node once
                // it has applied that index.
                let named = match self.config.read_mode {
                    ReadMode::Stale => Some("stale"),
                    ReadMode::Linearizable if min_index.is_some() => Some("linearizable"),
                    ReadMode::Linearizable | ReadMode::OwnWrites => None,
                };
                if let Some(named) = named {
                    md.insert(CONSISTENCY, named.parse().map_err(|_| bad("consistency"))?);
                }
                if let Some(n) = min_index {
                    md.insert(MIN_INDEX, unindexed(n.into()));
                }
            }
        }
        Ok(req)
    }

    /// Sends one call, failing over across endpoints while the node cannot be reached. A write
    /// keeps its request id across attempts.
    async fn call<T, R, F, Fut>(&self, msg: T, kind: Kind, send: F) -> Result<R, ClientError>
    where
        T: Clone,
        F: Fn(Channel, Request<T>) -> Fut,
        Fut: Future<Output = Result<Response<R>, Status>>,
    {
        let request_id = match kind {
            Kind::Write => ulid::Ulid::new().to_string(),
            Kind::Read => String::new(),
        };
        let deadline = Instant::now() + self.config.timeout;
        let n = self.endpoints.len();
        let mut attempt = 0usize;
        let mut refused_in_a_row = 0usize;
        let mut first_refusal: Option<Instant> = None;
        // The last reason a node gave for not serving the call: when time runs out on an
        // attempt that got no answer, it says more than the timeout.
        let mut last_reason: Option<Status> = None;
        let mut min_index = self.config.min_index;
        // Endpoints whose last outcome was a connection this client could not make, or an
        // answer that the node gave up waiting for a leader or a quorum: once every one is so
        // and one gave up, the call ends with that reason.
        let mut settled = vec![false; n];
        let mut gave_up: Option<Status> = None;
        // Endpoints where something other than an aide node answered.
        let mut foreign = vec![false; n];
        loop {
            let leader = match kind {
                Kind::Write => self.leader.load(Ordering::SeqCst),
                Kind::Read => NO_LEADER,
            };
            let to_leader = leader < n;
            let i = if to_leader {
                leader
            } else {
                self.current.load(Ordering::SeqCst) % n
            };
            let channel = self.endpoints[i].channel.clone();
            let req = self.decorate(msg.clone(), kind, &request_id, min_index)?;
            // A node that stopped answering (frozen, cut off) keeps its connection open: an
            // attempt gets a share of the time, so that the others are tried too.
            let left = deadline.saturating_duration_since(Instant::now());
            if left < Duration::from_millis(10) {
                if let Some(reason) = last_reason {
                    return Err(reason.into());
                }
                return Err(ClientError {
                    code: Code::Unavailable,
                    message: format!(
                        "no answer within the call's {:?} from {}",
                        self.config.timeout,
                        self.endpoints
                            .iter()
                            .map(|e| e.addr.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                });
            }
            let budget = if n > 1 {
                left.min((self.config.timeout / 3).max(MIN_ATTEMPT))
            } else {
                left
            };
            let mut answered = false;
            // Something this client cannot talk to answered at that endpoint.
            let mut foreign_now = false;
            let status = match tokio::time::timeout(budget, send(channel, req)).await {
                Err(_) => Status::unavailable(format!(
                    "{} did not answer within {budget:?}",
                    self.endpoints[i].addr
                )),
                // The call's own deadline (tonic's "Timeout expired"): a node that did not
                // answer, named.
                Ok(Err(s)) if s.code() == Code::Cancelled && s.message() == "Timeout expired" => {
                    Status::unavailable(format!(
                        "{} did not answer within {budget:?}",
                        self.endpoints[i].addr
                    ))
                }
                Ok(Err(s)) => match mismatch(&self.endpoints[i].addr, &s) {
                    // Something this client cannot talk to on that port (not an aide node, TLS
                    // on one side only, a certificate the CA did not sign): named, and not
                    // waited for.
                    Some(e) => {
                        foreign[i] = true;
                        if foreign.iter().all(|f| *f) {
                            return Err(e);
                        }
                        // Counted as an endpoint that refused the connection: the next one at
                        // once.
                        foreign_now = true;
                        Status::unavailable(e.message)
                    }
                    None => {
                        answered = true;
                        s
                    }
                },
                Ok(Ok(resp)) => {
                    if let Some(index) = resp
                        .metadata()
                        .get(APPLIED_INDEX)
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.parse::<u64>().ok())
                    {
                        self.last_index.fetch_max(index, Ordering::SeqCst);
                    }
                    if kind == Kind::Write && attempt > 0 {
                        // The write went elsewhere than planned: find the leader again.
                        self.learn_leader().await;
                    }
                    return Ok(resp.into_inner());
                }
            };
            if self.config.min_index_is_hint
                && min_index.is_some()
                && status.metadata().contains_key(crate::node::FOREIGN_INDEX)
            {
                // The remembered index belongs to another cluster: read without it.
                self.hint_refused.store(true, Ordering::SeqCst);
                min_index = None;
                continue;
            }
            // `Cancelled` is what a call in flight gets when its connection dies with the node.
            // An `Unknown` "transport error" is a connection that broke mid-call.
            let retry = matches!(status.code(), Code::Unavailable | Code::Cancelled)
                || (status.code() == Code::Unknown && is_connect_error(&status));
            let is_reason =
                answered && status.code() == Code::Unavailable && !is_connect_error(&status);
            if !retry || Instant::now() >= deadline {
                return Err(match last_reason {
                    Some(reason) if retry && !is_reason => reason.into(),
                    _ => status.into(),
                });
            }
            if is_reason {
                last_reason = Some(status.clone());
            }
            // A connect error of this client's own carries its cause; a node's answer (which may
            // quote a connect error of its own) does not.
            let refused_here = foreign_now
                || (std::error::Error::source(&status).is_some() && is_connect_error(&status));
            let node_gave_up = answered && status.metadata().contains_key(crate::node::GAVE_UP);
            settled[i] = refused_here || node_gave_up;
            if node_gave_up {
                gave_up = Some(status.clone());
            }
            if let Some(reason) = gave_up.as_ref().filter(|_| settled.iter().all(|s| *s)) {
                return Err(reason.clone().into());
            }
            attempt += 1;
            if to_leader {
                // The leader is gone or moved: go back to the nearest node, which forwards
                // (the next one, when the nearest was that leader).
                let _ = self.leader.compare_exchange(
                    leader,
                    NO_LEADER,
                    Ordering::SeqCst,
                    Ordering::SeqCst,
                );
                let _ = self.current.compare_exchange(
                    leader,
                    (leader + 1) % n,
                    Ordering::SeqCst,
                    Ordering::SeqCst,
                );
                continue;
            }
            if n > 1 {
                // Move on to the next endpoint (unless another call already did).
                let _ = self.current.compare_exchange(
                    i,
                    (i + 1) % n,
                    Ordering::SeqCst,
                    Ordering::SeqCst,
                );
            }
            if foreign_now || is_connect_error(&status) {
                refused_in_a_row += 1;
                let since = *first_refusal.get_or_insert_with(Instant::now);
                if refused_in_a_row < n {
                    continue; // try the next endpoint at once
                }
                if since.elapsed() >= CONNECT_BUDGET {
                    return Err(ClientError {
                        code: Code::Unavailable,
                        message: format!(
                            "{NONE_REACHABLE} {} ({})",
                            self.endpoints
                                .iter()
                                .map(|e| e.addr.as_str())
                                .collect::<Vec<_>>()
                                .join(", "),
                            status.message()
                        ),
                    });
                }
            } else {
                refused_in_a_row = 0;
            }
            // A node that answered is waiting for an election: try again soon.
            let pause = Duration::from_millis((25 * attempt as u64).min(100));
            tokio::time::sleep(pause).await;
        }
    }
}

/// What a task id, or a prefix of one (as `aide task list` prints them), names: `T` is the
/// task, or its id.
#[derive(Debug, Clone, PartialEq)]
pub enum TaskRef<T> {
    /// The one task it names.
    One(T),
    /// No task.
    None,
    /// This many tasks: the prefix is too short.
    Many(usize),
}

impl<T> TaskRef<T> {
    pub fn map<U>(self, f: impl FnOnce(T) -> U) -> TaskRef<U> {
        match self {
            TaskRef::One(t) => TaskRef::One(f(t)),
            TaskRef::None => TaskRef::None,
            TaskRef::Many(n) => TaskRef::Many(n),
        }
    }
}

/// Whether `id` has the shape of a whole task id (16 hex digits). A write can name such an id
/// as it is: the write, applied through the leader, says whether the task exists, where a read
/// first (served stale, perhaps) could miss a task created a moment ago.
pub fn is_whole_task_id(id: &str) -> bool {
    id.len() == 16 && id.bytes().all(|b| b.is_ascii_hexdigit())
}

impl Client {
    /// The task `id` names: the task with that id, else the one task whose id starts with it.
    pub async fn resolve_task(
        &self,
        id: &str,
    ) -> Result<TaskRef<Box<crate::grpc::pb::aidememory::Task>>, ClientError> {
        use crate::grpc::pb::aidememory::{TaskGetRequest, TaskListRequest};
        // An empty id is refused here, before it could match every task as a prefix.
        let got = self.task_get(TaskGetRequest { id: id.to_string() }).await?;
        if got.found {
            return Ok(TaskRef::One(Box::new(got.task.unwrap_or_default())));
        }
        let all = self.task_list(TaskListRequest::default()).await?.tasks;
        let mut matching = all.into_iter().filter(|t| t.id.starts_with(id));
        Ok(match (matching.next(), matching.count()) {
            (Some(one), 0) => TaskRef::One(Box::new(one)),
            (None, _) => TaskRef::None,
            (Some(_), more) => TaskRef::Many(more + 1),
        })
    }

    /// The id a write to the task `id` names should carry: a whole id as it is (see
    /// [`is_whole_task_id`]), else the one task whose id starts with it.
    pub async fn task_to_change(&self, id: &str) -> Result<TaskRef<String>, ClientError> {
        if is_whole_task_id(id) {
            return Ok(TaskRef::One(id.to_string()));
        }
        Ok(self.resolve_task(id).await?.map(|task| task.id))
    }
}

/// No endpoint is known to lead.
const NO_LEADER: usize = usize::MAX;

/// The least time one attempt at a call gets before the next endpoint is tried (a third of
/// the call's timeout when that is more).
const MIN_ATTEMPT: Duration = Duration::from_secs(2);

/// How the error of a call that reached no endpoint at all begins.
pub const NONE_REACHABLE: &str = "no aide node is reachable at";

/// How long calls keep trying when no endpoint accepts a connection.
pub const CONNECT_BUDGET: Duration = Duration::from_secs(3);

/// The error for an endpoint this client cannot talk to whatever it retries, or `None`: what
/// answered is not a plain-text gRPC server (a web server, a node that serves TLS to a client
/// without `--tls-ca`), does not answer TLS (a plain node to a client with `--tls-ca`), or
/// shows a certificate the given CA does not vouch for.
pub(crate) fn mismatch(addr: &str, s: &Status) -> Option<ClientError> {
    let error = |why: &str| ClientError {
        code: Code::Unavailable,
        message: format!("{addr} {why} ({})", s.message()),
    };
    let mut source = std::error::Error::source(s);
    while let Some(e) = source {
        // This client's own HTTP/2 found the bytes it read malformed and hung up: a GOAWAY of
        // its own with an error (a web server's reply reads as a frame size error). A node
        // that is stopping sends its GOAWAY itself (`is_remote`): not a mismatch. An I/O error
        // under HTTP/2 can be TLS's: an alert the other side sent after the handshake.
        if let Some(h2) = e.downcast_ref::<h2::Error>() {
            let malformed = h2.is_go_away()
                && !h2.is_remote()
                && h2.reason().is_some_and(|r| r != h2::Reason::NO_ERROR);
            if malformed {
                return Some(error(
                    "accepted the connection but did not answer as an aide node: it does not \
                     speak gRPC over plain HTTP/2 (a node that serves TLS needs --tls-ca; \
                     anything else is not an aide node)",
                ));
            }
            return h2.get_io().and_then(tls_why).map(error);
        }
        // A TLS handshake that failed: rustls's error inside the connect error's io::Error.
        if let Some(why) = e.downcast_ref::<std::io::Error>().and_then(tls_why) {
            return Some(error(why));
        }
        source = e.source();
    }
    None
}

/// What an I/O error says about the endpoint when TLS failed in it, for [`mismatch`].
fn tls_why(io: &std::io::Error) -> Option<&'static str> {
    // The other side's alert after the handshake (TLS 1.3 checks this side's certificate
    // then) reaches the reader as text, rustls's own words for `AlertReceived`.
    const ALERT: &str = "refused the TLS handshake: it did not accept the certificate this side \
                         presented, or wanted one (check --tls-cert, --tls-key and --tls-ca: \
                         the cluster's CA must have signed the certificate)";
    let Some(tls) = io.get_ref()?.downcast_ref::<rustls::Error>() else {
        let alert = io.kind() == std::io::ErrorKind::InvalidData
            && io.to_string().starts_with("received fatal alert");
        return alert.then_some(ALERT);
    };
    Some(match tls {
        rustls::Error::InvalidCertificate(_) => {
            "showed a TLS certificate that the CA given with --tls-ca does not accept (one it \
             did not sign, for another address, or out of its dates): is it the CA of this \
             cluster?"
        }
        rustls::Error::InvalidMessage(_) | rustls::Error::InappropriateMessage { .. } => {
            "did not answer TLS: it serves plain gRPC (drop --tls-ca to talk to it), or is not \
             an aide node"
        }
        rustls::Error::AlertReceived(_) => ALERT,
        _ => "refused the TLS handshake",
    })
}

/// Whether the call failed because no connection could be made (rather than a node answering
/// that it cannot serve now).
fn is_connect_error(s: &Status) -> bool {
    let m = s.message();
    m.contains("tcp connect")
        || m.contains("transport error")
        || m.contains("connection")
        || m.is_empty()
}
