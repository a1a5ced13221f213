//! Running the guest: on the blocking pool, one call at a time under the files lock, on the
//! guest in use (which a swap replaces between two calls). The worker processes messages and
//! logs and counts each outcome; the executor uses the same runner to roll back.

use crate::config::Config;
use crate::metrics::Metrics;
use crate::outcome::{Context, GuestFailure, Message, Outcome};
use crate::sandbox::Guest;
use crate::status::Status;
use crate::swap::Swapped;
use std::sync::Arc;
use tokio::sync::{Mutex, watch};

/// Runs calls on the guest in use. Cheap to clone.
#[derive(Clone)]
pub(super) struct Runner {
    guest: watch::Receiver<Arc<Guest>>,
    /// One call into the guest at a time: the worker's messages and the executor's rollbacks
    /// both write the files directory.
    files_lock: Arc<Mutex<()>>,
    config: Arc<Config>,
}

impl Runner {
    pub(super) fn new(guest: watch::Receiver<Arc<Guest>>, config: Arc<Config>) -> Self {
        Runner {
            guest,
            files_lock: Arc::new(Mutex::new(())),
            config,
        }
    }

    pub(super) fn config(&self) -> &Config {
        &self.config
    }

    fn context(&self) -> Context {
        Context {
            hostname: self.config.hostname.clone(),
            zone_id: self.config.kafka.zone_id.clone(),
            limits: self.config.kafka.limits,
            now: crate::system::unix_now(),
            trust: self.config.kafka.trust.clone(),
        }
    }

    /// Run `call` on the guest in use, on the blocking pool (wasmtime-wasi's synchronous
    /// calls must not run on an async worker), holding the files lock.
    pub(super) async fn in_guest<R: Send + 'static>(
        &self,
        call: impl FnOnce(&Guest, &Context) -> R + Send + 'static,
    ) -> Result<R, tokio::task::JoinError> {
        let lock = Arc::clone(&self.files_lock).lock_owned().await;
        let guest = Arc::clone(&self.guest.borrow());
        let ctx = self.context();
        tokio::task::spawn_blocking(move || {
            let _lock = lock;
            call(&guest, &ctx)
        })
        .await
    }
}

pub(super) struct Worker {
    pub(super) runner: Runner,
    /// Where a swap puts the new guest for every runner.
    pub(super) current: watch::Sender<Arc<Guest>>,
    /// Guests switched to since start-up.
    pub(super) swaps: u64,
    pub(super) metrics: Metrics,
    pub(super) health: crate::health::Health,
    pub(super) status: Status,
}

impl Worker {
    /// Switch to a guest that passed its checks. Chunk sets in progress carry on: their state
    /// is on disk, not in the guest.
    pub(super) fn swap(&mut self, swapped: Swapped) {
        self.swaps += 1;
        let old = Arc::clone(&self.current.borrow());
        let new = &swapped.guest;
        tracing::info!(
            swaps = self.swaps,
            old_version = %old.version(), new_version = %new.version(),
            old_sha256 = %old.digest(), new_sha256 = %new.digest(),
            cached = new.cached(), loaded_in = ?swapped.loaded_in,
            "guest swapped"
        );
        self.metrics.guest(new.version(), new.digest(), true);
        self.status.swapped(new.version());
        self.current.send_replace(swapped.guest);
    }

    /// Process `msgs` as one batch; log and count each outcome. Returns the outcomes of a
    /// prefix of them (see [`Guest::process_batch`]).
    pub(super) async fn process(&self, msgs: Vec<Message>) -> Vec<Outcome> {
        let at: Vec<(i32, i64)> = msgs.iter().map(|m| (m.partition, m.offset)).collect();
        self.metrics.batch();
        let outcomes = self
            .runner
            .in_guest(move |guest, ctx| guest.process_batch(ctx, &msgs))
            .await
            .unwrap_or_else(|e| {
                vec![Outcome::Failed(GuestFailure::Trap(format!(
                    "the guest's thread panicked: {e}"
                )))]
            });
        for (outcome, (partition, offset)) in outcomes.iter().zip(at) {
            self.metrics.record(outcome);
            outcome.log(partition, offset);
        }
        outcomes
    }

    /// Remove crash leftovers and expire old chunk sets.
    pub(super) async fn maintain(&self) {
        let max_age = self.runner.config.kafka.chunk_expiry;
        let result = self
            .runner
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
