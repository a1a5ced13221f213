//! The status topic end to end: three real daemons report what they did, `send --wait` waits
//! for the resolvers it expects and names each that did not take its files, and `status` shows
//! every resolver's latest state.

mod common;

use common::daemon::{Broker, Host, SIGTERM, TOPIC};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The status topic the daemons use by default: `<topic>-status`.
const STATUS_TOPIC: &str = "knot-resolver-status";

/// A broker with the topic and the status topic.
fn broker() -> Broker {
    let broker = Broker::start(1);
    broker.cluster.create_topic(STATUS_TOPIC, 1, 1).unwrap();
    broker
}

/// `kres-kafka ARGS` against `broker`'s topic.
fn kres_kafka(broker: &Broker, command: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kres-kafka"))
        .args([command, "--server", &broker.server(), "--topic", TOPIC])
        .args(args)
        .output()
        .unwrap()
}

/// Write `files` (name, content) into a fresh outbox under `dir`; their paths.
fn outbox(dir: &Path, files: &[(&str, &[u8])]) -> Vec<PathBuf> {
    let outbox = tempfile::tempdir_in(dir).unwrap().keep();
    files
        .iter()
        .map(|(name, content)| {
            let path = outbox.join(name);
            std::fs::write(&path, content).unwrap();
            path
        })
        .collect()
}

