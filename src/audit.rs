//! The audit log: one JSON line per write, refused request, membership change and key change,
//! in `<data dir>/audit.log` (owner-readable only), rotated at [`MAX_BYTES`] into `audit.log.1`
//! .. `audit.log.<KEEP>`. A line names the key by its accessor id, never by its secret.
//! Lines are buffered and written out every [`FLUSH_EVERY`] (and at rotation, on `tail` and
//! at shutdown), so a crash loses at most that much of the log.
//! Refusals of callers without a live key (no key, an unknown or revoked one, a refused TLS
//! handshake) are written one by one up to [`REFUSALS_PER_WINDOW`] per [`REFUSAL_WINDOW`];
//! beyond that they are counted and summed up in one line per window, so a flood of bad
//! requests cannot rotate the real lines away.

use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// The size at which the log is rotated.
pub const MAX_BYTES: u64 = 10 * 1024 * 1024;
/// How many rotated files are kept.
pub const KEEP: u32 = 5;
/// The log's file name in the data directory.
pub const FILE: &str = "audit.log";
/// How often buffered lines are written out.
pub const FLUSH_EVERY: std::time::Duration = std::time::Duration::from_millis(200);

/// How many refusals a window writes one by one.
pub const REFUSALS_PER_WINDOW: u32 = 50;
/// The window refusals are counted in.
pub const REFUSAL_WINDOW: std::time::Duration = std::time::Duration::from_secs(1);

/// One audited event.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEntry {
    pub node: u64,
    /// The API key's accessor id (empty without keys, or when none was offered).
    pub accessor: String,
    pub project: String,
    /// `Service/Method` or the command (`state.set`).
    pub operation: String,
    /// The record the operation names (a key, an id, a topic), when it names one.
    pub target: String,
    /// `ok`, `denied: ...`, or `error ...`.
    pub result: String,
}

#[derive(Serialize)]
struct Line<'a> {
    time: String,
    #[serde(flatten)]
    entry: &'a AuditEntry,
}

/// The audit log of one node.
pub struct AuditLog {
    path: PathBuf,
    max_bytes: u64,
    file: Mutex<Option<(std::io::BufWriter<std::fs::File>, u64)>>,
    refusals: Mutex<Refusals>,
}

/// The refusals of the current window.
struct Refusals {
    since: std::time::Instant,
    written: u32,
    /// Those not written one by one: how many, and the first of them.
    suppressed: u64,
    first: Option<AuditEntry>,
}

impl Refusals {
    fn new() -> Refusals {
        Refusals {
            since: std::time::Instant::now(),
            written: 0,
            suppressed: 0,
            first: None,
        }
    }
}

impl AuditLog {
    /// The log in data directory `dir`.
    pub fn new(dir: &Path) -> AuditLog {
        Self::with_limit(dir, MAX_BYTES)
    }

    /// The log in `dir`, rotated at `max_bytes`.
    pub fn with_limit(dir: &Path, max_bytes: u64) -> AuditLog {
        AuditLog {
            path: dir.join(FILE),
            max_bytes,
            file: Mutex::new(None),
            refusals: Mutex::new(Refusals::new()),
        }
    }

    /// Appends a refusal: one by one up to [`REFUSALS_PER_WINDOW`] in a window, then counted.
    pub fn refused(&self, entry: &AuditEntry) {
        self.close_window(false);
        {
            let mut r = self.refusals.lock().unwrap_or_else(|p| p.into_inner());
            if r.written >= REFUSALS_PER_WINDOW {
                r.suppressed += 1;
                if r.first.is_none() {
                    r.first = Some(entry.clone());
                }
                return;
            }
            r.written += 1;
        }
        self.write(entry);
    }

    /// Ends the refusal window once it is over: one line for the refusals it did not write one
    /// by one, if any. With `now`, that line is written at once for the refusals counted so far
    /// (the window and what it allows go on).
    fn close_window(&self, now: bool) {
        let (suppressed, first, secs) = {
            let mut r = self.refusals.lock().unwrap_or_else(|p| p.into_inner());
            let elapsed = r.since.elapsed();
            if elapsed >= REFUSAL_WINDOW {
                let r = std::mem::replace(&mut *r, Refusals::new());
                (r.suppressed, r.first, elapsed.as_secs_f64())
            } else if now {
                (
                    std::mem::take(&mut r.suppressed),
                    r.first.take(),
                    elapsed.as_secs_f64(),
                )
            } else {
                return;
            }
        };
        let Some(first) = first else { return };
        self.write(&AuditEntry {
            node: first.node,
            operation: "audit.refusals".to_string(),
            result: format!(
                "denied: {suppressed} more refusals in {secs:.1} s, not written one by one \
                 (the first: {} by {:?} on project {:?}: {})",
                first.operation, first.accessor, first.project, first.result
            ),
            ..Default::default()
        });
    }

    /// Appends one line; a failure to write is reported in the node's log, never to the caller.
    pub fn write(&self, entry: &AuditEntry) {
        let line = Line {
            time: humantime::format_rfc3339_micros(std::time::SystemTime::now()).to_string(),
            entry,
        };
        let mut text = serde_json::to_string(&line).unwrap_or_default();
        text.push('\n');
        let mut file = self.file.lock().unwrap_or_else(|p| p.into_inner());
        if let Err(e) = self.append(&mut file, text.as_bytes()) {
            tracing::warn!(error = %e, path = %self.path.display(), "cannot write the audit log");
            *file = None;
        }
    }

