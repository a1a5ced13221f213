//! Zone files judged natively for the guest (the WIT `files.judge-zone`), with the guest
//! crate's own judge (`kres_kafka_guest::zone`), which runs several times faster natively
//! than under WebAssembly. What `payload.write-to` writes into a file the guest named
//! (`files.judge-as-written`) is judged on a thread of its own as it is written, so that
//! judging a large RPZ overlaps with fetching and writing it instead of following them.
//!
//! It must never give a verdict about other bytes than the file's: a verdict judged ahead is
//! given only when the SHA-256 of exactly what was judged equals the file's as the guest knows
//! it. That SHA-256 is the one `write-to` computes anyway (one pass over the bytes, not two):
//! each write hands the judge the hash state it continued and the state it made, and the judge
//! keeps a file only while each write continues the state the previous one made, from the
//! initial state at offset 0, so that its last state is the hash of exactly the bytes it
//! judged, in order. In every other case (a write out of order or that failed, a chunk the
//! guest wrote itself, a restart in the middle of a transfer, a guest swapped) the file is read
//! and judged again. And it decides nothing: the guest asks, and the guest decides what a
//! verdict means.

use kres_kafka_guest::digest::{Sha256State, native_compress};
use kres_kafka_guest::zone::RpzJudge;
use std::collections::{HashMap, HashSet};
use std::io::Read;
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::sync::{Arc, Mutex};

/// Writes queued for the judging thread: when it lags, the guest's writes wait, so that what
/// it holds (the values it has not judged yet, shared with the batch) stays bounded: at most
/// this many values (of 512 KiB each from the usual publisher: 4 MiB).
const QUEUED_WRITES: usize = 8;

/// Files judged ahead at once: past it, every judgement ahead is dropped (their files are then
/// read at the end). A publisher's transfers in progress are far fewer.
const MAX_AHEAD: usize = 256;

/// The size of a piece when a file is read to be judged: large enough that reading costs
/// little next to judging, small enough to stay out of the peak.
const PIECE: usize = 256 << 10;

/// Why the native judge did not accept a zone file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// The resolver's zone loader would refuse it: `line N: reason`.
    Refused(String),
    /// It could not be read.
    Unreadable(String),
}

/// The judge of one guest, shared by its instances. Cheap to clone.
#[derive(Clone, Default)]
pub struct Zones {
    inner: Arc<Inner>,
}

#[derive(Default)]
struct Inner {
    /// The files whose writes are judged ahead.
    watched: Mutex<HashSet<String>>,
    /// To the judging thread, started on the first file named.
    thread: Mutex<Option<SyncSender<Job>>>,
}

enum Job {
    /// `value` was written into `file` at `offset`, continuing the file's hash from `before`
    /// to `after`.
    Write {
        file: String,
        offset: u64,
        value: Arc<[u8]>,
        before: Sha256State,
        after: Sha256State,
    },
    /// The verdict on `file`, if what was judged of it has SHA-256 `sha256`.
    Verdict {
        file: String,
        sha256: [u8; 32],
        reply: std::sync::mpsc::Sender<Option<Result<(), String>>>,
    },
}

impl Zones {
    /// Judge what is written into `file` from offset 0 on as it is written.
    pub fn watch(&self, file: &str) {
        let mut watched = lock(&self.inner.watched);
        if watched.len() >= MAX_AHEAD {
            watched.clear();
        }
        watched.insert(file.to_owned());
        drop(watched);
        let mut thread = lock(&self.inner.thread);
        if thread.is_none() {
            let (send, receive) = sync_channel(QUEUED_WRITES);
            let spawned = std::thread::Builder::new()
                .name("kres-kafka-judge".into())
                .spawn(move || judge_ahead(receive));
            match spawned {
                Ok(_) => *thread = Some(send),
                Err(e) => {
                    tracing::warn!("starting the zone judge's thread: {e} (judging at the end)")
                }
            }
        }
    }

    /// `value` was written into `file` at `offset`, and the file's SHA-256 continued over it
    /// from `before` to `after`: judged ahead if `file` is watched. Waits while the judging
    /// thread has [`QUEUED_WRITES`] values to judge.
    pub fn written(
        &self,
        file: &str,
        offset: u64,
        value: &Arc<[u8]>,
        before: &Sha256State,
        after: &Sha256State,
    ) {
        if !lock(&self.inner.watched).contains(file) {
            return;
        }
        let job = Job::Write {
            file: file.to_owned(),
            offset,
            value: Arc::clone(value),
            before: before.clone(),
            after: after.clone(),
        };
        self.send(job);
    }

    /// A write into `file` failed, perhaps after changing some of it: what was judged of it
    /// is no longer known to be what it holds, so it is read at the end.
    pub fn forget(&self, file: &str) {
        lock(&self.inner.watched).remove(file);
    }

