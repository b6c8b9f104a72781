//! `aide.meta`: the identity of a data directory and the mark that it is one.

use super::StoreError;
use serde::{Deserialize, Serialize};
use std::path::Path;

const META_FILE: &str = "aide.meta";
const FORMAT: u32 = 1;

/// The identity of a data directory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoreMeta {
    /// The on-disk format version.
    pub format: u32,
    /// A random id naming this store in version stamps.
    pub store_id: u64,
    /// The Raft node id, once the node has one.
    pub node_id: Option<u64>,
}

impl StoreMeta {
    /// Reads `dir/aide.meta`, or creates the directory and the file when `dir` is new or empty.
    pub(super) fn load_or_create(dir: &Path) -> Result<StoreMeta, StoreError> {
        let path = dir.join(META_FILE);
        match std::fs::read(&path) {
            Ok(bytes) => {
                let meta: StoreMeta =
                    serde_json::from_slice(&bytes).map_err(|e| StoreError::Damaged {
                        dir: dir.to_path_buf(),
                        problem: format!("{} is not valid ({e})", path.display()),
                    })?;
                if meta.format != FORMAT {
                    return Err(StoreError::Damaged {
                        dir: dir.to_path_buf(),
                        problem: format!(
                            "format {} is not supported by this aide (it reads format {FORMAT})",
                            meta.format
                        ),
                    });
                }
                Ok(meta)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                if dir.exists() {
                    let mut entries = std::fs::read_dir(dir).map_err(|e| StoreError::io(dir, e))?;
                    if entries.next().is_some() {
                        return Err(StoreError::NotAnAideDir(dir.to_path_buf()));
                    }
                }
                create_private_dir(dir)?;
                let meta = StoreMeta {
                    format: FORMAT,
                    store_id: ulid::Ulid::new().random() as u64,
                    node_id: None,
                };
                meta.save(dir)?;
                Ok(meta)
            }
            Err(e) => Err(StoreError::io(&path, e)),
        }
    }

    /// Writes the file atomically (a temporary file renamed over it).
    pub(super) fn save(&self, dir: &Path) -> Result<(), StoreError> {
        let path = dir.join(META_FILE);
        let tmp = dir.join(format!("{META_FILE}.tmp"));
        let bytes =
            serde_json::to_vec_pretty(self).map_err(|e| StoreError::Codec(e.to_string()))?;
        std::fs::write(&tmp, bytes).map_err(|e| StoreError::io(&tmp, e))?;
        std::fs::rename(&tmp, &path).map_err(|e| StoreError::io(&path, e))?;
        Ok(())
    }
}

/// Creates `dir` (and parents) readable by the owner only.
pub(crate) fn create_private_dir(dir: &Path) -> Result<(), StoreError> {
    std::fs::create_dir_all(dir).map_err(|e| StoreError::io(dir, e))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
            .map_err(|e| StoreError::io(dir, e))?;
    }
    Ok(())
}
