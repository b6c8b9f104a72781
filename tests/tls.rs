//! TLS, in a test binary of its own because it sets this process's client TLS: a client without
//! TLS cannot talk to a TLS node, one trusting the cluster CA can; a node-to-node call without a
//! certificate signed by the CA is refused (and audited), and so is a join, and so is one with a
//! client's certificate from that CA; a node with a valid certificate joins; certificates
//! replaced on disk are served without a restart.

mod common;

use aide::client::{Client, ClientConfig, ReadMode};
use aide::grpc::pb::aidememory::*;
use aide::grpc::pb::raft::{raft_service_client::RaftServiceClient, RaftPayload};
use aide::tls::{set_client, ClientTls};
use common::{aide_bin, NodeProc};
use std::path::Path;
use std::time::{Duration, Instant};
use tonic::Code;

fn aide(args: &[&str]) {
    common::succeed(std::process::Command::new(aide_bin()).args(args));
}

fn certs(dir: &Path, names: &[&str]) {
    let d = dir.to_str().unwrap();
    aide(&["cert", "ca", "--dir", d]);
    for n in names {
        aide(&["cert", "issue", n, "--dir", d]);
    }
}

fn tls_flags(dir: &Path, name: &str) -> Vec<String> {
    let f = |s: &str| dir.join(s).to_str().unwrap().to_string();
    vec![
        "--tls-ca".into(),
        f("ca.pem"),
        "--tls-cert".into(),
        f(&format!("{name}.pem")),
        "--tls-key".into(),
        f(&format!("{name}.key")),
    ]
}

fn client(addr: &str) -> Client {
    Client::new(ClientConfig {
        endpoints: vec![addr.to_string()],
        project: Some("tls".into()),
        read_mode: ReadMode::Linearizable,
        min_index: None,
        min_index_is_hint: false,
        timeout: Duration::from_secs(3),
        api_key: None,
    })
    .unwrap()
}

async fn set(c: &Client) -> Result<(), aide::client::ClientError> {
    c_set(c, "v").await
}

async fn c_set(c: &Client, v: &str) -> Result<(), aide::client::ClientError> {
    c.state_set(StateSetRequest {
        key: "k".into(),
        value: v.into(),
        ..Default::default()
    })
    .await
    .map(|_| ())
}

