//! One process-wide stop signal, shared by the controller, the signal handler and the long-lived streams.

use std::sync::Arc;
use tokio::sync::watch;

/// Set once by `GRPCController/Shutdown` or SIGTERM; every open stream and the server wait on it, so the
/// process can exit within SPIRE's 2 s grace period (protocol doc §2.6).
#[derive(Debug, Clone)]
pub(crate) struct Shutdown {
    tx: Arc<watch::Sender<bool>>,
}

impl Shutdown {
    pub(crate) fn new() -> Self {
        Self {
            tx: Arc::new(watch::channel(false).0),
        }
    }

    pub(crate) fn trigger(&self) {
        self.tx.send_replace(true);
    }

    /// Resolves once [`Shutdown::trigger`] has been called (at once if it already was).
    pub(crate) async fn wait(&self) {
        let mut rx = self.tx.subscribe();
        // The sender lives as long as `self`, so `wait_for` cannot fail with a closed channel here.
        let _ = rx.wait_for(|stopped| *stopped).await;
    }
}
