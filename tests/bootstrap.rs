//! A new or rebuilt resolver holds the fleet's current files, whatever the stream still holds:
//! it reads its part of the state topic first (the last version of each file addressed to it,
//! as `send` keeps it there), then the stream from where it ended before. On the mock broker,
//! which keeps about 5 MiB a partition: publishing past that is a retention cut.
//!
//! The real `kres-kafka run` and `send`; what the resolver holds is read from its files
//! directory, what it reported from the status topic and its log.

mod common;

use common::daemon::{
    Broker, Host, PATIENCE, Raw, SIGTERM, TOPIC, content, free_port, metric, read_topic,
};
use kres_kafka::kafka::partitioner::partition_of;
use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer as _};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const STATE: &str = "knot-resolver-state";
const STATUS: &str = "knot-resolver-status";

/// `kres-kafka send` to the broker's topic with `args`; fails the test unless it succeeds.
fn send(broker: &Broker, args: &[&str]) {
    let mut all = vec!["--topic", TOPIC];
    all.extend_from_slice(args);
    common::daemon::send_ok(&broker.server(), &all);
}

/// `bytes` written as `name` in `dir`: the path to send.
fn write(dir: &Path, name: &str, bytes: &[u8]) -> String {
    let path: PathBuf = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path.display().to_string()
}

/// `bytes` written as `name` in `dir` and sent to `hostname` alone.
fn send_to(broker: &Broker, dir: &Path, hostname: &str, name: &str, bytes: &[u8]) {
    send(broker, &["--hostname", hostname, &write(dir, name, bytes)]);
}

/// The machine rebuilt: its files directory and its state directory empty, its name the same.
fn rebuild(host: &Host) {
    for dir in [host.files(), host.dir.path().join("kres-kafka")] {
        std::fs::remove_dir_all(&dir).unwrap();
    }
    std::fs::create_dir(host.files()).unwrap();
}

/// Every record of `topic` now.
fn read_all(broker: &Broker, topic: &str) -> Vec<Raw> {
    read_topic(&broker.cluster.bootstrap_servers(), topic)
}

/// The status records `resolver` published, in no particular order across files.
fn reports(broker: &Broker, resolver: &str) -> Vec<serde_json::Value> {
    read_all(broker, STATUS)
        .into_iter()
        .filter_map(|(.., value)| serde_json::from_slice::<serde_json::Value>(&value?).ok())
        .filter(|r| r["resolver"] == resolver)
        .collect()
}

