//! The `aide` command line: one file per command group, one printer for text and JSON.
//! Every group but `serve` talks to a node through [`crate::client`].

mod auth;
mod bench;
mod cluster;
mod decision;
mod hook;
mod local;
mod memory;
mod message;
pub mod print;
mod serve;
mod state;
mod task;

use crate::client::{Client, ClientConfig, ClientError, ReadMode};
use crate::config::{ClientFile, LastIndex};
use clap::{Parser, Subcommand, ValueEnum};
use print::Format;
use std::path::PathBuf;
use std::process::ExitCode;

/// aide: shared memory for AI coding agents — memories, decisions, state, messages and tasks,
/// replicated across a Raft cluster.
#[derive(Debug, Parser)]
#[command(name = "aide", version = crate::VERSION, disable_version_flag = true)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

/// Options every command takes.
#[derive(Debug, clap::Args)]
pub struct Global {
    /// Node(s) to talk to: HOST:PORT, or several separated by commas (the nearest reachable is used).
    #[arg(
        long,
        global = true,
        env = "AIDE_REMOTE",
        value_name = "HOST:PORT[,...]"
    )]
    pub remote: Option<String>,
    /// The project the data belongs to (default: `project` in the config file, else the name of
    /// the git repository the command runs in, else the node's `default`).
    #[arg(long, global = true, env = "AIDE_PROJECT")]
    pub project: Option<String>,
    /// Output format.
    #[arg(long, global = true, value_enum, default_value_t = Format::Text)]
    pub format: Format,
    /// Read consistency: linearizable (through the leader; the default, but for a read with
    /// --min-index, which the node serves itself once it has that index) or stale (this node's
    /// data).
    #[arg(long, global = true, value_enum)]
    pub consistency: Option<ConsistencyArg>,
    /// Reads wait until the node has applied at least this log index, then that node answers
    /// from its own copy (no round trip to the leader); `last` is the newest index this client
    /// has seen from these nodes (its last write or newer): read-your-writes at any node.
    #[arg(long, global = true, value_name = "INDEX|last", value_parser = parse_min_index)]
    pub min_index: Option<MinIndex>,
    /// The API key to send (when the cluster requires keys); else `api_key` in the config file.
    #[arg(long, global = true, env = "AIDE_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,
    /// TLS: the CA certificate the nodes' certificates are signed by; with it, calls use TLS.
    /// For `serve`: the cluster CA, which other nodes' certificates must chain to.
    #[arg(long, global = true, value_name = "FILE", env = "AIDE_TLS_CA")]
    pub tls_ca: Option<PathBuf>,
    /// TLS: a certificate to present (PEM). For `serve`: the node's own certificate.
    #[arg(long, global = true, value_name = "FILE", env = "AIDE_TLS_CERT")]
    pub tls_cert: Option<PathBuf>,
    /// TLS: the key of --tls-cert (PEM).
    #[arg(long, global = true, value_name = "FILE", env = "AIDE_TLS_KEY")]
    pub tls_key: Option<PathBuf>,
}

/// A `--min-index` value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MinIndex {
    At(u64),
    Last,
}

fn parse_min_index(s: &str) -> Result<MinIndex, String> {
    if s == "last" {
        return Ok(MinIndex::Last);
    }
    s.parse()
        .map(MinIndex::At)
        .map_err(|_| format!("{s:?} is neither a log index nor `last`"))
}

/// The `--consistency` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ConsistencyArg {
    Linearizable,
    Stale,
}

