//! Live push over HTTPS: the hub's long-poll endpoint (`GET /v1/wait`).

use std::time::Duration;

use sync_core::TransportError;
use sync_transport_http::HttpTransport;

use crate::push::Push;

#[async_trait::async_trait]
impl Push for HttpTransport {
    async fn wait_for_changes(&self, max_wait: Duration) -> Result<bool, TransportError> {
        Ok(self.wait(max_wait).await? > 0)
    }
}
