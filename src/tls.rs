//! TLS: the server side (rustls, with the node's certificate and the cluster CA reloaded from
//! their files when they change, and client certificates checked against that CA when offered),
//! the client side every outgoing connection of the process uses, and `aide cert`'s development
//! certificates (rcgen).

use arc_swap::ArcSwap;
use rustls::pki_types::{pem::PemObject, CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::{server::TlsStream, TlsAcceptor};
use tonic::transport::server::{TcpConnectInfo, TlsConnectInfo};
use tonic::transport::{Certificate, ClientTlsConfig, Identity};

/// How often the certificate files are checked for changes.
pub const RELOAD_EVERY: Duration = Duration::from_secs(2);

/// A node's certificate chain, key and the cluster CA, as PEM files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub ca: PathBuf,
}

/// A TLS setting that cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("TLS: {0}")]
pub struct TlsError(pub String);

fn read(path: &Path, what: &str) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path)
        .map_err(|e| TlsError(format!("cannot read the {what} {}: {e}", path.display())))
}

/// The server configuration from `files`: the node's certificate, and client certificates
/// optional but, when offered, signed by the CA.
pub fn server_config(files: &TlsFiles) -> Result<Arc<ServerConfig>, TlsError> {
    install_provider();
    let bad = |what: &str, path: &Path, e: &dyn std::fmt::Display| {
        TlsError(format!("the {what} {} is not usable: {e}", path.display()))
    };
    let chain: Vec<CertificateDer<'static>> =
        CertificateDer::pem_slice_iter(&read(&files.cert, "certificate")?)
            .collect::<Result<_, _>>()
            .map_err(|e| bad("certificate", &files.cert, &e))?;
    if chain.is_empty() {
        return Err(bad("certificate", &files.cert, &"no certificate in it"));
    }
    if !is_node_cert(chain[0].as_ref()) {
        return Err(bad(
            "certificate",
            &files.cert,
            &format!(
                "it does not name {NODE_NAME}, which nodes require of each other's \
                 certificates; make node certificates with `aide cert issue NAME` (without \
                 --client), or add the DNS name {NODE_NAME} to them"
            ),
        ));
    }
    let key = PrivateKeyDer::from_pem_slice(&read(&files.key, "key")?)
        .map_err(|e| bad("key", &files.key, &e))?;
    let roots = roots(&files.ca)?;
    let verifier = WebPkiClientVerifier::builder(Arc::new(roots))
        .allow_unauthenticated()
        .build()
        .map_err(|e| bad("CA", &files.ca, &e))?;
    let mut cfg = ServerConfig::builder()
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .map_err(|e| bad("certificate and key", &files.cert, &e))?;
    cfg.alpn_protocols = vec![b"h2".to_vec()];
    Ok(Arc::new(cfg))
}

fn roots(ca: &Path) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(&read(ca, "CA")?) {
        let c = c.map_err(|e| TlsError(format!("the CA {} is not usable: {e}", ca.display())))?;
        roots
            .add(c)
            .map_err(|e| TlsError(format!("the CA {} is not usable: {e}", ca.display())))?;
    }
    if roots.is_empty() {
        return Err(TlsError(format!(
            "the CA {} holds no certificate",
            ca.display()
        )));
    }
    Ok(roots)
}

fn install_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// The server configuration in force, replaced when the files change.
pub struct Reloading {
    files: TlsFiles,
    current: ArcSwap<ServerConfig>,
}

impl Reloading {
    pub fn new(files: TlsFiles) -> Result<Arc<Reloading>, TlsError> {
        let cfg = server_config(&files)?;
        Ok(Arc::new(Reloading {
            files,
            current: ArcSwap::from(cfg),
        }))
    }

    fn mtimes(&self) -> Vec<Option<SystemTime>> {
        [&self.files.cert, &self.files.key, &self.files.ca]
            .iter()
            .map(|p| std::fs::metadata(p).and_then(|m| m.modified()).ok())
            .collect()
    }

    /// Runs until dropped: rebuilds the configuration when a file changed (a bad new file keeps
    /// the old configuration and is reported), and points outgoing connections at it too.
    pub async fn watch(self: Arc<Self>) {
        let mut last = self.mtimes();
        loop {
            tokio::time::sleep(RELOAD_EVERY).await;
            let now = self.mtimes();
            if now == last {
                continue;
            }
            match server_config(&self.files).and_then(|cfg| {
                set_client(Some(ClientTls::from_files(&self.files)?));
                Ok(cfg)
            }) {
                Ok(cfg) => {
                    self.current.store(cfg);
                    last = now;
                    tracing::info!(cert = %self.files.cert.display(), "reloaded the TLS certificates");
                }
                Err(e) => tracing::warn!(error = %e, "keeping the TLS certificates in force"),
            }
        }
    }

