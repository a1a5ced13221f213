//! What librdkafka's mock broker cannot show, against a real Kafka-protocol broker (nisshi,
//! `common::nisshi`; installed on the first run when missing, so this file has no other
//! tests to slow down meanwhile).
//!
//! SASL, with a broker that requires it: `send` (SCRAM-SHA-256) and the daemon
//! (SCRAM-SHA-512) log in with their password files, and `send --wait` reads the daemon's
//! status records back; a client without credentials, an unknown user and a wrong password
//! get nothing, and the daemon logs and counts the refusal and keeps retrying; a new password
//! written to the file is taken by the running daemon, which then delivers, without a restart,
//! also when the daemon started with a wrong one (the deployment mistake).
//! No broker here offers PLAIN or OAUTHBEARER: their settings and refusals are unit tests
//! (`host/src/kafka`).
//!
//! Partition growth (`partitions: addressed`): a topic grown from 3 to 6 partitions while the
//! daemon is down and from 6 to 12 while it runs loses nothing.

mod common;

use common::daemon::{Host, SIGTERM, TOPIC, free_port, metric};
use common::nisshi::Nisshi;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

const ME: &str = "resolver1";
const AUTH_ERRORS: &str =
    "kres_kafka_broker_errors_total{client=\"consumer\",kind=\"authentication\"}";

/// Write `password` to `path` as an operator would: a new file renamed over the old one,
/// readable by its owner only.
fn write_password(path: &Path, password: &str) {
    let new = path.with_extension("new");
    std::fs::write(&new, format!("{password}\n")).unwrap();
    std::fs::set_permissions(&new, std::fs::Permissions::from_mode(0o600)).unwrap();
    std::fs::rename(&new, path).unwrap();
}

/// A resolver host logging in as `user` with the password in its `password` file, with its
/// metrics port.
fn resolver(broker: &Nisshi, user: &str, password: &str) -> (Host, u16) {
    let port = free_port();
    let kafka = format!(
        "security-protocol: sasl_plaintext\nsasl-mechanism: SCRAM-SHA-512\n\
         sasl-username: {user}\nsasl-password-file: $HOST_DIR/password\n\
         metrics-address: 127.0.0.1@{port}\n"
    );
    let host = Host::with(&broker.server(), ME, &kafka, &[]);
    write_password(&host.dir.path().join("password"), password);
    (host, port)
}

/// The publisher's configuration in `dir`: SCRAM-SHA-256 as `publisher`, its password in
/// `dir/publisher-password`.
fn publisher(broker: &Nisshi, dir: &Path) -> PathBuf {
    write_password(&dir.join("publisher-password"), "publisher's secret");
    let config = dir.join("publisher.yaml");
    std::fs::write(
        &config,
        format!(
            "kafka:\n  server: {}\n  topic: {TOPIC}\n  security-protocol: sasl_plaintext\n  \
             sasl-mechanism: SCRAM-SHA-256\n  sasl-username: publisher\n  \
             sasl-password-file: {}\n",
            broker.server(),
            dir.join("publisher-password").display()
        ),
    )
    .unwrap();
    config
}

/// `kres-kafka send` of `name` to this resolver with the publisher's `config`, `args` added.
fn send(config: &Path, name: &str, content: &[u8], args: &[&str]) -> Command {
    let file = config.with_file_name(name);
    std::fs::write(&file, content).unwrap();
    let mut command = Command::new(env!("CARGO_BIN_EXE_kres-kafka"));
    command
        .args(["send", "--hostname", ME, "--log-level", "info", "--config"])
        .arg(config)
        .args(args)
        .arg(&file);
    command
}

