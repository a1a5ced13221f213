//! `kres-kafka run`: consume the topic, hand each message to the guest, schedule the manager
//! calls its commits ask for, and store each offset once its message reached a durable end.
//!
//! Messages are processed one at a time, in order per partition; the guest runs on tokio's
//! blocking pool, never on an async worker. The files directory is touched by the guest and,
//! to roll back a configuration the manager refused, by the host: a lock keeps the two apart.
//! Shutdown finishes the message in progress, commits stored offsets, then serves the pending
//! manager call.

use crate::config::Config;
use crate::kafka;
use crate::manager::{CallError, Manager};
use crate::metrics::{self, Metrics};
use crate::sandbox::{DEFAULT_GUEST, Guest, GuestFailure, Sandbox};
use crate::scheduler::{Batch, Executor, PendingMarker, Scheduler};
use crate::swap::{self, Swapped};
use crate::types::{Action, Context, Message, Outcome, Rejection};
use anyhow::Context as _;
use std::os::unix::fs::DirBuilderExt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;

/// How often incomplete chunk sets are checked for expiry (and crash leftovers removed) after
/// the start-up pass.
const MAINTENANCE_EVERY: Duration = Duration::from_secs(3600);

/// First wait before calling an unreachable manager again; doubles up to [`RETRY_MAX`].
const RETRY_FIRST: Duration = Duration::from_millis(500);
const RETRY_MAX: Duration = Duration::from_secs(30);

/// Run the daemon until `shutdown`.
pub async fn run(config: Config, shutdown: CancellationToken) -> anyhow::Result<()> {
    let kafka = &config.kafka;
    if !kafka.files_dir.is_dir() {
        anyhow::bail!(
            "kafka.files-dir {} does not exist or is not a directory",
            kafka.files_dir.display()
        );
    }
    if kafka.zone_id.is_some() {
        tracing::warn!(
            "kafka.zone-id is ignored: kres-kafka picks messages by their hostname header"
        );
    }

    let state_dir = kafka.state_dir();
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&state_dir)
        .with_context(|| format!("creating kafka.state-dir {}", state_dir.display()))?;
    let sandbox = Arc::new(Sandbox::new(kafka.sandbox())?);
    // Loading self-tests the guest, whose WASI calls block: off the async threads.
    let (loader, path) = (Arc::clone(&sandbox), kafka.guest.clone());
    let guest = tokio::task::spawn_blocking(move || match path {
        Some(path) => loader.load_file(&path),
        None => loader.load(DEFAULT_GUEST, "embedded"),
    })
    .await??;
    tracing::info!(
        guest = %guest.origin(), version = %guest.version(), sha256 = %guest.digest(), cached = guest.cached(),
        "guest loaded"
    );
    let metrics = Metrics::default();
    metrics.guest(guest.version(), guest.digest(), false);
    if let Some(address) = &kafka.metrics_address {
        let bound = metrics::serve(
            (address.host.clone(), address.port),
            metrics.clone(),
            shutdown.clone(),
        )
        .await?;
        tracing::info!("metrics on http://{bound}/metrics");
    }
    let mut swaps = swap::spawn(
        Arc::clone(&sandbox),
        kafka.guest.clone(),
        guest.digest().to_owned(),
        metrics.clone(),
        shutdown.clone(),
    )?;
    let files_lock = Arc::new(Mutex::new(()));
    let mut worker = Worker {
        guest: Arc::new(guest),
        config: config.clone(),
        files_lock: files_lock.clone(),
        swaps: 0,
        metrics: metrics.clone(),
    };
    worker.maintain().await;

    let executor = ManagerExecutor {
        manager: Manager::new(config.management.clone(), kafka.force),
        files_dir: kafka.files_dir.clone(),
        files_lock,
        shutdown: shutdown.clone(),
        metrics,
    };
    let marker = PendingMarker::new(config.kafka.state_dir().join("pending-action"));
    let owed = marker.read();
    let (scheduler, scheduler_task) = Scheduler::spawn(kafka.debounce, executor, Some(marker));
    if let Some(action) = owed {
        tracing::warn!(
            ?action,
            "a manager call was still owed when kres-kafka last stopped: asking for it now"
        );
        scheduler.request(action, None);
    }

    let consumer = kafka::consumer(&config).context("creating the Kafka consumer")?;
    tracing::info!(
        servers = %kafka.bootstrap_servers(), topic = %kafka.topic, group = %config.group_id(),
        hostname = %config.hostname, files_dir = %kafka.files_dir.display(), "consuming"
    );

    let mut maintenance = tokio::time::interval_at(
        tokio::time::Instant::now() + MAINTENANCE_EVERY,
        MAINTENANCE_EVERY,
    );
    loop {
        tokio::select! {
            // Shutdown first: it is only looked at between messages, so the message in
            // progress always finishes and its offset is stored.
            biased;
            () = shutdown.cancelled() => break,
            // A new guest next: it takes over from the next message on; the message in
            // progress, if any, has finished on the guest it started with.
            Some(swapped) = swaps.recv() => worker.swap(swapped),
            _ = maintenance.tick() => worker.maintain().await,
            record = consumer.recv() => {
                let record = match record {
                    Ok(record) => record,
                    Err(e) => {
                        tracing::warn!("receiving from Kafka: {e}");
                        continue;
                    }
                };
                let (message, position) = kafka::to_message(&record);
                drop(record);
                if let Some((action, file)) = worker.process(message).await {
                    scheduler.request(action, file);
                }
                if let Err(e) = kafka::store(&consumer, &position) {
                    tracing::warn!(partition = position.partition, offset = position.offset, "storing the offset: {e}");
                }
            }
        }
    }

    tracing::info!("shutting down: committing offsets");
    if let Err(e) = kafka::commit_stored(&consumer) {
        tracing::warn!("committing offsets at shutdown: {e}");
    }
    drop(consumer);
    drop(scheduler);
    scheduler_task.await.context("the scheduler task failed")?;
    tracing::info!("stopped");
    Ok(())
}

