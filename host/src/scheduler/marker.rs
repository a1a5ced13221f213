//! The marker of a manager call still owed: a file in the state directory, written durably
//! before the offset of the message that asked for the call is stored, so that a hard kill
//! cannot lose the call.

use crate::outcome::Action;
use kres_kafka_guest::durable;
use std::path::PathBuf;

/// A file recording the strongest manager call still owed (`reload` or `renew`).
#[derive(Debug, Clone)]
pub struct PendingMarker {
    path: PathBuf,
}

impl PendingMarker {
    pub fn new(path: PathBuf) -> Self {
        PendingMarker { path }
    }

    /// The call owed, `Action::None` when none is (an unreadable marker counts as a reload:
    /// the safe side).
    pub fn read(&self) -> Action {
        match std::fs::read_to_string(&self.path) {
            Ok(text) if text.trim() == "renew" => Action::Renew,
            Ok(_) => Action::Reload,
            Err(_) => Action::None,
        }
    }

    pub(super) fn write(&self, action: Action) -> std::io::Result<()> {
        let content: &[u8] = if action == Action::Reload {
            b"reload\n"
        } else {
            b"renew\n"
        };
        durable::write_atomically(&self.path, &self.path.with_extension("tmp"), content, None)
    }

    pub(super) fn clear(&self) -> std::io::Result<()> {
        match std::fs::remove_file(&self.path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => durable::sync_parent(&self.path),
        }
    }
}