/// The node's audit log once it holds `needle` (lines reach the file within a moment).
async fn audit_with(dir: &Path, needle: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let audit = std::fs::read_to_string(dir.join("audit.log")).unwrap_or_default();
        if audit.contains(needle) {
            return audit;
        }
        assert!(
            Instant::now() < deadline,
            "no {needle:?} in the audit log:\n{audit}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_between_clients_and_nodes_and_mutual_tls_between_nodes() {
    let tmp = tempfile::tempdir().unwrap();
    let good = tmp.path().join("certs");
    let rogue = tmp.path().join("rogue");
    certs(&good, &["n1", "n2"]);
    certs(&rogue, &["r"]);
    let flags1 = tls_flags(&good, "n1");
    let f1: Vec<&str> = flags1.iter().map(String::as_str).collect();
    let n1 = NodeProc::start(&tmp.path().join("n1"), &f1);

    // Plain TCP cannot talk to it.
    set_client(None);
    let plain = set(&client(&n1.addr)).await.unwrap_err();
    assert_ne!(plain.code, Code::Ok);
    // ... and is told why, with the flag that fixes it.
    assert!(
        plain.message.contains(&n1.addr) && plain.message.contains("--tls-ca"),
        "{plain:?}"
    );
    // Trusting the cluster CA, a client without a certificate of its own can.
    set_client(Some(
        ClientTls::for_client(&good.join("ca.pem"), None, None).unwrap(),
    ));
    let c = client(&n1.addr);
    set(&c).await.unwrap();
    // With TLS on, a node that serves plain gRPC is named as such at once (the client's 3 s
    // are not spent retrying), and so is a client trusting another CA than the node's.
    let plain_node = NodeProc::start(&tmp.path().join("plain"), &[]);
    let started = Instant::now();
    let e = set(&client(&plain_node.addr)).await.unwrap_err();
    assert!(
        e.message.contains(&plain_node.addr) && e.message.contains("did not answer TLS"),
        "{e:?}"
    );
    set_client(Some(
        ClientTls::for_client(&rogue.join("ca.pem"), None, None).unwrap(),
    ));
    let e = set(&client(&n1.addr)).await.unwrap_err();
    assert!(
        e.message.contains(&n1.addr) && e.message.contains("--tls-ca"),
        "{e:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    drop(plain_node);
    set_client(Some(
        ClientTls::for_client(&good.join("ca.pem"), None, None).unwrap(),
    ));

    // Node-to-node calls and joins without a certificate are refused, and audited.
    let channel = aide::raft::network::channel(&n1.addr).unwrap();
    let raft_call = RaftServiceClient::new(channel)
        .vote(RaftPayload { data: vec![1] })
        .await
        .unwrap_err();
    assert_eq!(
        raft_call.code(),
        Code::Unauthenticated,
        "{}",
        raft_call.message()
    );
    let join = c
        .cluster_join(aide::grpc::pb::cluster::JoinRequest {
            node_id: 9,
            address: "127.0.0.1:9".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(join.code, Code::Unauthenticated, "{}", join.message);
    let audit = audit_with(&n1.dir, "RaftService/Vote").await;
    assert!(audit.contains("certificate"), "{audit}");

    // A client certificate from the cluster CA serves a client, but cannot pass for a node.
    aide(&[
        "cert",
        "issue",
        "alice",
        "--client",
        "--dir",
        good.to_str().unwrap(),
    ]);
    set_client(Some(
        ClientTls::for_client(
            &good.join("ca.pem"),
            Some(&good.join("alice.pem")),
            Some(&good.join("alice.key")),
        )
        .unwrap(),
    ));
    set(&client(&n1.addr)).await.unwrap();
    let channel = aide::raft::network::channel(&n1.addr).unwrap();
    let as_node = RaftServiceClient::new(channel)
        .vote(RaftPayload { data: vec![1] })
        .await
        .unwrap_err();
    assert_eq!(
        as_node.code(),
        Code::Unauthenticated,
        "{}",
        as_node.message()
    );
    assert!(
        as_node.message().contains("node's certificate"),
        "{}",
        as_node.message()
    );
    audit_with(&n1.dir, "this one is a client's").await;
    set_client(Some(
        ClientTls::for_client(&good.join("ca.pem"), None, None).unwrap(),
    ));

    // A node whose certificate another CA signed cannot join; one with a good certificate can.
    let rflags = tls_flags(&rogue, "r");
    let mut rf: Vec<&str> = rflags.iter().map(String::as_str).collect();
    rf[1] = flags1[1].as_str(); // it even trusts the cluster CA; its own certificate is foreign
    rf.extend(["--join", n1.addr.as_str()]);
    let started = Instant::now();
    let out = std::process::Command::new(aide_bin())
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(tmp.path().join("rogue-node"))
        .args(&rf)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.contains("--tls-cert"),
        "a node with a foreign certificate joined, or was not told to check its certificate: \
         {stderr}"
    );
    // At once: the member's TLS refused the certificate, and trying again cannot change that.
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    // A node without TLS is told at once why it cannot join (it retried for 30 s).
    let started = Instant::now();
    let out = std::process::Command::new(aide_bin())
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--join",
            &n1.addr,
            "--data-dir",
        ])
        .arg(tmp.path().join("plain-joiner"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.contains("--tls-ca"),
        "{stderr}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    let flags2 = tls_flags(&good, "n2");
    let mut f2: Vec<&str> = flags2.iter().map(String::as_str).collect();
    f2.extend(["--join", n1.addr.as_str()]);
    let n2 = NodeProc::start(&tmp.path().join("n2"), &f2);
    let c2 = Client::new(ClientConfig {
        endpoints: vec![n2.addr.clone()],
        project: Some("tls".into()),
        read_mode: ReadMode::Linearizable,
        timeout: Duration::from_secs(10),
        ..Default::default()
    })
    .unwrap();
    let got = c2
        .state_get(StateGetRequest {
            key: "k".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(got.state.unwrap().value, "v", "replicated over mutual TLS");

    // The whole cluster moves to a new CA: new files written over the old ones are served, and
    // used between the nodes, without a restart.
    let renewed = tmp.path().join("renewed");
    certs(&renewed, &["n1", "n2"]);
    for f in ["ca.pem", "n1.pem", "n1.key", "n2.pem", "n2.key"] {
        let staged = good.join(format!("{f}.new"));
        std::fs::copy(renewed.join(f), &staged).unwrap();
        std::fs::rename(&staged, good.join(f)).unwrap();
    }
    set_client(Some(
        ClientTls::for_client(&renewed.join("ca.pem"), None, None).unwrap(),
    ));
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        // A write at n1 read back linearizably at n2: client to both, and n2 to n1, on the new CA.
        let ok = async {
            c_set(&client(&n1.addr), "renewed").await.ok()?;
            let got = client(&n2.addr)
                .state_get(StateGetRequest {
                    key: "k".into(),
                    ..Default::default()
                })
                .await
                .ok()?;
            (got.state?.value == "renewed").then_some(())
        }
        .await;
        if ok.is_some() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the cluster never worked on its new certificates; the nodes' logs:\n{}\n---\n{}",
            n1.log_text(),
            n2.log_text()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // The plain client's refused handshake was audited too.
    audit_with(&n1.dir, "tls.handshake").await;
    drop(n2);
}
