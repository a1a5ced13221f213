//! Replays and failures: what a message that comes again, or a disk that fails, changes.
use super::tests::{at, chunk, ctx, offer, process, setup, whole};
use super::*;
use crate::journal::{Journal, Position};
use crate::judge::NoResolver;
use std::fs;
use std::path::Path;

#[test]
fn a_replay_after_a_commit_changes_nothing_and_the_next_version_arrives_whole() {
    // The crash the issue measured: v1 chunks 1-8 committed, the daemon killed before
    // their offsets reached Kafka, chunks 6-8 replayed, then v2 (no transfer-id, as
    // upstream's publisher sends it) with the same number of chunks.
    let (dir, files) = setup();
    let v1: Vec<Vec<u8>> = (1..=8)
        .map(|i| format!("v1 part {i}\n").into_bytes())
        .collect();
    let v2: Vec<Vec<u8>> = (1..=8)
        .map(|i| format!("v2 part {i}\n").into_bytes())
        .collect();
    for (i, part) in v1.iter().enumerate() {
        let m = at(i as i64, chunk("a.dat", i as u32 + 1, 8, part, &[]));
        process(&files, &NoResolver, &ctx(), &m).unwrap();
    }
    assert_eq!(fs::read(dir.path().join("a.dat")).unwrap(), v1.concat());
    for (i, part) in v1.iter().enumerate().skip(5) {
        let m = at(i as i64, chunk("a.dat", i as u32 + 1, 8, part, &[]));
        let out = process(&files, &NoResolver, &ctx(), &m).unwrap();
        assert!(
            matches!(&out, Outcome::Skipped(s) if s.reason == SkipReason::Replayed),
            "{out:?}"
        );
    }
    assert!(
        !dir.path().join("a.dat.chunks").exists(),
        "no chunk set created"
    );
    for (i, part) in v2.iter().enumerate() {
        let m = at(8 + i as i64, chunk("a.dat", i as u32 + 1, 8, part, &[]));
        let out = process(&files, &NoResolver, &ctx(), &m).unwrap();
        if i < 7 {
            assert!(matches!(out, Outcome::Stored(_)), "{out:?}");
        }
    }
    assert_eq!(fs::read(dir.path().join("a.dat")).unwrap(), v2.concat());
    assert_eq!(
        fs::read(dir.path().join("a.dat.backup")).unwrap(),
        v1.concat()
    );
}

#[test]
fn an_older_version_replayed_never_comes_back() {
    let (dir, files) = setup();
    offer(&files, 0, whole("c.yaml", b"workers: 1\n")).unwrap();
    offer(&files, 1, whole("c.yaml", b"workers: 2\n")).unwrap();
    let out = offer(&files, 0, whole("c.yaml", b"workers: 1\n")).unwrap();
    assert!(matches!(&out, Outcome::Skipped(s) if s.reason == SkipReason::Replayed));
    assert_eq!(
        fs::read(dir.path().join("c.yaml")).unwrap(),
        b"workers: 2\n"
    );
}

#[test]
fn sets_a_finished_transfer_left_are_removed_by_maintenance() {
    // A crash between the journal entry and the set's removal: the journal names it.
    let (dir, files) = setup();
    offer(&files, 0, chunk("a.dat", 1, 2, b"a", &[])).unwrap();
    let mut journal = Journal::read(dir.path()).unwrap();
    journal
        .record(
            dir.path(),
            &[Position::of("t", 0, 0).unwrap()],
            vec!["a.dat".into()],
        )
        .unwrap();
    assert!(dir.path().join("a.dat.chunks").exists());
    for name in Journal::read(dir.path()).unwrap().cleanup {
        crate::store::chunks::discard(&files, &name).unwrap();
    }
    assert!(!dir.path().join("a.dat.chunks").exists());
}

#[test]
fn a_failure_to_write_is_not_recorded_so_the_message_can_come_again() {
    let (dir, files) = setup();
    let done = |dir: &Path| {
        Journal::read(dir)
            .unwrap()
            .applied(&Position::of("t", 0, 3).unwrap())
    };
    // The journal cannot be written (its temporary is a directory): the message is not done.
    fs::create_dir_all(dir.path().join(".kres-kafka-state.tmp/x")).unwrap();
    let err = offer(&files, 3, whole("a.dat", b"x")).unwrap_err();
    assert!(matches!(err, Error::Io { .. }), "{err:?}");
    assert!(!done(dir.path()));
    fs::remove_dir_all(dir.path().join(".kres-kafka-state.tmp")).unwrap();
    offer(&files, 3, whole("a.dat", b"x")).unwrap();
    assert_eq!(fs::read(dir.path().join("a.dat")).unwrap(), b"x");
    assert!(done(dir.path()));
}

#[test]
fn a_name_that_clashes_with_a_file_or_directory_is_rejected_not_retried() {
    let (dir, files) = setup();
    offer(&files, 0, whole("zones", b"a file")).unwrap();
    let err = offer(&files, 1, whole("zones/a.dat", b"x")).unwrap_err();
    assert!(
        matches!(&err, Error::BadName(m) if m.contains("\"zones\" is a file")),
        "{err:?}"
    );
    offer(&files, 2, whole("d/x.dat", b"x")).unwrap();
    let err = offer(&files, 3, whole("d", b"x")).unwrap_err();
    assert!(
        matches!(&err, Error::BadName(m) if m.contains("it is a directory")),
        "{err:?}"
    );
    assert_eq!(fs::read(dir.path().join("zones")).unwrap(), b"a file");
}

#[test]
fn a_transfer_whose_first_chunks_were_lost_is_not_completed_by_the_next_one() {
    // v1's chunks 1 and 2 never arrived (the broker's retention dropped them): its chunk 3
    // alone sits in a set. v2, with the same number of chunks and no transfer-id, must
    // arrive whole, not as v2's chunks 1-2 and v1's chunk 3.
    let (dir, files) = setup();
    // From Kafka, such a chunk keeps no set: it could never complete.
    let lone = offer(&files, 1, chunk("b.dat", 3, 3, b"x", &[]));
    assert!(
        matches!(&lone, Err(Error::BadHeader(m)) if m.contains("without the chunks before it")),
        "{lone:?}"
    );
    assert!(!dir.path().join("b.dat.chunks").exists(), "no set kept");
    // Had a set been kept for it (injected by hand, or by an older guest), v2 still does not
    // mix with it.
    process(
        &files,
        &NoResolver,
        &ctx(),
        &chunk("a.dat", 3, 3, b"v1-3", &[]),
    )
    .unwrap();
    for (i, part) in [&b"v2-1"[..], b"v2-2", b"v2-3"].iter().enumerate() {
        let m = at(3 + i as i64, chunk("a.dat", i as u32 + 1, 3, part, &[]));
        process(&files, &NoResolver, &ctx(), &m).unwrap();
    }
    assert_eq!(fs::read(dir.path().join("a.dat")).unwrap(), b"v2-1v2-2v2-3");
    assert!(!dir.path().join("a.dat.chunks").exists());
}