fn send_wait(broker: &Broker, args: &[&str], files: &[PathBuf]) -> (Output, String, String) {
    let mut all: Vec<&str> = ["--wait"].into_iter().chain(args.iter().copied()).collect();
    let paths: Vec<String> = files.iter().map(|p| p.display().to_string()).collect();
    all.extend(paths.iter().map(String::as_str));
    let out = kres_kafka(broker, "send", &all);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    (out, stdout, stderr)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_wait_succeeds_for_a_zone_and_names_a_resolver_that_rejected_the_configuration() {
    // 1. r1 and r2 in zone z1, r3 addressed by hostname; all report on the default status topic.
    // 2. An RPZ file and a configuration naming it, to z1, waiting for r1 and r2: both commit,
    //    reload, and report it; `send --wait` exits 0.
    // 3. A configuration with a typo'd key to r3: the guest rejects it; `send --wait` exits 1
    //    naming r3, the file and the reason.
    // 4. `status` shows all three resolvers; `--json` parses, with each resolver's records.
    let broker = broker();
    let mut hosts = [
        Host::with(&broker.server(), "r1", "zone-id: z1\n", &[]),
        Host::with(&broker.server(), "r2", "zone-id: z1\n", &[]),
        Host::with(&broker.server(), "r3", "", &[]),
    ];
    for host in &mut hosts {
        host.start();
    }
    let dir = hosts[0].dir.path().to_owned();

    let config = b"local-data:\n  rpz:\n    - file: files/block.rpz\n";
    let files = outbox(
        &dir,
        &[
            ("block.rpz", b"blocked.example CNAME .\n"),
            ("config.yaml", config),
        ],
    );
    let (out, stdout, stderr) = send_wait(
        &broker,
        &["--zone-id", "z1", "--expect", "r1", "--expect", "r2"],
        &files,
    );
    assert!(
        out.status.success(),
        "{stdout}\n{stderr}\n{}{}",
        hosts[0].logs(),
        hosts[1].logs()
    );
    for resolver in ["r1", "r2"] {
        assert!(
            stdout.contains(&format!(
                "{resolver}: config.yaml: committed, reload served"
            )),
            "{stdout}"
        );
    }
    for host in &hosts[..2] {
        assert!(host.holds("config.yaml", config));
    }

    let typo = outbox(&dir, &[("config.yaml", b"netwrok: {}\n")]);
    let (out, stdout, stderr) = send_wait(&broker, &["--hostname", "r3"], &typo);
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{stderr}");
    assert!(
        stderr.contains("r3: config.yaml: rejected (invalid-config)"),
        "{stderr}"
    );
    assert!(
        stderr.contains("netwrok"),
        "the reason names the key: {stderr}"
    );
    assert!(!hosts[2].path("config.yaml").exists());

    let out = kres_kafka(&broker, "status", &[]);
    assert!(out.status.success(), "{out:?}");
    let table = String::from_utf8_lossy(&out.stdout);
    for row in ["r1  ", "r2  ", "r3  "] {
        assert!(table.lines().any(|l| l.starts_with(row)), "{table}");
    }
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("r3") && l.contains("config.yaml") && l.contains("rejected")),
        "{table}"
    );
    let out = kres_kafka(&broker, "status", &["--json", "--file", "block.rpz"]);
    assert!(out.status.success(), "{out:?}");
    let records: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    let mut resolvers: Vec<&str> = records
        .iter()
        .map(|r| r["resolver"].as_str().unwrap())
        .collect();
    resolvers.sort();
    assert_eq!(resolvers, ["r1", "r2"], "{records:?}");
    assert!(records.iter().all(|r| r["outcome"] == "committed"
        && r["sha256"].as_str().is_some_and(|s| s.len() == 64)
        && r["transfer-id"].is_string()));
    let out = kres_kafka(&broker, "status", &["--json"]);
    let records: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    for resolver in ["r1", "r2", "r3"] {
        assert!(
            records
                .iter()
                .any(|r| r["resolver"] == resolver && r["file"].is_null()),
            "{resolver}'s own record: {records:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_wait_names_a_stopped_resolver_once_its_timeout_passes() {
    let broker = broker();
    let mut r1 = Host::with(&broker.server(), "r1", "zone-id: z1\n", &[]);
    let mut r2 = Host::with(&broker.server(), "r2", "zone-id: z1\n", &[]);
    r1.start();
    r2.start();
    r2.wait_for("r2 consuming", |h| h.logs().contains("consuming"))
        .await;
    assert!(r2.stop(SIGTERM).await.success());

    let files = outbox(
        r1.dir.path(),
        &[("block.rpz", b"blocked.example CNAME .\n")],
    );
    let (out, stdout, stderr) = send_wait(
        &broker,
        &[
            "--zone-id",
            "z1",
            "--expect",
            "r1",
            "--expect",
            "r2",
            "--wait-timeout",
            "5s",
        ],
        &files,
    );
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{stderr}");
    assert!(
        stderr.contains("r2: block.rpz: no answer within 5s"),
        "{stderr}"
    );
    assert!(!stderr.contains("r1:"), "r1 answered: {stderr}");
    assert!(
        stdout.contains("r1: block.rpz: committed, renew served"),
        "{stdout}\n{}",
        r1.logs()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_status_topic_the_resolver_may_not_write_never_holds_up_delivery() {
    // The resolver may not write the status topic (no ACL): every record fails, is logged and
    // counted; the files are delivered all the same and the daemon stops promptly.
    let broker = broker();
    broker
        .cluster
        .topic_error(
            STATUS_TOPIC,
            rdkafka::types::RDKafkaRespErr::RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED,
        )
        .unwrap();
    let port = common::daemon::free_port();
    let mut host = Host::with(
        &broker.server(),
        "r1",
        &format!("metrics-address: 127.0.0.1@{port}\n"),
        &[],
    );
    host.start();
    let content = b"blocked.example CNAME .\n";
    broker.publish_upstream("r1", "block.rpz", content).await;
    host.wait_for("the file, and the status failures counted", |h| {
        h.holds("block.rpz", content)
            && std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
            && common::daemon::scrape(port)
                .lines()
                .any(|l| l.starts_with("kres_kafka_status_failures_total") && !l.ends_with(" 0"))
    })
    .await;
    let stopping = std::time::Instant::now();
    assert!(host.stop(SIGTERM).await.success());
    assert!(
        stopping.elapsed() < std::time::Duration::from_secs(10),
        "the stop waited {:?}\n{}",
        stopping.elapsed(),
        host.logs()
    );
    assert!(
        host.logs().contains("a status record was not delivered"),
        "{}",
        host.logs()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_wait_names_a_reload_the_manager_refused_and_rolled_back() {
    // A configuration valid alone that the manager refuses once merged with the resolver's own
    // (both set `hostname`): the guest commits it, the reload does not take, kres-kafka rolls
    // it back and says so on the status topic.
    let broker = broker();
    let mut host = Host::with(&broker.server(), "r1", "", &[]);
    host.start();
    let files = outbox(
        host.dir.path(),
        &[(
            "config.yaml",
            b"logging:\n  level: debug\nhostname: elsewhere\n",
        )],
    );
    let (out, stdout, stderr) = send_wait(&broker, &["--hostname", "r1"], &files);
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{stderr}");
    assert!(
        stderr.contains("r1: config.yaml: reload refused and rolled back"),
        "{stderr}\n{}",
        host.logs()
    );
}

/// Wait until every one of `resolvers` has a record on the status topic (`status --json`).
async fn reported(broker: &Broker, resolvers: &[&str]) {
    let deadline = std::time::Instant::now() + common::daemon::PATIENCE;
    loop {
        let out = kres_kafka(broker, "status", &["--json"]);
        let records: Vec<serde_json::Value> =
            serde_json::from_slice(&out.stdout).unwrap_or_default();
        if resolvers
            .iter()
            .all(|name| records.iter().any(|r| r["resolver"] == *name))
        {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "not all of {resolvers:?} reported: {records:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

#[test]
fn send_to_a_broker_that_does_not_answer_fails_within_its_timeout_naming_the_broker() {
    let port = common::daemon::free_port();
    let dir = tempfile::tempdir().unwrap();
    let files = outbox(dir.path(), &[("block.rpz", b"blocked.example CNAME .\n")]);
    let broker = format!("127.0.0.1:{port}");
    let started = std::time::Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_kres-kafka"))
        .args(["send", "--server", &broker, "--timeout", "2s"])
        .args(["--hostname", "resolver1"])
        .args(&files)
        .output()
        .unwrap();
    let took = started.elapsed();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(took < std::time::Duration::from_secs(10), "took {took:?}");
    assert!(
        // The state topic is read first: the first request that goes unanswered.
        stderr.contains(&format!(
            "nothing sent: the broker {broker} did not answer within 2s"
        )),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_wait_names_a_hostname_that_never_reported() {
    let broker = broker();
    let mut host = Host::with(&broker.server(), "resolver1", "", &[]);
    host.start();
    reported(&broker, &["resolver1"]).await;
    let files = outbox(
        host.dir.path(),
        &[("block.rpz", b"blocked.example CNAME .\n")],
    );
    let (out, stdout, stderr) = send_wait(
        &broker,
        &["--hostname", "resolvr1", "--wait-timeout", "3s"],
        &files,
    );
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{stderr}");
    // Said at once, before the wait, and again as the answer.
    assert!(
        stderr.contains(
            "resolvr1 has never reported on the status topic \"knot-resolver-status\": is the \
             hostname right? (known: resolver1)"
        ),
        "{stderr}"
    );
    assert!(
        stderr.contains(
            "resolvr1: no status record from this resolver ever: is the hostname right? \
             (known: resolver1)"
        ),
        "{stderr}"
    );
    assert!(!stderr.contains("no answer within"), "{stderr}");
    assert!(!host.path("block.rpz").exists(), "{}", host.logs());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_wait_to_a_zone_waits_for_every_resolver_that_reported_for_it() {
    // 1. r1 and r2 in zone z1, r3 in z2; all report that they started.
    // 2. `send --zone-id z1 --wait`, no `--expect`: it names r1 and r2 as those it waits for,
    //    and exits 0 once both committed and had their renew served.
    // 3. `send --zone-id z9 --wait`: nobody ever reported for z9: refused before anything is
    //    published, telling the user to pass `--expect`.
    let broker = broker();
    let mut hosts = [
        Host::with(&broker.server(), "r1", "zone-id: z1\n", &[]),
        Host::with(&broker.server(), "r2", "zone-id: z1\n", &[]),
        Host::with(&broker.server(), "r3", "zone-id: z2\n", &[]),
    ];
    for host in &mut hosts {
        host.start();
    }
    reported(&broker, &["r1", "r2", "r3"]).await;
    let content = b"blocked.example CNAME .\n";
    let files = outbox(hosts[0].dir.path(), &[("block.rpz", content)]);
    let (out, stdout, stderr) = send_wait(&broker, &["--zone-id", "z1"], &files);
    assert!(
        out.status.success(),
        "{stdout}\n{stderr}\n{}{}",
        hosts[0].logs(),
        hosts[1].logs()
    );
    assert!(
        stdout.contains("waiting for r1, r2: the resolvers that have reported for zone z1"),
        "{stdout}"
    );
    for resolver in ["r1", "r2"] {
        assert!(
            stdout.contains(&format!("{resolver}: block.rpz: committed, renew served")),
            "{stdout}"
        );
    }
    assert!(!stdout.contains("r3"), "{stdout}");
    assert!(hosts[0].holds("block.rpz", content) && hosts[1].holds("block.rpz", content));

    let before = broker.records(1).len();
    let files = outbox(hosts[0].dir.path(), &[("nobody.rpz", content)]);
    let (out, stdout, stderr) = send_wait(&broker, &["--zone-id", "z9"], &files);
    assert_eq!(out.status.code(), Some(2), "{stdout}\n{stderr}");
    assert!(
        stderr.contains(
            "--wait with --zone-id z9: no resolver has reported for zone z9 on the status topic"
        ) && stderr.contains("pass --expect NAME"),
        "{stderr}"
    );
    assert_eq!(broker.records(1).len(), before, "something was published");
}
