//! The domain types every layer shares: memories, decisions, state entries, messages, tasks and API keys,
//! as they are stored and replicated. No I/O happens here.

mod apikey;
mod decision;
mod memory;
mod message;
mod state;
mod task;

pub use apikey::{ApiKey, Role, ALL_PROJECTS};
pub use decision::Decision;
pub use memory::{Category, Memory};
pub use message::{Message, DEFAULT_MESSAGE_TTL_SECS};
pub use state::{scoped_key, StateEntry};
pub use task::{Task, TaskStatus};

use serde::{Deserialize, Serialize};

/// Nanoseconds since the Unix epoch. Every stored time uses it.
pub type UnixNanos = i64;

/// The version stamp every stored record carries: a hybrid logical clock value and the id of the
/// store that wrote it, both fixed when the write was proposed. Merges with an offline store
/// compare stamps (last writer wins for memories and state keys).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
pub struct Stamp {
    /// Hybrid logical clock: wall-clock milliseconds in the high 48 bits, a counter in the low 16.
    pub hlc: u64,
    /// The id of the store that proposed the write.
    pub origin: u64,
}

/// What remains of a deleted record: its stamp, so a merge can tell a delete from an absence.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tombstone {
    /// The stamp of the delete.
    pub stamp: Stamp,
}
