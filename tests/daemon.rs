//! The daemon end to end: an in-process Kafka broker, a stand-in manager on a unix socket, and
//! the real `kres-kafka run` binary, killed, restarted and stopped as an operator's system would.

mod common;

use common::daemon::{Broker, Host, SIGKILL, SIGTERM, content, free_port, scrape};
use common::tree;
use std::time::Duration;

const ME: &str = "resolver1";

/// The paths the manager was called with, with the statuses it answered.
fn calls(host: &Host) -> Vec<(String, u16)> {
    host.manager
        .calls()
        .into_iter()
        .map(|c| (c.path, c.status))
        .collect()
}

fn ok(path: &str) -> (String, u16) {
    (path.to_owned(), 200)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_publisher_chunks_then_config_give_identical_files_and_one_reload() {
    // 1. Publish a 1.3 MiB RPZ file in 512 KiB chunks, then a config, as upstream does.
    // 2. Both files arrive byte-identical.
    // 3. One call: the reload covers the renew the RPZ file asked for.
    let broker = Broker::start(1);
    let port = free_port();
    let mut host = Host::with(
        &broker.server(),
        ME,
        &format!("metrics-address: 127.0.0.1@{port}\n"),
        &[],
    );
    host.start();
    let rpz = kres_kafka::demo::sample_rpz(1_300_000);
    // Relative to the directory of the manager's first --config file, as the manager reads it.
    let config = b"local-data:\n  rpz:\n    - file: files/block.rpz\n".to_vec();
    broker.publish_upstream(ME, "block.rpz", &rpz).await;
    broker.publish_upstream(ME, "config.yaml", &config).await;

    host.wait_for("both files and a manager call", |h| {
        h.holds("block.rpz", &rpz)
            && h.holds("config.yaml", &config)
            && !h.manager.calls().is_empty()
    })
    .await;
    // Every call the commits asked for has been made: no second call can come any more.
    host.wait_for("no call owed", Host::owes_no_call).await;
    assert_eq!(calls(&host), [ok("/reload")], "{}", host.logs());
    assert_eq!(
        tree(&host.files()),
        [".kres-kafka-state", "block.rpz", "config.yaml"]
    );

    // 4. The operator's view: the same story in the metrics.
    let metrics = scrape(port);
    for line in [
        "kres_kafka_messages_total{outcome=\"stored\"} 2",
        "kres_kafka_messages_total{outcome=\"committed\"} 2",
        "kres_kafka_manager_calls_total{path=\"/reload\",result=\"ok\"} 1",
        "kres_kafka_guest_info{version=\"kres-kafka-guest",
    ] {
        assert!(metrics.contains(line), "{line:?} missing from\n{metrics}");
    }
    assert!(host.stop(SIGTERM).await.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_for_another_hostname_never_touch_the_directory() {
    // 1. Publish files (one chunked, one config, one hostile name) for another resolver.
    // 2. Then one file for us: once it is in, everything before it was processed.
    // 3. Only our file is there, and only its renew was asked for.
    let broker = Broker::start(1);
    let mut host = Host::new(&broker, ME, &[]);
    host.start();
    broker
        .publish_upstream("resolver2", "theirs.dat", &content(2, 700_000))
        .await;
    broker
        .publish_upstream("resolver2", "config.yaml", b"workers: 8\n")
        .await;
    broker
        .publish_upstream("resolver2", "../../etc/passwd", b"x")
        .await;
    broker
        .publish(
            "k",
            &[("file-name", "nohost.dat")],
            b"no hostname header",
            None,
        )
        .await;
    broker.publish_upstream(ME, "mine.dat", b"ours").await;

    host.wait_for("our file", |h| h.holds("mine.dat", b"ours"))
        .await;
    host.wait_for("the renew", |h| !h.manager.calls().is_empty())
        .await;
    assert_eq!(tree(&host.files()), [".kres-kafka-state", "mine.dat"]);
    assert_eq!(calls(&host), [ok("/renew")]);
    assert!(host.stop(SIGTERM).await.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_mid_transfer_the_file_completes_after_restart_without_repeating_work() {
    // 1. A small file is committed and renewed.
    // 2. The first half of a 4 MiB file in 32 KiB chunks arrives; SIGKILL once some of its
    //    chunks are stored (the whole transfer may not be in the topic yet: a daemon that
    //    takes a batch at a time could otherwise finish it before the kill).
    // 3. Restart, the second half arrives: the file completes byte-identical; the small file
    //    is not read again (the restart resumes after it, where the journal says) and causes
    //    no second call: exactly one renew per file.
    let broker = Broker::start(1);
    let mut host = Host::new(&broker, ME, &[]);

    host.start();
    broker.publish_upstream(ME, "small.dat", b"small").await;
    host.wait_for("the small file's renew", |h| !h.manager.calls().is_empty())
        .await;

    let big = content(3, 4 << 20);
    let chunks: Vec<&[u8]> = big.chunks(32 << 10).collect();
    let total = chunks.len().to_string();
    let publish = |from: usize, to: usize| {
        let (broker, chunks, total) = (&broker, &chunks, &total);
        async move {
            for (i, chunk) in chunks.iter().enumerate().take(to).skip(from) {
                let index = (i + 1).to_string();
                let headers = [
                    ("hostname", ME),
                    ("file-name", "big.dat"),
                    ("total-chunks", total.as_str()),
                    ("chunk-index", &index),
                ];
                broker.publish("big", &headers, chunk, None).await;
            }
        }
    };
    let half = chunks.len() / 2;
    publish(0, half).await;
    host.wait_for("some chunks stored", |h| {
        std::fs::metadata(h.path("big.dat.chunks/part")).is_ok_and(|m| m.len() >= 8 << 15)
    })
    .await;
    let status = host.stop(SIGKILL).await;
    assert!(!status.success());
    assert!(!host.path("big.dat").exists(), "{}", host.logs());

    host.start();
    publish(half, chunks.len()).await;
    host.wait_for("the big file", |h| h.holds("big.dat", &big))
        .await;
    host.wait_for("its renew", |h| h.manager.calls().len() >= 2)
        .await;
    host.wait_for("no call owed", Host::owes_no_call).await;
    assert_eq!(
        calls(&host),
        [ok("/renew"), ok("/renew")],
        "{}",
        host.logs()
    );
    assert!(
        !host.log_of(2).contains("file=small.dat"),
        "the restart resumed after the small file\n{}",
        host.logs()
    );
    assert_eq!(
        tree(&host.files()),
        [".kres-kafka-state", "big.dat", "small.dat"]
    );
    assert!(host.stop(SIGTERM).await.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_owed_when_killed_is_made_after_the_restart() {
    // 1. A file is committed; SIGKILL inside the debounce window, before the manager call.
    // 2. Restart: the call is made (without it, the replayed message is a no-op and the
    //    resolver would never be told about the file).
    let broker = Broker::start(1);
    let mut host = Host::with(&broker.server(), ME, "debounce: 5s\n", &[]);
    host.start();
    broker.publish_upstream(ME, "zone.dat", b"new data").await;
    host.wait_for("the file", |h| h.holds("zone.dat", b"new data"))
        .await;
    host.stop(SIGKILL).await;
    assert!(
        host.manager.calls().is_empty(),
        "killed too late: the call was made\n{}",
        host.logs()
    );
    assert!(host.dir.path().join("kres-kafka/pending-action").exists());

    host.start();
    host.wait_for("the owed renew", |h| !h.manager.calls().is_empty())
        .await;
    assert_eq!(calls(&host), [ok("/renew")]);
    assert!(
        host.log_of(2).contains("a manager call was still owed"),
        "{}",
        host.logs()
    );
    host.wait_for("the marker cleared", |h| {
        !h.dir.path().join("kres-kafka/pending-action").exists()
    })
    .await;
    assert!(host.stop(SIGTERM).await.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_reload_restores_the_backup_and_reloads_again() {
    // 1. config v1 is committed and reloaded.
    // 2. The manager answers 500 to the reload of v2: v1 is put back and reloaded.
    let broker = Broker::start(1);
    let mut host = Host::new(&broker, ME, &[]);
    host.start();
    broker
        .publish_upstream(ME, "config.yaml", b"workers: 1\n")
        .await;
    host.wait_for("v1 reloaded", |h| h.manager.calls().len() == 1)
        .await;

    host.manager.answer_next(500);
    broker
        .publish_upstream(ME, "config.yaml", b"workers: 2\n")
        .await;
    host.wait_for("the reload after restoring", |h| {
        h.manager.calls().len() == 3
    })
    .await;
    assert_eq!(
        calls(&host),
        [ok("/reload"), ("/reload".into(), 500), ok("/reload")]
    );
    assert!(
        host.holds("config.yaml", b"workers: 1\n"),
        "the refused v2 is still in place"
    );
    assert!(!host.path("config.yaml.backup").exists());
    assert!(
        host.logs().contains("restored from its backup"),
        "{}",
        host.logs()
    );
    assert!(host.stop(SIGTERM).await.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_manager_is_retried_until_it_is_back() {
    let broker = Broker::start(1);
    let mut host = Host::new(&broker, ME, &[]);
    host.start();
    host.manager_down();
    broker.publish_upstream(ME, "zone.dat", b"data").await;
    host.wait_for("the file", |h| h.holds("zone.dat", b"data"))
        .await;
    // Retried, not given up: a second attempt failed too.
    host.wait_for("two failed attempts in the log", |h| {
        h.logs().matches("unreachable").count() >= 2
    })
    .await;
    assert!(host.manager.calls().is_empty());

    host.manager_up();
    host.wait_for("the renew once the manager is back", |h| {
        !h.manager.calls().is_empty()
    })
    .await;
    assert_eq!(calls(&host), [ok("/renew")]);
    assert!(host.stop(SIGTERM).await.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_on_several_partitions_commits_offsets_and_a_restart_rereads_nothing() {
    // 1. Nine files spread over three partitions are committed.
    // 2. SIGTERM: exit status 0, and the group holds each partition's offset (lag tools).
    // 3. Restart and publish one more file on each partition: they are the only messages the
    //    second run processes (a partition is read in order, so an old message read again
    //    would come before its partition's new one).
    let broker = Broker::start(3);
    let mut host = Host::new(&broker, ME, &[]);
    host.start();
    for i in 0..9 {
        let name = format!("f{i}.dat");
        let headers = [("hostname", ME), ("file-name", name.as_str())];
        broker
            .publish(&name, &headers, name.as_bytes(), Some(i % 3))
            .await;
    }
    host.wait_for("nine files", |h| {
        (0..9).all(|i| h.holds(&format!("f{i}.dat"), format!("f{i}.dat").as_bytes()))
    })
    .await;
    let status = host.stop(SIGTERM).await;
    assert!(status.success(), "{status:?}\n{}", host.logs());
    assert_eq!(
        broker.committed(&format!("kres-kafka-{ME}"), 3),
        [3, 3, 3],
        "offsets committed to the group"
    );

    host.start();
    for partition in 0..3 {
        let name = format!("last{partition}.dat");
        let headers = [("hostname", ME), ("file-name", name.as_str())];
        broker
            .publish(&name, &headers, b"last", Some(partition))
            .await;
    }
    // The log line comes after the file: wait for both.
    host.wait_for("the new files, logged", |h| {
        (0..3).all(|p| {
            h.holds(&format!("last{p}.dat"), b"last")
                && h.log_of(2).contains(&format!("file=last{p}.dat"))
        })
    })
    .await;
    let processed: Vec<_> = host
        .log_of(2)
        .lines()
        .filter(|l| l.contains("message processed"))
        .map(str::to_owned)
        .collect();
    assert_eq!(
        processed.len(),
        3,
        "the second run re-read old messages: {processed:#?}"
    );
    assert!(
        processed.iter().all(|l| l.contains("file=last")),
        "{processed:#?}"
    );
    assert!(host.stop(SIGTERM).await.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn versions_fetched_in_one_batch_are_each_committed_once_and_in_order() {
    // 1. Three versions of one file, each in three chunks as upstream sends them (no transfer
    //    id), are in the topic before the daemon starts: it fetches them as one batch.
    // 2. Version 2's first chunk would replace the chunk set version 1 finished in that batch,
    //    which must stay until the batch is recorded: the guest ends the batch there, and the
    //    daemon offers the rest again.
    // 3. Each message is processed once, in order; each version is committed; the last stays;
    //    a restart processes none of them again.
    let broker = Broker::start(1);
    let versions: Vec<Vec<u8>> = (1..=3).map(|seed| content(seed, 3 * 1024)).collect();
    for version in &versions {
        for (i, chunk) in version.chunks(1024).enumerate() {
            let index = (i + 1).to_string();
            let headers = [
                ("hostname", ME),
                ("file-name", "list.dat"),
                ("total-chunks", "3"),
                ("chunk-index", index.as_str()),
            ];
            broker.publish("list.dat", &headers, chunk, None).await;
        }
    }
    let port = free_port();
    let metrics = format!("metrics-address: 127.0.0.1@{port}\n");
    let mut host = Host::with(&broker.server(), ME, &metrics, &[]);
    host.start();
    let offsets = |log: &str| -> Vec<String> {
        log.lines()
            .filter(|l| l.contains("message processed"))
            .filter_map(|l| {
                l.split("offset=")
                    .nth(1)?
                    .split(' ')
                    .next()
                    .map(str::to_owned)
            })
            .collect()
    };
    host.wait_for("nine messages processed", |h| {
        offsets(&h.log_of(1)).len() >= 9
    })
    .await;
    let log = host.log_of(1);
    assert!(
        log.contains("the guest ended the batch early: offering the rest again"),
        "the versions were not in one batch, or the batch was not ended early:\n{log}"
    );
    let expected: Vec<String> = (0..9).map(|o| o.to_string()).collect();
    assert_eq!(offsets(&log), expected, "{log}");
    assert!(host.holds("list.dat", &versions[2]));
    let scraped = scrape(port);
    for line in [
        "kres_kafka_messages_total{outcome=\"stored\"} 6",
        "kres_kafka_messages_total{outcome=\"committed\"} 3",
    ] {
        assert!(scraped.contains(line), "{line:?} missing from\n{scraped}");
    }
    assert!(host.stop(SIGTERM).await.success());

    // One more message after them: once it is processed, anything read again came before it.
    host.start();
    broker.publish_upstream(ME, "after.dat", b"after").await;
    host.wait_for("the message after them, logged", |h| {
        h.holds("after.dat", b"after") && h.log_of(2).contains("file=after.dat")
    })
    .await;
    assert_eq!(offsets(&host.log_of(2)), ["9"]);
    assert!(host.holds("list.dat", &versions[2]));
    assert!(host.stop(SIGTERM).await.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_command_delivers_config_last_with_checksums() {
    // The real `kres-kafka send`: two files, the config given first on the command line.
    let broker = Broker::start(1);
    let mut host = Host::new(&broker, ME, &[]);
    host.start();
    let outbox = host.dir.path().join("outbox");
    std::fs::create_dir(&outbox).unwrap();
    let rpz = content(9, 300_000);
    std::fs::write(
        outbox.join("policy.yaml"),
        "local-data:\n  rpz:\n    - file: zones/lists.dat\n",
    )
    .unwrap();
    std::fs::write(outbox.join("lists.dat"), &rpz).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_kres-kafka"))
        .args([
            "send",
            "--server",
            &broker.server(),
            "--topic",
            common::daemon::TOPIC,
            "--hostname",
            ME,
        ])
        .args(["--chunk-size", "64KiB", "--dest-dir", "zones"])
        .arg(outbox.join("policy.yaml"))
        .arg(outbox.join("lists.dat"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let order: Vec<_> = stdout.lines().collect();
    assert!(
        order[0].contains("zones/lists.dat (300000 bytes, 5 chunks)")
            && order[1].contains("zones/policy.yaml"),
        "{stdout}"
    );

    host.wait_for("both files and the reload", |h| {
        h.holds("zones/lists.dat", &rpz)
            && h.path("zones/policy.yaml").exists()
            && !h.manager.calls().is_empty()
    })
    .await;
    host.wait_for("no call owed", Host::owes_no_call).await;
    assert_eq!(calls(&host), [ok("/reload")]);
    assert!(host.stop(SIGTERM).await.success());
}

#[test]
fn send_names_the_file_it_cannot_deliver() {
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_kres-kafka"))
        .args(["send", "--hostname", ME, "--server", "127.0.0.1@1"])
        .arg(dir.path().join("missing.dat"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("missing.dat"),
        "{out:?}"
    );
}

#[test]
fn disabled_kafka_says_so_and_exits_zero() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.yaml");
    std::fs::write(&config, "hostname: r1\nkafka:\n  enable: false\n").unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_kres-kafka"))
        .arg("run")
        .arg("--config")
        .arg(&config)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("Kafka delivery is disabled"));
}

#[test]
fn bad_configuration_is_refused_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.yaml");
    for (yaml, expected) in [
        (
            "kafka:\n  enable: true\n  fils-dir: /tmp\n",
            "kafka.fils-dir: unknown key; did you mean files-dir?",
        ),
        (
            "kafka:\n  enable: true\n  server: broker@99999\n",
            "port \"99999\"",
        ),
        (
            "kafka:\n  enable: true\n  security-protocol: ssl\n  ca-file: /nonexistent/ca.pem\n",
            "kafka.ca-file: cannot read /nonexistent/ca.pem",
        ),
        (
            "kafka:\n  enable: true\n  files-dir: /nonexistent/files\n",
            "kafka.files-dir /nonexistent/files does not exist",
        ),
    ] {
        std::fs::write(&config, yaml).unwrap();
        let out =
            common::kres_kafka_bounded(&["run".as_ref(), "--config".as_ref(), config.as_ref()]);
        assert_eq!(out.status.code(), Some(2), "{yaml}: {out:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(expected), "{yaml}: {stderr}");
    }
}

#[test]
fn demo_runs_with_nothing_installed() {
    // No Knot Resolver to be found: the stand-in manager plays its part.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_kres-kafka"))
        .arg("demo")
        .env_remove("KNOT_RESOLVER_DIR")
        .env("PATH", "/usr/bin:/bin")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("blocklist.rpz") && stdout.contains("3 chunks"),
        "{stdout}"
    );
    assert!(
        stdout.contains("manager call: POST /reload -> 200"),
        "{stdout}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_broker_going_down_mid_transfer_loses_nothing() {
    // 1. The first chunk of a file is stored.
    // 2. The broker goes down for a few seconds (the daemon logs it and keeps trying).
    // 3. Back up, the rest of the transfer arrives: the file is whole, committed once.
    let broker = Broker::start(1);
    let mut host = Host::new(&broker, ME, &[]);
    host.start();
    let data = content(8, 1_200_000);
    let chunks: Vec<&[u8]> = data.chunks(512 * 1024).collect();
    let publish = |i: usize| {
        let index = (i + 1).to_string();
        let broker = &broker;
        let chunk = chunks[i];
        async move {
            broker
                .publish(
                    "big.dat",
                    &[
                        ("hostname", ME),
                        ("file-name", "big.dat"),
                        ("total-chunks", "3"),
                        ("chunk-index", &index),
                    ],
                    chunk,
                    None,
                )
                .await
        }
    };
    publish(0).await;
    host.wait_for("the first chunk", |h| {
        h.logs().contains("outcome=\"stored\" file=big.dat index=1")
    })
    .await;
    broker.cluster.broker_down(1).unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    broker.cluster.broker_up(1).unwrap();
    publish(1).await;
    publish(2).await;
    host.wait_for("the whole file, logged", |h| {
        h.holds("big.dat", &data) && h.logs().contains("outcome=\"committed\" file=big.dat")
    })
    .await;
    // A message after the transfer: once it is in, a chunk read again would have come first.
    broker.publish_upstream(ME, "after.dat", b"after").await;
    // Its log line too: a chunk read again would be logged before it.
    host.wait_for("the message after it, logged", |h| {
        h.holds("after.dat", b"after") && h.logs().contains("file=after.dat")
    })
    .await;
    let logs = host.logs();
    assert_eq!(
        logs.matches("outcome=\"committed\" file=big.dat").count(),
        1,
        "{logs}"
    );
    assert!(host.stop(SIGTERM).await.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_with_the_broker_gone_does_not_wait_for_it_says_what_it_gave_up_and_loses_nothing() {
    // 1. A file is committed; the broker goes away; SIGTERM.
    // 2. The daemon exits 0 without waiting for the broker (0.4 s for the commit, 0.2 s for
    //    the status records: under a second; the time is printed, the bound is the code's),
    //    saying that it gave up on the broker.
    // 3. With the broker back, a restart reads on from the journal: the first file's message
    //    is not processed again, a new one is.
    let broker = Broker::start(1);
    let mut host = Host::new(&broker, ME, &[]);
    host.start();
    broker.publish_upstream(ME, "before.dat", b"before").await;
    host.wait_for("the first file", |h| h.holds("before.dat", b"before"))
        .await;
    // Its renew made: what the stop waits for is the broker alone.
    host.wait_for("no call owed", Host::owes_no_call).await;
    broker.cluster.broker_down(1).unwrap();
    host.wait_for("the broker's absence noticed", |h| {
        h.logs().contains("Connection refused") || h.logs().contains("Disconnected")
    })
    .await;
    let asked = std::time::Instant::now();
    let status = host.stop(SIGTERM).await;
    let took = asked.elapsed();
    eprintln!("stop with the broker gone: {took:?}");
    assert!(status.success(), "{status:?}\n{}", host.logs());
    assert!(
        took < Duration::from_secs(30),
        "a stop with the broker gone took {took:?}\n{}",
        host.logs()
    );
    let log = host.log_of(1);
    assert!(
        log.contains("gave up committing offsets")
            || log.contains("committing offsets at stop")
            // The periodic commit (every 5 s) may have taken everything before the stop.
            || log.contains("nothing left to commit"),
        "the log says what the stop gave up on, or that nothing was left\n{log}"
    );

    broker.cluster.broker_up(1).unwrap();
    host.start();
    broker.publish_upstream(ME, "after.dat", b"after").await;
    host.wait_for("a new file, logged", |h| {
        h.holds("after.dat", b"after") && h.log_of(2).contains("file=after.dat")
    })
    .await;
    let log = host.log_of(2);
    assert!(!log.contains("file=before.dat"), "{log}");
    assert!(host.stop(SIGTERM).await.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_written_host_colon_port_delivers_and_an_unreadable_one_is_refused_at_start() {
    // 1. `kafka.server` as Kafka and kcat write it, host:port: the daemon delivers.
    // 2. An address no form reads: `run` exits 2 at once, naming the file, line and column,
    //    the key and the forms it takes.
    let broker = Broker::start(1);
    let colon = broker.server().replacen('@', ":", 1);
    let mut host = Host::with(&colon, ME, "", &[]);
    host.start();
    broker
        .publish_upstream(ME, "colon.dat", b"through host:port")
        .await;
    host.wait_for("the file", |h| h.holds("colon.dat", b"through host:port"))
        .await;
    assert!(host.stop(SIGTERM).await.success());

    let bad = Host::with("a:b:c@x", ME, "", &[]);
    let out = bad.run_once(&[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    let file = bad.dir.path().join("kres-kafka.yaml");
    assert!(
        stderr.contains(&format!(
            "{}:4:11: kafka.server: \"a:b:c@x\": expected host:port, host@port or [ipv6]:port",
            file.display()
        )),
        "{stderr}"
    );
}

#[test]
fn configuration_errors_name_the_file_line_and_key_once() {
    // A wrong value, a typo'd key, YAML 1.1's `yes` (accepted), a missing file: each message
    // whole, once, exit 2.
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("kres-kafka.yaml");
    let run = |config: &std::path::Path| {
        let out =
            common::kres_kafka_bounded(&["run".as_ref(), "--config".as_ref(), config.as_ref()]);
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    for (yaml, expected) in [
        (
            "hostname: r1\n\nkafka:\n  enable: yes\n  topic: dns\n\n  debounce: 5\n",
            "7:13: kafka.debounce: expected a duration such as 5s, got 5",
        ),
        (
            "kafka:\n  enable: on\n  sever: 127.0.0.1:9092\n",
            "3:3: kafka.sever: unknown key; did you mean server?",
        ),
    ] {
        std::fs::write(&config, yaml).unwrap();
        let (code, _, stderr) = run(&config);
        assert_eq!(code, Some(2), "{yaml}: {stderr}");
        assert_eq!(
            stderr,
            format!("kres-kafka: error: {}:{expected}\n", config.display()),
            "{yaml}"
        );
    }
    // `enable: off` reads as false.
    std::fs::write(&config, "hostname: r1\nkafka:\n  enable: off\n").unwrap();
    let (code, stdout, stderr) = run(&config);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stdout.contains("Kafka delivery is disabled"), "{stdout}");

    let missing = dir.path().join("missing.yaml");
    let (code, _, stderr) = run(&missing);
    assert_eq!(code, Some(2));
    assert_eq!(
        stderr,
        format!(
            "kres-kafka: error: reading {}: No such file or directory\n",
            missing.display()
        )
    );
}
