//! The manager executor: makes the scheduler's calls; when the manager refuses a reload,
//! restores the configuration files of the batch from their backups and reloads again, so that
//! the files on disk match what the resolver runs.

use crate::manager::{CallError, Manager};
use crate::metrics::Metrics;
use crate::outcome::Action;
use crate::scheduler::{Batch, Executor};
use kres_kafka_guest::durable;
use std::path::PathBuf;
use std::sync::Arc;
use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;

/// Calls the manager for each batch; retries while it is unreachable; when it refuses a
/// reload, restores the configuration files of the batch from their backups and reloads again,
/// so that the files on disk match what the resolver runs.
pub(super) struct ManagerExecutor {
    pub(super) manager: Manager,
    pub(super) files_dir: PathBuf,
    pub(super) files_lock: Arc<Mutex<()>>,
    pub(super) shutdown: CancellationToken,
    pub(super) metrics: Metrics,
}

impl Executor for ManagerExecutor {
    /// Served unless the manager stayed unreachable until shutdown: then the call stays owed.
    async fn execute(&mut self, batch: Batch) -> bool {
        let action = batch.action;
        if action == Action::None {
            return true;
        }
        let what = self.manager.path(action).unwrap_or("nothing");
        let result = match self.call(action).await {
            Err(refused @ CallError::Refused { .. }) if action == Action::Reload => {
                tracing::error!(
                    files = ?batch.config_files,
                    "{refused}: restoring the previous version of the configuration files and reloading"
                );
                self.restore(&batch.config_files).await;
                let again = self.call(Action::Reload).await;
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
    /// One call, retried while the manager is unreachable, each attempt counted.
    async fn call(&self, action: Action) -> Result<(), CallError> {
        let path = self.manager.path(action).unwrap_or("none");
        self.manager
            .call_with_retry(action, &self.shutdown, |result| {
                let outcome = result.as_ref().map_or_else(CallError::kind, |()| "ok");
                self.metrics.manager_call(path, outcome);
            })
            .await
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
                durable::sync_parent(&path)?;
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