    /// Judge `file` in `dir`, whose SHA-256 is `sha256`: from what was judged as it was
    /// written when that is exactly these bytes, else by reading it.
    pub fn judge(&self, dir: &cap_std::fs::Dir, file: &str, sha256: &[u8]) -> Result<(), Refusal> {
        let ahead = lock(&self.inner.watched).remove(file);
        if ahead && let Ok(sha256) = <[u8; 32]>::try_from(sha256) {
            let (reply, answer) = std::sync::mpsc::channel();
            let job = Job::Verdict {
                file: file.to_owned(),
                sha256,
                reply,
            };
            if self.send(job)
                && let Ok(Some(verdict)) = answer.recv()
            {
                return verdict.map_err(Refusal::Refused);
            }
        }
        judge_file(dir, file)
    }

    fn send(&self, job: Job) -> bool {
        let sender = lock(&self.inner.thread).clone();
        sender.is_some_and(|s| s.send(job).is_ok())
    }
}

/// Read `file` in `dir` and judge it.
fn judge_file(dir: &cap_std::fs::Dir, file: &str) -> Result<(), Refusal> {
    let unreadable = |e: std::io::Error| Refusal::Unreadable(format!("reading {file}: {e}"));
    let mut reader = dir.open(file).map_err(unreadable)?;
    let mut judge = RpzJudge::new();
    let mut piece = vec![0; PIECE];
    loop {
        let n = match reader.read(&mut piece) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(unreadable(e)),
        };
        judge
            .feed(&piece[..n])
            .map_err(|e| Refusal::Refused(e.to_string()))?;
    }
    judge
        .finish()
        .map(|_| ())
        .map_err(|e| Refusal::Refused(e.to_string()))
}

/// A file being judged as it is written.
struct Ahead {
    /// Where the next write must start to continue it.
    next: u64,
    /// The SHA-256 state of what was judged: where the next write must continue it from.
    hashed: Sha256State,
    judge: RpzJudge,
    /// The judge refused what came so far (it keeps the first error).
    refused: Option<String>,
}

impl Ahead {
    fn new() -> Ahead {
        Ahead {
            next: 0,
            hashed: Sha256State::default(),
            judge: RpzJudge::new(),
            refused: None,
        }
    }

    /// Judge `value`, written at `offset`, whose hash went from `before` to `after`; false
    /// (nothing judged) unless it continues exactly what was judged.
    fn feed(
        &mut self,
        offset: u64,
        value: &[u8],
        before: &Sha256State,
        after: Sha256State,
    ) -> bool {
        // `after` is write-to's own continuation of `before` over `value`: only `before` can
        // be another chain than the one judged.
        if offset != self.next || *before != self.hashed {
            return false;
        }
        self.next += value.len() as u64;
        self.hashed = after;
        if self.refused.is_none()
            && let Err(e) = self.judge.feed(value)
        {
            self.refused = Some(e.to_string());
        }
        true
    }

    /// The verdict, if what was judged is the file whose SHA-256 is `sha256`.
    fn finish(self, sha256: &[u8; 32]) -> Option<Result<(), String>> {
        if self.hashed.finish(&native_compress) != *sha256 {
            return None;
        }
        Some(match self.refused {
            Some(why) => Err(why),
            None => self.judge.finish().map(|_| ()).map_err(|e| e.to_string()),
        })
    }
}

