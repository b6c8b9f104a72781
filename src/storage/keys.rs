//! Key encodings of the `state` tree. Every record key starts with a one-byte table tag and the
//! length-prefixed project, so one project's records of one kind form one contiguous range.
//!
//! | tag | record | rest of the key |
//! |---|---|---|
//! | `M` | memory | ULID |
//! | `D` | decision revision | topic, `0x00`, revision number (8 bytes, big-endian) |
//! | `S` | state entry | full key |
//! | `G` | message | id (8 bytes, big-endian) |
//! | `T` | task | id |
//! | `Z` | tombstone | the tag of the deleted record's table, then its key rest |
//! | `q` | the request ids a log entry applied | proposal time (8 bytes), log index (8 bytes) |
//! | `r` | the same, as earlier builds kept them (whole results) | as `q` |
//! | `K` | API key (not per project) | accessor id |
//! | `_` | state machine metadata | name |

/// A table of the `state` tree.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Table {
    Memory,
    Decision,
    State,
    Message,
    Task,
}

impl Table {
    /// The key tag.
    pub fn tag(self) -> u8 {
        match self {
            Table::Memory => b'M',
            Table::Decision => b'D',
            Table::State => b'S',
            Table::Message => b'G',
            Table::Task => b'T',
        }
    }
}

const TOMBSTONE: u8 = b'Z';
const REQUESTS: u8 = b'q';
const REQUESTS_LEGACY: u8 = b'r';
const META: u8 = b'_';
const API_KEY: u8 = b'K';

/// The prefix of every record of `table` in `project`.
pub fn prefix(table: Table, project: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(2 + project.len() + 32);
    k.push(table.tag());
    push_project(&mut k, project);
    k
}

/// The prefix of every record of `table` in every project.
pub fn table_prefix(table: Table) -> Vec<u8> {
    vec![table.tag()]
}

fn push_project(k: &mut Vec<u8>, project: &str) {
    // Projects are at most 128 bytes (checked by validation), so the length fits one byte.
    k.push(project.len().min(255) as u8);
    k.extend_from_slice(&project.as_bytes()[..project.len().min(255)]);
}

/// The key of a record of `table` in `project` whose own key is `rest`.
pub fn record(table: Table, project: &str, rest: &[u8]) -> Vec<u8> {
    let mut k = prefix(table, project);
    k.extend_from_slice(rest);
    k
}

/// Splits a record key into its project and the record's own key.
pub fn split_record(key: &[u8]) -> Option<(&str, &[u8])> {
    let len = *key.get(1)? as usize;
    let project = key.get(2..2 + len)?;
    let rest = key.get(2 + len..)?;
    Some((std::str::from_utf8(project).ok()?, rest))
}

/// The key of a memory.
pub fn memory(project: &str, id: &str) -> Vec<u8> {
    record(Table::Memory, project, id.as_bytes())
}

/// The prefix of every revision of `topic`.
pub fn decision_topic(project: &str, topic: &str) -> Vec<u8> {
    let mut k = record(Table::Decision, project, topic.as_bytes());
    k.push(0);
    k
}

/// The key of one revision of `topic`.
pub fn decision(project: &str, topic: &str, seq: u64) -> Vec<u8> {
    let mut k = decision_topic(project, topic);
    k.extend_from_slice(&seq.to_be_bytes());
    k
}

/// The key of a state entry by its full key.
pub fn state(project: &str, key: &str) -> Vec<u8> {
    record(Table::State, project, key.as_bytes())
}

/// The key of a message.
pub fn message(project: &str, id: u64) -> Vec<u8> {
    record(Table::Message, project, &id.to_be_bytes())
}

/// The key of a task.
pub fn task(project: &str, id: &str) -> Vec<u8> {
    record(Table::Task, project, id.as_bytes())
}

/// The tombstone left by deleting the record at `record_key`.
pub fn tombstone(record_key: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(record_key.len() + 1);
    k.push(TOMBSTONE);
    k.extend_from_slice(record_key);
    k
}

/// The record of the requests the log entry at `log_index`, proposed at `now`, applied.
/// Keys sort by proposal time, so the oldest are dropped first.
pub fn requests(now: i64, log_index: u64) -> [u8; REQUESTS_KEY_LEN] {
    let mut k = [0u8; REQUESTS_KEY_LEN];
    k[0] = REQUESTS;
    k[1..9].copy_from_slice(&(now as u64 ^ (1 << 63)).to_be_bytes());
    k[9..].copy_from_slice(&log_index.to_be_bytes());
    k
}

/// The length of a [`requests`] key.
pub const REQUESTS_KEY_LEN: usize = 17;

/// The prefixes of request records: of earlier builds, then of this one.
pub fn requests_prefixes() -> [Vec<u8>; 2] {
    [vec![REQUESTS_LEGACY], vec![REQUESTS]]
}

/// Whether a request record key is of an earlier build, which kept whole results.
pub fn requests_is_legacy(key: &[u8]) -> bool {
    key.first() == Some(&REQUESTS_LEGACY)
}

/// The proposal time in a [`requests`] key.
pub fn requests_time(key: &[u8]) -> Option<i64> {
    let t: [u8; 8] = key.get(1..9)?.try_into().ok()?;
    Some((u64::from_be_bytes(t) ^ (1 << 63)) as i64)
}

/// The key of an API key record.
pub fn api_key(accessor: &str) -> Vec<u8> {
    let mut k = vec![API_KEY];
    k.extend_from_slice(accessor.as_bytes());
    k
}

/// The prefix of every API key record.
pub fn api_keys_prefix() -> Vec<u8> {
    vec![API_KEY]
}

/// A state machine metadata key.
pub fn meta(name: &str) -> Vec<u8> {
    let mut k = vec![META];
    k.extend_from_slice(name.as_bytes());
    k
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn projects_do_not_share_ranges() {
        let a = memory("ab", "X");
        let b = memory("a", "bX");
        assert_ne!(a, b);
        assert!(!a.starts_with(&prefix(Table::Memory, "a")));
        assert_eq!(split_record(&a), Some(("ab", &b"X"[..])));
    }

    #[test]
    fn a_topic_prefix_does_not_match_a_longer_topic() {
        let k = decision("p", "db2", 7);
        assert!(!k.starts_with(&decision_topic("p", "db")));
        assert!(k.starts_with(&decision_topic("p", "db2")));
    }

    #[test]
    fn request_record_keys_sort_by_time_and_read_back() {
        let early = requests(-5, 9);
        let late = requests(10, 2);
        assert!(early < late);
        assert_eq!(requests_time(&late), Some(10));
    }
}
