//! MemoryService: add, get, search, list, delete, clear, touch.

use super::convert::{self, from_timestamp};
use super::meta::{request_meta, respond};
use super::pb::aidememory::{self as pb, memory_service_server::MemoryService};
use super::{unexpected, Api};
use crate::command::validate::{self, Invalid, MAX_LIST_ITEMS, MAX_TOUCH_IDS};
use crate::command::{Command, CommandResult};
use crate::model::{Category, Memory};
use crate::search::SearchRequest;
use crate::storage::records;
use std::time::{Duration, UNIX_EPOCH};
use tonic::{Request, Response, Status};

/// Results when a search asks for no limit.
pub const DEFAULT_SEARCH_LIMIT: usize = 10;
/// Results when a list asks for no limit.
pub const DEFAULT_LIST_LIMIT: usize = 50;

fn category(s: &str) -> Result<Category, Invalid> {
    Category::parse(s).ok_or_else(|| {
        Invalid::new(
            "category",
            format!("{s:?} is not one of {}", Category::names()),
        )
    })
}

fn optional_category(s: &str) -> Result<Option<Category>, Invalid> {
    if s.is_empty() {
        Ok(None)
    } else {
        category(s).map(Some)
    }
}

/// A memory id: a ULID, returned in its canonical form.
pub fn memory_id(s: &str) -> Result<String, Invalid> {
    validate::required("id", s)?;
    ulid::Ulid::from_string(s)
        .map(|u| u.to_string())
        .map_err(|e| Invalid::new("id", format!("{s:?} is not a ULID ({e})")))
}

fn new_memory(r: pb::MemoryAddRequest, now: i64) -> Result<Memory, Invalid> {
    validate::required("content", &r.content)?;
    validate::text("content", &r.content)?;
    let category = category(&r.category)?;
    validate::names("tags", &r.tags, MAX_LIST_ITEMS)?;
    let id = if r.id.is_empty() {
        let at = UNIX_EPOCH + Duration::from_nanos(now.max(0) as u64);
        ulid::Ulid::from_datetime(at).to_string()
    } else {
        memory_id(&r.id)?
    };
    let created_at = from_timestamp(r.created_at.as_ref()).unwrap_or(now);
    let updated_at = from_timestamp(r.updated_at.as_ref()).unwrap_or(created_at.max(now));
    Ok(Memory {
        id,
        category,
        content: r.content,
        tags: r.tags,
        priority: 0.0,
        plan: String::new(),
        agent: String::new(),
        namespace: String::new(),
        created_at,
        updated_at,
        access_count: 0,
        last_accessed: None,
        stamp: Default::default(),
    })
}

#[tonic::async_trait]
impl MemoryService for Api {
    async fn add(
        &self,
        req: Request<pb::MemoryAddRequest>,
    ) -> Result<Response<pb::MemoryAddResponse>, Status> {
        let meta = request_meta(&req)?;
        let r = req.into_inner();
        let (res, index) = self
            .write(&meta, |t| Ok(Command::MemoryAdd(new_memory(r, t.now)?)))
            .await?;
        let CommandResult::Memory(m) = res else {
            return Err(unexpected(res));
        };
        Ok(respond(
            pb::MemoryAddResponse {
                memory: Some(convert::memory(&m)),
            },
            index,
        ))
    }

    async fn get(
        &self,
        req: Request<pb::MemoryGetRequest>,
    ) -> Result<Response<pb::MemoryGetResponse>, Status> {
        let meta = request_meta(&req)?;
        let id = memory_id(&req.get_ref().id)?;
        let (m, index) = self
            .read(&meta, |s| {
                Ok(records::memory(&s.state, meta.project(), &id)?)
            })
            .await?;
        let m = m.ok_or_else(|| Status::not_found(format!("memory {id} not found")))?;
        Ok(respond(
            pb::MemoryGetResponse {
                memory: Some(convert::memory(&m)),
            },
            index,
        ))
    }

