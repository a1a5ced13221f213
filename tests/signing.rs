//! Signed transfers, tried as an attacker would: with write access to the topic and without
//! the publisher's private key. The real `kres-kafka run`, `send --sign` and `keygen`, against
//! the mock broker; every refusal is read from the daemon's metrics, and the file in place is
//! checked to be the last one a trusted key signed.

mod common;

use common::daemon::{Broker, Host, Record, SIGTERM, TOPIC, free_port, metric};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

const ME: &str = "resolver1";

fn kres_kafka(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kres-kafka"))
        .args(args)
        .output()
        .unwrap()
}

/// A new key from `keygen`: its file and the line resolvers trust it by.
fn keygen(dir: &Path, name: &str) -> (PathBuf, String) {
    let path = dir.join(name);
    let out = kres_kafka(&["keygen", "--out", path.to_str().unwrap()]);
    assert!(out.status.success(), "{out:?}");
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&path).unwrap().permissions());
    assert_eq!(
        mode & 0o777,
        0o600,
        "the private key is readable by its owner only"
    );
    let line = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    assert!(line.starts_with("ed25519:"), "{line}");
    (path, line)
}

/// `send` `file` (named `name`) to `to` (`--hostname X` or `--zone-id Z`), signed by `key`.
fn send(broker: &Broker, dir: &Path, name: &str, content: &[u8], to: &[&str], key: Option<&Path>) {
    let path = dir.join(name);
    std::fs::write(&path, content).unwrap();
    let server = broker.server();
    let mut command = Command::new(env!("CARGO_BIN_EXE_kres-kafka"));
    command
        .args(["send", "--server", &server, "--topic", TOPIC])
        .args(to);
    if let Some(key) = key {
        command.arg("--sign").arg(key);
    }
    let out = command.arg(&path).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `record` with header `name` set to `value` (replacing any it had).
fn with(mut record: Record, name: &str, value: &str) -> Record {
    record.headers.retain(|(n, _)| n != name);
    record.headers.push((name.into(), value.into()));
    record
}

/// The last record of the topic.
fn last(broker: &Broker) -> Record {
    broker.records(1).pop().expect("a record")
}

async fn publish(broker: &Broker, record: &Record) {
    let headers: Vec<(&str, &str)> = record
        .headers
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .collect();
    broker
        .publish(
            record.key.as_deref().unwrap_or(""),
            &headers,
            &record.value,
            Some(0),
        )
        .await;
    use rdkafka::producer::Producer as _;
    broker.producer.flush(Duration::from_secs(10)).unwrap();
}

fn sha256_hex(data: &[u8]) -> String {
    use sha2::Digest as _;
    kres_kafka_guest::durable::hex(&sha2::Sha256::digest(data))
}

fn rejections(port: u16, kind: &str) -> u64 {
    metric(
        port,
        &format!("kres_kafka_rejections_total{{kind=\"{kind}\"}}"),
    )
}

/// A resolver trusting `keys`, with metrics on a port of its own.
fn resolver(broker: &Broker, keys: &[&str]) -> (Host, u16) {
    let port = free_port();
    let kafka = format!(
        "trusted-keys: [{}]\nmetrics-address: 127.0.0.1@{port}\n",
        keys.join(", ")
    );
    (Host::with(&broker.server(), ME, &kafka, &[]), port)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_writer_without_the_key_changes_nothing_and_an_old_signed_file_cannot_come_back() {
    let broker = Broker::start(1);
    let keys = tempfile::tempdir().unwrap();
    let (key, line) = keygen(keys.path(), "publisher.pem");
    let (stranger, _) = keygen(keys.path(), "stranger.pem");
    let (mut host, port) = resolver(&broker, &[&line]);
    host.start();
    let out = keys.path();

    // The publisher's first version, signed: committed.
    send(
        &broker,
        out,
        "zone.dat",
        b"version 1\n",
        &["--hostname", ME],
        Some(&key),
    );
    host.wait_for("version 1", |h| h.holds("zone.dat", b"version 1\n"))
        .await;
    let v1 = last(&broker);
    send(
        &broker,
        out,
        "zone.dat",
        b"version 2\n",
        &["--hostname", ME],
        Some(&key),
    );
    host.wait_for("version 2", |h| h.holds("zone.dat", b"version 2\n"))
        .await;

    // 1. Unsigned, as any publisher without the key would send it.
    broker
        .publish_upstream(ME, "zone.dat", b"attacker 1\n")
        .await;
    host.wait_for("unsigned refused", |_| rejections(port, "unsigned") == 1)
        .await;
    // 2. Signed by a key the resolver does not trust.
    send(
        &broker,
        out,
        "zone.dat",
        b"attacker 2\n",
        &["--hostname", ME],
        Some(&stranger),
    );
    host.wait_for("unknown key refused", |_| {
        rejections(port, "unknown-key") == 1
    })
    .await;
    // 3. The trusted key's signature of version 2, over the attacker's content (with its
    //    true digest, so that the content check alone would pass).
    let forged = with(
        with(
            last_signed_by(&broker, &line),
            "sha256",
            &sha256_hex(b"attacker 3\n"),
        ),
        "transfer-id",
        "forged-3",
    );
    let forged = Record {
        value: b"attacker 3\n".to_vec(),
        ..forged
    };
    publish(&broker, &forged).await;
    host.wait_for("another digest refused", |_| {
        rejections(port, "bad-signature") == 1
    })
    .await;
    // The log names each kind as the metric does, so that grepping for its label finds it.
    let logs = host.logs();
    assert!(
        logs.contains("kind=unsigned") && logs.contains("kind=bad-signature"),
        "{logs}"
    );
    // 4. A file the publisher signed for another resolver, retargeted at this one.
    send(
        &broker,
        out,
        "zone.dat",
        b"for r2\n",
        &["--hostname", "resolver2"],
        Some(&key),
    );
    let retargeted = with(last(&broker), "hostname", ME);
    publish(&broker, &retargeted).await;
    host.wait_for("another recipient refused", |_| {
        rejections(port, "wrong-recipient") == 1
    })
    .await;
    // 5. Version 1 replayed, exactly as the publisher signed it.
    publish(&broker, &v1).await;
    host.wait_for("the old version refused", |_| {
        rejections(port, "stale") == 1
    })
    .await;

    assert!(host.holds("zone.dat", b"version 2\n"), "{}", host.logs());
    assert_eq!(
        metric(port, "kres_kafka_messages_total{outcome=\"committed\"}"),
        2,
        "only the publisher's two versions were committed\n{}",
        host.logs()
    );
    // Nothing the attacker sent left a chunk set or a staged file behind.
    let mut left: Vec<_> = std::fs::read_dir(host.files())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n != ".kres-kafka-state")
        .collect();
    left.sort();
    assert_eq!(left, ["zone.dat", "zone.dat.backup"]);
    // The same version re-sent with a new signature is fine (unchanged).
    send(
        &broker,
        out,
        "zone.dat",
        b"version 2\n",
        &["--hostname", ME],
        Some(&key),
    );
    host.wait_for("re-signed version 2 unchanged", |_| {
        metric(port, "kres_kafka_messages_total{outcome=\"unchanged\"}") == 1
    })
    .await;
    assert!(host.stop(SIGTERM).await.success());
}

/// The last record signed by the key of `line`.
fn last_signed_by(broker: &Broker, line: &str) -> Record {
    use base64::Engine as _;
    let public = base64::engine::general_purpose::STANDARD
        .decode(line.strip_prefix("ed25519:").unwrap())
        .unwrap();
    let id = kres_kafka_guest::signature::key_id(&public.try_into().unwrap());
    broker
        .records(1)
        .into_iter()
        .rev()
        .find(|r| r.header("signature").is_some_and(|s| s.contains(&id)))
        .expect("a record signed by the key")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_rotate_without_a_flag_day_and_openssl_and_python_keys_work() {
    let broker = Broker::start(1);
    let keys = tempfile::tempdir().unwrap();
    let out = keys.path();
    let (old, old_line) = keygen(out, "old.pem");
    // The new key made by openssl, as an operator may.
    let new = out.join("new.pem");
    let status = Command::new("openssl")
        .args(["genpkey", "-algorithm", "ed25519", "-out"])
        .arg(&new)
        .status()
        .unwrap();
    assert!(status.success());
    let new_line = public_line_of(&new);

    // Both trusted: either signs.
    let (mut host, port) = resolver(&broker, &[&old_line, &new_line]);
    host.start();
    send(
        &broker,
        out,
        "a.dat",
        b"by the old key\n",
        &["--hostname", ME],
        Some(&old),
    );
    send(
        &broker,
        out,
        "b.dat",
        b"by the new key\n",
        &["--hostname", ME],
        Some(&new),
    );
    host.wait_for("both files", |h| {
        h.holds("a.dat", b"by the old key\n") && h.holds("b.dat", b"by the new key\n")
    })
    .await;
    assert!(host.stop(SIGTERM).await.success());

    // The old key retired: its new transfers are refused, the new key's accepted.
    let kafka = host.dir.path().join("kres-kafka.yaml");
    let config = std::fs::read_to_string(&kafka).unwrap();
    std::fs::write(&kafka, config.replace(&format!("{old_line}, "), "")).unwrap();
    host.start();
    send(
        &broker,
        out,
        "a.dat",
        b"old key again\n",
        &["--hostname", ME],
        Some(&old),
    );
    host.wait_for("the retired key refused", |_| {
        rejections(port, "unknown-key") == 1
    })
    .await;
    assert!(host.holds("a.dat", b"by the old key\n"));

    // A transfer signed by a few lines of Python (`cryptography`), from the documented
    // format alone, keyed by zone.
    let content = b"signed in python\n";
    let headers = python_signature(&new, "p.dat", content, "zone:z1");
    let mut record = Record {
        partition: 0,
        key: Some("z1".into()),
        headers: vec![("file-name".into(), "p.dat".into())],
        value: content.to_vec(),
    };
    for (n, v) in headers {
        record = with(record, &n, &v);
    }
    assert!(host.stop(SIGTERM).await.success());
    let config = std::fs::read_to_string(&kafka).unwrap();
    std::fs::write(&kafka, format!("{config}  zone-id: z1\n")).unwrap();
    host.start();
    publish(&broker, &record).await;
    host.wait_for("the Python-signed file", |h| h.holds("p.dat", content))
        .await;
    assert!(host.stop(SIGTERM).await.success());
}

/// The `trusted-keys` line of a PEM private key, through `openssl pkey -pubout`.
fn public_line_of(key: &Path) -> String {
    use base64::Engine as _;
    let out = Command::new("openssl")
        .args(["pkey", "-pubout", "-outform", "DER", "-in"])
        .arg(key)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    // The SubjectPublicKeyInfo of an Ed25519 key ends with the 32-byte key.
    let der = out.stdout;
    format!(
        "ed25519:{}",
        base64::engine::general_purpose::STANDARD.encode(&der[der.len() - 32..])
    )
}

/// `sha256`, `signed-at` and `signature` headers made by Python's `cryptography`, from the
/// README's description of the format.
fn python_signature(
    key: &Path,
    name: &str,
    content: &[u8],
    recipient: &str,
) -> Vec<(String, String)> {
    const SCRIPT: &str = r#"
import base64, hashlib, sys, time
from cryptography.hazmat.primitives import serialization
key = serialization.load_pem_private_key(open(sys.argv[1], "rb").read(), password=None)
name, recipient = sys.argv[2], sys.argv[4]
sha256 = hashlib.sha256(open(sys.argv[3], "rb").read()).hexdigest()
signed_at = str(int(time.time() * 1000))
text = f"kres-kafka-signature-v1\n{name}\n{sha256}\n{recipient}\n{signed_at}\n"
public = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
key_id = hashlib.sha256(public).hexdigest()[:16]
signature = base64.b64encode(key.sign(text.encode())).decode()
print(f"sha256={sha256}\nsigned-at={signed_at}\nsignature=ed25519:{key_id}:{signature}")
"#;
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), content).unwrap();
    let out = Command::new("python3")
        .args(["-c", SCRIPT])
        .arg(key)
        .arg(name)
        .arg(file.path())
        .arg(recipient)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| {
            let (n, v) = l.split_once('=').unwrap();
            (n.to_owned(), v.to_owned())
        })
        .collect()
}

