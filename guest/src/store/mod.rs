//! The files directory: what is in place, staging and swapping files in, backups, clashes and
//! maintenance (SPEC section 2, step 5). Plain `std::fs`, so the same code runs natively in unit
//! tests and inside the sandbox, where the files directory is the only preopen. Chunk sets are
//! in `chunks`; what a batch stages is made durable and swapped in by `crate::batch`.
//!
//! Invariants this module keeps: a committed name is never missing nor partially written (it
//! only ever changes by `rename`); memory stays bounded by one I/O buffer whatever the file's
//! size. Nothing here fsyncs a file it stages: the batch makes everything durable in one flush
//! before anything is renamed into place.

pub mod chunks;

use crate::durable::sync_dir;
use crate::error::{IoContext, Result};
use serde::{Deserialize, Serialize};
use std::fs::{self, File};
use std::io::{self, Read};
use std::path::{Path, PathBuf};

/// Size of the buffer used to stream chunks into a file and to compare files.
const BUF_SIZE: usize = 64 * 1024;

/// Deepest directory nesting the maintenance walk descends into.
const MAX_WALK_DEPTH: usize = 32;

/// The identity of a transfer, stored with its chunks. A chunk whose identity differs from the
/// stored one belongs to another transfer: the stale set is discarded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Transfer {
    /// `total-chunks`.
    pub total: u32,
    /// `transfer-id`, hex-encoded (it is opaque bytes).
    pub transfer_id: Option<String>,
    /// `sha256`, hex.
    pub sha256: Option<String>,
}

/// What [`Files::restore`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Restored {
    FromBackup,
    Removed,
    Absent,
}

/// What a maintenance pass did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Maintenance {
    pub temporaries_removed: u32,
    pub chunk_sets_expired: u32,
    pub chunk_sets_kept: u32,
}

/// The files directory.
#[derive(Debug, Clone)]
pub struct Files {
    root: PathBuf,
}

