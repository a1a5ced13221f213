//! The manager executor: makes the scheduler's calls, and makes sure that the files on disk
//! are what the resolver runs.
//!
//! A 6.x manager answers 200 to every reload, even one it refused (it logs the error and keeps
//! its previous configuration). So after a batch that committed a configuration whose content
//! changed, the executor compares the manager's running configuration (`GET /v1/config`) before
//! and after the reload: unchanged means refused. The comparison is between two views of the
//! manager's own parser, never between kres-kafka's parse of a file and the manager's, so a
//! YAML 1.1 versus 1.2 difference (`yes`, `on`, `1e3`) cannot make it roll back a reload that
//! took; and the guest reports a configuration as changed only when it differs under both
//! readings. A refused reload (silently, or with an error status) is rolled back: the guest
//! restores the configuration files of the batch from their backups, and the manager reloads
//! again.

use super::worker::Runner;
use crate::manager::{CallError, Manager};
use crate::metrics::Metrics;
use crate::outcome::{Action, Restored};
use crate::resolver::ResolverAccess;
use crate::scheduler::{Batch, Executor};
use crate::status::{Event, Status};
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

/// Longest excerpt of the manager's running configuration put in a log line.
const MAX_VIEW_IN_LOG: usize = 1024;

pub(super) struct ManagerExecutor {
    pub(super) manager: Manager,
    pub(super) runner: Runner,
    pub(super) resolver: Arc<ResolverAccess>,
    pub(super) schema_cache: std::path::PathBuf,
    pub(super) shutdown: CancellationToken,
    pub(super) metrics: Metrics,
    pub(super) status: Status,
}

impl Executor for ManagerExecutor {
    /// Served unless the manager stayed unreachable until shutdown: then the call stays owed.
    async fn execute(&mut self, batch: Batch) -> bool {
        let action = batch.action;
        if action == Action::None {
            return true;
        }
        let what = self.manager.path(action).unwrap_or("nothing");
        // The view before, only when the batch must change it: a configuration changed that
        // is one of the manager's files (another is merged by nobody until it is named).
        let kafka = &self.runner.config().kafka;
        let must_change = batch
            .changed_configs
            .iter()
            .any(|f| kafka.resolver_config.contains(&kafka.files_dir.join(f)));
        let before = match (action, must_change) {
            (Action::Reload, true) => self.view().await,
            _ => None,
        };
        // Why the batch's configuration was rolled back, if it was.
        let mut rolled_back = None;
        let result = match self.call(action).await {
            Err(refused @ CallError::Refused { .. }) if action == Action::Reload => {
                let why = refused.to_string();
                let again = self.roll_back(&batch, &why).await;
                rolled_back = Some(why);
                again
            }
            Ok(()) if before.is_some() => match self.view().await {
                Some(after) if Some(&after) == before.as_ref() => {
                    let view = excerpt(&after);
                    tracing::error!(
                        files = ?batch.config_files, running = %view,
                        "the manager answered the reload but still runs its previous configuration: it refused the new one"
                    );
                    let why =
                        "the manager refused the new configuration: the reload did not take effect";
                    rolled_back = Some(why.to_owned());
                    self.roll_back(&batch, why).await
                }
                _ => Ok(()),
            },
            other => other,
        };
        let (event, reason) = match (&result, rolled_back) {
            (Ok(()), None) => (Event::Served, None),
            (Ok(()), Some(why)) => (Event::RolledBack, Some(why)),
            (Err(e), None) => (Event::Refused, Some(e.to_string())),
            (Err(e), Some(why)) => (
                Event::Refused,
                Some(format!("{why}; reloading the restored configuration: {e}")),
            ),
        };
        self.status.call(event, action, &batch.transfer_ids, reason);
        if result.is_ok() && action == Action::Reload {
            crate::resolver::refresh_schema(&self.manager, &self.resolver, &self.schema_cache)
                .await;
        }
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

    /// The manager's running configuration, or `None` when it cannot be had (then no check).
    async fn view(&self) -> Option<serde_json::Value> {
        match self.manager.running_config().await {
            Ok(view) => Some(view),
            Err(e) => {
                tracing::warn!("{e}: whether the reload takes effect cannot be checked");
                None
            }
        }
    }

    /// Restore the batch's configuration files and reload with them.
    async fn roll_back(&self, batch: &Batch, why: &str) -> Result<(), CallError> {
        tracing::error!(
            files = ?batch.config_files,
            "{why}: restoring the previous version of the configuration files and reloading"
        );
        self.restore(&batch.committed).await;
        let again = self.call(Action::Reload).await;
        if again.is_ok() {
            tracing::warn!(files = ?batch.config_files, "reloaded with the restored configuration");
        }
        again
    }

    /// Have the guest put each file's previous version back (it is the only writer of the
    /// files directory), but only a file that still holds the version this batch committed: a
    /// newer one committed since is another batch's to judge, and must not be undone by this one.
    async fn restore(&self, committed: &[(String, String)]) {
        let files_dir = self.runner.config().kafka.files_dir.clone();
        let committed = committed.to_vec();
        // Checked and restored under the files lock: no commit can come in between.
        let result = self
            .runner
            .in_guest(move |guest, ctx| {
                let (current, newer): (Vec<_>, Vec<_>) = committed
                    .into_iter()
                    .partition(|(file, sha256)| holds_version(&files_dir.join(file), sha256));
                let names: Vec<String> = current.into_iter().map(|(f, _)| f).collect();
                let newer: Vec<String> = newer.into_iter().map(|(f, _)| f).collect();
                (guest.restore(ctx, &names).map(|r| (names, r)), newer)
            })
            .await;
        let (result, newer) = match result {
            Ok(both) => both,
            Err(e) => {
                tracing::error!("restoring the configuration: the guest's thread panicked: {e}");
                return;
            }
        };
        for file in newer {
            tracing::warn!(file = %file, "not restored: a newer version was committed since; its own reload decides");
        }
        let (files, results) = match result {
            Ok(both) => both,
            Err(failure) => {
                tracing::error!("restoring the configuration failed in the guest: {failure}");
                return;
            }
        };
        for (name, result) in files.iter().zip(results) {
            match result {
                Ok(done) => {
                    self.metrics.rollback();
                    let done = match done {
                        Restored::FromBackup => "restored from its backup",
                        Restored::Removed => "removed (it had no previous version)",
                        Restored::Absent => "absent, as before",
                    };
                    tracing::warn!(file = %name, "configuration {done}");
                }
                Err(e) => tracing::error!(file = %name, "restoring the configuration failed: {e}"),
            }
        }
    }
}

/// Whether `path` holds the content whose hex SHA-256 is `sha256`.
fn holds_version(path: &std::path::Path, sha256: &str) -> bool {
    use sha2::Digest;
    let Ok(mut file) = std::fs::File::open(path) else {
        return false;
    };
    let mut hasher = sha2::Sha256::new();
    std::io::copy(&mut file, &mut hasher).is_ok()
        && kres_kafka_guest::durable::hex(&hasher.finalize()) == sha256
}

/// The start of `view` as compact JSON, for a log line.
fn excerpt(view: &serde_json::Value) -> String {
    let mut text = view.to_string();
    if text.len() > MAX_VIEW_IN_LOG {
        text.truncate(text.floor_char_boundary(MAX_VIEW_IN_LOG));
        text.push_str("...");
    }
    text
}