/// Run `command` to its end; it must succeed.
fn succeeds(mut command: Command) {
    let out = command.output().unwrap();
    assert!(
        out.status.success(),
        "send: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scram_logins_deliver_wrong_ones_are_counted_and_a_new_password_needs_no_restart() {
    let mut broker = Nisshi::start();
    broker.create_topic(TOPIC, 1);
    broker.create_topic(&format!("{TOPIC}-status"), 1);
    broker.set_user(ME, "first password", 512);
    broker.set_user("publisher", "publisher's secret", 256);
    broker.restart(true);
    let publishing = tempfile::tempdir().unwrap();
    let config = publisher(&broker, publishing.path());

    // The resolver, and an intruder under the same hostname who has no account: had it
    // logged in, it would receive the same files.
    let (mut host, port) = resolver(&broker, ME, "first password");
    let (mut intruder, intruder_port) = resolver(&broker, "intruder", "a guess");
    // And one that does not try to log in at all, and one with a mechanism the broker does
    // not offer (nisshi has no PLAIN).
    let mut anonymous = Host::with(&broker.server(), ME, "", &[]);
    let plain_port = free_port();
    let mut plain = Host::with(
        &broker.server(),
        ME,
        &format!(
            "security-protocol: sasl_plaintext\nsasl-mechanism: PLAIN\nsasl-username: {ME}\n\
             sasl-password-file: $HOST_DIR/password\nmetrics-address: 127.0.0.1@{plain_port}\n"
        ),
        &[],
    );
    write_password(&plain.dir.path().join("password"), "first password");
    host.start();
    intruder.start();
    anonymous.start();
    plain.start();
    // `--wait` returns once the resolver's status record says it committed the file.
    succeeds(send(&config, "a.dat", b"first file\n", &["--wait"]));
    assert!(host.holds("a.dat", b"first file\n"), "{}", host.logs());
    assert_eq!(metric(port, AUTH_ERRORS), 0, "{}", host.logs());
    intruder
        .wait_for("the intruder's login refused and counted", |h| {
            metric(intruder_port, AUTH_ERRORS) >= 2 && h.logs().contains("SASL")
        })
        .await;
    assert!(
        !intruder.path("a.dat").exists(),
        "an unknown user received a file"
    );
    anonymous
        .wait_for("the anonymous client's requests refused", |h| {
            h.logs().contains("AllBrokersDown")
        })
        .await;
    assert!(
        !anonymous.path("a.dat").exists(),
        "a client without credentials received a file"
    );
    plain
        .wait_for("the unoffered mechanism's failures counted", |_| {
            scrape_errors(plain_port) >= 2
        })
        .await;
    assert!(
        !plain.path("a.dat").exists(),
        "a mechanism the broker does not offer delivered\n{}",
        plain.logs()
    );
    assert!(
        intruder.logs().contains(" WARN ") && intruder.logs().contains("authentication"),
        "the refusal is logged with librdkafka's reason\n{}",
        intruder.logs()
    );

    // The account's password changes on the broker. The daemon's next logins fail: counted,
    // logged, retried; what is published meanwhile waits.
    broker.restart(false);
    broker.set_user(ME, "second password", 512);
    broker.restart(true);
    let before = metric(port, AUTH_ERRORS);
    // A publisher waits for the resolver's answer meanwhile (its stderr in a file).
    let waiting_log = publishing.path().join("send-wait.log");
    let mut waiting = send(
        &config,
        "b.dat",
        b"second file\n",
        &["--wait", "--wait-timeout", "180s"],
    );
    let waiting_out = publishing.path().join("send-wait.out");
    let mut waiting = waiting
        .stdout(std::fs::File::create(&waiting_out).unwrap())
        .stderr(std::fs::File::create(&waiting_log).unwrap())
        .spawn()
        .unwrap();
    host.wait_for("logins with the old password refused, twice", |_| {
        metric(port, AUTH_ERRORS) >= before + 2
    })
    .await;
    let send_log = || std::fs::read_to_string(&waiting_log).unwrap_or_default();
    host.wait_for("the waiting send to publish", |_| {
        std::fs::read_to_string(&waiting_out).is_ok_and(|out| out.contains("delivered b.dat"))
    })
    .await;
    assert!(!host.path("b.dat").exists(), "delivered without a login");

    // The publisher's password changes too, while `send --wait` waits: its reader's next
    // logins fail until the new password is in its file.
    broker.restart(false);
    broker.set_user("publisher", "publisher's new secret", 256);
    broker.restart(true);
    host.wait_for("the waiting send's login refused", |_| {
        send_log().contains("Authentication")
    })
    .await;
    write_password(
        &publishing.path().join("publisher-password"),
        "publisher's new secret",
    );

    // The operator writes the resolver's new password: taken without a restart.
    let pid = host.pid();
    write_password(&host.dir.path().join("password"), "second password");
    host.wait_for("the second file, with the new password", |h| {
        h.holds("b.dat", b"second file\n")
    })
    .await;
    assert!(host.logs().contains("new SASL password"), "{}", host.logs());
    assert_eq!(host.pid(), pid, "the daemon was not restarted");
    // And the waiting publisher, with its own new password, reads the answer.
    let deadline = std::time::Instant::now() + common::daemon::PATIENCE;
    let status = loop {
        if let Some(status) = waiting.try_wait().unwrap() {
            break status;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "send --wait did not end\n{}",
            send_log()
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    assert!(status.success(), "send --wait: {}", send_log());
    assert!(send_log().contains("new SASL password"), "{}", send_log());
}

/// `kres-kafka send` of `name` to `hostname` on the broker at `server`, placed as `send`
/// places it (by the partition count the broker gives it now).
fn send_plain(server: &str, hostname: &str, name: &str, content: &[u8]) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join(name);
    std::fs::write(&file, content).unwrap();
    let mut command = Command::new(env!("CARGO_BIN_EXE_kres-kafka"));
    command
        .args(["send", "--server", server, "--topic", TOPIC])
        .args(["--hostname", hostname])
        .arg(&file);
    succeeds(command);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_topic_that_grows_from_3_to_6_then_12_partitions_loses_nothing() {
    use kres_kafka::kafka::partitioner::partition_of;
    // A resolver whose key moves to a new partition at each growth.
    let me = (0..)
        .map(|i| format!("resolver-{i}.example.net"))
        .find(|h| {
            let at = |n| partition_of(h.as_bytes(), n);
            at(6) != at(3) && at(12) != at(6)
        })
        .unwrap();
    let mut broker = common::nisshi::Nisshi::start();
    broker.create_topic(TOPIC, 3);
    broker.create_topic(&format!("{TOPIC}-status"), 1);
    let server = broker.server();
    let mut host = Host::with(
        &server,
        &me,
        "partitions: addressed\nmetadata-refresh: 1s\n",
        &[],
    );
    host.start();
    send_plain(&server, &me, "one.dat", b"one\n");
    host.wait_for("the first file", |h| h.holds("one.dat", b"one\n"))
        .await;

    // Grown while the daemon is down: a file still on the old partition, unread, and one on
    // the new partition. The restarted daemon reads both.
    assert!(host.stop(SIGTERM).await.success());
    send_plain(&server, &me, "two.dat", b"two\n");
    broker.grow(TOPIC, 6);
    send_plain(&server, &me, "three.dat", b"three\n");
    host.start();
    host.wait_for("the files on the old and the new partition", |h| {
        h.holds("two.dat", b"two\n") && h.holds("three.dat", b"three\n")
    })
    .await;
    host.wait_for("the old partition released once read", |h| {
        h.logs().contains("no longer addressed: released")
    })
    .await;

    // Grown while the daemon runs: a file published to the new partition before the daemon
    // looks again is read from the partition's start.
    broker.grow(TOPIC, 12);
    send_plain(&server, &me, "four.dat", b"four\n");
    host.wait_for("the file on the partition added while running", |h| {
        h.holds("four.dat", b"four\n")
    })
    .await;
    let logs = host.logs();
    assert!(
        logs.contains("the topic grew") && logs.contains("was=6 now=12"),
        "{logs}"
    );
    assert!(host.stop(SIGTERM).await.success());
}

/// Every error the consumer of the daemon with metrics on `port` counted, whatever its kind.
fn scrape_errors(port: u16) -> u64 {
    common::daemon::scrape(port)
        .lines()
        .filter(|l| l.starts_with("kres_kafka_broker_errors_total{client=\"consumer\""))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_daemon_started_with_a_wrong_password_delivers_once_its_file_is_fixed() {
    // 1. The broker knows the resolver's account; the daemon starts with a wrong password in
    //    its `sasl-password-file` (the deployment mistake): its logins are refused, logged
    //    and counted, again and again.
    // 2. A file published meanwhile is not delivered.
    // 3. The operator writes the right password into the file: the same daemon (same pid)
    //    logs in with it and delivers the file.
    let mut broker = Nisshi::start();
    broker.create_topic(TOPIC, 1);
    broker.create_topic(&format!("{TOPIC}-status"), 1);
    broker.set_user(ME, "the right password", 512);
    broker.set_user("publisher", "publisher's secret", 256);
    broker.restart(true);
    let publishing = tempfile::tempdir().unwrap();
    let config = publisher(&broker, publishing.path());

    let (mut host, port) = resolver(&broker, ME, "a wrong password");
    host.start();
    let pid = host.pid();
    host.wait_for("the wrong password's logins refused, twice", |h| {
        metric(port, AUTH_ERRORS) >= 2 && h.logs().contains("SASL")
    })
    .await;
    assert!(
        host.logs().contains(" WARN ") && host.logs().contains("authentication"),
        "the refusal is logged with librdkafka's reason\n{}",
        host.logs()
    );

    succeeds(send(&config, "a.dat", b"first file\n", &[]));
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    assert!(!host.path("a.dat").exists(), "delivered without a login");

    write_password(&host.dir.path().join("password"), "the right password");
    host.wait_for("the file, with the fixed password", |h| {
        h.holds("a.dat", b"first file\n")
    })
    .await;
    assert!(host.logs().contains("new SASL password"), "{}", host.logs());
    assert_eq!(host.pid(), pid, "the daemon was not restarted");
    // Logged in for good: the refusals stop. (The first file may have come from the state
    // topic, before the consumer's loop served the refusals queued before the fix: counted
    // once the next file came through the loop.)
    succeeds(send(&config, "b.dat", b"second file\n", &["--wait"]));
    assert!(host.holds("b.dat", b"second file\n"), "{}", host.logs());
    let refused = metric(port, AUTH_ERRORS);
    succeeds(send(&config, "c.dat", b"third file\n", &["--wait"]));
    assert!(host.holds("c.dat", b"third file\n"), "{}", host.logs());
    assert_eq!(metric(port, AUTH_ERRORS), refused, "{}", host.logs());
    assert!(host.stop(SIGTERM).await.success());
}
