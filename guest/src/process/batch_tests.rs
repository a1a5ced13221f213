//! Batches: several messages committed as a group, ended early where they must be, and
//! replayed after a crash in the middle.
use super::tests::{at, batch, chunk, ctx, offer, process, setup, tree, whole};
use super::*;
use crate::journal::STATE_FILE;
use crate::judge::NoResolver;
use std::fs;

fn applied(root: &std::path::Path) -> Option<i64> {
    Journal::read(root).unwrap().applied.get("t/0").copied()
}

#[test]
fn a_batch_commits_every_file_and_records_its_last_offset_once() {
    let (dir, files) = setup();
    let msgs: Vec<_> = (0..50)
        .map(|i| {
            at(
                i,
                whole(&format!("views/{i:03}.dat"), format!("v{i}").as_bytes()),
            )
        })
        .collect();
    let outcomes = batch(&files, &NoResolver, &ctx(), &msgs);
    assert_eq!(outcomes.len(), 50);
    assert!(
        outcomes
            .iter()
            .all(|o| matches!(o, Ok(Outcome::Committed(_))))
    );
    assert_eq!(fs::read(dir.path().join("views/049.dat")).unwrap(), b"v49");
    assert_eq!(applied(dir.path()), Some(49));
    assert!(
        !tree(dir.path()).iter().any(|p| p.ends_with(".tmp")),
        "nothing staged is left"
    );
}

#[test]
fn two_versions_in_one_batch_commit_the_last_and_back_up_the_one_before_the_batch() {
    let (dir, files) = setup();
    offer(&files, 0, whole("a.dat", b"v1")).unwrap();
    let msgs = [at(1, whole("a.dat", b"v2")), at(2, whole("a.dat", b"v3"))];
    let outcomes = batch(&files, &NoResolver, &ctx(), &msgs);
    assert!(matches!(&outcomes[1], Ok(Outcome::Committed(c)) if c.size == 2));
    assert_eq!(fs::read(dir.path().join("a.dat")).unwrap(), b"v3");
    assert_eq!(fs::read(dir.path().join("a.dat.backup")).unwrap(), b"v1");
    // The same content again in the same batch is seen against what the batch staged.
    let msgs = [at(3, whole("a.dat", b"v4")), at(4, whole("a.dat", b"v4"))];
    let outcomes = batch(&files, &NoResolver, &ctx(), &msgs);
    assert!(
        matches!(&outcomes[1], Ok(Outcome::Unchanged(_))),
        "{outcomes:?}"
    );
}

#[test]
fn a_name_under_a_file_staged_in_the_same_batch_clashes() {
    let (_dir, files) = setup();
    let msgs = [at(0, whole("a", b"file")), at(1, whole("a/b", b"under it"))];
    let outcomes = batch(&files, &NoResolver, &ctx(), &msgs);
    assert!(
        matches!(&outcomes[1], Err(Error::BadName(_))),
        "{outcomes:?}"
    );
}

#[test]
fn a_new_transfer_right_after_one_that_ended_starts_the_next_batch() {
    let (dir, files) = setup();
    let msgs = [
        at(0, chunk("a.dat", 1, 2, b"old-", &[])),
        at(1, chunk("a.dat", 2, 2, b"1", &[])),
        at(2, chunk("a.dat", 1, 2, b"new-", &[])),
        at(3, chunk("a.dat", 2, 2, b"2", &[])),
    ];
    let first = batch(&files, &NoResolver, &ctx(), &msgs);
    assert_eq!(
        first.len(),
        2,
        "ended before the set it finished could go: {first:?}"
    );
    assert_eq!(fs::read(dir.path().join("a.dat")).unwrap(), b"old-1");
    assert_eq!(applied(dir.path()), Some(1));
    let rest = batch(&files, &NoResolver, &ctx(), &msgs[2..]);
    assert_eq!(rest.len(), 2);
    assert_eq!(fs::read(dir.path().join("a.dat")).unwrap(), b"new-2");
    assert_eq!(tree(dir.path()), [STATE_FILE, "a.dat", "a.dat.backup"]);
}

#[test]
fn a_batch_replayed_after_a_crash_before_its_journal_converges() {
    let (dir, files) = setup();
    let parts: [&[u8]; 4] = [b"aaaa", b"bbbb", b"cccc", b"dd"];
    let msg = |i: usize| at(i as i64, chunk("z.dat", i as u32 + 1, 4, parts[i], &[]));
    batch(&files, &NoResolver, &ctx(), &[msg(0)]);
    let before = fs::read(dir.path().join(STATE_FILE)).unwrap();
    // Chunks 2 and 3 are made durable, then the crash comes before the journal names them.
    batch(&files, &NoResolver, &ctx(), &[msg(1), msg(2)]);
    fs::write(dir.path().join(STATE_FILE), &before).unwrap();
    // And part of the next batch's appending reached the disk, beyond the record.
    let part = dir.path().join("z.dat.chunks/part");
    let mut torn = fs::read(&part).unwrap();
    torn.extend_from_slice(b"dd-torn");
    fs::write(&part, torn).unwrap();

    let outcomes = batch(&files, &NoResolver, &ctx(), &[msg(1), msg(2), msg(3)]);
    assert!(
        matches!(&outcomes[..2], [Ok(Outcome::Stored(a)), Ok(Outcome::Stored(b))] if a.received == 3 && b.received == 3),
        "the same chunks again change nothing: {outcomes:?}"
    );
    assert!(matches!(&outcomes[2], Ok(Outcome::Committed(c)) if c.size == 14));
    assert_eq!(
        fs::read(dir.path().join("z.dat")).unwrap(),
        b"aaaabbbbccccdd"
    );
}