/// Wait until `resolver` reported a record for which `wanted` holds; return it.
async fn wait_for_report(
    broker: &Broker,
    host: &Host,
    resolver: &str,
    what: &str,
    wanted: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let deadline = Instant::now() + PATIENCE;
    loop {
        if let Some(found) = reports(broker, resolver).into_iter().find(&wanted) {
            return found;
        }
        assert!(
            Instant::now() < deadline,
            "no status record {what}\n{}",
            host.logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The sha256 of each commit of `file` in a run's log.
fn commits(log: &str, file: &str) -> Vec<String> {
    log.lines()
        .filter(|l| {
            l.contains("message processed")
                && l.contains("outcome=\"committed\"")
                && l.contains(&format!(" file={file} "))
        })
        .filter_map(|l| l.split(" sha256=").nth(1))
        .map(|rest| rest.split(' ').next().unwrap_or_default().to_owned())
        .collect()
}

fn sha256(bytes: &[u8]) -> String {
    use sha2::Digest;
    kres_kafka_guest::durable::hex(&sha2::Sha256::digest(bytes))
}

/// Publish filler to `partition` of the stream past what the mock broker keeps: the
/// publications before it are gone from the broker.
async fn cut_retention(broker: &Broker, partition: i32) {
    let before = low_watermark(broker, partition);
    let filler = vec![0u8; 512 * 1024];
    for _ in 0..16 {
        broker
            .publish(
                "filler",
                &[("hostname", "filler"), ("file-name", "filler.dat")],
                &filler,
                Some(partition),
            )
            .await;
    }
    let deadline = Instant::now() + PATIENCE;
    while low_watermark(broker, partition) == before {
        assert!(Instant::now() < deadline, "the mock broker kept everything");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn low_watermark(broker: &Broker, partition: i32) -> i64 {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", broker.cluster.bootstrap_servers())
        .create()
        .unwrap();
    consumer
        .fetch_watermarks(TOPIC, partition, Duration::from_secs(10))
        .unwrap()
        .0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rebuilt_resolver_holds_the_last_version_of_every_file_addressed_to_it() {
    let broker = Broker::start(3);
    let out = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut host = Host::with(
        &broker.server(),
        "resolver1",
        &format!("metrics-address: 127.0.0.1@{port}\n"),
        &[],
    );
    host.start();
    let list_v1 = content(1, 1_200_000);
    let list_v2 = content(2, 700_000);
    let other = content(3, 1_000);
    let config = b"workers: 2\n".to_vec();
    send(
        &broker,
        &[
            "--hostname",
            "resolver1",
            &write(out.path(), "list.dat", &list_v1),
            &write(out.path(), "other.dat", &other),
            &write(out.path(), "config.yaml", &config),
        ],
    );
    // A new version with fewer chunks: in the state after the configuration, which a
    // starting resolver must still take last.
    send_to(&broker, out.path(), "resolver1", "list.dat", &list_v2);
    host.wait_for("every file in place", |h| {
        h.holds("list.dat", &list_v2)
            && h.holds("other.dat", &other)
            && h.holds("config.yaml", &config)
    })
    .await;
    // The earlier incarnation's offsets are in the group (committed every few seconds).
    host.wait_for("offsets committed to the group", |_| {
        broker
            .committed("kres-kafka-resolver1", 3)
            .iter()
            .any(|o| *o > 0)
    })
    .await;
    assert_eq!(host.stop(SIGTERM).await.code(), Some(0));

    rebuild(&host);
    host.start();
    host.wait_for("every file back", |h| {
        h.holds("list.dat", &list_v2)
            && h.holds("other.dat", &other)
            && h.holds("config.yaml", &config)
    })
    .await;
    host.wait_for("the bootstrap's line", |h| {
        h.log_of(2).contains("bootstrap from the state: 3 files")
    })
    .await;
    // Version 1 of the list never came back, not even for an instant.
    assert_eq!(
        commits(&host.log_of(2), "list.dat"),
        [sha256(&list_v2)],
        "{}",
        host.log_of(2)
    );
    // The configuration after the files it may name, whatever their order in the state.
    let log = host.log_of(2);
    let at = |file: &str| {
        log.find(&format!("outcome=\"committed\" file={file} "))
            .unwrap_or_else(|| panic!("{file} committed\n{log}"))
    };
    assert!(at("config.yaml") > at("list.dat") && at("config.yaml") > at("other.dat"));
    assert_eq!(metric(port, "kres_kafka_bootstraps_total"), 1);
    assert_eq!(metric(port, "kres_kafka_bootstrap_files_total"), 3);
    wait_for_report(
        &broker,
        &host,
        "resolver1",
        "started (bootstrap: 3 files)",
        |r| r["outcome"] == "started" && r["reason"] == "bootstrap: 3 files",
    )
    .await;
    // The configuration after the files: one reload, and it came after both renews' commits.
    host.wait_for("no call owed", Host::owes_no_call).await;
    // It reads the stream on from where the state was taken: a new file arrives.
    let next = content(4, 2_000);
    send_to(&broker, out.path(), "resolver1", "next.dat", &next);
    host.wait_for("a file published after the start", |h| {
        h.holds("next.dat", &next)
    })
    .await;
    // A restart with the journal intact reads on from the journal, not from the state.
    assert_eq!(host.stop(SIGTERM).await.code(), Some(0));
    host.start();
    let more = content(5, 2_000);
    send_to(&broker, out.path(), "resolver1", "more.dat", &more);
    host.wait_for("the next file", |h| h.holds("more.dat", &more))
        .await;
    assert!(
        !host.log_of(3).contains("bootstrap from the state"),
        "{}",
        host.log_of(3)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_resolver_after_a_retention_cut_holds_every_file_and_only_the_third_version() {
    let broker = Broker::start(3);
    let out = tempfile::tempdir().unwrap();
    let versions: Vec<Vec<u8>> = (1..=3)
        .map(|v| content(10 + v, 600_000 + v as usize))
        .collect();
    for version in &versions {
        send(
            &broker,
            &[
                "--hostname",
                "resolver2",
                &write(out.path(), "list.dat", version),
            ],
        );
    }
    let zone_file = content(20, 5_000);
    send(
        &broker,
        &[
            "--zone-id",
            "dc1",
            &write(out.path(), "zone.dat", &zone_file),
        ],
    );
    // Every publication for resolver2 and its zone is then gone from the stream.
    let partitions = [partition_of(b"resolver2", 3), partition_of(b"dc1", 3)];
    for p in partitions {
        cut_retention(&broker, p).await;
    }
    let stream = read_all(&broker, TOPIC);
    assert!(
        !stream.iter().any(|(.., headers, _)| headers
            .iter()
            .any(|(n, v)| n == "file-name" && (v == b"list.dat" || v == b"zone.dat"))),
        "the stream still holds a publication"
    );

    let mut host = Host::with(&broker.server(), "resolver2", "zone-id: dc1\n", &[]);
    host.start();
    host.wait_for("every file", |h| {
        h.holds("list.dat", &versions[2]) && h.holds("zone.dat", &zone_file)
    })
    .await;
    // Versions 1 and 2 are in the state topic (nothing was compacted), and never were here.
    let held: Vec<Raw> = read_all(&broker, STATE);
    assert!(
        held.len() >= 4,
        "all three versions are in the state: {}",
        held.len()
    );
    assert_eq!(commits(&host.log_of(1), "list.dat"), [sha256(&versions[2])]);
    // Its records of one file are in order on one partition: once version 3's is there, any
    // earlier commit's would be too.
    let v3 = sha256(&versions[2]);
    wait_for_report(&broker, &host, "resolver2", "version 3 committed", |r| {
        r["outcome"] == "committed" && r["file"] == "list.dat" && r["sha256"] == v3.as_str()
    })
    .await;
    let reports = reports(&broker, "resolver2");
    let committed: Vec<&serde_json::Value> = reports
        .iter()
        .filter(|r| r["outcome"] == "committed" && r["file"] == "list.dat")
        .collect();
    assert_eq!(committed.len(), 1, "{reports:?}");
    assert_eq!(committed[0]["sha256"], sha256(&versions[2]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_withdrawn_file_leaves_a_running_resolver_and_never_reaches_a_new_one() {
    let broker = Broker::start(3);
    let out = tempfile::tempdir().unwrap();
    let mut host = Host::new(&broker, "resolver3", &[]);
    host.start();
    let (gone, kept) = (content(30, 1_000_000), content(31, 3_000));
    send(
        &broker,
        &[
            "--hostname",
            "resolver3",
            &write(out.path(), "gone.dat", &gone),
            &write(out.path(), "kept.dat", &kept),
        ],
    );
    host.wait_for("both files", |h| {
        h.holds("gone.dat", &gone) && h.holds("kept.dat", &kept)
    })
    .await;
    host.wait_for("no call owed", Host::owes_no_call).await;
    let renews = host.manager.calls().len();
    send(
        &broker,
        &["--hostname", "resolver3", "--remove", "gone.dat", "--wait"],
    );
    assert!(!host.path("gone.dat").exists());
    assert_eq!(std::fs::read(host.path("gone.dat.backup")).unwrap(), gone);
    assert!(host.holds("kept.dat", &kept));
    wait_for_report(&broker, &host, "resolver3", "removed", |r| {
        r["outcome"] == "removed" && r["file"] == "gone.dat" && r["action"] == "renew"
    })
    .await;
    host.wait_for("a renew for the removal", |h| {
        h.manager.calls().len() > renews
    })
    .await;
    // A file sent again as it is: reported unchanged, with the digest of what is in place.
    send_to(&broker, out.path(), "resolver3", "kept.dat", &kept);
    let kept_sha = sha256(&kept);
    wait_for_report(&broker, &host, "resolver3", "kept.dat unchanged", |r| {
        r["outcome"] == "unchanged" && r["file"] == "kept.dat" && r["sha256"] == kept_sha.as_str()
    })
    .await;

    // Rebuilt: the state gives the file kept, and not the one withdrawn.
    assert_eq!(host.stop(SIGTERM).await.code(), Some(0));
    rebuild(&host);
    host.start();
    host.wait_for("the file kept", |h| h.holds("kept.dat", &kept))
        .await;
    host.wait_for("the bootstrap's line", |h| {
        h.log_of(2).contains("bootstrap from the state: 2 files")
    })
    .await;
    assert!(!host.path("gone.dat").exists());
    assert!(!host.path("gone.dat.backup").exists(), "it was never there");
}

/// A resolver on a 3-partition broker with its metrics on a port of its own, holding version 1
/// of `list.dat`, sent by `send`.
struct Running {
    broker: Broker,
    out: tempfile::TempDir,
    port: u16,
    host: Host,
}

async fn running_with_version_1(hostname: &str, v1: &[u8]) -> Running {
    let broker = Broker::start(3);
    let out = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut host = Host::with(
        &broker.server(),
        hostname,
        &format!("metrics-address: 127.0.0.1@{port}\n"),
        &[],
    );
    host.start();
    send_to(&broker, out.path(), hostname, "list.dat", v1);
    host.wait_for("version 1", |h| h.holds("list.dat", v1))
        .await;
    Running {
        broker,
        out,
        port,
        host,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_gone_from_the_broker_are_reported_and_the_state_mends_what_they_carried() {
    let Running {
        broker,
        out,
        port,
        mut host,
    } = running_with_version_1("resolver4", &content(40, 2_000)).await;
    let v2 = content(41, 3_000);
    assert_eq!(host.stop(SIGTERM).await.code(), Some(0));
    // While it is down: version 2, then more than the broker keeps.
    send_to(&broker, out.path(), "resolver4", "list.dat", &v2);
    let partition = partition_of(b"resolver4", 3);
    cut_retention(&broker, partition).await;
    host.start();
    host.wait_for("version 2, from the state", |h| h.holds("list.dat", &v2))
        .await;
    let log = host.log_of(2);
    let line = log
        .lines()
        .find(|l| {
            l.contains(&format!(
                "of partition {partition} are gone from the broker"
            ))
        })
        .unwrap_or_else(|| panic!("no warning of the gap\n{log}"));
    assert!(line.contains("WARN"), "{line}");
    assert!(metric(port, "kres_kafka_offsets_lost_total") > 0);
    wait_for_report(&broker, &host, "resolver4", "offsets-lost", |r| {
        r["outcome"] == "offsets-lost"
            && r["reason"].as_str().is_some_and(|s| {
                s.ends_with(&format!(
                    "of partition {partition} are gone from the broker"
                ))
            })
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_deleted_while_the_daemon_runs_stop_it_and_the_next_start_mends_them() {
    // The daemon is frozen (SIGSTOP) while a new version is published and then more than the
    // broker keeps: when it thaws, what it was about to read is gone, and librdkafka moves on
    // to what the broker still holds. It must not deliver past the gap (its journal would then
    // hide the loss): it stops with an error naming the gap, and the next start (systemd's
    // restart) reports it and takes the new version from the state topic.
    const SIGSTOP: i32 = 19;
    const SIGCONT: i32 = 18;
    let v1 = content(50, 2_000);
    let Running {
        broker,
        out,
        port,
        mut host,
    } = running_with_version_1("resolver5", &v1).await;
    let v2 = content(51, 3_000);
    host.signal(SIGSTOP);
    send_to(&broker, out.path(), "resolver5", "list.dat", &v2);
    let partition = partition_of(b"resolver5", 3);
    cut_retention(&broker, partition).await;
    host.signal(SIGCONT);
    let status = host.exit().await;
    let log = host.log_of(1);
    assert_eq!(status.code(), Some(2), "{log}");
    let gap = format!(
        "of partition {partition} are gone from the broker (deleted before they were read)"
    );
    assert!(log.contains(&gap), "no error names the gap\n{log}");
    assert!(
        host.holds("list.dat", &v1),
        "version 1 stays until the restart"
    );

    host.start();
    host.wait_for("version 2, from the state", |h| h.holds("list.dat", &v2))
        .await;
    let log = host.log_of(2);
    assert!(
        log.lines().any(|l| l.contains("WARN")
            && l.contains(&format!(
                "of partition {partition} are gone from the broker"
            ))),
        "the start does not report the gap\n{log}"
    );
    assert!(metric(port, "kres_kafka_offsets_lost_total") > 0);
    wait_for_report(&broker, &host, "resolver5", "offsets-lost", |r| {
        r["outcome"] == "offsets-lost"
    })
    .await;
    // Read on past the gap: a third version comes by the stream.
    let v3 = content(52, 1_000);
    send_to(&broker, out.path(), "resolver5", "list.dat", &v3);
    host.wait_for("version 3, by the stream", |h| h.holds("list.dat", &v3))
        .await;
    assert_eq!(host.stop(SIGTERM).await.code(), Some(0), "{}", host.logs());
}

/// A new key from `kres-kafka keygen`: its file, and the line a resolver trusts it by.
fn keygen(dir: &Path, name: &str) -> (String, String) {
    let path = dir.join(name);
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_kres-kafka"))
        .args(["keygen", "--out"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let line = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    (path.display().to_string(), line)
}

/// Write `records` again to the state topic, as an attacker with write access and no key can:
/// the same keys, headers and values, on the same partitions; `None` values as tombstones.
async fn write_state(broker: &Broker, records: &[Raw]) {
    use rdkafka::message::{Header, OwnedHeaders};
    use rdkafka::producer::FutureRecord;
    for (partition, _, key, headers, value) in records {
        let mut owned = OwnedHeaders::new();
        for (name, value) in headers {
            owned = owned.insert(Header {
                key: name,
                value: Some(value),
            });
        }
        let mut record: FutureRecord<'_, Vec<u8>, Vec<u8>> =
            FutureRecord::to(STATE).partition(*partition).headers(owned);
        if let Some(key) = key {
            record = record.key(key);
        }
        if let Some(value) = value {
            record = record.payload(value);
        }
        broker
            .producer
            .send(record, Duration::from_secs(10))
            .await
            .expect("the mock broker takes it");
    }
}

/// The state records of `file`, as they are now.
fn state_of(broker: &Broker, file: &str) -> Vec<Raw> {
    read_all(broker, STATE)
        .into_iter()
        .filter(|(.., headers, _)| {
            headers
                .iter()
                .any(|(n, v)| n == "file-name" && v == file.as_bytes())
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_writer_without_the_key_cannot_make_a_starting_resolver_take_an_older_or_foreign_version()
{
    let broker = Broker::start(3);
    let out = tempfile::tempdir().unwrap();
    let (key, line) = keygen(out.path(), "publisher.pem");
    let (stranger, _) = keygen(out.path(), "stranger.pem");
    let trust = format!("trusted-keys: [{line}]\nrequire-signature: true\n");
    let (v1, v2) = (content(50, 900_000), content(51, 800_000));
    let signed = |file: &str, bytes: &[u8], by: &str| {
        send(
            &broker,
            &[
                "--hostname",
                "resolver5",
                "--sign",
                by,
                &write(out.path(), file, bytes),
            ],
        )
    };
    signed("list.dat", &v1, &key);
    let old = state_of(&broker, "list.dat");
    // Signed timestamps are milliseconds: the next signature is later.
    std::thread::sleep(Duration::from_millis(5));
    signed("list.dat", &v2, &key);
    let foreign = content(52, 1_000);
    signed("foreign.dat", &foreign, &stranger);
    // The attacker writes version 1's records again after version 2's.
    write_state(&broker, &old).await;

    let mut host = Host::with(&broker.server(), "resolver5", &trust, &[]);
    host.start();
    host.wait_for("version 2", |h| h.holds("list.dat", &v2))
        .await;
    wait_for_report(&broker, &host, "resolver5", "foreign.dat refused", |r| {
        r["outcome"] == "rejected" && r["kind"] == "unknown-key"
    })
    .await;
    assert!(!host.path("foreign.dat").exists());
    assert_eq!(commits(&host.log_of(1), "list.dat"), [sha256(&v2)]);

    // With version 2 in place, the attacker deletes it from the state (tombstones) and leaves
    // version 1 there alone; messages are lost, so the resolver reads the state again.
    assert_eq!(host.stop(SIGTERM).await.code(), Some(0));
    let tombstones: Vec<Raw> = state_of(&broker, "list.dat")
        .into_iter()
        .map(|(p, o, key, _, _)| (p, o, key, Vec::new(), None))
        .collect();
    write_state(&broker, &tombstones).await;
    write_state(&broker, &old).await;
    signed("other.dat", &content(53, 1_000), &key);
    cut_retention(&broker, partition_of(b"resolver5", 3)).await;
    host.start();
    wait_for_report(
        &broker,
        &host,
        "resolver5",
        "the old version refused",
        |r| r["outcome"] == "rejected" && r["kind"] == "stale" && r["file"] == "list.dat",
    )
    .await;
    host.wait_for("the file sent meanwhile", |h| h.path("other.dat").exists())
        .await;
    assert!(host.holds("list.dat", &v2), "version 2 stays");
}
