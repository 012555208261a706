//! Live push: a transport that can tell a node "the hub has something for
//! you" implements [`Push`], and [`crate::Node::auto_sync`] syncs as soon as
//! it says so instead of waiting for the next interval.

use std::time::Duration;

use sync_core::TransportError;

/// Waits for the hub to have something for this node.
#[async_trait::async_trait]
pub trait Push: Send + Sync {
    /// Returns `Ok(true)` as soon as the hub may have changes this node has
    /// not received (also when they arrived before the call, after this
    /// node's last exchange), `Ok(false)` when `max_wait` passed without
    /// any. An error means the hub cannot be asked now; the caller falls
    /// back to its interval.
    async fn wait_for_changes(&self, max_wait: Duration) -> Result<bool, TransportError>;
}
