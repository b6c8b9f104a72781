//! Snapshots of the `state` tree: a consistent copy of every key and value, its encoding, the
//! file that keeps the newest one, and installing one in place of the current state.

use super::{meta::create_private_dir, StoreError};
use std::path::{Path, PathBuf};

const MAGIC: &[u8; 8] = b"AIDESNAP";
/// 2: request records under tag `q` (see `apply::requests`), which a build that writes version 1
/// would not read. Version 1 snapshots are still installed.
const VERSION: u8 = 2;
const DATA_FILE: &str = "current.snap";
const META_FILE: &str = "current.meta";

/// Every key and value of a tree, in key order.
pub type Pairs = Vec<(Vec<u8>, Vec<u8>)>;

/// Copies every entry of `tree`. Call it where no write is in flight to get a consistent view.
pub fn copy_tree(tree: &sled::Tree) -> Result<Pairs, StoreError> {
    // Not `tree.len()` first: sled counts by a scan of the whole tree.
    let mut out = Vec::new();
    for item in tree.iter() {
        let (k, v) = item?;
        out.push((k.to_vec(), v.to_vec()));
    }
    Ok(out)
}

/// Encodes a snapshot: a magic header, a version byte, then the pairs.
pub fn encode(pairs: &Pairs) -> Vec<u8> {
    let mut out = Vec::with_capacity(
        16 + pairs
            .iter()
            .map(|(k, v)| k.len() + v.len() + 8)
            .sum::<usize>(),
    );
    out.extend_from_slice(MAGIC);
    out.push(VERSION);
    out.extend_from_slice(&(pairs.len() as u64).to_le_bytes());
    for (k, v) in pairs {
        out.extend_from_slice(&(k.len() as u32).to_le_bytes());
        out.extend_from_slice(k);
        out.extend_from_slice(&(v.len() as u32).to_le_bytes());
        out.extend_from_slice(v);
    }
    out
}

/// Decodes [`encode`]'s output, refusing anything truncated or foreign.
pub fn decode(bytes: &[u8]) -> Result<Pairs, StoreError> {
    let bad = |why: &str| StoreError::Codec(format!("snapshot: {why}"));
    let rest = bytes
        .strip_prefix(MAGIC.as_slice())
        .ok_or_else(|| bad("not an aide snapshot"))?;
    let (&version, mut rest) = rest.split_first().ok_or_else(|| bad("truncated"))?;
    if version != VERSION && version != 1 {
        return Err(bad(&format!("unknown version {version}")));
    }
    let mut take = |n: usize| -> Result<&[u8], StoreError> {
        if rest.len() < n {
            return Err(bad("truncated"));
        }
        let (head, tail) = rest.split_at(n);
        rest = tail;
        Ok(head)
    };
    let count = u64::from_le_bytes(take(8)?.try_into().map_err(|_| bad("truncated"))?) as usize;
    let mut pairs = Vec::with_capacity(count.min(1 << 20));
    for _ in 0..count {
        let klen = u32::from_le_bytes(take(4)?.try_into().map_err(|_| bad("truncated"))?) as usize;
        let k = take(klen)?.to_vec();
        let vlen = u32::from_le_bytes(take(4)?.try_into().map_err(|_| bad("truncated"))?) as usize;
        let v = take(vlen)?.to_vec();
        pairs.push((k, v));
    }
    if !rest.is_empty() {
        return Err(bad("trailing bytes"));
    }
    Ok(pairs)
}

/// Replaces every entry of `tree` with `pairs`, atomically, then flushes.
pub fn replace_tree(db_tree: &sled::Tree, pairs: Pairs) -> Result<(), StoreError> {
    let mut batch = sled::Batch::default();
    let incoming: std::collections::HashSet<&[u8]> =
        pairs.iter().map(|(k, _)| k.as_slice()).collect();
    for item in db_tree.iter().keys() {
        let k = item?;
        if !incoming.contains(k.as_ref()) {
            batch.remove(k);
        }
    }
    for (k, v) in &pairs {
        batch.insert(k.as_slice(), v.as_slice());
    }
    db_tree.apply_batch(batch)?;
    db_tree.flush()?;
    Ok(())
}

/// A snapshot as saved: its metadata (JSON) and its data.
pub struct SavedSnapshot {
    pub meta: Vec<u8>,
    pub data: Vec<u8>,
}

/// The files of the newest snapshot in a directory.
pub struct SnapshotFiles {
    dir: PathBuf,
    /// One save at a time (a snapshot built here and one installed from the leader may be
    /// saved at once), and the log index of the last one saved.
    saved: std::sync::Mutex<Option<u64>>,
}

