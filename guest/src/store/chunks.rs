//! Chunk sets: a file arriving in chunks (SPEC section 2, step 3), each byte written once.
//!
//! Layout of a transfer of `zones/a.rpz` in progress:
//!
//! ```text
//! zones/a.rpz.chunks/meta   the record: transfer identity, start time, the length of each
//!                           chunk appended to `part`, the SHA-256 state after them, and the
//!                           chunks waiting for their turn (JSON, replaced by rename)
//! zones/a.rpz.chunks/part   chunks 1..k, appended in order as they arrive
//! zones/a.rpz.chunks/<n>    a chunk that came ahead of its turn, appended when its turn comes
//! ```
//!
//! Kafka keeps a partition in order, so chunks normally go straight to the end of `part` and
//! are hashed as they go (with the host's native SHA-256); a finished `part` is linked into
//! place without a copy. The record, not the directory listing, says what is there: `part` may
//! be longer than the record says (appended after the last batch's flush: the excess is cut),
//! and a chunk file the record does not name is ignored. The record is written once per batch,
//! after the flush that makes what it describes durable ([`Set::stage_meta`]).

use super::{Files, Transfer};
use crate::digest::{Compress, Sha256State};
use crate::error::{IoContext, Result};
use crate::process::Value;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{self, Read, Seek, SeekFrom};
use std::path::PathBuf;

/// The record inside a chunk set.
pub const META: &str = "meta";
/// The record being replaced (renamed over [`META`] once the batch is flushed).
const META_NEXT: &str = "meta.tmp";
/// The chunks appended so far.
pub const PART: &str = "part";
/// The record's layout; sets from an older guest (one file per chunk, no record of them) are
/// read by listing their directory once.
const LAYOUT: u32 = 2;

/// The record of a chunk set.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Meta {
    #[serde(flatten)]
    pub transfer: Transfer,
    /// Host clock (Unix seconds) when the set was started: expiry counts from here.
    pub created: u64,
    #[serde(default)]
    layout: u32,
    /// The length of each chunk appended to `part`, chunk 1 first.
    #[serde(default)]
    appended: Vec<u64>,
    /// SHA-256 of `part` so far.
    #[serde(default)]
    hashed: Sha256State,
    /// Chunks stored ahead of their turn, by index: their length.
    #[serde(default)]
    waiting: BTreeMap<u32, u64>,
    /// The message that started the set, when it came from Kafka: a message from before it on
    /// the same partition (a batch killed before its journal entry, come again) is not of it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_by: Option<crate::journal::Position>,
    /// The last message that stored a chunk in the set, when it came from Kafka: a chunk the
    /// set holds, in a later message, is a new transfer's, whatever its bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_by: Option<crate::journal::Position>,
}

impl Meta {
    /// Whether the message at `position` is a later one than the last that stored a chunk
    /// here, on the same partition (not a redelivery of one of them).
    pub fn later_than_last(&self, position: Option<&crate::journal::Position>) -> bool {
        match (&self.last_by, position) {
            (Some(last), Some(at)) => last.partition == at.partition && at.offset > last.offset,
            _ => false,
        }
    }

    /// Whether the set was started by a message after `position` on the same partition.
    pub fn started_after(&self, position: Option<&crate::journal::Position>) -> bool {
        match (&self.started_by, position) {
            (Some(start), Some(at)) => start.partition == at.partition && start.offset > at.offset,
            _ => false,
        }
    }
}

/// A chunk set loaded for a batch.
#[derive(Debug)]
pub struct Set {
    pub name: String,
    pub meta: Meta,
    /// Its transfer ended in this batch (committed, unchanged or rejected once complete): the
    /// set stays until the batch is recorded in the journal, then goes.
    pub finished: bool,
}

/// What storing one chunk did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stored {
    /// A chunk not seen before.
    New,
    /// The same chunk again, byte for byte (a redelivery after a crash): nothing changed.
    Again,
}

