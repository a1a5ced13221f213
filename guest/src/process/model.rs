//! The promises of docs/operator-guide.md ("How a message is processed", "Crashes and full
//! disks") as a property: arbitrary sequences of publications (whole files and
//! chunked transfers, right, wrong and missing digests, transfer ids, hostile names), deliveries
//! in batches, crashes in the middle of a batch's commit, restarts from the journal, replays of
//! earlier offsets and maintenance, driven through `process` over a real directory. After every
//! step:
//!
//! - every file in place is byte-identical to a version of that name that was published whole
//!   and valid, and no version older than one that was in place comes back;
//! - nothing outside the files directory is touched;
//! - a replay of messages already done changes nothing (same tree, same bytes);
//!
//! and at the end, once every transfer has ended or expired, no `.tmp`, `.part` or `.chunks`
//! is left, and a crash changed no message's outcome (against the same steps without crashes).
//!
//! The ordinary suite runs it as a property test (`proptest`, below); `fuzz/` runs it under
//! libFuzzer (feature `fuzzing`).

use super::*;
use crate::batch::Platform;
use crate::bindings::kres::kafka::types::{Limits, Trust as WitTrust};
use crate::digest::native_compress;
use crate::judge::NoResolver;
use sha2::{Digest, Sha256};
use std::cell::Cell;
use std::collections::BTreeMap;
use std::path::Path;

/// The names a sequence may use: two plain files, one in a directory, one configuration (whose
/// content is always valid, so that the property is about delivery, not judgement), and names
/// that must never be written.
const NAMES: [&str; 6] = [
    "a.dat",
    "zones/b.dat",
    "c.dat",
    "conf.json",
    "../escape.dat",
    "d.dat.tmp",
];

/// The resolver the model's messages are for.
pub(crate) const HOST: &str = "res1";

pub(crate) fn ctx() -> Context {
    Context {
        hostname: HOST.into(),
        zone_id: None,
        limits: Limits {
            max_file_size: 1 << 20,
            max_chunks: 16,
        },
        now: 1_000,
        trust: WitTrust {
            keys: Vec::new(),
            require_signature: false,
        },
    }
}

/// One step of a sequence. Out-of-range numbers (from a fuzzer) are folded into range.
#[derive(Debug, Clone)]
#[cfg_attr(feature = "fuzzing", derive(arbitrary::Arbitrary))]
pub enum Step {
    /// Publish a new version of `NAMES[name]` in `chunks` chunks; `digest`: 0 none, 1 right,
    /// 2 wrong; `drop`: leave out this chunk (1-based), if any, as a lost message would.
    Publish {
        name: usize,
        size: usize,
        chunks: u32,
        digest: u8,
        transfer_id: bool,
        drop: Option<u32>,
    },
    /// Deliver up to `max` messages as one batch, crashing at the `crash`-th flush if given.
    Deliver { max: usize, crash: Option<u8> },
    /// Kafka redelivers from `back` messages before the position (a commit that was lost).
    Replay { back: usize },
    /// Hourly maintenance.
    Maintain,
}

impl Step {
    /// The step with its numbers in the ranges the model uses (those in range unchanged).
    fn folded(self) -> Step {
        fn fold(v: usize, lo: usize, hi: usize) -> usize {
            if (lo..=hi).contains(&v) {
                v
            } else {
                lo + v % (hi - lo + 1)
            }
        }
        match self {
            Step::Publish {
                name,
                size,
                chunks,
                digest,
                transfer_id,
                drop,
            } => {
                let digest = fold(digest.into(), 0, 2) as u8;
                Step::Publish {
                    name: fold(name, 0, NAMES.len() - 1),
                    size: fold(size, 0, 299),
                    chunks: fold(chunks as usize, 1, 3) as u32,
                    digest,
                    transfer_id,
                    // Upstream's format (no transfer id, no digest) cannot tell two transfers
                    // of a file apart once chunks of both are lost: the tail of one completes
                    // the head of the other. Lost chunks are modelled where the format can see
                    // them (docs/operator-guide.md, "How a message is processed", says so).
                    drop: drop
                        .filter(|_| transfer_id || digest != 0)
                        .map(|d| fold(d as usize, 1, 3) as u32),
                }
            }
            Step::Deliver { max, crash } => Step::Deliver {
                max: fold(max, 1, 8),
                crash: crash.map(|c| fold(c.into(), 1, 4) as u8),
            },
            Step::Replay { back } => Step::Replay {
                back: fold(back, 1, 6),
            },
            Step::Maintain => Step::Maintain,
        }
    }