impl Files {
    /// The files directory at `root` (`/` inside the sandbox: the preopen).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Files { root: root.into() }
    }

    /// The files directory itself.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The path of `name` inside the files directory.
    pub fn path(&self, name: &str) -> PathBuf {
        self.root.join(name)
    }

    /// The path of `<name><suffix>` inside the files directory.
    pub fn sibling(&self, name: &str, suffix: &str) -> PathBuf {
        self.root.join(format!("{name}{suffix}"))
    }

    /// Make `<name>.tmp` a second name of `file` (a hard link: no copy), replacing any
    /// `<name>.tmp` there. Where hard links are not supported, a copy.
    pub fn link_temporary(&self, name: &str, file: &Path) -> Result<()> {
        let tmp = self.sibling(name, ".tmp");
        remove_file_if_exists(&tmp).io(|| format!("removing {name}.tmp"))?;
        if fs::hard_link(file, &tmp).is_err() {
            fs::copy(file, &tmp).io(|| format!("copying the assembled {name} to {name}.tmp"))?;
        }
        Ok(())
    }

    /// Whether the file `shown` at `path` holds exactly `content`.
    pub fn file_holds(&self, path: &Path, shown: &str, content: &[u8]) -> Result<bool> {
        let Some(mut file) = open_existing(path).io(|| format!("opening {shown}"))? else {
            return Ok(false);
        };
        let len = file
            .metadata()
            .io(|| format!("reading metadata of {shown}"))?
            .len();
        if len != content.len() as u64 {
            return Ok(false);
        }
        same_content(&mut file, &mut &content[..]).io(|| format!("reading {shown}"))
    }

    /// Whether the files at `a` and `b` (shown as `shown`) have the same content.
    pub fn same_files(&self, a: &Path, b: &Path, shown: &str) -> Result<bool> {
        let Some(mut old) = open_existing(a).io(|| format!("opening {shown}"))? else {
            return Ok(false);
        };
        let Some(mut new) = open_existing(b).io(|| format!("opening {shown}"))? else {
            return Ok(false);
        };
        let len = |f: &File| f.metadata().map(|m| m.len());
        let (old_len, new_len) = (len(&old), len(&new));
        let (old_len, new_len) = (
            old_len.io(|| format!("reading metadata of {shown}"))?,
            new_len.io(|| format!("reading metadata of {shown}"))?,
        );
        Ok(old_len == new_len
            && same_content(&mut old, &mut new).io(|| format!("comparing {shown}"))?)
    }

    /// Rename `<name>.tmp` over `<name>`: `<name>` is never missing. Not synced: the batch
    /// flushes its renames together.
    pub fn rename_into_place(&self, name: &str) -> Result<()> {
        fs::rename(self.sibling(name, ".tmp"), self.path(name))
            .io(|| format!("renaming {name}.tmp to {name}"))
    }

    /// Put the previous version of `name` back: its `.backup` renamed over it (atomic; the
    /// backup is used up), or, with no backup, `name` removed: it was new.
    pub fn restore(&self, name: &str) -> Result<Restored> {
        let target = self.path(name);
        let backup = self.sibling(name, ".backup");
        let done = if backup.exists() {
            fs::rename(&backup, &target).io(|| format!("renaming {name}.backup to {name}"))?;
            Restored::FromBackup
        } else if target.exists() {
            fs::remove_file(&target).io(|| format!("removing {name}"))?;
            Restored::Removed
        } else {
            return Ok(Restored::Absent);
        };
        sync_dir(parent_of(&target)).io(|| format!("syncing the directory of {name}"))?;
        Ok(done)
    }

    /// Remove the withdrawn file `name` (its backup was kept); gone already is done. Not synced
    /// (see [`Files::rename_into_place`]).
    pub fn remove_in_place(&self, name: &str) -> Result<()> {
        remove_file_if_exists(&self.path(name)).io(|| format!("removing {name}"))
    }

    /// The file `shown` at `path`, whole, when it exists and is at most `max` bytes.
    pub fn read_file(&self, path: &Path, shown: &str, max: u64) -> Result<Option<Vec<u8>>> {
        match fs::metadata(path) {
            Ok(meta) if meta.len() <= max => {
                fs::read(path).map(Some).io(|| format!("reading {shown}"))
            }
            Ok(_) => Ok(None),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).io(|| format!("reading metadata of {shown}")),
        }
    }

    /// Make `<name>.backup` the current `<name>` (there is one), atomically replacing the
    /// previous backup. Not synced (see [`Files::rename_into_place`]).
    pub fn keep_backup(&self, name: &str) -> Result<()> {
        let target = self.path(name);
        let backup = self.sibling(name, ".backup");
        let staging = self.sibling(name, ".backup.tmp");
        remove_file_if_exists(&staging).io(|| format!("removing {name}.backup.tmp"))?;
        if fs::hard_link(&target, &staging).is_err() {
            // A filesystem without hard links: copy, but still into place by rename.
            let mut from = File::open(&target).io(|| format!("opening {name}"))?;
            let mut to = File::create(&staging).io(|| format!("creating {name}.backup.tmp"))?;
            io::copy(&mut from, &mut to).io(|| format!("copying {name} to {name}.backup.tmp"))?;
            to.sync_all().io(|| format!("syncing {name}.backup.tmp"))?;
        }
        fs::rename(&staging, &backup)
            .io(|| format!("renaming {name}.backup.tmp to {name}.backup"))?;
        // When the backup already was another name of the same file (a batch redone after a
        // kill), rename(2) does nothing and succeeds (POSIX): the staging name stays.
        remove_file_if_exists(&staging).io(|| format!("removing {name}.backup.tmp"))
    }

    /// Create the directories above `name` (not synced: the batch flushes them).
    pub(crate) fn create_parents(&self, name: &str) -> Result<()> {
        let Some((parents, _)) = name.rsplit_once('/') else {
            return Ok(());
        };
        let mut path = self.root.clone();
        for component in parents.split('/') {
            path.push(component);
            if let Err(e) = fs::create_dir(&path)
                && !path.is_dir()
            {
                return Err(e).io(|| format!("creating directory {component:?} of {name}"));
            }
        }
        Ok(())
    }

    /// Remove what a crash left behind (`*.tmp`, `*.part`) and expire chunk sets started more
    /// than `max_age` seconds before `now`.
    pub fn maintain(&self, now: u64, max_age: u64) -> Result<Maintenance> {
        let mut report = Maintenance::default();
        self.walk(&self.root.clone(), "", 0, now, max_age, &mut report)?;
        Ok(report)
    }

    fn walk(
        &self,
        dir: &Path,
        rel: &str,
        depth: usize,
        now: u64,
        max_age: u64,
        report: &mut Maintenance,
    ) -> Result<()> {
        let shown = if rel.is_empty() {
            "the files directory"
        } else {
            rel
        };
        for entry in fs::read_dir(dir).io(|| format!("listing {shown}"))? {
            let entry = entry.io(|| format!("listing {shown}"))?;
            let Ok(file_name) = entry.file_name().into_string() else {
                continue;
            };
            let rel = if rel.is_empty() {
                file_name.clone()
            } else {
                format!("{rel}/{file_name}")
            };
            let kind = entry
                .file_type()
                .io(|| format!("reading the type of {rel}"))?;
            if kind.is_dir() && file_name.ends_with(".chunks") {
                let name = rel.strip_suffix(".chunks").expect("checked suffix");
                let created = chunks::created(self, name)?;
                if created.is_none_or(|c| now.saturating_sub(c) > max_age) {
                    crate::log_info(format!("expiring incomplete chunk set of {name:?}"));
                    chunks::discard(self, name)?;
                    report.chunk_sets_expired += 1;
                } else {
                    report.temporaries_removed += remove_temporaries(&entry.path(), &rel)?;
                    report.chunk_sets_kept += 1;
                }
            } else if kind.is_dir() && depth < MAX_WALK_DEPTH {
                self.walk(&entry.path(), &rel, depth + 1, now, max_age, report)?;
            } else if kind.is_file()
                && (file_name.ends_with(".tmp") || file_name.ends_with(".part"))
            {
                fs::remove_file(entry.path()).io(|| format!("removing {rel}"))?;
                report.temporaries_removed += 1;
            }
        }
        Ok(())
    }
}

