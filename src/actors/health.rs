//! The runtime's health: serving, or failed for good with a reason (a shard
//! panicked or lost its device, the Scheduler panicked). A failed runtime
//! cannot serve again in this process, so it says so: `/health` turns 503
//! with the reason, new requests are refused with 503, and `wgserve serve`
//! exits non-zero so a supervisor (systemd, Kubernetes) restarts it.
//!
//! This is the one piece of state the actors share with the HTTP side, and
//! it is a latch: written at most once (by the Scheduler, which sees every
//! failure first), read by anyone.

use std::sync::Arc;

use tokio::sync::watch;

/// A handle to the latch; clones share it.
#[derive(Debug, Clone)]
pub struct Health(Arc<watch::Sender<Option<String>>>);

impl Default for Health {
    fn default() -> Self {
        Self(Arc::new(watch::Sender::new(None)))
    }
}

impl Health {
    /// Marks the runtime failed. The first reason wins (later failures are
    /// usually consequences of the first); returns whether this call set it.
    pub fn fail(&self, reason: impl Into<String>) -> bool {
        let reason = reason.into();
        self.0.send_if_modified(|state| {
            if state.is_some() {
                return false;
            }
            *state = Some(reason);
            true
        })
    }

    /// Why the runtime failed, if it did.
    pub fn failure(&self) -> Option<String> {
        self.0.borrow().clone()
    }

    /// Resolves with the reason once the runtime has failed.
    pub async fn failed(&self) -> String {
        let mut rx = self.0.subscribe();
        let state = rx
            .wait_for(Option::is_some)
            .await
            .expect("the sender lives in self");
        state.clone().unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[actix_rt::test]
    async fn the_first_failure_is_kept_and_wakes_the_waiters() {
        let health = Health::default();
        assert_eq!(health.failure(), None);
        let waiter = {
            let health = health.clone();
            actix_rt::spawn(async move { health.failed().await })
        };
        assert!(health.fail("shard 0 panicked"));
        assert!(!health.fail("a consequence"));
        assert_eq!(health.failure().as_deref(), Some("shard 0 panicked"));
        assert_eq!(waiter.await.unwrap(), "shard 0 panicked");
        // Already failed: resolves at once.
        assert_eq!(health.failed().await, "shard 0 panicked");
    }
}
