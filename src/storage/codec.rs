//! How records are encoded on disk and in the Raft log: a format byte, then bincode.

use super::StoreError;
use serde::{de::DeserializeOwned, Serialize};

const FORMAT: u8 = 1;

/// The most a decoded value may claim: a length prefix asking for more is an error, not an
/// allocation (damaged or hostile bytes could otherwise abort the process). Twice the largest
/// Raft message.
const DECODE_LIMIT: usize = 128 * 1024 * 1024;

/// Encodes `value`, prefixed with the format byte.
pub fn encode<T: Serialize + ?Sized>(value: &T) -> Vec<u8> {
    let mut out = vec![FORMAT];
    // Encoding our own types into a Vec cannot fail: they have no maps with non-string keys
    // and no unsupported serde features.
    bincode::serde::encode_into_std_write(value, &mut out, bincode::config::standard())
        .expect("bincode encoding into a Vec");
    out
}

/// Decodes bytes written by [`encode`].
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, StoreError> {
    match bytes.split_first() {
        Some((&FORMAT, rest)) => {
            let (value, used) = bincode::serde::decode_from_slice(
                rest,
                bincode::config::standard().with_limit::<DECODE_LIMIT>(),
            )
            .map_err(|e| StoreError::Codec(e.to_string()))?;
            if used != rest.len() {
                return Err(StoreError::Codec(format!(
                    "{} trailing bytes after the record",
                    rest.len() - used
                )));
            }
            Ok(value)
        }
        Some((other, _)) => Err(StoreError::Codec(format!("unknown record format {other}"))),
        None => Err(StoreError::Codec("empty record".to_string())),
    }
}
