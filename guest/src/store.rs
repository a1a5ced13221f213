//! The files directory: durable chunk sets, streaming assembly and the atomic commit
//! (SPEC section 2, steps 3 and 5). Plain `std::fs`, so the same code runs natively in unit
//! tests and inside the sandbox, where the files directory is the only preopen.
//!
//! Layout of a transfer of `zones/a.rpz` in progress:
//!
//! ```text
//! zones/a.rpz.chunks/meta      total, transfer-id, sha256, creation time (JSON)
//! zones/a.rpz.chunks/1 .. /n   one file per chunk index, renamed in once fsynced
//! ```
//!
//! Invariants this module keeps: a committed name is never missing nor partially written (it
//! only ever changes by `rename`); everything it reports as stored has been fsynced, file and
//! directory; memory stays bounded by one I/O buffer whatever the file's size.

use crate::durable::{self, sync_dir};
use crate::error::{Error, IoContext, Result};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

/// Size of the buffer used to stream chunks into a file and to compare files.
const BUF_SIZE: usize = 64 * 1024;

/// Name of the metadata file inside a chunk set.
const META: &str = "meta";

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

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
struct Meta {
    #[serde(flatten)]
    transfer: Transfer,
    /// Host clock (Unix seconds) when the set was started: expiry counts from here.
    created: u64,
}

/// A file assembled from its chunks into `<name>.tmp`, fsynced, not yet committed.
#[derive(Debug)]
pub struct Assembled {
    pub size: u64,
    pub sha256: [u8; 32],
}

/// The chunks of a set on disk.
#[derive(Debug, Default)]
struct Present {
    count: u32,
    size: u64,
    highest: u32,
    indices: Vec<u32>,
}

impl Present {
    fn has(&self, index: u32) -> bool {
        self.indices.contains(&index)
    }
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

    fn path(&self, name: &str) -> PathBuf {
        self.root.join(name)
    }

    fn sibling(&self, name: &str, suffix: &str) -> PathBuf {
        self.root.join(format!("{name}{suffix}"))
    }

    /// Write `content` to `<name>.tmp` and fsync it, creating parent directories.
    pub fn write_temporary(&self, name: &str, content: &[u8]) -> Result<()> {
        self.create_parents(name)?;
        let tmp = self.sibling(name, ".tmp");
        let mut file = File::create(&tmp).io(|| format!("creating {name}.tmp"))?;
        file.write_all(content)
            .io(|| format!("writing {name}.tmp"))?;
        file.sync_all().io(|| format!("syncing {name}.tmp"))
    }

    /// Whether the file in place under `name` holds exactly `content`.
    pub fn holds(&self, name: &str, content: &[u8]) -> Result<bool> {
        let Some(mut file) = open_existing(&self.path(name)).io(|| format!("opening {name}"))?
        else {
            return Ok(false);
        };
        let len = file
            .metadata()
            .io(|| format!("reading metadata of {name}"))?
            .len();
        if len != content.len() as u64 {
            return Ok(false);
        }
        same_content(&mut file, &mut &content[..]).io(|| format!("reading {name}"))
    }

    /// Read `<name>.tmp` whole, refusing anything over `max` bytes.
    pub fn read_temporary(&self, name: &str, max: u64) -> Result<Option<Vec<u8>>> {
        let tmp = self.sibling(name, ".tmp");
        let len = fs::metadata(&tmp)
            .io(|| format!("reading metadata of {name}.tmp"))?
            .len();
        if len > max {
            return Ok(None);
        }
        fs::read(&tmp)
            .map(Some)
            .io(|| format!("reading {name}.tmp"))
    }

    /// Remove `<name>.tmp` if it exists.
    pub fn discard_temporary(&self, name: &str) -> Result<()> {
        remove_file_if_exists(&self.sibling(name, ".tmp")).io(|| format!("removing {name}.tmp"))
    }

    /// Whether `<name>.tmp` is byte-identical to the file in place under `name`.
    pub fn temporary_matches(&self, name: &str) -> Result<bool> {
        let Some(mut old) = open_existing(&self.path(name)).io(|| format!("opening {name}"))?
        else {
            return Ok(false);
        };
        let mut new =
            File::open(self.sibling(name, ".tmp")).io(|| format!("opening {name}.tmp"))?;
        let old_len = old
            .metadata()
            .io(|| format!("reading metadata of {name}"))?
            .len();
        let new_len = new
            .metadata()
            .io(|| format!("reading metadata of {name}.tmp"))?
            .len();
        Ok(old_len == new_len
            && same_content(&mut old, &mut new).io(|| format!("comparing {name}"))?)
    }

