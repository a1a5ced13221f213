//! Messages, start to end, on a real directory: every rule of SPEC section 2 natively.
use super::*;
use crate::batch::Unsynced;
use crate::bindings::kres::kafka::types::Limits;
use crate::judge::NoResolver;
use sha2::{Digest, Sha256};
use std::fs;
use std::path::Path;

// The resolver and context of the unit tests are the stateful model's.
pub(super) use super::model::{HOST, ctx};

/// A header, as the host hands it over.
pub(super) struct Header {
    pub(super) name: String,
    pub(super) value: Vec<u8>,
}

/// A message, as the host hands it over (its value held here instead of by the host).
pub(super) struct Message {
    key: Option<Vec<u8>>,
    pub(super) headers: Vec<Header>,
    pub(super) value: Vec<u8>,
    topic: String,
    partition: i32,
    offset: i64,
}

impl Message {
    pub(super) fn as_msg(&self) -> Msg<'_> {
        Msg {
            key: self.key.as_deref(),
            headers: self
                .headers
                .iter()
                .map(|h| (h.name.as_str(), h.value.as_slice()))
                .collect(),
            value: &self.value,
            topic: &self.topic,
            partition: self.partition,
            offset: self.offset,
        }
    }
}

/// `msgs` as one batch.
pub(super) fn batch(
    files: &Files,
    resolver: &dyn Resolver,
    ctx: &Context,
    msgs: &[Message],
) -> Vec<Result<Outcome>> {
    let msgs: Vec<Msg<'_>> = msgs.iter().map(Message::as_msg).collect();
    super::process(files, resolver, &Unsynced, ctx, &msgs)
}

/// `msg` as a batch of its own.
pub(super) fn process(
    files: &Files,
    resolver: &dyn Resolver,
    ctx: &Context,
    msg: &Message,
) -> Result<Outcome> {
    let mut outcomes = batch(files, resolver, ctx, std::slice::from_ref(msg));
    assert_eq!(outcomes.len(), 1, "one message, one outcome");
    outcomes.pop().unwrap()
}

/// Process `m`, as the message at `offset` of a partition, with no resolver to judge it.
pub(super) fn offer(files: &Files, offset: i64, m: Message) -> Result<Outcome> {
    process(files, &NoResolver, &ctx(), &at(offset, m))
}

pub(super) fn msg(headers: &[(&str, &str)], value: &[u8]) -> Message {
    Message {
        key: None,
        headers: headers
            .iter()
            .map(|(n, v)| Header {
                name: (*n).into(),
                value: v.as_bytes().to_vec(),
            })
            .collect(),
        value: value.to_vec(),
        // Injected by hand, as `apply` does: no position, never skipped as replayed.
        topic: String::new(),
        partition: -1,
        offset: -1,
    }
}

/// `m` as it came from Kafka at `offset` of partition 0.
pub(super) fn at(offset: i64, mut m: Message) -> Message {
    m.topic = "t".into();
    m.partition = 0;
    m.offset = offset;
    m
}

pub(super) fn whole(name: &str, value: &[u8]) -> Message {
    msg(&[("hostname", HOST), ("file-name", name)], value)
}

pub(super) fn chunk(
    name: &str,
    index: u32,
    total: u32,
    value: &[u8],
    extra: &[(&str, &str)],
) -> Message {
    let (i, t) = (index.to_string(), total.to_string());
    let mut h = vec![
        ("hostname", HOST),
        ("file-name", name),
        ("chunk-index", &*i),
        ("total-chunks", &*t),
    ];
    h.extend_from_slice(extra);
    msg(&h, value)
}

/// Every path under `root`, relative, sorted: what an operator would see with `find`.
pub(super) fn tree(root: &Path) -> Vec<String> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) {
        for e in fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            out.push(p.strip_prefix(root).unwrap().display().to_string());
            if p.is_dir() {
                walk(root, &p, out);
            }
        }
    }
    let mut out = Vec::new();
    walk(root, root, &mut out);
    out.sort();
    out
}

pub(super) fn setup() -> (tempfile::TempDir, Files) {
    let dir = tempfile::tempdir().unwrap();
    let files = Files::new(dir.path());
    (dir, files)
}

#[test]
fn whole_file_is_committed_with_renew_and_config_with_reload() {
    let (dir, files) = setup();
    let out = process(
        &files,
        &NoResolver,
        &ctx(),
        &whole("zones/block.dat", b"rpz"),
    )
    .unwrap();
    let Outcome::Committed(c) = out else {
        panic!("{out:?}")
    };
    assert_eq!(
        (c.file.as_str(), c.action, c.size),
        ("zones/block.dat", Action::Renew, 3)
    );
    assert_eq!(c.sha256, hex(&Sha256::digest(b"rpz")));
    assert_eq!(
        fs::read(dir.path().join("zones/block.dat")).unwrap(),
        b"rpz"
    );

    let out = process(
        &files,
        &NoResolver,
        &ctx(),
        &whole("config.yaml", b"workers: 2\n"),
    )
    .unwrap();
    assert!(matches!(
        out,
        Outcome::Committed(FileCommitted {
            action: Action::Reload,
            ..
        })
    ));
    assert_eq!(
        tree(dir.path()),
        ["config.yaml", "zones", "zones/block.dat"]
    );
}

