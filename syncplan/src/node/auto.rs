//! Auto-sync: a session every interval, sooner when local changes wait or
//! the hub pushes, with a growing backoff while the hub is unreachable.

use std::future::Future;
use std::time::Duration;

use sync_core::Store;
use tracing::{debug, info};

use super::Node;
use crate::driver_error::DriverError;
use crate::report::SyncReport;

/// When [`Node::auto_sync`] syncs. The default is the classic offline-first
/// schedule: every 5 minutes, immediately on local changes and on live
/// push, and while the hub is unreachable a backoff from 5 seconds that
/// doubles up to the interval.
#[derive(Clone, Debug, PartialEq)]
pub struct AutoSync {
    /// Time between sessions while all is well (default 5 minutes).
    pub interval: Duration,
    /// Wait after the first failed session (default 5 s); it doubles with
    /// every further failure, up to `interval`.
    pub backoff_initial: Duration,
    /// Sync as soon as the transport's live push says the hub has something
    /// (default true; only where the node was built with a push source).
    pub live_push: bool,
    /// Longest single wait for a push before asking again (default 60 s).
    pub push_wait: Duration,
}

impl Default for AutoSync {
    fn default() -> Self {
        AutoSync {
            interval: Duration::from_secs(300),
            backoff_initial: Duration::from_secs(5),
            live_push: true,
            push_wait: Duration::from_secs(60),
        }
    }
}

impl AutoSync {
    /// Sets the interval between sessions.
    pub fn interval(mut self, interval: Duration) -> Self {
        self.interval = interval;
        self
    }

    /// Sets the first backoff wait after a failed session.
    pub fn backoff_initial(mut self, wait: Duration) -> Self {
        self.backoff_initial = wait;
        self
    }

    /// Turns live push on or off.
    pub fn live_push(mut self, on: bool) -> Self {
        self.live_push = on;
        self
    }

    /// The wait after `failures` consecutive failed sessions.
    pub fn backoff(&self, failures: u32) -> Duration {
        let doubled = self
            .backoff_initial
            .saturating_mul(1u32 << failures.saturating_sub(1).min(20));
        doubled.min(self.interval.max(self.backoff_initial))
    }
}

impl<S: Store + Send + 'static> Node<S> {
    /// Syncs on the [`AutoSync`] schedule until `shutdown` completes,
    /// calling `on_session` with each session's outcome. Sessions that fail
    /// transiently (the hub unreachable) are retried on the backoff; any
    /// other failure (a refusal, a schema mismatch, a store failure) ends
    /// the loop with that error, since retrying cannot fix it.
    pub async fn auto_sync(
        &self,
        schedule: AutoSync,
        shutdown: impl Future<Output = ()>,
        mut on_session: impl FnMut(&Result<SyncReport, DriverError>) + Send,
    ) -> Result<(), DriverError> {
        tokio::pin!(shutdown);
        let mut failures = 0u32;
        loop {
            let result = self.sync().await;
            on_session(&result);
            let wait = match result {
                Ok(_) => {
                    failures = 0;
                    schedule.interval
                }
                Err(e) if e.is_transient() => {
                    failures += 1;
                    // Never sooner than the hub asked (`Retry-After`).
                    schedule
                        .backoff(failures)
                        .max(e.retry_after().unwrap_or_default())
                }
                Err(e) => return Err(e),
            };
            debug!(wait_ms = wait.as_millis() as u64, failures, "next session");
            let push = schedule.live_push && failures == 0;
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                () = self.inner.local_changes.notified() => debug!("local changes wait"),
                () = self.pushed(push, schedule.push_wait) => info!("the hub pushed: syncing"),
                () = &mut shutdown => return Ok(()),
            }
        }
    }

    /// Completes when the push source says the hub has something; never
    /// when push is off, unavailable or failing (the timers rule then).
    async fn pushed(&self, enabled: bool, max_wait: Duration) {
        let Some(push) = self.inner.push.as_ref().filter(|_| enabled) else {
            return std::future::pending().await;
        };
        loop {
            match push.wait_for_changes(max_wait).await {
                Ok(true) => return,
                Ok(false) => continue,
                Err(e) => {
                    debug!(error = %e, "live push unavailable until the next session");
                    return std::future::pending().await;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_interval() {
        let schedule = AutoSync::default()
            .interval(Duration::from_secs(60))
            .backoff_initial(Duration::from_secs(5));
        assert_eq!(schedule.backoff(1), Duration::from_secs(5));
        assert_eq!(schedule.backoff(2), Duration::from_secs(10));
        assert_eq!(schedule.backoff(4), Duration::from_secs(40));
        assert_eq!(schedule.backoff(5), Duration::from_secs(60));
        assert_eq!(schedule.backoff(40), Duration::from_secs(60));
    }
}
