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
use std::time::{Duration, Instant};

/// How long a command waits for another aide process to release the store.
const STORE_WAIT: Duration = Duration::from_secs(10);

/// Whether a node answers at the default address.
pub async fn default_node_answers() -> bool {
    matches!(
        tokio::time::timeout(
            Duration::from_millis(300),
            tokio::net::TcpStream::connect(DEFAULT_LISTEN)
        )
        .await,
        Ok(Ok(_))
    )
}

/// Starts the in-process node on the project's store. A command's node listens on a free port;
/// a session's (`long_lived`) on the address it names, else on the default address when that
/// is free.
pub async fn start(long_lived: Option<Option<String>>) -> Result<RunningNode, CliError> {
    let data_dir = super::serve::default_data_dir();
    let listen = match long_lived {
        Some(Some(addr)) => addr,
        Some(None) if std::net::TcpListener::bind(DEFAULT_LISTEN).is_ok() => {
            DEFAULT_LISTEN.to_string()
        }
        _ => "127.0.0.1:0".to_string(),
    };
    let config = NodeConfig {
        // Members are known by the default address, wherever this process listens, so that a
        // later `aide serve` on the same store is the same node at the same address.
        advertise: Some(DEFAULT_LISTEN.to_string()),
        ..NodeConfig::new(data_dir.clone(), listen.as_str())
    };
    let deadline = Instant::now() + STORE_WAIT;
    loop {
        match node::start(config.clone()).await {
            Ok(running) => return Ok(running),
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