/// The command groups.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a node (a single-node cluster when started with no flags).
    Serve(serve::ServeArgs),
    /// Memories: notes that are full-text searchable.
    #[command(subcommand)]
    Memory(memory::MemoryCmd),
    /// Decisions: an append-only log per topic.
    #[command(subcommand)]
    Decision(decision::DecisionCmd),
    /// Key-value state, project-wide or per agent.
    #[command(subcommand)]
    State(state::StateCmd),
    /// Messages between agents.
    #[command(subcommand)]
    Message(message::MessageCmd),
    /// Tasks that agents claim and complete.
    #[command(subcommand)]
    Task(task::TaskCmd),
    /// Cluster membership and status.
    #[command(subcommand)]
    Cluster(cluster::ClusterCmd),
    /// API keys: enable them, create, list and revoke keys.
    #[command(subcommand)]
    Auth(auth::AuthCmd),
    /// The audit log of a node.
    #[command(subcommand)]
    Audit(auth::AuditCmd),
    /// Development TLS certificates for a local cluster.
    #[command(subcommand)]
    Cert(auth::CertCmd),
    /// Measure throughput and latency (closed loop: N clients, one call after another).
    Bench(bench::BenchArgs),
    /// Serve the aide tools to an MCP client (Claude Code) on stdin/stdout.
    Mcp {
        /// In local-first use (no node configured or running), where the session's own node
        /// listens; 127.0.0.1:7420 when free, so that CLI commands meanwhile go through it.
        #[arg(long, value_name = "HOST:PORT")]
        listen: Option<String>,
    },
    /// Commands Claude Code hooks run.
    #[command(subcommand)]
    Hook(hook::HookCmd),
    /// Print the version.
    Version {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

/// What a command failed with.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error("{0}")]
    Client(#[from] ClientError),
    #[error("{0}")]
    Usage(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Failed(String),
}

/// Runs the command line; returns the process exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Command::Serve(args) = &cli.command {
        return serve::run(args, &cli.global);
    }
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(dispatch(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn dispatch(cli: Cli) -> Result<(), CliError> {
    let g = &cli.global;
    let out = print::Printer::new(g.format);
    match cli.command {
        Command::Version { json } => {
            print::version(if json { Format::Json } else { g.format });
            Ok(())
        }
        Command::Serve(_) => unreachable!("handled before the runtime starts"),
        Command::Cluster(c) => unconfigured(g, cluster::run(c, &client(g).await?, &out).await),
        Command::Auth(c) => unconfigured(
            g,
            auth::run(c, &client(g).await?, g.project.clone(), &out).await,
        ),
        Command::Audit(c) => unconfigured(g, auth::audit(c, &client(g).await?, &out).await),
        Command::Cert(c) => auth::cert(c),
        Command::Bench(args) => {
            let api_key = transport(g)?;
            bench::run(args, endpoints(g)?, g.project.clone(), api_key, &out).await
        }
        other => {
            let local_listen = match &other {
                Command::Mcp { listen } => Some(listen.clone()),
                _ => None,
            };
            let session = Session::open(g, local_listen).await?;
            let c = &session.client;
            let result = match other {
                Command::Memory(cmd) => memory::run(cmd, c, &out).await,
                Command::Decision(cmd) => decision::run(cmd, c, &out).await,
                Command::State(cmd) => state::run(cmd, c, &out).await,
                Command::Message(cmd) => message::run(cmd, c, &out).await,
                Command::Task(cmd) => task::run(cmd, c, &out).await,
                Command::Mcp { .. } => crate::mcp::serve(c.clone()).await.map_err(CliError::Failed),
                Command::Hook(cmd) => hook::run(cmd, c).await,
                _ => unreachable!("handled above"),
            };
            session.finish(result).await
        }
    }
}

/// Whether nodes are named (`--remote`, `AIDE_REMOTE`, or peers in the config file), rather than
/// looked for at the default address.
fn configured(g: &Global) -> Result<bool, CliError> {
    Ok(g.remote.is_some() || client_file()?.peers().is_some())
}

/// A command that needs a node (cluster, auth, audit) and reached none, with none configured:
/// says where nodes are named.
fn unconfigured(g: &Global, result: Result<(), CliError>) -> Result<(), CliError> {
    match result {
        Err(CliError::Client(e))
            if e.message.starts_with(crate::client::NONE_REACHABLE)
                && configured(g).is_ok_and(|named| !named) =>
        {
            Err(CliError::Failed(format!(
                "{}; no node is configured, so the default address was tried: start one with \
                 `aide serve`, or name the cluster's nodes with --remote, AIDE_REMOTE or the \
                 `sync` peers in ~/.aide/config.yaml",
                e.message
            )))
        }
        other => other,
    }
}

/// The client of a data command, and the in-process node it talks to in local-first use.
struct Session {
    client: Client,
    local: Option<local::LocalNode>,
    /// A session going through another process's node at the default address.
    standby: Option<local::Standby>,
}

impl Session {
    /// Connects as the options say; with nothing configured and no node at the default
    /// address, starts a node on the project's own store (see [`local`]). `long_lived` is
    /// set for a session (MCP), with where its node should listen if not the default address.
    async fn open(g: &Global, long_lived: Option<Option<String>>) -> Result<Session, CliError> {
        let configured = configured(g)?;
        if configured || local::default_node_answers().await {
            let client = client(g).await?;
            // A session without a node of its own only because another session serves this
            // project's store at the default address takes the store over when that one ends.
            let standby =
                (!configured && long_lived == Some(None) && local::session_serves_this_store())
                    .then(local::Standby::start);
            return Ok(Session {
                client,
                local: None,
                standby,
            });
        }
        let node = local::start(long_lived).await?;
        let config = ClientConfig {
            endpoints: vec![node.running.local_addr.to_string()],
            project: project(g)?,
            api_key: transport(g)?,
            ..ClientConfig::default()
        };
        Ok(Session {
            client: Client::new(config)?,
            local: Some(node),
            standby: None,
        })
    }

    /// Stops the in-process node, if any, once the command is done; keeps the index the
    /// command saw for `--min-index last` when it talked to a cluster.
    async fn finish(self, result: Result<(), CliError>) -> Result<(), CliError> {
        if let Some(standby) = self.standby {
            standby.finish().await;
        }
        match self.local {
            Some(node) => {
                node.shutdown().await;
                result
            }
            None => remembering(&self.client, result),
        }
    }
}

/// Keeps the newest index `client` saw, for a later `--min-index last`, then passes `result` on.
fn remembering(client: &Client, result: Result<(), CliError>) -> Result<(), CliError> {
    if client.min_index_refused() {
        eprintln!(
            "note: --min-index last: the index kept for {} was never committed by the cluster \
             there now (it came from one that ran at these addresses before): it is forgotten, \
             and the read was made without it",
            client.endpoints().join(", ")
        );
        if let Some(path) = LastIndex::default_path() {
            let _ = LastIndex::forget(&path, &client.endpoints());
        }
    }
    let seen = client.last_index();
    if seen > 0 {
        if let Some(path) = LastIndex::default_path() {
            // Best effort: a read-only home only costs `--min-index last` its memory.
            let _ = LastIndex::record(&path, &client.endpoints(), seen);
        }
    }
    result
}

/// Sets up TLS for every connection the command makes (from the flags, else the config file),
/// and returns the API key to send.
pub fn transport(g: &Global) -> Result<Option<String>, CliError> {
    let file = client_file()?;
    let ca = g.tls_ca.clone().or(file.tls_ca);
    let cert = g.tls_cert.clone().or(file.tls_cert);
    let key = g.tls_key.clone().or(file.tls_key);
    if let Some(ca) = ca {
        let tls = crate::tls::ClientTls::for_client(&ca, cert.as_deref(), key.as_deref())
            .map_err(|e| CliError::Usage(e.to_string()))?;
        crate::tls::set_client(Some(tls));
    } else if cert.is_some() || key.is_some() {
        return Err(CliError::Usage(
            "--tls-cert and --tls-key need --tls-ca, the CA the nodes' certificates chain to"
                .to_string(),
        ));
    }
    Ok(g.api_key
        .clone()
        .or(file.api_key)
        .filter(|k| !k.trim().is_empty()))
}

/// The client the global options describe.
pub async fn client(g: &Global) -> Result<Client, CliError> {
    let api_key = transport(g)?;
    let endpoints = endpoints(g)?;
    let min_index = match g.min_index {
        None => None,
        Some(MinIndex::At(n)) => Some(n),
        Some(MinIndex::Last) => {
            let newest =
                LastIndex::default_path().and_then(|p| LastIndex::load(&p).newest(&endpoints));
            if newest.is_none() {
                eprintln!(
                    "note: --min-index last: this client has seen no index from any of {} yet, so \
                     the read waits for no index (the index is kept per node address: read \
                     through the nodes you wrote through, or give the index itself)",
                    endpoints.join(", ")
                );
            }
            Some(newest.unwrap_or(0))
        }
    };
    let config = ClientConfig {
        endpoints,
        project: project(g)?,
        read_mode: match g.consistency {
            Some(ConsistencyArg::Linearizable) => ReadMode::Linearizable,
            Some(ConsistencyArg::Stale) => ReadMode::Stale,
            None => ReadMode::OwnWrites,
        },
        min_index,
        min_index_is_hint: g.min_index == Some(MinIndex::Last),
        api_key,
        ..ClientConfig::default()
    };
    Ok(Client::connect(config).await?)
}

/// The project: `--project`, else the config file's, else the git repository's name.
fn project(g: &Global) -> Result<Option<String>, CliError> {
    Ok(match g.project.clone().filter(|p| !p.is_empty()) {
        Some(p) => Some(p),
        None => client_file()?.project.or_else(git_project),
    })
}

/// The project named after the git repository the command runs in: its root directory's name.
fn git_project() -> Option<String> {
    let cwd = std::env::current_dir().ok()?;
    let root = serve::git_root(&cwd)?;
    root.file_name()?.to_str().map(String::from)
}

/// The client configuration file (`$AIDE_CONFIG` or `~/.aide/config.yaml`), if any.
fn client_file() -> Result<ClientFile, CliError> {
    match ClientFile::default_path() {
        Some(path) => ClientFile::load(&path).map_err(|e| CliError::Usage(e.to_string())),
        None => Ok(ClientFile::default()),
    }
}

/// The endpoints to use: `--remote` (or `AIDE_REMOTE`), else the config file's peers, else the
/// local default.
fn endpoints(g: &Global) -> Result<Vec<String>, CliError> {
    if let Some(r) = &g.remote {
        return parse_endpoints(r);
    }
    let file = client_file()?;
    if let Some(peers) = file.peers() {
        let named = ClientFile::default_path().map_or("the config file".to_string(), |p| {
            format!("{}", p.display())
        });
        return endpoints_of(&format!("the peers in {named}"), &peers.join(","));
    }
    Ok(vec![local::default_addr()])
}

/// Splits `a:1,b:2` into endpoints, refusing anything that is not HOST:PORT.
pub fn parse_endpoints(s: &str) -> Result<Vec<String>, CliError> {
    endpoints_of("--remote", s)
}

/// Splits `a:1,b:2`, given as `what`, into endpoints, refusing anything that is not HOST:PORT.
fn endpoints_of(what: &str, s: &str) -> Result<Vec<String>, CliError> {
    let mut out = Vec::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        out.push(host_port(part).map_err(|e| CliError::Usage(format!("{what}: {e}")))?);
    }
    if out.is_empty() {
        return Err(CliError::Usage(format!("{what} is empty; give HOST:PORT")));
    }
    Ok(out)
}

/// `HOST:PORT` (an `http://` or `https://` before it and a `/` after it are dropped), or why
/// `s` is not one.
pub fn host_port(s: &str) -> Result<String, String> {
    let t = s
        .trim()
        .trim_start_matches("http://")
        .trim_start_matches("https://")
        .trim_end_matches('/');
    let ok = t.rsplit_once(':').is_some_and(|(host, port)| {
        !host.is_empty()
            && !host.contains(['/', ' ', ','])
            && port.parse::<u16>().is_ok_and(|p| p != 0)
    });
    if ok {
        Ok(t.to_string())
    } else {
        Err(format!(
            "{s:?} is not HOST:PORT (for example 127.0.0.1:7420; the port from 1 to 65535)"
        ))
    }
}

/// Splits a comma-separated flag value, dropping empty parts.
pub(crate) fn split_list(s: &Option<String>) -> Vec<String> {
    s.as_deref()
        .unwrap_or("")
        .split(',')
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(String::from)
        .collect()
}
