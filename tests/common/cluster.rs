//! A cluster of real `aide serve` processes on 127.0.0.1: the first node starts a cluster, the
//! others join it with `--join`; helpers find the leader, wait for every node to apply an index,
//! and wait for the membership to settle.

use super::{client_for, NodeProc};
use aide::client::{Client, ReadMode};
use aide::grpc::pb::cluster::{MembersRequest, RemoveRequest, StatusRequest};
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// How long cluster-wide conditions may take before a test fails.
pub const SETTLE: Duration = Duration::from_secs(30);

/// Nodes of one cluster, each in its own directory under one temporary directory.
pub struct Cluster {
    pub nodes: Vec<NodeProc>,
    tmp: tempfile::TempDir,
    extra: Vec<String>,
    /// How many nodes were ever added: each new one gets a directory of its own.
    started: usize,
}

/// A test that fails with `AIDE_KEEP_LOGS=DIR` set leaves the nodes' logs in DIR.
impl Drop for Cluster {
    fn drop(&mut self) {
        let Some(dir) = std::env::var_os("AIDE_KEEP_LOGS") else {
            return;
        };
        if !std::thread::panicking() {
            return;
        }
        let dir = PathBuf::from(dir);
        let _ = std::fs::create_dir_all(&dir);
        for node in &self.nodes {
            let name = node.log.file_name().unwrap_or_default();
            let _ = std::fs::copy(&node.log, dir.join(name));
        }
        eprintln!("the nodes' logs are in {}", dir.display());
    }
}

impl Cluster {
    /// Starts `n` nodes (with `extra` flags each) and waits until all are voters.
    pub async fn start(n: usize, extra: &[&str]) -> Cluster {
        let tmp = tempfile::tempdir().unwrap();
        let first = NodeProc::start(&tmp.path().join("n1"), extra);
        let mut cluster = Cluster {
            nodes: vec![first],
            tmp,
            extra: extra.iter().map(|s| s.to_string()).collect(),
            started: 1,
        };
        super::wait_healthy(&cluster.nodes[0].addr).await;
        for _ in 1..n {
            cluster.add_node().await;
        }
        cluster.wait_voters(n).await;
        cluster
    }

    /// Starts one more node with `--join` through the first running node; returns its position.
    pub async fn add_node(&mut self) -> usize {
        let through = self.running_addrs()[0].clone();
        self.started += 1;
        let dir = self.dir(self.started);
        let mut flags: Vec<&str> = self.extra.iter().map(String::as_str).collect();
        flags.extend(["--join", through.as_str()]);
        let node = NodeProc::start(&dir, &flags);
        self.nodes.push(node);
        self.nodes.len() - 1
    }

