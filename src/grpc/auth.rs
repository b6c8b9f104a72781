//! AuthService: turning API keys on, creating, listing and revoking them, and reading the audit
//! log. The guard in front of every service ([`crate::auth`]) has already checked the caller.

use super::pb::auth::{self as pb, auth_service_server::AuthService};
use crate::apply::auth as keys;
use crate::auth::{bootstrap_matches, new_secret, Caller};
use crate::command::{Command, CommandResult};
use crate::grpc::meta::{respond, DEFAULT_PROJECT};
use crate::model::{ApiKey, Role, ALL_PROJECTS};
use crate::node::{Node, ReadOptions, WriteMeta};
use std::sync::Arc;
use tonic::{Request, Response, Status};

/// The handlers.
pub struct Auth {
    pub node: Arc<Node>,
}

fn key_info(k: &ApiKey) -> pb::Key {
    pb::Key {
        accessor: k.accessor.clone(),
        role: k.role.as_str().to_string(),
        projects: k.projects.clone(),
        description: k.description.clone(),
        created_at_unix: k.created_at / 1_000_000_000,
        revoked_at_unix: k.revoked_at.map_or(0, |t| t / 1_000_000_000),
    }
}

/// Who made `req`, as the guard found it.
fn caller_of<T>(req: &Request<T>) -> Caller {
    req.extensions()
        .get::<Caller>()
        .cloned()
        .unwrap_or_default()
}

impl Auth {
    /// Proposes a key command made by `caller`; a fresh key's secret goes back to the caller
    /// only. The command carries the caller's key, so that it is refused where it applies if
    /// that key was revoked first (a node behind the revocation cannot let a revoked admin
    /// mint or revoke keys).
    async fn propose(
        &self,
        caller: &Caller,
        command: impl FnOnce(i64) -> Command,
    ) -> Result<(ApiKey, u64), Status> {
        let meta = WriteMeta {
            project: DEFAULT_PROJECT.to_string(),
            request_id: String::new(),
            accessor: caller
                .key
                .as_ref()
                .map(|k| k.accessor.clone())
                .unwrap_or_default(),
        };
        let (result, index) = self
            .node
            .write(&meta, |t| Ok(command(t.now)))
            .await
            .map_err(Status::from)?;
        match result {
            CommandResult::Key(k) => Ok((k, index)),
            r => Err(super::unexpected(r)),
        }
    }

    /// A new key with `role` on `projects`, and its secret; the change is audited as made by
    /// `caller`.
    async fn create(
        &self,
        caller: &Caller,
        role: Role,
        projects: Vec<String>,
        description: String,
        enable: bool,
    ) -> Result<Response<pb::KeyCreated>, Status> {
        let accessor = ulid::Ulid::new().to_string();
        let operation = if enable {
            "auth.enable"
        } else {
            "auth.key_create"
        };
        let target = accessor.clone();
        let (secret, hash) = new_secret(&accessor);
        let key = self
            .propose(caller, |now| {
                let key = ApiKey {
                    accessor,
                    hash,
                    role,
                    projects,
                    description,
                    created_at: now,
                    revoked_at: None,
                };
                if enable {
                    Command::AuthEnable {
                        key,
                        node_secret: crate::auth::new_node_secret(),
                    }
                } else {
                    Command::AuthKeyCreate(key)
                }
            })
            .await;
        self.audit(caller, operation, &target, &key);
        let (key, index) = key?;
        Ok(respond(
            pb::KeyCreated {
                key: Some(key_info(&key)),
                secret,
            },
            index,
        ))
    }

    /// An audit line for a key change.
    fn audit<T>(&self, caller: &Caller, operation: &str, target: &str, result: &Result<T, Status>) {
        self.node.audit.write(&crate::audit::AuditEntry {
            node: self.node.id,
            accessor: caller.accessor.clone(),
            project: String::new(),
            operation: operation.to_string(),
            target: target.to_string(),
            result: match result {
                Ok(_) => "ok".to_string(),
                Err(s) => format!("error: {}", s.message()),
            },
        });
    }

    fn enabled(&self) -> Result<bool, Status> {
        keys::keys_on(&self.node.store)
            .map(|(on, _)| on)
            .map_err(|e| Status::unavailable(format!("cannot read the key store: {e}")))
    }
}

