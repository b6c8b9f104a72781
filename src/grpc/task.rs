//! TaskService: a swarm's task queue. A lost claim is `success = false`, not an error.

use super::convert;
use super::memory::count;
use super::meta::{request_meta, respond};
use super::pb::aidememory::{self as pb, task_service_server::TaskService};
use super::{unexpected, Api};
use crate::command::validate::{self, Invalid};
use crate::command::{Command, CommandResult};
use crate::model::{Task, TaskStatus};
use crate::storage::records;
use tonic::{Request, Response, Status};

fn status(s: &str) -> Result<Option<TaskStatus>, Invalid> {
    if s.is_empty() {
        return Ok(None);
    }
    TaskStatus::parse(s).map(Some).ok_or_else(|| {
        Invalid::new(
            "status",
            format!("{s:?} is not one of {}", TaskStatus::names()),
        )
    })
}

/// A new task id: 16 random lowercase hex digits, so that its first 8 tell tasks apart.
fn new_task_id() -> String {
    format!("{:016x}", ulid::Ulid::new().random() as u64)
}

/// The parts of a task operation's result.
fn task_result(res: CommandResult) -> Result<(Option<pb::Task>, bool, String), Status> {
    match res {
        CommandResult::Task {
            task,
            success,
            error,
        } => Ok((task.as_ref().map(convert::task), success, error)),
        other => Err(unexpected(other)),
    }
}

#[tonic::async_trait]
impl TaskService for Api {
    async fn create(
        &self,
        req: Request<pb::TaskCreateRequest>,
    ) -> Result<Response<pb::TaskCreateResponse>, Status> {
        let meta = request_meta(&req)?;
        let r = req.into_inner();
        let (res, index) = self
            .write(&meta, |t| {
                validate::required("title", &r.title)?;
                validate::text("title", &r.title)?;
                validate::text("description", &r.description)?;
                validate::name("parent_session_id", &r.parent_session_id)?;
                Ok(Command::TaskCreate(Task {
                    id: new_task_id(),
                    title: r.title,
                    description: r.description,
                    status: TaskStatus::Pending,
                    claimed_by: String::new(),
                    worktree: String::new(),
                    result: String::new(),
                    created_at: t.now,
                    claimed_at: None,
                    completed_at: None,
                    parent_session_id: r.parent_session_id,
                    stamp: Default::default(),
                }))
            })
            .await?;
        let (task, _, _) = task_result(res)?;
        Ok(respond(pb::TaskCreateResponse { task }, index))
    }

    async fn get(
        &self,
        req: Request<pb::TaskGetRequest>,
    ) -> Result<Response<pb::TaskGetResponse>, Status> {
        let meta = request_meta(&req)?;
        let id = req.into_inner().id;
        validate::required_name("id", &id)?;
        let (t, index) = self
            .read(&meta, |s| Ok(records::task(&s.state, meta.project(), &id)?))
            .await?;
        Ok(respond(
            pb::TaskGetResponse {
                found: t.is_some(),
                task: t.as_ref().map(convert::task),
            },
            index,
        ))
    }

    async fn list(
        &self,
        req: Request<pb::TaskListRequest>,
    ) -> Result<Response<pb::TaskListResponse>, Status> {
        let meta = request_meta(&req)?;
        let r = req.into_inner();
        let status = status(&r.status)?;
        validate::name("parent_session_id", &r.parent_session_id)?;
        let (list, index) = self
            .read(&meta, |s| {
                Ok(records::tasks(
                    &s.state,
                    meta.project(),
                    status,
                    &r.parent_session_id,
                )?)
            })
            .await?;
        Ok(respond(
            pb::TaskListResponse {
                tasks: list.iter().map(convert::task).collect(),
            },
            index,
        ))
    }

    async fn claim(
        &self,
        req: Request<pb::TaskClaimRequest>,
    ) -> Result<Response<pb::TaskClaimResponse>, Status> {
        let meta = request_meta(&req)?;
        let r = req.into_inner();
        validate::required_name("task_id", &r.task_id)?;
        validate::required_name("agent_id", &r.agent_id)?;
        validate::name("worktree", &r.worktree)?;
        let (res, index) = self
            .write(&meta, |_| {
                Ok(Command::TaskClaim {
                    id: r.task_id,
                    agent: r.agent_id,
                    worktree: r.worktree,
                })
            })
            .await?;
        let (task, success, error) = task_result(res)?;
        Ok(respond(
            pb::TaskClaimResponse {
                task,
                success,
                error,
            },
            index,
        ))
    }

    async fn complete(
        &self,
        req: Request<pb::TaskCompleteRequest>,
    ) -> Result<Response<pb::TaskCompleteResponse>, Status> {
        let meta = request_meta(&req)?;
        let r = req.into_inner();
        validate::required_name("task_id", &r.task_id)?;
        validate::text("result", &r.result)?;
        let (res, index) = self
            .write(&meta, |_| {
                Ok(Command::TaskComplete {
                    id: r.task_id,
                    result: r.result,
                })
            })
            .await?;
        let (task, success, _) = task_result(res)?;
        Ok(respond(pb::TaskCompleteResponse { task, success }, index))
    }

    async fn update(
        &self,
        req: Request<pb::TaskUpdateRequest>,
    ) -> Result<Response<pb::TaskUpdateResponse>, Status> {
        let meta = request_meta(&req)?;
        let r = req.into_inner();
        validate::required_name("task_id", &r.task_id)?;
        let status = status(&r.status)?;
        validate::text("result", &r.result)?;
        if status.is_none() && r.result.is_empty() {
            return Err(Invalid::new("status", "give a status or a result to update").into());
        }
        let result = (!r.result.is_empty()).then_some(r.result);
        let (res, index) = self
            .write(&meta, |_| {
                Ok(Command::TaskUpdate {
                    id: r.task_id,
                    status,
                    result,
                })
            })
            .await?;
        let (task, success, _) = task_result(res)?;
        Ok(respond(pb::TaskUpdateResponse { task, success }, index))
    }

    async fn delete(
        &self,
        req: Request<pb::TaskDeleteRequest>,
    ) -> Result<Response<pb::TaskDeleteResponse>, Status> {
        let meta = request_meta(&req)?;
        let id = req.into_inner().id;
        validate::required_name("id", &id)?;
        let (res, index) = self
            .write(&meta, |_| Ok(Command::TaskDelete { id }))
            .await?;
        let CommandResult::Done(success) = res else {
            return Err(unexpected(res));
        };
        Ok(respond(pb::TaskDeleteResponse { success }, index))
    }

    async fn clear(
        &self,
        req: Request<pb::TaskClearRequest>,
    ) -> Result<Response<pb::TaskClearResponse>, Status> {
        let meta = request_meta(&req)?;
        let status = status(&req.into_inner().status)?;
        let (res, index) = self
            .write(&meta, |_| Ok(Command::TaskClear { status }))
            .await?;
        let CommandResult::Count(n) = res else {
            return Err(unexpected(res));
        };
        Ok(respond(pb::TaskClearResponse { count: count(n) }, index))
    }
}
