//! The Raft log as append-only segment files in `raft-log/` of the data directory.
//!
//! Each segment is named by the index of its first entry (`00000000000000000042.wal`), starts
//! with [`MAGIC`] and holds records `[index u64][batch u64][length u32][crc32 u32][entry]`
//! (little endian; `batch` is the index of the first entry written by the same append; the
//! checksum covers everything before it and the entry). Appends write their records at the
//! end of the newest segment; a thread of the log's own makes them durable (`fdatasync`) and
//! then reports them stored, so the caller never waits on the disk. A new segment is started
//! once the newest holds [`SEGMENT_BYTES`]. Purging deletes whole segments; entries purged but
//! still in a kept segment are skipped when the log is read back.
//!
//! At open, every record is checked. Only the last append can be torn by a crash (the next one
//! is written after it is reported stored), and its blocks may reach the disk in any order: a
//! record cut short or failing its checksum in the newest segment is taken for that append and
//! cut off, with what follows, unless a sound record of a later append follows it (then it was
//! stored and reported, and is damaged). Damage in an older segment, or a gap between indexes,
//! refuses the store.
//!
//! The log lives apart from sled because sled rewrites whole pages to append: measured with
//! `scripts/bench-ab.sh`, keeping the log out of sled took about an eighth off the CPU time of a write.
//!
//! Segments are zero-filled ahead of use. An `fdatasync` after writes that grow a file must also
//! commit the file's new size and blocks to the file system's journal; after writes into blocks
//! already written and flushed it has only the data to write (here 0.22 against 0.30-0.37 ms
//! at the median, three logs syncing at once: `scripts/fsync-prezeroed.py`). A thread of the
//! log's own keeps one spare segment ready ([`SPARE`]: the header, then [`SPARE_BYTES`] of
//! zeros, flushed) once appends have grown the log by an eighth of that or left less than that
//! in the newest segment's zeros (so a short-lived node, such as the CLI's local one, makes
//! none); an append that would grow the newest segment starts a new one from the spare instead
//! (renamed to its name) when one is ready, else grows it. So a segment holds its records and
//! then zeros: at open, a record header of zeros followed by nothing but zeros ends the records
//! cleanly.

use crate::storage::StoreError;
use std::collections::{BTreeMap, VecDeque};
use std::fs::{File, OpenOptions};
use std::io::{BufReader, Read};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex};

/// The first bytes of every segment.
pub const MAGIC: &[u8; 8] = b"AIDEWAL2";
/// A segment this large gets no more records.
pub const SEGMENT_BYTES: u64 = 64 * 1024 * 1024;
/// The zeros of a spare segment.
pub const SPARE_BYTES: u64 = 8 * 1024 * 1024;
/// The spare segment's file name in the log's directory (not a segment's: it ends in `.tmp`).
pub const SPARE: &str = "spare.tmp";
/// The bytes before each record's entry.
const HEADER: usize = 24;
/// No record is larger (a Raft entry is at most a few MiB).
const MAX_RECORD: u32 = 128 * 1024 * 1024;

/// Where one entry is.
#[derive(Clone, Copy, Debug)]
struct Loc {
    segment: u64,
    offset: u64,
    len: u32,
}

struct Segment {
    file: Arc<File>,
    /// The end of its records.
    len: u64,
    /// The file's size: beyond `len` it holds zeros.
    size: u64,
}

struct Inner {
    /// Segments by the index they were started at.
    segments: BTreeMap<u64, Segment>,
    /// The index of `entries[0]`.
    first: u64,
    entries: VecDeque<Loc>,
    /// Spare segments, from the thread that makes them (none when spares are off).
    spares: Option<Spares>,
}

/// The receiving end of the spare-making thread.
struct Spares {
    /// A spare segment made and flushed, not yet taken.
    ready: Option<File>,
    made: mpsc::Receiver<File>,
    /// Asks the thread for the next one; `None` once the log is closing.
    want: Option<mpsc::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
    /// Tells the thread to stop the spare it is writing: the log is closing.
    closing: Arc<AtomicBool>,
    /// Bytes appends grew the log by before the first spare was wanted (`None` once it was).
    grown: Option<u64>,
    /// The growth after which the first spare is wanted.
    first_after: u64,
}

