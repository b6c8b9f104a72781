//! `aide bench`: a closed-loop load generator. N clients, each with its own connection to the
//! nearest node, issue one operation after another for a fixed time; the report gives the
//! throughput and the latency distribution (p50, p99, max) of what completed after a warm-up.

use crate::client::{Client, ClientConfig, ClientError, ReadMode};
use crate::grpc::pb::aidememory as pb;
use std::time::{Duration, Instant};

/// An operation to measure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Op {
    /// StateService.Set of a random key.
    StateSet,
    /// StateService.Get, linearizable (read index through the leader).
    StateGet,
    /// StateService.Get served by the node the client talks to.
    StateGetStale,
    /// MemoryService.Add.
    MemoryAdd,
    /// MemoryService.Search of a random word.
    MemorySearch,
    /// HealthService.Check: the call alone, answered by the node without Raft or the store.
    /// The ceiling of the transport, to set the other figures against in the same run.
    Health,
}

/// What to run.
#[derive(Debug, Clone)]
pub struct BenchConfig {
    pub endpoints: Vec<String>,
    pub project: String,
    pub op: Op,
    pub clients: usize,
    /// Connections the clients share, round robin (`None`: one per client).
    pub connections: Option<usize>,
    pub duration: Duration,
    pub warmup: Duration,
    /// Bytes of each value or memory.
    pub value_size: usize,
    /// Distinct keys (state) or memories (search) the operations pick from.
    pub keys: usize,
    /// Stop after this many operations in all (counting the warmup's), even before the duration.
    pub max_ops: Option<u64>,
    /// The keys or memories the reads pick from are already written (by an earlier run).
    pub prepared: bool,
    /// The API key to send.
    pub api_key: Option<String>,
}

/// What one run measured.
#[derive(Debug, Clone, serde::Serialize)]
pub struct BenchReport {
    pub op: Op,
    pub clients: usize,
    pub seconds: f64,
    pub ops: u64,
    pub errors: u64,
    pub ops_per_sec: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

/// A small fast generator; the benchmark needs variety, not quality.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn text(&mut self, len: usize) -> String {
        const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
        (0..len)
            .map(|_| ALPHABET[(self.next() % ALPHABET.len() as u64) as usize] as char)
            .collect()
    }
}

/// The word memory `i` is about, so a search for it finds it.
fn word(i: usize) -> String {
    let mut r = XorShift(0x9E37_79B9_7F4A_7C15 ^ (i as u64 + 1));
    format!("w{}", r.text(7))
}

fn client(cfg: &BenchConfig, mode: ReadMode) -> Result<Client, ClientError> {
    Client::new(ClientConfig {
        endpoints: cfg.endpoints.clone(),
        project: Some(cfg.project.clone()),
        read_mode: mode,
        min_index: None,
        min_index_is_hint: false,
        timeout: Duration::from_secs(10),
        api_key: cfg.api_key.clone(),
    })
}

/// Writes the keys or memories the read operations need.
async fn prepare(cfg: &BenchConfig) -> Result<(), ClientError> {
    let c = client(cfg, ReadMode::Linearizable)?;
    let mut r = XorShift(42);
    match cfg.op {
        Op::StateGet | Op::StateGetStale => {
            for i in 0..cfg.keys {
                c.state_set(pb::StateSetRequest {
                    key: format!("k{i}"),
                    value: r.text(cfg.value_size),
                    ..Default::default()
                })
                .await?;
            }
        }
        Op::MemorySearch => {
            for i in 0..cfg.keys {
                let content = format!("{} {}", word(i), r.text(cfg.value_size.saturating_sub(10)));
                c.memory_add(pb::MemoryAddRequest {
                    content,
                    ..Default::default()
                })
                .await?;
            }
        }
        Op::StateSet | Op::MemoryAdd | Op::Health => {}
    }
    Ok(())
}