    /// Removes node `i` from the membership (through any other running node), stops it and
    /// forgets it.
    pub async fn remove_node(&mut self, i: usize) {
        let id = self.nodes[i].id;
        let others: Vec<String> = self
            .addrs()
            .into_iter()
            .enumerate()
            .filter(|(j, _)| *j != i)
            .map(|(_, a)| a)
            .collect();
        let c = client_for(&others, "default", ReadMode::Stale);
        let deadline = Instant::now() + SETTLE;
        while let Err(e) = c.cluster_remove(RemoveRequest { node_id: id }).await {
            // A removal that went through while its answer was lost.
            let members = c.cluster_members(MembersRequest {}).await;
            if members.is_ok_and(|m| m.members.iter().all(|m| m.node_id != id)) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "node {id} was never removed: {e}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let mut node = self.nodes.remove(i);
        node.kill();
    }

    /// The data directory of the `k`-th node started (1-based).
    pub fn dir(&self, k: usize) -> PathBuf {
        self.tmp.path().join(format!("n{k}"))
    }

    /// The addresses of every node, running or not.
    pub fn addrs(&self) -> Vec<String> {
        self.nodes.iter().map(|n| n.addr.clone()).collect()
    }

    /// The addresses of the nodes that are running.
    pub fn running_addrs(&mut self) -> Vec<String> {
        self.nodes
            .iter_mut()
            .filter_map(|n| n.running().then(|| n.addr.clone()))
            .collect()
    }

    /// A client of node `i` alone.
    pub fn client(&self, i: usize, project: &str, mode: ReadMode) -> Client {
        client_for(std::slice::from_ref(&self.nodes[i].addr), project, mode)
    }

    /// A client of node `i` whose reads wait for `min_index`.
    pub fn client_at_index(&self, i: usize, project: &str, min_index: u64) -> Client {
        Client::new(aide::client::ClientConfig {
            endpoints: vec![self.nodes[i].addr.clone()],
            project: Some(project.to_string()),
            read_mode: ReadMode::Stale,
            min_index: Some(min_index),
            min_index_is_hint: false,
            timeout: Duration::from_secs(20),
            api_key: None,
        })
        .unwrap()
    }

    /// The position of node `id`.
    pub fn position(&self, id: u64) -> usize {
        self.nodes
            .iter()
            .position(|n| n.id == id)
            .unwrap_or_else(|| panic!("no node has id {id}"))
    }

    /// The position of the leader the running nodes agree on, waiting for one.
    pub async fn leader(&mut self) -> usize {
        let deadline = Instant::now() + SETTLE;
        loop {
            let mut seen = Vec::new();
            for addr in self.running_addrs() {
                let c = client_for(&[addr], "default", ReadMode::Stale);
                if let Ok(m) = c.cluster_members(MembersRequest {}).await {
                    seen.push(m.leader_id);
                }
            }
            let agreed = !seen.is_empty() && seen[0] != 0 && seen.iter().all(|l| *l == seen[0]);
            if agreed {
                if let Some(p) = self.nodes.iter_mut().position(|n| n.id == seen[0]) {
                    if self.nodes[p].running() {
                        return p;
                    }
                }
            }
            assert!(
                Instant::now() < deadline,
                "the running nodes never agreed on a leader (they said {seen:?})"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The position of some running node that is not the leader.
    pub async fn follower(&mut self) -> usize {
        let leader = self.leader().await;
        (0..self.nodes.len())
            .find(|&i| i != leader && self.nodes[i].running())
            .expect("a running follower")
    }

    /// Waits until the membership has `n` voters and every one of them reports them.
    pub async fn wait_voters(&mut self, n: usize) {
        self.wait_voters_as(n, None).await
    }

    /// [`Cluster::wait_voters`], asking with an API key.
    pub async fn wait_voters_with(&mut self, n: usize, api_key: &str) {
        self.wait_voters_as(n, Some(api_key)).await
    }

    async fn wait_voters_as(&mut self, n: usize, api_key: Option<&str>) {
        let deadline = Instant::now() + SETTLE;
        loop {
            let mut ok = true;
            let mut views = Vec::new();
            for addr in self.running_addrs() {
                let c = Client::new(aide::client::ClientConfig {
                    endpoints: vec![addr.clone()],
                    read_mode: ReadMode::Stale,
                    api_key: api_key.map(String::from),
                    ..Default::default()
                })
                .unwrap();
                match c.cluster_members(MembersRequest {}).await {
                    Ok(m) => {
                        let voters = m.members.iter().filter(|m| m.role == "voter").count();
                        ok &= voters == n && m.members.len() == n && m.leader_id != 0;
                        views.push(format!(
                            "{addr}: leader {}, {voters} voters of {} members",
                            m.leader_id,
                            m.members.len()
                        ));
                    }
                    Err(e) => {
                        ok = false;
                        views.push(format!("{addr}: {e}"));
                    }
                }
            }
            if ok {
                return;
            }
            if Instant::now() >= deadline {
                let logs: Vec<String> = self
                    .nodes
                    .iter()
                    .map(|node| format!("--- node {} ---\n{}", node.id, node.log_text()))
                    .collect();
                panic!(
                    "the cluster never settled on {n} voters: {views:?}\n{}",
                    logs.join("\n")
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits until every running node has applied at least `index`.
    pub async fn wait_applied(&mut self, index: u64) {
        let deadline = Instant::now() + SETTLE;
        for addr in self.running_addrs() {
            let c = client_for(std::slice::from_ref(&addr), "default", ReadMode::Stale);
            loop {
                let applied = c
                    .cluster_status(StatusRequest {})
                    .await
                    .ok()
                    .and_then(|s| s.nodes.into_iter().find(|n| n.address == addr))
                    .map_or(0, |n| n.applied_index);
                if applied >= index {
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "{addr} never applied index {index} (it is at {applied})"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}
