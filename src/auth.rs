//! Who may call: API keys, the role each RPC needs, and the guard every request passes.
//!
//! A secret is `aide_<accessor>_<64 hex digits>`; the store keeps the accessor (safe to log) and
//! the SHA-256 of the whole secret. When keys are enabled (a replicated flag, so every node
//! agrees) every RPC needs `authorization: Bearer <secret>` with a live key whose role covers the
//! call and whose projects hold the request's project. Node-to-node calls (Raft, forwarded writes,
//! read index) carry no key: with TLS they need a peer certificate signed by the cluster CA.
//!
//! The first admin key cannot come over the network alone: `aide auth enable` must present the
//! bootstrap token each node writes into its data directory (readable by the owner only).

use crate::apply::auth as keys;
use crate::audit::{AuditEntry, AuditLog};
use crate::grpc::meta::{DEFAULT_PROJECT, PROJECT};
use crate::model::{ApiKey, Role};
use crate::storage::Store;
use crate::tls::PeerCert;
use sha2::Digest;
use std::path::Path;
use std::sync::Arc;
use std::task::{Context, Poll};
use tonic::codegen::{http, BoxFuture, Service};
use tonic::Status;

/// The file in a data directory holding the node's bootstrap token.
pub const BOOTSTRAP_FILE: &str = "bootstrap.token";

/// Who made a request, as the guard found it.
#[derive(Debug, Clone, Default)]
pub struct Caller {
    /// The key's accessor id; empty when keys are not enabled, `node` for another node.
    pub accessor: String,
    /// The key, when keys are enabled.
    pub key: Option<ApiKey>,
    /// The call, `Service/Method`.
    pub operation: String,
    /// Admitted without a key because keys were off here: what to check if they are on once
    /// the call has waited for its read barrier (a node behind the enabling admits calls the
    /// leader already requires a key for).
    pub keyless: Option<Keyless>,
}

/// What a call admitted without a key needs, should keys be on when it is served.
#[derive(Debug, Clone)]
pub struct Keyless {
    need: Need,
    project: String,
    /// The secret the call carried, if any.
    offered: Option<String>,
}

/// A new secret for a key named `accessor`, and its hash.
pub fn new_secret(accessor: &str) -> (String, String) {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).expect("the operating system's random numbers");
    let secret = format!("aide_{accessor}_{}", hex(&bytes));
    let hash = hash(&secret);
    (secret, hash)
}

/// A new secret for nodes to authenticate their calls to each other with.
pub fn new_node_secret() -> String {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).expect("the operating system's random numbers");
    hex(&bytes)
}

/// The metadata key of the node secret on node-to-node calls.
pub const NODE_AUTH: &str = "x-aide-node-auth";

/// Marks `req` as a call from a node of the cluster (once keys are enabled, the receiving node
/// checks the cluster's node secret).
pub fn as_node<T>(store: &Store, req: &mut tonic::Request<T>) {
    if let Ok((_, Some(secret))) = keys::keys_on(store) {
        if let Ok(mut v) = tonic::metadata::MetadataValue::try_from(&*secret) {
            v.set_sensitive(true);
            req.metadata_mut().insert(NODE_AUTH, v);
        }
    }
}

/// `authorization: Bearer <key>` as request metadata (marked sensitive, so it is never logged);
/// `None` when the key cannot be sent as metadata.
pub fn bearer_value(key: &str) -> Option<tonic::metadata::MetadataValue<tonic::metadata::Ascii>> {
    let mut v = tonic::metadata::MetadataValue::try_from(format!("Bearer {}", key.trim())).ok()?;
    v.set_sensitive(true);
    Some(v)
}

/// The secret a request's `authorization: Bearer` header carries.
fn bearer(headers: &http::HeaderMap) -> Option<&str> {
    headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
}