    /// Accepts connections on `listener`, each with the configuration in force when it came; a
    /// refused handshake (no TLS, a certificate the CA did not sign) is an audit line.
    pub fn incoming(
        self: Arc<Self>,
        listener: TcpListener,
        audit: Arc<crate::audit::AuditLog>,
        node: u64,
    ) -> tokio_stream::wrappers::ReceiverStream<
        Result<crate::wire::Unvectored<TlsStream<TcpStream>>, std::io::Error>,
    > {
        let (tx, rx) = tokio::sync::mpsc::channel(64);
        tokio::spawn(async move {
            loop {
                let accepted = tokio::select! {
                    _ = tx.closed() => break,
                    a = listener.accept() => a,
                };
                let (tcp, peer) = match accepted {
                    Ok(accepted) => accepted,
                    Err(e) => {
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let _ = tcp.set_nodelay(true);
                let acceptor = TlsAcceptor::from(self.current.load_full());
                let tx = tx.clone();
                let audit = audit.clone();
                tokio::spawn(async move {
                    let why =
                        match tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp))
                            .await
                        {
                            Ok(Ok(tls)) => {
                                let _ = tx.send(Ok(crate::wire::Unvectored(tls))).await;
                                return;
                            }
                            Ok(Err(e)) => e.to_string(),
                            Err(_) => "timed out".to_string(),
                        };
                    tracing::debug!(peer = %peer, error = %why, "TLS handshake refused");
                    audit.refused(&crate::audit::AuditEntry {
                        node,
                        operation: "tls.handshake".to_string(),
                        target: peer.to_string(),
                        result: format!("denied: {why}"),
                        ..Default::default()
                    });
                });
            }
        });
        tokio_stream::wrappers::ReceiverStream::new(rx)
    }
}

/// The DNS name a node's certificate carries besides its hosts: what tells a node's certificate
/// from a client's when the same CA signs both.
pub const NODE_NAME: &str = "node.aide";

/// What the certificate a connection presented (already checked against the cluster CA during
/// the handshake) says of its holder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeerCert {
    /// No certificate (or no TLS).
    None,
    /// Signed by the CA, but not a node's: a client's or an operator's.
    Client,
    /// A node's: it names [`NODE_NAME`].
    Node,
}

/// The certificate the connection a request came on presented.
pub fn peer_cert(extensions: &tonic::codegen::http::Extensions) -> PeerCert {
    match extensions
        .get::<TlsConnectInfo<TcpConnectInfo>>()
        .and_then(|i| i.peer_certs())
        .and_then(|c| c.first().cloned())
    {
        None => PeerCert::None,
        Some(leaf) if is_node_cert(leaf.as_ref()) => PeerCert::Node,
        Some(_) => PeerCert::Client,
    }
}

/// Whether the DER certificate names [`NODE_NAME`] among its DNS names.
pub fn is_node_cert(der: &[u8]) -> bool {
    use x509_parser::extensions::GeneralName;
    let Ok((_, cert)) = x509_parser::parse_x509_certificate(der) else {
        return false;
    };
    let Ok(Some(san)) = cert.subject_alternative_name() else {
        return false;
    };
    san.value
        .general_names
        .iter()
        .any(|n| matches!(n, GeneralName::DNSName(d) if d.eq_ignore_ascii_case(NODE_NAME)))
}

/// What outgoing connections use: the CA the servers' certificates chain to, and an identity
/// to present (a node's own certificate, or a client's).
#[derive(Debug, Clone)]
pub struct ClientTls {
    pub ca_pem: Vec<u8>,
    pub identity: Option<(Vec<u8>, Vec<u8>)>,
}

impl ClientTls {
    /// A node's: its CA, presenting its own certificate.
    pub fn from_files(files: &TlsFiles) -> Result<ClientTls, TlsError> {
        Ok(ClientTls {
            ca_pem: read(&files.ca, "CA")?,
            identity: Some((read(&files.cert, "certificate")?, read(&files.key, "key")?)),
        })
    }

    /// A client's: a CA, and a certificate when both halves are given.
    pub fn for_client(
        ca: &Path,
        cert: Option<&Path>,
        key: Option<&Path>,
    ) -> Result<ClientTls, TlsError> {
        let identity = match (cert, key) {
            (Some(c), Some(k)) => Some((read(c, "certificate")?, read(k, "key")?)),
            (None, None) => None,
            _ => {
                return Err(TlsError(
                    "a client certificate needs both --tls-cert and --tls-key".to_string(),
                ))
            }
        };
        roots(ca)?;
        Ok(ClientTls {
            ca_pem: read(ca, "CA")?,
            identity,
        })
    }