/// Runs the guest on the blocking pool.
struct Worker {
    guest: Arc<Guest>,
    config: Config,
    files_lock: Arc<Mutex<()>>,
    /// Guests switched to since start-up.
    swaps: u64,
    metrics: Metrics,
}

impl Worker {
    /// Switch to a guest that passed its checks. Chunk sets in progress carry on: their state
    /// is on disk, not in the guest.
    fn swap(&mut self, swapped: Swapped) {
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
            limits: self.config.kafka.limits(),
            now: crate::apply::unix_now(),
        }
    }

    /// Process one message; return the manager action its commit asks for, if any, with the
    /// configuration file committed.
    async fn process(&self, message: Message) -> Option<(Action, Option<String>)> {
        let (partition, offset) = (message.partition, message.offset);
        let result = self
            .in_guest(move |guest, ctx| guest.process(ctx, message))
            .await
            .unwrap_or_else(|e| {
                Err(GuestFailure::Trap(format!(
                    "the guest's thread panicked: {e}"
                )))
            });
        self.record(&result);
        // One event per message, `message processed`, with its outcome: skipped and stored
        // chunks at debug, commits at info, rejections and guest failures at error.
        match result {
            Ok(Ok(Outcome::Skipped { reason })) => {
                tracing::debug!(partition, offset, outcome = "skipped", %reason, "message processed");
                None
            }
            Ok(Ok(Outcome::Stored {
                file,
                index,
                total,
                received,
            })) => {
                tracing::debug!(partition, offset, outcome = "stored", %file, index, total, received, "message processed");
                None
            }
            Ok(Ok(Outcome::Unchanged { file })) => {
                tracing::info!(partition, offset, outcome = "unchanged", %file, "message processed");
                None
            }
            Ok(Ok(Outcome::Committed {
                file,
                action,
                size,
                sha256,
            })) => {
                tracing::info!(partition, offset, outcome = "committed", %file, size, %sha256, ?action, "message processed");
                let config_file = (action == Action::Reload).then(|| file.clone());
                Some((action, config_file))
            }
            Ok(Err(Rejection { kind, reason })) => {
                tracing::error!(partition, offset, outcome = "rejected", ?kind, %reason, "message processed");
                None
            }
            Err(failure) => {
                tracing::error!(partition, offset, outcome = "failed", %failure, "message processed");
                None
            }
        }
    }

    fn record(&self, result: &Result<Result<Outcome, Rejection>, GuestFailure>) {
        let m = &self.metrics;
        match result {
            Ok(Ok(Outcome::Skipped { .. })) => m.message("skipped"),
            Ok(Ok(Outcome::Stored { .. })) => m.message("stored"),
            Ok(Ok(Outcome::Unchanged { .. })) => m.message("unchanged"),
            Ok(Ok(Outcome::Committed { size, .. })) => {
                m.message("committed");
                m.committed(*size);
            }
            Ok(Err(rejection)) => {
                m.message("rejected");
                m.rejection(rejection.kind.as_str());
            }
            Err(failure) => {
                m.message("failed");
                m.guest_failure(failure.kind());
            }
        }
    }

    /// Run `call` on the current guest, on the blocking pool (wasmtime-wasi's synchronous
    /// calls must not run on an async worker), holding the files lock (see `restore`).
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
    async fn maintain(&self) {
        let max_age = self.config.kafka.chunk_expiry;
        let result = self
            .in_guest(move |guest, ctx| guest.maintain(ctx, max_age))
            .await;
        match result {
            Ok(Ok(Ok(done))) => tracing::info!(
                temporaries_removed = done.temporaries_removed,
                chunk_sets_expired = done.chunk_sets_expired,
                chunk_sets_kept = done.chunk_sets_kept,
                "maintenance done"
            ),
            Ok(Ok(Err(rejection))) => tracing::error!("maintenance failed: {rejection}"),
            Ok(Err(failure)) => tracing::error!("maintenance failed in the guest: {failure}"),
            Err(e) => tracing::error!("maintenance thread panicked: {e}"),
        }
    }
}

