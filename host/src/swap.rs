//! Hot swap of the guest. The guest's directory is watched (a new guest usually arrives by
//! rename) and SIGHUP asks for a check too. A changed file is loaded off the async threads:
//! compiled (or taken from the cache), checked against the world and self-tested by the
//! sandbox. Only a guest that passed every check is handed to the daemon, which switches to it
//! between two messages; a refused guest is logged with the reason and the current one stays.
//!
//! This module never switches anything itself, and never touches the files directory.

use crate::metrics::Metrics;
use crate::sandbox::{self, Guest, Sandbox};
use crate::status::Status;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// After a change, wait this long for more changes before reading the file: a copy in place
/// arrives in several writes, and reading it half-written would only log a refusal.
pub const SETTLE: Duration = Duration::from_millis(25);

/// A guest that passed its checks, ready to switch to.
pub struct Swapped {
    pub guest: Arc<Guest>,
    /// Host work from reading the file to the guest being ready (compile or cache, checks,
    /// self-test), excluding the settle delay.
    pub loaded_in: Duration,
}

/// Where a refused guest is told: counted, and reported on the status topic.
pub struct Refusals {
    pub metrics: Metrics,
    pub status: Status,
}

/// Watch `path` (when a guest path is configured) and `recheck` (the daemon's SIGHUP); send
/// each new guest that passes its checks (a refused one is told to `refusals`). `current` is the digest of the guest in use. The
/// task, on `tasks`, ends at `shutdown`.
pub fn spawn(
    sandbox: Arc<Sandbox>,
    path: Option<PathBuf>,
    current: String,
    refusals: Refusals,
    mut recheck: mpsc::UnboundedReceiver<()>,
    shutdown: CancellationToken,
    tasks: &TaskTracker,
) -> anyhow::Result<mpsc::Receiver<Swapped>> {
    let (changed_tx, mut changed) = mpsc::unbounded_channel();
    // One check as soon as the watcher is in place: a guest replaced between the initial load
    // and now would otherwise go unnoticed until the next change.
    if path.is_some() {
        let _ = changed_tx.send(());
    }
    let watcher = match &path {
        Some(path) => Some(crate::watch::file(path, "the guest file", changed_tx)?),
        None => None,
    };
    let (tx, rx) = mpsc::channel(1);
    tasks.spawn(async move {
        let _watcher = watcher;
        let mut current = current;
        loop {
            tokio::select! {
                // Shutdown first: a swap found at the same moment is not worth starting.
                biased;
                () = shutdown.cancelled() => return,
                Some(()) = changed.recv() => {}
                Some(()) = recheck.recv() => tracing::info!("asked to check the guest file"),
            }
            let Some(path) = &path else {
                tracing::warn!(
                    "no guest path is configured (kafka.guest): the embedded guest stays"
                );
                continue;
            };
            tokio::time::sleep(SETTLE).await;
            while changed.try_recv().is_ok() {}

            let started = Instant::now();
            let loader = Arc::clone(&sandbox);
            let (file, known) = (path.clone(), current.clone());
            // Reading, hashing, compiling and self-testing all block: off the async threads.
            let loaded = tokio::task::spawn_blocking(move || -> Result<Option<Guest>, String> {
                let reading = |e| format!("reading {}: {e}", file.display());
                let opened = std::fs::File::open(&file).map_err(reading)?;
                let digest = sandbox::digest_file(&opened).map_err(reading)?;
                if digest == known {
                    return Ok(None);
                }
                loader
                    .load_file_digested(&opened, &file, digest)
                    .map(Some)
                    .map_err(|e| e.to_string())
            })
            .await
            .unwrap_or_else(|e| Err(format!("its loader panicked: {e}")));
            match loaded {
                Ok(Some(guest)) => {
                    current = guest.digest().to_owned();
                    let swapped = Swapped {
                        guest: Arc::new(guest),
                        loaded_in: started.elapsed(),
                    };
                    if tx.send(swapped).await.is_err() {
                        return;
                    }
                }
                Ok(None) => tracing::debug!(path = %path.display(), "the guest file is unchanged"),
                Err(e) => {
                    refusals.metrics.swap_refused();
                    refusals.status.guest_refused(&e);
                    tracing::error!("refusing the new guest: {e}; the current guest stays");
                }
            }
        }
    });
    Ok(rx)
}