fn remove_temporaries(dir: &Path, rel: &str) -> Result<u32> {
    let mut removed = 0;
    for entry in fs::read_dir(dir).io(|| format!("listing {rel}"))? {
        let entry = entry.io(|| format!("listing {rel}"))?;
        if entry
            .file_name()
            .to_str()
            .is_some_and(|n| n.ends_with(".part") || n.ends_with(".tmp"))
        {
            fs::remove_file(entry.path()).io(|| format!("removing a partial chunk in {rel}"))?;
            removed += 1;
        }
    }
    Ok(removed)
}

fn parent_of(path: &Path) -> &Path {
    path.parent()
        .expect("paths under the files directory have a parent")
}

fn open_existing(path: &Path) -> io::Result<Option<File>> {
    match File::open(path) {
        Ok(file) => Ok(Some(file)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

fn remove_file_if_exists(path: &Path) -> io::Result<()> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// Compare two readers of equal length block by block.
fn same_content(a: &mut impl Read, b: &mut impl Read) -> io::Result<bool> {
    let mut buf_a = vec![0u8; BUF_SIZE];
    let mut buf_b = vec![0u8; BUF_SIZE];
    loop {
        let n = read_full(a, &mut buf_a)?;
        let m = read_full(b, &mut buf_b)?;
        if buf_a[..n] != buf_b[..m] {
            return Ok(false);
        }
        if n == 0 {
            return Ok(true);
        }
    }
}

/// Read until `buf` is full or the reader ends.
fn read_full(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match r.read(&mut buf[filled..])? {
            0 => break,
            n => filled += n,
        }
    }
    Ok(filled)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeping_a_backup_that_is_already_the_file_leaves_no_staging_name() {
        // A batch redone after a kill: `a.rpz.backup` is already a second name of `a.rpz`.
        let dir = tempfile::tempdir().unwrap();
        let files = Files::new(dir.path());
        std::fs::write(files.path("a.rpz"), b"x CNAME .\n").unwrap();
        std::fs::hard_link(files.path("a.rpz"), files.sibling("a.rpz", ".backup")).unwrap();
        files.keep_backup("a.rpz").unwrap();
        assert!(!files.sibling("a.rpz", ".backup.tmp").exists());
        assert_eq!(
            std::fs::read(files.sibling("a.rpz", ".backup")).unwrap(),
            b"x CNAME .\n"
        );
        // And the ordinary case: a new backup in place, no staging name either.
        std::fs::remove_file(files.path("a.rpz")).unwrap();
        std::fs::write(files.path("a.rpz"), b"y CNAME .\n").unwrap();
        files.keep_backup("a.rpz").unwrap();
        assert!(!files.sibling("a.rpz", ".backup.tmp").exists());
        assert_eq!(
            std::fs::read(files.sibling("a.rpz", ".backup")).unwrap(),
            b"y CNAME .\n"
        );
    }
}
