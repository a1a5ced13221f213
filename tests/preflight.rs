//! The preflight and the operator's first-day mistakes it answers: `run --check` lists what
//! delivery needs and every problem, naming the key and the file; a files directory that
//! cannot be written refuses the start, a manager that does not answer is a warning; a pause
//! of delivery is told on the status topic and as a gauge; one daemon per files directory.
//!
//! The tests run as root, whom no mode bits keep out: a files directory that cannot be written
//! is a read-only tmpfs mounted on it (`EROFS`, which root gets too), as `crash.rs` mounts one
//! to fill a disk.

mod common;

use common::Tmpfs;
use common::daemon::{Broker, Host, SIGTERM, TOPIC, free_port, metric};
use std::path::Path;
use std::process::{Command, Output};

const ME: &str = "resolver1";
const STATUS_TOPIC: &str = "knot-resolver-status";

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn show(out: &Output) -> String {
    format!(
        "exit {:?}\n--- stdout\n{}--- stderr\n{}",
        out.status.code(),
        text(&out.stdout),
        text(&out.stderr)
    )
}

/// The files directory's entries, sorted.
fn entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_check_on_a_good_host_says_what_it_found_and_changes_nothing() {
    let broker = Broker::start(3);
    broker.cluster.create_topic(STATUS_TOPIC, 1, 1).unwrap();
    let host = Host::new(&broker, ME, &[]);
    let out = host.run_once(&["--check"]);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let files = host.files().display().to_string();
    let socket = host.dir.path().join("kres-api.sock").display().to_string();
    for line in [
        format!("ok: kafka.files-dir {files}: writable by uid"),
        "ok: kafka.state-dir".to_owned(),
        format!("ok: management.unix-socket {socket}: the manager answers GET /v1/config"),
        format!("ok: kafka.topic {TOPIC}: 3 partition(s) on the broker"),
        format!("ok: kafka.status-topic {STATUS_TOPIC}: 1 partition(s) on the broker"),
        "ok: kafka.trusted-keys: 0 key(s) loaded".to_owned(),
        "no problem found".to_owned(),
    ] {
        assert!(
            stdout.lines().any(|l| l.starts_with(&line)),
            "{line}\n{}",
            show(&out)
        );
    }
    assert!(
        entries(&host.files()).is_empty(),
        "nothing left in the files directory"
    );
    assert!(
        !host.dir.path().join("kres-kafka").exists(),
        "the state directory is not created by a check"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_check_lists_every_problem_naming_its_key_and_exits_1() {
    // 1. Three mistakes at once: the files directory read-only, the manager down, the broker
    //    address one where nothing listens.
    // 2. `run --check` exits 1 and names each, with its key and the path or address tried.
    let server = format!("127.0.0.1@{}", free_port());
    let mut host = Host::with(&server, ME, "", &[]);
    host.manager_down();
    let files = host.files();
    let _ro = Tmpfs::mount(&files, "ro,size=1m");
    let out = host.run_once(&["--check"]);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    let stdout = text(&out.stdout);
    let problems: Vec<&str> = stdout
        .lines()
        .filter(|l| l.starts_with("problem"))
        .collect();
    assert_eq!(problems.len(), 3, "{}", show(&out));
    let socket = host.dir.path().join("kres-api.sock").display().to_string();
    for (line, words) in [
        (
            "problem (stops delivery): kafka.files-dir",
            vec![
                files.display().to_string(),
                "not writable by uid 0".into(),
                "Read-only file system".into(),
            ],
        ),
        (
            "problem (delays delivery): management.unix-socket",
            vec![socket, "the manager does not answer".into()],
        ),
        (
            "problem (delays delivery): kafka.server",
            vec![
                // As librdkafka is given it.
                server.replace('@', ":"),
                "the broker did not describe kafka.topic".into(),
            ],
        ),
    ] {
        let found = problems.iter().find(|l| l.starts_with(line));
        let found = found.unwrap_or_else(|| panic!("{line}\n{}", show(&out)));
        for word in words {
            assert!(found.contains(&word), "{word} in {found}");
        }
    }
    assert!(
        text(&out.stderr).contains("3 problem(s) found"),
        "{}",
        show(&out)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_files_dir_that_cannot_be_written_refuses_the_start_naming_it() {
    // 1. A file waits on the topic; the files directory is read-only.
    // 2. `run` exits 2 at once, naming the key, the directory and why; it created nothing,
    //    consumed nothing: the message is still there for the next start, its offset not
    //    committed.
    let broker = Broker::start(1);
    broker.publish_upstream(ME, "waiting.dat", b"waiting").await;
    let host = Host::new(&broker, ME, &[]);
    let files = host.files();
    let _ro = Tmpfs::mount(&files, "ro,size=1m");
    let out = host.run_once(&[]);
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains(&format!(
            "kres-kafka: error: kafka.files-dir {} is not writable by uid 0: Read-only file system",
            files.display()
        )) && stderr.contains("nothing can be delivered"),
        "{}",
        show(&out)
    );
    assert!(
        !host.dir.path().join("kres-kafka").exists(),
        "no state directory made"
    );
    assert_eq!(broker.committed(&format!("kres-kafka-{ME}"), 1), [-1]);
    assert_eq!(
        broker.records(1).len(),
        1,
        "the message is still on the topic"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_manager_that_does_not_answer_is_a_warning_at_start_and_delivery_goes_on() {
    // 1. The management socket has nobody behind it: the start warns, naming the key and the
    //    socket.
    // 2. Files are delivered meanwhile; once the manager is back, the call they asked for is
    //    made: nothing was lost.
    let broker = Broker::start(1);
    let mut host = Host::new(&broker, ME, &[]);
    host.manager_down();
    host.start();
    let socket = host.dir.path().join("kres-api.sock").display().to_string();
    host.wait_for("the warning", |h| {
        h.logs().lines().any(|l| {
            l.contains(" WARN ")
                && l.contains(&format!("management.unix-socket {socket}"))
                && l.contains("the manager does not answer")
        })
    })
    .await;
    broker
        .publish_upstream(ME, "block.rpz", b"a.example CNAME .\n")
        .await;
    host.wait_for("the file", |h| h.holds("block.rpz", b"a.example CNAME .\n"))
        .await;
    host.manager_up();
    host.wait_for("the call owed", |h| h.owes_no_call()).await;
    assert!(!host.manager.calls().is_empty(), "{}", host.logs());
    assert!(host.stop(SIGTERM).await.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paused_delivery_is_told_to_send_wait_and_as_a_gauge() {
    // 1. A daemon delivers to a tmpfs; `kres_kafka_delivery_paused` is 0 from the start.
    // 2. The tmpfs goes read-only; `send --wait` of good.json answers at once that resolver1
    //    paused at it, and why (exit 1); the gauge is 1.
    // 3. The tmpfs is writable again: the same message goes through by itself (nothing lost),
    //    the gauge is back to 0.
    let broker = Broker::start(1);
    broker.cluster.create_topic(STATUS_TOPIC, 1, 1).unwrap();
    let port = free_port();
    let mut host = Host::with(
        &broker.server(),
        ME,
        &format!("metrics-address: 127.0.0.1@{port}\n"),
        &[],
    );
    let files = host.files();
    let tmpfs = Tmpfs::mount(&files, "size=4m");
    host.start();
    host.wait_for("the gauge at 0", |_| {
        common::daemon::scrape(port)
            .lines()
            .any(|l| l == "kres_kafka_delivery_paused 0")
    })
    .await;
    host.wait_for("consuming", |h| h.logs().contains("consuming"))
        .await;
    tmpfs.remount("ro");

    let outbox = tempfile::tempdir().unwrap();
    let good = outbox.path().join("good.json");
    std::fs::write(&good, b"{\"hostname\": \"resolver1\"}").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_kres-kafka"))
        .args(["send", "--server", &broker.server(), "--topic", TOPIC])
        .args(["--hostname", ME, "--wait", "--wait-timeout", "50s"])
        .arg(&good)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}\n{}",
        show(&out),
        host.logs()
    );
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("kres-kafka: resolver1: good.json: paused: files dir not writable: ")
            && stderr.contains("Read-only file system"),
        "{}",
        show(&out)
    );
    assert!(!stderr.contains("no answer"), "{stderr}");
    assert_eq!(metric(port, "kres_kafka_delivery_paused"), 1);
    assert!(!host.path("good.json").exists());

    tmpfs.remount("rw");
    host.wait_for("the file once writable", |h| {
        h.holds("good.json", b"{\"hostname\": \"resolver1\"}")
    })
    .await;
    host.wait_for("the gauge back at 0", |_| {
        metric(port, "kres_kafka_delivery_paused") == 0
    })
    .await;
    assert!(host.logs().contains("delivery resumed"), "{}", host.logs());
    assert!(host.stop(SIGTERM).await.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_daemon_on_the_same_files_dir_refuses_naming_the_first() {
    // 1. A daemon delivers to its files directory.
    // 2. A second, on the same files directory with another state directory, exits 2 naming
    //    the first's pid and the directory; it wrote nothing there.
    // 3. The first goes on delivering.
    let broker = Broker::start(1);
    let mut host = Host::new(&broker, ME, &[]);
    host.start();
    broker.publish_upstream(ME, "first.dat", b"first").await;
    host.wait_for("the first file", |h| h.holds("first.dat", b"first"))
        .await;
    let first = host.pid().expect("running");
    let before = entries(&host.files());

    let other = host.dir.path().join("other.yaml");
    std::fs::write(
        &other,
        format!(
            "kafka:\n  state-dir: {}\n",
            host.dir.path().join("other-state").display()
        ),
    )
    .unwrap();
    let second = host.run_once(&["--config", other.to_str().unwrap()]);
    assert_eq!(second.status.code(), Some(2), "{}", show(&second));
    let stderr = text(&second.stderr);
    assert!(
        stderr.contains(&format!("another kres-kafka (pid {first})"))
            && stderr.contains(&format!("kafka.files-dir {}", host.files().display()))
            && stderr.contains("one daemon per directory"),
        "{}",
        show(&second)
    );
    assert_eq!(entries(&host.files()), before, "the second wrote nothing");

    broker.publish_upstream(ME, "second.dat", b"second").await;
    host.wait_for("a file after the refused start", |h| {
        h.holds("second.dat", b"second")
    })
    .await;
    assert!(host.stop(SIGTERM).await.success());
}