impl Drop for Spares {
    /// Waits for the thread to end, so that no spare is being written once the log is closed
    /// (a log opened again on the directory makes its own).
    fn drop(&mut self) {
        self.closing.store(true, Ordering::Release);
        self.want = None;
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Spares {
    /// Whether a spare is ready to be taken.
    fn available(&mut self) -> bool {
        if self.ready.is_none() {
            self.ready = self.made.try_recv().ok();
        }
        self.ready.is_some()
    }

    /// An append grew the log by `grew` bytes and left `left` bytes of zeros in its segment:
    /// the first spare is wanted once the growth adds up, or when the zeros run low.
    fn appended(&mut self, grew: u64, left: u64) {
        if let Some(grown) = &mut self.grown {
            *grown += grew;
            if *grown >= self.first_after || (left > 0 && left < self.first_after) {
                self.grown = None;
                if let Some(want) = &self.want {
                    let _ = want.send(());
                }
            }
        }
    }
}

impl Inner {
    fn next_index(&self) -> u64 {
        self.first + self.entries.len() as u64
    }
}

/// What the sync thread makes durable before it reports.
struct SyncJob {
    files: Vec<Arc<File>>,
    dir: Option<PathBuf>,
    done: Box<dyn FnOnce(std::io::Result<()>) + Send>,
}

/// An open log directory.
pub struct Wal {
    dir: PathBuf,
    inner: Mutex<Inner>,
    sync: mpsc::Sender<SyncJob>,
}

fn damaged(dir: &Path, problem: String) -> StoreError {
    StoreError::Damaged {
        dir: dir.to_path_buf(),
        problem: format!(
            "the Raft log in {}: {problem}; {}",
            dir.display(),
            crate::storage::RECOVERY
        ),
    }
}

fn segment_path(dir: &Path, first: u64) -> PathBuf {
    dir.join(format!("{first:020}.wal"))
}

/// A record's header.
#[derive(Clone, Copy, Debug)]
struct Head {
    index: u64,
    batch: u64,
    len: u32,
    crc: u32,
}

impl Head {
    fn parse(b: &[u8; HEADER]) -> Head {
        let u64_at = |i: usize| u64::from_le_bytes(b[i..i + 8].try_into().expect("8 bytes"));
        let u32_at = |i: usize| u32::from_le_bytes(b[i..i + 4].try_into().expect("4 bytes"));
        Head {
            index: u64_at(0),
            batch: u64_at(8),
            len: u32_at(16),
            crc: u32_at(20),
        }
    }

    fn checksum(&self, entry: &[u8]) -> u32 {
        let mut h = crc32fast::Hasher::new();
        h.update(&self.index.to_le_bytes());
        h.update(&self.batch.to_le_bytes());
        h.update(&self.len.to_le_bytes());
        h.update(entry);
        h.finalize()
    }

    fn sound(&self, entry: &[u8]) -> bool {
        self.checksum(entry) == self.crc
    }
}

/// Appends one record for `entry` at `index`, written by the append that starts at `batch`.
fn record(out: &mut Vec<u8>, index: u64, batch: u64, entry: &[u8]) {
    let len = entry.len() as u32;
    let crc = Head {
        index,
        batch,
        len,
        crc: 0,
    }
    .checksum(entry);
    out.extend_from_slice(&index.to_le_bytes());
    out.extend_from_slice(&batch.to_le_bytes());
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&crc.to_le_bytes());
    out.extend_from_slice(entry);
}

/// Whether, after the unsound record at `at` in `file`, a sound record of a later append
/// follows: then the unsound one had been stored and reported, and is damaged, not torn.
/// `at` 0 stands for the segment header.
fn later_append_follows(file: &File, mut at: u64, size: u64) -> std::io::Result<bool> {
    let mut head = [0u8; HEADER];
    let read_head = |pos: u64, head: &mut [u8; HEADER]| -> std::io::Result<Option<Head>> {
        if size.saturating_sub(pos) < HEADER as u64 {
            return Ok(None);
        }
        file.read_exact_at(head, pos)?;
        let h = Head::parse(head);
        let fits = h.len <= MAX_RECORD && size - pos - HEADER as u64 >= u64::from(h.len);
        Ok(fits.then_some(h))
    };
    let mut entry = Vec::new();
    if at == 0 {
        // The segment header is unsound. A new segment's header goes out with its first append,
        // so a sound record after it means the header had reached the disk and is damaged; an
        // unsound one is walked past like any other.
        at = MAGIC.len() as u64;
        let Some(h) = read_head(at, &mut head)? else {
            return Ok(false);
        };
        entry.resize(h.len as usize, 0);
        file.read_exact_at(&mut entry, at + HEADER as u64)?;
        if h.sound(&entry) {
            return Ok(true);
        }
    }
    // The unsound record's own length is all there is to find the next one by.
    let Some(bad) = read_head(at, &mut head)? else {
        return Ok(false);
    };
    let mut pos = at + HEADER as u64 + u64::from(bad.len);
    while let Some(h) = read_head(pos, &mut head)? {
        entry.resize(h.len as usize, 0);
        file.read_exact_at(&mut entry, pos + HEADER as u64)?;
        if !h.sound(&entry) {
            return Ok(false);
        }
        if h.batch == h.index {
            return Ok(true);
        }
        pos += HEADER as u64 + u64::from(h.len);
    }
    Ok(false)
}

fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

/// How a scan of one segment ended.
enum Tail {
    /// Its records end at this offset (the file's size, or where the zeros after them begin).
    Clean(u64),
    /// A record from this offset on is cut short or fails its checksum.
    Torn(u64, String),
}

/// Reads the records of the segment at `path`, calling `found(index, offset, len)` for each.
fn scan(path: &Path, mut found: impl FnMut(u64, u64, u32)) -> std::io::Result<(u64, Tail)> {
    let file = File::open(path)?;
    let size = file.metadata()?.len();
    let mut r = BufReader::with_capacity(1 << 20, file);
    let mut magic = [0u8; 8];
    if size < MAGIC.len() as u64 {
        return Ok((size, Tail::Torn(0, "it is shorter than its header".into())));
    }
    r.read_exact(&mut magic)?;
    if &magic != MAGIC {
        return Ok((
            size,
            Tail::Torn(0, "it does not start with the segment header".into()),
        ));
    }
    let mut offset = MAGIC.len() as u64;
    let mut entry = Vec::new();
    while offset < size {
        if size - offset < HEADER as u64 {
            return Ok((
                size,
                Tail::Torn(offset, "a record header is cut short".into()),
            ));
        }
        let mut head = [0u8; HEADER];
        r.read_exact(&mut head)?;
        if head == [0u8; HEADER] && only_zeros(&mut r)? {
            // The zeros a segment was filled with ahead of use (see the module's doc).
            return Ok((size, Tail::Clean(offset)));
        }
        let h = Head::parse(&head);
        let (index, len) = (h.index, h.len);
        if len > MAX_RECORD || size - offset - (HEADER as u64) < u64::from(len) {
            return Ok((
                size,
                Tail::Torn(offset, format!("the record of entry {index} is cut short")),
            ));
        }
        entry.resize(len as usize, 0);
        r.read_exact(&mut entry)?;
        if !h.sound(&entry) {
            return Ok((
                size,
                Tail::Torn(
                    offset,
                    format!("the record of entry {index} fails its checksum"),
                ),
            ));
        }
        found(index, offset, len);
        offset += HEADER as u64 + u64::from(len);
    }
    Ok((size, Tail::Clean(size)))
}

/// Whether `r` holds nothing but zeros to its end.
fn only_zeros(r: &mut impl Read) -> std::io::Result<bool> {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = r.read(&mut buf)?;
        if n == 0 {
            return Ok(true);
        }
        if buf[..n].iter().any(|&b| b != 0) {
            return Ok(false);
        }
    }
}

