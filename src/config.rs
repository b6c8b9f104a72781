//! Configuration files: `aide serve --config FILE` (the flags of `serve` as YAML keys) and the
//! client's `~/.aide/config.yaml` (a `sync` section with `mode: raft` and the cluster's `peers`).
//! Unknown keys and wrong types are errors that name the file, the line and the key.

use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// A configuration file that could not be used.
#[derive(Debug, thiserror::Error)]
#[error("config file {path}: {problem}")]
pub struct ConfigError {
    pub path: PathBuf,
    pub problem: String,
}

fn load<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<T, ConfigError> {
    let err = |problem: String| ConfigError {
        path: path.to_path_buf(),
        problem,
    };
    let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
    if text.trim().is_empty() {
        return serde_yaml_ng::from_str("{}").map_err(|e| err(e.to_string()));
    }
    serde_yaml_ng::from_str(&text).map_err(|e| err(e.to_string()))
}

/// The keys of `aide serve --config FILE`; flags given on the command line win.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServeFile {
    pub node_id: Option<u64>,
    pub listen: Option<String>,
    pub advertise: Option<String>,
    pub data_dir: Option<PathBuf>,
    pub join: Option<String>,
    /// `false`: do not create a single-node cluster (like `--no-init`).
    pub init: Option<bool>,
    /// Async worker threads (like `--threads`).
    pub threads: Option<usize>,
    /// TLS: this node's certificate chain, its key and the cluster CA (PEM files).
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    pub tls_ca: Option<PathBuf>,
}

impl ServeFile {
    pub fn load(path: &Path) -> Result<ServeFile, ConfigError> {
        load(path)
    }
}

/// How the client reaches its data.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SyncMode {
    /// The project's own store (or a node serving it on this machine).
    #[default]
    Local,
    /// A cluster: the `peers`.
    Raft,
}

/// The `sync` section.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SyncSection {
    #[serde(default)]
    pub mode: SyncMode,
    /// Cluster endpoints, `host:port` (an `http://` prefix is accepted).
    #[serde(default)]
    pub peers: Vec<String>,
}

/// `~/.aide/config.yaml`.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientFile {
    #[serde(default)]
    pub sync: SyncSection,
    /// The project, instead of the git root's name.
    pub project: Option<String>,
    /// The API key sent with every call (when the cluster requires keys).
    pub api_key: Option<String>,
    /// TLS: the CA that signed the nodes' certificates; with it, calls use TLS.
    pub tls_ca: Option<PathBuf>,
    /// TLS: a client certificate and key, for clusters that ask for one.
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
}

impl ClientFile {
    /// The file at `$AIDE_CONFIG`, or `~/.aide/config.yaml`.
    pub fn default_path() -> Option<PathBuf> {
        if let Some(p) = std::env::var_os("AIDE_CONFIG") {
            return Some(PathBuf::from(p));
        }
        std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".aide").join("config.yaml"))
    }

    /// Reads the file at `path`; a missing file is an empty configuration.
    pub fn load(path: &Path) -> Result<ClientFile, ConfigError> {
        if !path.exists() {
            return Ok(ClientFile::default());
        }
        let file: ClientFile = load(path)?;
        if file.sync.mode == SyncMode::Raft && file.sync.peers.is_empty() {
            return Err(ConfigError {
                path: path.to_path_buf(),
                problem: "sync.mode is raft but sync.peers lists no node".to_string(),
            });
        }
        Ok(file)
    }

    /// The cluster endpoints, when the file says to use a cluster.
    pub fn peers(&self) -> Option<Vec<String>> {
        if self.sync.mode != SyncMode::Raft {
            return None;
        }
        Some(
            self.sync
                .peers
                .iter()
                .map(|p| {
                    p.trim()
                        .trim_start_matches("http://")
                        .trim_start_matches("https://")
                        .trim_end_matches('/')
                        .to_string()
                })
                .collect(),
        )
    }
}

/// Writes `bytes` to `path` (a new file, or replacing one) readable and writable by the owner only.
pub fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let tmp = path.with_extension("tmp");
    let mut f = private_options().write(true).truncate(true).open(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
}

/// Opens `path` for appending, creating it readable and writable by the owner only.
pub fn open_private_append(path: &Path) -> std::io::Result<std::fs::File> {
    private_options().append(true).open(path)
}

fn private_options() -> std::fs::OpenOptions {
    let mut o = std::fs::OpenOptions::new();
    o.create(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        o.mode(0o600);
    }
    o
}

/// The newest applied index the CLI has seen, per node address, kept in `last-index.json` next
/// to the client configuration file, so that `--min-index last` reads this client's own writes
/// at any of the nodes it wrote through. (Files of earlier versions keyed it by the comma-joined
/// endpoint list; such a key counts for each address in it.)
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct LastIndex {
    by_cluster: std::collections::BTreeMap<String, u64>,
}