/// The judging thread: its jobs in order, until every sender is gone.
fn judge_ahead(jobs: Receiver<Job>) {
    let mut files: HashMap<String, Ahead> = HashMap::new();
    for job in jobs {
        match job {
            Job::Write {
                file,
                offset,
                value,
                before,
                after,
            } => {
                if offset == 0 {
                    if files.len() >= MAX_AHEAD {
                        files.clear();
                    }
                    files.insert(file.clone(), Ahead::new());
                }
                // Written out of order, over what was judged, or hashed from another state:
                // judged at the end.
                if let Some(ahead) = files.get_mut(&file)
                    && !ahead.feed(offset, &value, &before, after)
                {
                    files.remove(&file);
                }
            }
            Job::Verdict {
                file,
                sha256,
                reply,
            } => {
                let verdict = files.remove(&file).and_then(|ahead| ahead.finish(&sha256));
                let _ = reply.send(verdict);
            }
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use sha2::{Digest, Sha256};

    fn dir() -> (tempfile::TempDir, cap_std::fs::Dir) {
        let tmp = tempfile::tempdir().unwrap();
        let dir =
            cap_std::fs::Dir::open_ambient_dir(tmp.path(), cap_std::ambient_authority()).unwrap();
        (tmp, dir)
    }

    fn sha256(bytes: &[u8]) -> Vec<u8> {
        Sha256::digest(bytes).to_vec()
    }

    /// What `write-to` tells the judge: `value` at `offset`, the hash continued from `state`.
    fn write(zones: &Zones, file: &str, offset: u64, value: &[u8], state: &mut Sha256State) {
        let before = state.clone();
        state.update(&native_compress, value);
        zones.written(file, offset, &Arc::from(value), &before, state);
    }

    #[test]
    fn a_file_judged_as_written_gets_the_verdict_of_reading_it() {
        let (tmp, dir) = dir();
        let zones = Zones::default();
        let good = b"$TTL 300\na.example CNAME .\n*.a.example CNAME .\n";
        let bad = b"a.example CNAME .\nb.example FOO bar\n";
        for (name, content) in [("good.rpz", &good[..]), ("bad.rpz", &bad[..])] {
            zones.watch(name);
            let (first, second) = content.split_at(10);
            std::fs::write(tmp.path().join(name), content).unwrap();
            let mut state = Sha256State::default();
            write(&zones, name, 0, first, &mut state);
            write(&zones, name, 10, second, &mut state);
            let ahead = zones.judge(&dir, name, &sha256(content));
            assert_eq!(ahead, judge_file(&dir, name), "{name}");
        }
        assert!(zones.judge(&dir, "good.rpz", &sha256(good)).is_ok());
        assert!(matches!(
            zones.judge(&dir, "bad.rpz", &sha256(bad)),
            Err(Refusal::Refused(why)) if why.starts_with("line 2:")
        ));
    }

    #[test]
    fn a_judgement_ahead_of_other_bytes_is_not_used() {
        let (tmp, dir) = dir();
        let zones = Zones::default();
        let good = &b"a.example CNAME .\n"[..];
        let bad = &b"a.example FOO .\n"[..];
        zones.watch("z.rpz");
        // The judge saw good bytes; the file holds bad ones (written around the host).
        write(&zones, "z.rpz", 0, good, &mut Sha256State::default());
        std::fs::write(tmp.path().join("z.rpz"), bad).unwrap();
        let verdict = zones.judge(&dir, "z.rpz", &sha256(bad));
        assert!(matches!(verdict, Err(Refusal::Refused(_))), "{verdict:?}");
        // A write out of order drops what was judged ahead: the file is read.
        zones.watch("y.rpz");
        let mut state = Sha256State::default();
        write(&zones, "y.rpz", 0, good, &mut state);
        write(&zones, "y.rpz", 100, b"b.example CNAME .\n", &mut state);
        std::fs::write(tmp.path().join("y.rpz"), bad).unwrap();
        let verdict = zones.judge(&dir, "y.rpz", &sha256(good));
        assert!(matches!(verdict, Err(Refusal::Refused(_))), "{verdict:?}");
        assert!(matches!(
            zones.judge(&dir, "missing.rpz", &[0; 32]),
            Err(Refusal::Unreadable(_))
        ));
    }

    #[test]
    fn a_file_whose_write_failed_is_read_at_the_end() {
        let (tmp, dir) = dir();
        let zones = Zones::default();
        let (good, bad) = (&b"a.example CNAME .\n"[..], &b"a.example FOO bar\n"[..]);
        zones.watch("z.rpz");
        write(&zones, "z.rpz", 0, good, &mut Sha256State::default());
        // The next write changed the file, then failed (no `written`).
        std::fs::write(tmp.path().join("z.rpz"), bad).unwrap();
        zones.forget("z.rpz");
        let verdict = zones.judge(&dir, "z.rpz", &sha256(good));
        assert!(matches!(verdict, Err(Refusal::Refused(_))), "{verdict:?}");
    }

    /// The judge takes write-to's hash instead of computing its own: a chain of states that
    /// does not continue over exactly what it judged must not make a verdict about the file.
    #[test]
    fn a_write_hashed_from_another_state_drops_the_judgement_ahead() {
        let (tmp, dir) = dir();
        let zones = Zones::default();
        let (good, bad) = (&b"a.example CNAME .\n"[..], &b"a.example FOO bar\n"[..]);
        assert_eq!(good.len(), bad.len());
        let file = [bad, good].concat();
        std::fs::write(tmp.path().join("z.rpz"), &file).unwrap();
        // The file's last line alone, at offset 0, hashed on from the state after its first
        // line: the state it makes is the file's hash, but the judge never saw the first line.
        zones.watch("z.rpz");
        let mut state = Sha256State::default();
        state.update(&native_compress, bad);
        write(&zones, "z.rpz", 0, good, &mut state);
        let verdict = zones.judge(&dir, "z.rpz", &sha256(&file));
        assert!(matches!(verdict, Err(Refusal::Refused(_))), "{verdict:?}");
        // Two good writes in order, the second hashed on from the state after the bad line
        // instead of the one the first write made.
        std::fs::write(tmp.path().join("y.rpz"), &file).unwrap();
        zones.watch("y.rpz");
        write(&zones, "y.rpz", 0, good, &mut Sha256State::default());
        let mut state = Sha256State::default();
        state.update(&native_compress, bad);
        write(&zones, "y.rpz", good.len() as u64, good, &mut state);
        let verdict = zones.judge(&dir, "y.rpz", &sha256(&file));
        assert!(matches!(verdict, Err(Refusal::Refused(_))), "{verdict:?}");
    }
}
