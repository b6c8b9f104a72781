//! Applying API key commands. Keys are not per project: they live under their own tag, with a
//! metadata flag saying whether keys are required at all.

use crate::command::{CommandResult, Rejection};
use crate::model::ApiKey;
use crate::storage::keys;
use crate::storage::kv::{KvRead, KvWrite};
use crate::storage::{records, StoreError};

const ENABLED: &str = "auth_enabled";
const NODE_SECRET: &str = "node_secret";

/// The secret nodes send each other once keys are enabled.
pub fn node_secret(r: &dyn KvRead) -> Result<Option<String>, StoreError> {
    records::get(r, &keys::meta(NODE_SECRET))
}

/// Whether API keys are required: one lookup, no decoding (the flag is only ever written
/// `true`), since the guard asks it for every request.
pub fn enabled(r: &dyn KvRead) -> Result<bool, StoreError> {
    static KEY: std::sync::LazyLock<Vec<u8>> = std::sync::LazyLock::new(|| keys::meta(ENABLED));
    Ok(r.get(&KEY)?.is_some())
}

/// Whether keys are on, and the node secret: from the store's memory of them when it has it
/// (the request path asks for every call; [`crate::storage::Store::keys`] says when they are
/// read again).
pub fn keys_on(
    store: &crate::storage::Store,
) -> Result<(bool, Option<std::sync::Arc<str>>), StoreError> {
    store.keys.get(|| {
        Ok((
            enabled(&store.state)?,
            node_secret(&store.state)?.map(Into::into),
        ))
    })
}

/// The key named `accessor`.
pub fn key(r: &dyn KvRead, accessor: &str) -> Result<Option<ApiKey>, StoreError> {
    records::get(r, &keys::api_key(accessor))
}

/// Every key, oldest first (accessors are ULIDs).
pub fn list(r: &dyn KvRead) -> Result<Vec<ApiKey>, StoreError> {
    Ok(records::collect::<ApiKey>(r, &keys::api_keys_prefix())?
        .into_iter()
        .map(|(_, k)| k)
        .collect())
}

pub(super) fn enable(
    w: &mut dyn KvWrite,
    key: &ApiKey,
    node_secret: &str,
) -> Result<CommandResult, StoreError> {
    if enabled(w)? {
        return Ok(CommandResult::Rejected(Rejection::Invalid(
            "API keys are already enabled; create keys with an admin key".to_string(),
        )));
    }
    records::put(w, keys::meta(ENABLED), &true);
    records::put(w, keys::meta(NODE_SECRET), &node_secret.to_string());
    records::put(w, keys::api_key(&key.accessor), key);
    Ok(CommandResult::Key(key.clone()))
}

pub(super) fn create(w: &mut dyn KvWrite, key: &ApiKey) -> Result<CommandResult, StoreError> {
    records::put(w, keys::api_key(&key.accessor), key);
    Ok(CommandResult::Key(key.clone()))
}

pub(super) fn revoke(
    w: &mut dyn KvWrite,
    now: i64,
    accessor: &str,
) -> Result<CommandResult, StoreError> {
    let Some(mut k) = key(w, accessor)? else {
        return Ok(CommandResult::Rejected(Rejection::NotFound {
            kind: "API key".to_string(),
            id: accessor.to_string(),
        }));
    };
    if k.is_live() {
        k.revoked_at = Some(now);
        records::put(w, keys::api_key(accessor), &k);
    }
    Ok(CommandResult::Key(k))
}
