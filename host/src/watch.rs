//! Watching one file for changes: the guest (hot swap) and the SASL password (rotation).

use notify::{RecursiveMode, Watcher};
use std::path::{Path, PathBuf};
use tokio::sync::mpsc;

/// Watch the directory of `path` (not the file: a rename replaces the file's inode, and an
/// editor or `systemd-creds` may write a new one) and send on `changed` whenever that name
/// changes. `what` names the file in the errors. Watching lasts as long as the watcher.
pub fn file(
    path: &Path,
    what: &'static str,
    changed: mpsc::UnboundedSender<()>,
) -> anyhow::Result<notify::RecommendedWatcher> {
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_owned(),
        _ => PathBuf::from("."),
    };
    let name = path.file_name().map(ToOwned::to_owned);
    let mut watcher =
        notify::recommended_watcher(move |event: notify::Result<notify::Event>| match event {
            Ok(event)
                if event.paths.iter().any(|p| p.file_name() == name.as_deref())
                    && !event.kind.is_access() =>
            {
                let _ = changed.send(());
            }
            Ok(_) => {}
            Err(e) => tracing::warn!("watching {what}: {e}"),
        })?;
    watcher
        .watch(&dir, RecursiveMode::NonRecursive)
        .map_err(|e| anyhow::anyhow!("watching {} for changes to {what}: {e}", dir.display()))?;
    Ok(watcher)
}
