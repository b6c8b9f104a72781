//! StateService: key-value state, project-wide or scoped to an agent.

use super::convert::{self, from_timestamp};
use super::memory::count;
use super::meta::{request_meta, respond};
use super::pb::aidememory::{self as pb, state_service_server::StateService};
use super::{unexpected, Api};
use crate::command::validate;
use crate::command::{Command, CommandResult};
use crate::model::{scoped_key, StateEntry};
use crate::storage::records;
use tonic::{Request, Response, Status};

/// The age `Cleanup` uses when the request gives none.
pub const DEFAULT_CLEANUP_AGE: &str = "1h";

#[tonic::async_trait]
impl StateService for Api {
    async fn get(
        &self,
        req: Request<pb::StateGetRequest>,
    ) -> Result<Response<pb::StateGetResponse>, Status> {
        let meta = request_meta(&req)?;
        let r = req.into_inner();
        validate::required_name("key", &r.key)?;
        validate::name("agent_id", &r.agent_id)?;
        let key = scoped_key(&r.agent_id, &r.key);
        let (s, index) = self
            .read(&meta, |st| {
                Ok(records::state(&st.state, meta.project(), &key)?)
            })
            .await?;
        Ok(respond(
            pb::StateGetResponse {
                found: s.is_some(),
                state: s.as_ref().map(convert::state),
            },
            index,
        ))
    }

    async fn set(
        &self,
        req: Request<pb::StateSetRequest>,
    ) -> Result<Response<pb::StateSetResponse>, Status> {
        let meta = request_meta(&req)?;
        let r = req.into_inner();
        let (res, index) = self
            .write(&meta, |t| {
                validate::required_name("key", &r.key)?;
                validate::name("agent_id", &r.agent_id)?;
                validate::text("value", &r.value)?;
                Ok(Command::StateSet(StateEntry {
                    key: scoped_key(&r.agent_id, &r.key),
                    value: r.value,
                    agent: r.agent_id,
                    updated_at: from_timestamp(r.updated_at.as_ref()).unwrap_or(t.now),
                    stamp: Default::default(),
                }))
            })
            .await?;
        let CommandResult::State(s) = res else {
            return Err(unexpected(res));
        };
        Ok(respond(
            pb::StateSetResponse {
                state: Some(convert::state(&s)),
            },
            index,
        ))
    }

    async fn list(
        &self,
        req: Request<pb::StateListRequest>,
    ) -> Result<Response<pb::StateListResponse>, Status> {
        let meta = request_meta(&req)?;
        let agent = req.into_inner().agent_id;
        validate::name("agent_id", &agent)?;
        let (list, index) = self
            .read(&meta, |st| {
                Ok(records::states(&st.state, meta.project(), &agent)?)
            })
            .await?;
        Ok(respond(
            pb::StateListResponse {
                states: list.iter().map(convert::state).collect(),
            },
            index,
        ))
    }

    async fn delete(
        &self,
        req: Request<pb::StateDeleteRequest>,
    ) -> Result<Response<pb::StateDeleteResponse>, Status> {
        let meta = request_meta(&req)?;
        let key = req.into_inner().key;
        validate::required_name("key", &key)?;
        let (res, index) = self
            .write(&meta, |_| Ok(Command::StateDelete { key }))
            .await?;
        let CommandResult::Done(success) = res else {
            return Err(unexpected(res));
        };
        Ok(respond(pb::StateDeleteResponse { success }, index))
    }

    async fn clear(
        &self,
        req: Request<pb::StateClearRequest>,
    ) -> Result<Response<pb::StateClearResponse>, Status> {
        let meta = request_meta(&req)?;
        let agent = req.into_inner().agent_id;
        validate::name("agent_id", &agent)?;
        let (res, index) = self
            .write(&meta, |_| Ok(Command::StateClear { agent }))
            .await?;
        let CommandResult::Count(n) = res else {
            return Err(unexpected(res));
        };
        Ok(respond(pb::StateClearResponse { count: count(n) }, index))
    }

    async fn cleanup(
        &self,
        req: Request<pb::StateCleanupRequest>,
    ) -> Result<Response<pb::StateCleanupResponse>, Status> {
        let meta = request_meta(&req)?;
        let mut max_age = req.into_inner().max_age;
        if max_age.trim().is_empty() {
            max_age = DEFAULT_CLEANUP_AGE.to_string();
        }
        let age = validate::duration("max_age", &max_age)?;
        let (res, index) = self
            .write(&meta, |t| {
                let age = i64::try_from(age.as_nanos()).unwrap_or(i64::MAX);
                Ok(Command::StateCleanup {
                    older_than: t.now.saturating_sub(age),
                })
            })
            .await?;
        let CommandResult::Count(n) = res else {
            return Err(unexpected(res));
        };
        Ok(respond(pb::StateCleanupResponse { count: count(n) }, index))
    }
}
