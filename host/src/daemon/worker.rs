//! The worker: runs the guest on the blocking pool, one call at a time, under the files lock;
//! logs and counts each message's outcome.

use crate::config::Config;
use crate::metrics::Metrics;
use crate::outcome::{Context, GuestFailure, Message, Outcome};
use crate::sandbox::Guest;
use crate::swap::Swapped;
use std::sync::Arc;
use tokio::sync::Mutex;

pub(super) struct Worker {
    pub(super) guest: Arc<Guest>,
    pub(super) config: Config,
    /// Held while the guest runs: the executor's rollback writes the files directory too.
    pub(super) files_lock: Arc<Mutex<()>>,
    /// Guests switched to since start-up.
    pub(super) swaps: u64,
    pub(super) metrics: Metrics,
}

impl Worker {
    /// Switch to a guest that passed its checks. Chunk sets in progress carry on: their state
    /// is on disk, not in the guest.
    pub(super) fn swap(&mut self, swapped: Swapped) {
        self.swaps += 1;
        let (old, new) = (&self.guest, &swapped.guest);
        tracing::info!(
            swaps = self.swaps,
            old_version = %old.version(), new_version = %new.version(),
            old_sha256 = %old.digest(), new_sha256 = %new.digest(),
            cached = new.cached(), loaded_in = ?swapped.loaded_in,
            "guest swapped"
        );
        self.metrics.guest(new.version(), new.digest(), true);
        self.guest = swapped.guest;
    }

    fn context(&self) -> Context {
        Context {
            hostname: self.config.hostname.clone(),
            limits: self.config.kafka.limits,
            now: crate::system::unix_now(),
        }
    }

    /// Process one message; log and count its outcome.
    pub(super) async fn process(&self, message: Message) -> Outcome {
        let (partition, offset) = (message.partition, message.offset);
        let outcome = self
            .in_guest(move |guest, ctx| guest.process(ctx, message))
            .await
            .unwrap_or_else(|e| {
                Outcome::Failed(GuestFailure::Trap(format!(
                    "the guest's thread panicked: {e}"
                )))
            });
        self.metrics.record(&outcome);
        outcome.log(partition, offset);
        outcome
    }

    /// Run `call` on the current guest, on the blocking pool (wasmtime-wasi's synchronous
    /// calls must not run on an async worker), holding the files lock.
    async fn in_guest<R: Send + 'static>(
        &self,
        call: impl FnOnce(&Guest, &Context) -> R + Send + 'static,
    ) -> Result<R, tokio::task::JoinError> {
        let guest = Arc::clone(&self.guest);
        let ctx = self.context();
        let lock = Arc::clone(&self.files_lock).lock_owned().await;
        tokio::task::spawn_blocking(move || {
            let _lock = lock;
            call(&guest, &ctx)
        })
        .await
    }

    /// Remove crash leftovers and expire old chunk sets.
    pub(super) async fn maintain(&self) {
        let max_age = self.config.kafka.chunk_expiry;
        let result = self
            .in_guest(move |guest, ctx| guest.maintain(ctx, max_age))
            .await;
        match result {
            Ok(Ok(done)) => tracing::info!(
                temporaries_removed = done.temporaries_removed,
                chunk_sets_expired = done.chunk_sets_expired,
                chunk_sets_kept = done.chunk_sets_kept,
                "maintenance done"
            ),
            Ok(Err(e)) => tracing::error!("maintenance failed: {e}"),
            Err(e) => tracing::error!("maintenance thread panicked: {e}"),
        }
    }
}
