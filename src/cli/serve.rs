//! `aide serve`: run a node until SIGINT or SIGTERM, then stop it cleanly.

use crate::config::ServeFile;
use crate::node::{self, NodeConfig};
use crate::raft::NodeId;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// A YAML file with any of: node_id, listen, advertise, data_dir, join, init, threads,
    /// tls_cert, tls_key, tls_ca (flags win).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// The data directory (default: .aide/data at the git root, or ~/.aide/data outside a repository).
    #[arg(long, env = "AIDE_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// HOST:PORT to listen on (default 127.0.0.1:7420; port 0 picks a free port).
    #[arg(long)]
    pub listen: Option<String>,
    /// HOST:PORT other nodes and clients reach this node at (default: the listen address).
    #[arg(long)]
    pub advertise: Option<String>,
    /// This node's id, for a new data directory (default 1, or the next free id when joining).
    #[arg(long)]
    pub node_id: Option<NodeId>,
    /// Join the cluster through this member (HOST:PORT), for a new data directory.
    #[arg(long, value_name = "HOST:PORT")]
    pub join: Option<String>,
    /// Do not create a single-node cluster: wait for `aide cluster init` or `aide cluster join`.
    #[arg(long)]
    pub no_init: bool,
    /// Build a snapshot and compact the Raft log after this many entries since the last one.
    #[arg(long, value_name = "ENTRIES", default_value_t = crate::raft::RaftTiming::default().snapshot_every,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub snapshot_every: u64,
    /// Worker threads of the node's async runtime (default: one per core). Nodes that share a
    /// machine do better splitting its cores: scripts/cluster-up.sh gives each of its three
    /// nodes a third.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..))]
    pub threads: Option<u16>,
    /// Testing only: accept failpoints that cut this node off from peers (fault injection).
    #[arg(long, hide = true)]
    pub failpoints: bool,
    /// Testing only (needs --failpoints): each applied batch waits this long before it is
    /// written to the store.
    #[arg(long, hide = true, value_name = "MS", requires = "failpoints")]
    pub landing_delay_ms: Option<u64>,
    /// Testing only (needs --failpoints): how long applied changes may be held in memory when
    /// no reader waits for them before the next apply has them written (default 40; with no
    /// apply coming, half as long again).
    #[arg(long, hide = true, value_name = "MS", requires = "failpoints")]
    pub landing_hold_ms: Option<u64>,
    /// Testing only (needs --failpoints): each snapshot's copy of the store waits this long
    /// before it starts (writes go on meanwhile).
    #[arg(long, hide = true, value_name = "MS", requires = "failpoints")]
    pub snapshot_copy_delay_ms: Option<u64>,
    /// Testing only (needs --failpoints): how long a leader holds a proposal for the rest of
    /// the writers its last entry answered (default 3).
    #[arg(long, hide = true, value_name = "MS", requires = "failpoints")]
    pub cohort_wait_ms: Option<u64>,
}

/// The data directory used when none is given.
pub fn default_data_dir() -> PathBuf {
    if let Ok(cwd) = std::env::current_dir() {
        if let Some(root) = git_root(&cwd) {
            return root.join(".aide").join("data");
        }
    }
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("."));
    home.join(".aide").join("data")
}

/// Keeps a project's store out of its repository: `.aide/.gitignore` ignoring everything in
/// `.aide/`, written once when `data_dir` is the store at a git root (best effort: a read-only
/// checkout only loses the convenience).
pub fn keep_out_of_git(data_dir: &Path) {
    let Some(aide) = data_dir.parent() else {
        return;
    };
    let at_root = aide.file_name().is_some_and(|n| n == ".aide")
        && aide.parent().is_some_and(|root| root.join(".git").exists());
    let ignore = aide.join(".gitignore");
    if at_root && !ignore.exists() && std::fs::create_dir_all(aide).is_ok() {
        let _ = std::fs::write(
            ignore,
            // The client's config file stays visible (a home directory kept in git).
            "# aide's local store: not part of the repository\n*\n!config.yaml\n",
        );
    }
}

/// The nearest directory at or above `dir` that holds `.git`.
pub fn git_root(dir: &Path) -> Option<PathBuf> {
    dir.ancestors()
        .find(|d| d.join(".git").exists())
        .map(Path::to_path_buf)
}