#[test]
fn identical_content_is_unchanged_and_new_content_keeps_one_backup() {
    let (dir, files) = setup();
    process(&files, &NoResolver, &ctx(), &whole("a.dat", b"v1")).unwrap();
    let again = process(&files, &NoResolver, &ctx(), &whole("a.dat", b"v1")).unwrap();
    assert!(matches!(again, Outcome::Unchanged(ref n) if n == "a.dat"));
    assert!(!dir.path().join("a.dat.backup").exists());

    process(&files, &NoResolver, &ctx(), &whole("a.dat", b"v2")).unwrap();
    process(&files, &NoResolver, &ctx(), &whole("a.dat", b"v3")).unwrap();
    assert_eq!(fs::read(dir.path().join("a.dat")).unwrap(), b"v3");
    assert_eq!(fs::read(dir.path().join("a.dat.backup")).unwrap(), b"v2");
    assert_eq!(tree(dir.path()), ["a.dat", "a.dat.backup"]);
}

#[test]
fn messages_for_other_resolvers_touch_nothing() {
    let (dir, files) = setup();
    let m = msg(
        &[("hostname", "res2"), ("file-name", "../../etc/passwd")],
        b"x",
    );
    assert!(matches!(
        process(&files, &NoResolver, &ctx(), &m).unwrap(),
        Outcome::Skipped(_)
    ));
    let m = msg(&[("file-name", "a")], b"x");
    assert!(matches!(
        process(&files, &NoResolver, &ctx(), &m).unwrap(),
        Outcome::Skipped(_)
    ));
    assert!(tree(dir.path()).is_empty());
}

#[test]
fn chunks_assemble_in_any_order_with_duplicates() {
    let (dir, files) = setup();
    let parts: [&[u8]; 3] = [b"one-", b"two-", b"three"];
    for (i, expected_received) in [(3, 1), (1, 2), (3, 2), (2, 3)] {
        let out = process(
            &files,
            &NoResolver,
            &ctx(),
            &chunk("f.dat", i, 3, parts[i as usize - 1], &[]),
        )
        .unwrap();
        if expected_received < 3 {
            let Outcome::Stored(s) = out else {
                panic!("{out:?}")
            };
            assert_eq!((s.index, s.total, s.received), (i, 3, expected_received));
        } else {
            assert!(
                matches!(out, Outcome::Committed(ref c) if c.size == 13),
                "{out:?}"
            );
        }
    }
    assert_eq!(
        fs::read(dir.path().join("f.dat")).unwrap(),
        b"one-two-three"
    );
    assert_eq!(
        tree(dir.path()),
        ["f.dat"],
        "chunk set removed after commit"
    );
}

#[test]
fn chunks_of_two_transfers_never_mix() {
    let (dir, files) = setup();
    process(
        &files,
        &NoResolver,
        &ctx(),
        &chunk("f", 1, 2, b"A1", &[("transfer-id", "a")]),
    )
    .unwrap();
    // Transfer b starts: a's chunk must not be used to complete it.
    let out = process(
        &files,
        &NoResolver,
        &ctx(),
        &chunk("f", 2, 2, b"B2", &[("transfer-id", "b")]),
    )
    .unwrap();
    assert!(
        matches!(out, Outcome::Stored(ChunkStored { received: 1, .. })),
        "{out:?}"
    );
    // A change of total-chunks alone also starts over.
    process(
        &files,
        &NoResolver,
        &ctx(),
        &chunk("f", 1, 3, b"C1", &[("transfer-id", "b")]),
    )
    .unwrap();
    process(
        &files,
        &NoResolver,
        &ctx(),
        &chunk("f", 2, 3, b"C2", &[("transfer-id", "b")]),
    )
    .unwrap();
    let out = process(
        &files,
        &NoResolver,
        &ctx(),
        &chunk("f", 3, 3, b"C3", &[("transfer-id", "b")]),
    )
    .unwrap();
    assert!(matches!(out, Outcome::Committed(_)), "{out:?}");
    assert_eq!(fs::read(dir.path().join("f")).unwrap(), b"C1C2C3");
}

