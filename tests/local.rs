//! Local-first use: in a git repository with no node configured and none running, the CLI works
//! on the project's own store in `.aide/` at the git root, and `aide serve` there serves it.

mod common;

use std::path::Path;
use std::process::{Command, Output};

/// Runs the CLI in `dir` as a developer with no aide setup would.
fn aide_in(dir: &Path, home: &Path, args: &[&str]) -> Output {
    Command::new(common::aide_bin())
        .current_dir(dir)
        .args(args)
        .env_remove("AIDE_REMOTE")
        .env_remove("AIDE_PROJECT")
        .env_remove("AIDE_DATA_DIR")
        .env("HOME", home)
        .env("AIDE_CONFIG", home.join(".aide/config.yaml"))
        .output()
        .expect("run aide")
}

fn stdout(o: &Output) -> String {
    assert!(
        o.status.success(),
        "failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn with_no_node_the_cli_uses_the_projects_own_store() {
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("home");
    let repo = tmp.path().join("webshop");
    std::fs::create_dir_all(repo.join(".git")).unwrap();
    std::fs::create_dir_all(repo.join("src/deep")).unwrap();
    std::fs::create_dir_all(&home).unwrap();

    let added = stdout(&aide_in(
        &repo.join("src/deep"),
        &home,
        &[
            "memory",
            "add",
            "Prices are stored in cents",
            "--category",
            "discovery",
        ],
    ));
    assert!(added.starts_with("Added memory: "), "{added}");
    assert!(
        repo.join(".aide/data/aide.meta").exists(),
        "the store is created in .aide at the git root"
    );
    // And kept out of the repository: `git status` does not list it.
    let ignore = std::fs::read_to_string(repo.join(".aide/.gitignore")).unwrap_or_default();
    assert!(ignore.lines().any(|l| l == "*"), "{ignore:?}");
    stdout(&aide_in(&repo, &home, &["state", "set", "phase", "build"]));
    assert_eq!(
        stdout(&aide_in(&repo, &home, &["state", "get", "phase"])).trim(),
        "build"
    );
    let found = stdout(&aide_in(&repo, &home, &["memory", "search", "cent"]));
    assert!(found.contains("Prices are stored in cents"), "{found}");

    // Two commands at once: the second waits for the store rather than failing.
    let a = {
        let (repo, home) = (repo.clone(), home.clone());
        std::thread::spawn(move || aide_in(&repo, &home, &["state", "set", "a", "1"]))
    };
    let b = aide_in(&repo, &home, &["state", "set", "b", "2"]);
    stdout(&a.join().unwrap());
    stdout(&b);

    // `aide serve` in the project serves the same store, under the repository's name.
    let node = Command::new(common::aide_bin())
        .current_dir(&repo)
        .args(["serve", "--listen", "127.0.0.1:0"])
        .env_remove("AIDE_DATA_DIR")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut node = ServeGuard(node);
    let addr = {
        use std::io::BufRead;
        let out = node.0.stdout.take().unwrap();
        let line = std::io::BufReader::new(out)
            .lines()
            .map_while(Result::ok)
            .find(|l| l.contains(" serving on "))
            .expect("the node serves");
        line.split(" serving on ")
            .nth(1)
            .unwrap()
            .split_whitespace()
            .next()
            .unwrap()
            .to_string()
    };
    let listed = common::cli(
        &addr,
        &["--project", "webshop", "state", "list", "--format", "json"],
    )
    .json();
    let keys: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["key"].as_str().unwrap())
        .collect();
    for k in ["phase", "a", "b"] {
        assert!(keys.contains(&k), "{k} missing from {keys:?}");
    }
}

struct ServeGuard(std::process::Child);

impl Drop for ServeGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
