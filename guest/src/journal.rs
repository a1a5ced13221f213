//! The guest's journal: for each partition, the offset of the last message whose outcome is
//! durable, and the chunk sets that transfer left to remove. It is what makes replay a no-op:
//! after a crash Kafka redelivers everything since the last committed offset, and every message
//! at or below the recorded offset is skipped as `replayed`, changing nothing (no older version
//! of a file comes back, no chunk set is created, no manager call is asked for).
//!
//! It is written once per batch, after the effects of all its messages are durable, and before
//! the cleanup they allow, so a crash at any point leaves one of:
//!
//! - the effect not durable, the offset not recorded: the message comes again and is done;
//! - the effect durable, the offset not recorded: the message comes again and finds its work
//!   done (a file already in place is `unchanged`; a chunk stored again is the same chunk; a
//!   complete chunk set assembles to the file in place);
//! - both recorded, cleanup pending: the next maintenance removes the sets named in `cleanup`.
//!
//! The journal lives in the files directory (the guest's only view) under a name no publisher
//! may use ([`STATE_FILE`], refused by `name`). Like a Kafka Connect sink's stored offsets, it
//! trusts offsets to grow: a topic deleted and created again starts from 0, and the journal
//! must then be removed by hand (docs/operator-guide.md, "Crashes and full disks", says so).

use crate::durable;
use crate::error::{IoContext, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io;
use std::path::Path;

/// The journal's name at the top of the files directory.
pub const STATE_FILE: &str = ".kres-kafka-state";

/// What the journal holds.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Journal {
    /// `topic/partition` to the offset of the last message whose outcome is durable.
    #[serde(default)]
    pub applied: BTreeMap<String, i64>,
    /// Chunk sets whose transfer is over (committed, unchanged or rejected), to remove.
    #[serde(default)]
    pub cleanup: Vec<String>,
    /// For each file whose version in place came signed: when it was signed, and its digest.
    /// A signed transfer that is not newer is refused as stale (no rollback by replay).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub signed: BTreeMap<String, Signed>,
    /// For each file, the message whose version is in place, recorded before the rename: a
    /// batch killed after its renames and before its entry above comes again, and its messages
    /// up to that one must not put older versions back (see [`Journal::placed_after`]).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub placed: BTreeMap<String, Position>,
    /// Files a batch was putting in place, from their staged `.tmp`, when it recorded them in
    /// `placed`: a crash before its entry above is rolled forward at start-up (see
    /// [`crate::batch::recover`]), so that what `placed` says is what is in place.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub renaming: Vec<String>,
}

/// The signature of a file in place: `signed-at` (milliseconds) and the SHA-256 it covered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Signed {
    pub at: u64,
    pub sha256: String,
}

impl Signed {
    pub fn of(signed: &crate::signature::Signed) -> Signed {
        Signed {
            at: signed.at,
            sha256: crate::durable::hex(&signed.sha256),
        }
    }

    /// As the signature module compares them; a damaged digest compares as none.
    pub fn to_signed(&self) -> Option<crate::signature::Signed> {
        let mut sha256 = [0u8; 32];
        if self.sha256.len() != 64 {
            return None;
        }
        for (i, byte) in sha256.iter_mut().enumerate() {
            *byte = u8::from_str_radix(self.sha256.get(2 * i..2 * i + 2)?, 16).ok()?;
        }
        Some(crate::signature::Signed {
            at: self.at,
            sha256,
        })
    }
}

/// Where a message came from, when it came from Kafka (not injected by hand).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Position {
    pub partition: String,
    pub offset: i64,
}

impl Position {
    /// The position of a message from `topic`, `partition`, `offset`; `None` for a message
    /// injected by hand (`partition` -1), which is never recorded nor skipped.
    pub fn of(topic: &str, partition: i32, offset: i64) -> Option<Position> {
        (partition >= 0 && offset >= 0).then(|| Position {
            partition: format!("{topic}/{partition}"),
            offset,
        })
    }
}