/// Writes a spare segment in `dir`: the segment header, then `bytes` of zeros, flushed; stops
/// when `closing` is set.
fn make_spare(dir: &Path, bytes: u64, closing: &AtomicBool) -> std::io::Result<File> {
    let path = dir.join(SPARE);
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&path)?;
    file.write_all_at(MAGIC, 0)?;
    // Written a page at a time: the page cache holds bigger writes in bigger folios, which are
    // dirtied and written back whole, so each small append after them wrote its whole folio
    // (939 KB per 24 KB append where the zeros went out 1 MiB at a time:
    // `scripts/fsync-prezeroed.py`).
    let zeros = vec![0u8; 4096];
    let mut at = MAGIC.len() as u64;
    let end = at + bytes;
    while at < end {
        if closing.load(Ordering::Acquire) {
            return Err(std::io::Error::other("the log is closing"));
        }
        let n = zeros.len().min((end - at) as usize);
        file.write_all_at(&zeros[..n], at)?;
        at += n as u64;
    }
    file.sync_all()?;
    Ok(file)
}

/// Starts the thread that makes a spare segment of `bytes` each time one is wanted; it ends
/// when the log is closed.
fn start_spares(dir: &Path, bytes: u64) -> Result<Spares, StoreError> {
    let path = dir.join(SPARE);
    // One left by an earlier run may be incomplete; it is made again.
    match std::fs::remove_file(&path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(StoreError::io(&path, e)),
        _ => {}
    }
    let (want, wanted) = mpsc::channel::<()>();
    let (made_tx, made) = mpsc::channel::<File>();
    let dir = dir.to_path_buf();
    let dir_shown = dir.clone();
    let closing = Arc::new(AtomicBool::new(false));
    let stop = closing.clone();
    let thread = std::thread::Builder::new()
        .name("raft-log-spare".into())
        .spawn(move || {
            while wanted.recv().is_ok() {
                loop {
                    if stop.load(Ordering::Acquire) {
                        return;
                    }
                    match make_spare(&dir, bytes, &stop) {
                        Ok(file) => {
                            if made_tx.send(file).is_err() {
                                return;
                            }
                            break;
                        }
                        Err(_) if stop.load(Ordering::Acquire) => return,
                        Err(e) => {
                            // Appends grow segments meanwhile, as without spares.
                            tracing::warn!(dir = %dir.display(), error = %e, "cannot make a spare Raft log segment; trying again in 10 s");
                            match wanted.recv_timeout(std::time::Duration::from_secs(10)) {
                                Err(mpsc::RecvTimeoutError::Disconnected) => return,
                                _ => continue,
                            }
                        }
                    }
                }
            }
        })
        .map_err(|e| StoreError::io(&dir_shown, e))?;
    Ok(Spares {
        ready: None,
        made,
        want: Some(want),
        thread: Some(thread),
        closing,
        grown: Some(0),
        first_after: bytes / 8,
    })
}