impl Set {
    /// A new, empty set for `transfer` (its directory created, in a directory that exists;
    /// not yet durable).
    pub fn start(
        files: &Files,
        name: &str,
        transfer: &Transfer,
        now: u64,
        started_by: Option<crate::journal::Position>,
    ) -> Result<Set> {
        let dir = dir(files, name);
        fs::create_dir(&dir).io(|| format!("creating {name}.chunks"))?;
        Ok(Set {
            name: name.to_owned(),
            meta: Meta {
                transfer: transfer.clone(),
                created: now,
                layout: LAYOUT,
                appended: Vec::new(),
                hashed: Sha256State::default(),
                waiting: BTreeMap::new(),
                started_by,
                last_by: None,
            },
            finished: false,
        })
    }

    /// The set of `name` on disk: `Ok(None)` when there is none, `Ok(Some(None))` when its
    /// record cannot be read (a damaged set: stale).
    pub fn load(files: &Files, name: &str) -> Result<Option<Option<Set>>> {
        let dir = dir(files, name);
        let bytes = match fs::read(dir.join(META)) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Ok(dir.is_dir().then_some(None));
            }
            Err(e) => return Err(e).io(|| format!("reading {name}.chunks/{META}")),
        };
        let Ok(mut meta) = serde_json::from_slice::<Meta>(&bytes) else {
            return Ok(Some(None));
        };
        if meta.layout < LAYOUT {
            // One file per chunk, all of them named by index: they all wait for their turn.
            meta.waiting = listed(files, name, meta.transfer.total)?;
            meta.layout = LAYOUT;
        }
        Ok(Some(Some(Set {
            name: name.to_owned(),
            meta,
            finished: false,
        })))
    }

    /// Distinct chunks stored.
    pub fn received(&self) -> u32 {
        (self.meta.appended.len() + self.meta.waiting.len()) as u32
    }

    /// The highest index stored.
    pub fn highest(&self) -> u32 {
        let waiting = self.meta.waiting.keys().next_back().copied().unwrap_or(0);
        waiting.max(self.meta.appended.len() as u32)
    }

    /// Bytes stored, appended or waiting.
    pub fn size(&self) -> u64 {
        self.part_len() + self.meta.waiting.values().sum::<u64>()
    }

    fn part_len(&self) -> u64 {
        self.meta.appended.iter().sum()
    }

    /// Every chunk is appended: `part` is the whole file.
    pub fn complete(&self) -> bool {
        self.meta.appended.len() as u32 == self.meta.transfer.total
    }

    /// Whether chunk `index` is stored.
    pub fn has(&self, index: u32) -> bool {
        index as usize <= self.meta.appended.len() || self.meta.waiting.contains_key(&index)
    }

    /// Whether the stored chunk `index` is `value`, byte for byte.
    pub fn holds(&self, files: &Files, index: u32, value: &[u8]) -> Result<bool> {
        let name = &self.name;
        let i = index as usize;
        if i <= self.meta.appended.len() {
            if self.meta.appended[i - 1] != value.len() as u64 {
                return Ok(false);
            }
            let offset: u64 = self.meta.appended[..i - 1].iter().sum();
            let mut part =
                File::open(self.part_path(files)).io(|| format!("opening {name}.chunks/{PART}"))?;
            part.seek(SeekFrom::Start(offset))
                .io(|| format!("reading {name}.chunks/{PART}"))?;
            let mut stored = vec![0; value.len()];
            part.read_exact(&mut stored)
                .io(|| format!("reading {name}.chunks/{PART}"))?;
            return Ok(stored == value);
        }
        match self.meta.waiting.get(&index) {
            Some(len) if *len == value.len() as u64 => {
                let stored = fs::read(dir(files, name).join(index.to_string()))
                    .io(|| format!("reading chunk {index} of {name}"))?;
                Ok(stored == value)
            }
            _ => Ok(false),
        }
    }

    /// Store chunk `index` (not stored yet): appended to `part` if its turn has come (then any
    /// waiting chunks whose turn follows), else kept as a file until then.
    pub fn store(
        &mut self,
        files: &Files,
        compress: Compress<'_>,
        index: u32,
        value: &dyn Value,
    ) -> Result<()> {
        if index as usize == self.meta.appended.len() + 1 {
            self.append(files, compress, value)?;
        } else {
            let path = dir(files, &self.name).join(index.to_string());
            fs::write(&path, value.read())
                .io(|| format!("writing chunk {index} of {}", self.name))?;
            self.meta.waiting.insert(index, value.size());
        }
        // Chunks whose turn has come (a set taken over from an older guest has only those).
        while let Some(len) = self
            .meta
            .waiting
            .remove(&(self.meta.appended.len() as u32 + 1))
        {
            let next = self.meta.appended.len() + 1;
            let path = dir(files, &self.name).join(next.to_string());
            let chunk = fs::read(&path).io(|| format!("reading chunk {next} of {}", self.name))?;
            if chunk.len() as u64 != len {
                return Err(io::Error::other(format!(
                    "it is {} bytes, its record says {len}",
                    chunk.len()
                )))
                .io(|| format!("reading chunk {next} of {}", self.name));
            }
            self.append(files, compress, &chunk)?;
        }
        Ok(())
    }

    fn append(&mut self, files: &Files, compress: Compress<'_>, value: &dyn Value) -> Result<()> {
        let name = &self.name;
        // Written at the record's length, and ended after it: bytes appended after the last
        // flush of a crashed batch (not in the record) are overwritten or cut.
        let len = self.part_len();
        let rel = part_rel(name);
        value
            .write_to(files, &rel, len, &mut self.meta.hashed, compress)
            .io(|| format!("appending to {name}.chunks/{PART}"))?;
        self.meta.appended.push(value.size());
        Ok(())
    }

    /// SHA-256 of the whole file (the set is complete).
    pub fn digest(&self, compress: Compress<'_>) -> [u8; 32] {
        self.meta.hashed.finish(compress)
    }

    /// Where the appended chunks are.
    pub fn part_path(&self, files: &Files) -> PathBuf {
        dir(files, &self.name).join(PART)
    }

    /// Write the record as it is now next to the current one, for [`Set::install_meta`] to
    /// rename over it once the batch is flushed.
    pub fn stage_meta(&mut self, files: &Files) -> Result<()> {
        let bytes = serde_json::to_vec(&self.meta).expect("the record serializes");
        fs::write(dir(files, &self.name).join(META_NEXT), bytes)
            .io(|| format!("writing {}.chunks/{META_NEXT}", self.name))
    }

    /// Put the staged record in place.
    pub fn install_meta(&self, files: &Files) -> Result<()> {
        let dir = dir(files, &self.name);
        fs::rename(dir.join(META_NEXT), dir.join(META))
            .io(|| format!("renaming {}.chunks/{META_NEXT} to {META}", self.name))
    }
}

