//! The resolver's rule database, looked at from outside: whether its policy-loader committed.
//!
//! A 6.x manager answers 200 to a `/renew` or `/reload` whose policy-loader failed (a line of
//! an RPZ file its zone loader refuses, a missing file): it logs the failure and keeps the old
//! rules. What does change when the loader succeeds is its rule database, an LMDB environment
//! that the policy-loader rebuilds in one write transaction under the manager's `rundir`
//! (`<rundir>/ruledb/data.mdb`) and commits only when every rule loaded. LMDB numbers its
//! transactions: a call after which the newest transaction id is unchanged loaded nothing.
//!
//! This module reads only the two meta pages at the start of `data.mdb` (LMDB's on-disk
//! format, stable since 0.9): it never opens the environment, takes no lock, and never writes.

use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

/// Knot Resolver's `rundir` when its configuration sets none (upstream's packages).
pub const DEFAULT_RUNDIR: &str = "/run/knot-resolver";

/// LMDB's magic number, at the start of each meta page's payload.
const MAGIC: u32 = 0xBEEF_C0DE;
/// Size of LMDB's page header on 64-bit builds (page number, pad, flags, lower, upper).
const PAGE_HEADER: usize = 16;
/// Offset, in a meta page's payload, of the main database's `md_pad`, where LMDB keeps the
/// environment's page size (magic, version, address, map size, then the free DB's record).
const PAGE_SIZE_AT: usize = 4 + 4 + 8 + 8;
/// Offset, in a meta page's payload, of the last committed transaction's id (after the two
/// 48-byte database records and the last page number).
const TXNID_AT: usize = 4 + 4 + 8 + 8 + 2 * 48 + 8;

/// Where the resolver keeps its rule database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleDb {
    path: PathBuf,
}

impl RuleDb {
    /// The rule database of a resolver whose `rundir` is `rundir`.
    pub fn in_rundir(rundir: &Path) -> RuleDb {
        RuleDb {
            path: rundir.join("ruledb").join("data.mdb"),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The id of the newest transaction committed to the database.
    pub fn txnid(&self) -> io::Result<u64> {
        let mut file = File::open(&self.path)?;
        let mut first = vec![0; PAGE_HEADER + TXNID_AT + 8];
        file.read_exact(&mut first)?;
        let page_size = meta_page_size(&first)?;
        // The second meta page follows the first page; LMDB writes the two alternately and
        // the valid one with the larger id is current.
        let mut page = vec![0; page_size + PAGE_HEADER + TXNID_AT + 8];
        page[..first.len()].copy_from_slice(&first);
        file.read_exact(&mut page[first.len()..])?;
        let ids = [
            meta_txnid(&page[..first.len()]),
            meta_txnid(&page[page_size..]),
        ];
        ids.into_iter()
            .flatten()
            .max()
            .ok_or_else(|| bad("no valid meta page"))
    }

    /// Make the file a database whose newest transaction is `txnid`: two meta pages, no data.
    /// For the stand-in manager ([`crate::demo::standin`]), whose policy-loader commits as the
    /// real one does, so that the daemon's check sees the same thing on both.
    pub fn write_meta_pages(&self, txnid: u64) -> io::Result<()> {
        const STAND_IN_PAGE: usize = 4096;
        let mut file = vec![0; 2 * STAND_IN_PAGE];
        for (n, id) in [txnid.saturating_sub(1), txnid].into_iter().enumerate() {
            let page = &mut file[n * STAND_IN_PAGE + PAGE_HEADER..];
            page[..4].copy_from_slice(&MAGIC.to_ne_bytes());
            page[PAGE_SIZE_AT..PAGE_SIZE_AT + 4]
                .copy_from_slice(&(STAND_IN_PAGE as u32).to_ne_bytes());
            page[TXNID_AT..TXNID_AT + 8].copy_from_slice(&id.to_ne_bytes());
        }
        let dir = self.path.parent().expect("data.mdb is in ruledb/");
        std::fs::create_dir_all(dir)?;
        let tmp = dir.join("data.mdb.tmp");
        std::fs::write(&tmp, file)?;
        std::fs::rename(tmp, &self.path)
    }
}

fn bad(why: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("not an LMDB file: {why}"),
    )
}

fn u32_at(page: &[u8], at: usize) -> u32 {
    u32::from_ne_bytes(page[at..at + 4].try_into().expect("4 bytes"))
}

fn meta_page_size(page: &[u8]) -> io::Result<usize> {
    if u32_at(page, PAGE_HEADER) != MAGIC {
        return Err(bad("wrong magic number"));
    }
    match u32_at(page, PAGE_HEADER + PAGE_SIZE_AT) as usize {
        size @ 512..=65536 if size.is_power_of_two() => Ok(size),
        size => Err(bad(&format!("page size {size}"))),
    }
}

fn meta_txnid(page: &[u8]) -> Option<u64> {
    (u32_at(page, PAGE_HEADER) == MAGIC).then(|| {
        let at = PAGE_HEADER + TXNID_AT;
        u64::from_ne_bytes(page[at..at + 8].try_into().expect("8 bytes"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_newer_of_the_two_meta_pages_gives_the_transaction() {
        let dir = tempfile::tempdir().unwrap();
        let db = RuleDb::in_rundir(dir.path());
        db.write_meta_pages(7).unwrap();
        assert_eq!(db.txnid().unwrap(), 7);
        db.write_meta_pages(8).unwrap();
        assert_eq!(db.txnid().unwrap(), 8);
        // The older page second: the newer one still wins.
        let mut file = std::fs::read(db.path()).unwrap();
        let (first, second) = file.split_at_mut(4096);
        first.swap_with_slice(&mut second[..4096]);
        std::fs::write(db.path(), file).unwrap();
        assert_eq!(db.txnid().unwrap(), 8);
    }

    #[test]
    fn a_file_that_is_not_lmdb_is_an_error_not_a_transaction() {
        let dir = tempfile::tempdir().unwrap();
        let db = RuleDb::in_rundir(dir.path());
        assert_eq!(db.txnid().unwrap_err().kind(), io::ErrorKind::NotFound);
        std::fs::create_dir(dir.path().join("ruledb")).unwrap();
        std::fs::write(db.path(), vec![1; 9000]).unwrap();
        let err = db.txnid().unwrap_err();
        assert!(err.to_string().contains("not an LMDB file"), "{err}");
    }
}
