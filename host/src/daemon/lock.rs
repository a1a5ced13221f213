//! One daemon per directory: the state directory's lock (a file in it, holding the pid) and
//! the files directory's (a lock on the directory itself). Two daemons with different state
//! directories on one files directory would both write it, each with its own journal.
//!
//! The files directory holds no lock file: any name there is either one a publisher may use or
//! one the guest owns (its journal is replaced by a rename, its temporaries removed by its
//! maintenance, `guest/src/name.rs`), and a lock on a file that is renamed over or removed no
//! longer keeps anyone out. A `flock` on the directory itself needs no name; its holder's pid
//! is read from the kernel (`/proc/locks`, [`crate::system::flock_holder`]).

use crate::config::Settings;
use anyhow::Context as _;
use std::fs::File;

/// The lock that keeps a second daemon off the same state directory, in it.
pub const LOCK_FILE: &str = "lock";

/// Both locks, held for as long as this lives.
pub(super) struct Locks {
    _state_dir: File,
    _files_dir: File,
}

/// Take the state directory's lock, then the files directory's; a second daemon on either
/// fails here, naming the first.
pub(super) fn take(kafka: &Settings) -> anyhow::Result<Locks> {
    Ok(Locks {
        _state_dir: lock_state_dir(kafka)?,
        _files_dir: lock_files_dir(kafka)?,
    })
}

/// Take the state directory's lock for as long as the returned file is open, and write this
/// process's pid in it.
fn lock_state_dir(kafka: &Settings) -> anyhow::Result<File> {
    use std::io::{Read as _, Seek as _, Write as _};
    let path = kafka.state_dir.join(LOCK_FILE);
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .with_context(|| format!("opening {}", path.display()))?;
    match file.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => {
            let mut pid = String::new();
            let _ = file.read_to_string(&mut pid);
            anyhow::bail!(
                "another kres-kafka (pid {}) already delivers to kafka.files-dir {} with kafka.state-dir {}: one daemon per directory",
                pid.trim(),
                kafka.files_dir.display(),
                kafka.state_dir.display()
            );
        }
        Err(std::fs::TryLockError::Error(e)) => {
            return Err(e).with_context(|| format!("locking {}", path.display()));
        }
    }
    file.set_len(0)?;
    file.rewind()?;
    writeln!(file, "{}", std::process::id())?;
    Ok(file)
}

/// Take the files directory's lock: a `flock` on the directory, through a descriptor opened
/// read-only (nothing is written through it, and it keeps no filesystem from being remounted
/// read-only).
fn lock_files_dir(kafka: &Settings) -> anyhow::Result<File> {
    let dir = &kafka.files_dir;
    let file = File::open(dir)
        .with_context(|| format!("opening kafka.files-dir {} to lock it", dir.display()))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => {
            let who = crate::system::flock_holder(dir)
                .map_or_else(|| "another process".to_owned(), |pid| format!("pid {pid}"));
            anyhow::bail!(
                "another kres-kafka ({who}) already delivers to kafka.files-dir {} (with another kafka.state-dir than {}): one daemon per directory",
                dir.display(),
                kafka.state_dir.display()
            )
        }
        Err(std::fs::TryLockError::Error(e)) => {
            Err(e).with_context(|| format!("locking kafka.files-dir {}", dir.display()))
        }
    }
}
