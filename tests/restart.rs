//! A restart resumes at once, on the defaults and with no broker timeout shortened: the real
//! `kres-kafka run` binary against librdkafka's mock broker, stopped as an operator's system
//! would stop it (SIGTERM) or as the OOM killer would (SIGKILL), started again, and timed from
//! its start to its first new file on disk.
//!
//! The daemon joins no consumer group: it assigns itself its partitions and starts each where
//! its journal says, so a killed predecessor leaves no membership to wait out. And two daemons
//! on one directory cannot both run: the second one refuses to start, naming the first.

mod common;

use common::daemon::{Broker, Host, SIGKILL, SIGTERM};
use std::time::{Duration, Instant};

const ME: &str = "resolver1";

/// The target, from the daemon's start to the new file on disk.
const TARGET: Duration = Duration::from_secs(3);
/// What the test asserts: the target with room for a loaded CI machine, still far below the
/// session timeouts (30 s on the mock, 45 s on Kafka 4) that a group member waits out.
const BOUND: Duration = Duration::from_secs(10);

/// Start the daemon again, publish a new file, and return how long it took from the start to
/// the file being on disk.
async fn restart_and_time(broker: &Broker, host: &mut Host, name: &str) -> Duration {
    let started = Instant::now();
    host.start();
    broker
        .publish_upstream(ME, name, b"after the restart")
        .await;
    host.wait_for(name, |h| h.holds(name, b"after the restart"))
        .await;
    started.elapsed()
}

/// A daemon that consumed a first file, then is stopped with `signal`, restarted, and timed.
async fn restart_after(signal: i32, what: &str) {
    let broker = Broker::start(1);
    let mut host = Host::new(&broker, ME, &[]);
    host.start();
    broker.publish_upstream(ME, "before.dat", b"before").await;
    // The file is in place before the journal records its message: a kill in between is
    // followed by a redelivery (a no-op, but not what this test measures). Kill once recorded.
    host.wait_for("the first file, recorded in the journal", |h| {
        h.holds("before.dat", b"before")
            && std::fs::read_to_string(h.path(".kres-kafka-state"))
                .is_ok_and(|j| j.contains("\"knot-resolver/0\":0"))
    })
    .await;
    let status = host.stop(signal).await;
    if signal == SIGTERM {
        assert!(status.success(), "{}", host.logs());
    }

    let took = restart_and_time(&broker, &mut host, "after.dat").await;
    eprintln!(
        "after {what}: the restarted daemon committed a new file {took:?} after starting (target {TARGET:?})"
    );
    assert!(
        took <= BOUND,
        "after {what} the restarted daemon took {took:?} to commit a new file, more than {BOUND:?}\n{}",
        host.logs()
    );
    // The log line comes after the file: anything read again is logged before it.
    host.wait_for("the new file, logged", |h| {
        h.log_of(2).contains("file=after.dat")
    })
    .await;
    let log = host.log_of(2);
    assert!(
        log.contains("partitions assigned") && !log.contains("consumer group"),
        "the restarted daemon assigns itself its partitions\n{log}"
    );
    // It resumed where the journal says: the first file's message was not offered again.
    assert!(!log.contains("file=before.dat"), "{log}");
    assert!(host.stop(SIGTERM).await.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_sigterm_a_restart_commits_a_new_file_at_once() {
    restart_after(SIGTERM, "SIGTERM").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_sigkill_a_restart_commits_a_new_file_at_once() {
    restart_after(SIGKILL, "SIGKILL").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_daemon_on_the_same_directory_refuses_to_start_naming_the_first() {
    let broker = Broker::start(1);
    let mut host = Host::new(&broker, ME, &[]);
    host.start();
    broker.publish_upstream(ME, "first.dat", b"first").await;
    host.wait_for("the first file", |h| h.holds("first.dat", b"first"))
        .await;
    let first = host.pid().expect("running");

    let second = host.run_once(&[]);
    assert_eq!(second.status.code(), Some(2), "{second:?}");
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert!(
        stderr.contains(&format!("another kres-kafka (pid {first})"))
            && stderr.contains("one daemon per directory"),
        "{stderr}"
    );
    // The first goes on as if nothing happened.
    broker.publish_upstream(ME, "second.dat", b"second").await;
    host.wait_for("a file after the refused start", |h| {
        h.holds("second.dat", b"second")
    })
    .await;
    assert!(host.stop(SIGTERM).await.success());
    // Once it stopped, the directory is free again.
    host.start();
    broker.publish_upstream(ME, "third.dat", b"third").await;
    host.wait_for("a file after the first stopped", |h| {
        h.holds("third.dat", b"third")
    })
    .await;
    assert!(host.stop(SIGTERM).await.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_first_start_does_not_compile_the_embedded_guest_and_guest_compile_fills_the_cache() {
    let broker = Broker::start(1);
    // A first start on an empty state directory: the embedded guest was compiled at build
    // time, so nothing is compiled; that artifact is put in the cache, and mapped from there.
    let mut host = Host::new(&broker, ME, &[]);
    host.start();
    host.wait_for("the guest loaded", |h| h.log_of(1).contains("guest loaded"))
        .await;
    let log = host.log_of(1);
    assert!(
        log.contains("origin=embedded") && log.contains("cached=true"),
        "{log}"
    );
    assert!(host.stop(SIGTERM).await.success());
    let cache = host.dir.path().join("kres-kafka/guest-cache");
    let compiled = |dir: &std::path::Path| {
        std::fs::read_dir(dir).map_or(0, |entries| {
            entries
                .flatten()
                .filter(|e| e.path().extension().is_some_and(|x| x == "cwasm"))
                .count()
        })
    };
    assert_eq!(compiled(&cache), 1, "the build-time artifact is cached");
    let artifact_inode = || {
        use std::os::unix::fs::MetadataExt as _;
        std::fs::read_dir(&cache)
            .unwrap()
            .flatten()
            .find(|e| e.path().extension().is_some_and(|x| x == "cwasm"))
            .map(|e| e.metadata().unwrap().ino())
            .unwrap()
    };
    let first = artifact_inode();
    // The next start takes it from the cache, as it would any guest's: it writes nothing
    // there (a start that used the build-time artifact again would put a new file in place).
    host.start();
    host.wait_for("the guest loaded again", |h| {
        h.log_of(2).contains("guest loaded")
    })
    .await;
    assert!(host.log_of(2).contains("cached=true"), "{}", host.log_of(2));
    assert!(host.stop(SIGTERM).await.success());
    assert_eq!(compiled(&cache), 1);
    assert_eq!(
        artifact_inode(),
        first,
        "the second start rewrote the cached artifact"
    );
    std::fs::remove_dir_all(&cache).unwrap();

    // `guest compile` without a path compiles the embedded guest into the cache all the same
    // (for a build that could not compile it ahead).
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_kres-kafka"))
        .args(["guest", "compile", "--config"])
        .arg(host.dir.path().join("config.yaml"))
        .arg("--config")
        .arg(host.dir.path().join("kres-kafka.yaml"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    assert!(stdout.starts_with("ok: embedded"), "{stdout}");
    let artifact = stdout
        .lines()
        .find_map(|l| l.strip_prefix("compiled into "))
        .expect("where it was compiled into");
    let size = std::fs::metadata(artifact).map(|m| m.len()).unwrap_or(0);
    assert!(size > 0, "{artifact}: {size} bytes");
    assert_eq!(compiled(&cache), 1, "{artifact}");
}
