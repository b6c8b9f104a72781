//! Full-text search over memories with tantivy. The index is derived from the store: the state
//! machine sends it every memory change after apply, one indexer thread owns the only
//! `IndexWriter` and commits on a cadence (each commit's payload records the log index it
//! reflects), and a search first makes sure every memory change applied before it is committed.
//! At start a missing, damaged or stale index is rebuilt from the store.

mod query;

use crate::model::Memory;
use crate::storage::{records, Store, StoreError};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::time::Duration;
use tantivy::collector::TopDocs;
use tantivy::schema::{Field, Schema, TextFieldIndexing, TextOptions, Value, STORED, STRING};
use tantivy::tokenizer::{
    AsciiFoldingFilter, LowerCaser, RemoveLongFilter, SimpleTokenizer, TextAnalyzer,
};
use tantivy::{doc, Index, IndexReader, IndexWriter, ReloadPolicy, TantivyDocument, Term};
use tokio::sync::watch;

/// How often pending changes are committed when no search asks for them sooner.
pub const COMMIT_INTERVAL: Duration = Duration::from_secs(1);
const WRITER_HEAP_BYTES: usize = 32 * 1024 * 1024;
const ANALYZER: &str = "aide_text";

/// What can go wrong in the search index.
#[derive(Debug, thiserror::Error)]
pub enum SearchError {
    #[error("search index: {0}")]
    Tantivy(#[from] tantivy::TantivyError),
    #[error("search index: {0}")]
    Store(#[from] StoreError),
    #[error("search index: {0}")]
    Io(#[from] std::io::Error),
    #[error("the search index did not catch up with the store within {0:?}")]
    Lagging(Duration),
    #[error("the search index is shut down")]
    Closed,
}

/// A change to the index.
#[derive(Debug, Clone)]
pub enum IndexOp {
    Put { project: String, memory: Memory },
    Remove { project: String, id: String },
}

enum IndexMsg {
    Changes {
        index: u64,
        ops: Vec<IndexOp>,
    },
    Rebuild {
        index: u64,
    },
    Flush,
    Shutdown {
        applied: u64,
        done: std::sync::mpsc::Sender<()>,
    },
}

#[derive(Clone, Copy)]
struct Fields {
    key: Field,
    project: Field,
    id: Field,
    content: Field,
    category: Field,
    tags: Field,
}

impl Fields {
    fn schema() -> Schema {
        let mut b = Schema::builder();
        b.add_text_field("key", STRING);
        b.add_text_field("project", STRING);
        b.add_text_field("id", STRING | STORED);
        let text = TextOptions::default().set_indexing_options(
            TextFieldIndexing::default()
                .set_tokenizer(ANALYZER)
                .set_index_option(tantivy::schema::IndexRecordOption::WithFreqsAndPositions),
        );
        b.add_text_field("content", text);
        b.add_text_field("category", STRING);
        b.add_text_field("tags", STRING);
        b.build()
    }

    fn of(schema: &Schema) -> tantivy::Result<Fields> {
        Ok(Fields {
            key: schema.get_field("key")?,
            project: schema.get_field("project")?,
            id: schema.get_field("id")?,
            content: schema.get_field("content")?,
            category: schema.get_field("category")?,
            tags: schema.get_field("tags")?,
        })
    }
}

fn analyzer() -> TextAnalyzer {
    TextAnalyzer::builder(SimpleTokenizer::default())
        .filter(RemoveLongFilter::limit(48))
        .filter(LowerCaser)
        .filter(AsciiFoldingFilter)
        .build()
}

fn doc_key(project: &str, id: &str) -> String {
    format!("{project}\u{0}{id}")
}

/// One search hit.
#[derive(Debug, Clone, PartialEq)]
pub struct Hit {
    pub score: f32,
    pub id: String,
}

/// What a search asks for.
#[derive(Debug, Clone, Default)]
pub struct SearchRequest {
    pub project: String,
    pub query: String,
    pub category: Option<String>,
    pub tags: Vec<String>,
    pub limit: usize,
}

/// The search index of one node.
pub struct SearchIndex {
    reader: IndexReader,
    fields: Fields,
    tx: mpsc::Sender<IndexMsg>,
    /// The newest log index whose memory changes are committed and searchable.
    committed: watch::Receiver<u64>,
    /// The newest log index that changed a memory.
    dirty: AtomicU64,
    thread: std::sync::Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl SearchIndex {
    /// Opens the index of `store`, whose state machine has applied up to `applied`. An index that
    /// is missing, cannot be opened, or reflects another applied index is rebuilt from the store.
    pub fn open(store: &Store, applied: u64) -> Result<SearchIndex, SearchError> {
        let dir = store.search_dir();
        let (index, reflected) = match open_existing(&dir) {
            Ok(found) => found,
            Err(e) => {
                if dir.exists() {
                    tracing::warn!(dir = %dir.display(), error = %e,
                        "the search index cannot be opened; rebuilding it from the store");
                    std::fs::remove_dir_all(&dir)?;
                }
                (create(&dir)?, None)
            }
        };
        let fields = Fields::of(&index.schema())?;
        let mut writer: IndexWriter = index.writer_with_num_threads(1, WRITER_HEAP_BYTES)?;
        if reflected != Some(applied) {
            let count = rebuild(&mut writer, fields, &store.state, applied)?;
            tracing::info!(
                memories = count,
                applied,
                "search index rebuilt from the store"
            );
        }
        let reader = index
            .reader_builder()
            .reload_policy(ReloadPolicy::Manual)
            .try_into()?;
        let (committed_tx, committed) = watch::channel(applied);
        let (tx, rx) = mpsc::channel();
        let indexer = Indexer {
            writer,
            reader: reader.clone(),
            fields,
            state: store.state.clone(),
            committed: committed_tx,
            pending: None,
        };
        let thread = std::thread::Builder::new()
            .name("aide-indexer".into())
            .spawn(move || indexer.run(rx))?;
        Ok(SearchIndex {
            reader,
            fields,
            tx,
            committed,
            dirty: AtomicU64::new(applied),
            thread: std::sync::Mutex::new(Some(thread)),
        })
    }

    /// Hands the memory changes applied at log `index` to the indexer.
    pub fn changed(&self, index: u64, ops: Vec<IndexOp>) {
        if ops.is_empty() {
            return;
        }
        self.dirty.fetch_max(index, Ordering::SeqCst);
        let _ = self.tx.send(IndexMsg::Changes { index, ops });
    }

    /// Rebuilds the index from the store, which now reflects log `index` (after a snapshot install).
    pub fn rebuild(&self, index: u64) {
        self.dirty.fetch_max(index, Ordering::SeqCst);
        let _ = self.tx.send(IndexMsg::Rebuild { index });
    }

    /// Searches, after every memory change applied so far is searchable. Returns ids by score.
    pub async fn search(&self, req: &SearchRequest) -> Result<Vec<Hit>, SearchError> {
        self.caught_up(Duration::from_secs(10)).await?;
        let searcher = self.reader.searcher();
        let fields = self.fields;
        let req = req.clone();
        tokio::task::spawn_blocking(move || {
            let q = query::build(fields, &mut analyzer(), &req);
            let Some(q) = q else { return Ok(Vec::new()) };
            let top =
                searcher.search(&q, &TopDocs::with_limit(req.limit.max(1)).order_by_score())?;
            let mut hits = Vec::with_capacity(top.len());
            for (score, addr) in top {
                let doc: TantivyDocument = searcher.doc(addr)?;
                if let Some(id) = doc.get_first(fields.id).and_then(|v| v.as_str()) {
                    hits.push(Hit {
                        score,
                        id: id.to_string(),
                    });
                }
            }
            Ok(hits)
        })
        .await
        .map_err(|_| SearchError::Closed)?
    }

    async fn caught_up(&self, within: Duration) -> Result<(), SearchError> {
        let target = self.dirty.load(Ordering::SeqCst);
        if *self.committed.borrow() >= target {
            return Ok(());
        }
        self.tx
            .send(IndexMsg::Flush)
            .map_err(|_| SearchError::Closed)?;
        let mut committed = self.committed.clone();
        let reached = async { committed.wait_for(|c| *c >= target).await.map(|_| ()) };
        match tokio::time::timeout(within, reached).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(_)) => Err(SearchError::Closed),
            Err(_) => Err(SearchError::Lagging(within)),
        }
    }

    /// Commits what is pending with `applied` as the reflected index and stops the indexer.
    /// Call it once the state machine has stopped.
    pub fn shutdown(&self, applied: u64) {
        let (done, wait) = std::sync::mpsc::channel();
        if self.tx.send(IndexMsg::Shutdown { applied, done }).is_ok() {
            let _ = wait.recv_timeout(Duration::from_secs(30));
        }
        if let Some(t) = self.thread.lock().ok().and_then(|mut t| t.take()) {
            let _ = t.join();
        }
    }
}

fn create(dir: &Path) -> Result<Index, SearchError> {
    std::fs::create_dir_all(dir)?;
    let index = Index::create_in_dir(dir, Fields::schema())?;
    index.tokenizers().register(ANALYZER, analyzer());
    Ok(index)
}

/// Opens an index and reads the applied index its last commit reflects.
fn open_existing(dir: &PathBuf) -> Result<(Index, Option<u64>), SearchError> {
    let index = Index::open_in_dir(dir)?;
    index.tokenizers().register(ANALYZER, analyzer());
    Fields::of(&index.schema())?;
    let reflected = index
        .load_metas()?
        .payload
        .and_then(|p| p.strip_prefix("applied=").and_then(|n| n.parse().ok()));
    Ok((index, reflected))
}

fn document(fields: Fields, project: &str, m: &Memory) -> TantivyDocument {
    let mut d = doc!(
        fields.key => doc_key(project, &m.id),
        fields.project => project,
        fields.id => m.id.as_str(),
        fields.content => m.content.as_str(),
        fields.category => m.category.as_str(),
    );
    for t in &m.tags {
        d.add_text(fields.tags, t);
    }
    d
}

fn commit(writer: &mut IndexWriter, applied: u64) -> Result<(), SearchError> {
    let mut prepared = writer.prepare_commit()?;
    prepared.set_payload(&format!("applied={applied}"));
    prepared.commit()?;
    Ok(())
}

/// Replaces the whole index with the memories in `state`, committed as reflecting `applied`.
fn rebuild(
    writer: &mut IndexWriter,
    fields: Fields,
    state: &sled::Tree,
    applied: u64,
) -> Result<usize, SearchError> {
    writer.delete_all_documents()?;
    let mut count = 0;
    let mut failed = None;
    records::all_memories(state, |project, m| {
        if failed.is_none() {
            match writer.add_document(document(fields, project, &m)) {
                Ok(_) => count += 1,
                Err(e) => failed = Some(e),
            }
        }
    })?;
    if let Some(e) = failed {
        return Err(e.into());
    }
    commit(writer, applied)?;
    Ok(count)
}

/// The thread that owns the `IndexWriter`.
struct Indexer {
    writer: IndexWriter,
    reader: IndexReader,
    fields: Fields,
    state: sled::Tree,
    committed: watch::Sender<u64>,
    /// The newest log index of changes added but not committed.
    pending: Option<u64>,
}

impl Indexer {
    fn run(mut self, rx: mpsc::Receiver<IndexMsg>) {
        let mut last_commit = std::time::Instant::now();
        loop {
            let first = match rx.recv_timeout(COMMIT_INTERVAL) {
                Ok(m) => m,
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    self.commit_pending();
                    last_commit = std::time::Instant::now();
                    continue;
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    self.commit_pending();
                    return;
                }
            };
            // Everything already queued goes into the same commit.
            let mut batch = vec![first];
            batch.extend(rx.try_iter());
            let mut flush = false;
            for msg in batch {
                match msg {
                    IndexMsg::Changes { index, ops } => self.add(index, ops),
                    IndexMsg::Rebuild { index } => self.rebuild(index),
                    IndexMsg::Flush => flush = true,
                    IndexMsg::Shutdown { applied, done } => {
                        if let Err(e) = commit(&mut self.writer, applied) {
                            tracing::error!(error = %e, "search index final commit failed");
                        }
                        let _ = done.send(());
                        return;
                    }
                }
            }
            if flush || (self.pending.is_some() && last_commit.elapsed() >= COMMIT_INTERVAL) {
                self.commit_pending();
                last_commit = std::time::Instant::now();
            }
        }
    }

    fn rebuild(&mut self, index: u64) {
        self.pending = None;
        match rebuild(&mut self.writer, self.fields, &self.state, index) {
            Ok(count) => {
                tracing::info!(memories = count, index, "search index rebuilt");
                self.published(index);
            }
            Err(e) => tracing::error!(error = %e, "search index rebuild failed"),
        }
    }

    fn add(&mut self, index: u64, ops: Vec<IndexOp>) {
        for op in ops {
            let result = match op {
                IndexOp::Put { project, memory } => {
                    self.writer.delete_term(Term::from_field_text(
                        self.fields.key,
                        &doc_key(&project, &memory.id),
                    ));
                    self.writer
                        .add_document(document(self.fields, &project, &memory))
                        .map(|_| ())
                }
                IndexOp::Remove { project, id } => {
                    self.writer.delete_term(Term::from_field_text(
                        self.fields.key,
                        &doc_key(&project, &id),
                    ));
                    Ok(())
                }
            };
            if let Err(e) = result {
                tracing::error!(error = %e, "search index update failed");
            }
        }
        self.pending = Some(self.pending.map_or(index, |p| p.max(index)));
    }

    fn commit_pending(&mut self) {
        let Some(index) = self.pending.take() else {
            return;
        };
        match commit(&mut self.writer, index) {
            Ok(()) => self.published(index),
            Err(e) => tracing::error!(error = %e, "search index commit failed"),
        }
    }

    fn published(&mut self, index: u64) {
        if let Err(e) = self.reader.reload() {
            tracing::error!(error = %e, "search index reload failed");
        }
        self.committed.send_modify(|c| *c = (*c).max(index));
    }
}
