//! Local-first use, as in the original aide: when no node is configured (no `--remote`, no
//! `AIDE_REMOTE`, no peers in the config file) and none answers at the default address, a
//! command runs a node inside its own process on the project's store (`.aide/data` at the git
//! root, created on first use) and talks to it as to any other. `aide serve` in the same project
//! serves that same store, and commands then go through it. The MCP server, which lives for a
//! whole session, also listens on the default address when it is free, so the CLI run by hooks
//! meanwhile goes through it instead of waiting for the store.

use super::CliError;
use crate::node::{self, NodeConfig, RunningNode, StartError, DEFAULT_LISTEN};
use crate::storage::StoreError;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long a command waits for another aide process to release the store.
const STORE_WAIT: Duration = Duration::from_secs(10);

/// How often a session that goes through another process's node checks that it still answers.
const STANDBY_CHECK: Duration = Duration::from_millis(500);

/// The default address: where `aide serve` and a session's node listen when given none, and
/// where commands look for a node when none is configured. `AIDE_LOCAL_ADDR` moves it (two
/// setups side by side, or tests), else 127.0.0.1:7420.
pub fn default_addr() -> String {
    std::env::var("AIDE_LOCAL_ADDR")
        .ok()
        .filter(|a| !a.trim().is_empty())
        .unwrap_or_else(|| DEFAULT_LISTEN.to_string())
}

/// Whether a node answers at the default address.
pub async fn default_node_answers() -> bool {
    matches!(
        tokio::time::timeout(
            Duration::from_millis(300),
            tokio::net::TcpStream::connect(default_addr())
        )
        .await,
        Ok(Ok(_))
    )
}

/// The file in a store's data directory that says a session (MCP) serves that store at the
/// default address: written when the session's node starts there, removed when it stops (and
/// by `aide serve` on that store: a node a person runs is not a session's).
const SESSION_MARK: &str = "session-node";

/// Whether a session serves this project's store at the default address (see [`SESSION_MARK`]).
pub fn session_serves_this_store() -> bool {
    super::serve::default_data_dir().join(SESSION_MARK).exists()
}

/// Forgets that a session serves this project's store (a person's `aide serve` took it).
pub fn unmark_session() {
    let _ = std::fs::remove_file(super::serve::default_data_dir().join(SESSION_MARK));
}

/// The in-process node on the project's store, and whether it marked the store as a session's
/// ([`SESSION_MARK`]); stopping it removes the mark it made.
pub struct LocalNode {
    pub running: RunningNode,
    marked: Option<std::path::PathBuf>,
}

impl LocalNode {
    pub async fn shutdown(self) {
        self.running.shutdown().await;
        if let Some(mark) = self.marked {
            let _ = std::fs::remove_file(mark);
        }
    }
}

/// A session (MCP) that goes through another session's node at the default address, serving
/// the same project's store, stands by to take the store over when that node goes away (the
/// other session ended): it then serves the store at the default address itself, where its
/// client (and every other command) already looks, so the session goes on. Of several sessions
/// standing by, the first to open the store serves it; the others go on through it. A node a
/// person started with `aide serve`, or one serving another project's store, is not taken
/// over: it is theirs to restart.
pub struct Standby {
    task: tokio::task::JoinHandle<Option<LocalNode>>,
    stop: Arc<tokio::sync::Notify>,
}

impl Standby {
    pub fn start() -> Standby {
        let stop = Arc::new(tokio::sync::Notify::new());
        let stopped = stop.clone();
        let task = tokio::spawn(async move {
            let mut told = false;
            loop {
                tokio::select! {
                    _ = stopped.notified() => return None,
                    _ = tokio::time::sleep(STANDBY_CHECK) => {}
                }
                if default_node_answers().await {
                    continue;
                }
                // Only at the default address: anywhere else its client would not find it.
                match start(Some(Some(default_addr()))).await {
                    Ok(node) => {
                        tracing::info!(
                            addr = %node.running.local_addr,
                            "the session this one went through ended: serving the project's store"
                        );
                        return Some(node);
                    }
                    // Another session took it (the store or the address): go on through it.
                    Err(e) if !told => {
                        told = true;
                        tracing::warn!(error = %e, "could not take the project's store over; standing by");
                    }
                    Err(_) => {}
                }
            }
        });
        Standby { task, stop }
    }

    /// Stops standing by, and the node it started, if any.
    pub async fn finish(mut self) {
        self.stop.notify_one();
        // A start under way waits for the store (up to STORE_WAIT) when another process holds
        // it: the session that ends does not wait for that (it ends the process).
        match tokio::time::timeout(Duration::from_secs(1), &mut self.task).await {
            Ok(Ok(Some(node))) => node.shutdown().await,
            Ok(_) => {}
            Err(_) => self.task.abort(),
        }
    }
}

/// Starts the in-process node on the project's store. A command's node listens on a free port;
/// a session's (`long_lived`) on the address it names, else on the default address when that
/// is free (and marks the store as a session's, [`SESSION_MARK`], when at the default address).
pub async fn start(long_lived: Option<Option<String>>) -> Result<LocalNode, CliError> {
    let data_dir = super::serve::default_data_dir();
    super::serve::keep_out_of_git(&data_dir);
    let session = long_lived.is_some();
    let listen = match long_lived {
        Some(Some(addr)) => addr,
        Some(None) if std::net::TcpListener::bind(default_addr()).is_ok() => default_addr(),
        _ => "127.0.0.1:0".to_string(),
    };
    let config = NodeConfig {
        // Members are known by the default address, wherever this process listens, so that a
        // later `aide serve` on the same store is the same node at the same address.
        advertise: Some(default_addr()),
        ..NodeConfig::new(data_dir.clone(), listen.as_str())
    };
    let deadline = Instant::now() + STORE_WAIT;
    loop {
        match node::start(config.clone()).await {
            Ok(running) => {
                // Best effort: without it, other sessions only do not stand by.
                let marked = (session && listen == default_addr())
                    .then(|| data_dir.join(SESSION_MARK))
                    .filter(|mark| std::fs::write(mark, listen.as_bytes()).is_ok());
                return Ok(LocalNode { running, marked });
            }
            Err(StartError::Store(StoreError::InUse(_))) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(e) => {
                return Err(CliError::Failed(format!(
                    "no aide node is configured or running, and the local store in {} cannot be \
                     used: {e}",
                    data_dir.display()
                )))
            }
        }
    }
}
