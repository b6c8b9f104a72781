//! DecisionService: an append-only log of decisions per topic.

use super::convert::{self, from_timestamp};
use super::memory::count;
use super::meta::{request_meta, respond};
use super::pb::aidememory::{self as pb, decision_service_server::DecisionService};
use super::{unexpected, Api};
use crate::command::validate::{self, MAX_LIST_ITEMS};
use crate::command::{Command, CommandResult};
use crate::model::Decision;
use crate::storage::records;
use tonic::{Request, Response, Status};

#[tonic::async_trait]
impl DecisionService for Api {
    async fn set(
        &self,
        req: Request<pb::DecisionSetRequest>,
    ) -> Result<Response<pb::DecisionSetResponse>, Status> {
        let meta = request_meta(&req)?;
        let r = req.into_inner();
        let (res, index) = self
            .write(&meta, |t| {
                validate::required_name("topic", &r.topic)?;
                validate::required("decision", &r.decision)?;
                validate::text("decision", &r.decision)?;
                validate::text("rationale", &r.rationale)?;
                validate::text("details", &r.details)?;
                validate::names("references", &r.references, MAX_LIST_ITEMS)?;
                validate::name("decided_by", &r.decided_by)?;
                Ok(Command::DecisionSet {
                    precedence: r.precedence,
                    decision: Decision {
                        topic: r.topic,
                        decision: r.decision,
                        rationale: r.rationale,
                        details: r.details,
                        references: r.references,
                        decided_by: r.decided_by,
                        created_at: from_timestamp(r.created_at.as_ref()).unwrap_or(t.now),
                        precedence: 0,
                        seq: 0,
                        stamp: Default::default(),
                    },
                })
            })
            .await?;
        let CommandResult::Decision(d) = res else {
            return Err(unexpected(res));
        };
        Ok(respond(
            pb::DecisionSetResponse {
                decision: Some(convert::decision(&d)),
            },
            index,
        ))
    }

    async fn get(
        &self,
        req: Request<pb::DecisionGetRequest>,
    ) -> Result<Response<pb::DecisionGetResponse>, Status> {
        let meta = request_meta(&req)?;
        let topic = req.into_inner().topic;
        validate::required_name("topic", &topic)?;
        let (d, index) = self
            .read(&meta, |s| {
                Ok(records::decision(&s.state, meta.project(), &topic)?)
            })
            .await?;
        Ok(respond(
            pb::DecisionGetResponse {
                found: d.is_some(),
                decision: d.as_ref().map(convert::decision),
            },
            index,
        ))
    }

    async fn list(
        &self,
        req: Request<pb::DecisionListRequest>,
    ) -> Result<Response<pb::DecisionListResponse>, Status> {
        let meta = request_meta(&req)?;
        let (list, index) = self
            .read(&meta, |s| Ok(records::decisions(&s.state, meta.project())?))
            .await?;
        Ok(respond(
            pb::DecisionListResponse {
                decisions: list.iter().map(convert::decision).collect(),
            },
            index,
        ))
    }

    async fn history(
        &self,
        req: Request<pb::DecisionHistoryRequest>,
    ) -> Result<Response<pb::DecisionHistoryResponse>, Status> {
        let meta = request_meta(&req)?;
        let topic = req.into_inner().topic;
        validate::required_name("topic", &topic)?;
        let (list, index) = self
            .read(&meta, |s| {
                Ok(records::decision_history(&s.state, meta.project(), &topic)?)
            })
            .await?;
        Ok(respond(
            pb::DecisionHistoryResponse {
                decisions: list.iter().map(convert::decision).collect(),
            },
            index,
        ))
    }

    async fn delete(
        &self,
        req: Request<pb::DecisionDeleteRequest>,
    ) -> Result<Response<pb::DecisionDeleteResponse>, Status> {
        let meta = request_meta(&req)?;
        let topic = req.into_inner().topic;
        validate::required_name("topic", &topic)?;
        let (res, index) = self
            .write(&meta, |_| Ok(Command::DecisionDelete { topic }))
            .await?;
        let CommandResult::Count(n) = res else {
            return Err(unexpected(res));
        };
        Ok(respond(
            pb::DecisionDeleteResponse { count: count(n) },
            index,
        ))
    }

    async fn clear(
        &self,
        req: Request<pb::DecisionClearRequest>,
    ) -> Result<Response<pb::DecisionClearResponse>, Status> {
        let meta = request_meta(&req)?;
        let (res, index) = self.write(&meta, |_| Ok(Command::DecisionClear)).await?;
        let CommandResult::Count(n) = res else {
            return Err(unexpected(res));
        };
        Ok(respond(
            pb::DecisionClearResponse { count: count(n) },
            index,
        ))
    }
}
