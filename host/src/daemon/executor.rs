//! The manager executor: makes the scheduler's calls, and makes sure that the files on disk
//! are what the resolver runs.
//!
//! A 6.x manager answers 200 to every reload and renew, even one it refused (it logs the error
//! and keeps its previous configuration and rules). So every call is checked without trusting
//! its status: the resolver's policy-loader must have committed its rule database
//! ([`crate::ruledb`]), and a reload of a changed configuration must change the manager's
//! running configuration (`GET /v1/config`). A call refused either way is rolled back: the
//! guest restores every file of the batch from its backup (RPZ and other files as well as
//! configurations), and the manager is called again, so that the files on disk are what the
//! resolver runs and can start from.

use super::worker::Runner;
use crate::manager::{CallError, Manager};
use crate::metrics::Metrics;
use crate::outcome::{Action, Restored};
use crate::resolver::ResolverAccess;
use crate::ruledb::RuleDb;
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
    pub(super) health: crate::health::Health,
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
        // The running configuration must change only when the batch changed a configuration
        // that is one of the manager's files (another is merged by nobody until it is named).
        let kafka = &self.runner.config().kafka;
        let must_change = batch
            .changed_configs
            .iter()
            .any(|f| kafka.resolver_config.contains(&kafka.files_dir.join(f)));
        // Why the batch's files were rolled back, if they were.
        let mut rolled_back = None;
        let result = match self.call_checked(action, must_change).await {
            // Seen not to take effect, or a reload answered with an error status: the files are
            // what was refused. A renew answered with an error status (a manager restarting)
            // says nothing about the files: reported, not rolled back.
            Err(refused @ CallError::NoEffect { .. })
            | Err(refused @ CallError::Refused { .. })
                if action == Action::Reload || matches!(refused, CallError::NoEffect { .. }) =>
            {
                let why = format!("refused by the resolver: {refused}");
                let again = self.roll_back(&batch, &why).await;
                rolled_back = Some(why);
                again
            }
            other => other,
        };
        let (event, reason) = match (&result, rolled_back) {
            (Ok(()), None) => (Event::Served, None),
            (Ok(()), Some(why)) => (Event::RolledBack, Some(why)),
            (Err(e), None) => (Event::Refused, Some(e.to_string())),
            (Err(e), Some(why)) => (
                Event::Refused,
                Some(format!("{why}; then, with the restored files: {e}")),
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
    /// One call, retried while the manager is unreachable, each attempt counted; then checked
    /// without trusting its status code, which is 200 whether or not the manager took it:
    ///
    /// - the resolver's policy-loader must have committed its rule database (it runs at every
    ///   reload and renew, and commits only when every rule and file loaded);
    /// - with `must_change`, the running configuration (`GET /v1/config`) must differ from
    ///   the one before. The comparison is between two views of the manager's own parser,
    ///   never between kres-kafka's parse of a file and the manager's, so a YAML 1.1 versus
    ///   1.2 difference (`yes`, `on`, `1e3`) cannot make it roll back a reload that took.
    async fn call_checked(&self, action: Action, must_change: bool) -> Result<(), CallError> {
        let view_before = match (action, must_change) {
            (Action::Reload, true) => self.view().await,
            _ => None,
        };
        let rules = RuleDb::in_rundir(&self.runner.config().rundir);
        let rules_before = match rules.txnid() {
            Ok(id) => Some(id),
            Err(e) => {
                tracing::warn!(
                    path = %rules.path().display(),
                    "the resolver's rule database cannot be read ({e}): whether the manager loads the files cannot be checked"
                );
                None
            }
        };
        let path = self.manager.path(action).unwrap_or("none");
        self.manager
            .call_with_retry(action, &self.shutdown, |result| {
                let outcome = result.as_ref().map_or_else(CallError::kind, |()| "ok");
                self.metrics.manager_call(path, outcome);
                let answered = match result {
                    Err(e @ CallError::Unreachable { .. }) => Err(e.to_string()),
                    _ => Ok(()),
                };
                super::probe::manager_seen(&self.health, &self.metrics, answered);
            })
            .await?;
        if let Some(before) = view_before
            && let Some(after) = self.view().await
            && after == before
        {
            tracing::debug!(running = %excerpt(&after), "the running configuration is unchanged");
            return Err(self.manager.no_effect(
                action,
                "the manager still runs its previous configuration (its log says why)".into(),
            ));
        }
        if let Some(before) = rules_before {
            match rules.txnid() {
                Ok(after) if after == before => {
                    return Err(self.manager.no_effect(
                        action,
                        format!(
                            "the policy-loader loaded no rules: the rule database {} is still at transaction {before} (the manager's log says which file or line it refused)",
                            rules.path().display()
                        ),
                    ));
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(
                    path = %rules.path().display(),
                    "the resolver's rule database cannot be read after the call ({e}): not checked"
                ),
            }
        }
        Ok(())
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

    /// Restore every file the batch committed (configurations, RPZ, any other) and make the
    /// same call again, checked as the first was: the files on disk are then what the
    /// resolver runs, and what it will start from.
    async fn roll_back(&self, batch: &Batch, why: &str) -> Result<(), CallError> {
        let files: Vec<&str> = batch.committed.iter().map(|(f, _)| f.as_str()).collect();
        tracing::error!(
            ?files,
            "{why}: restoring the previous version of the files and calling the manager again"
        );
        self.restore(&batch.committed).await;
        let again = self.call_checked(batch.action, false).await;
        if again.is_ok() {
            tracing::warn!(?files, "the resolver took the restored files");
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
                tracing::error!("restoring the files: the guest's thread panicked: {e}");
                return;
            }
        };
        for file in newer {
            tracing::warn!(file = %file, "not restored: a newer version was committed since; its own reload decides");
        }
        let (files, results) = match result {
            Ok(both) => both,
            Err(failure) => {
                tracing::error!("restoring the files failed in the guest: {failure}");
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
                    tracing::warn!(file = %name, "{done}");
                }
                Err(e) => tracing::error!(file = %name, "restoring the file failed: {e}"),
            }
        }
    }
}

/// Whether `path` holds the content whose hex SHA-256 is `sha256`.
fn holds_version(path: &std::path::Path, sha256: &str) -> bool {
    use sha2::Digest;
    // The batch withdrew it: it still holds that "version" while it is absent.
    if sha256.is_empty() {
        return !path.exists();
    }
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