impl SnapshotFiles {
    pub fn new(dir: PathBuf) -> Self {
        SnapshotFiles {
            dir,
            saved: Default::default(),
        }
    }

    /// Saves the metadata (JSON) and data of a snapshot up to log index `index`, replacing the
    /// previous one atomically enough: the data is renamed into place before the metadata that
    /// names it. A snapshot older than the one saved last is not saved (false).
    pub fn save(&self, index: u64, meta_json: &[u8], data: &[u8]) -> Result<bool, StoreError> {
        let mut saved = self.saved.lock().unwrap_or_else(|p| p.into_inner());
        if saved.is_some_and(|newest| newest > index) {
            return Ok(false);
        }
        create_private_dir(&self.dir)?;
        let write = |name: &str, bytes: &[u8]| -> Result<(), StoreError> {
            let tmp = self.dir.join(format!("{name}.tmp"));
            let path = self.dir.join(name);
            std::fs::write(&tmp, bytes).map_err(|e| StoreError::io(&tmp, e))?;
            let f = std::fs::File::open(&tmp).map_err(|e| StoreError::io(&tmp, e))?;
            f.sync_all().map_err(|e| StoreError::io(&tmp, e))?;
            std::fs::rename(&tmp, &path).map_err(|e| StoreError::io(&path, e))
        };
        write(META_FILE, b"")?;
        write(DATA_FILE, data)?;
        write(META_FILE, meta_json)?;
        *saved = Some(index);
        Ok(true)
    }

    /// The newest snapshot's metadata and data, if there is a complete one.
    pub fn load(&self) -> Result<Option<SavedSnapshot>, StoreError> {
        let read = |p: &Path| match std::fs::read(p) {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(StoreError::io(p, e)),
        };
        let Some(meta) = read(&self.dir.join(META_FILE))? else {
            return Ok(None);
        };
        if meta.is_empty() {
            return Ok(None);
        }
        Ok(read(&self.dir.join(DATA_FILE))?.map(|data| SavedSnapshot { meta, data }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_older_snapshot_never_replaces_a_newer_one() {
        let dir = tempfile::tempdir().unwrap();
        let files = SnapshotFiles::new(dir.path().join("snapshots"));
        assert!(files.save(10, b"{\"at\":10}", b"ten").unwrap());
        // Built from a copy taken before a newer snapshot was installed: dropped.
        assert!(!files.save(5, b"{\"at\":5}", b"five").unwrap());
        let saved = files.load().unwrap().unwrap();
        assert_eq!(
            (saved.meta.as_slice(), saved.data.as_slice()),
            (&b"{\"at\":10}"[..], &b"ten"[..])
        );
        assert!(files.save(12, b"{\"at\":12}", b"twelve").unwrap());
        assert_eq!(files.load().unwrap().unwrap().data, b"twelve");
    }

    #[test]
    fn a_snapshot_round_trips_and_damage_is_refused() {
        let pairs: Pairs = vec![(b"a".to_vec(), b"1".to_vec()), (b"b".to_vec(), Vec::new())];
        let bytes = encode(&pairs);
        assert_eq!(decode(&bytes).unwrap(), pairs);
        assert!(decode(&bytes[..bytes.len() - 1]).is_err());
        assert!(decode(b"not a snapshot").is_err());
        // A version 1 snapshot (of an earlier build) still installs; an unknown version does not.
        let mut v1 = bytes.clone();
        v1[MAGIC.len()] = 1;
        assert_eq!(decode(&v1).unwrap(), pairs);
        let mut v9 = bytes;
        v9[MAGIC.len()] = 9;
        let err = decode(&v9).unwrap_err().to_string();
        assert!(err.contains("unknown version 9"), "{err}");
    }

    #[test]
    fn replacing_a_tree_leaves_exactly_the_snapshot() {
        let db = sled::Config::new().temporary(true).open().unwrap();
        let tree = db.open_tree("t").unwrap();
        tree.insert(b"old", b"x".to_vec()).unwrap();
        tree.insert(b"kept", b"x".to_vec()).unwrap();
        replace_tree(
            &tree,
            vec![
                (b"kept".to_vec(), b"y".to_vec()),
                (b"new".to_vec(), b"z".to_vec()),
            ],
        )
        .unwrap();
        assert_eq!(
            copy_tree(&tree).unwrap(),
            vec![
                (b"kept".to_vec(), b"y".to_vec()),
                (b"new".to_vec(), b"z".to_vec())
            ]
        );
    }
}
