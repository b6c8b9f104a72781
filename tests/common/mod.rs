//! The test harness every integration test shares: real `aide` node processes on 127.0.0.1
//! (port 0), each in its own temporary data directory, started, killed, restarted and joined
//! into clusters; plus the CLI run as a process against them.

#![allow(dead_code)]

use aide::client::{Client, ClientConfig, ReadMode};
use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// The applied index a response (or an error) reports.
pub fn reported_index(metadata: &tonic::metadata::MetadataMap) -> u64 {
    metadata
        .get("x-aide-applied-index")
        .expect("the response reports x-aide-applied-index")
        .to_str()
        .unwrap()
        .parse()
        .unwrap()
}

/// The `aide` binary under test.
pub fn aide_bin() -> &'static str {
    env!("CARGO_BIN_EXE_aide")
}

/// One `aide serve` process.
pub struct NodeProc {
    child: Option<Child>,
    /// The address it serves on.
    pub addr: String,
    /// Its node id, as it announced it.
    pub id: u64,
    /// Its data directory.
    pub dir: PathBuf,
    /// Its log file (stderr).
    pub log: PathBuf,
    extra: Vec<String>,
}

impl NodeProc {
    /// Starts a node on `dir` listening on `listen` (such as 127.0.0.1:0) with extra flags, and
    /// waits until it serves.
    pub fn start_on(dir: &Path, listen: &str, extra: &[&str]) -> NodeProc {
        let log = dir.with_extension("log");
        let mut node = NodeProc {
            child: None,
            addr: String::new(),
            id: 0,
            dir: dir.to_path_buf(),
            log,
            extra: extra.iter().map(|s| s.to_string()).collect(),
        };
        node.spawn(listen)
            .unwrap_or_else(|e| panic!("node on {} did not start: {e}", dir.display()));
        node
    }

    /// Starts a node on a fresh port.
    pub fn start(dir: &Path, extra: &[&str]) -> NodeProc {
        Self::start_on(dir, "127.0.0.1:0", extra)
    }