pub fn run(args: &ServeArgs, g: &super::Global) -> ExitCode {
    init_tracing();
    let file = match &args.config {
        Some(path) => match ServeFile::load(path) {
            Ok(f) => f,
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::FAILURE;
            }
        },
        None => ServeFile::default(),
    };
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    match args.threads.map(usize::from).or(file.threads) {
        Some(n) if n == 0 || n > usize::from(u16::MAX) => {
            eprintln!(
                "error: threads must be from 1 to {} (it is {n} in the config file)",
                u16::MAX
            );
            return ExitCode::FAILURE;
        }
        Some(n) => {
            runtime.worker_threads(n);
        }
        None => {}
    }
    let runtime = match runtime.enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut config = NodeConfig {
        data_dir: args.data_dir.clone().or(file.data_dir).unwrap_or_else(|| {
            let dir = default_data_dir();
            keep_out_of_git(&dir);
            dir
        }),
        listen: args
            .listen
            .clone()
            .or(file.listen)
            .unwrap_or_else(super::local::default_addr),
        advertise: args.advertise.clone().or(file.advertise),
        node_id: args.node_id.or(file.node_id),
        join: args.join.clone().or(file.join),
        init: !args.no_init && file.init.unwrap_or(true),
        timing: crate::raft::RaftTiming {
            snapshot_every: args.snapshot_every,
            ..Default::default()
        },
        failpoints: args.failpoints,
        landing_delay: std::time::Duration::from_millis(args.landing_delay_ms.unwrap_or(0)),
        landing_hold: args
            .landing_hold_ms
            .map_or(crate::raft::landing::HOLD, std::time::Duration::from_millis),
        snapshot_copy_delay: std::time::Duration::from_millis(
            args.snapshot_copy_delay_ms.unwrap_or(0),
        ),
        cohort_wait: args.cohort_wait_ms.map_or(
            crate::node::batch::COHORT_WAIT,
            std::time::Duration::from_millis,
        ),
        api_key: g.api_key.clone(),
        tls: match (
            g.tls_cert.clone().or(file.tls_cert),
            g.tls_key.clone().or(file.tls_key),
            g.tls_ca.clone().or(file.tls_ca),
        ) {
            (Some(cert), Some(key), Some(ca)) => Some(crate::tls::TlsFiles { cert, key, ca }),
            (None, None, None) => None,
            _ => {
                eprintln!(
                    "error: TLS needs all three of --tls-cert, --tls-key and --tls-ca (or \
                     tls_cert, tls_key and tls_ca in the config file)"
                );
                return ExitCode::FAILURE;
            }
        },
    };
    if let Some(join) = config.join.take() {
        match checked_join(&join, &config.listen, config.advertise.as_deref()) {
            Ok(join) => config.join = Some(join),
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::FAILURE;
            }
        }
    }
    runtime.block_on(async move {
        let running = match node::start(config.clone()).await {
            Ok(r) => r,
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::FAILURE;
            }
        };
        if config.data_dir == default_data_dir() {
            // This store is served by a person's node now, not a session's: sessions going
            // through it do not take it over when it stops.
            super::local::unmark_session();
        }
        // The listening address first (scripts and tests read it), then the one the other
        // nodes and clients are told when it differs.
        let listening = running.local_addr.to_string();
        let advertised = if running.node.addr == listening {
            String::new()
        } else {
            format!(" (advertised as {})", running.node.addr)
        };
        println!(
            "aide node {} serving on {listening}{advertised} (data: {})",
            running.node.id,
            config.data_dir.display()
        );
        tokio::select! {
            _ = wait_for_signal() => tracing::info!("stopping"),
            why = running.removed() => {
                eprintln!("aide node {}: {why}; stopping (its data directory cannot serve again)", running.node.id);
            }
        }
        running.shutdown().await;
        ExitCode::SUCCESS
    })
}

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new("info,openraft=warn,tantivy=warn,sled=warn")
    });
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Colours only on a terminal: a log file gets plain text.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// `--join`'s address, or why it cannot be joined through: not HOST:PORT, or this node's own
/// address (`listen`, `advertise`).
fn checked_join(join: &str, listen: &str, advertise: Option<&str>) -> Result<String, String> {
    let join = super::host_port(join).map_err(|e| format!("--join: {e}"))?;
    let split = |a: &str| {
        a.rsplit_once(':')
            .map(|(h, p)| (h.trim_matches(['[', ']']).to_string(), p.to_string()))
    };
    let own = |a: &str| {
        let (Some((jh, jp)), Some((h, p))) = (split(&join), split(a)) else {
            return false;
        };
        let local = |h: &str| matches!(h, "127.0.0.1" | "localhost" | "::1" | "0.0.0.0" | "::");
        jp == p && (jh == h || (local(&jh) && local(&h)))
    };
    if own(listen) || advertise.is_some_and(own) {
        return Err(format!(
            "--join {join} is this node's own address: give the address of a member of the \
             cluster it is to join"
        ));
    }
    Ok(join)
}

#[cfg(test)]
mod tests {
    use super::checked_join;

    #[test]
    fn join_needs_another_nodes_address() {
        assert_eq!(
            checked_join("http://10.0.0.1:7420/", "0.0.0.0:7420", None).unwrap(),
            "10.0.0.1:7420"
        );
        for (join, listen, advertise) in [
            ("nonsense", "127.0.0.1:7424", None),
            ("127.0.0.1:99999", "127.0.0.1:7424", None),
            ("127.0.0.1:7424", "127.0.0.1:7424", None),
            ("localhost:7424", "0.0.0.0:7424", None),
            ("10.0.0.5:7420", "0.0.0.0:7420", Some("10.0.0.5:7420")),
        ] {
            let e = checked_join(join, listen, advertise).unwrap_err();
            assert!(e.starts_with("--join"), "{join}: {e}");
        }
    }
}