impl Journal {
    /// Read the journal in `root`; none yet is an empty one. An unreadable journal (damage) is
    /// an I/O error: guessing would replay or skip the wrong messages.
    pub fn read(root: &Path) -> Result<Journal> {
        let path = root.join(STATE_FILE);
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map_err(io::Error::other)
                .io(|| format!("reading {STATE_FILE}")),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Journal::default()),
            Err(e) => Err(e).io(|| format!("reading {STATE_FILE}")),
        }
    }

    /// Whether the message at `position` had its outcome made durable already.
    pub fn applied(&self, position: &Position) -> bool {
        self.applied
            .get(&position.partition)
            .is_some_and(|done| *done >= position.offset)
    }

    /// Record the files about to be put in place, durably, before they are: the message that
    /// made each, and its signature if signed. A crash after the rename must not leave older
    /// ones on record (a replay of an older version would then pass as newer).
    pub fn record_placed(
        &mut self,
        root: &Path,
        placed: &BTreeMap<String, Position>,
        signed: &BTreeMap<String, Signed>,
    ) -> Result<()> {
        self.placed
            .extend(placed.iter().map(|(n, p)| (n.clone(), p.clone())));
        self.signed
            .extend(signed.iter().map(|(n, s)| (n.clone(), s.clone())));
        self.renaming = placed.keys().cloned().collect();
        self.write(root)
    }

    /// Whether the version of `name` in place came from a message at or after `position` on
    /// the same partition: the message at `position` is then one of a batch that was killed
    /// after its renames, come again, and its work is done.
    pub fn placed_after(&self, name: &str, position: &Position) -> bool {
        self.placed
            .get(name)
            .is_some_and(|p| p.partition == position.partition && p.offset >= position.offset)
    }

    /// Record `positions` as done, with the chunk sets their transfers left, durably.
    pub fn record(
        &mut self,
        root: &Path,
        positions: &[Position],
        cleanup: Vec<String>,
    ) -> Result<()> {
        for at in positions {
            let done = self
                .applied
                .entry(at.partition.clone())
                .or_insert(at.offset);
            *done = (*done).max(at.offset);
        }
        self.cleanup = cleanup;
        self.renaming.clear();
        self.write(root)
    }

    /// Record that on each partition of `positions` every message before its offset is done
    /// (a partition that records more keeps it), durably. A resolver that took the state topic
    /// reads the stream on from where the state was taken.
    pub fn skip_before(&mut self, root: &Path, positions: &[Position]) -> Result<()> {
        for at in positions {
            let done = self
                .applied
                .entry(at.partition.clone())
                .or_insert(at.offset - 1);
            *done = (*done).max(at.offset - 1);
        }
        self.write(root)
    }

    /// Write the journal as it is, durably.
    pub fn write(&self, root: &Path) -> Result<()> {
        let bytes = serde_json::to_vec(self).expect("the journal serializes");
        durable::write_atomically(
            &root.join(STATE_FILE),
            &root.join(format!("{STATE_FILE}.tmp")),
            &bytes,
            None,
        )
        .io(|| format!("writing {STATE_FILE}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_recorded_position_and_every_earlier_one_of_its_partition_are_applied() {
        let dir = tempfile::tempdir().unwrap();
        let mut journal = Journal::read(dir.path()).unwrap();
        let at = |o| Position::of("t", 0, o).unwrap();
        assert!(!journal.applied(&at(0)));
        journal
            .record(dir.path(), &[at(5), at(7), at(6)], vec!["a.rpz".into()])
            .unwrap();
        let again = Journal::read(dir.path()).unwrap();
        assert_eq!(again, journal);
        assert!(again.applied(&at(7)) && again.applied(&at(3)) && !again.applied(&at(8)));
        assert!(
            !again.applied(&Position::of("t", 1, 3).unwrap()),
            "another partition"
        );
        assert_eq!(Position::of("t", -1, -1), None, "injected by hand");
    }

    #[test]
    fn a_damaged_journal_is_an_error_not_a_guess() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(STATE_FILE), b"{not json").unwrap();
        assert!(Journal::read(dir.path()).is_err());
    }
}