#[test]
fn keygen_keys_are_read_by_openssl_and_python_and_any_key_file_gives_its_line() {
    // 1. A keygen key: `openssl pkey` (OpenSSL 3.0) reads it and derives the same public key.
    // 2. Python's `cryptography` loads it, signs with it; the signature verifies under the
    //    line keygen printed.
    // 3. `keygen --public` gives that line from the key, and from openssl's public key.
    // 4. An `openssl genpkey` key and its public key: `--public` gives openssl's own public key.
    // 5. Anything else: exit 2, naming the file and what it holds.
    let dir = tempfile::tempdir().unwrap();
    let (key, line) = keygen(dir.path(), "publisher.pem");
    let pem = std::fs::read_to_string(&key).unwrap();
    assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----\n"), "{pem}");
    let public_pem = dir.path().join("publisher.pub.pem");
    let out = Command::new("openssl")
        .args(["pkey", "-pubout", "-in"])
        .arg(&key)
        .arg("-out")
        .arg(&public_pem)
        .output()
        .unwrap();
    assert!(out.status.success(), "openssl pkey: {out:?}");
    assert_eq!(public_line_of(&key), line);

    const SCRIPT: &str = r#"
import base64, sys
from cryptography.hazmat.primitives import serialization
key = serialization.load_pem_private_key(open(sys.argv[1], "rb").read(), password=None)
public = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
print("ed25519:" + base64.b64encode(public).decode())
print(base64.b64encode(key.sign(b"signed in python")).decode())
"#;
    let out = Command::new("python3")
        .args(["-c", SCRIPT])
        .arg(&key)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "python cryptography: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    let (python_line, signature) = stdout.trim().split_once('\n').unwrap();
    assert_eq!(python_line, line);
    {
        use base64::Engine as _;
        use ed25519_dalek::Verifier as _;
        let b64 = base64::engine::general_purpose::STANDARD;
        let public: [u8; 32] = b64
            .decode(line.strip_prefix("ed25519:").unwrap())
            .unwrap()
            .try_into()
            .unwrap();
        let signature: [u8; 64] = b64.decode(signature).unwrap().try_into().unwrap();
        ed25519_dalek::VerifyingKey::from_bytes(&public)
            .unwrap()
            .verify(
                b"signed in python",
                &ed25519_dalek::Signature::from_bytes(&signature),
            )
            .expect("Python's signature verifies under keygen's line");
    }

    let public = |file: &Path| {
        let out = kres_kafka(&["keygen", "--public", file.to_str().unwrap()]);
        (
            out.status.code(),
            String::from_utf8(out.stdout).unwrap().trim().to_owned(),
            String::from_utf8(out.stderr).unwrap(),
        )
    };
    assert_eq!(public(&key), (Some(0), line.clone(), String::new()));
    assert_eq!(public(&public_pem), (Some(0), line.clone(), String::new()));

    let theirs = dir.path().join("openssl.pem");
    let theirs_public = dir.path().join("openssl.pub.pem");
    for args in [
        vec![
            "genpkey",
            "-algorithm",
            "ed25519",
            "-out",
            theirs.to_str().unwrap(),
        ],
        vec![
            "pkey",
            "-pubout",
            "-in",
            theirs.to_str().unwrap(),
            "-out",
            theirs_public.to_str().unwrap(),
        ],
    ] {
        assert!(
            Command::new("openssl")
                .args(&args)
                .status()
                .unwrap()
                .success()
        );
    }
    let expected = public_line_of(&theirs);
    assert_eq!(public(&theirs).1, expected);
    assert_eq!(public(&theirs_public).1, expected);

    let x25519 = dir.path().join("x25519.pem");
    assert!(
        Command::new("openssl")
            .args(["genpkey", "-algorithm", "x25519", "-out"])
            .arg(&x25519)
            .status()
            .unwrap()
            .success()
    );
    let (code, stdout, stderr) = public(&x25519);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stdout.is_empty(), "{stdout}");
    assert!(
        stderr.contains(&format!(
            "{} holds a private key that is not Ed25519 (X25519)",
            x25519.display()
        )),
        "{stderr}"
    );
}