impl Wal {
    /// Opens (creating if new) the log in `dir`, skipping entries up to `purged`.
    pub fn open(dir: &Path, purged: Option<u64>) -> Result<Wal, StoreError> {
        Wal::open_with_spares(dir, purged, SPARE_BYTES)
    }

    /// [`Wal::open`] with spare segments of `spare_bytes` of zeros (0: none; segments grow).
    pub fn open_with_spares(
        dir: &Path,
        purged: Option<u64>,
        spare_bytes: u64,
    ) -> Result<Wal, StoreError> {
        std::fs::create_dir_all(dir).map_err(|e| StoreError::io(dir, e))?;
        let mut firsts = Vec::new();
        for item in std::fs::read_dir(dir).map_err(|e| StoreError::io(dir, e))? {
            let name = item.map_err(|e| StoreError::io(dir, e))?.file_name();
            let name = name.to_string_lossy();
            if let Some(first) = name
                .strip_suffix(".wal")
                .and_then(|n| n.parse::<u64>().ok())
            {
                firsts.push(first);
            }
        }
        firsts.sort_unstable();
        let mut inner = Inner {
            segments: BTreeMap::new(),
            first: purged.map_or(0, |p| p + 1),
            entries: VecDeque::new(),
            spares: None,
        };
        let last_segment = firsts.last().copied();
        for first in firsts {
            let path = segment_path(dir, first);
            let mut problem = None;
            let (size, tail) = scan(&path, |index, offset, len| {
                if problem.is_some() || purged.is_some_and(|p| index <= p) {
                    return;
                }
                if inner.entries.is_empty() && purged.is_none() {
                    // Nothing purged: the log starts where its first record says (a node that
                    // joined late may start after 0).
                    inner.first = index;
                }
                if index != inner.next_index() {
                    problem = Some(format!(
                        "{} holds entry {index} where entry {} belongs",
                        path.display(),
                        inner.next_index()
                    ));
                    return;
                }
                inner.entries.push_back(Loc {
                    segment: first,
                    offset,
                    len,
                });
            })
            .map_err(|e| StoreError::io(&path, e))?;
            if let Some(problem) = problem {
                return Err(damaged(dir, problem));
            }
            // Where its records end, and the file's size (zeros between the two).
            let (len, size) = match tail {
                Tail::Clean(end) => (end, size),
                Tail::Torn(at, why)
                    if Some(first) == last_segment
                        && !File::open(&path)
                            .and_then(|f| later_append_follows(&f, at, size))
                            .map_err(|e| StoreError::io(&path, e))? =>
                {
                    // The append a crash interrupted; it was never reported stored.
                    tracing::warn!(segment = %path.display(), offset = at, "cutting off an interrupted append: {why}");
                    let f = OpenOptions::new()
                        .write(true)
                        .open(&path)
                        .map_err(|e| StoreError::io(&path, e))?;
                    let keep = at.max(MAGIC.len() as u64);
                    f.set_len(keep).map_err(|e| StoreError::io(&path, e))?;
                    if at < MAGIC.len() as u64 {
                        f.write_all_at(MAGIC, 0)
                            .map_err(|e| StoreError::io(&path, e))?;
                    }
                    f.sync_all().map_err(|e| StoreError::io(&path, e))?;
                    (keep, keep)
                }
                Tail::Torn(_, why) => {
                    return Err(damaged(dir, format!("{}: {why}", path.display())))
                }
            };
            let file = OpenOptions::new()
                .read(true)
                .write(true)
                .open(&path)
                .map_err(|e| StoreError::io(&path, e))?;
            inner.segments.insert(
                first,
                Segment {
                    file: Arc::new(file),
                    len,
                    size,
                },
            );
        }
        if spare_bytes > 0 {
            inner.spares = Some(start_spares(dir, spare_bytes)?);
        }
        let (tx, rx) = mpsc::channel::<SyncJob>();
        std::thread::Builder::new()
            .name("raft-log-sync".into())
            .spawn(move || {
                for job in rx {
                    let mut result = Ok(());
                    for f in &job.files {
                        if let Err(e) = f.sync_data() {
                            result = Err(e);
                        }
                    }
                    if let (Ok(()), Some(dir)) = (&result, &job.dir) {
                        result = sync_dir(dir);
                    }
                    (job.done)(result);
                }
            })
            .map_err(|e| StoreError::io(dir, e))?;
        Ok(Wal {
            dir: dir.to_path_buf(),
            inner: Mutex::new(inner),
            sync: tx,
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The index of the last entry held, if any.
    pub fn last_index(&self) -> Option<u64> {
        let inner = self.lock();
        (!inner.entries.is_empty()).then(|| inner.next_index() - 1)
    }

    /// Writes `entries` (index, encoded entry) after the last one; `done` is called from the
    /// log's own thread once they are on disk. The records reach the file (the page cache) before
    /// this returns, so they can be read back at once.
    pub fn append(
        &self,
        entries: Vec<(u64, Vec<u8>)>,
        done: Box<dyn FnOnce(std::io::Result<()>) + Send>,
    ) -> Result<(), StoreError> {
        let Some(&(start, _)) = entries.first() else {
            done(Ok(()));
            return Ok(());
        };
        let mut inner = self.lock();
        if !inner.entries.is_empty() && start != inner.next_index() {
            return Err(damaged(
                &self.dir,
                format!(
                    "entry {start} appended where entry {} belongs",
                    inner.next_index()
                ),
            ));
        }
        if inner.entries.is_empty() {
            inner.first = start;
        }
        let mut buf = Vec::with_capacity(entries.iter().map(|(_, e)| e.len() + HEADER).sum());
        let mut lens = Vec::with_capacity(entries.len());
        for (i, (index, entry)) in entries.iter().enumerate() {
            if *index != start + i as u64 {
                return Err(damaged(
                    &self.dir,
                    format!("entries appended out of order at {index}"),
                ));
            }
            record(&mut buf, *index, start, entry);
            lens.push(entry.len() as u32);
        }
        let mut new_segment = false;
        let add = buf.len() as u64;
        let Inner {
            segments, spares, ..
        } = &mut *inner;
        let active = match segments.last_key_value() {
            // Room in its zeros, or no spare to start instead of growing it.
            Some((&first, s))
                if s.len < SEGMENT_BYTES
                    && (s.len + add <= s.size
                        || s.len == MAGIC.len() as u64
                        || !spares.as_mut().is_some_and(Spares::available)) =>
            {
                first
            }
            _ => {
                let path = segment_path(&self.dir, start);
                let (file, size) = match self.take_spare(spares, &path) {
                    Some(spare) => spare,
                    None => {
                        let file = OpenOptions::new()
                            .read(true)
                            .write(true)
                            .create_new(true)
                            .open(&path)
                            .map_err(|e| StoreError::io(&path, e))?;
                        file.write_all_at(MAGIC, 0)
                            .map_err(|e| StoreError::io(&path, e))?;
                        (file, MAGIC.len() as u64)
                    }
                };
                segments.insert(
                    start,
                    Segment {
                        file: Arc::new(file),
                        len: MAGIC.len() as u64,
                        size,
                    },
                );
                new_segment = true;
                start
            }
        };
        let segment = segments.get_mut(&active).expect("the active segment");
        let at = segment.len;
        if let Some(spares) = spares.as_mut() {
            spares.appended(
                (at + add).saturating_sub(segment.size),
                segment.size.saturating_sub(at + add),
            );
        }
        segment
            .file
            .write_all_at(&buf, at)
            .map_err(|e| StoreError::io(&segment_path(&self.dir, active), e))?;
        segment.len += add;
        segment.size = segment.size.max(segment.len);
        let file = segment.file.clone();
        let mut offset = at;
        for len in lens {
            inner.entries.push_back(Loc {
                segment: active,
                offset,
                len,
            });
            offset += HEADER as u64 + u64::from(len);
        }
        drop(inner);
        let job = SyncJob {
            files: vec![file],
            dir: new_segment.then(|| self.dir.clone()),
            done,
        };
        if let Err(mpsc::SendError(job)) = self.sync.send(job) {
            (job.done)(Err(std::io::Error::other(
                "the Raft log's sync thread is gone",
            )));
        }
        Ok(())
    }

    /// The spare segment, renamed to `path`, and its size; `None` when none is ready or it
    /// cannot be renamed (then a new segment is made as without spares).
    fn take_spare(&self, spares: &mut Option<Spares>, path: &Path) -> Option<(File, u64)> {
        let spares = spares.as_mut()?;
        if !spares.available() {
            return None;
        }
        let file = spares.ready.take()?;
        // The directory is flushed by the sync job of the append that takes it.
        let renamed = file
            .metadata()
            .and_then(|m| std::fs::rename(self.dir.join(SPARE), path).map(|()| m.len()));
        // Only now: the thread writes the next spare under the same name.
        if let Some(want) = &spares.want {
            let _ = want.send(());
        }
        match renamed {
            Ok(size) => Some((file, size)),
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "cannot take the spare Raft log segment");
                None
            }
        }
    }

    /// The encoded entries with indexes in `from..to` that the log holds.
    /// Read under the lock, so that a truncation or purge never cuts a record being read.
    pub fn read(&self, from: u64, to: u64) -> Result<Vec<Vec<u8>>, StoreError> {
        let inner = self.lock();
        let from = from.max(inner.first);
        let to = to.min(inner.next_index());
        if from >= to {
            return Ok(Vec::new());
        }
        let locs = inner
            .entries
            .range((from - inner.first) as usize..(to - inner.first) as usize);
        let mut out = Vec::with_capacity(locs.len());
        let mut head = [0u8; HEADER];
        for (expected, loc) in (from..).zip(locs) {
            let path = || segment_path(&self.dir, loc.segment);
            let file = &inner.segments[&loc.segment].file;
            file.read_exact_at(&mut head, loc.offset)
                .map_err(|e| StoreError::io(&path(), e))?;
            let h = Head::parse(&head);
            let index = h.index;
            let mut entry = vec![0u8; loc.len as usize];
            file.read_exact_at(&mut entry, loc.offset + HEADER as u64)
                .map_err(|e| StoreError::io(&path(), e))?;
            if h.index != expected || h.len != loc.len || !h.sound(&entry) {
                return Err(damaged(
                    &self.dir,
                    format!(
                        "{}: the record of entry {index} fails its checksum",
                        path().display()
                    ),
                ));
            }
            out.push(entry);
        }
        Ok(out)
    }

    /// Removes the entries from `index` on, on disk before it returns.
    pub fn truncate(&self, index: u64) -> Result<(), StoreError> {
        let mut inner = self.lock();
        if index >= inner.next_index() {
            return Ok(());
        }
        let keep = index.saturating_sub(inner.first) as usize;
        let cut = inner.entries[keep];
        inner.entries.truncate(keep);
        let later: Vec<u64> = inner
            .segments
            .range(cut.segment + 1..)
            .map(|(&f, _)| f)
            .collect();
        // Newest first: a crash midway leaves the older segments without a gap after them.
        for first in later.into_iter().rev() {
            inner.segments.remove(&first);
            let path = segment_path(&self.dir, first);
            std::fs::remove_file(&path).map_err(|e| StoreError::io(&path, e))?;
        }
        let path = segment_path(&self.dir, cut.segment);
        let segment = inner
            .segments
            .get_mut(&cut.segment)
            .expect("the cut segment");
        segment
            .file
            .set_len(cut.offset)
            .and_then(|_| segment.file.sync_all())
            .map_err(|e| StoreError::io(&path, e))?;
        segment.len = cut.offset;
        segment.size = cut.offset;
        sync_dir(&self.dir).map_err(|e| StoreError::io(&self.dir, e))
    }

    /// Forgets the entries up to `index` and deletes the segments that hold nothing later.
    pub fn purge(&self, index: u64) -> Result<(), StoreError> {
        let mut inner = self.lock();
        if index >= inner.next_index() {
            inner.entries.clear();
            inner.first = index + 1;
        } else if index >= inner.first {
            let n = (index + 1 - inner.first) as usize;
            inner.entries.drain(..n);
            inner.first = index + 1;
        }
        // A segment holds nothing after `index` when the next one starts at or before index + 1.
        let firsts: Vec<u64> = inner.segments.keys().copied().collect();
        let mut removed = false;
        for pair in firsts.windows(2) {
            if pair[1] <= index + 1 {
                inner.segments.remove(&pair[0]);
                let path = segment_path(&self.dir, pair[0]);
                std::fs::remove_file(&path).map_err(|e| StoreError::io(&path, e))?;
                removed = true;
            }
        }
        if removed {
            sync_dir(&self.dir).map_err(|e| StoreError::io(&self.dir, e))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(i: u64, size: usize) -> (u64, Vec<u8>) {
        (i, vec![(i % 251) as u8; size])
    }

    fn append_sync(wal: &Wal, entries: Vec<(u64, Vec<u8>)>) {
        let (tx, rx) = mpsc::channel();
        wal.append(entries, Box::new(move |r| tx.send(r.is_ok()).unwrap()))
            .unwrap();
        assert!(rx.recv().unwrap(), "the append was made durable");
    }

    fn segments(dir: &Path) -> usize {
        std::fs::read_dir(dir)
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .file_name()
                    .to_string_lossy()
                    .ends_with(".wal")
            })
            .count()
    }

    #[test]
    fn entries_read_back_across_reopen_truncate_and_purge() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("log");
        let wal = Wal::open(&dir, None).unwrap();
        assert_eq!(wal.last_index(), None);
        assert_eq!(segments(&dir), 0, "a new log has no segment");
        append_sync(&wal, (1..=3).map(|i| entry(i, 10)).collect());
        append_sync(&wal, vec![entry(4, 1000)]);
        assert_eq!(
            wal.read(2, 4).unwrap(),
            vec![entry(2, 10).1, entry(3, 10).1]
        );
        drop(wal);

        let wal = Wal::open(&dir, None).unwrap();
        assert_eq!(wal.last_index(), Some(4));
        assert_eq!(wal.read(1, 100).unwrap().len(), 4);
        wal.truncate(3).unwrap();
        assert_eq!(wal.last_index(), Some(2));
        append_sync(&wal, vec![entry(3, 7)]);
        drop(wal);

        let wal = Wal::open(&dir, None).unwrap();
        assert_eq!(wal.read(3, 4).unwrap(), vec![entry(3, 7).1]);
        wal.purge(2).unwrap();
        assert_eq!(wal.read(1, 10).unwrap(), vec![entry(3, 7).1]);
        // Purging past the end (a snapshot installed) leaves an empty log that goes on after it.
        wal.purge(10).unwrap();
        assert_eq!(wal.last_index(), None);
        append_sync(&wal, vec![entry(11, 5)]);
        drop(wal);
        let wal = Wal::open(&dir, Some(10)).unwrap();
        assert_eq!(wal.last_index(), Some(11));
        assert_eq!(wal.read(1, 20).unwrap(), vec![entry(11, 5).1]);
    }