    fn spawn(&mut self, listen: &str) -> Result<(), String> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .map_err(|e| e.to_string())?;
        let mut cmd = Command::new(aide_bin());
        cmd.arg("serve")
            .arg("--data-dir")
            .arg(&self.dir)
            .arg("--listen")
            .arg(listen)
            .args(&self.extra)
            .env("RUST_LOG", "info,openraft=warn")
            .env_remove("AIDE_REMOTE")
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log));
        // The node dies with the test process, even when the test aborts before its Drop runs.
        // SAFETY: prctl is async-signal-safe and touches no memory of the parent.
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let mut child = cmd.spawn().map_err(|e| e.to_string())?;
        let stdout = child.stdout.take().ok_or("no stdout")?;
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                // "aide node ID serving on ADDR (data: DIR)"
                if let Some((head, rest)) = line.split_once(" serving on ") {
                    let addr = rest.split_whitespace().next().unwrap_or("").to_string();
                    let id = head
                        .rsplit(' ')
                        .next()
                        .and_then(|i| i.parse().ok())
                        .unwrap_or(0);
                    let _ = tx.send((addr, id));
                }
            }
        });
        match rx.recv_timeout(Duration::from_secs(30)) {
            Ok((addr, id)) => {
                self.addr = addr;
                self.id = id;
                self.child = Some(child);
                Ok(())
            }
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                Err(format!("no 'serving on' line; log:\n{}", self.log_text()))
            }
        }
    }

    /// The node's log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(|c| c.id()).unwrap_or(0)
    }

    /// SIGKILL, and wait for the process to be gone.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM, and wait for a clean exit; returns whether it exited successfully.
    pub fn terminate(&mut self) -> bool {
        let Some(mut c) = self.child.take() else {
            return false;
        };
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(c.id().to_string())
            .status();
        match c.wait() {
            Ok(s) => s.success(),
            Err(_) => false,
        }
    }

    /// Starts the process again on the same directory and port.
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "stop the node before restarting it");
        let listen = self.addr.clone();
        self.spawn(&listen)
            .unwrap_or_else(|e| panic!("restart failed: {e}"));
    }

    /// Starts the process again on the same directory and port; the node's error when it
    /// refuses to start.
    pub fn try_restart(&mut self) -> Result<(), String> {
        assert!(self.child.is_none(), "stop the node before restarting it");
        let listen = self.addr.clone();
        self.spawn(&listen)
    }

    /// Waits (at most `limit`) for the process to end by itself; returns whether it did.
    pub fn wait_exit(&mut self, limit: Duration) -> bool {
        let deadline = std::time::Instant::now() + limit;
        while std::time::Instant::now() < deadline {
            match &mut self.child {
                None => return true,
                Some(c) => {
                    if let Ok(Some(_)) = c.try_wait() {
                        self.child = None;
                        return true;
                    }
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }

    /// Whether the process is still running.
    pub fn running(&mut self) -> bool {
        match &mut self.child {
            Some(c) => matches!(c.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// A client of this node alone, for `project`.
    pub fn client(&self, project: &str) -> Client {
        client_for(
            std::slice::from_ref(&self.addr),
            project,
            ReadMode::Linearizable,
        )
    }

    /// Runs the CLI against this node.
    pub fn cli(&self, args: &[&str]) -> CliOutput {
        cli(&self.addr, args)
    }
}

impl Drop for NodeProc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// An address on 127.0.0.1 where nothing listens (a port the system just handed out and took
/// back).
pub fn free_addr() -> String {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .to_string()
}

/// A client of `endpoints`.
pub fn client_for(endpoints: &[String], project: &str, mode: ReadMode) -> Client {
    Client::new(ClientConfig {
        endpoints: endpoints.to_vec(),
        project: Some(project.to_string()),
        read_mode: mode,
        min_index: None,
        min_index_is_hint: false,
        timeout: Duration::from_secs(20),
        api_key: None,
    })
    .expect("client")
}

/// What a CLI run printed.
#[derive(Debug)]
pub struct CliOutput {
    pub ok: bool,
    pub stdout: String,
    pub stderr: String,
}

impl CliOutput {
    /// stdout, asserting the command succeeded.
    pub fn out(&self) -> &str {
        assert!(self.ok, "command failed: {}", self.stderr);
        &self.stdout
    }

    /// stdout parsed as JSON, asserting success.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(self.out())
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.stdout))
    }
}

/// Runs `aide ARGS` with `--remote` set to `remote`.
pub fn cli(remote: &str, args: &[&str]) -> CliOutput {
    cli_with_config(
        remote,
        Path::new("/nonexistent/aide-test-config.yaml"),
        args,
    )
}

/// Runs `aide ARGS` with `--remote` set to `remote` and `AIDE_CONFIG` set to `config` (the
/// client keeps what it remembers, such as its last write index, next to that file).
pub fn cli_with_config(remote: &str, config: &Path, args: &[&str]) -> CliOutput {
    // Outside any git repository, so the project is the node's default unless a test names one.
    let out: Output = Command::new(aide_bin())
        .current_dir(std::env::temp_dir())
        .args(args)
        .env("AIDE_REMOTE", remote)
        .env("AIDE_CONFIG", config)
        .env_remove("AIDE_PROJECT")
        .output()
        .expect("run aide");
    CliOutput {
        ok: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Runs `cmd` (an `aide` command line), asserting it succeeded; its stdout.
pub fn succeed(cmd: &mut Command) -> String {
    let out = cmd.output().expect("run aide");
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub mod cluster;
pub mod rng;

/// Waits until the node at `addr` reports healthy (it has a leader), for up to 15 s.
pub async fn wait_healthy(addr: &str) {
    let c = client_for(&[addr.to_string()], "default", ReadMode::Stale);
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    loop {
        if let Ok(h) = c
            .health(aide::grpc::pb::aidememory::HealthCheckRequest {})
            .await
        {
            if h.healthy {
                return;
            }
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{addr} never became healthy"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