    /// Swap `<name>.tmp` into place: keep the old file as `<name>.backup` (a hard link, so the
    /// backup is atomic and costs no copy), rename the temporary over `<name>` and fsync the
    /// directory. `<name>` is never missing. Callers decide beforehand whether the content
    /// differs ([`Files::holds`], [`Files::temporary_matches`]).
    pub fn commit(&self, name: &str) -> Result<()> {
        let target = self.path(name);
        if target.exists() {
            self.keep_backup(name)?;
        }
        fs::rename(self.sibling(name, ".tmp"), &target)
            .io(|| format!("renaming {name}.tmp to {name}"))?;
        sync_dir(parent_of(&target)).io(|| format!("syncing the directory of {name}"))
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

    /// The file in place under `name`, whole, when it exists and is at most `max` bytes.
    pub fn read_current(&self, name: &str, max: u64) -> Result<Option<Vec<u8>>> {
        let path = self.path(name);
        match fs::metadata(&path) {
            Ok(meta) if meta.len() <= max => {
                fs::read(&path).map(Some).io(|| format!("reading {name}"))
            }
            Ok(_) => Ok(None),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).io(|| format!("reading metadata of {name}")),
        }
    }

    /// Make `<name>.backup` the current `<name>`, atomically replacing the previous backup.
    fn keep_backup(&self, name: &str) -> Result<()> {
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
        fs::rename(&staging, &backup).io(|| format!("renaming {name}.backup.tmp to {name}.backup"))
    }

    /// Store one chunk of a transfer durably and return how many distinct chunks of it are on
    /// disk. A set on disk for another transfer of the same name is discarded first. A chunk
    /// that would take the set over `max_size` bytes discards the set and is rejected.
    ///
    /// With `ordered` (the chunk came from Kafka, where a partition keeps a publisher's order
    /// and the journal filters replays), chunks of one transfer arrive by increasing index, so a
    /// chunk numbered below one already stored, or equal to one stored with other content,
    /// starts a new transfer: the set is discarded first. Without a `transfer-id` (upstream's
    /// publisher sends none) that is what keeps a transfer whose first chunks were lost from
    /// being completed by the next one's.
    #[allow(clippy::too_many_arguments)]
    pub fn store_chunk(
        &self,
        name: &str,
        transfer: &Transfer,
        index: u32,
        value: &[u8],
        max_size: u64,
        now: u64,
        ordered: bool,
    ) -> Result<u32> {
        let dir = self.sibling(name, ".chunks");
        let meta = match self.read_meta(name)? {
            Some(meta) if meta.transfer == *transfer && ordered => {
                let present = self.chunks_present(name, transfer.total, None)?;
                let older = present.highest > index
                    || (present.has(index)
                        && fs::read(dir.join(index.to_string())).ok().as_deref() != Some(value));
                if older {
                    crate::log_info(format!(
                        "discarding chunk set of {name:?}: chunk {index} starts a new transfer (chunks up to {} were stored)",
                        present.highest
                    ));
                    None
                } else {
                    Some(meta)
                }
            }
            found => found,
        };
        match meta {
            Some(meta) if meta.transfer == *transfer => {}
            found => {
                if let Some(stale) = found {
                    crate::log_info(format!(
                        "discarding chunk set of {name:?}: it was for {:?}, now {transfer:?}",
                        stale.transfer
                    ));
                }
                self.discard_chunks(name)?;
                if ordered && index > 1 {
                    // Its transfer's first chunks went by unseen (the daemon joined late, or
                    // the broker dropped them): a set started here could never complete.
                    return Err(Error::BadHeader(format!(
                        "chunk {index} of {} of {name:?} comes without the chunks before it: \
                         its transfer cannot complete here, and no chunk set is kept for it",
                        transfer.total
                    )));
                }
                self.create_parents(name)?;
                fs::create_dir(&dir).io(|| format!("creating {name}.chunks"))?;
                let meta = serde_json::to_vec(&Meta {
                    transfer: transfer.clone(),
                    created: now,
                })
                .expect("metadata serializes");
                write_durably(&dir, META, &meta).io(|| format!("writing {name}.chunks/{META}"))?;
                sync_dir(parent_of(&dir)).io(|| format!("syncing the directory of {name}"))?;
            }
        }

        let present = self.chunks_present(name, transfer.total, Some(index))?;
        let (others, others_size) = (present.count, present.size);
        let size = others_size + value.len() as u64;
        if size > max_size {
            self.discard_chunks(name)?;
            return Err(Error::TooLarge(format!(
                "file {name:?} would exceed the maximum file size of {max_size} bytes \
                 (at least {size} bytes in chunks); its chunk set was discarded"
            )));
        }
        write_durably(&dir, &index.to_string(), value)
            .io(|| format!("writing chunk {index} of {name}"))?;
        Ok(others + 1)
    }

