//! API keys: who may call the cluster, on which projects, with which role. Only a hash of the
//! secret is stored; the accessor id names the key and is safe to log.

use super::UnixNanos;
use serde::{Deserialize, Serialize};

/// What a key may do. Each role includes the ones before it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Role {
    /// Read calls.
    #[default]
    Read,
    /// Read and write calls.
    Write,
    /// Everything, including membership changes, keys and the audit log.
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Read => "read",
            Role::Write => "write",
            Role::Admin => "admin",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "read" => Some(Role::Read),
            "write" => Some(Role::Write),
            "admin" => Some(Role::Admin),
            _ => None,
        }
    }
}

/// The projects entry that means every project.
pub const ALL_PROJECTS: &str = "*";

/// A stored API key.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiKey {
    /// The public id of the key (a ULID); the secret starts with it.
    pub accessor: String,
    /// SHA-256 of the whole secret, hex.
    pub hash: String,
    pub role: Role,
    /// The projects the key may touch; [`ALL_PROJECTS`] for all.
    pub projects: Vec<String>,
    pub description: String,
    pub created_at: UnixNanos,
    /// When it was revoked; a revoked key opens nothing.
    pub revoked_at: Option<UnixNanos>,
}

impl ApiKey {
    /// Whether the key has not been revoked.
    pub fn is_live(&self) -> bool {
        self.revoked_at.is_none()
    }

    /// Whether the key may touch `project`.
    pub fn allows(&self, project: &str) -> bool {
        self.projects
            .iter()
            .any(|p| p == ALL_PROJECTS || p == project)
    }

    /// Whether the key holds every project (`*`).
    pub fn allows_all(&self) -> bool {
        self.projects.iter().any(|p| p == ALL_PROJECTS)
    }

    /// Whether the key may touch every project of `other`.
    pub fn covers(&self, other: &[String]) -> bool {
        self.projects.iter().any(|p| p == ALL_PROJECTS)
            || other
                .iter()
                .all(|p| p != ALL_PROJECTS && self.projects.contains(p))
    }
}
