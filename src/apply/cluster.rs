//! The cluster's id. Its first leader names the cluster ([`Command::ClusterId`]); every node
//! keeps the id with its data (snapshots carry it), sends it with its Raft messages and refuses
//! those that name another cluster, so that a node of one cluster started at another's member
//! address keeps to its own data.
//!
//! [`Command::ClusterId`]: crate::command::Command::ClusterId

use crate::command::CommandResult;
use crate::storage::keys;
use crate::storage::kv::{KvRead, KvWrite};
use crate::storage::{records, Store, StoreError};
use std::sync::Arc;

/// The metadata of a node-to-node call that names the caller's cluster, when the caller knows
/// its id: a node of another cluster refuses the call ([`foreign`]).
pub const CLUSTER: &str = "x-aide-cluster";

const CLUSTER_ID: &str = "cluster_id";

/// The id of the cluster whose data `r` holds, once named.
pub fn id(r: &dyn KvRead) -> Result<Option<String>, StoreError> {
    records::get(r, &keys::meta(CLUSTER_ID))
}

/// The id of the cluster whose data `store` holds, from memory when read before (Raft messages
/// ask for it, each way; [`Store::cluster`] says when it is read again).
pub fn known(store: &Store) -> Result<Option<Arc<str>>, StoreError> {
    store.cluster.get(|| Ok(id(&store.state)?.map(Into::into)))
}

/// Names the cluster `name` unless it has a name: the first proposal applied wins, on every
/// node alike.
pub(super) fn name(w: &mut dyn KvWrite, name: &str) -> Result<CommandResult, StoreError> {
    if id(w)?.is_some() {
        return Ok(CommandResult::Done(false));
    }
    records::put(w, keys::meta(CLUSTER_ID), &name.to_string());
    Ok(CommandResult::Done(true))
}

/// Names this node's cluster in `metadata`, when it knows its id.
pub fn mark(store: &Store, metadata: &mut tonic::metadata::MetadataMap) {
    if let Ok(Some(id)) = known(store) {
        if let Ok(v) = id.parse() {
            metadata.insert(CLUSTER, v);
        }
    }
}

/// The cluster a call names ([`CLUSTER`]), if it names one.
pub fn named(headers: &tonic::codegen::http::HeaderMap) -> Option<&str> {
    headers.get(CLUSTER).and_then(|v| v.to_str().ok())
}

/// Whether two nodes' cluster ids name one cluster, as far as they know (a node that knows no
/// id yet names none: it is empty, or its cluster is being named).
pub fn same(a: &str, b: &str) -> bool {
    a.is_empty() || b.is_empty() || a == b
}

/// This node's cluster, when a call names `theirs` and it is another.
pub fn foreign(store: &Store, theirs: Option<&str>) -> Result<Option<Arc<str>>, StoreError> {
    let Some(theirs) = theirs else {
        return Ok(None);
    };
    Ok(known(store)?.filter(|mine| !same(mine, theirs)))
}
