//! The real guest component under wasmtime, driven through the host's sandbox: every
//! processing rule a resolver operator depends on, and the containment of a hostile guest.

mod common;

use common::{Scratch, chunk, ctx, hostile_guest, message, tree, whole};
use kres_kafka::outcome::{Action, GuestFailure, Limits, Outcome, RejectKind, Rejection};
use kres_kafka::sandbox::{DEFAULT_GUEST, Guest, Sandbox, SandboxConfig};
use std::fs;
use std::time::{Duration, Instant};

fn default_guest(scratch: &Scratch) -> (Sandbox, Guest) {
    let sandbox = Sandbox::new(SandboxConfig::new(scratch.files())).unwrap();
    let guest = sandbox.load(DEFAULT_GUEST, "embedded").unwrap();
    (sandbox, guest)
}

fn process(guest: &Guest, msg: kres_kafka::outcome::Message) -> Result<Outcome, Rejection> {
    call(guest, &ctx(), msg).expect("the default guest never traps")
}

/// One call, its outcome split into "the guest returned" (with its verdict) or "it failed".
fn call(
    guest: &Guest,
    ctx: &kres_kafka::outcome::Context,
    msg: kres_kafka::outcome::Message,
) -> Result<Result<Outcome, Rejection>, GuestFailure> {
    match guest.process(ctx, msg) {
        Outcome::Failed(failure) => Err(failure),
        Outcome::Rejected(rejection) => Ok(Err(rejection)),
        done => Ok(Ok(done)),
    }
}

