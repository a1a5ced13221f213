//! A batch: the messages the host handed over together, committed as a group. While the batch
//! runs, nothing it does is visible: files are staged as `<name>.tmp`, chunks appended, chunk
//! records staged beside the current ones. [`Batch::commit`] then makes it all durable and
//! visible in a fixed order, so that a crash at any instant leaves either the state before the
//! batch or the state after it, file by file, and the journal names the batch only once
//! everything in it is durable:
//!
//! 1. stage each changed chunk record (`meta.tmp`);
//! 2. flush the files directory (one `sync` for every file, chunk and record of the batch);
//! 3. put the chunk records in place; keep a backup of each file about to be replaced, and
//!    flush again if it made any (a backup is never newer than the file it backs up);
//! 4. rename each staged file into place (`<name>` never missing, never partial), and remove
//!    each withdrawn one (its backup kept in step 3);
//! 5. flush, then record the batch's offsets in the journal (its own atomic write);
//! 6. remove the chunk sets whose transfer ended (the journal names them, in case of a crash).
//!
//! A crash before step 5 replays the whole batch from the journal's offsets: each message finds
//! its work done or not done and converges on the same state (a file in place is `unchanged`, a
//! chunk stored again is the same chunk). Two files staged under one name in a batch commit the
//! last: the first was never visible.

use crate::digest::{Compress, Sha256State, native_compress};
use crate::error::{Error, IoContext, Result};
use crate::journal::{Journal, Position};
use crate::store::Files;
use crate::store::chunks::{self, Set};
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

/// What the host offers beyond WASI: native SHA-256, one flush of the files directory, and a
/// zone file judged natively.
pub trait Platform {
    /// SHA-256's compression function over whole 64-byte blocks.
    fn compress(&self, state: &mut [u32; 8], blocks: &[u8]);
    /// Make every write to the files directory so far durable.
    fn sync(&self) -> std::result::Result<(), String>;
    /// Judge the RPZ file `rel` (relative to the files directory), whose SHA-256 is `sha256`,
    /// natively with [`crate::zone`]. `None`: no host to ask; the guest judges it itself.
    fn judge_zone(
        &self,
        _rel: &str,
        _sha256: &[u8; 32],
    ) -> Option<std::result::Result<(), crate::judge::HostRefusal>> {
        None
    }
    /// A hint: what the host writes into `rel` from offset 0 on may be judged as it is written.
    fn judge_as_written(&self, _rel: &str) {}
    /// Whether `signature` is `key`'s Ed25519 signature of `message`
    /// ([`crate::signature::verify_ed25519`]); the host does it natively for the guest.
    fn verify_ed25519(&self, key: &[u8; 32], message: &[u8], signature: &[u8; 64]) -> bool {
        crate::signature::verify_ed25519(key, message, signature)
    }
}

/// Native SHA-256 and a flush that does nothing: for unit tests, which crash nothing.
pub struct Unsynced;

impl Platform for Unsynced {
    fn compress(&self, state: &mut [u32; 8], blocks: &[u8]) {
        native_compress(state, blocks);
    }

    fn sync(&self) -> std::result::Result<(), String> {
        Ok(())
    }
}

/// Roll forward a batch killed after it recorded the files it was putting in place and before
/// its journal entry (see [`Journal::renaming`]): each one's staged `.tmp`, flushed before the
/// record, is renamed into place and flushed; then the journal forgets them. Run at start-up,
/// before leftovers are removed. Returns how many files it put in place.
pub fn recover(files: &Files, platform: &dyn Platform) -> Result<u32> {
    let mut journal = Journal::read(files.root())?;
    if journal.renaming.is_empty() {
        return Ok(0);
    }
    let mut renamed = 0;
    for name in &journal.renaming {
        if files.sibling(name, ".tmp").exists() {
            files.rename_into_place(name)?;
            renamed += 1;
        }
    }
    platform
        .sync()
        .map_err(std::io::Error::other)
        .io(|| "flushing the files directory".to_owned())?;
    journal.renaming.clear();
    journal.write(files.root())?;
    Ok(renamed)
}

