//! `aide memory`: add, get, delete, search, list, export, clear.

use super::print::{self, indent_rest, memory_json, short, Format, Printer};
use super::{split_list, CliError};
use crate::client::Client;
use crate::command::validate::MAX_LIMIT;
use crate::grpc::pb::aidememory::{self as pb, Memory};
use clap::Subcommand;
use serde_json::{json, Value};
use std::collections::BTreeMap;

#[derive(Debug, Subcommand)]
pub enum MemoryCmd {
    /// Store a memory; prints `Added memory: <id>`.
    Add {
        content: String,
        /// learning, decision, issue, discovery, blocker, abandoned, gotcha, pattern or session.
        #[arg(long, default_value = "learning")]
        category: String,
        /// Comma-separated tags, such as scope:global,project:web.
        #[arg(long)]
        tags: Option<String>,
    },
    /// Show one memory.
    Get { id: String },
    /// Delete a memory by id, or every memory with `all`.
    Delete { id: String },
    /// Search memories by relevance (word prefixes and single typos match too).
    Search {
        query: String,
        #[arg(long, default_value_t = 10, allow_negative_numbers = true)]
        limit: i32,
        /// Only results scoring at least this.
        #[arg(long)]
        min_score: Option<f32>,
        /// Print whole contents instead of one line each.
        #[arg(long)]
        full: bool,
        #[arg(long)]
        category: Option<String>,
        /// Comma-separated tags every result must carry.
        #[arg(long)]
        tags: Option<String>,
    },
    /// List memories, newest first.
    List {
        #[arg(long)]
        category: Option<String>,
        /// Comma-separated tags every memory must carry.
        #[arg(long)]
        tags: Option<String>,
        #[arg(long, default_value_t = 50, allow_negative_numbers = true)]
        limit: i32,
        /// Print whole contents instead of one line each.
        #[arg(long)]
        full: bool,
    },
    /// Print every memory as Markdown (`--format=markdown`, the default here) or JSON.
    Export,
    /// Delete every memory of the project.
    Clear,
}

fn line(m: &Memory, full: bool, score: Option<f32>) -> String {
    let content = if full {
        indent_rest(&m.content, 4)
    } else {
        short(&m.content, 100)
    };
    let score = score.map(|s| format!(" ({s:.2})")).unwrap_or_default();
    let tags = if m.tags.is_empty() {
        String::new()
    } else {
        format!("  [{}]", m.tags.join(", "))
    };
    format!("{} [{}]{score} {content}{tags}", m.id, m.category)
}

pub async fn run(cmd: MemoryCmd, c: &Client, out: &Printer) -> Result<(), CliError> {
    match cmd {
        MemoryCmd::Add {
            content,
            category,
            tags,
        } => {
            let r = c
                .memory_add(pb::MemoryAddRequest {
                    content,
                    category,
                    tags: split_list(&tags),
                    ..Default::default()
                })
                .await?;
            let m = r.memory.unwrap_or_default();
            out.either(format!("Added memory: {}", m.id), memory_json(&m));
        }
        MemoryCmd::Get { id } => {
            let m = c
                .memory_get(pb::MemoryGetRequest { id })
                .await?
                .memory
                .unwrap_or_default();
            if out.json() {
                out.value(&memory_json(&m));
            } else {
                println!("{}", m.id);
                println!("Category: {}", m.category);
                if !m.tags.is_empty() {
                    println!("Tags: {}", m.tags.join(", "));
                }
                println!(
                    "Created: {}",
                    print::rfc3339(&m.created_at).unwrap_or_default()
                );
                println!();
                println!("{}", m.content);
            }
        }
        MemoryCmd::Delete { id } if id == "all" => {
            let n = c.memory_clear(pb::MemoryClearRequest {}).await?.count;
            out.either(format!("Deleted {n} memories"), json!({ "deleted": n }));
        }
        MemoryCmd::Delete { id } => {
            let ok = c
                .memory_delete(pb::MemoryDeleteRequest { id: id.clone() })
                .await?
                .success;
            if !ok {
                return Err(CliError::NotFound(format!("memory {id} not found")));
            }
            out.either(format!("Deleted memory: {id}"), json!({ "deleted": id }));
        }
        MemoryCmd::Search {
            query,
            limit,
            min_score,
            full,
            category,
            tags,
        } => {
            let r = c
                .memory_search(pb::MemorySearchRequest {
                    query,
                    limit,
                    category: category.unwrap_or_default(),
                    tags: split_list(&tags),
                    min_score: min_score.unwrap_or(0.0),
                })
                .await?;
            if out.json() {
                let items: Vec<Value> = r
                    .memories
                    .iter()
                    .zip(r.scores.iter().copied().chain(std::iter::repeat(0.0)))
                    .map(|(m, s)| {
                        let mut v = memory_json(m);
                        v["score"] = json!(s);
                        v
                    })
                    .collect();
                out.value(&Value::Array(items));
            } else if r.memories.is_empty() {
                println!("No memories found.");
            } else {
                for (i, m) in r.memories.iter().enumerate() {
                    println!("{}", line(m, full, r.scores.get(i).copied()));
                }
            }
        }
        MemoryCmd::List {
            category,
            tags,
            limit,
            full,
        } => {
            let r = c
                .memory_list(pb::MemoryListRequest {
                    category: category.unwrap_or_default(),
                    limit,
                    tags: split_list(&tags),
                })
                .await?;
            if out.json() {
                out.value(&Value::Array(r.memories.iter().map(list_json).collect()));
            } else if r.memories.is_empty() {
                println!("No memories found.");
            } else {
                for m in &r.memories {
                    println!("{}", line(m, full, None));
                }
            }
        }
        MemoryCmd::Export => {
            let r = c
                .memory_list(pb::MemoryListRequest {
                    limit: MAX_LIMIT as i32,
                    ..Default::default()
                })
                .await?;
            if out.format == Format::Json {
                out.value(&Value::Array(r.memories.iter().map(memory_json).collect()));
            } else {
                print!("{}", markdown(&r.memories));
            }
        }
        MemoryCmd::Clear => {
            let n = c.memory_clear(pb::MemoryClearRequest {}).await?.count;
            out.either(format!("Cleared {n} memories"), json!({ "deleted": n }));
        }
    }
    Ok(())
}

/// The JSON of one `memory list` item: `{id, category, content, tags, created_at}`.
fn list_json(m: &Memory) -> Value {
    json!({
        "id": m.id,
        "category": m.category,
        "content": m.content,
        "tags": m.tags,
        "created_at": print::time_json(&m.created_at),
    })
}

/// Memories as Markdown: a section per category, newest first within it.
pub fn markdown(memories: &[Memory]) -> String {
    let mut by_category: BTreeMap<&str, Vec<&Memory>> = BTreeMap::new();
    for m in memories {
        by_category.entry(m.category.as_str()).or_default().push(m);
    }
    let mut s = String::from("# Memories\n");
    for (category, list) in by_category {
        s.push_str(&format!("\n## {category}\n\n"));
        for m in list {
            let tags = if m.tags.is_empty() {
                String::new()
            } else {
                format!(
                    " — {}",
                    m.tags
                        .iter()
                        .map(|t| format!("`{t}`"))
                        .collect::<Vec<_>>()
                        .join(" ")
                )
            };
            s.push_str(&format!(
                "- **{}** {}{tags}\n",
                print::date(&m.created_at),
                indent_rest(m.content.trim(), 2)
            ));
        }
    }
    s
}
