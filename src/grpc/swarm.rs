//! SwarmService: live streams of task, message and state changes, fed by the state machine
//! after apply. A watcher that falls too far behind is told so and its stream ends.

use super::convert;
use super::meta::{request_meta, RequestMeta};
use super::pb::aidememory::{self as pb, swarm_service_server::SwarmService};
use super::Api;
use crate::apply::Effect;
use crate::command::validate::{self, Invalid};
use crate::model::TaskStatus;
use std::pin::Pin;
use tokio::sync::{broadcast::error::RecvError, mpsc};
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::Stream;
use tonic::{Request, Response, Status};

type Watch<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

impl Api {
    /// A stream of what `select` picks from the node's changes, until the client goes away or
    /// the node stops.
    /// The caller's key (`accessor`, empty for none) is checked again when the stream opens and
    /// before each change is sent: a stream ends when its key is revoked, or when keys are
    /// enabled after it opened.
    async fn watch<T: Send + 'static>(
        &self,
        meta: &RequestMeta,
        select: impl Fn(&Effect) -> Option<T> + Send + 'static,
    ) -> Watch<T> {
        // A change this node answered before the watch began is not sent: its batch may still
        // be landing, and the change goes out to watchers when it lands.
        if let Err(e) = self.node.wait_applied(self.node.answered_index()).await {
            tracing::warn!(error = %e, "a watch began before the last answered change landed");
        }
        let store = self.node.store.clone();
        let api = self.clone();
        let meta = meta.clone();
        // A refusal is audited like the guard's.
        let still_allowed = move || {
            crate::auth::still_allowed(&store, &meta.caller).inspect_err(|status| {
                api.refused(&meta, "watch", status);
            })
        };
        let mut changes = self.node.events.subscribe();
        let mut closing = self.node.closing.clone();
        let (tx, rx) = mpsc::channel(256);
        if let Err(status) = still_allowed() {
            let _ = tx.try_send(Err(status));
            return Box::pin(ReceiverStream::new(rx));
        }
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = async { closing.wait_for(|c| *c).await.map(|_| ()) } => break,
                    _ = tx.closed() => break,
                    change = changes.recv() => match change {
                        Ok(Effect::Skipped { index }) => {
                            let _ = tx.send(Err(Status::aborted(format!(
                                "this node caught up by a snapshot (to log index {index}), so the changes before it were not seen one by one; watch again and list to catch up"
                            )))).await;
                            break;
                        }
                        Ok(e) => {
                            if let Some(item) = select(&e) {
                                if let Err(status) = still_allowed() {
                                    let _ = tx.send(Err(status)).await;
                                    break;
                                }
                                if tx.send(Ok(item)).await.is_err() {
                                    break;
                                }
                            }
                        }
                        Err(RecvError::Lagged(n)) => {
                            let _ = tx.send(Err(Status::aborted(format!(
                                "the watch fell {n} changes behind and was closed; watch again and list to catch up"
                            )))).await;
                            break;
                        }
                        Err(RecvError::Closed) => break,
                    }
                }
            }
        });
        Box::pin(ReceiverStream::new(rx))
    }
}

#[tonic::async_trait]
impl SwarmService for Api {
    type WatchTasksStream = Watch<pb::Task>;
    type WatchMessagesStream = Watch<pb::Message>;
    type WatchStateStream = Watch<pb::StateChange>;

    async fn watch_tasks(
        &self,
        req: Request<pb::WatchTasksRequest>,
    ) -> Result<Response<Self::WatchTasksStream>, Status> {
        let meta = request_meta(&req)?;
        let r = req.into_inner();
        let status = if r.status.is_empty() {
            None
        } else {
            Some(TaskStatus::parse(&r.status).ok_or_else(|| {
                Invalid::new(
                    "status",
                    format!("{:?} is not one of {}", r.status, TaskStatus::names()),
                )
            })?)
        };
        validate::name("parent_session_id", &r.parent_session_id)?;
        let project = meta.project().to_string();
        Ok(Response::new(
            self.watch(&meta, move |e| match e {
                Effect::Task { project: p, task }
                    if *p == project
                        && status.is_none_or(|s| task.status == s)
                        && (r.parent_session_id.is_empty()
                            || task.parent_session_id == r.parent_session_id) =>
                {
                    Some(convert::task(task))
                }
                _ => None,
            })
            .await,
        ))
    }

    async fn watch_messages(
        &self,
        req: Request<pb::WatchMessagesRequest>,
    ) -> Result<Response<Self::WatchMessagesStream>, Status> {
        let meta = request_meta(&req)?;
        let r = req.into_inner();
        validate::name("agent_id", &r.agent_id)?;
        validate::name("parent_session_id", &r.parent_session_id)?;
        validate::name("priority", &r.priority)?;
        let project = meta.project().to_string();
        Ok(Response::new(
            self.watch(&meta, move |e| match e {
                Effect::Message {
                    project: p,
                    message: m,
                } if *p == project
                    && m.visible_to(&r.agent_id)
                    && (r.parent_session_id.is_empty()
                        || m.parent_session_id == r.parent_session_id)
                    && (r.priority.is_empty() || m.priority == r.priority) =>
                {
                    Some(convert::message(m))
                }
                _ => None,
            })
            .await,
        ))
    }

    async fn watch_state(
        &self,
        req: Request<pb::WatchStateRequest>,
    ) -> Result<Response<Self::WatchStateStream>, Status> {
        let meta = request_meta(&req)?;
        let r = req.into_inner();
        validate::name("agent_id", &r.agent_id)?;
        validate::name("key_prefix", &r.key_prefix)?;
        let project = meta.project().to_string();
        Ok(Response::new(
            self.watch(&meta, move |e| match e {
                Effect::State {
                    project: p,
                    state,
                    deleted,
                } if *p == project
                    && (r.agent_id.is_empty() || state.agent == r.agent_id)
                    && key_matches(&state.key, &state.agent, &r.key_prefix) =>
                {
                    Some(pb::StateChange {
                        state: Some(convert::state(state)),
                        change: if *deleted { "delete" } else { "set" }.to_string(),
                    })
                }
                _ => None,
            })
            .await,
        ))
    }
}

/// Whether `prefix` starts the full key or, for an agent-scoped key, the key without its scope.
fn key_matches(full: &str, agent: &str, prefix: &str) -> bool {
    if full.starts_with(prefix) {
        return true;
    }
    let scope = crate::model::scoped_key(agent, "");
    !agent.is_empty()
        && full
            .strip_prefix(&scope)
            .is_some_and(|k| k.starts_with(prefix))
}