    fn append(
        &self,
        file: &mut Option<(std::io::BufWriter<std::fs::File>, u64)>,
        bytes: &[u8],
    ) -> std::io::Result<()> {
        if file.is_none() {
            let f = crate::config::open_private_append(&self.path)?;
            let size = f.metadata()?.len();
            *file = Some((std::io::BufWriter::with_capacity(64 * 1024, f), size));
        }
        let (f, size) = file.as_mut().expect("opened above");
        f.write_all(bytes)?;
        *size += bytes.len() as u64;
        if *size >= self.max_bytes {
            f.flush()?;
            *file = None;
            self.rotate()?;
        }
        Ok(())
    }

    /// Writes out the buffered lines (and the count of refusals of a window that is over).
    pub fn flush(&self) {
        self.close_window(false);
        let mut file = self.file.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((f, _)) = file.as_mut() {
            if let Err(e) = f.flush() {
                tracing::warn!(error = %e, path = %self.path.display(), "cannot write the audit log");
                *file = None;
            }
        }
    }

    /// At shutdown: the count of refusals not yet written, and every buffered line.
    pub fn close(&self) {
        self.close_window(true);
        self.flush();
    }

    /// Runs until dropped: writes out the buffered lines every [`FLUSH_EVERY`].
    pub async fn flush_periodically(self: std::sync::Arc<Self>) {
        let mut tick = tokio::time::interval(FLUSH_EVERY);
        loop {
            tick.tick().await;
            self.flush();
        }
    }

    fn rotate(&self) -> std::io::Result<()> {
        let numbered = |n: u32| PathBuf::from(format!("{}.{n}", self.path.display()));
        let _ = std::fs::remove_file(numbered(KEEP));
        for n in (1..KEEP).rev() {
            let from = numbered(n);
            if from.exists() {
                std::fs::rename(&from, numbered(n + 1))?;
            }
        }
        std::fs::rename(&self.path, numbered(1))
    }

    /// The last `n` lines, oldest first (from the current file and the rotated ones).
    pub fn tail(&self, n: usize) -> std::io::Result<Vec<String>> {
        self.close_window(true);
        self.flush();
        let mut lines: Vec<String> = Vec::new();
        let mut files = vec![self.path.clone()];
        files.extend((1..=KEEP).map(|i| PathBuf::from(format!("{}.{i}", self.path.display()))));
        for f in files {
            if lines.len() >= n {
                break;
            }
            let text = match std::fs::read_to_string(&f) {
                Ok(t) => t,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            };
            let mut older: Vec<String> = text.lines().map(String::from).collect();
            older.append(&mut lines);
            lines = older;
        }
        let skip = lines.len().saturating_sub(n);
        Ok(lines.split_off(skip))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flood_of_refusals_is_counted_not_written_line_by_line() {
        let dir = tempfile::tempdir().unwrap();
        let log = AuditLog::new(dir.path());
        log.write(&AuditEntry {
            node: 1,
            operation: "state.set".into(),
            target: "real".into(),
            result: "ok".into(),
            ..Default::default()
        });
        for i in 0..1000 {
            log.refused(&AuditEntry {
                node: 1,
                accessor: format!("bad{i}"),
                operation: "MemoryService/Add".into(),
                result: "denied: the API key is not known".into(),
                ..Default::default()
            });
        }
        let lines = log.tail(10_000).unwrap();
        // The real line, the refusals the window allows, and one line counting the rest.
        assert_eq!(
            lines.len(),
            1 + REFUSALS_PER_WINDOW as usize + 1,
            "{lines:#?}"
        );
        assert!(lines[0].contains("\"real\""), "{}", lines[0]);
        let summary: serde_json::Value = serde_json::from_str(lines.last().unwrap()).unwrap();
        assert_eq!(summary["operation"], "audit.refusals");
        let result = summary["result"].as_str().unwrap();
        let first = format!("bad{REFUSALS_PER_WINDOW}");
        assert!(
            result.contains(&format!("{} more refusals", 1000 - REFUSALS_PER_WINDOW))
                && result.contains(&first),
            "{result}"
        );
    }

    #[test]
    fn lines_rotate_and_the_tail_spans_files() {
        let dir = tempfile::tempdir().unwrap();
        let log = AuditLog::with_limit(dir.path(), 400);
        for i in 0..40 {
            log.write(&AuditEntry {
                node: 1,
                operation: "state.set".into(),
                target: format!("k{i}"),
                result: "ok".into(),
                ..Default::default()
            });
        }
        log.flush();
        assert!(dir.path().join("audit.log.1").exists());
        assert!(!dir.path().join(format!("audit.log.{}", KEEP + 1)).exists());
        let tail = log.tail(3).unwrap();
        assert_eq!(tail.len(), 3);
        let last: serde_json::Value = serde_json::from_str(&tail[2]).unwrap();
        assert_eq!(last["target"], "k39");
        assert_eq!(last["operation"], "state.set");
        assert!(last["time"].as_str().unwrap().ends_with('Z'));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join(format!("{FILE}.1")))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }
}