/// Where the appended chunks of `name` are, relative to the files directory.
pub fn part_rel(name: &str) -> String {
    format!("{name}.chunks/{PART}")
}

/// The directory of the chunk set of `name`.
fn dir(files: &Files, name: &str) -> PathBuf {
    files.sibling(name, ".chunks")
}

/// When the set of `name` was started, if it has a readable record.
pub fn created(files: &Files, name: &str) -> Result<Option<u64>> {
    Ok(match Set::load(files, name)? {
        Some(Some(set)) => Some(set.meta.created),
        _ => None,
    })
}

/// Remove the chunk set of `name`, if any. Not synced: a batch's flush makes it durable, and
/// a set whose removal a crash undoes is removed again (journal cleanup, or expiry).
pub fn discard(files: &Files, name: &str) -> Result<()> {
    match fs::remove_dir_all(dir(files, name)) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e).io(|| format!("removing {name}.chunks")),
    }
}

/// The chunk files of an older guest's set: index to length, for indices `1..=total`.
fn listed(files: &Files, name: &str, total: u32) -> Result<BTreeMap<u32, u64>> {
    let mut found = BTreeMap::new();
    for entry in fs::read_dir(dir(files, name)).io(|| format!("listing {name}.chunks"))? {
        let entry = entry.io(|| format!("listing {name}.chunks"))?;
        let index = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok());
        if let Some(index) = index.filter(|i| (1..=total).contains(i)) {
            let len = entry
                .metadata()
                .io(|| format!("reading chunk {index} of {name}"))?
                .len();
            found.insert(index, len);
        }
    }
    Ok(found)
}