    /// The chunks of `name` on disk (indices `1..=total`, less `except`).
    fn chunks_present(&self, name: &str, total: u32, except: Option<u32>) -> Result<Present> {
        let dir = self.sibling(name, ".chunks");
        let mut present = Present::default();
        for entry in fs::read_dir(&dir).io(|| format!("listing {name}.chunks"))? {
            let entry = entry.io(|| format!("listing {name}.chunks"))?;
            let Some(index) = entry
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<u32>().ok())
            else {
                continue;
            };
            if (1..=total).contains(&index) && Some(index) != except {
                present.count += 1;
                present.highest = present.highest.max(index);
                present.indices.push(index);
                present.size += entry
                    .metadata()
                    .io(|| format!("reading chunk {index} of {name}"))?
                    .len();
            }
        }
        Ok(present)
    }

    /// Concatenate chunks `1..=total` of `name` into `<name>.tmp`, streaming through one buffer,
    /// hashing as it goes, and fsync the result.
    pub fn assemble(&self, name: &str, total: u32, max_size: u64) -> Result<Assembled> {
        let dir = self.sibling(name, ".chunks");
        let tmp = self.sibling(name, ".tmp");
        let mut out = File::create(&tmp).io(|| format!("creating {name}.tmp"))?;
        let mut hasher = Sha256::new();
        let mut buf = vec![0u8; BUF_SIZE];
        let mut size = 0u64;
        for index in 1..=total {
            let mut chunk = File::open(dir.join(index.to_string()))
                .io(|| format!("opening chunk {index} of {name}"))?;
            loop {
                let n = chunk
                    .read(&mut buf)
                    .io(|| format!("reading chunk {index} of {name}"))?;
                if n == 0 {
                    break;
                }
                size += n as u64;
                if size > max_size {
                    drop(out);
                    self.discard_temporary(name)?;
                    return Err(Error::TooLarge(format!(
                        "file {name:?} exceeds the maximum file size of {max_size} bytes"
                    )));
                }
                hasher.update(&buf[..n]);
                out.write_all(&buf[..n])
                    .io(|| format!("writing {name}.tmp"))?;
            }
        }
        out.sync_all().io(|| format!("syncing {name}.tmp"))?;
        Ok(Assembled {
            size,
            sha256: hasher.finalize().into(),
        })
    }

    /// Remove the chunk set of `name`, if any.
    pub fn discard_chunks(&self, name: &str) -> Result<()> {
        let dir = self.sibling(name, ".chunks");
        match fs::remove_dir_all(&dir) {
            Ok(()) => sync_dir(parent_of(&dir)).io(|| format!("syncing the directory of {name}")),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e).io(|| format!("removing {name}.chunks")),
        }
    }

    fn read_meta(&self, name: &str) -> Result<Option<Meta>> {
        let path = self.sibling(name, ".chunks").join(META);
        match fs::read(&path) {
            // Unreadable metadata (a set from an older guest, or damage) counts as a stale set.
            Ok(bytes) => Ok(serde_json::from_slice(&bytes).ok()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).io(|| format!("reading {name}.chunks/{META}")),
        }
    }

    /// Create the directories above `name`, fsyncing each new one into its parent.
    /// Refuse `name` when it cannot be a file here: one of its parents is a file, or it is a
    /// directory. That is the publisher's mistake, not the disk's: an I/O error would make the
    /// host offer the message again forever, so it is a rejection naming the clash.
    pub fn check_clash(&self, name: &str) -> Result<()> {
        let clash = |what: String| {
            Err(Error::BadName(format!(
                "file-name {name:?} cannot be a file here: {what}"
            )))
        };
        let mut path = self.root.clone();
        let components: Vec<&str> = name.split('/').collect();
        for (i, component) in components.iter().enumerate() {
            path.push(component);
            let Ok(meta) = fs::symlink_metadata(&path) else {
                return Ok(());
            };
            let last = i + 1 == components.len();
            if !last && !meta.is_dir() {
                return clash(format!(
                    "{:?} is a file, not a directory",
                    components[..=i].join("/")
                ));
            }
            if last && meta.is_dir() {
                return clash("it is a directory".into());
            }
        }
        Ok(())
    }

    fn create_parents(&self, name: &str) -> Result<()> {
        let Some((parents, _)) = name.rsplit_once('/') else {
            return Ok(());
        };
        let mut path = self.root.clone();
        for component in parents.split('/') {
            let parent = path.clone();
            path.push(component);
            match fs::create_dir(&path) {
                Ok(()) => {
                    sync_dir(&parent).io(|| format!("syncing the directory above {component:?}"))?
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                Err(e) => {
                    return Err(e).io(|| format!("creating directory {component:?} of {name}"));
                }
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
                let created = self.read_meta(name)?.map(|m| m.created);
                if created.is_none_or(|c| now.saturating_sub(c) > max_age) {
                    crate::log_info(format!("expiring incomplete chunk set of {name:?}"));
                    self.discard_chunks(name)?;
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
            .is_some_and(|n| n.ends_with(".part"))
        {
            fs::remove_file(entry.path()).io(|| format!("removing a partial chunk in {rel}"))?;
            removed += 1;
        }
    }
    Ok(removed)
}

/// Write `dir/name` so that it is complete or absent after a crash (through `name.part`,
/// which maintenance removes if a crash leaves it).
fn write_durably(dir: &Path, name: &str, content: &[u8]) -> io::Result<()> {
    durable::write_atomically(
        &dir.join(name),
        &dir.join(format!("{name}.part")),
        content,
        None,
    )
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