    async fn search(
        &self,
        req: Request<pb::MemorySearchRequest>,
    ) -> Result<Response<pb::MemorySearchResponse>, Status> {
        let meta = request_meta(&req)?;
        let r = req.into_inner();
        validate::required("query", &r.query)?;
        validate::text("query", &r.query)?;
        let limit = validate::limit(r.limit, DEFAULT_SEARCH_LIMIT)?;
        let category = optional_category(&r.category)?;
        validate::names("tags", &r.tags, MAX_LIST_ITEMS)?;
        if !r.min_score.is_finite() || r.min_score < 0.0 {
            return Err(
                Invalid::new("min_score", format!("{} must be 0 or more", r.min_score)).into(),
            );
        }
        let index = self.barrier(&meta).await?;
        let hits = self
            .node
            .search
            .search(&SearchRequest {
                project: meta.project().to_string(),
                query: r.query,
                category: category.map(|c| c.as_str().to_string()),
                tags: r.tags,
                limit,
            })
            .await
            .map_err(crate::node::NodeError::from)?;
        let mut out = pb::MemorySearchResponse::default();
        for hit in hits.into_iter().filter(|h| h.score >= r.min_score) {
            if let Some(m) = records::memory(&self.node.store.state, meta.project(), &hit.id)? {
                out.memories.push(convert::memory(&m));
                out.scores.push(hit.score);
            }
        }
        Ok(respond(out, index))
    }

    async fn list(
        &self,
        req: Request<pb::MemoryListRequest>,
    ) -> Result<Response<pb::MemoryListResponse>, Status> {
        let meta = request_meta(&req)?;
        let r = req.into_inner();
        let limit = validate::limit(r.limit, DEFAULT_LIST_LIMIT)?;
        let category = optional_category(&r.category)?;
        validate::names("tags", &r.tags, MAX_LIST_ITEMS)?;
        let (list, index) = self
            .read(&meta, |s| {
                Ok(records::memories(
                    &s.state,
                    meta.project(),
                    category,
                    &r.tags,
                    limit,
                )?)
            })
            .await?;
        Ok(respond(
            pb::MemoryListResponse {
                memories: list.iter().map(convert::memory).collect(),
            },
            index,
        ))
    }

    async fn delete(
        &self,
        req: Request<pb::MemoryDeleteRequest>,
    ) -> Result<Response<pb::MemoryDeleteResponse>, Status> {
        let meta = request_meta(&req)?;
        let id = memory_id(&req.get_ref().id)?;
        let (res, index) = self
            .write(&meta, |_| Ok(Command::MemoryDelete { id }))
            .await?;
        let CommandResult::Done(success) = res else {
            return Err(unexpected(res));
        };
        Ok(respond(pb::MemoryDeleteResponse { success }, index))
    }

    async fn clear(
        &self,
        req: Request<pb::MemoryClearRequest>,
    ) -> Result<Response<pb::MemoryClearResponse>, Status> {
        let meta = request_meta(&req)?;
        let (res, index) = self.write(&meta, |_| Ok(Command::MemoryClear)).await?;
        let CommandResult::Count(n) = res else {
            return Err(unexpected(res));
        };
        Ok(respond(pb::MemoryClearResponse { count: count(n) }, index))
    }

    async fn touch(
        &self,
        req: Request<pb::MemoryTouchRequest>,
    ) -> Result<Response<pb::MemoryTouchResponse>, Status> {
        let meta = request_meta(&req)?;
        let r = req.into_inner();
        if r.ids.len() > MAX_TOUCH_IDS {
            return Err(Invalid::new(
                "ids",
                format!(
                    "has {} ids, more than the limit of {MAX_TOUCH_IDS}",
                    r.ids.len()
                ),
            )
            .into());
        }
        let ids = r
            .ids
            .iter()
            .map(|i| memory_id(i))
            .collect::<Result<Vec<_>, _>>()?;
        let (res, index) = self
            .write(&meta, |_| Ok(Command::MemoryTouch { ids }))
            .await?;
        let CommandResult::Count(n) = res else {
            return Err(unexpected(res));
        };
        Ok(respond(
            pb::MemoryTouchResponse { touched: count(n) },
            index,
        ))
    }
}

/// A count as the int32 the API reports.
pub(super) fn count(n: u64) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}
