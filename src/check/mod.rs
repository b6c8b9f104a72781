//! Checking recorded histories of client operations, for the fault-injection runs.
//!
//! [`register`] decides whether the operations on one state key are linearizable: whether some
//! order of them, consistent with real time (an operation that returned before another was
//! invoked comes first), gives every read the value of the last write before it. The search is
//! Wing and Gong's: repeatedly pick an operation that may go first among those left, apply it to
//! a model register, and backtrack on a contradiction; states already explored (which operations
//! are placed, and the register's value) are remembered, as Lowe proposed, so that the search
//! stays fast on long histories. Keys are independent, so a history is checked key by key.
//!
//! An operation whose outcome is unknown (the client timed out) may have taken effect at any
//! time after it was invoked, or never: it is given no return time, and a read with no result
//! constrains nothing and is left out.

use std::collections::{BTreeMap, HashSet};

/// What a client did to a register.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum RegisterOp {
    /// Set the value.
    Write(String),
    /// Read, and saw this value (`None`: the key was not set).
    Read(Option<String>),
}

/// One operation of a history: when it was invoked and returned (any monotonic clock), and
/// what it did. `returned` is `None` when the outcome is unknown.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Operation {
    pub client: u64,
    pub invoked: u64,
    pub returned: Option<u64>,
    pub op: RegisterOp,
}

/// Why a history is not linearizable: the key, and its operations in invocation order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    pub key: String,
    pub operations: Vec<Operation>,
}

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "key {:?}: no order of these {} operations explains the reads",
            self.key,
            self.operations.len()
        )?;
        for o in &self.operations {
            let ret = o
                .returned
                .map_or_else(|| "unknown".to_string(), |r| r.to_string());
            writeln!(
                f,
                "  client {} [{} .. {}] {:?}",
                o.client, o.invoked, ret, o.op
            )?;
        }
        Ok(())
    }
}

/// Checks each key's operations; the first key that is not linearizable is returned, with the
/// shortest prefix of its operations (in invocation order) that already is not.
pub fn registers(
    history: &BTreeMap<String, Vec<Operation>>,
    initial: Option<String>,
) -> Result<(), Violation> {
    for (key, ops) in history {
        if !register(ops, initial.clone()) {
            return Err(Violation {
                key: key.clone(),
                operations: smallest_failing_prefix(ops, initial.clone()),
            });
        }
    }
    Ok(())
}

/// A short prefix, in invocation order, that is not linearizable: found by bisection, which
/// assumes that a failing prefix stays failing as it grows. That holds nearly always but not
/// always (a read may be explained by a write invoked after the cut), so the result is checked,
/// and the whole history returned when the bisection went wrong.
fn smallest_failing_prefix(ops: &[Operation], initial: Option<String>) -> Vec<Operation> {
    let mut sorted = ops.to_vec();
    sorted.sort_by_key(|o| o.invoked);
    let (mut lo, mut hi) = (1, sorted.len());
    while lo < hi {
        let mid = (lo + hi) / 2;
        if register(&sorted[..mid], initial.clone()) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    if register(&sorted[..hi], initial) {
        return sorted;
    }
    sorted.truncate(hi);
    sorted
}

/// Whether the operations on one register, starting from `initial`, are linearizable.
pub fn register(ops: &[Operation], initial: Option<String>) -> bool {
    // Reads with no result constrain nothing.
    let ops: Vec<&Operation> = ops
        .iter()
        .filter(|o| !(o.returned.is_none() && matches!(o.op, RegisterOp::Read(_))))
        .collect();
    let n = ops.len();
    let ret = |i: usize| ops[i].returned.unwrap_or(u64::MAX);
    let mut search = Search {
        placed: vec![0u64; n.div_ceil(64)],
        seen: HashSet::new(),
    };
    search.run(&ops, &ret, initial)
}

struct Search {
    /// Which operations are placed, as a bit set.
    placed: Vec<u64>,
    /// States already explored and found to lead nowhere.
    seen: HashSet<(Vec<u64>, Option<String>)>,
}

impl Search {
    fn is_placed(&self, i: usize) -> bool {
        self.placed[i / 64] & (1 << (i % 64)) != 0
    }

    fn flip(&mut self, i: usize) {
        self.placed[i / 64] ^= 1 << (i % 64);
    }

    /// Depth first: places one more operation in every way possible from here.
    fn run(
        &mut self,
        ops: &[&Operation],
        ret: &dyn Fn(usize) -> u64,
        value: Option<String>,
    ) -> bool {
        let left: Vec<usize> = (0..ops.len()).filter(|&i| !self.is_placed(i)).collect();
        // Done when every operation that returned is placed: the unknown ones may never have
        // taken effect.
        if left.iter().all(|&i| ops[i].returned.is_none()) {
            return true;
        }
        if !self.seen.insert((self.placed.clone(), value.clone())) {
            return false;
        }
        // An operation may go next only if nothing left returned before it was invoked.
        let first_return = left.iter().map(|&i| ret(i)).min().unwrap_or(u64::MAX);
        for &i in &left {
            if ops[i].invoked > first_return {
                continue;
            }
            let next = match &ops[i].op {
                RegisterOp::Write(v) => Some(v.clone()),
                RegisterOp::Read(seen) if *seen == value => value.clone(),
                RegisterOp::Read(_) => continue,
            };
            self.flip(i);
            let found = self.run(ops, ret, next);
            self.flip(i);
            if found {
                return true;
            }
        }
        false
    }
}

#[cfg(test)]
mod tests;
