//! `aide bench`: measure throughput and latency of a node or cluster.

use super::print::Printer;
use super::CliError;
use crate::bench::{self, BenchConfig, Op};
use std::time::Duration;

#[derive(Debug, clap::Args)]
pub struct BenchArgs {
    /// Operations to measure, one after another.
    #[arg(long, value_enum, value_delimiter = ',', default_values_t = [Op::StateSet, Op::StateGet, Op::StateGetStale, Op::MemoryAdd, Op::MemorySearch])]
    pub ops: Vec<Op>,
    /// Concurrent clients, each with its own connection.
    #[arg(long, default_value_t = 64)]
    pub clients: usize,
    /// Connections the clients share (HTTP/2 multiplexes their calls), as the agents of one
    /// session share their MCP server's connection; default: one per client.
    #[arg(long)]
    pub connections: Option<usize>,
    /// How long to measure each operation, such as 10s.
    #[arg(long, default_value = "10s")]
    pub duration: String,
    /// Time to run before measuring.
    #[arg(long, default_value = "2s")]
    pub warmup: String,
    /// Bytes per value or memory.
    #[arg(long, default_value_t = 256)]
    pub value_size: usize,
    /// Distinct keys (or memories to search) to pick from.
    #[arg(long, default_value_t = 1000)]
    pub keys: usize,
    /// Stop after this many operations of each kind, even before the duration is up.
    #[arg(long)]
    pub max_ops: Option<u64>,
    /// The keys (or memories) the reads pick from are already there, written by an earlier run
    /// with the same --project and --keys: do not write them first.
    #[arg(long)]
    pub prepared: bool,
}

fn duration(flag: &str, s: &str) -> Result<Duration, CliError> {
    humantime::parse_duration(s)
        .map_err(|e| CliError::Usage(format!("--{flag}: {s:?} is not a duration ({e})")))
}

pub async fn run(
    args: BenchArgs,
    endpoints: Vec<String>,
    project: Option<String>,
    api_key: Option<String>,
    out: &Printer,
) -> Result<(), CliError> {
    for (flag, value) in [
        ("clients", Some(args.clients)),
        ("connections", args.connections),
        ("keys", Some(args.keys)),
    ] {
        if value == Some(0) {
            return Err(CliError::Usage(format!("--{flag} must be at least 1")));
        }
    }
    let project = project
        .unwrap_or_else(|| format!("bench-{}", ulid::Ulid::new().to_string().to_lowercase()));
    let mut reports = Vec::new();
    for op in args.ops {
        let report = bench::run(BenchConfig {
            endpoints: endpoints.clone(),
            project: project.clone(),
            op,
            clients: args.clients,
            connections: args.connections,
            duration: duration("duration", &args.duration)?,
            warmup: duration("warmup", &args.warmup)?,
            value_size: args.value_size,
            keys: args.keys,
            max_ops: args.max_ops,
            prepared: args.prepared,
            api_key: api_key.clone(),
        })
        .await?;
        if !out.json() {
            println!(
                "{:<16} clients {:>3}  {:>9.0} ops/s  p50 {:>7.3} ms  p99 {:>7.3} ms  max {:>8.3} ms  ({} ops, {} errors)",
                serde_json::to_value(report.op).ok().and_then(|v| v.as_str().map(String::from)).unwrap_or_default(),
                report.clients,
                report.ops_per_sec,
                report.p50_ms,
                report.p99_ms,
                report.max_ms,
                report.ops,
                report.errors
            );
        }
        reports.push(report);
    }
    if out.json() {
        out.value(&serde_json::to_value(&reports).unwrap_or_default());
    }
    // A run in which every call failed measured nothing.
    if let Some(r) = reports.iter().find(|r| r.ops == 0 && r.errors > 0) {
        let op = serde_json::to_value(r.op)
            .ok()
            .and_then(|v| v.as_str().map(String::from))
            .unwrap_or_default();
        return Err(CliError::Failed(format!(
            "every {op} call failed ({} errors; the first is printed above): nothing was measured",
            r.errors
        )));
    }
    Ok(())
}