    fn config(&self) -> ClientTlsConfig {
        let mut c = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(&self.ca_pem));
        if let Some((cert, key)) = &self.identity {
            c = c.identity(Identity::from_pem(cert, key));
        }
        c
    }
}

static CLIENT: RwLock<Option<ClientTls>> = RwLock::new(None);
static GENERATION: AtomicU64 = AtomicU64::new(0);

/// Sets what every outgoing connection of this process uses from now on (`None`: plain TCP).
/// Connections made before see [`generation`] change and are made again.
pub fn set_client(tls: Option<ClientTls>) {
    if tls.is_some() {
        install_provider();
    }
    *CLIENT.write().unwrap_or_else(|p| p.into_inner()) = tls;
    GENERATION.fetch_add(1, Ordering::SeqCst);
}

/// Changes whenever the client TLS settings do: a cached connection of an older generation
/// is to be replaced.
pub fn generation() -> u64 {
    GENERATION.load(Ordering::SeqCst)
}

/// The TLS settings for a new outgoing connection, if any.
pub fn client() -> Option<ClientTlsConfig> {
    CLIENT
        .read()
        .unwrap_or_else(|p| p.into_inner())
        .as_ref()
        .map(ClientTls::config)
}

/// `aide cert`: development certificates.
pub mod dev {
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer,
        KeyPair, KeyUsagePurpose,
    };
    use std::path::Path;

    fn err(e: impl std::fmt::Display) -> String {
        e.to_string()
    }

    /// Creates `ca.pem` and `ca.key` in `dir`; refuses to replace an existing CA.
    pub fn ca(dir: &Path) -> Result<(), String> {
        if dir.join("ca.key").exists() {
            return Err(format!(
                "{} already holds a CA (ca.key); remove it first to make a new one",
                dir.display()
            ));
        }
        std::fs::create_dir_all(dir).map_err(err)?;
        let mut p = CertificateParams::new(Vec::<String>::new()).map_err(err)?;
        p.distinguished_name
            .push(DnType::CommonName, "aide development CA");
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let key = KeyPair::generate().map_err(err)?;
        let cert = p.self_signed(&key).map_err(err)?;
        crate::config::write_private(&dir.join("ca.pem"), cert.pem().as_bytes()).map_err(err)?;
        crate::config::write_private(&dir.join("ca.key"), key.serialize_pem().as_bytes())
            .map_err(err)
    }

    /// Creates `<name>.pem` and `<name>.key` in `dir`, signed by the CA there. A node's is valid
    /// for the host names and IP addresses `hosts` and for [`super::NODE_NAME`], for both server
    /// and client use; a client's only authenticates a client.
    pub fn leaf(dir: &Path, name: &str, hosts: &[String], node: bool) -> Result<(), String> {
        let ca_pem = std::fs::read_to_string(dir.join("ca.pem"))
            .map_err(|e| format!("no CA in {} ({e}); run `aide cert ca` first", dir.display()))?;
        let ca_key = std::fs::read_to_string(dir.join("ca.key")).map_err(err)?;
        let issuer = Issuer::from_ca_cert_pem(&ca_pem, KeyPair::from_pem(&ca_key).map_err(err)?)
            .map_err(err)?;
        let names = if node {
            let mut names = hosts.to_vec();
            names.push(super::NODE_NAME.to_string());
            names
        } else {
            Vec::new()
        };
        let mut p = CertificateParams::new(names).map_err(err)?;
        p.distinguished_name.push(DnType::CommonName, name);
        p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        p.extended_key_usages = if node {
            vec![
                ExtendedKeyUsagePurpose::ServerAuth,
                ExtendedKeyUsagePurpose::ClientAuth,
            ]
        } else {
            vec![ExtendedKeyUsagePurpose::ClientAuth]
        };
        p.use_authority_key_identifier_extension = true;
        let key = KeyPair::generate().map_err(err)?;
        let cert = p.signed_by(&key, &issuer).map_err(err)?;
        crate::config::write_private(&dir.join(format!("{name}.pem")), cert.pem().as_bytes())
            .map_err(err)?;
        crate::config::write_private(
            &dir.join(format!("{name}.key")),
            key.serialize_pem().as_bytes(),
        )
        .map_err(err)
    }
}
