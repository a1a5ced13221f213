//! Hot swap of the guest in the running daemon (the real binary, an in-process broker, a
//! stand-in manager), and `kres-kafka guest check` / `guest compile`.

mod common;

use common::daemon::{Broker, Host, SIGTERM, content};
use common::{hostile_guest, trapping_guest, tree};
use kres_kafka::commands::bench::guest_variant;
use kres_kafka::sandbox::DEFAULT_GUEST;
use std::path::{Path, PathBuf};
use std::process::Command;

const ME: &str = "resolver1";

/// A host whose guest is the file `guest/guest.wasm`, starting as variant 0 of the default.
fn host_with_guest_file(broker: &Broker, extra: &str) -> (Host, PathBuf) {
    let host = Host::with(
        &broker.server(),
        ME,
        &format!("guest: $HOST_DIR/guest/guest.wasm\n{extra}"),
        &[],
    );
    std::fs::create_dir(host.dir.path().join("guest")).unwrap();
    let path = host.dir.path().join("guest/guest.wasm");
    std::fs::write(&path, guest_variant(DEFAULT_GUEST, 0)).unwrap();
    (host, path)
}

/// Replace the guest as an operator would: write beside it, rename over it.
fn replace_guest(path: &Path, bytes: &[u8]) {
    let tmp = path.with_extension("new");
    std::fs::write(&tmp, bytes).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

fn count(logs: &str, needle: &str) -> usize {
    logs.lines().filter(|l| l.contains(needle)).count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_chunks_flow_while_the_guest_is_replaced_three_times() {
    // 1. 100 files of 10 chunks each are published: 1000 messages, in four batches of 25.
    // 2. After each of the first three batches, the guest is replaced while the batch's last
    //    file has only its first 5 chunks stored: each swap lands in the middle of a chunk set.
    // 3. Every file is committed once, byte-identical; every message is processed once.
    let broker = Broker::start(1);
    let (mut host, guest) = host_with_guest_file(&broker, "");
    host.start();
    let files: Vec<(String, Vec<u8>)> = (0..100)
        .map(|i| (format!("f{i:03}.dat"), content(i as u8, 10 * 1024)))
        .collect();
    let publish = |name: &str, data: &[u8], chunks: std::ops::Range<usize>| {
        let (broker, name, data) = (&broker, name.to_owned(), data.to_vec());
        async move {
            for i in chunks {
                let index = (i + 1).to_string();
                let headers = [
                    ("hostname", ME),
                    ("file-name", name.as_str()),
                    ("total-chunks", "10"),
                    ("chunk-index", &index),
                ];
                broker
                    .publish(&name, &headers, &data[i * 1024..(i + 1) * 1024], None)
                    .await;
            }
        }
    };
    let committed = |h: &Host| files.iter().filter(|(n, d)| h.holds(n, d)).count();
    let stored = |h: &Host, name: &str, index: u32| {
        h.logs().lines().any(|l| {
            l.contains("outcome=\"stored\"")
                && l.contains(&format!("file={name} "))
                && l.contains(&format!("index={index} "))
        })
    };
    for batch in 0..4u64 {
        let range = (batch as usize * 25)..(batch as usize * 25 + 25);
        let (last, last_data) = &files[range.end - 1];
        for (name, data) in &files[range.start..range.end - 1] {
            publish(name, data, 0..10).await;
        }
        if batch == 3 {
            publish(last, last_data, 0..10).await;
            break;
        }
        publish(last, last_data, 0..5).await;
        host.wait_for(&format!("batch {batch} up to chunk 5 of {last}"), |h| {
            committed(h) >= range.end - 1 && stored(h, last, 5)
        })
        .await;
        let swap = batch + 1;
        replace_guest(&guest, &guest_variant(DEFAULT_GUEST, swap));
        host.wait_for(&format!("swap {swap}"), |h| {
            count(&h.logs(), "guest swapped") >= swap as usize
        })
        .await;
        publish(last, last_data, 5..10).await;
    }
    host.wait_for("all 100 files and their 1,000 messages", |h| {
        committed(h) == 100 && count(&h.logs(), "message processed") >= 1000
    })
    .await;
    assert!(host.stop(SIGTERM).await.success());

    let logs = host.log_of(1);
    assert_eq!(count(&logs, "guest swapped"), 3, "{logs}");
    assert_eq!(
        count(&logs, "message processed"),
        1000,
        "a message was lost or processed twice"
    );
    for (name, _) in &files {
        let commits = logs
            .lines()
            .filter(|l| l.contains("outcome=\"committed\"") && l.contains(&format!("file={name}")))
            .count();
        assert_eq!(commits, 1, "{name} committed {commits} times");
    }
    // At least one swap came between two chunks of one file.
    let lines: Vec<&str> = logs
        .lines()
        .filter(|l| l.contains("message processed") || l.contains("guest swapped"))
        .collect();
    let mid_set = lines
        .windows(2)
        .any(|w| w[0].contains("outcome=\"stored\"") && w[1].contains("guest swapped"));
    assert!(mid_set, "no swap happened in the middle of a chunk set");
    assert_eq!(
        tree(&host.files()).len(),
        101,
        "the 100 files and the journal, no chunk set or temporary left: {:?}",
        tree(&host.files())
    );
}

/// Start the daemon and wait until it consumes: it has loaded the guest file as it was, so a
/// file replaced after this is a swap (replaced before, on a slow machine, it would be the
/// guest the daemon starts with).
async fn start_on_the_first_guest(host: &mut Host) {
    host.start();
    host.wait_for("consuming", |h| h.logs().contains("consuming"))
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broken_guests_are_refused_and_the_current_one_keeps_working() {
    let broker = Broker::start(1);
    let (mut host, guest) = host_with_guest_file(&broker, "");
    start_on_the_first_guest(&mut host).await;
    let candidates: [(&str, Vec<u8>); 4] = [
        ("garbage", b"definitely not a component".to_vec()),
        (
            "half-written",
            DEFAULT_GUEST[..DEFAULT_GUEST.len() / 2].to_vec(),
        ),
        ("another world", b"\0asm\x0d\0\x01\0".to_vec()),
        (
            "trapping self-test",
            std::fs::read(trapping_guest()).unwrap(),
        ),
    ];
    for (n, (what, bytes)) in candidates.iter().enumerate() {
        replace_guest(&guest, bytes);
        host.wait_for(&format!("{what} refused"), |h| {
            count(&h.logs(), "refusing the new guest") > n
        })
        .await;
        let name = format!("after-{n}.dat");
        broker
            .publish(
                &name,
                &[("hostname", ME), ("file-name", &name)],
                what.as_bytes(),
                None,
            )
            .await;
        host.wait_for(&format!("a file after the {what} guest"), |h| {
            h.holds(&name, what.as_bytes())
        })
        .await;
    }
    let logs = host.log_of(1);
    assert_eq!(count(&logs, "guest swapped"), 0, "{logs}");
    for reason in [
        "is not a valid WebAssembly component",
        "does not implement the world",
        "failed its self-test",
    ] {
        assert!(logs.contains(reason), "no refusal says {reason:?}\n{logs}");
    }
    assert!(host.stop(SIGTERM).await.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hostile_guest_swapped_in_is_contained_and_a_good_one_replaces_it() {
    let broker = Broker::start(1);
    let (mut host, guest) = host_with_guest_file(
        &broker,
        "guest-time-limit: 300ms\nguest-memory-limit: 32MiB\n",
    );
    start_on_the_first_guest(&mut host).await;
    replace_guest(&guest, &std::fs::read(hostile_guest()).unwrap());
    host.wait_for("the hostile guest", |h| {
        count(&h.logs(), "guest swapped") == 1
    })
    .await;

    for attack in ["loop", "alloc", "escape"] {
        broker
            .publish(
                attack,
                &[("hostname", ME), ("file-name", attack)],
                b"",
                None,
            )
            .await;
    }
    broker
        .publish(
            "x",
            &[("hostname", ME), ("file-name", "written-by-hostile")],
            b"still works",
            None,
        )
        .await;
    // The outcomes are logged once the whole batch is done: after the last file is written.
    host.wait_for("the hostile guest's next message, logged", |h| {
        h.holds("written-by-hostile", b"still works")
            && h.log_of(1).contains("file=written-by-hostile")
    })
    .await;
    let logs = host.log_of(1);
    assert!(logs.contains("exceeded its time limit"), "{logs}");
    assert!(logs.contains("exceeded its memory cap"), "{logs}");
    assert!(logs.contains("contained: "), "{logs}");
    assert!(!host.dir.path().join("planted").exists());

    replace_guest(&guest, &guest_variant(DEFAULT_GUEST, 7));
    host.wait_for("the good guest back", |h| {
        count(&h.logs(), "guest swapped") == 2
    })
    .await;
    let data = content(5, 3000);
    for (i, chunk) in data.chunks(1000).enumerate() {
        let index = (i + 1).to_string();
        broker
            .publish(
                "back",
                &[
                    ("hostname", ME),
                    ("file-name", "back.dat"),
                    ("total-chunks", "3"),
                    ("chunk-index", &index),
                ],
                chunk,
                None,
            )
            .await;
    }
    host.wait_for("a chunked file", |h| h.holds("back.dat", &data))
        .await;
    assert!(host.stop(SIGTERM).await.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_rechecks_the_guest_and_the_daemon_carries_on() {
    let broker = Broker::start(1);
    let (mut host, _guest) = host_with_guest_file(&broker, "");
    host.start();
    broker
        .publish(
            "a",
            &[("hostname", ME), ("file-name", "before.dat")],
            b"1",
            None,
        )
        .await;
    host.wait_for("a first file", |h| h.holds("before.dat", b"1"))
        .await;
    host.signal(1);
    host.wait_for("the SIGHUP check", |h| {
        h.logs().contains("SIGHUP: checking the guest file")
    })
    .await;
    broker
        .publish(
            "b",
            &[("hostname", ME), ("file-name", "after.dat")],
            b"2",
            None,
        )
        .await;
    host.wait_for("a file after SIGHUP", |h| h.holds("after.dat", b"2"))
        .await;
    assert_eq!(
        count(&host.log_of(1), "guest swapped"),
        0,
        "an unchanged guest is not swapped"
    );
    assert!(host.stop(SIGTERM).await.success());
}

fn kres_kafka(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_kres-kafka"))
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn guest_check_accepts_a_good_guest_and_refuses_each_bad_one() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.wasm");
    std::fs::write(&good, DEFAULT_GUEST).unwrap();
    let out = kres_kafka(&["guest", "check", good.to_str().unwrap()]);
    assert!(out.status.success(), "{out:?}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("ok: ") && stdout.contains("version \"kres-kafka-guest"),
        "{stdout}"
    );

    let cases: [(&str, Vec<u8>, &str); 4] = [
        (
            "garbage.wasm",
            b"nope".to_vec(),
            "is not a valid WebAssembly component",
        ),
        (
            "half.wasm",
            DEFAULT_GUEST[..1000].to_vec(),
            "is not a valid WebAssembly component",
        ),
        (
            "other-world.wasm",
            b"\0asm\x0d\0\x01\0".to_vec(),
            "does not implement the world kres:kafka/consumer",
        ),
        (
            "trap.wasm",
            std::fs::read(trapping_guest()).unwrap(),
            "failed its self-test",
        ),
    ];
    for (name, bytes, reason) in cases {
        let path = dir.path().join(name);
        std::fs::write(&path, bytes).unwrap();
        let out = kres_kafka(&["guest", "check", path.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(1), "{name}: {out:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains(name) && stderr.contains(reason),
            "{name}: {stderr}"
        );
    }
    let missing = kres_kafka(&[
        "guest",
        "check",
        dir.path().join("missing.wasm").to_str().unwrap(),
    ]);
    assert!(
        !missing.status.success()
            && String::from_utf8_lossy(&missing.stderr).contains("missing.wasm")
    );
}

#[test]
fn guest_compile_fills_the_cache_the_daemon_uses() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.wasm");
    std::fs::write(&good, guest_variant(DEFAULT_GUEST, 42)).unwrap();
    let cache = dir.path().join("cache");
    let out = kres_kafka(&[
        "guest",
        "compile",
        good.to_str().unwrap(),
        "--cache-dir",
        cache.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{out:?}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let artifact = stdout
        .lines()
        .find_map(|l| l.strip_prefix("compiled into "))
        .expect("the artifact's path");
    assert!(
        Path::new(artifact).starts_with(&cache) && Path::new(artifact).exists(),
        "{stdout}"
    );
}
