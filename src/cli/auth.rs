//! `aide auth` (API keys), `aide audit tail`, and `aide cert` (development certificates).

use super::print::Printer;
use super::CliError;
use crate::client::Client;
use crate::grpc::pb::auth::{self as pb, Key};
use clap::Subcommand;
use serde_json::{json, Value};
use std::path::PathBuf;

#[derive(Debug, Subcommand)]
pub enum AuthCmd {
    /// Require API keys from now on, on every node, and print the first admin key (all projects).
    /// Needs the bootstrap token from the data directory of the node this command talks to, so
    /// it is run where that node runs.
    Enable {
        /// The node's data directory, whose bootstrap.token is read.
        #[arg(long, value_name = "DIR", conflicts_with = "bootstrap_token")]
        data_dir: Option<PathBuf>,
        /// The token itself (the content of bootstrap.token).
        #[arg(
            long,
            value_name = "TOKEN",
            env = "AIDE_BOOTSTRAP_TOKEN",
            hide_env_values = true
        )]
        bootstrap_token: Option<String>,
    },
    /// API keys (need an admin key).
    #[command(subcommand)]
    Key(KeyCmd),
}

#[derive(Debug, Subcommand)]
pub enum KeyCmd {
    /// Create a key for the projects given with --project (several separated by commas; '*' for
    /// every project) and print its secret, once.
    Create {
        /// read, write or admin.
        #[arg(long, value_parser = ["read", "write", "admin"])]
        role: String,
        #[arg(long, default_value = "")]
        description: String,
    },
    /// Every key: accessor id, role, projects, state (no secrets).
    List,
    /// Revoke a key on every node.
    Revoke { accessor: String },
}

#[derive(Debug, Subcommand)]
pub enum AuditCmd {
    /// The last lines of the audit log of the node this command talks to (needs an admin key).
    Tail {
        /// How many lines.
        #[arg(short = 'n', long, default_value_t = 20)]
        lines: u32,
    },
}

#[derive(Debug, Subcommand)]
pub enum CertCmd {
    /// Make a development CA (ca.pem, ca.key) in DIR.
    Ca {
        #[arg(long, value_name = "DIR", default_value = "certs")]
        dir: PathBuf,
    },
    /// Make a certificate NAME.pem / NAME.key signed by the CA in DIR: a node's (server and
    /// client use, for --host and the name node.aide that nodes require of each other), or with
    /// --client a client's, which cannot pass for a node.
    Issue {
        name: String,
        /// A client certificate: authenticates a client only.
        #[arg(long)]
        client: bool,
        /// Host names and IP addresses it is valid for (repeat).
        #[arg(long = "host", value_name = "HOST", default_values_t = ["localhost".to_string(), "127.0.0.1".to_string()])]
        hosts: Vec<String>,
        #[arg(long, value_name = "DIR", default_value = "certs")]
        dir: PathBuf,
    },
}

fn key_json(k: &Key) -> Value {
    json!({
        "accessor": k.accessor,
        "role": k.role,
        "projects": k.projects,
        "description": k.description,
        "created_at": k.created_at_unix,
        "revoked_at": (k.revoked_at_unix != 0).then_some(k.revoked_at_unix),
    })
}

fn key_line(k: &Key) -> String {
    format!(
        "{}  {:<5}  {:<20}  {}{}",
        k.accessor,
        k.role,
        k.projects.join(","),
        if k.revoked_at_unix != 0 {
            "revoked  "
        } else {
            ""
        },
        k.description
    )
}

/// Prints a new key: its details, and its secret once. With `--format=json` the JSON holds the
/// details only and the secret goes to stderr, so that no JSON output ever carries a secret.
fn print_created(created: pb::KeyCreated, out: &Printer) {
    let key = created.key.unwrap_or_default();
    if out.json() {
        out.value(&key_json(&key));
        eprintln!("secret (shown once): {}", created.secret);
    } else {
        println!(
            "Created API key {} ({} on {})",
            key.accessor,
            key.role,
            key.projects.join(",")
        );
        println!("Secret (shown once, keep it safe): {}", created.secret);
    }
}

