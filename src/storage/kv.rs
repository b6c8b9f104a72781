//! The small key-value trait the state machine and the read path are written against, its
//! implementation on a sled tree, and [`Txn`]: the writes of one apply, visible to the reads
//! that follow them, over the writes of earlier applies not yet in sled; the state machine
//! commits them to sled together in one atomic batch.

use super::StoreError;
use std::collections::BTreeMap;
use std::ops::ControlFlow;

/// Called for each entry of a scan; returns whether to go on.
pub type Visit<'a> = &'a mut dyn FnMut(&[u8], &[u8]) -> Result<ControlFlow<()>, StoreError>;

/// Reads from an ordered key-value store.
pub trait KvRead {
    /// The value at `key`.
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError>;

    /// Visits the entries whose key starts with `prefix`, in key order (or reverse), until
    /// `visit` breaks.
    fn scan(&self, prefix: &[u8], reverse: bool, visit: Visit<'_>) -> Result<(), StoreError>;
}

/// Writes to an ordered key-value store.
pub trait KvWrite: KvRead {
    fn put(&mut self, key: Vec<u8>, value: Vec<u8>);
    fn delete(&mut self, key: Vec<u8>);
}

impl KvRead for sled::Tree {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(sled::Tree::get(self, key)?.map(|v| v.to_vec()))
    }

    fn scan(&self, prefix: &[u8], reverse: bool, visit: Visit<'_>) -> Result<(), StoreError> {
        let iter = self.scan_prefix(prefix);
        if reverse {
            for item in iter.rev() {
                let (k, v) = item?;
                if visit(&k, &v)?.is_break() {
                    break;
                }
            }
        } else {
            for item in iter {
                let (k, v) = item?;
                if visit(&k, &v)?.is_break() {
                    break;
                }
            }
        }
        Ok(())
    }
}

/// Pending writes over earlier writes not yet in a sled tree (`below`), over the tree. Reads
/// see the pending writes first, then the earlier ones.
pub struct Txn<'a> {
    base: &'a sled::Tree,
    below: Option<&'a Writes>,
    overlay: Writes,
}

impl<'a> Txn<'a> {
    /// An empty set of writes over `base`.
    pub fn new(base: &'a sled::Tree) -> Self {
        Txn {
            base,
            below: None,
            overlay: BTreeMap::new(),
        }
    }

    /// Whether nothing has been written.
    pub fn is_empty(&self) -> bool {
        self.overlay.is_empty()
    }

    /// An empty set of writes over `below`, earlier writes not yet in `base`, over `base`.
    pub fn over(base: &'a sled::Tree, below: &'a Writes) -> Self {
        Txn {
            base,
            below: Some(below),
            overlay: BTreeMap::new(),
        }
    }

    /// The writes made through this (not those below them).
    pub fn into_writes(self) -> Writes {
        self.overlay
    }

    /// The writes as one sled batch.
    pub fn into_batch(self) -> sled::Batch {
        batch_of(self.overlay)
    }
}

/// Writes not yet in the store: a value, or `None` for a delete.
pub type Writes = BTreeMap<Vec<u8>, Option<Vec<u8>>>;

/// `writes` as one sled batch.
pub fn batch_of(writes: Writes) -> sled::Batch {
    let mut batch = sled::Batch::default();
    for (k, v) in writes {
        match v {
            Some(v) => batch.insert(k, v),
            None => batch.remove(k),
        }
    }
    batch
}

impl KvRead for Txn<'_> {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        match self
            .overlay
            .get(key)
            .or_else(|| self.below.and_then(|b| b.get(key)))
        {
            Some(v) => Ok(v.clone()),
            None => KvRead::get(self.base, key),
        }
    }

    fn scan(&self, prefix: &[u8], reverse: bool, visit: Visit<'_>) -> Result<(), StoreError> {
        let base = self.base.scan_prefix(prefix);
        if let Some(below) = self.below {
            // The earlier writes in range, with this one's in their place where both wrote.
            let mut pending: BTreeMap<&Vec<u8>, &Option<Vec<u8>>> =
                in_range(below, prefix).collect();
            pending.extend(in_range(&self.overlay, prefix));
            return if reverse {
                merge(base.rev(), pending.into_iter().rev(), true, visit)
            } else {
                merge(base, pending.into_iter(), false, visit)
            };
        }
        let pending = in_range(&self.overlay, prefix);
        if reverse {
            let pending: Vec<_> = pending.collect();
            merge(base.rev(), pending.into_iter().rev(), true, visit)
        } else {
            merge(base, pending, false, visit)
        }
    }
}

/// The writes of `w` whose key starts with `prefix`, in key order.
fn in_range<'w>(
    w: &'w Writes,
    prefix: &'w [u8],
) -> impl Iterator<Item = (&'w Vec<u8>, &'w Option<Vec<u8>>)> + 'w {
    w.range(prefix.to_vec()..)
        .take_while(move |(k, _)| k.starts_with(prefix))
}