#[test]
fn a_commit_replayed_after_a_crash_before_its_journal_is_unchanged() {
    let (dir, files) = setup();
    let msgs = [
        at(0, chunk("z.dat", 1, 2, b"ab", &[])),
        at(1, chunk("z.dat", 2, 2, b"c", &[])),
    ];
    batch(&files, &NoResolver, &ctx(), &msgs[..1]);
    let before = fs::read(dir.path().join(STATE_FILE)).unwrap();
    batch(&files, &NoResolver, &ctx(), &msgs[1..]);
    // The crash came after the rename, before the journal and the set's removal.
    fs::write(dir.path().join(STATE_FILE), &before).unwrap();
    fs::create_dir(dir.path().join("z.dat.chunks")).unwrap();
    let outcome = process(&files, &NoResolver, &ctx(), &msgs[1]);
    // Its set is gone here (removed after the journal): the chunk is refused, the file stays.
    assert!(matches!(outcome, Err(Error::BadHeader(_))), "{outcome:?}");
    assert_eq!(fs::read(dir.path().join("z.dat")).unwrap(), b"abc");
}

#[test]
fn chunks_ahead_of_their_turn_wait_then_are_appended_in_order() {
    let (dir, files) = setup();
    // Injected by hand (no order): 3, 1, 3 again, then 2.
    for (i, value) in [(3, &b"3"[..]), (1, b"1"), (3, b"3")] {
        let out = process(&files, &NoResolver, &ctx(), &chunk("f", i, 3, value, &[])).unwrap();
        assert!(matches!(out, Outcome::Stored(_)), "{out:?}");
    }
    assert!(dir.path().join("f.chunks/3").exists());
    let out = process(&files, &NoResolver, &ctx(), &chunk("f", 2, 3, b"2", &[])).unwrap();
    assert!(matches!(out, Outcome::Committed(_)), "{out:?}");
    assert_eq!(fs::read(dir.path().join("f")).unwrap(), b"123");
}

#[test]
fn a_set_left_by_the_previous_guest_is_taken_over() {
    let (dir, files) = setup();
    let set = dir.path().join("old.dat.chunks");
    fs::create_dir(&set).unwrap();
    fs::write(
        set.join("meta"),
        br#"{"total":3,"transfer-id":null,"sha256":null,"created":1000}"#,
    )
    .unwrap();
    fs::write(set.join("1"), b"one,").unwrap();
    fs::write(set.join("2"), b"two,").unwrap();
    let out = offer(&files, 7, chunk("old.dat", 3, 3, b"three", &[])).unwrap();
    assert!(matches!(out, Outcome::Committed(_)), "{out:?}");
    assert_eq!(
        fs::read(dir.path().join("old.dat")).unwrap(),
        b"one,two,three"
    );
}

#[test]
fn a_set_replaced_in_a_batch_goes_only_after_the_journal_so_a_crash_replays_the_same() {
    // Chunk 1 of transfer A is recorded. A batch then brings A's chunk 2 and the first chunk
    // of a new transfer B of the same name. The daemon is killed after the batch's effects and
    // before its journal entry (the journal is put back as it was), and the batch comes again:
    // every outcome the first run gave must come again, and A's set must still be whole.
    let (dir, files) = setup();
    let a = [("transfer-id", "aaaa")];
    let b = [("transfer-id", "bbbb")];
    assert!(matches!(
        offer(&files, 0, chunk("z.dat", 1, 3, b"a1", &a)),
        Ok(Outcome::Stored(_))
    ));
    let journal = fs::read(dir.path().join(STATE_FILE)).unwrap();
    let msgs = [
        at(1, chunk("z.dat", 2, 3, b"a2", &a)),
        at(2, chunk("z.dat", 1, 3, b"b1", &b)),
    ];
    let first = batch(&files, &NoResolver, &ctx(), &msgs);
    fs::write(dir.path().join(STATE_FILE), &journal).unwrap();
    let again = batch(&files, &NoResolver, &ctx(), &msgs);
    let show = |o: &[Result<Outcome>]| format!("{o:?}");
    assert!(
        first.iter().all(|o| matches!(o, Ok(Outcome::Stored(_)))),
        "{}",
        show(&first)
    );
    assert_eq!(
        again.len(),
        first.len(),
        "{} then {}",
        show(&first),
        show(&again)
    );
    assert!(
        again.iter().all(|o| matches!(o, Ok(Outcome::Stored(_)))),
        "a replay after the crash: {}",
        show(&again)
    );
    // The batch ended before B's chunk, which comes again as the next batch and replaces A.
    assert_eq!(first.len(), 1, "{}", show(&first));
    let rest = batch(&files, &NoResolver, &ctx(), &msgs[1..]);
    assert!(
        matches!(rest[..], [Ok(Outcome::Stored(_))]),
        "{}",
        show(&rest)
    );
    assert_eq!(applied(dir.path()), Some(2));
}