/// The state of a batch in progress.
pub struct Batch<'a> {
    pub files: &'a Files,
    platform: &'a dyn Platform,
    /// Chunk sets looked at in this batch; `None`: there is none.
    sets: BTreeMap<String, Option<Set>>,
    /// The message being processed (its index in the batch), and the first message that
    /// looked at each chunk set: a set an earlier message of the batch depended on cannot be
    /// removed before the batch is recorded, or a replay of that message would not find it.
    message: usize,
    first_use: BTreeMap<String, usize>,
    /// The signatures of files staged or found unchanged in this batch.
    signed: BTreeMap<String, crate::signature::Signed>,
    /// Signatures verified in this batch (the chunks of a transfer carry the same one).
    verified: Vec<[u8; 64]>,
    /// Where the message being processed came from (none when injected by hand), and where
    /// the message that staged each file did.
    position: Option<crate::journal::Position>,
    placed: BTreeMap<String, crate::journal::Position>,
    /// How each transfer that ended in this batch ended: accepted, or rejected (kind, reason).
    ended: BTreeMap<String, std::result::Result<(), (&'static str, String)>>,
    /// Sets whose record changed.
    dirty: BTreeSet<String>,
    /// Files staged as `<name>.tmp`, to rename into place.
    staged: BTreeSet<String>,
    /// Files in place withdrawn by the batch, to remove (keeping a backup).
    removed: BTreeSet<String>,
    /// Sets whose transfer ended: removed once the journal names the batch.
    finished: Vec<String>,
    /// Where the batch's messages for this resolver came from.
    positions: Vec<Position>,
    /// Whether anything was written or removed (a flush is needed).
    touched: bool,
    /// Directories known to exist (relative to the files directory).
    dirs: BTreeSet<String>,
    /// What [`Batch::check_clash`] found in place under a name: a file of this length, or
    /// nothing. It saves asking the filesystem again.
    in_place: BTreeMap<String, Option<u64>>,
}

impl<'a> Batch<'a> {
    pub fn new(files: &'a Files, platform: &'a dyn Platform) -> Self {
        Batch {
            files,
            platform,
            sets: BTreeMap::new(),
            message: 0,
            first_use: BTreeMap::new(),
            signed: BTreeMap::new(),
            verified: Vec::new(),
            ended: BTreeMap::new(),
            position: None,
            placed: BTreeMap::new(),
            dirty: BTreeSet::new(),
            staged: BTreeSet::new(),
            removed: BTreeSet::new(),
            finished: Vec::new(),
            positions: Vec::new(),
            touched: false,
            dirs: BTreeSet::new(),
            in_place: BTreeMap::new(),
        }
    }

