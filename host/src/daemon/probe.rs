//! The health probe: every [`PROBE_EVERY`], does the manager answer, and can the files
//! directory be written. What it finds goes to `/ready` and to the gauges; the executor's calls
//! tell the same about the manager as they happen.
//!
//! It never writes: the files directory is the guest's alone once the daemon runs, so its
//! writability is asked of the kernel (`access(2)`, which answers for read-only mounts, ACLs
//! and root), and the manager is asked `GET /`, which it answers from memory. A full disk is
//! not seen here but by the delivery that meets it, which pauses.

use crate::config::Management;
use crate::health::Health;
use crate::manager::Manager;
use crate::metrics::Metrics;
use std::path::PathBuf;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// How often the probe looks: `/ready` follows a change within this. One connection to the
/// manager and one system call per look.
pub const PROBE_EVERY: Duration = Duration::from_secs(5);

/// How long the manager is given to answer the probe; past it, it counts as unreachable.
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

/// The manager answered, or did not and why: for `/ready` and the gauge.
pub(super) fn manager_seen(health: &Health, metrics: &Metrics, answered: Result<(), String>) {
    metrics.manager_reachable(answered.is_ok());
    health.manager(answered);
}

/// Look now, then every [`PROBE_EVERY`] until `shutdown`, on a task of `tasks`.
pub(super) fn spawn(
    management: Management,
    files_dir: PathBuf,
    health: Health,
    metrics: Metrics,
    shutdown: CancellationToken,
    tasks: &TaskTracker,
) {
    let manager = Manager::new(management.clone(), false);
    let key = super::preflight::manager_key(&management);
    tasks.spawn(async move {
        let mut every = tokio::time::interval(PROBE_EVERY);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                _ = every.tick() => {}
            }
            health.files_dir(writable(&files_dir));
            let answered = tokio::time::timeout(PROBE_TIMEOUT, manager.answers())
                .await
                .unwrap_or_else(|_| Err(format!("no answer within {PROBE_TIMEOUT:?}")))
                .map_err(|e| format!("{key}: {e}"));
            manager_seen(&health, &metrics, answered);
        }
    });
}

/// Whether this process may create files in `dir`, or why not (naming the key).
fn writable(dir: &std::path::Path) -> Result<(), String> {
    use rustix::fs::Access;
    rustix::fs::access(dir, Access::WRITE_OK | Access::EXEC_OK).map_err(|e| {
        format!(
            "kafka.files-dir {}: {}",
            dir.display(),
            std::io::Error::from(e)
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_directory_is_not_writable_and_says_which() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(writable(dir.path()), Ok(()));
        let missing = dir.path().join("gone");
        let why = writable(&missing).unwrap_err();
        assert!(
            why.starts_with(&format!("kafka.files-dir {}: ", missing.display()))
                && why.contains("No such file"),
            "{why}"
        );
    }
}