impl LastIndex {
    /// `last-index.json` in the directory of the client configuration file.
    pub fn default_path() -> Option<PathBuf> {
        ClientFile::default_path().map(|p| p.with_file_name("last-index.json"))
    }

    /// The file at `path`; missing or unreadable is empty (it is only a hint).
    pub fn load(path: &Path) -> LastIndex {
        std::fs::read(path)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default()
    }

    /// The newest index kept for any of `nodes` (addresses).
    pub fn newest(&self, nodes: &[String]) -> Option<u64> {
        self.by_cluster
            .iter()
            .filter(|(key, _)| key.split(',').any(|a| nodes.iter().any(|n| n == a)))
            .map(|(_, &index)| index)
            .max()
    }

    /// Raises the index kept for each of `nodes` (the endpoints a client talked to: the nodes of
    /// one cluster) to `index` and saves the file.
    pub fn record(path: &Path, nodes: &[String], index: u64) -> std::io::Result<()> {
        let mut all = LastIndex::load(path);
        let mut raised = false;
        for node in nodes {
            let slot = all.by_cluster.entry(node.clone()).or_default();
            if *slot < index {
                *slot = index;
                raised = true;
            }
        }
        if !raised {
            return Ok(());
        }
        all.save(path)
    }

    /// Drops what is kept for each of `nodes` (an index their cluster never committed).
    pub fn forget(path: &Path, nodes: &[String]) -> std::io::Result<()> {
        let mut all = LastIndex::load(path);
        let before = all.by_cluster.len();
        all.by_cluster
            .retain(|key, _| !key.split(',').any(|a| nodes.iter().any(|n| n == a)));
        if all.by_cluster.len() == before {
            return Ok(());
        }
        all.save(path)
    }

    fn save(&self, path: &Path) -> std::io::Result<()> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let tmp = path.with_extension("json.tmp");
        std::fs::write(&tmp, serde_json::to_vec(self)?)?;
        std::fs::rename(tmp, path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(text: &str) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.yaml");
        std::fs::write(&path, text).unwrap();
        (dir, path)
    }

    #[test]
    fn a_raft_sync_section_gives_the_peers() {
        let (_d, p) = write("sync:\n  mode: raft\n  peers:\n    - http://10.0.0.1:7420\n    - 10.0.0.2:7420\nproject: web\n");
        let f = ClientFile::load(&p).unwrap();
        assert_eq!(f.peers().unwrap(), ["10.0.0.1:7420", "10.0.0.2:7420"]);
        assert_eq!(f.project.as_deref(), Some("web"));
    }

    #[test]
    fn the_last_index_counts_for_every_node_written_through() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("last-index.json");
        // A file of an earlier version, keyed by the endpoint list.
        std::fs::write(&path, r#"{"by_cluster":{"a:1,b:2":7}}"#).unwrap();
        let nodes = |list: &[&str]| list.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(LastIndex::load(&path).newest(&nodes(&["b:2"])), Some(7));
        LastIndex::record(&path, &nodes(&["a:1", "b:2", "c:3"]), 12).unwrap();
        LastIndex::record(&path, &nodes(&["c:3"]), 5).unwrap();
        let kept = LastIndex::load(&path);
        assert_eq!(kept.newest(&nodes(&["c:3"])), Some(12));
        assert_eq!(kept.newest(&nodes(&["b:2", "z:9"])), Some(12));
        assert_eq!(kept.newest(&nodes(&["z:9"])), None);
    }

    #[test]
    fn malformed_files_name_the_problem() {
        let (_d, p) = write("sync:\n  mode: raft\n  peers: []\n");
        assert!(ClientFile::load(&p)
            .unwrap_err()
            .to_string()
            .contains("lists no node"));
        let (_d, p) = write("sync:\n  mode: carrier-pigeon\n");
        let e = ClientFile::load(&p).unwrap_err().to_string();
        assert!(
            e.contains("config.yaml") && e.contains("carrier-pigeon"),
            "{e}"
        );
        let (_d, p) = write("node_id: one\n");
        let e = ServeFile::load(&p).unwrap_err().to_string();
        assert!(e.contains("node_id"), "{e}");
        let (_d, p) = write("listen: 1.2.3.4:5\ncolour: blue\n");
        assert!(ServeFile::load(&p)
            .unwrap_err()
            .to_string()
            .contains("colour"));
        assert_eq!(
            ClientFile::load(Path::new("/nonexistent/aide.yaml"))
                .unwrap()
                .peers(),
            None
        );
    }
}
