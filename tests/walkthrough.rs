//! The README's security walk-through, step by step, as a user runs it: `scripts/cluster-up.sh
//! --tls` starts three nodes with TLS and mutual TLS, `aide auth enable` makes the first admin key
//! from a node's bootstrap token, an admin makes a project key, the key writes and reads on every
//! node, other projects and revoked keys are refused, the audit log shows it all, and
//! `scripts/cluster-down.sh` stops exactly the nodes it started. And the way back for a node
//! whose data is lost: removed, then started empty by `scripts/cluster-up.sh` under a new id.

mod common;

use common::aide_bin;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Three ports free a moment ago on 127.0.0.1 (the script needs them before the nodes start).
fn free_ports() -> [u16; 3] {
    let l: Vec<std::net::TcpListener> = (0..3)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").unwrap())
        .collect();
    [0, 1, 2].map(|i| l[i].local_addr().unwrap().port())
}

fn script(name: &str, dir: &Path, ports: &str, args: &[&str]) -> std::io::Result<Output> {
    Command::new(root().join("scripts").join(name))
        .args(args)
        .env("AIDE_BIN", aide_bin())
        .env("AIDE_CLUSTER_DIR", dir)
        .env("AIDE_CLUSTER_PORTS", ports)
        .output()
}

/// Stops the cluster when the test ends, also when it fails.
struct Down<'a>(&'a Path, String);

impl Drop for Down<'_> {
    fn drop(&mut self) {
        let _ = script("cluster-down.sh", self.0, &self.1, &[]);
    }
}

/// `aide ARGS` with the environment the README exports, and `key` as AIDE_API_KEY.
fn aide(env: &[(&str, String)], key: Option<&str>, args: &[&str]) -> (bool, String) {
    let mut c = Command::new(aide_bin());
    c.args(args)
        .current_dir(std::env::temp_dir())
        .env_remove("AIDE_API_KEY")
        .env_remove("AIDE_PROJECT")
        .env("AIDE_CONFIG", "/nonexistent/aide-walkthrough.yaml");
    for (k, v) in env {
        c.env(k, v);
    }
    if let Some(key) = key {
        c.env("AIDE_API_KEY", key);
    }
    let out = c.output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

fn ok(env: &[(&str, String)], key: Option<&str>, args: &[&str]) -> String {
    let (success, text) = aide(env, key, args);
    assert!(success, "aide {args:?} failed: {text}");
    text
}

fn refused(env: &[(&str, String)], key: Option<&str>, args: &[&str]) -> String {
    let (success, text) = aide(env, key, args);
    assert!(!success, "aide {args:?} should have been refused: {text}");
    text
}

/// The secret in what `aide auth enable` or `aide auth key create` printed.
fn secret(printed: &str) -> String {
    printed
        .lines()
        .find_map(|l| l.strip_prefix("Secret (shown once, keep it safe): "))
        .unwrap_or_else(|| panic!("no secret in {printed}"))
        .trim()
        .to_string()
}

/// Starts `scripts/cluster-up.sh ARGS` in `dir` on free ports (new ones should another process
/// take one meanwhile); the ports, their list, what the script printed, and the guard that stops
/// the cluster.
fn cluster_up<'a>(dir: &'a Path, args: &[&str]) -> ([u16; 3], String, String, Down<'a>) {
    let mut attempt = 0;
    loop {
        attempt += 1;
        let ports = free_ports();
        let port_list = ports.map(|p| p.to_string()).join(",");
        let up = script("cluster-up.sh", dir, &port_list, args).unwrap();
        let down = Down(dir, port_list.clone());
        let printed = String::from_utf8_lossy(&up.stdout).into_owned();
        if up.status.success() {
            return (ports, port_list, printed, down);
        }
        let why = format!("{printed}{}", String::from_utf8_lossy(&up.stderr));
        drop(down);
        assert!(
            attempt < 3 && why.contains("in use"),
            "cluster-up.sh {args:?}: {why}"
        );
        let _ = std::fs::remove_dir_all(dir);
    }
}

