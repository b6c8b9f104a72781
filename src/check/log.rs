//! Append-only logs: a decision topic's history, the stream of broadcast messages.
//!
//! A log is checked against what clients appended (acknowledged, or of unknown outcome), the
//! reads of the whole log made while they did, and the log as it is stored at the end:
//! - every acknowledged append is stored exactly once; one of unknown outcome at most once; nothing
//!   is stored that nobody appended;
//! - an append acknowledged before another was invoked comes before it;
//! - every read is a prefix of the final log (nothing removed, replaced or reordered), holds
//!   every append acknowledged before the read was invoked, and none invoked after it returned.

use std::collections::HashMap;

/// One append: its value, when it was invoked, and when it returned (`None`: outcome unknown).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Append {
    pub value: String,
    pub invoked: u64,
    pub returned: Option<u64>,
}

/// One read of the whole log, oldest first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogRead {
    pub invoked: u64,
    pub returned: u64,
    pub values: Vec<String>,
}

/// Checks one log; each problem found is one sentence.
pub fn append_log(appends: &[Append], reads: &[LogRead], stored: &[String]) -> Vec<String> {
    let mut problems = Vec::new();
    let mut position: HashMap<&str, usize> = HashMap::new();
    for (i, v) in stored.iter().enumerate() {
        if position.insert(v.as_str(), i).is_some() {
            problems.push(format!("{v:?} is stored more than once"));
        }
    }
    let by_value: HashMap<&str, &Append> = appends.iter().map(|a| (a.value.as_str(), a)).collect();
    for v in stored {
        if !by_value.contains_key(v.as_str()) {
            problems.push(format!("{v:?} is stored but nobody appended it"));
        }
    }
    for a in appends {
        if a.returned.is_some() && !position.contains_key(a.value.as_str()) {
            problems.push(format!("{:?} was acknowledged but is not stored", a.value));
        }
    }
    // Real-time order among what is stored.
    for a in appends {
        let (Some(done), Some(&pa)) = (a.returned, position.get(a.value.as_str())) else {
            continue;
        };
        for b in appends {
            if b.invoked > done {
                if let Some(&pb) = position.get(b.value.as_str()) {
                    if pb < pa {
                        problems.push(format!(
                            "{:?} was appended after {:?} was acknowledged, yet comes before it",
                            b.value, a.value
                        ));
                    }
                }
            }
        }
    }
    for r in reads {
        if r.values.len() > stored.len() || r.values[..] != stored[..r.values.len()] {
            problems.push(format!(
                "a read at {} returned {:?}, which is not a prefix of the final log",
                r.invoked, r.values
            ));
            continue;
        }
        for a in appends {
            let seen = r.values.contains(&a.value);
            if a.returned.is_some_and(|t| t < r.invoked) && !seen {
                problems.push(format!(
                    "a read at {} missed {:?}, acknowledged before it",
                    r.invoked, a.value
                ));
            }
            if a.invoked > r.returned && seen {
                problems.push(format!(
                    "a read at {} saw {:?}, appended after it returned",
                    r.invoked, a.value
                ));
            }
        }
    }
    problems
}