/// The stored form of a secret.
pub fn hash(secret: &str) -> String {
    hex(&sha2::Sha256::digest(secret.as_bytes()))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The accessor a secret names, if it has the shape of one.
fn accessor_of(secret: &str) -> Option<&str> {
    let rest = secret.strip_prefix("aide_")?;
    let (accessor, tail) = rest.split_once('_')?;
    (tail.len() == 64 && !accessor.is_empty()).then_some(accessor)
}

/// Equal strings, compared in time that does not depend on where they differ.
fn same(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

/// The node's bootstrap token, created (owner-readable only) on first use.
pub fn bootstrap_token(dir: &Path) -> std::io::Result<String> {
    let path = dir.join(BOOTSTRAP_FILE);
    match std::fs::read_to_string(&path) {
        Ok(t) => Ok(t.trim().to_string()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let mut bytes = [0u8; 24];
            getrandom::fill(&mut bytes).map_err(std::io::Error::other)?;
            let token = hex(&bytes);
            crate::config::write_private(&path, token.as_bytes())?;
            Ok(token)
        }
        Err(e) => Err(e),
    }
}

/// Checks a bootstrap token against the node's own.
pub fn bootstrap_matches(dir: &Path, token: &str) -> bool {
    !token.trim().is_empty()
        && bootstrap_token(dir).is_ok_and(|t| !t.is_empty() && same(&t, token.trim()))
}

/// What an RPC needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    /// A key with this role (and the request's project, for data calls).
    Role(Role, bool),
    /// An admin key for every project (`*`): membership, the list of keys, the audit log.
    ClusterAdmin,
    /// Another node: a node's certificate when TLS is on.
    Node,
    /// Nothing: `AuthService/Enable` checks its bootstrap token itself.
    Bootstrap,
}

/// What the RPC at `path` (`/package.Service/Method`) needs.
pub fn need(path: &str) -> Need {
    let (service, method) = path
        .trim_start_matches('/')
        .split_once('/')
        .unwrap_or(("", ""));
    let service = service.rsplit('.').next().unwrap_or("");
    match (service, method) {
        ("RaftService", _) | ("ClusterService", "Forward" | "ReadIndex") => Need::Node,
        ("AuthService", "Enable") => Need::Bootstrap,
        ("AuthService", "CreateKey" | "RevokeKey") => Need::Role(Role::Admin, false),
        ("AuthService", _)
        | ("ClusterService", "Init" | "Join" | "Leave" | "Remove" | "SetIsolation") => {
            Need::ClusterAdmin
        }
        ("ClusterService", _) | ("HealthService", _) => Need::Role(Role::Read, false),
        ("SwarmService", _) => Need::Role(Role::Read, true),
        (_, m) if is_read(m) => Need::Role(Role::Read, true),
        _ => Need::Role(Role::Write, true),
    }
}

fn is_read(method: &str) -> bool {
    matches!(method, "Get" | "List" | "Search" | "History" | "Check")
}

/// Decides whether a request may go on: the caller, or why not. With TLS, a join also needs
/// a certificate signed by the cluster CA (the new node's own, or the operator's), and calls
/// only nodes make need a node's certificate.
pub fn admit(
    store: &Store,
    tls: bool,
    path: &str,
    headers: &http::HeaderMap,
    peer_cert: impl Fn() -> PeerCert,
) -> Result<Caller, Status> {
    // The certificate is parsed only when it matters, and once.
    let parsed = std::cell::OnceCell::new();
    let peer = || *parsed.get_or_init(&peer_cert);
    if tls && peer() == PeerCert::None && operation(path) == "ClusterService/Join" {
        return Err(Status::unauthenticated(
            "joining a TLS cluster needs a certificate signed by the cluster CA \
             (--tls-cert and --tls-key)",
        ));
    }
    let unreadable = |e: crate::storage::StoreError| {
        Status::unavailable(format!("cannot read the key store: {e}"))
    };
    // A call from a node of another cluster (forwarded writes, read indexes, membership
    // changes) is refused; Raft messages are refused by their service, which says more, and a
    // probe is answered, so that the caller's `cluster status` shows what answers here.
    let named = crate::apply::cluster::named(headers);
    if named.is_some() && !path.contains("RaftService/") && !path.ends_with("/NodeInfo") {
        if let Some(mine) = crate::apply::cluster::foreign(store, named).map_err(unreadable)? {
            return Err(Status::failed_precondition(format!(
                "this node holds the data of cluster {mine}, and the call comes from a node of \
                 cluster {}: a node serves only the cluster whose data it holds (a node of \
                 another cluster answers at an address that was this cluster's)",
                named.unwrap_or_default()
            )));
        }
    }
    let (enabled, node_secret) = keys::keys_on(store).map_err(unreadable)?;
    // Another node of the cluster, when keys are on: it knows the node secret (and, with TLS,
    // presents a node's certificate).
    let from_node = enabled
        && (!tls || peer() == PeerCert::Node)
        && match (
            headers.get(NODE_AUTH).and_then(|v| v.to_str().ok()),
            node_secret,
        ) {
            (Some(given), Some(secret)) => same(given, &secret),
            _ => false,
        };
    match need(path) {
        Need::Node if tls && peer() == PeerCert::None => Err(Status::unauthenticated(
            "node-to-node calls need a certificate signed by the cluster CA",
        )),
        Need::Node if tls && peer() == PeerCert::Client => Err(Status::unauthenticated(
            "node-to-node calls need a node's certificate (made by `aide cert issue NAME`); \
             this one is a client's",
        )),
        Need::Node if enabled && !from_node => Err(Status::unauthenticated(
            "node-to-node calls need the cluster's node secret",
        )),
        Need::Node | Need::Bootstrap => Ok(Caller::default()),
        // Nodes forward membership changes to the leader and probe each other; they do not
        // manage keys or touch data through the public services.
        Need::Role(..) | Need::ClusterAdmin
            if from_node && operation(path).starts_with("ClusterService/") =>
        {
            Ok(Caller {
                accessor: "node".to_string(),
                ..Default::default()
            })
        }
        need if !enabled => Ok(Caller {
            keyless: Some(Keyless {
                need,
                project: project_of(headers),
                offered: bearer(headers).map(str::to_string),
            }),
            ..Default::default()
        }),
        need => check_key(store, need, bearer(headers), &project_of(headers)),
    }
}

/// The caller with API key `secret`, if that key may make a call that needs `need` in
/// `project` by `store`'s keys; else why not.
fn check_key(
    store: &Store,
    need: Need,
    secret: Option<&str>,
    project: &str,
) -> Result<Caller, Status> {
    let unreadable = |e: crate::storage::StoreError| {
        Status::unavailable(format!("cannot read the key store: {e}"))
    };
    let (role, per_project) = match need {
        Need::Role(role, per_project) => (role, per_project),
        _ => (Role::Admin, false),
    };
    let secret = secret.ok_or_else(|| {
        Status::unauthenticated(
            "this cluster requires an API key: pass --api-key, set AIDE_API_KEY, \
             or put api_key in the config file",
        )
    })?;
    let accessor = accessor_of(secret)
        .ok_or_else(|| Status::unauthenticated("the API key is not an aide key"))?;
    let key = keys::key(&store.state, accessor)
        .map_err(unreadable)?
        .filter(|k| same(&k.hash, &hash(secret)))
        .ok_or_else(|| Status::unauthenticated("the API key is not known"))?;
    let caller = Caller {
        accessor: key.accessor.clone(),
        key: Some(key.clone()),
        ..Default::default()
    };
    if !key.is_live() {
        return Err(Status::unauthenticated(format!(
            "API key {} has been revoked",
            key.accessor
        )));
    }
    if key.role < role {
        return Err(Status::permission_denied(format!(
            "API key {} has the {} role; this call needs {}",
            key.accessor,
            key.role.as_str(),
            role.as_str()
        )));
    }
    if need == Need::ClusterAdmin && !key.allows_all() {
        return Err(Status::permission_denied(format!(
            "API key {} is an admin of some projects only; this call needs an admin \
                     key for every project ('*')",
            key.accessor
        )));
    }
    if per_project && !key.allows(project) {
        return Err(Status::permission_denied(format!(
            "API key {} may not use project {project:?}",
            key.accessor
        )));
    }
    Ok(caller)
}

/// Whether `caller` may still be served, by this node's state as it is now: checked again
/// after a read's barrier (a revocation committed before a linearizable read began is applied
/// by then; so is an enabling of keys, and a call let in without one is then checked as if
/// keys had been on: by the key it carried, if any) and before each change a watch sends.
pub fn still_allowed(store: &Store, caller: &Caller) -> Result<(), Status> {
    let read = |e: crate::storage::StoreError| Status::unavailable(e.to_string());
    if let Some(keyless) = &caller.keyless {
        if !keys::keys_on(store).map_err(read)?.0 {
            return Ok(());
        }
        return match &keyless.offered {
            Some(secret) => {
                check_key(store, keyless.need, Some(secret), &keyless.project).map(|_| ())
            }
            None => Err(Status::unauthenticated(
                "this cluster now requires an API key; call again with one",
            )),
        };
    }
    let Some(key) = &caller.key else {
        // Another node, or a call that needs no key (the bootstrap).
        return Ok(());
    };
    match keys::key(&store.state, &key.accessor).map_err(read)? {
        Some(k) if k.is_live() => Ok(()),
        _ => Err(Status::unauthenticated(format!(
            "API key {} has been revoked",
            key.accessor
        ))),
    }
}

fn project_of(headers: &http::HeaderMap) -> String {
    match headers.get(PROJECT).and_then(|v| v.to_str().ok()) {
        None | Some("") => DEFAULT_PROJECT.to_string(),
        Some(p) => p.to_string(),
    }
}

/// The accessor of the secret in `headers`, for the audit line of a refused request.
fn claimed_accessor(headers: &http::HeaderMap) -> String {
    bearer(headers)
        .and_then(accessor_of)
        .unwrap_or("")
        .to_string()
}

/// Adds the node's applied index to a response that does not report one.
fn with_applied_index<B>(
    resp: &mut http::Response<B>,
    applied: &tokio::sync::watch::Receiver<u64>,
) {
    let headers = resp.headers_mut();
    if !headers.contains_key(crate::grpc::meta::APPLIED_INDEX) {
        let mut value = http::HeaderValue::from(*applied.borrow());
        // Not added to HTTP/2's header table, as `grpc::meta::unindexed` explains.
        value.set_sensitive(true);
        headers.insert(crate::grpc::meta::APPLIED_INDEX, value);
    }
}

/// What the guard in front of every service needs.
pub struct GuardState {
    pub store: Store,
    /// The node's applied index: every response reports one (a handler that reports the index
    /// its answer reflects sets it itself; any other response gets the index when it leaves).
    pub applied: tokio::sync::watch::Receiver<u64>,
    pub audit: Arc<AuditLog>,
    pub node_id: u64,
    pub tls: bool,
}

/// The guard in front of every service (cloned for every request: one shared state).
#[derive(Clone)]
pub struct GuardLayer(pub Arc<GuardState>);

impl<S> tower_layer::Layer<S> for GuardLayer {
    type Service = Guard<S>;

    fn layer(&self, inner: S) -> Guard<S> {
        Guard {
            inner,
            layer: self.0.clone(),
        }
    }
}

/// [`GuardLayer`] around one service.
#[derive(Clone)]
pub struct Guard<S> {
    inner: S,
    layer: Arc<GuardState>,
}

impl<S, B> Service<http::Request<B>> for Guard<S>
where
    S: Service<http::Request<B>, Response = http::Response<tonic::body::Body>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: http::Request<B>) -> Self::Future {
        let path = req.uri().path();
        let g = &self.layer;
        let extensions = req.extensions();
        match admit(&g.store, g.tls, path, req.headers(), || {
            crate::tls::peer_cert(extensions)
        }) {
            Ok(mut caller) => {
                let need = need(path);
                // Writes bind their request id to the call; membership changes are audited here
                // with their outcome (key changes by their handlers, which know the key).
                if matches!(need, Need::Role(Role::Write, _) | Need::ClusterAdmin) {
                    caller.operation = operation(path);
                }
                let audit = (need == Need::ClusterAdmin
                    && caller.operation.starts_with("ClusterService/"))
                .then(|| (g.clone(), caller.accessor.clone(), caller.operation.clone()));
                req.extensions_mut().insert(caller);
                let fut = self.inner.call(req);
                // Node-to-node calls (Raft, forwarding) are not clients' responses.
                let applied = (need != Need::Node).then(|| g.applied.clone());
                Box::pin(async move {
                    let mut resp = fut.await?;
                    if let Some(applied) = &applied {
                        with_applied_index(&mut resp, applied);
                    }
                    if let Some((g, accessor, operation)) = audit {
                        g.audit.write(&AuditEntry {
                            node: g.node_id,
                            accessor,
                            project: String::new(),
                            operation,
                            target: String::new(),
                            result: outcome(&resp),
                        });
                    }
                    Ok(resp)
                })
            }
            Err(status) => {
                let entry = AuditEntry {
                    node: g.node_id,
                    accessor: claimed_accessor(req.headers()),
                    project: project_of(req.headers()),
                    operation: operation(path),
                    target: String::new(),
                    result: format!("denied: {}", status.message()),
                };
                // A caller without a live key is counted beyond a rate (a flood must not rotate
                // the real lines away); a live key refused its project or role is always written.
                if status.code() == tonic::Code::Unauthenticated {
                    g.audit.refused(&entry);
                } else {
                    g.audit.write(&entry);
                }
                let mut resp = status.into_http();
                with_applied_index(&mut resp, &g.applied);
                Box::pin(async move { Ok(resp) })
            }
        }
    }
}

/// `Service/Method` of a gRPC path.
pub fn operation(path: &str) -> String {
    let p = path.trim_start_matches('/');
    match p.split_once('/') {
        Some((service, method)) => {
            format!("{}/{method}", service.rsplit('.').next().unwrap_or(service))
        }
        None => p.to_string(),
    }
}

/// "ok", or the gRPC error a response carries in its headers.
fn outcome(resp: &http::Response<tonic::body::Body>) -> String {
    match resp
        .headers()
        .get("grpc-status")
        .and_then(|v| v.to_str().ok())
    {
        None | Some("0") => "ok".to_string(),
        Some(code) => {
            let message = resp
                .headers()
                .get("grpc-message")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            format!("error {code}: {message}")
        }
    }
}
