//! MessageService: direct and broadcast messages between agents, with an expiry.

use super::convert;
use super::memory::count;
use super::meta::{request_meta, respond};
use super::pb::aidememory::{self as pb, message_service_server::MessageService};
use super::{unexpected, Api};
use crate::command::validate::{self, Invalid};
use crate::command::{Command, CommandResult};
use crate::model::{Message, DEFAULT_MESSAGE_TTL_SECS};
use crate::node::wall_nanos;
use crate::storage::records;
use tonic::{Request, Response, Status};

fn new_message(r: pb::MessageSendRequest, now: i64) -> Result<Message, Invalid> {
    validate::required_name("from", &r.from)?;
    validate::name("to", &r.to)?;
    validate::required("content", &r.content)?;
    validate::text("content", &r.content)?;
    validate::name("type", &r.r#type)?;
    validate::name("priority", &r.priority)?;
    validate::name("parent_session_id", &r.parent_session_id)?;
    let ttl = match r.ttl_seconds {
        0 => DEFAULT_MESSAGE_TTL_SECS,
        n if n < 0 => {
            return Err(Invalid::new(
                "ttl_seconds",
                format!("is {n}; it must be 0 (one hour) or a positive number of seconds"),
            ))
        }
        n => i64::from(n),
    };
    Ok(Message {
        id: 0,
        from: r.from,
        to: r.to,
        content: r.content,
        kind: r.r#type,
        read_by: Vec::new(),
        created_at: now,
        expires_at: now.saturating_add(ttl.saturating_mul(1_000_000_000)),
        priority: r.priority,
        parent_session_id: r.parent_session_id,
        stamp: Default::default(),
    })
}

#[tonic::async_trait]
impl MessageService for Api {
    async fn send(
        &self,
        req: Request<pb::MessageSendRequest>,
    ) -> Result<Response<pb::MessageSendResponse>, Status> {
        let meta = request_meta(&req)?;
        let r = req.into_inner();
        let (res, index) = self
            .write(&meta, |t| Ok(Command::MessageSend(new_message(r, t.now)?)))
            .await?;
        let CommandResult::Message(m) = res else {
            return Err(unexpected(res));
        };
        Ok(respond(
            pb::MessageSendResponse {
                message: Some(convert::message(&m)),
            },
            index,
        ))
    }

    async fn list(
        &self,
        req: Request<pb::MessageListRequest>,
    ) -> Result<Response<pb::MessageListResponse>, Status> {
        let meta = request_meta(&req)?;
        let r = req.into_inner();
        validate::name("agent_id", &r.agent_id)?;
        validate::name("parent_session_id", &r.parent_session_id)?;
        let (list, index) = self
            .read(&meta, |s| {
                Ok(records::messages(
                    &s.state,
                    meta.project(),
                    &r.agent_id,
                    r.include_read,
                    &r.parent_session_id,
                    wall_nanos(),
                )?)
            })
            .await?;
        Ok(respond(
            pb::MessageListResponse {
                messages: list.iter().map(convert::message).collect(),
            },
            index,
        ))
    }

    async fn ack(
        &self,
        req: Request<pb::MessageAckRequest>,
    ) -> Result<Response<pb::MessageAckResponse>, Status> {
        let meta = request_meta(&req)?;
        let r = req.into_inner();
        if r.message_id == 0 {
            return Err(Invalid::new("message_id", "must be a message id (1 or more)").into());
        }
        validate::required_name("agent_id", &r.agent_id)?;
        let (res, index) = self
            .write(&meta, |_| {
                Ok(Command::MessageAck {
                    id: r.message_id,
                    agent: r.agent_id,
                })
            })
            .await?;
        let CommandResult::Done(success) = res else {
            return Err(unexpected(res));
        };
        Ok(respond(pb::MessageAckResponse { success }, index))
    }

    async fn prune(
        &self,
        req: Request<pb::MessagePruneRequest>,
    ) -> Result<Response<pb::MessagePruneResponse>, Status> {
        let meta = request_meta(&req)?;
        let (res, index) = self.write(&meta, |_| Ok(Command::MessagePrune)).await?;
        let CommandResult::Count(n) = res else {
            return Err(unexpected(res));
        };
        Ok(respond(pb::MessagePruneResponse { count: count(n) }, index))
    }
}
