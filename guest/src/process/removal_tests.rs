//! Withdrawn files (`remove: 1`) and the `zone-id` header, natively.
use super::tests::{at, chunk, msg, offer, setup, tree, whole};
use super::*;
use crate::bindings::kres::kafka::types::Action;
use crate::judge::NoResolver;
use std::fs;

fn removal(name: &str) -> tests::Message {
    msg(
        &[
            ("hostname", super::model::HOST),
            ("file-name", name),
            ("remove", "1"),
        ],
        b"",
    )
}

#[test]
fn a_removal_takes_the_file_away_keeps_its_backup_and_asks_for_its_call() {
    let (_dir, files) = setup();
    offer(&files, 0, whole("block.dat", b"v1")).unwrap();
    offer(&files, 1, whole("config.json", b"{}")).unwrap();
    for (offset, name, action) in [
        (2, "block.dat", Action::Renew),
        (3, "config.json", Action::Reload),
    ] {
        match offer(&files, offset, removal(name)) {
            Ok(Outcome::Removed(removed)) => {
                assert_eq!((removed.file.as_str(), removed.action), (name, action));
            }
            other => panic!("{name}: {other:?}"),
        }
        assert!(!files.path(name).exists(), "{name} is gone");
    }
    assert_eq!(
        fs::read(files.sibling("block.dat", ".backup")).unwrap(),
        b"v1"
    );
    assert_eq!(
        tree(files.root()),
        [
            ".kres-kafka-state",
            "block.dat.backup",
            "config.json.backup"
        ]
    );
    // Come again (a redelivery without its journal entry), or for a file never there: nothing.
    for (offset, m) in [(9, removal("block.dat")), (10, removal("never.dat"))] {
        assert!(matches!(
            offer(&files, offset, m),
            Ok(Outcome::Unchanged(_))
        ));
    }
    // Published again, it comes back.
    assert!(matches!(
        offer(&files, 11, whole("block.dat", b"v2")),
        Ok(Outcome::Committed(_))
    ));
    assert_eq!(fs::read(files.path("block.dat")).unwrap(), b"v2");
}

#[test]
fn a_removal_in_a_batch_wins_over_the_version_before_it_and_loses_to_the_one_after() {
    let (_dir, files) = setup();
    offer(&files, 0, whole("a.dat", b"v1")).unwrap();
    let outcomes = tests::batch(
        &files,
        &NoResolver,
        &model::ctx(),
        &[
            at(1, whole("a.dat", b"v2")),
            at(2, removal("a.dat")),
            at(3, whole("b.dat", b"b")),
        ],
    );
    assert!(
        matches!(outcomes[1], Ok(Outcome::Removed(_))),
        "{outcomes:?}"
    );
    assert!(!files.path("a.dat").exists());
    let outcomes = tests::batch(
        &files,
        &NoResolver,
        &model::ctx(),
        &[at(4, removal("b.dat")), at(5, whole("b.dat", b"b2"))],
    );
    assert!(
        matches!(outcomes[1], Ok(Outcome::Committed(_))),
        "{outcomes:?}"
    );
    assert_eq!(fs::read(files.path("b.dat")).unwrap(), b"b2");
}

#[test]
fn a_removal_discards_a_transfer_in_progress_and_carries_nothing() {
    let (_dir, files) = setup();
    offer(&files, 0, whole("big.dat", b"old")).unwrap();
    offer(&files, 1, chunk("big.dat", 1, 2, b"new ", &[])).unwrap();
    assert!(matches!(
        offer(&files, 2, removal("big.dat")),
        Ok(Outcome::Removed(_))
    ));
    assert_eq!(
        tree(files.root()),
        [".kres-kafka-state", "big.dat.backup"],
        "no chunk set is left"
    );
    let mut carrying = removal("x.dat");
    carrying.value = b"bytes".to_vec();
    assert_eq!(offer(&files, 3, carrying).unwrap_err().kind(), "bad-header");
    let mut chunked = removal("x.dat");
    chunked
        .headers
        .extend(
            [("total-chunks", "1"), ("chunk-index", "1")].map(|(n, v)| tests::Header {
                name: n.into(),
                value: v.into(),
            }),
        );
    assert_eq!(offer(&files, 4, chunked).unwrap_err().kind(), "bad-header");
}

#[test]
fn the_zone_id_header_addresses_a_message_like_a_zone_key() {
    let (_dir, files) = setup();
    let mut ctx = model::ctx();
    ctx.zone_id = Some("dc1".into());
    let for_zone = |zone: &str| {
        at(
            0,
            msg(&[("zone-id", zone), ("file-name", "z.dat")], b"zone file"),
        )
    };
    let other = tests::process(&files, &NoResolver, &ctx, &for_zone("dc2")).unwrap();
    assert!(matches!(other, Outcome::Skipped(_)), "{other:?}");
    let ours = tests::process(&files, &NoResolver, &ctx, &for_zone("dc1")).unwrap();
    assert!(matches!(ours, Outcome::Committed(_)), "{ours:?}");
}