async fn one(c: &Client, op: Op, r: &mut XorShift, cfg: &BenchConfig) -> Result<(), ClientError> {
    let key = (r.next() % cfg.keys.max(1) as u64) as usize;
    match op {
        Op::StateSet => {
            c.state_set(pb::StateSetRequest {
                key: format!("k{key}"),
                value: r.text(cfg.value_size),
                ..Default::default()
            })
            .await?;
        }
        Op::StateGet | Op::StateGetStale => {
            c.state_get(pb::StateGetRequest {
                key: format!("k{key}"),
                ..Default::default()
            })
            .await?;
        }
        Op::MemoryAdd => {
            c.memory_add(pb::MemoryAddRequest {
                content: r.text(cfg.value_size),
                ..Default::default()
            })
            .await?;
        }
        Op::MemorySearch => {
            c.memory_search(pb::MemorySearchRequest {
                query: word(key),
                limit: 10,
                ..Default::default()
            })
            .await?;
        }
        Op::Health => {
            c.health(pb::HealthCheckRequest {}).await?;
        }
    }
    Ok(())
}

/// Runs one benchmark.
pub async fn run(cfg: BenchConfig) -> Result<BenchReport, ClientError> {
    if !cfg.prepared {
        prepare(&cfg).await?;
    }
    let mode = if cfg.op == Op::StateGetStale {
        ReadMode::Stale
    } else {
        ReadMode::Linearizable
    };
    let start = Instant::now();
    let measure_from = start + cfg.warmup;
    let end = measure_from + cfg.duration;
    let started = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let mut workers = Vec::new();
    let mut connections: Vec<Client> = Vec::new();
    let shared = cfg.connections.map(|n| n.max(1));
    for i in 0..cfg.clients.max(1) {
        let started = started.clone();
        let c = match shared {
            Some(n) if connections.len() >= n => connections[i % n].clone(),
            _ => {
                let c = client(&cfg, mode)?;
                if cfg.endpoints.len() > 1 {
                    c.probe().await;
                }
                connections.push(c.clone());
                c
            }
        };
        let cfg = cfg.clone();
        workers.push(tokio::spawn(async move {
            let mut r = XorShift(0x2545_F491_4F6C_DD1D ^ (i as u64 + 1));
            let mut latencies: Vec<u32> = Vec::new();
            let mut errors = 0u64;
            loop {
                let t0 = Instant::now();
                if t0 >= end {
                    break;
                }
                let n = started.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                if cfg.max_ops.is_some_and(|max| n >= max) {
                    break;
                }
                let outcome = one(&c, cfg.op, &mut r, &cfg).await;
                if t0 >= measure_from {
                    if let Err(e) = &outcome {
                        if errors == 0 {
                            eprintln!("client {i}: a call failed: {e}");
                        }
                    }
                    if outcome.is_ok() {
                        latencies.push(t0.elapsed().as_micros().min(u32::MAX as u128) as u32);
                    } else {
                        errors += 1;
                    }
                }
            }
            (latencies, errors)
        }));
    }
    let mut all = Vec::new();
    let mut errors = 0;
    for w in workers {
        let (l, e) = w.await.map_err(|e| ClientError {
            code: tonic::Code::Internal,
            message: e.to_string(),
        })?;
        all.extend(l);
        errors += e;
    }
    all.sort_unstable();
    let pct = |p: f64| -> f64 {
        if all.is_empty() {
            return 0.0;
        }
        let i = ((all.len() as f64 - 1.0) * p).round() as usize;
        f64::from(all[i]) / 1000.0
    };
    // The measured time: up to the end, or to when the last worker stopped at --max-ops.
    let stopped = Instant::now().min(end);
    let seconds = stopped
        .saturating_duration_since(measure_from)
        .as_secs_f64()
        .max(1e-9);
    Ok(BenchReport {
        op: cfg.op,
        clients: cfg.clients,
        seconds,
        ops: all.len() as u64,
        errors,
        ops_per_sec: all.len() as f64 / seconds,
        p50_ms: pct(0.50),
        p99_ms: pct(0.99),
        max_ms: all.last().map_or(0.0, |m| f64::from(*m) / 1000.0),
    })
}
