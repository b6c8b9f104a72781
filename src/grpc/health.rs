//! HealthService: whether the node serves, and what it is.

use super::pb::aidememory::{self as pb, health_service_server::HealthService};
use super::Api;
use tonic::{Request, Response, Status};

#[tonic::async_trait]
impl HealthService for Api {
    async fn check(
        &self,
        _: Request<pb::HealthCheckRequest>,
    ) -> Result<Response<pb::HealthCheckResponse>, Status> {
        let m = self.node.raft.metrics().borrow().clone();
        Ok(Response::new(pb::HealthCheckResponse {
            healthy: m.running_state.is_ok() && self.node.leader().is_some(),
            version: crate::VERSION.to_string(),
            db_path: self.node.store.dir().display().to_string(),
            commit: crate::COMMIT.to_string(),
            build_date: crate::BUILD_DATE.to_string(),
            pid: i64::from(std::process::id()),
            started_at_unix: self.node.started_at,
        }))
    }
}