/// Visits the union of `base` and `pending` in order (descending when `reverse`); a pending
/// write hides the base entry with the same key, and a pending delete hides it altogether.
fn merge<'p>(
    base: impl Iterator<Item = sled::Result<(sled::IVec, sled::IVec)>>,
    pending: impl Iterator<Item = (&'p Vec<u8>, &'p Option<Vec<u8>>)>,
    reverse: bool,
    visit: Visit<'_>,
) -> Result<(), StoreError> {
    use std::cmp::Ordering;
    let mut base = base.peekable();
    let mut pending = pending.peekable();
    loop {
        let order = match (base.peek(), pending.peek()) {
            (None, None) => return Ok(()),
            (Some(_), None) => Ordering::Less,
            (None, Some(_)) => Ordering::Greater,
            (Some(Err(_)), Some(_)) => Ordering::Less,
            (Some(Ok((bk, _))), Some((pk, _))) => {
                let o = bk.as_ref().cmp(pk.as_slice());
                if reverse {
                    o.reverse()
                } else {
                    o
                }
            }
        };
        let flow = match order {
            Ordering::Less => match base.next() {
                Some(item) => {
                    let (k, v) = item?;
                    visit(&k, &v)?
                }
                None => return Ok(()),
            },
            Ordering::Equal | Ordering::Greater => {
                if order == Ordering::Equal {
                    base.next();
                }
                match pending.next() {
                    Some((k, Some(v))) => visit(k, v)?,
                    _ => ControlFlow::Continue(()),
                }
            }
        };
        if flow.is_break() {
            return Ok(());
        }
    }
}

impl KvWrite for Txn<'_> {
    fn put(&mut self, key: Vec<u8>, value: Vec<u8>) {
        self.overlay.insert(key, Some(value));
    }

    fn delete(&mut self, key: Vec<u8>) {
        self.overlay.insert(key, None);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn collect(r: &dyn KvRead, prefix: &[u8], reverse: bool) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        r.scan(prefix, reverse, &mut |k, _| {
            out.push(k.to_vec());
            Ok(ControlFlow::Continue(()))
        })
        .unwrap();
        out
    }

    #[test]
    fn pending_writes_are_seen_by_reads_and_scans() {
        let db = sled::Config::new().temporary(true).open().unwrap();
        let tree = db.open_tree("t").unwrap();
        tree.insert(b"a1", b"x".to_vec()).unwrap();
        tree.insert(b"a2", b"x".to_vec()).unwrap();
        let mut txn = Txn::new(&tree);
        txn.delete(b"a1".to_vec());
        txn.put(b"a3".to_vec(), b"y".to_vec());
        assert_eq!(txn.get(b"a1").unwrap(), None);
        assert_eq!(txn.get(b"a3").unwrap(), Some(b"y".to_vec()));
        assert_eq!(
            collect(&txn, b"a", false),
            vec![b"a2".to_vec(), b"a3".to_vec()]
        );
        assert_eq!(
            collect(&txn, b"a", true),
            vec![b"a3".to_vec(), b"a2".to_vec()]
        );
        // Nothing reached sled until the batch is applied.
        assert!(tree.get(b"a3").unwrap().is_none());
        tree.apply_batch(txn.into_batch()).unwrap();
        assert_eq!(
            collect(&tree, b"a", false),
            vec![b"a2".to_vec(), b"a3".to_vec()]
        );
    }

    #[test]
    fn writes_over_earlier_unwritten_ones_see_both_and_keep_them_apart() {
        let db = sled::Config::new().temporary(true).open().unwrap();
        let tree = db.open_tree("t").unwrap();
        for k in ["a1", "a2", "a3"] {
            tree.insert(k, b"stored".to_vec()).unwrap();
        }
        let mut earlier = Txn::new(&tree);
        earlier.delete(b"a1".to_vec());
        earlier.put(b"a2".to_vec(), b"earlier".to_vec());
        earlier.put(b"a4".to_vec(), b"earlier".to_vec());
        let earlier = earlier.into_writes();
        let mut txn = Txn::over(&tree, &earlier);
        assert_eq!(txn.get(b"a1").unwrap(), None, "an earlier delete");
        assert_eq!(txn.get(b"a2").unwrap(), Some(b"earlier".to_vec()));
        assert_eq!(txn.get(b"a3").unwrap(), Some(b"stored".to_vec()));
        txn.put(b"a1".to_vec(), b"now".to_vec());
        txn.delete(b"a4".to_vec());
        assert_eq!(txn.get(b"a1").unwrap(), Some(b"now".to_vec()));
        assert_eq!(txn.get(b"a4").unwrap(), None);
        let keys = |v: &[&str]| v.iter().map(|k| k.as_bytes().to_vec()).collect::<Vec<_>>();
        assert_eq!(collect(&txn, b"a", false), keys(&["a1", "a2", "a3"]));
        assert_eq!(collect(&txn, b"a", true), keys(&["a3", "a2", "a1"]));
        // The earlier writes are untouched: dropping this apply's leaves them to be written.
        let mine = txn.into_writes();
        assert_eq!(mine.len(), 2);
        assert_eq!(
            earlier.get(b"a4".as_slice()),
            Some(&Some(b"earlier".to_vec()))
        );
    }
}
