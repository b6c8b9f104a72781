//! The one mapping from internal errors to gRPC status codes.

use crate::command::validate::Invalid;
use crate::command::Rejection;
use crate::node::{NodeError, FOREIGN_INDEX, GAVE_UP};
use tonic::Status;

impl From<NodeError> for Status {
    fn from(e: NodeError) -> Status {
        let msg = e.to_string();
        match e {
            NodeError::Invalid(_) => Status::invalid_argument(msg),
            NodeError::Rejected(Rejection::NotFound { .. }) | NodeError::NotFound(_) => {
                Status::not_found(msg)
            }
            NodeError::Rejected(Rejection::Invalid(_)) => Status::invalid_argument(msg),
            NodeError::Rejected(Rejection::Unauthorized(_)) => Status::unauthenticated(msg),
            NodeError::FailedPrecondition(_) => Status::failed_precondition(msg),
            NodeError::ForeignIndex { .. } => {
                marked(Status::failed_precondition(msg), FOREIGN_INDEX)
            }
            NodeError::NoLeader | NodeError::Unavailable(_) | NodeError::ShuttingDown => {
                Status::unavailable(msg)
            }
            NodeError::GaveUp(_) => marked(Status::unavailable(msg), GAVE_UP),
            NodeError::IndexTimeout(..) => Status::deadline_exceeded(msg),
            NodeError::Raft(_) | NodeError::Store(_) | NodeError::Search(_) => {
                tracing::error!(error = %msg, "request failed");
                Status::internal(msg)
            }
        }
    }
}

/// `status` with the marker `key` a client acts on.
fn marked(mut status: Status, key: &'static str) -> Status {
    status
        .metadata_mut()
        .insert(key, tonic::metadata::MetadataValue::from_static("1"));
    status
}

impl From<Invalid> for Status {
    fn from(e: Invalid) -> Status {
        Status::invalid_argument(e.to_string())
    }
}

impl From<crate::storage::StoreError> for Status {
    fn from(e: crate::storage::StoreError) -> Status {
        NodeError::from(e).into()
    }
}