#[test]
fn chunked_config_is_validated_whole_not_by_its_last_chunk() {
    let (dir, files) = setup();
    process(
        &files,
        &NoResolver,
        &ctx(),
        &whole("c.yaml", b"workers: 1\n"),
    )
    .unwrap();
    // The last chunk alone is valid YAML; the whole file is not.
    process(
        &files,
        &NoResolver,
        &ctx(),
        &chunk("c.yaml", 1, 2, b"a: [1,\n", &[]),
    )
    .unwrap();
    let err = process(
        &files,
        &NoResolver,
        &ctx(),
        &chunk("c.yaml", 2, 2, b"b: 2\n", &[]),
    )
    .unwrap_err();
    assert!(
        matches!(err, Error::InvalidConfig(ref m) if m.contains("c.yaml")),
        "{err:?}"
    );
    assert_eq!(
        fs::read(dir.path().join("c.yaml")).unwrap(),
        b"workers: 1\n"
    );
    assert_eq!(
        tree(dir.path()),
        ["c.yaml"],
        "no temporary, no chunk set, no backup left"
    );
}

#[test]
fn checksum_is_checked_after_assembly() {
    let (dir, files) = setup();
    let good = hex(&Sha256::digest(b"ab"));
    let bad = "0".repeat(64);
    process(
        &files,
        &NoResolver,
        &ctx(),
        &chunk("f", 1, 2, b"a", &[("sha256", &bad)]),
    )
    .unwrap();
    let err = process(
        &files,
        &NoResolver,
        &ctx(),
        &chunk("f", 2, 2, b"b", &[("sha256", &bad)]),
    )
    .unwrap_err();
    assert!(
        matches!(err, Error::ChecksumMismatch(ref m) if m.contains(&good)),
        "{err:?}"
    );
    assert!(tree(dir.path()).is_empty());
    let err = process(
        &files,
        &NoResolver,
        &ctx(),
        &msg(
            &[("hostname", HOST), ("file-name", "g"), ("sha256", &bad)],
            b"ab",
        ),
    );
    assert!(matches!(err, Err(Error::ChecksumMismatch(_))));
    let ok = process(
        &files,
        &NoResolver,
        &ctx(),
        &msg(
            &[("hostname", HOST), ("file-name", "g"), ("sha256", &good)],
            b"ab",
        ),
    );
    assert!(matches!(ok, Ok(Outcome::Committed(_))));
}

#[test]
fn limits_reject_before_anything_large_is_written() {
    let (dir, files) = setup();
    let mut small = ctx();
    small.limits = Limits {
        max_file_size: 10,
        max_chunks: 4,
    };
    let err = process(&files, &NoResolver, &small, &whole("a", &[0; 11])).unwrap_err();
    assert!(
        matches!(err, Error::TooLarge(ref m) if m.contains("11 bytes")),
        "{err:?}"
    );
    let err = process(&files, &NoResolver, &small, &chunk("a", 1, 5, b"x", &[])).unwrap_err();
    assert!(
        matches!(err, Error::TooLarge(ref m) if m.contains("5 chunks")),
        "{err:?}"
    );
    assert!(tree(dir.path()).is_empty());
    // The sum of the chunks counts too: the third chunk would make 12 bytes.
    process(&files, &NoResolver, &small, &chunk("a", 1, 3, &[1; 4], &[])).unwrap();
    process(&files, &NoResolver, &small, &chunk("a", 2, 3, &[2; 4], &[])).unwrap();
    let err = process(&files, &NoResolver, &small, &chunk("a", 3, 3, &[3; 4], &[])).unwrap_err();
    assert!(matches!(err, Error::TooLarge(_)), "{err:?}");
    assert!(
        tree(dir.path()).is_empty(),
        "the set that cannot fit is discarded"
    );
}

#[test]
fn maintenance_removes_temporaries_and_expires_old_sets() {
    let (dir, files) = setup();
    process(&files, &NoResolver, &ctx(), &chunk("old", 1, 2, b"x", &[])).unwrap();
    let mut later = ctx();
    later.now += 500;
    process(
        &files,
        &NoResolver,
        &later,
        &chunk("sub/new", 1, 2, b"y", &[]),
    )
    .unwrap();
    fs::write(dir.path().join("crashed.tmp"), b"half").unwrap();
    fs::write(dir.path().join("sub/new.chunks/meta.tmp"), b"half").unwrap();
    fs::write(dir.path().join("keep.dat"), b"k").unwrap();

    let report = files.maintain(1_000 + 600, 300).unwrap();
    assert_eq!(report.temporaries_removed, 2);
    assert_eq!(report.chunk_sets_expired, 1);
    assert_eq!(report.chunk_sets_kept, 1);
    assert_eq!(
        tree(dir.path()),
        [
            "keep.dat",
            "sub",
            "sub/new.chunks",
            "sub/new.chunks/meta",
            "sub/new.chunks/part"
        ]
    );
}

#[test]
fn bad_names_are_rejected_before_any_write() {
    let (dir, files) = setup();
    for name in ["/abs", "../up", "a/../../b", "x.tmp", "a.chunks/1"] {
        let err = process(&files, &NoResolver, &ctx(), &whole(name, b"x")).unwrap_err();
        assert!(matches!(err, Error::BadName(_)), "{name}: {err:?}");
    }
    assert!(tree(dir.path()).is_empty());
}