    /// The step without its crash.
    pub fn calm(&self) -> Step {
        match self {
            Step::Deliver { max, .. } => Step::Deliver {
                max: *max,
                crash: None,
            },
            other => other.clone(),
        }
    }
}

/// Run `steps`, then the same without crashes, and check that every message had the same
/// outcome. Panics on any broken promise.
pub fn check_sequence(steps: Vec<Step>) {
    let calm: Vec<Step> = steps.iter().map(Step::calm).collect();
    let with_crashes = run(steps);
    let without = run(calm);
    assert_eq!(with_crashes, without, "a crash changed an outcome");
}

/// A message on the topic, with what publishing it meant.
struct Published {
    headers: Vec<(String, String)>,
    value: Vec<u8>,
}

/// The messages at `offsets` of the topic (partition 0 of "t"), as the host hands them over.
fn messages(topic: &[Published], offsets: std::ops::Range<usize>) -> Vec<Msg<'_>> {
    topic[offsets.clone()]
        .iter()
        .zip(offsets)
        .map(|(m, offset)| Msg {
            key: None,
            headers: m
                .headers
                .iter()
                .map(|(n, v)| (n.as_str(), v.as_bytes()))
                .collect(),
            value: &m.value as &dyn Value,
            topic: "t",
            partition: 0,
            offset: offset as i64,
        })
        .collect()
}

/// SHA-256 natively; a flush that panics at the `crash_at`-th call (a crash there: what was
/// written before it is on disk, nothing after it happens).
struct Crashing {
    flushes: Cell<u8>,
    crash_at: Option<u8>,
}

impl Platform for Crashing {
    fn compress(&self, state: &mut [u32; 8], blocks: &[u8]) {
        native_compress(state, blocks);
    }

    fn sync(&self) -> std::result::Result<(), String> {
        let n = self.flushes.get() + 1;
        self.flushes.set(n);
        if self.crash_at == Some(n) {
            std::panic::panic_any(Crash);
        }
        Ok(())
    }
}

struct Crash;

/// Every file under `root` (relative path to bytes), the journal aside: a message of a
/// batch killed before its journal entry, come again, is recorded there as done.
fn tree(root: &Path) -> BTreeMap<String, Vec<u8>> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, Vec<u8>>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            let rel = path.strip_prefix(root).unwrap().display().to_string();
            if rel == crate::journal::STATE_FILE {
                continue;
            }
            if path.is_dir() {
                walk(root, &path, out);
            } else {
                out.insert(rel, std::fs::read(&path).unwrap());
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(root, root, &mut out);
    out
}

/// A version's content: unique per publication, so that a file in place names its version.
fn content(version: usize, name: usize, size: usize) -> Vec<u8> {
    if NAMES[name].ends_with(".json") {
        return format!("{{\"hostname\": \"v{version}\"}}").into_bytes();
    }
    let mut bytes = format!("version {version}\n").into_bytes();
    bytes.extend((0..size).map(|i| b'a' + ((i * 7 + version) % 26) as u8));
    bytes
}

/// Whether a message was accepted, skipped (and why) or rejected (and why). Stored, committed
/// and unchanged are all acceptance: a crash after a batch's renames and before its journal
/// entry makes its messages find their work done when they come again (a file already in
/// place is unchanged, a chunk set already complete assembles to it), and the manager call
/// the commit owed is on record already.
fn kind(outcome: &Result<Outcome>) -> String {
    match outcome {
        // A message of a batch killed after its renames, come again: its work is done.
        Ok(Outcome::Skipped(s)) if s.reason == SkipReason::Replayed => "accepted".to_owned(),
        Ok(Outcome::Skipped(s)) => format!("skipped {:?}", s.reason),
        Ok(
            Outcome::Stored(_)
            | Outcome::Committed(_)
            | Outcome::Unchanged(_)
            | Outcome::Removed(_),
        ) => "accepted".to_owned(),
        Err(e) => format!("rejected {}", e.kind()),
    }
}