    #[test]
    fn full_segments_roll_over_and_purging_deletes_them() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("log");
        let wal = Wal::open_with_spares(&dir, None, 0).unwrap();
        let big = (SEGMENT_BYTES / 3) as usize;
        for i in 1..=7 {
            append_sync(&wal, vec![entry(i, big)]);
        }
        assert_eq!(segments(&dir), 3, "three entries fill a segment");
        wal.purge(4).unwrap();
        assert_eq!(segments(&dir), 2, "the segment of entries 1 to 3 is gone");
        assert_eq!(wal.read(1, 100).unwrap().len(), 3);
        drop(wal);
        let wal = Wal::open_with_spares(&dir, Some(4), 0).unwrap();
        assert_eq!(
            wal.read(1, 100).unwrap(),
            (5..=7).map(|i| entry(i, big).1).collect::<Vec<_>>()
        );
    }

    #[test]
    fn an_interrupted_append_is_cut_off_and_damage_elsewhere_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("log");
        let wal = Wal::open_with_spares(&dir, None, 0).unwrap();
        append_sync(&wal, (1..=3).map(|i| entry(i, 100)).collect());
        drop(wal);
        let path = segment_path(&dir, 1);
        let whole = std::fs::read(&path).unwrap();

        // The last record cut short, as by a crash in the middle of its write.
        std::fs::write(&path, &whole[..whole.len() - 30]).unwrap();
        let wal = Wal::open_with_spares(&dir, None, 0).unwrap();
        assert_eq!(wal.last_index(), Some(2));
        append_sync(&wal, vec![entry(3, 9)]);
        assert_eq!(wal.read(3, 4).unwrap(), vec![entry(3, 9).1]);
        drop(wal);

        // Entries 1 and 2 were written by one append, 3 by another; now 4 and 5 by one more.
        let wal = Wal::open_with_spares(&dir, None, 0).unwrap();
        append_sync(&wal, vec![entry(4, 50), entry(5, 50)]);
        drop(wal);
        let sound = std::fs::read(&path).unwrap();
        let start_of = |n: usize| {
            let sizes = [100, 100, 9, 50, 50];
            MAGIC.len() + sizes[..n - 1].iter().map(|s| HEADER + s).sum::<usize>()
        };

        // A flipped byte in entry 4: the last append, whose record 5 may have reached the disk
        // before record 4 did. Taken for a torn append: 4 and 5 are cut off.
        let mut bad = sound.clone();
        bad[start_of(4) + HEADER + 1] ^= 0xff;
        std::fs::write(&path, &bad).unwrap();
        let wal = Wal::open_with_spares(&dir, None, 0).unwrap();
        assert_eq!(wal.last_index(), Some(3));
        drop(wal);

        // A flipped byte in entry 1: a later append (3) follows, so entry 1 had been stored
        // and reported; that is damage, and the store is refused.
        let mut bad = sound.clone();
        bad[start_of(1) + HEADER + 1] ^= 0xff;
        std::fs::write(&path, &bad).unwrap();
        let err = Wal::open_with_spares(&dir, None, 0)
            .err()
            .expect("refused")
            .to_string();
        assert!(
            err.contains("damaged") && err.contains("entry 1 fails its checksum"),
            "{err}"
        );

        // A damaged segment header in front of sound records is refused too.
        let mut bad = sound.clone();
        bad[0] ^= 0xff;
        std::fs::write(&path, &bad).unwrap();
        let err = Wal::open_with_spares(&dir, None, 0)
            .err()
            .expect("refused")
            .to_string();
        assert!(
            err.contains("damaged") && err.contains("segment header"),
            "{err}"
        );
        // Also when the first record is damaged with it: later appends follow.
        bad[start_of(1) + HEADER + 1] ^= 0xff;
        std::fs::write(&path, &bad).unwrap();
        let err = Wal::open_with_spares(&dir, None, 0)
            .err()
            .expect("refused")
            .to_string();
        assert!(err.contains("damaged"), "{err}");
        std::fs::write(&path, &sound).unwrap();

        // A new segment whose header and first append never reached the disk (the file's size
        // did: zeros) is that torn append, and is emptied.
        let wal = Wal::open_with_spares(&dir, None, 0).unwrap();
        assert_eq!(wal.last_index(), Some(5));
        drop(wal);
        let fresh = segment_path(&dir, 6);
        std::fs::write(&fresh, vec![0u8; MAGIC.len() + HEADER + 40]).unwrap();
        let wal = Wal::open_with_spares(&dir, None, 0).unwrap();
        assert_eq!(wal.last_index(), Some(5));
        append_sync(&wal, vec![entry(6, 20)]);
        drop(wal);
        let wal = Wal::open_with_spares(&dir, None, 0).unwrap();
        assert_eq!(
            wal.read(5, 7).unwrap(),
            vec![entry(5, 50).1, entry(6, 20).1]
        );
        drop(wal);

        // Damage in a segment that is not the newest is refused.
        let dir2 = tmp.path().join("log2");
        let wal = Wal::open_with_spares(&dir2, None, 0).unwrap();
        let big = (SEGMENT_BYTES / 2) as usize;
        for i in 1..=3 {
            append_sync(&wal, vec![entry(i, big)]);
        }
        drop(wal);
        let first = segment_path(&dir2, 1);
        let mut bytes = std::fs::read(&first).unwrap();
        let n = bytes.len();
        bytes[n - 1] ^= 0xff;
        std::fs::write(&first, &bytes).unwrap();
        let err = Wal::open_with_spares(&dir2, None, 0)
            .err()
            .expect("refused")
            .to_string();
        assert!(
            err.contains("damaged") && err.contains("fails its checksum"),
            "{err}"
        );
    }

    /// Waits until the log's thread has a spare segment ready.
    fn spare_ready(wal: &Wal) {
        let mut inner = wal.lock();
        let spares = inner.spares.as_mut().expect("spares are on");
        if spares.ready.is_none() {
            let made = spares.made.recv_timeout(std::time::Duration::from_secs(60));
            spares.ready = Some(made.expect("a spare segment is made"));
        }
    }

    #[test]
    fn segments_zero_filled_ahead_hold_records_across_reopens_and_torn_appends() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("log");
        let spare = 4096;
        let wal = Wal::open_with_spares(&dir, None, spare).unwrap();
        append_sync(&wal, (1..=3).map(|i| entry(i, 100)).collect());
        assert!(
            !dir.join(SPARE).exists(),
            "no spare before the log has grown by an eighth of one"
        );
        append_sync(&wal, vec![entry(4, 200)]);
        spare_ready(&wal);
        // Entry 5 would grow the first segment: it starts the spare instead.
        append_sync(&wal, vec![entry(5, 100)]);
        assert_eq!(segments(&dir), 2);
        let path = segment_path(&dir, 5);
        let size = MAGIC.len() as u64 + spare;
        assert_eq!(std::fs::metadata(&path).unwrap().len(), size);
        drop(wal);

        let wal = Wal::open_with_spares(&dir, None, spare).unwrap();
        assert_eq!(
            wal.last_index(),
            Some(5),
            "the zeros after the records end them"
        );
        append_sync(&wal, vec![entry(6, 100)]);
        assert_eq!(
            segments(&dir),
            2,
            "entry 6 fits in the zeros of the same segment"
        );
        drop(wal);
        let wal = Wal::open_with_spares(&dir, None, spare).unwrap();
        assert_eq!(
            wal.read(1, 10).unwrap(),
            [100, 100, 100, 200, 100, 100]
                .iter()
                .zip(1..)
                .map(|(&n, i)| entry(i, n).1)
                .collect::<Vec<_>>()
        );
        assert_eq!(std::fs::metadata(&path).unwrap().len(), size);

        // Once its zeros run low, a spare is made; an entry larger than the zeros left then
        // starts it rather than growing this segment.
        append_sync(&wal, vec![entry(7, 3400)]);
        spare_ready(&wal);
        append_sync(&wal, vec![entry(8, 1000)]);
        assert_eq!(segments(&dir), 3);
        assert_eq!(std::fs::metadata(&path).unwrap().len(), size);
        drop(wal);
        let wal = Wal::open_with_spares(&dir, None, spare).unwrap();
        assert_eq!(
            wal.read(7, 9).unwrap(),
            vec![entry(7, 3400).1, entry(8, 1000).1]
        );
        append_sync(&wal, vec![entry(9, 10)]);
        drop(wal);

        // An append torn by a crash: its header never reached the disk (still zeros) but a
        // later block of it did. It was never reported stored, so it is cut off.
        let third = segment_path(&dir, 8);
        let end = MAGIC.len() + HEADER + 1000 + HEADER + 10;
        let mut bytes = std::fs::read(&third).unwrap();
        assert!(
            bytes[end..].iter().all(|&b| b == 0),
            "zeros follow the records"
        );
        bytes[end + HEADER + 7] = 0xab;
        std::fs::write(&third, &bytes).unwrap();
        let wal = Wal::open_with_spares(&dir, None, spare).unwrap();
        assert_eq!(wal.last_index(), Some(9));
        append_sync(&wal, vec![entry(10, 10)]);
        drop(wal);
        let wal = Wal::open_with_spares(&dir, None, spare).unwrap();
        assert_eq!(
            wal.read(9, 11).unwrap(),
            vec![entry(9, 10).1, entry(10, 10).1]
        );
        drop(wal);

        // Something other than zeros after the records of a segment that is not the newest is
        // damage: the store is refused.
        let mut bytes = std::fs::read(&path).unwrap();
        let n = bytes.len();
        bytes[n - 1] = 1;
        std::fs::write(&path, &bytes).unwrap();
        let err = Wal::open_with_spares(&dir, None, spare)
            .err()
            .expect("refused")
            .to_string();
        assert!(err.contains("damaged"), "{err}");
    }
}
