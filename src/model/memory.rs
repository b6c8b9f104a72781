//! A memory: a note an agent keeps, full-text searchable, identified by a ULID.

use super::{Stamp, UnixNanos};
use serde::{Deserialize, Serialize};

/// The categories of the original aide. An empty category means `learning`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Category {
    #[default]
    Learning,
    Decision,
    Issue,
    Discovery,
    Blocker,
    Abandoned,
    Gotcha,
    Pattern,
    Session,
}

impl Category {
    /// Every category, in the order the original documents them.
    pub const ALL: [Category; 9] = [
        Category::Learning,
        Category::Decision,
        Category::Issue,
        Category::Discovery,
        Category::Blocker,
        Category::Abandoned,
        Category::Gotcha,
        Category::Pattern,
        Category::Session,
    ];

    /// The category's name on the wire and in the CLI.
    pub fn as_str(self) -> &'static str {
        match self {
            Category::Learning => "learning",
            Category::Decision => "decision",
            Category::Issue => "issue",
            Category::Discovery => "discovery",
            Category::Blocker => "blocker",
            Category::Abandoned => "abandoned",
            Category::Gotcha => "gotcha",
            Category::Pattern => "pattern",
            Category::Session => "session",
        }
    }

    /// Parses a category name; the empty string is `learning`.
    pub fn parse(s: &str) -> Option<Category> {
        if s.is_empty() {
            return Some(Category::Learning);
        }
        Category::ALL.into_iter().find(|c| c.as_str() == s)
    }

    /// The valid names, comma separated, for error messages.
    pub fn names() -> String {
        Category::ALL.map(|c| c.as_str()).join(", ")
    }
}

/// A stored memory.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Memory {
    /// A ULID, fixed when the memory was proposed (or kept from an import).
    pub id: String,
    pub category: Category,
    pub content: String,
    pub tags: Vec<String>,
    pub priority: f32,
    pub plan: String,
    pub agent: String,
    pub namespace: String,
    pub created_at: UnixNanos,
    pub updated_at: UnixNanos,
    pub access_count: u32,
    pub last_accessed: Option<UnixNanos>,
    pub stamp: Stamp,
}

impl Memory {
    /// Whether the memory carries every one of `tags`.
    pub fn has_all_tags(&self, tags: &[String]) -> bool {
        tags.iter().all(|t| self.tags.contains(t))
    }
}
