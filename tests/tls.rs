//! TLS and mutual TLS to the broker, through a real TLS handshake: a fresh PKI per test, a TLS
//! terminator in front of the mock broker, and the real `kres-kafka` binary (run and send).

mod common;

use common::daemon::{Host, SIGTERM, TOPIC};
use common::tls::{Pki, TlsBroker};
use std::path::Path;
use std::process::{Command, Output};

const ME: &str = "resolver1";

/// `kafka` lines for TLS with these files.
fn tls(ca: &Path, client: Option<(&Path, &Path)>) -> String {
    let mut lines = format!("security-protocol: ssl\nca-file: {}\n", ca.display());
    if let Some((cert, key)) = client {
        lines += &format!(
            "cert-file: {}\nkey-file: {}\n",
            cert.display(),
            key.display()
        );
    }
    lines
}

/// Publish `files` with the real `kres-kafka send`, configured by `kafka` lines.
fn send(dir: &Path, server: &str, kafka: &str, files: &[(&str, &[u8])]) -> Output {
    let config = dir.join("publisher.yaml");
    let kafka: String = kafka.lines().map(|l| format!("  {l}\n")).collect();
    std::fs::write(
        &config,
        format!("kafka:\n  server: {server}\n  topic: {TOPIC}\n{kafka}  librdkafka:\n    message.timeout.ms: 8000\n"),
    )
    .unwrap();
    let mut command = Command::new(env!("CARGO_BIN_EXE_kres-kafka"));
    command
        .args(["send", "--hostname", ME, "--config"])
        .arg(&config);
    for (name, content) in files {
        let path = dir.join(name);
        std::fs::write(&path, content).unwrap();
        command.arg(path);
    }
    command.output().unwrap()
}