/// Run `steps`; return the outcome of each offset, as the batch that recorded it said.
pub fn run(steps: Vec<Step>) -> BTreeMap<usize, String> {
    let steps: Vec<Step> = steps.into_iter().map(Step::folded).collect();
    let outer = tempfile::tempdir().unwrap();
    let root = outer.path().join("files");
    std::fs::create_dir(&root).unwrap();
    let files = Files::new(&root);
    let ctx = ctx();
    let mut topic: Vec<Published> = Vec::new();
    // For each name, the versions published whole and valid (content to publication order).
    let mut valid: BTreeMap<&str, BTreeMap<Vec<u8>, usize>> = BTreeMap::new();
    // For each name, the newest version that was in place.
    let mut newest: BTreeMap<String, usize> = BTreeMap::new();
    let mut position = 0usize;
    let mut version = 0usize;
    let mut said = BTreeMap::new();
    let quiet = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if info.payload().downcast_ref::<Crash>().is_none() {
            quiet(info);
        }
    }));

    let check = |newest: &mut BTreeMap<String, usize>,
                 valid: &BTreeMap<&str, BTreeMap<Vec<u8>, usize>>| {
        let siblings: Vec<_> = std::fs::read_dir(outer.path()).unwrap().collect();
        assert_eq!(
            siblings.len(),
            1,
            "something was written beside the files directory"
        );
        for (rel, bytes) in tree(&root) {
            let Some(name) = NAMES.iter().find(|n| **n == rel) else {
                continue;
            };
            let Some(order) = valid.get(name).and_then(|v| v.get(&bytes)) else {
                panic!(
                    "{rel} holds bytes no valid publication of it had: {:?}",
                    String::from_utf8_lossy(&bytes)
                );
            };
            let seen = newest.entry(rel.clone()).or_insert(*order);
            assert!(
                *order >= *seen,
                "{rel}: version {order} came back after version {seen}"
            );
            *seen = *order;
        }
    };

    for step in steps {
        match step {
            Step::Publish {
                name,
                size,
                chunks,
                digest,
                transfer_id,
                drop,
            } => {
                version += 1;
                let data = content(version, name, size);
                let chunks = chunks.min(data.len().max(1) as u32);
                let per = data.len().div_ceil(chunks as usize).max(1);
                let parts: Vec<&[u8]> = if data.is_empty() {
                    vec![&data[..]]
                } else {
                    data.chunks(per).collect()
                };
                let total = parts.len() as u32;
                let sha = match digest {
                    1 => Some(crate::durable::hex(&Sha256::digest(&data))),
                    2 => Some("0".repeat(64)),
                    _ => None,
                };
                let dropped = drop.filter(|d| *d <= total);
                if digest != 2
                    && dropped.is_none()
                    && !NAMES[name].contains("..")
                    && !NAMES[name].ends_with(".tmp")
                {
                    valid
                        .entry(NAMES[name])
                        .or_default()
                        .insert(data.clone(), version);
                }
                for (i, part) in parts.iter().enumerate() {
                    let index = i as u32 + 1;
                    if Some(index) == dropped {
                        continue;
                    }
                    let mut headers = vec![
                        ("hostname".to_owned(), HOST.to_owned()),
                        ("file-name".to_owned(), NAMES[name].to_owned()),
                    ];
                    if total > 1 {
                        headers.push(("total-chunks".into(), total.to_string()));
                        headers.push(("chunk-index".into(), index.to_string()));
                    }
                    if let Some(sha) = &sha {
                        headers.push(("sha256".into(), sha.clone()));
                    }
                    if transfer_id {
                        headers.push(("transfer-id".into(), format!("t{version}")));
                    }
                    topic.push(Published {
                        headers,
                        value: part.to_vec(),
                    });
                }
            }
            Step::Deliver { max, crash } => {
                let end = (position + max).min(topic.len());
                if end == position {
                    continue;
                }
                let before = tree(&root);
                let msgs = messages(&topic, position..end);
                let platform = Crashing {
                    flushes: Cell::new(0),
                    crash_at: crash,
                };
                let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    super::process(&files, &NoResolver, &platform, &ctx, &msgs)
                }));
                match result {
                    Ok(outcomes) => {
                        let replayed = outcomes.iter().all(|o| {
                            matches!(o, Ok(Outcome::Skipped(s)) if s.reason == SkipReason::Replayed)
                        });
                        if replayed {
                            assert_eq!(tree(&root), before, "a replay changed the directory");
                        }
                        if outcomes.iter().any(|o| matches!(o, Err(Error::Io { .. }))) {
                            panic!("an I/O error on a healthy disk: {:?}", outcomes);
                        }
                        if std::env::var_os("MODEL_DEBUG").is_some() {
                            eprintln!("batch at {position}: {outcomes:?}");
                        }
                        for (i, outcome) in outcomes.iter().enumerate() {
                            said.insert(position + i, kind(outcome));
                        }
                        position += outcomes.len();
                    }
                    Err(payload) => {
                        assert!(
                            payload.downcast_ref::<Crash>().is_some(),
                            "a panic in process"
                        );
                        // The restart: maintenance, then from the journal's position.
                        crate::batch::recover(&files, &crate::batch::Unsynced).unwrap();
                        for name in Journal::read(&root).unwrap().cleanup {
                            crate::store::chunks::discard(&files, &name).unwrap();
                        }
                        files.maintain(ctx.now, 24 * 3600).unwrap();
                        let journal = Journal::read(&root).unwrap();
                        position = journal.applied.get("t/0").map_or(0, |o| *o as usize + 1);
                    }
                }
                check(&mut newest, &valid);
            }
            Step::Replay { back } => {
                let before = tree(&root);
                position = position.saturating_sub(back);
                let journal = Journal::read(&root).unwrap();
                let done = journal.applied.get("t/0").map_or(0, |o| *o as usize + 1);
                if position < done {
                    // Deliver only what was done: it must change nothing.
                    let msgs = messages(&topic, position..done);
                    let outcomes =
                        super::process(&files, &NoResolver, &crate::batch::Unsynced, &ctx, &msgs);
                    assert_eq!(outcomes.len(), msgs.len());
                    assert_eq!(tree(&root), before, "a replay changed the directory");
                    position = done;
                }
            }
            Step::Maintain => {
                files.maintain(ctx.now, 24 * 3600).unwrap();
                check(&mut newest, &valid);
            }
        }
    }
    // Everything delivered, then every incomplete transfer expired: nothing staged is left.
    while position < topic.len() {
        let end = (position + 8).min(topic.len());
        let msgs = messages(&topic, position..end);
        let outcomes = super::process(&files, &NoResolver, &crate::batch::Unsynced, &ctx, &msgs);
        if std::env::var_os("MODEL_DEBUG").is_some() {
            eprintln!("final batch at {position}: {outcomes:?}");
        }
        for (i, outcome) in outcomes.iter().enumerate() {
            said.insert(position + i, kind(outcome));
        }
        position += outcomes.len();
        check(&mut newest, &valid);
    }
    // Everything delivered: each name holds its newest valid publication (transfers do not
    // interleave here, so a valid one always completes), crashes and replays notwithstanding.
    let held = tree(&root);
    for (name, versions) in &valid {
        let newest = versions
            .iter()
            .max_by_key(|(_, order)| **order)
            .map(|(c, _)| c);
        assert_eq!(
            held.get(*name)
                .map(|c| String::from_utf8_lossy(c).into_owned()),
            newest.map(|c| String::from_utf8_lossy(c).into_owned()),
            "{name} does not hold its newest valid publication"
        );
    }
    files.maintain(ctx.now + 2, 1).unwrap();
    for (rel, _) in tree(&root) {
        assert!(
            ![".tmp", ".part"].iter().any(|s| rel.ends_with(s)) && !rel.contains(".chunks"),
            "{rel} is left once every transfer ended or expired"
        );
    }
    check(&mut newest, &valid);
    said
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn step() -> impl Strategy<Value = Step> {
        prop_oneof![
            4 => (0..NAMES.len(), 0usize..300, 1u32..4, 0u8..3, any::<bool>(), proptest::option::weighted(0.15, 1u32..4))
                .prop_map(|(name, size, chunks, digest, transfer_id, drop)| Step::Publish {
                    name, size, chunks, digest, transfer_id, drop
                }),
            4 => (1usize..8, proptest::option::weighted(0.3, 1u8..4))
                .prop_map(|(max, crash)| Step::Deliver { max, crash }),
            1 => (1usize..6).prop_map(|back| Step::Replay { back }),
            1 => Just(Step::Maintain),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig {
            // `PROPTEST_CASES=100000` searches longer.
            cases: std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(300),
            failure_persistence: None,
            ..ProptestConfig::default()
        })]

        #[test]
        fn any_sequence_keeps_the_promises(steps in proptest::collection::vec(step(), 1..40)) {
            check_sequence(steps);
        }
    }

    /// Found by the property: three versions of a file in one batch, killed after recording what
    /// it was putting in place and before the rename. The first versions, come again, must not
    /// replace the third (rolled forward at restart).
    #[test]
    fn three_versions_in_a_batch_killed_before_the_rename() {
        let publish = || Step::Publish {
            name: 0,
            size: 0,
            chunks: 1,
            digest: 0,
            transfer_id: false,
            drop: None,
        };
        let steps = vec![
            publish(),
            publish(),
            publish(),
            Step::Deliver {
                max: 3,
                crash: Some(2),
            },
            Step::Deliver {
                max: 1,
                crash: None,
            },
        ];
        run(steps);
    }

    /// Found by the property: a chunked version then a whole one of the same file in one batch,
    /// killed before its journal entry. Staging the whole one wrote through the link to the chunk
    /// set's part, so the set no longer matched its chunks when they came again.
    #[test]
    fn a_whole_version_after_an_assembled_one_in_a_batch_leaves_the_set_intact() {
        let p = |name, chunks| Step::Publish {
            name,
            size: 0,
            chunks,
            digest: 0,
            transfer_id: false,
            drop: None,
        };
        let steps = vec![
            p(0, 1),
            p(1, 3),
            p(1, 1),
            p(0, 1),
            Step::Deliver {
                max: 5,
                crash: Some(2),
            },
        ];
        let calm = vec![
            p(0, 1),
            p(1, 3),
            p(1, 1),
            p(0, 1),
            Step::Deliver {
                max: 5,
                crash: None,
            },
        ];
        assert_eq!(run(steps), run(calm));
    }

    /// Found by the property (20,000 sequences): chunks of a transfer that lost its first
    /// chunk, then a new transfer of the same name whose later chunks equal them, the batch
    /// killed after it stored the new set. Come again, the older chunks must not join that set.
    #[test]
    fn chunks_come_again_do_not_join_a_set_a_later_message_started() {
        let p = |drop| Step::Publish {
            name: 1,
            size: 0,
            chunks: 3,
            digest: 2,
            transfer_id: false,
            drop,
        };
        check_sequence(vec![
            p(Some(1)),
            p(None),
            Step::Deliver {
                max: 3,
                crash: Some(2),
            },
        ]);
    }

    /// Found by the property (30,000 sequences): a chunk of a new transfer equal to a chunk of
    /// the transfer that ended just before it in the same batch joined that finished set; in
    /// the next batch it would have been refused. Batch boundaries must not change outcomes.
    #[test]
    fn a_chunk_after_a_transfer_ended_in_the_batch_meets_what_the_next_batch_would() {
        let p = |name, chunks, drop| Step::Publish {
            name,
            size: 0,
            chunks,
            digest: 0,
            transfer_id: false,
            drop,
        };
        check_sequence(vec![
            p(0, 3, None),
            p(0, 1, None),
            Step::Deliver {
                max: 1,
                crash: None,
            },
            p(0, 1, None),
            p(3, 3, None),
            p(3, 3, Some(1)),
            Step::Deliver {
                max: 1,
                crash: Some(1),
            },
            Step::Deliver {
                max: 6,
                crash: None,
            },
        ]);
    }

    /// Found by the property: without transfer ids or digests (upstream's publisher), a
    /// transfer that lost a chunk, then a new one whose first chunk has the same bytes: that
    /// chunk was taken for a redelivery and the two transfers were mixed. A chunk the set holds
    /// is a redelivery only if it comes from a message no later than the last one stored.
    #[test]
    fn a_new_transfers_chunk_equal_to_a_held_one_starts_a_new_set() {
        let p = |drop| Step::Publish {
            name: 3,
            size: 0,
            chunks: 3,
            digest: 0,
            transfer_id: false,
            drop,
        };
        check_sequence(vec![p(Some(2)), p(None)]);
    }
}