/// Calls the manager for each batch; retries while it is unreachable; when it refuses a
/// reload, restores the configuration files of the batch from their backups and reloads again,
/// so that the files on disk match what the resolver runs.
struct ManagerExecutor {
    manager: Manager,
    files_dir: PathBuf,
    files_lock: Arc<Mutex<()>>,
    shutdown: CancellationToken,
    metrics: Metrics,
}

impl Executor for ManagerExecutor {
    /// Served unless the manager stayed unreachable until shutdown: then the call stays owed.
    async fn execute(&mut self, batch: Batch) -> bool {
        let Some(action) = batch.action else {
            return true;
        };
        let what = self.manager.path(action).unwrap_or("nothing");
        let result = match self.call_with_retry(action).await {
            Err(refused @ CallError::Refused { .. }) if action == Action::Reload => {
                tracing::error!(
                    files = ?batch.config_files,
                    "{refused}: restoring the previous version of the configuration files and reloading"
                );
                self.restore(&batch.config_files).await;
                let again = self.call_with_retry(Action::Reload).await;
                if again.is_ok() {
                    tracing::warn!(files = ?batch.config_files, "reloaded with the restored configuration");
                }
                again
            }
            other => other,
        };
        match result {
            Ok(()) => {
                tracing::info!(call = what, requests = batch.requests, "manager call done");
                true
            }
            Err(e @ CallError::Unreachable { .. }) => {
                tracing::error!(call = what, "{e}: the call stays owed until the next start");
                false
            }
            Err(e) => {
                tracing::error!(call = what, "{e}");
                true
            }
        }
    }
}

impl ManagerExecutor {
    async fn call_with_retry(&self, action: Action) -> Result<(), CallError> {
        let mut wait = RETRY_FIRST;
        loop {
            let result = self.manager.call(action).await;
            let outcome = match &result {
                Ok(()) => "ok",
                Err(CallError::Refused { .. }) => "refused",
                Err(CallError::Unreachable { .. }) => "unreachable",
            };
            self.metrics
                .manager_call(self.manager.path(action).unwrap_or("none"), outcome);
            match result {
                Err(e @ CallError::Unreachable { .. }) => {
                    if self.shutdown.is_cancelled() {
                        tracing::error!(
                            "{e}: giving up at shutdown; the resolver does not run the files on disk yet"
                        );
                        return Err(e);
                    }
                    tracing::warn!("{e}; retrying in {wait:?}");
                    tokio::select! {
                        () = self.shutdown.cancelled() => {}
                        () = tokio::time::sleep(wait) => {}
                    }
                    wait = (wait * 2).min(RETRY_MAX);
                }
                other => return other,
            }
        }
    }

    /// Put each file's `.backup` back in place (atomically, by rename). A file with no backup
    /// is new: it is removed, since the resolver never ran it.
    async fn restore(&self, files: &[String]) {
        let _lock = self.files_lock.lock().await;
        for name in files {
            // The name comes from the guest: check it as strictly as the guest should have.
            if let Err(e) = kres_kafka_guest::name::check(name) {
                tracing::error!("not restoring {name:?}: {e}");
                continue;
            }
            let path = self.files_dir.join(name);
            let backup = self.files_dir.join(format!("{name}.backup"));
            let result = if backup.exists() {
                std::fs::rename(&backup, &path).map(|()| "restored from its backup")
            } else {
                std::fs::remove_file(&path).map(|()| "removed (it had no previous version)")
            };
            let synced = result.and_then(|done| {
                let dir = path.parent().unwrap_or(&self.files_dir);
                std::fs::File::open(dir)?.sync_all()?;
                Ok(done)
            });
            match synced {
                Ok(done) => {
                    self.metrics.rollback();
                    tracing::warn!(file = %name, "configuration {done}");
                }
                Err(e) => tracing::error!(file = %name, "restoring the configuration failed: {e}"),
            }
        }
    }
}