fn assert_sent(out: &Output) {
    assert!(
        out.status.success(),
        "send failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A daemon whose TLS does not work: once its log says why (the handshake failed, so the
/// consumer got as far as trying), nothing has arrived.
async fn assert_nothing_processed(host: &mut Host, log_says: &[&str]) {
    host.wait_for(&format!("the log to say one of {log_says:?}"), |h| {
        let logs = h.logs();
        log_says.iter().any(|s| logs.contains(s))
    })
    .await;
    assert!(
        !host.path("zone.dat").exists(),
        "a message got through\n{}",
        host.logs()
    );
    let logs = host.logs();
    assert!(!logs.contains("message processed"), "{logs}");
    assert!(host.stop(SIGTERM).await.success());
}

fn scratch() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_tls_with_the_right_ca_delivers() {
    let dir = scratch();
    let pki = Pki::new(dir.path(), "ca");
    let (cert, key) = pki.issue("broker", &["127.0.0.1", "localhost"], false);
    let broker = TlsBroker::start(TOPIC, &cert, &key, None).await;
    let mut host = Host::with(&broker.server(), ME, &tls(&pki.ca(), None), &[]);
    host.start();
    assert_sent(&send(
        dir.path(),
        &broker.server(),
        &tls(&pki.ca(), None),
        &[("zone.dat", b"over tls")],
    ));
    host.wait_for("the file", |h| h.holds("zone.dat", b"over tls"))
        .await;
    assert!(host.stop(SIGTERM).await.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls_with_a_client_certificate_delivers() {
    let dir = scratch();
    let pki = Pki::new(dir.path(), "ca");
    let (cert, key) = pki.issue("broker", &["127.0.0.1"], false);
    let (client_cert, client_key) = pki.issue("resolver1", &["resolver1.example"], false);
    let broker = TlsBroker::start(TOPIC, &cert, &key, Some(&pki.ca())).await;
    let kafka = tls(&pki.ca(), Some((&client_cert, &client_key)));
    let mut host = Host::with(&broker.server(), ME, &kafka, &[]);
    host.start();
    // 8. `send` over mutual TLS delivers.
    assert_sent(&send(
        dir.path(),
        &broker.server(),
        &kafka,
        &[
            ("zone.dat", b"over mtls"),
            ("config.yaml", b"logging:\n  level: info\n"),
        ],
    ));
    host.wait_for("both files", |h| {
        h.holds("zone.dat", b"over mtls") && h.holds("config.yaml", b"logging:\n  level: info\n")
    })
    .await;
    assert!(host.stop(SIGTERM).await.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_ca_processes_nothing_and_says_verification_failed() {
    let dir = scratch();
    let pki = Pki::new(dir.path(), "ca");
    let other = Pki::new(dir.path(), "other-ca");
    let (cert, key) = pki.issue("broker", &["127.0.0.1"], false);
    let broker = TlsBroker::start(TOPIC, &cert, &key, None).await;
    let mut host = Host::with(&broker.server(), ME, &tls(&other.ca(), None), &[]);
    host.start();
    assert_sent(&send(
        dir.path(),
        &broker.server(),
        &tls(&pki.ca(), None),
        &[("zone.dat", b"x")],
    ));
    assert_nothing_processed(
        &mut host,
        &["certificate verify failed", "could not be verified"],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_name_mismatch_processes_nothing() {
    let dir = scratch();
    let pki = Pki::new(dir.path(), "ca");
    let (cert, key) = pki.issue("broker", &["kafka.other.example"], false);
    let (good_cert, good_key) = pki.issue("broker-good", &["127.0.0.1"], false);
    let broker = TlsBroker::start(TOPIC, &cert, &key, None).await;
    let mut host = Host::with(&broker.server(), ME, &tls(&pki.ca(), None), &[]);
    host.start();
    // The publisher trusts the name mismatch only because it verifies nothing but the CA.
    let publisher = format!("{}verify-hostname: false\n", tls(&pki.ca(), None));
    assert_sent(&send(
        dir.path(),
        &broker.server(),
        &publisher,
        &[("zone.dat", b"x")],
    ));
    drop((good_cert, good_key));
    assert_nothing_processed(
        &mut host,
        &[
            "certificate verify failed",
            "hostname mismatch",
            "IP address mismatch",
        ],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls_required_without_a_client_certificate_processes_nothing() {
    let dir = scratch();
    let pki = Pki::new(dir.path(), "ca");
    let (cert, key) = pki.issue("broker", &["127.0.0.1"], false);
    let (client_cert, client_key) = pki.issue("publisher", &["publisher.example"], false);
    let broker = TlsBroker::start(TOPIC, &cert, &key, Some(&pki.ca())).await;
    let mut host = Host::with(&broker.server(), ME, &tls(&pki.ca(), None), &[]);
    host.start();
    let publisher = tls(&pki.ca(), Some((&client_cert, &client_key)));
    assert_sent(&send(
        dir.path(),
        &broker.server(),
        &publisher,
        &[("zone.dat", b"x")],
    ));
    assert_nothing_processed(&mut host, &["SSL", "Disconnected", "handshake"]).await;
}

/// `kres-kafka run` refuses to start: exit status 2, standard error says `expected`.
fn assert_refused_at_start(kafka: &str, expected: &[&str]) {
    let dir = scratch();
    std::fs::create_dir(dir.path().join("files")).unwrap();
    let config = dir.path().join("config.yaml");
    let kafka: String = kafka.lines().map(|l| format!("  {l}\n")).collect();
    std::fs::write(
        &config,
        format!(
            "hostname: r1\nkafka:\n  enable: true\n  server: 127.0.0.1@1\n  files-dir: {}\n{kafka}",
            dir.path().join("files").display()
        ),
    )
    .unwrap();
    let out = common::kres_kafka_bounded(&["run".as_ref(), "--config".as_ref(), config.as_ref()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{kafka}: {stderr}");
    for e in expected {
        assert!(stderr.contains(e), "{kafka}: {stderr:?} lacks {e:?}");
    }
}

#[test]
fn expired_client_certificate_is_refused_at_start_up() {
    let dir = scratch();
    let pki = Pki::new(dir.path(), "ca");
    let (cert, key) = pki.issue("old-client", &["r1.example"], true);
    let kafka = tls(&pki.ca(), Some((&cert, &key)));
    assert_refused_at_start(
        &kafka,
        &[
            "kafka.cert-file: the certificate in",
            "old-client.pem expired on",
            "2020",
        ],
    );
}

#[test]
fn broken_key_or_certificate_files_are_refused_naming_the_file() {
    let dir = scratch();
    let pki = Pki::new(dir.path(), "ca");
    let (cert, key) = pki.issue("client", &["r1.example"], false);
    let (_, other_key) = pki.issue("other", &["other.example"], false);
    let garbage = dir.path().join("garbage.pem");
    std::fs::write(
        &garbage,
        "-----BEGIN CERTIFICATE-----\nnot base64 at all\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    let not_pem = dir.path().join("not-pem.key");
    std::fs::write(&not_pem, "just text").unwrap();
    let missing = dir.path().join("missing.pem");

    assert_refused_at_start(
        &tls(&pki.ca(), Some((&cert, &other_key))),
        &[
            "kafka.key-file: the key in",
            "other.key does not match the certificate in",
            "client.pem",
        ],
    );
    assert_refused_at_start(
        &tls(&missing, None),
        &["kafka.ca-file: cannot read", "missing.pem"],
    );
    assert_refused_at_start(
        &tls(&pki.ca(), Some((&missing, &key))),
        &["kafka.cert-file: cannot read", "missing.pem"],
    );
    assert_refused_at_start(
        &tls(&garbage, None),
        &[
            "kafka.ca-file:",
            "garbage.pem is not a valid PEM certificate",
        ],
    );
    assert_refused_at_start(
        &tls(&key, None),
        &["kafka.ca-file:", "client.key holds no PEM certificate"],
    );
    assert_refused_at_start(
        &tls(&pki.ca(), Some((&cert, &not_pem))),
        &[
            "kafka.key-file:",
            "not-pem.key is not a valid PEM private key",
        ],
    );
    assert_refused_at_start(
        &format!(
            "{}librdkafka:\n  enable.ssl.certificate.verification: false\n",
            tls(&pki.ca(), None)
        ),
        &["kafka.librdkafka.enable.ssl.certificate.verification is refused"],
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_against_a_wrong_ca_fails_naming_the_file_and_the_reason() {
    let dir = scratch();
    let pki = Pki::new(dir.path(), "ca");
    let other = Pki::new(dir.path(), "other-ca");
    let (cert, key) = pki.issue("broker", &["127.0.0.1"], false);
    let broker = TlsBroker::start(TOPIC, &cert, &key, None).await;
    let out = send(
        dir.path(),
        &broker.server(),
        &tls(&other.ca(), None),
        &[("zone.dat", b"x")],
    );
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    // The state topic is looked at first: nothing is published, and the reason is the
    // handshake's.
    assert!(
        stderr.contains("not delivered: zone.dat") || stderr.contains("nothing sent"),
        "{stderr}"
    );
    assert!(
        stderr.contains("certificate verify failed") || stderr.contains("could not be verified"),
        "{stderr}"
    );
}

#[test]
fn disabled_hostname_verification_warns_at_every_start() {
    let dir = scratch();
    let pki = Pki::new(dir.path(), "ca");
    std::fs::create_dir(dir.path().join("files")).unwrap();
    let config = dir.path().join("config.yaml");
    std::fs::write(
        &config,
        format!(
            "hostname: r1\nkafka:\n  enable: false\n  security-protocol: ssl\n  ca-file: {}\n  verify-hostname: false\n",
            pki.ca().display()
        ),
    )
    .unwrap();
    let out = common::kres_kafka_bounded(&["run".as_ref(), "--config".as_ref(), config.as_ref()]);
    assert!(out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("kafka.verify-hostname is false"),
        "{out:?}"
    );
}

#[test]
fn private_key_readable_by_others_gets_a_warning() {
    use std::os::unix::fs::PermissionsExt;
    let dir = scratch();
    let pki = Pki::new(dir.path(), "ca");
    let (cert, key) = pki.issue("client", &["r1.example"], false);
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let config = dir.path().join("config.yaml");
    let kafka: String = tls(&pki.ca(), Some((&cert, &key)))
        .lines()
        .map(|l| format!("  {l}\n"))
        .collect();
    std::fs::write(
        &config,
        format!("hostname: r1\nkafka:\n  enable: false\n{kafka}"),
    )
    .unwrap();
    let out = common::kres_kafka_bounded(&["run".as_ref(), "--config".as_ref(), config.as_ref()]);
    assert!(out.status.success(), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("client.key is readable by everyone (mode 644)"),
        "{stderr}"
    );
}
