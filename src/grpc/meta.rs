//! Request and response metadata: the project, request id and read options a request carries,
//! and the applied index every response reports.

use crate::command::validate;
use crate::node::{Consistency, ReadOptions, WriteMeta};
use tonic::metadata::MetadataMap;
use tonic::{Request, Response, Status};

/// The project a request belongs to.
pub const PROJECT: &str = "x-aide-project";
/// The id that makes a retried write apply once.
pub const REQUEST_ID: &str = "x-aide-request-id";
/// `linearizable` (default) or `stale`.
pub const CONSISTENCY: &str = "x-aide-consistency";
/// A read waits until the node applied at least this index.
pub const MIN_INDEX: &str = "x-aide-min-index";
/// The applied index a response reflects.
pub const APPLIED_INDEX: &str = "x-aide-applied-index";
/// The project used when a request names none.
pub const DEFAULT_PROJECT: &str = "default";

/// What a request's metadata says.
#[derive(Debug, Clone)]
pub struct RequestMeta {
    pub write: WriteMeta,
    pub read: ReadOptions,
    /// The accessor id of the caller's API key (empty without keys).
    pub accessor: String,
    /// The caller as the guard admitted it.
    pub caller: crate::auth::Caller,
}

impl RequestMeta {
    /// The project.
    pub fn project(&self) -> &str {
        &self.write.project
    }
}

fn text<'a>(md: &'a MetadataMap, key: &str) -> Result<Option<&'a str>, Status> {
    match md.get(key) {
        None => Ok(None),
        Some(v) => v.to_str().map(|s| Some(s.trim())).map_err(|_| {
            Status::invalid_argument(format!("metadata {key} is not printable ASCII"))
        }),
    }
}

/// Reads and checks the metadata of `req`.
pub fn request_meta<T: prost::Message>(req: &Request<T>) -> Result<RequestMeta, Status> {
    let md = req.metadata();
    let project = match text(md, PROJECT)? {
        None | Some("") => DEFAULT_PROJECT.to_string(),
        Some(p) => p.to_string(),
    };
    validate::project(&project).map_err(|e| Status::invalid_argument(e.to_string()))?;
    let request_id = text(md, REQUEST_ID)?.unwrap_or("").to_string();
    validate::name("request id", &request_id)
        .map_err(|e| Status::invalid_argument(e.to_string()))?;
    // A retry repeats the request exactly; the same id on a different request (another call,
    // project or content) is a new write, not a retry whose first answer would be returned.
    // The call is named by its gRPC path (the guard records it), else by the message type.
    let request_id = if request_id.is_empty() {
        request_id
    } else {
        let mut h = Fnv::default();
        let call = req
            .extensions()
            .get::<crate::auth::Caller>()
            .map(|c| c.operation.clone())
            .filter(|op| !op.is_empty())
            .unwrap_or_else(|| std::any::type_name::<T>().to_string());
        h.write(call.as_bytes());
        h.write(project.as_bytes());
        h.write(&req.get_ref().encode_to_vec());
        format!("{request_id}/{:016x}", h.0)
    };
    let caller = req
        .extensions()
        .get::<crate::auth::Caller>()
        .cloned()
        .unwrap_or_default();
    // "node" is another node forwarding; it is not a key.
    let accessor = Some(caller.accessor.clone())
        .filter(|a| a != "node")
        .unwrap_or_default();
    let min_index = match text(md, MIN_INDEX)? {
        None | Some("") => None,
        Some(n) => Some(n.parse::<u64>().map_err(|_| {
            Status::invalid_argument(format!("metadata {MIN_INDEX} is {n:?}, not a log index"))
        })?),
    };
    let consistency = match text(md, CONSISTENCY)? {
        // A read that names the index it needs (its own last write) and no consistency is
        // served by this node once it has applied that index: no round trip to the leader.
        None | Some("") if min_index.is_some() => Consistency::Stale,
        None | Some("") | Some("linearizable") => Consistency::Linearizable,
        Some("stale") => Consistency::Stale,
        Some(other) => {
            return Err(Status::invalid_argument(format!(
                "metadata {CONSISTENCY} is {other:?}; use \"linearizable\" or \"stale\""
            )))
        }
    };
    Ok(RequestMeta {
        write: WriteMeta {
            project,
            request_id,
            accessor: accessor.clone(),
        },
        read: ReadOptions {
            consistency,
            min_index,
        },
        accessor,
        caller,
    })
}

/// FNV-1a: a hash that every node computes alike.
struct Fnv(u64);

impl Default for Fnv {
    fn default() -> Self {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
}

impl Fnv {
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0 ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3);
        }
        self.0 = (self.0 ^ 0xff).wrapping_mul(0x0100_0000_01b3);
    }
}

/// A response reporting the applied index it reflects.
pub fn respond<T>(body: T, applied_index: u64) -> Response<T> {
    let mut resp = Response::new(body);
    resp.metadata_mut()
        .insert(APPLIED_INDEX, unindexed(applied_index.into()));
    resp
}

/// `value` marked so that HTTP/2 header compression sends it literally instead of adding it
/// to the connection's table. For values that change with every call (request ids, indexes):
/// indexed, each would push the headers that do repeat (project, content type, timeout) out of
/// the table and lengthen the list of same-named entries every later header is compared with.
pub fn unindexed(
    mut value: tonic::metadata::AsciiMetadataValue,
) -> tonic::metadata::AsciiMetadataValue {
    value.set_sensitive(true);
    value
}