#[test]
fn default_guest_reports_its_version() {
    let scratch = Scratch::new();
    let (_sandbox, guest) = default_guest(&scratch);
    assert_eq!(
        guest.version(),
        concat!("kres-kafka-guest ", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn single_message_is_committed_atomically_with_its_action() {
    let scratch = Scratch::new();
    let (_s, guest) = default_guest(&scratch);
    let out = process(&guest, whole("zones/block.rpz", b"*.bad.example CNAME .\n")).unwrap();
    assert!(
        matches!(&out, Outcome::Committed { file, action: Action::Renew, size: 22, .. } if file == "zones/block.rpz"),
        "{out:?}"
    );
    let out = process(&guest, whole("config.yaml", b"workers: 2\n")).unwrap();
    assert!(
        matches!(
            out,
            Outcome::Committed {
                action: Action::Reload,
                ..
            }
        ),
        "{out:?}"
    );
    assert_eq!(
        fs::read(scratch.files().join("zones/block.rpz")).unwrap(),
        b"*.bad.example CNAME .\n"
    );
    assert_eq!(
        tree(&scratch.files()),
        ["config.yaml", "zones", "zones/block.rpz"]
    );
    scratch.assert_nothing_outside();
}

#[test]
fn chunked_file_assembles_in_order_out_of_order_and_with_duplicates() {
    let scratch = Scratch::new();
    let (_s, guest) = default_guest(&scratch);
    let parts: Vec<Vec<u8>> = (0u8..4).map(|i| vec![b'a' + i; 1000]).collect();
    let expected: Vec<u8> = parts.concat();
    let orders: [(&str, &[u32]); 3] = [
        ("in-order.dat", &[1, 2, 3, 4]),
        ("reversed.dat", &[4, 3, 2, 1]),
        ("duplicates.dat", &[2, 2, 1, 4, 1, 3]),
    ];
    for (name, order) in orders {
        for (n, &i) in order.iter().enumerate() {
            let out = process(&guest, chunk(name, i, 4, &parts[i as usize - 1], &[])).unwrap();
            let last = n == order.len() - 1;
            match out {
                Outcome::Committed { size, .. } if last => assert_eq!(size, 4000),
                Outcome::Stored {
                    index, total: 4, ..
                } if !last => assert_eq!(index, i),
                other => panic!("{name}, chunk {i}: {other:?}"),
            }
        }
        assert_eq!(
            fs::read(scratch.files().join(name)).unwrap(),
            expected,
            "{name}"
        );
    }
    assert_eq!(
        tree(&scratch.files()),
        ["duplicates.dat", "in-order.dat", "reversed.dat"]
    );
}

#[test]
fn chunks_of_two_transfers_never_mix() {
    let scratch = Scratch::new();
    let (_s, guest) = default_guest(&scratch);
    process(
        &guest,
        chunk("f.dat", 1, 2, b"old-1", &[("transfer-id", "t1")]),
    )
    .unwrap();
    let out = process(
        &guest,
        chunk("f.dat", 2, 2, b"new-2", &[("transfer-id", "t2")]),
    )
    .unwrap();
    assert!(
        matches!(out, Outcome::Stored { received: 1, .. }),
        "t1's chunk must not complete t2: {out:?}"
    );
    let out = process(
        &guest,
        chunk("f.dat", 1, 2, b"new-1", &[("transfer-id", "t2")]),
    )
    .unwrap();
    assert!(matches!(out, Outcome::Committed { .. }), "{out:?}");
    assert_eq!(
        fs::read(scratch.files().join("f.dat")).unwrap(),
        b"new-1new-2"
    );
}

#[test]
fn rejected_config_leaves_old_file_in_place() {
    let scratch = Scratch::new();
    let (_s, guest) = default_guest(&scratch);
    process(&guest, whole("config.yaml", b"workers: 1\n")).unwrap();
    let before = fs::read(scratch.files().join("config.yaml")).unwrap();

    let err = process(&guest, whole("config.yaml", b"workers: [\n")).unwrap_err();
    assert_eq!(err.kind, RejectKind::InvalidConfig);
    // Chunked: each chunk alone parses, the whole does not.
    process(
        &guest,
        chunk("config.yaml", 1, 2, b"logging: {level: info\n", &[]),
    )
    .unwrap();
    let err = process(&guest, chunk("config.yaml", 2, 2, b"workers: 2\n", &[])).unwrap_err();
    assert_eq!(err.kind, RejectKind::InvalidConfig, "{err:?}");
    assert!(err.reason.contains("config.yaml"), "{err:?}");

    assert_eq!(
        fs::read(scratch.files().join("config.yaml")).unwrap(),
        before
    );
    assert_eq!(
        tree(&scratch.files()),
        ["config.yaml"],
        "no temporary, backup or chunk set left"
    );
}

#[test]
fn identical_content_is_reported_unchanged() {
    let scratch = Scratch::new();
    let (_s, guest) = default_guest(&scratch);
    process(&guest, whole("a.dat", b"same")).unwrap();
    let out = process(&guest, whole("a.dat", b"same")).unwrap();
    assert_eq!(
        out,
        Outcome::Unchanged {
            file: "a.dat".into()
        }
    );
    process(&guest, chunk("a.dat", 1, 2, b"sa", &[])).unwrap();
    let out = process(&guest, chunk("a.dat", 2, 2, b"me", &[])).unwrap();
    assert_eq!(
        out,
        Outcome::Unchanged {
            file: "a.dat".into()
        }
    );
    assert_eq!(
        tree(&scratch.files()),
        ["a.dat"],
        "no backup made for a no-op"
    );
}

#[test]
fn new_content_keeps_the_previous_file_as_backup() {
    let scratch = Scratch::new();
    let (_s, guest) = default_guest(&scratch);
    for v in [&b"v1"[..], b"v2", b"v3"] {
        process(
            &guest,
            whole("c.json", &[b"{\"nsid\": \"", v, b"\"}"].concat()),
        )
        .unwrap();
    }
    assert_eq!(
        fs::read(scratch.files().join("c.json")).unwrap(),
        b"{\"nsid\": \"v3\"}"
    );
    assert_eq!(
        fs::read(scratch.files().join("c.json.backup")).unwrap(),
        b"{\"nsid\": \"v2\"}"
    );
}

#[derive(serde::Deserialize)]
struct RejectedCase {
    case: String,
    headers: Vec<(String, String)>,
    value: String,
    kind: RejectKind,
    reason: String,
}

#[test]
fn every_fixture_of_a_bad_message_is_rejected_with_its_reason_and_writes_nothing() {
    let cases: Vec<RejectedCase> =
        serde_json::from_str(include_str!("fixtures/rejected-messages.json")).unwrap();
    assert!(cases.len() > 30);
    let scratch = Scratch::new();
    let (_s, guest) = default_guest(&scratch);
    for case in cases {
        let headers: Vec<_> = case
            .headers
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .collect();
        match process(&guest, message(&headers, case.value.as_bytes())) {
            Err(Rejection { kind, reason }) => {
                assert_eq!(kind, case.kind, "{}: {reason}", case.case);
                assert!(
                    reason.contains(&case.reason),
                    "{}: {reason:?} lacks {:?}",
                    case.case,
                    case.reason
                );
            }
            Ok(out) => panic!("{}: accepted as {out:?}", case.case),
        }
    }
    assert_eq!(tree(&scratch.files()), Vec::<String>::new());
    scratch.assert_nothing_outside();
}

#[test]
fn oversized_input_is_rejected_before_it_is_written() {
    let scratch = Scratch::new();
    let (_s, guest) = default_guest(&scratch);
    let mut small = ctx();
    small.limits = Limits {
        max_file_size: 1000,
        max_chunks: 8,
    };
    let rejected = |msg| call(&guest, &small, msg).unwrap().unwrap_err();

    let err = rejected(whole("big.dat", &[0; 1001]));
    assert_eq!(err.kind, RejectKind::TooLarge);
    assert!(
        err.reason
            .contains("1001 bytes exceeds the maximum file size of 1000"),
        "{err:?}"
    );

    let err = rejected(chunk("big.dat", 1, 9, b"x", &[]));
    assert!(
        err.reason.contains("announces 9 chunks: at most 8"),
        "{err:?}"
    );

    call(&guest, &small, chunk("big.dat", 1, 2, &[1; 600], &[]))
        .unwrap()
        .unwrap();
    let err = rejected(chunk("big.dat", 2, 2, &[2; 600], &[]));
    assert_eq!(err.kind, RejectKind::TooLarge, "{err:?}");
    assert_eq!(tree(&scratch.files()), Vec::<String>::new());
}

#[test]
fn messages_for_other_resolvers_never_touch_the_directory() {
    let scratch = Scratch::new();
    let (_s, guest) = default_guest(&scratch);
    for host in ["resolver2", "RESOLVER1", "resolver1.example", ""] {
        let out = process(
            &guest,
            message(&[("hostname", host), ("file-name", "a.dat")], b"x"),
        )
        .unwrap();
        assert!(matches!(out, Outcome::Skipped { .. }), "{host}: {out:?}");
    }
    let out = process(&guest, message(&[("file-name", "a.dat")], b"x")).unwrap();
    assert!(
        matches!(out, Outcome::Skipped { .. }),
        "no hostname header: {out:?}"
    );
    assert!(tree(&scratch.files()).is_empty());
}

#[test]
fn maintenance_cleans_crash_leftovers_and_expires_stale_chunk_sets() {
    let scratch = Scratch::new();
    let (_s, guest) = default_guest(&scratch);
    process(&guest, chunk("stale.dat", 1, 3, b"x", &[])).unwrap();
    fs::write(scratch.files().join("config.yaml.tmp"), b"half-written").unwrap();
    fs::create_dir(scratch.files().join("zones")).unwrap();
    fs::write(scratch.files().join("zones/a.dat.tmp"), b"half").unwrap();
    fs::write(scratch.files().join("zones/a.dat"), b"kept").unwrap();

    let mut later = ctx();
    later.now += 3600;
    let report = guest.maintain(&later, Duration::from_secs(3600)).unwrap();
    assert_eq!(
        (
            report.temporaries_removed,
            report.chunk_sets_expired,
            report.chunk_sets_kept
        ),
        (2, 0, 1)
    );
    assert_eq!(
        tree(&scratch.files()),
        [
            "stale.dat.chunks",
            "stale.dat.chunks/meta",
            "stale.dat.chunks/part",
            "zones",
            "zones/a.dat"
        ]
    );

    later.now += 1;
    let report = guest.maintain(&later, Duration::from_secs(3600)).unwrap();
    assert_eq!(report.chunk_sets_expired, 1);
    assert_eq!(tree(&scratch.files()), ["zones", "zones/a.dat"]);
}

// The hostile guest: each attack fails that one call, and the next call gets a fresh instance.

fn hostile(scratch: &Scratch, memory_limit: u64, time_limit: Duration) -> (Sandbox, Guest) {
    let config = SandboxConfig {
        memory_limit,
        time_limit,
        ..SandboxConfig::new(scratch.files())
    };
    let sandbox = Sandbox::new(config).unwrap();
    let guest = sandbox.load_file(hostile_guest()).unwrap();
    assert_eq!(guest.version(), "hostile 0.0.0");
    (sandbox, guest)
}

/// After an attack, a normal message works: the sandbox is not wedged.
fn assert_next_message_works(scratch: &Scratch, guest: &Guest) {
    let out = call(guest, &ctx(), whole("after.txt", b"fine"))
        .unwrap()
        .unwrap();
    assert!(matches!(out, Outcome::Committed { .. }), "{out:?}");
    assert_eq!(
        fs::read(scratch.files().join("after.txt")).unwrap(),
        b"fine"
    );
}

#[test]
fn infinite_loop_is_interrupted_at_the_time_limit() {
    let scratch = Scratch::new();
    let limit = Duration::from_millis(200);
    let (_s, guest) = hostile(&scratch, 64 << 20, limit);
    let started = Instant::now();
    let failure = call(&guest, &ctx(), whole("loop", b"")).unwrap_err();
    let elapsed = started.elapsed();
    assert_eq!(failure, GuestFailure::TimeLimit(limit));
    assert!(
        elapsed >= limit && elapsed < limit * 10,
        "interrupted after {elapsed:?}"
    );
    assert_next_message_works(&scratch, &guest);
}

#[test]
fn memory_bomb_traps_at_the_cap() {
    let scratch = Scratch::new();
    let cap = 32 << 20;
    let (_s, guest) = hostile(&scratch, cap, Duration::from_secs(10));
    match call(&guest, &ctx(), whole("alloc", b"")).unwrap_err() {
        GuestFailure::MemoryCap { cap: c, requested } => {
            assert_eq!(c, cap);
            assert!(requested > cap, "asked for {requested}");
        }
        other => panic!("expected the memory cap, got {other:?}"),
    }
    assert_next_message_works(&scratch, &guest);
}

#[test]
fn guest_cannot_reach_outside_its_directory_nor_the_environment() {
    let scratch = Scratch::new();
    let (_s, guest) = hostile(&scratch, 64 << 20, Duration::from_secs(10));
    // The host's environment is not the guest's.
    assert!(std::env::vars().next().is_some());
    // A way out that only a careless host would follow.
    std::os::unix::fs::symlink("..", scratch.files().join("outside")).unwrap();
    match call(&guest, &ctx(), whole("escape", b"")).unwrap() {
        Err(Rejection {
            kind: RejectKind::BadName,
            reason,
        }) => {
            assert!(reason.starts_with("contained: "), "{reason}");
            assert!(reason.contains("../secret"), "{reason}");
            for path in ["../planted", "/planted", "outside/planted", "/etc/planted"] {
                assert!(reason.contains(&format!("write-to {path}: ")), "{reason}");
            }
        }
        other => panic!("the guest escaped: {other:?}"),
    }
    scratch.assert_nothing_outside();
    assert_next_message_works(&scratch, &guest);
}

#[test]
fn a_failed_call_leaves_committed_files_intact() {
    let scratch = Scratch::new();
    let (_s, guest) = hostile(&scratch, 16 << 20, Duration::from_millis(100));
    assert_next_message_works(&scratch, &guest);
    call(&guest, &ctx(), whole("loop", b"")).unwrap_err();
    call(&guest, &ctx(), whole("alloc", b"")).unwrap_err();
    assert_eq!(tree(&scratch.files()), ["after.txt"]);
    assert_eq!(
        fs::read(scratch.files().join("after.txt")).unwrap(),
        b"fine"
    );
}

// Loading: only guests that compile, implement the world and pass the self-test go live.

#[test]
fn refused_guests_say_why() {
    let scratch = Scratch::new();
    let sandbox = Sandbox::new(SandboxConfig::new(scratch.files())).unwrap();
    let refused = |bytes: &[u8]| {
        sandbox
            .load(bytes, "candidate")
            .err()
            .expect("refused")
            .to_string()
    };

    let e = refused(b"this is not wasm");
    assert!(
        e.contains("guest candidate is not a valid WebAssembly component"),
        "{e}"
    );
    let e = refused(&DEFAULT_GUEST[..DEFAULT_GUEST.len() / 2]);
    assert!(
        e.contains("is not a valid WebAssembly component"),
        "half a guest: {e}"
    );
    // The empty component: valid, but it exports nothing of the world.
    let e = refused(b"\0asm\x0d\0\x01\0");
    assert!(
        e.contains("does not implement the world kres:kafka/consumer"),
        "{e}"
    );
    let e = refused(&fs::read(common::trapping_guest()).unwrap());
    assert!(
        e.contains("failed its self-test") && e.contains("trapped"),
        "{e}"
    );
    assert!(
        tree(&scratch.files()).is_empty(),
        "the self-test ran outside the files directory"
    );
}

#[test]
fn compiled_guests_are_cached_and_only_our_artifacts_are_loaded() {
    let scratch = Scratch::new();
    let cache = scratch.dir.path().join("cache");
    let config = SandboxConfig {
        cache_dir: Some(cache.clone()),
        ..SandboxConfig::new(scratch.files())
    };
    let sandbox = Sandbox::new(config.clone()).unwrap();
    let first = sandbox.load(DEFAULT_GUEST, "embedded").unwrap();
    assert!(!first.cached());
    let second = Sandbox::new(config.clone())
        .unwrap()
        .load(DEFAULT_GUEST, "embedded")
        .unwrap();
    assert!(second.cached());
    assert_eq!(second.version(), first.version());
    assert!(matches!(
        process(&second, whole("a.dat", b"x")),
        Ok(Outcome::Committed { .. })
    ));

    // An artifact that kres-kafka did not write (here: damaged) is not loaded: recompiled.
    let artifact = fs::read_dir(&cache)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "cwasm"))
        .unwrap();
    let mut bytes = fs::read(&artifact).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    fs::write(&artifact, bytes).unwrap();
    let third = Sandbox::new(config.clone())
        .unwrap()
        .load(DEFAULT_GUEST, "embedded")
        .unwrap();
    assert!(!third.cached());
    assert!(matches!(
        process(&third, whole("b.dat", b"y")),
        Ok(Outcome::Committed { .. })
    ));

    // A guest file is named by its digest, taken as it is read in pieces, and found in the
    // cache under it; a file whose bytes no longer have the digest it was named by is not
    // compiled under that name.
    let file = scratch.dir.path().join("guest.wasm");
    fs::write(&file, DEFAULT_GUEST).unwrap();
    let sandbox = Sandbox::new(config).unwrap();
    let from_file = sandbox.load_file(&file).unwrap();
    assert!(from_file.cached());
    assert_eq!(from_file.digest(), third.digest());
    let other = kres_kafka::sandbox::digest(b"another guest");
    let e = sandbox
        .load_file_digested(&fs::File::open(&file).unwrap(), &file, other)
        .err()
        .expect("loaded under another guest's name")
        .to_string();
    assert!(e.contains("changed while it was being loaded"), "{e}");

    // A guest file replaced (renamed over) after it was opened and digested is read through
    // the descriptor: what was digested is what is compiled, not the file that took its name.
    let opened = fs::File::open(&file).unwrap();
    let digest = kres_kafka::sandbox::digest_file(&opened).unwrap();
    let replacement = scratch.dir.path().join("replacement.wasm");
    fs::write(&replacement, b"not the guest that was digested").unwrap();
    fs::rename(&replacement, &file).unwrap();
    let uncached = Sandbox::new(SandboxConfig::new(scratch.files())).unwrap();
    let loaded = uncached
        .load_file_digested(&opened, &file, digest.clone())
        .unwrap();
    assert!(!loaded.cached());
    assert_eq!(loaded.digest(), digest);
}

#[test]
fn time_the_host_spends_for_the_guest_is_not_counted_against_its_time_limit() {
    // The resolver's validator has its own timeout; a batch of configurations may well spend
    // longer in it than the guest's time limit allows the guest itself.
    struct SlowValidator;
    impl kres_kafka::sandbox::Resolver for SlowValidator {
        fn schema(&self) -> Option<std::sync::Arc<[u8]>> {
            None
        }
        fn validate(&self, _: &str, _: &[u8]) -> Result<(), kres_kafka::sandbox::ValidateError> {
            std::thread::sleep(Duration::from_millis(400));
            Ok(())
        }
        fn owe(&self, _: Action) -> Result<(), String> {
            Ok(())
        }
    }
    let scratch = Scratch::new();
    let config = SandboxConfig {
        time_limit: Duration::from_millis(300),
        resolver: std::sync::Arc::new(SlowValidator),
        ..SandboxConfig::new(scratch.files())
    };
    let sandbox = Sandbox::new(config).unwrap();
    let guest = sandbox.load(DEFAULT_GUEST, "embedded").unwrap();
    let msgs: Vec<_> = (0..3)
        .map(|i| whole(&format!("c{i}.yaml"), b"workers: 2\n"))
        .collect();
    let started = Instant::now();
    let outcomes = guest.process_batch(&ctx(), &msgs);
    assert!(started.elapsed() > Duration::from_millis(1200));
    assert_eq!(outcomes.len(), 3, "{outcomes:?}");
    for outcome in &outcomes {
        assert!(matches!(outcome, Outcome::Committed { .. }), "{outcome:?}");
    }
    // The guest's own time is still limited.
    let (_s, hostile) = hostile(&scratch, 64 << 20, Duration::from_millis(300));
    assert!(matches!(
        call(&hostile, &ctx(), whole("loop", b"")),
        Err(GuestFailure::TimeLimit(_))
    ));
}

#[test]
fn a_batch_the_guest_fails_on_is_redone_one_message_at_a_time() {
    // The failure costs the message that causes it, not the ones beside it in the batch.
    let scratch = Scratch::new();
    let (_s, guest) = hostile(&scratch, 64 << 20, Duration::from_millis(300));
    let msgs = [
        whole("before.dat", b"1"),
        whole("loop", b""),
        whole("after.dat", b"2"),
    ];
    let outcomes = guest.process_batch(&ctx(), &msgs);
    assert_eq!(outcomes.len(), 3, "{outcomes:?}");
    assert!(matches!(&outcomes[0], Outcome::Committed { file, .. } if file == "before.dat"));
    assert!(matches!(
        &outcomes[1],
        Outcome::Failed(GuestFailure::TimeLimit(_))
    ));
    assert!(matches!(&outcomes[2], Outcome::Committed { file, .. } if file == "after.dat"));
    assert_eq!(fs::read(scratch.files().join("after.dat")).unwrap(), b"2");
}