pub async fn run(
    cmd: AuthCmd,
    c: &Client,
    project: Option<String>,
    out: &Printer,
) -> Result<(), CliError> {
    match cmd {
        AuthCmd::Enable {
            data_dir,
            bootstrap_token,
        } => {
            let token = match (bootstrap_token, data_dir) {
                (Some(t), _) => t,
                (None, Some(dir)) => {
                    let path = dir.join(crate::auth::BOOTSTRAP_FILE);
                    std::fs::read_to_string(&path).map_err(|e| {
                        CliError::Usage(format!("cannot read {}: {e}", path.display()))
                    })?
                }
                (None, None) => {
                    return Err(CliError::Usage(
                        "give --data-dir DIR (the node's data directory) or --bootstrap-token"
                            .to_string(),
                    ))
                }
            };
            let created = c
                .auth_enable(pb::EnableRequest {
                    bootstrap_token: token.trim().to_string(),
                    description: String::new(),
                })
                .await?;
            print_created(created, out);
        }
        AuthCmd::Key(KeyCmd::Create { role, description }) => {
            let projects: Vec<String> = project
                .unwrap_or_default()
                .split(',')
                .map(|p| p.trim().to_string())
                .filter(|p| !p.is_empty())
                .collect();
            if projects.is_empty() {
                return Err(CliError::Usage(
                    "name the key's projects with --project P[,Q] ('*' for every project)"
                        .to_string(),
                ));
            }
            let created = c
                .auth_create_key(pb::CreateKeyRequest {
                    projects,
                    role,
                    description,
                })
                .await?;
            print_created(created, out);
        }
        AuthCmd::Key(KeyCmd::List) => {
            let keys = c.auth_list_keys(pb::ListKeysRequest {}).await?.keys;
            let text = keys.iter().map(key_line).collect::<Vec<_>>().join("\n");
            out.either(text, Value::Array(keys.iter().map(key_json).collect()));
        }
        AuthCmd::Key(KeyCmd::Revoke { accessor }) => {
            let key = c
                .auth_revoke_key(pb::RevokeKeyRequest { accessor })
                .await?
                .key
                .unwrap_or_default();
            out.either(format!("Revoked API key {}", key.accessor), key_json(&key));
        }
    }
    Ok(())
}

pub async fn audit(cmd: AuditCmd, c: &Client, out: &Printer) -> Result<(), CliError> {
    let AuditCmd::Tail { lines } = cmd;
    let lines = c.audit_tail(pb::AuditTailRequest { lines }).await?.lines;
    if out.json() {
        let values: Vec<Value> = lines
            .iter()
            .map(|l| serde_json::from_str(l).unwrap_or(Value::String(l.clone())))
            .collect();
        out.value(&Value::Array(values));
    } else {
        for l in lines {
            println!("{l}");
        }
    }
    Ok(())
}

pub fn cert(cmd: CertCmd) -> Result<(), CliError> {
    match cmd {
        CertCmd::Ca { dir } => {
            crate::tls::dev::ca(&dir).map_err(CliError::Failed)?;
            println!(
                "Created {}/ca.pem and {}/ca.key",
                dir.display(),
                dir.display()
            );
        }
        CertCmd::Issue {
            name,
            client,
            hosts,
            dir,
        } => {
            crate::tls::dev::leaf(&dir, &name, &hosts, !client).map_err(CliError::Failed)?;
            let what = if client {
                "a client".to_string()
            } else {
                format!("a node, for {}", hosts.join(", "))
            };
            println!(
                "Created {}/{name}.pem and {}/{name}.key ({what})",
                dir.display(),
                dir.display(),
            );
        }
    }
    Ok(())
}
