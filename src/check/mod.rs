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

mod log;
pub use log::{append_log, Append, LogRead};

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
    // Depth first, with an explicit stack: a history may hold thousands of operations per key.
    let mut placed = vec![0u64; n.div_ceil(64)];
    let is_placed = |placed: &[u64], i: usize| placed[i / 64] & (1 << (i % 64)) != 0;
    let flip = |placed: &mut [u64], i: usize| placed[i / 64] ^= 1 << (i % 64);
    // States already explored (which operations are placed, and the value) lead nowhere.
    let mut seen: HashSet<(Vec<u64>, Option<String>)> = HashSet::new();
    let mut value = initial;
    let mut stack: Vec<Frame> = Vec::new();
    let mut entered = true;
    loop {
        if entered {
            let left: Vec<usize> = (0..n).filter(|&i| !is_placed(&placed, i)).collect();
            // Done when every operation that returned is placed: the unknown ones may never
            // have taken effect.
            if left.iter().all(|&i| ops[i].returned.is_none()) {
                return true;
            }
            if seen.insert((placed.clone(), value.clone())) {
                // An operation may go next only if nothing left returned before it was invoked.
                let first_return = left.iter().map(|&i| ret(i)).min().unwrap_or(u64::MAX);
                let candidates = left
                    .into_iter()
                    .filter(|&i| ops[i].invoked <= first_return)
                    .collect();
                stack.push(Frame {
                    candidates,
                    next: 0,
                    before: value.clone(),
                    chosen: None,
                });
            }
        }
        // Move the innermost choice on to its next candidate, or give it up.
        let Some(top) = stack.last_mut() else {
            return false;
        };
        if let Some(c) = top.chosen.take() {
            flip(&mut placed, c);
            value = top.before.clone();
        }
        entered = false;
        while top.next < top.candidates.len() {
            let c = top.candidates[top.next];
            top.next += 1;
            let after = match &ops[c].op {
                RegisterOp::Write(v) => Some(v.clone()),
                RegisterOp::Read(read) if *read == value => value.clone(),
                RegisterOp::Read(_) => continue,
            };
            flip(&mut placed, c);
            top.chosen = Some(c);
            value = after;
            entered = true;
            break;
        }
        if !entered {
            stack.pop();
        }
    }
}

/// One choice point of the search: the operations that may go next, and which is tried now.
struct Frame {
    candidates: Vec<usize>,
    next: usize,
    /// The register's value before this choice.
    before: Option<String>,
    chosen: Option<usize>,
}

#[cfg(test)]
mod tests;