#[tonic::async_trait]
impl AuthService for Auth {
    async fn enable(
        &self,
        req: Request<pb::EnableRequest>,
    ) -> Result<Response<pb::KeyCreated>, Status> {
        let r = req.into_inner();
        if !bootstrap_matches(self.node.store.dir(), &r.bootstrap_token) {
            return Err(Status::permission_denied(format!(
                "the bootstrap token is not this node's: use the content of {} in the data \
                 directory of the node you are talking to",
                crate::auth::BOOTSTRAP_FILE
            )));
        }
        // Once keys are on, the token still gives a new admin key: whoever can read a node's
        // data directory has everything anyway, and a lost first key must not lock everyone out.
        let again = self.enabled()?;
        let description = match (r.description.is_empty(), again) {
            (false, _) => r.description,
            (true, false) => "first admin key".to_string(),
            (true, true) => "admin key from the bootstrap token".to_string(),
        };
        let bootstrap = Caller {
            accessor: "bootstrap".to_string(),
            ..Default::default()
        };
        self.create(
            &bootstrap,
            Role::Admin,
            vec![ALL_PROJECTS.to_string()],
            description,
            !again,
        )
        .await
    }

    async fn create_key(
        &self,
        req: Request<pb::CreateKeyRequest>,
    ) -> Result<Response<pb::KeyCreated>, Status> {
        let caller = caller_of(&req);
        let r = req.into_inner();
        if !self.enabled()? {
            return Err(Status::failed_precondition(
                "API keys are not enabled yet: run `aide auth enable` first",
            ));
        }
        let role = Role::parse(&r.role).ok_or_else(|| {
            Status::invalid_argument(format!(
                "role {:?} is not one of read, write, admin",
                r.role
            ))
        })?;
        if r.projects.is_empty() {
            return Err(Status::invalid_argument(
                "a key needs at least one project (--project P, or '*' for every project)",
            ));
        }
        for p in &r.projects {
            if p != ALL_PROJECTS {
                crate::command::validate::project(p)
                    .map_err(|e| Status::invalid_argument(e.to_string()))?;
            }
        }
        crate::command::validate::text("description", &r.description)
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        if let Some(k) = &caller.key {
            if !k.covers(&r.projects) {
                return Err(Status::permission_denied(format!(
                    "API key {} may not grant projects it does not hold",
                    k.accessor
                )));
            }
        }
        self.create(&caller, role, r.projects, r.description, false)
            .await
    }

    async fn list_keys(
        &self,
        req: Request<pb::ListKeysRequest>,
    ) -> Result<Response<pb::ListKeysResponse>, Status> {
        self.node.read_barrier(ReadOptions::default()).await?;
        crate::auth::still_allowed(&self.node.store, &caller_of(&req))?;
        let keys = keys::list(&self.node.store.state)
            .map_err(|e| Status::unavailable(format!("cannot read the key store: {e}")))?;
        Ok(Response::new(pb::ListKeysResponse {
            keys: keys.iter().map(key_info).collect(),
        }))
    }

    async fn revoke_key(
        &self,
        req: Request<pb::RevokeKeyRequest>,
    ) -> Result<Response<pb::RevokeKeyResponse>, Status> {
        let caller = caller_of(&req);
        let accessor = req.into_inner().accessor;
        crate::command::validate::required_name("accessor", &accessor)
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        // An admin of some projects revokes only keys within them.
        if let (Some(mine), Ok(Some(target))) =
            (&caller.key, keys::key(&self.node.store.state, &accessor))
        {
            if !mine.covers(&target.projects) {
                return Err(Status::permission_denied(format!(
                    "API key {} may not revoke a key for projects it does not hold",
                    mine.accessor
                )));
            }
        }
        let target = accessor.clone();
        let r = self
            .propose(&caller, |_| Command::AuthKeyRevoke { accessor })
            .await;
        self.audit(&caller, "auth.key_revoke", &target, &r);
        let (key, index) = r?;
        Ok(respond(
            pb::RevokeKeyResponse {
                key: Some(key_info(&key)),
            },
            index,
        ))
    }

    async fn audit_tail(
        &self,
        req: Request<pb::AuditTailRequest>,
    ) -> Result<Response<pb::AuditTailResponse>, Status> {
        crate::auth::still_allowed(&self.node.store, &caller_of(&req))?;
        let n = match req.into_inner().lines {
            0 => 50,
            n => n.min(10_000) as usize,
        };
        let lines = self
            .node
            .audit
            .tail(n)
            .map_err(|e| Status::unavailable(format!("cannot read the audit log: {e}")))?;
        Ok(Response::new(pb::AuditTailResponse { lines }))
    }
}