/// The README's way back for a node whose data is lost: remove it, start it on an empty
/// directory, and `scripts/cluster-up.sh` as it is brings it back under a new id (ids are not
/// given twice, and the ready-made files of nodes 2 and 3 fix none).
#[test]
fn a_removed_node_comes_back_under_a_new_id_with_cluster_up() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("cluster");
    let (ports, port_list, printed, _down) = cluster_up(&dir, &[]);
    assert!(
        printed.contains(&format!("aide node 2 serving on 127.0.0.1:{}", ports[1])),
        "{printed}"
    );
    let env = [("AIDE_REMOTE", format!("127.0.0.1:{}", ports[0]))];
    ok(&env, None, &["state", "set", "k", "kept"]);
    ok(&env, None, &["cluster", "remove", "2"]);
    // The removed node stops by itself once it learns it was removed.
    let pid: i32 = std::fs::read_to_string(dir.join("node2.pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while unsafe { libc::kill(pid, 0) } == 0
        && std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| !s.contains(") Z "))
    {
        assert!(std::time::Instant::now() < deadline, "node 2 did not stop");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    std::fs::rename(dir.join("node2"), dir.join("node2-lost")).unwrap();
    let again = script("cluster-up.sh", &dir, &port_list, &[]).unwrap();
    let printed = String::from_utf8_lossy(&again.stdout);
    assert!(
        again.status.success(),
        "{printed}{}",
        String::from_utf8_lossy(&again.stderr)
    );
    assert!(
        printed.contains(&format!("aide node 4 serving on 127.0.0.1:{}", ports[1])),
        "{printed}"
    );
    let members = ok(&env, None, &["cluster", "members"]);
    assert!(
        members.contains(&format!("4 127.0.0.1:{} voter", ports[1])) && !members.contains("\n2 "),
        "{members}"
    );
    let at_new = [("AIDE_REMOTE", format!("127.0.0.1:{}", ports[1]))];
    assert_eq!(
        ok(&at_new, None, &["--consistency=stale", "state", "get", "k"]).trim(),
        "kept"
    );
}

#[test]
fn the_readme_tls_and_api_key_walkthrough() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("cluster");
    let (ports, port_list, printed, _down) = cluster_up(&dir, &["--tls"]);
    let remote = ports.map(|p| format!("127.0.0.1:{p}")).join(",");
    let ca = dir.join("certs/ca.pem");
    assert!(
        printed.contains(&format!("export AIDE_REMOTE={remote}")),
        "{printed}"
    );
    assert!(
        printed.contains(&format!("export AIDE_TLS_CA={}", ca.display())),
        "{printed}"
    );

    // Without the CA a client cannot talk to the nodes; with it, it can.
    let plain = [("AIDE_REMOTE", remote.clone())];
    refused(&plain, None, &["state", "get", "k"]);
    let env = [
        ("AIDE_REMOTE", remote.clone()),
        ("AIDE_TLS_CA", ca.display().to_string()),
    ];
    ok(&env, None, &["cluster", "status"]);

    // The first admin key, from node 1's bootstrap token.
    let first = format!("127.0.0.1:{}", ports[0]);
    let node1 = dir.join("node1");
    let enabled = ok(
        &env,
        None,
        &[
            "auth",
            "enable",
            "--data-dir",
            node1.to_str().unwrap(),
            "--remote",
            &first,
        ],
    );
    assert!(enabled.contains("admin on *"), "{enabled}");
    let admin = secret(&enabled);
    let no_key = refused(
        &env,
        None,
        &["--project", "myrepo", "memory", "add", "a note"],
    );
    assert!(no_key.contains("API key"), "{no_key}");

    // A key for one project that can write: it works on every node, and nowhere else.
    let created = ok(
        &env,
        Some(&admin),
        &[
            "auth",
            "key",
            "create",
            "--project",
            "myrepo",
            "--role",
            "write",
        ],
    );
    let writer = secret(&created);
    ok(
        &env,
        Some(&writer),
        &[
            "--project",
            "myrepo",
            "memory",
            "add",
            "Use rustls, never openssl",
        ],
    );
    for p in ports {
        let one = [
            ("AIDE_REMOTE", format!("127.0.0.1:{p}")),
            ("AIDE_TLS_CA", ca.display().to_string()),
        ];
        let found = ok(
            &one,
            Some(&writer),
            &["--project", "myrepo", "memory", "search", "rustls"],
        );
        assert!(found.contains("never openssl"), "node on {p}: {found}");
    }
    let elsewhere = refused(
        &env,
        Some(&writer),
        &["--project", "other", "memory", "add", "not mine"],
    );
    assert!(
        elsewhere.contains("may not use project \"other\""),
        "{elsewhere}"
    );
    refused(&env, Some(&writer), &["auth", "key", "list"]);

    // The admin lists keys (accessors, never secrets), revokes the project key, reads the audit.
    let listed = ok(&env, Some(&admin), &["auth", "key", "list"]);
    assert!(
        !listed.contains(&writer) && !listed.contains(&admin),
        "{listed}"
    );
    let accessor = created
        .lines()
        .find_map(|l| l.strip_prefix("Created API key "))
        .and_then(|l| l.split_whitespace().next())
        .unwrap()
        .to_string();
    assert!(listed.contains(&accessor), "{listed}");
    ok(&env, Some(&admin), &["auth", "key", "revoke", &accessor]);
    let revoked = refused(
        &env,
        Some(&writer),
        &["--project", "myrepo", "memory", "add", "after revocation"],
    );
    assert!(revoked.contains("revoked"), "{revoked}");
    let audit = ok(
        &env,
        Some(&admin),
        &["--remote", &first, "audit", "tail", "-n", "50"],
    );
    assert!(audit.contains("memory.add"), "{audit}");
    assert!(audit.contains("denied"), "{audit}");
    assert!(
        !audit.contains(&writer) && !audit.contains(&admin),
        "{audit}"
    );

    // cluster-down.sh stops the three nodes it started.
    let down = script("cluster-down.sh", &dir, &port_list, &[]).unwrap();
    let stopped = String::from_utf8_lossy(&down.stdout);
    for id in 1..=3 {
        assert!(stopped.contains(&format!("stopped node{id}")), "{stopped}");
    }
}
