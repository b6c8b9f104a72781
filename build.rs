//! Generates the gRPC code for the public API, the cluster admin API and the Raft transport,
//! with the vendored `protoc` so that a bare machine builds, and records the build's commit and date.

use std::process::Command;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protoc = protoc_bin_vendored::protoc_bin_path()?;
    std::env::set_var("PROTOC", protoc);
    let include = protoc_bin_vendored::include_path()?;
    let protos = [
        "proto/aidememory.proto",
        "proto/cluster.proto",
        "proto/raft.proto",
        "proto/auth.proto",
    ]
    .map(std::path::PathBuf::from);
    tonic_prost_build::configure().compile_protos(
        &protos,
        &[std::path::PathBuf::from("proto"), include.clone()],
    )?;

    // The client a third party would generate from SPEC.md alone, for tests/spec_client.rs.
    let spec_out = std::path::PathBuf::from(std::env::var("OUT_DIR")?).join("spec_client");
    std::fs::create_dir_all(&spec_out)?;
    tonic_prost_build::configure()
        .build_server(false)
        .out_dir(&spec_out)
        .compile_protos(
            &[std::path::PathBuf::from("tests/proto/spec_client.proto")],
            &[std::path::PathBuf::from("tests/proto"), include],
        )?;

    let commit = Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|| "unknown".to_string());
    println!("cargo:rustc-env=AIDE_COMMIT={commit}");
    let date = Command::new("date")
        .args(["-u", "+%Y-%m-%dT%H:%M:%SZ"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|| "unknown".to_string());
    println!("cargo:rustc-env=AIDE_BUILD_DATE={date}");
    println!("cargo:rerun-if-changed=proto");
    println!("cargo:rerun-if-changed=tests/proto");
    // The commit changes with the branch's ref, not with HEAD (which names the branch): watch
    // HEAD, its reflog, the ref and the packed refs, where each exists (a missing path would
    // rerun every build).
    let git = |args: &[&str]| {
        Command::new("git")
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    // HEAD's reflog moves with every commit and checkout, also when the branch's ref is packed
    // (in a worktree, `.git` is a file: `--git-path` finds the right places).
    let mut watched: Vec<std::path::PathBuf> = ["HEAD", "logs/HEAD"]
        .iter()
        .filter_map(|p| git(&["rev-parse", "--git-path", p]))
        .map(Into::into)
        .collect();
    if let Some(branch) = git(&["symbolic-ref", "-q", "HEAD"]) {
        if let Some(path) = git(&["rev-parse", "--git-path", &branch]) {
            watched.push(path.into());
        }
    }
    if let Some(path) = git(&["rev-parse", "--git-path", "packed-refs"]) {
        watched.push(path.into());
    }
    for path in watched.iter().filter(|p| p.exists()) {
        println!("cargo:rerun-if-changed={}", path.display());
    }
    Ok(())
}