    /// SHA-256's compression function, the host's.
    pub fn compress(&self) -> impl Fn(&mut [u32; 8], &[u8]) + '_ {
        |state, blocks| self.platform.compress(state, blocks)
    }

    /// SHA-256 of `content`.
    pub fn sha256(&self, content: &[u8]) -> [u8; 32] {
        let compress = self.compress();
        let mut state = Sha256State::default();
        state.update(&compress, content);
        state.finish(&compress)
    }

    /// Where the current version of `name` is, as this batch sees it: staged, or in place.
    fn current(&self, name: &str) -> PathBuf {
        if self.staged.contains(name) {
            self.files.sibling(name, ".tmp")
        } else {
            self.files.path(name)
        }
    }

    /// Whether `name` exists, as this batch sees it (staged, or in place and not withdrawn).
    /// Only after [`Batch::check_clash`] looked at it.
    pub fn exists(&self, name: &str) -> bool {
        self.staged.contains(name)
            || !self.removed.contains(name) && matches!(self.in_place.get(name), Some(Some(_)))
    }

    /// Withdraw `name`: whatever an earlier message of the batch staged goes, and the file in
    /// place is removed at commit, its version kept as `<name>.backup`. Signed by `signed`,
    /// when it was (so that no older signed version can come back).
    pub fn remove(&mut self, name: &str, signed: Option<crate::signature::Signed>) -> Result<()> {
        self.touched = true;
        self.unstage(name)?;
        self.staged.remove(name);
        if matches!(self.in_place.get(name), Some(Some(_))) {
            self.removed.insert(name.to_owned());
        }
        self.sign(name, signed);
        self.place(name);
        Ok(())
    }

    /// Whether the current version of `name` is `content`.
    pub fn holds(&self, name: &str, content: &[u8]) -> Result<bool> {
        if self.removed.contains(name) {
            return Ok(false);
        }
        if !self.staged.contains(name) {
            match self.in_place.get(name) {
                Some(None) => return Ok(false),
                Some(Some(len)) if *len != content.len() as u64 => return Ok(false),
                _ => {}
            }
        }
        self.files.file_holds(&self.current(name), name, content)
    }

    /// Whether the current version of `name` has the content of the file at `path`.
    pub fn holds_file(&self, name: &str, path: &std::path::Path) -> Result<bool> {
        if self.removed.contains(name) {
            return Ok(false);
        }
        self.files.same_files(&self.current(name), path, name)
    }

    /// The current version of `name`, whole, if it exists and is at most `max` bytes.
    pub fn read_current(&self, name: &str, max: u64) -> Result<Option<Vec<u8>>> {
        if !self.staged.contains(name)
            && (self.in_place.get(name) == Some(&None) || self.removed.contains(name))
        {
            return Ok(None);
        }
        self.files.read_file(&self.current(name), name, max)
    }

    /// Refuse `name` when it cannot be a file here (a directory above it is a file, or it is a
    /// directory), counting files staged in this batch; note what is in place under it.
    pub fn check_clash(&mut self, name: &str) -> Result<()> {
        let clash = |what: String| {
            Err(Error::BadName(format!(
                "file-name {name:?} cannot be a file here: {what}"
            )))
        };
        let mut prefix = String::new();
        let mut parents_exist = true;
        let (parents, _) = name.rsplit_once('/').unwrap_or(("", name));
        for component in parents.split('/').filter(|c| !c.is_empty()) {
            if !prefix.is_empty() {
                prefix.push('/');
            }
            prefix.push_str(component);
            if self.staged.contains(&prefix) {
                return clash(format!("{prefix:?} is a file, not a directory"));
            }
            if !parents_exist || self.dirs.contains(&prefix) {
                continue;
            }
            match std::fs::symlink_metadata(self.files.path(&prefix)) {
                Ok(meta) if meta.is_dir() => {
                    self.dirs.insert(prefix.clone());
                }
                Ok(_) => return clash(format!("{prefix:?} is a file, not a directory")),
                Err(_) => parents_exist = false,
            }
        }
        let found = if parents_exist {
            match std::fs::symlink_metadata(self.files.path(name)) {
                Ok(meta) if meta.is_dir() => return clash("it is a directory".into()),
                Ok(meta) => Some(meta.len()),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
                Err(e) => return Err(e).io(|| format!("reading metadata of {name}")),
            }
        } else {
            None
        };
        self.in_place.insert(name.to_owned(), found);
        Ok(())
    }

    /// Create the directories above `name` unless they are known to exist.
    fn ensure_parents(&mut self, name: &str) -> Result<()> {
        let Some((parents, _)) = name.rsplit_once('/') else {
            return Ok(());
        };
        if self.dirs.contains(parents) {
            return Ok(());
        }
        self.touched = true;
        self.files.create_parents(name)?;
        let mut prefix = String::new();
        for component in parents.split('/') {
            if !prefix.is_empty() {
                prefix.push('/');
            }
            prefix.push_str(component);
            self.dirs.insert(prefix.clone());
        }
        Ok(())
    }

    /// Whether the current version of `name` may be `size` bytes long (worth comparing).
    pub fn may_hold(&self, name: &str, size: u64) -> bool {
        if self.removed.contains(name) {
            return false;
        }
        self.staged.contains(name)
            || !matches!(self.in_place.get(name), Some(None))
                && self.in_place.get(name).is_none_or(|len| *len == Some(size))
    }

    /// Stage `value` as the next version of `name`, written and hashed by the host; return
    /// its SHA-256.
    pub fn stage_value(
        &mut self,
        name: &str,
        value: &dyn crate::process::Value,
    ) -> Result<[u8; 32]> {
        self.touched = true;
        self.ensure_parents(name)?;
        // An earlier version staged in this batch may be a chunk set's part, linked: written
        // through, it would change that set (still there until the batch is recorded).
        self.unstage(name)?;
        self.removed.remove(name);
        let platform = self.platform;
        let compress: Compress<'_> = &|s, b| platform.compress(s, b);
        let mut hashed = Sha256State::default();
        value
            .write_to(self.files, &format!("{name}.tmp"), 0, &mut hashed, compress)
            .io(|| format!("writing {name}.tmp"))?;
        self.staged.insert(name.to_owned());
        self.place(name);
        Ok(hashed.finish(compress))
    }

    /// Stage the complete chunk set of `name` as its next version (a link: no copy).
    pub fn stage_assembled(&mut self, name: &str, part: &std::path::Path) -> Result<()> {
        self.touched = true;
        self.unstage(name)?;
        self.removed.remove(name);
        self.files.link_temporary(name, part)?;
        self.staged.insert(name.to_owned());
        self.place(name);
        Ok(())
    }

    /// Whether a message of this batch staged or withdrew `name`.
    pub fn is_staged(&self, name: &str) -> bool {
        self.staged.contains(name) || self.removed.contains(name)
    }

    /// Take back what this message just staged as `name` (it was refused once staged), when no
    /// earlier message of the batch staged or withdrew it: the file in place stays as it is.
    pub fn drop_staged(&mut self, name: &str) -> Result<()> {
        self.unstage(name)?;
        self.staged.remove(name);
        self.placed.remove(name);
        Ok(())
    }

    /// Remove what an earlier message of this batch staged as `name`, if anything.
    fn unstage(&mut self, name: &str) -> Result<()> {
        if self.staged.contains(name) {
            let tmp = self.files.sibling(name, ".tmp");
            match std::fs::remove_file(&tmp) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e).io(|| format!("removing {name}.tmp")),
            }
        }
        Ok(())
    }

    /// The message being processed staged `name`.
    fn place(&mut self, name: &str) {
        match &self.position {
            Some(at) => {
                self.placed.insert(name.to_owned(), at.clone());
            }
            None => {
                self.placed.remove(name);
            }
        }
    }

    /// The transfer of `name` ended in this batch, so.
    pub fn end(&mut self, name: &str, how: std::result::Result<(), (&'static str, String)>) {
        self.ended.insert(name.to_owned(), how);
    }

    /// How the transfer of `name` ended in this batch, if it did.
    pub fn ended(&self, name: &str) -> Option<std::result::Result<(), (&'static str, String)>> {
        self.ended.get(name).cloned()
    }

    /// Where the message being processed came from.
    pub fn position(&self) -> Option<&crate::journal::Position> {
        self.position.as_ref()
    }

    /// The signatures verified in this batch.
    pub fn verified(&mut self) -> &mut Vec<[u8; 64]> {
        &mut self.verified
    }

    /// The signature of `name` as staged or found in place earlier in this batch.
    pub fn signed(&self, name: &str) -> Option<crate::signature::Signed> {
        self.signed.get(name).copied()
    }

    /// `name` is staged, or found in place, with this signature (if any).
    pub fn sign(&mut self, name: &str, signed: Option<crate::signature::Signed>) {
        if let Some(signed) = signed {
            self.signed.insert(name.to_owned(), signed);
        }
    }

    /// The next message of the batch begins; it came from `position`.
    pub fn next_message(&mut self, position: Option<crate::journal::Position>) {
        self.message += 1;
        self.position = position;
    }

    /// The chunk set of `name`, loaded once per batch. A set whose record cannot be read is
    /// stale: it is removed.
    pub fn set(&mut self, name: &str) -> Result<Option<&mut Set>> {
        self.first_use
            .entry(name.to_owned())
            .or_insert(self.message);
        if !self.sets.contains_key(name) {
            let loaded = match Set::load(self.files, name)? {
                Some(Some(set)) => Some(set),
                Some(None) => {
                    crate::log_info(format!(
                        "discarding chunk set of {name:?}: its record is unreadable"
                    ));
                    self.touched = true;
                    chunks::discard(self.files, name)?;
                    None
                }
                None => None,
            };
            self.sets.insert(name.to_owned(), loaded);
        }
        Ok(self.sets.get_mut(name).and_then(Option::as_mut))
    }

    /// Start a new chunk set for `name`, removing the one there. A set whose transfer ended in
    /// this batch, or that an earlier message of this batch looked at, cannot be removed before
    /// the batch is recorded (a crash in between would replay those messages without it):
    /// [`Error::Cut`] ends the batch before this message, which comes again as the first of the
    /// next.
    pub fn restart_set(
        &mut self,
        name: &str,
        start: Option<(&crate::store::Transfer, u64)>,
    ) -> Result<()> {
        let used_before = self
            .first_use
            .get(name)
            .is_some_and(|first| *first < self.message);
        if let Some(set) = self.set(name)? {
            if set.finished || used_before {
                return Err(Error::Cut);
            }
            self.touched = true;
            chunks::discard(self.files, name)?;
        }
        self.dirty.remove(name);
        let new = match start {
            Some((transfer, now)) => {
                self.touched = true;
                self.ensure_parents(name)?;
                self.dirty.insert(name.to_owned());
                Some(Set::start(
                    self.files,
                    name,
                    transfer,
                    now,
                    self.position.clone(),
                )?)
            }
            None => None,
        };
        self.sets.insert(name.to_owned(), new);
        Ok(())
    }

    /// Store chunk `index` in the set of `name` (it must exist and not hold the chunk).
    pub fn store_chunk(
        &mut self,
        name: &str,
        index: u32,
        value: &dyn crate::process::Value,
    ) -> Result<()> {
        self.touched = true;
        self.dirty.insert(name.to_owned());
        let platform = self.platform;
        let compress: Compress<'_> = &|s, b| platform.compress(s, b);
        let set = self
            .sets
            .get_mut(name)
            .and_then(Option::as_mut)
            .expect("the set was loaded or started");
        if let Some(at) = &self.position {
            set.meta.last_by = Some(at.clone());
        }
        if crate::judge::is_zone(name) {
            platform.judge_as_written(&chunks::part_rel(name));
        }
        set.store(self.files, compress, index, value)
    }

    /// The complete set of `name`: its SHA-256, its size and where its content is.
    /// The platform, for what the host judges natively.
    pub fn platform(&self) -> &'a dyn Platform {
        self.platform
    }

    pub fn assembled(&mut self, name: &str) -> Result<([u8; 32], u64, PathBuf)> {
        let (platform, files) = (self.platform, self.files);
        let compress: Compress<'_> = &|s, b| platform.compress(s, b);
        let set = self.set(name)?.expect("the set is complete");
        Ok((set.digest(compress), set.size(), set.part_path(files)))
    }

    /// The transfer of `name` ended: its set goes once the batch is recorded.
    pub fn finish_set(&mut self, name: &str) {
        if let Some(Some(set)) = self.sets.get_mut(name)
            && !set.finished
        {
            set.finished = true;
            self.finished.push(name.to_owned());
        }
    }

    /// The message at `position` was for this resolver and reached its end in this batch.
    pub fn record(&mut self, position: Position) {
        self.positions.push(position);
    }

    /// Make the batch durable and visible, then record it in `journal` (see the module).
    pub fn commit(mut self, mut journal: Journal) -> Result<()> {
        let files = self.files;
        for name in &self.dirty {
            if let Some(Some(set)) = self.sets.get_mut(name) {
                set.stage_meta(files)?;
            }
        }
        if self.touched {
            self.flush()?;
        }
        for name in &self.dirty {
            if let Some(Some(set)) = self.sets.get(name) {
                set.install_meta(files)?;
            }
        }
        let mut backups = false;
        for name in &self.staged {
            // What was in place when the batch began (a file staged twice is backed up once).
            let existed = match self.in_place.get(name) {
                Some(found) => found.is_some(),
                None => files.path(name).exists(),
            };
            if existed {
                files.keep_backup(name)?;
                backups = true;
            }
        }
        for name in &self.removed {
            files.keep_backup(name)?;
            backups = true;
        }
        if backups {
            self.flush()?;
        }
        // What is about to be put in place goes on record first: the message that made each
        // file, and its signature.
        let signed: BTreeMap<String, crate::journal::Signed> = self
            .signed
            .iter()
            .filter(|(name, _)| self.staged.contains(*name) || self.removed.contains(*name))
            .map(|(name, s)| (name.clone(), crate::journal::Signed::of(s)))
            .collect();
        let placed: BTreeMap<String, crate::journal::Position> = self
            .placed
            .iter()
            .filter(|(name, _)| self.staged.contains(*name) || self.removed.contains(*name))
            .map(|(name, at)| (name.clone(), at.clone()))
            .collect();
        if !signed.is_empty() || !placed.is_empty() {
            journal.record_placed(files.root(), &placed, &signed)?;
            self.flush()?;
        }
        for name in &self.staged {
            files.rename_into_place(name)?;
        }
        for name in &self.removed {
            files.remove_in_place(name)?;
        }
        if self.touched {
            self.flush()?;
        }
        // Messages injected by hand (`apply`) have no position: nothing to record, and a crash
        // before the removal below leaves sets that expire.
        journal.signed.extend(
            self.signed
                .iter()
                .map(|(name, s)| (name.clone(), crate::journal::Signed::of(s))),
        );
        if !self.positions.is_empty() {
            journal.record(files.root(), &self.positions, self.finished.clone())?;
        }
        // The batch is recorded: from here on nothing may undo its outcomes. A set that cannot
        // be removed now is named in the journal's cleanup, for the next maintenance.
        for name in &self.finished {
            if let Err(e) = chunks::discard(files, name) {
                crate::log_warn(format!("{e} (the next maintenance removes it)"));
            }
        }
        Ok(())
    }

    fn flush(&self) -> Result<()> {
        self.platform
            .sync()
            .map_err(std::io::Error::other)
            .io(|| "flushing the files directory".to_owned())
    }
}
