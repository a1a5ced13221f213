//! The state topic as `kres-kafka send` writes it: each file's last version per recipient, in
//! the recipient's partition, its leftovers deleted, a withdrawn file marked; read back from
//! the broker with a plain consumer, so that the expectations rest on what is on the topic,
//! not on kres-kafka's own reading of it.
//!
//! On librdkafka's mock cluster, which serves neither CreateTopics nor DescribeConfigs: `send`
//! warns and goes on, the broker creating the topic itself. On nisshi, a real broker: the topic
//! is created compacted, and a topic that does not compact is refused.

mod common;

use common::daemon::{Broker, Record};
use kres_kafka::kafka::partitioner::partition_of;
use kres_kafka_guest::state::{Key, Recipient};
use rdkafka::ClientConfig;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, Instant};

const STATE: &str = "knot-resolver-state";
const HOST: &str = "resolver1";

/// `kres-kafka send --server SERVER ARGS...`; its output, after checking it succeeded.
fn send(server: &str, args: &[&str]) -> Output {
    common::daemon::send_ok(server, args)
}

/// A file of `len` bytes named `name` in `dir`.
fn file(dir: &Path, name: &str, seed: u8, len: usize) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, common::daemon::content(seed, len)).unwrap();
    path
}

/// A state record: a tombstone has no value.
#[derive(Debug, Clone)]
struct StateRecord {
    partition: i32,
    key: Key,
    headers: Vec<(String, String)>,
    value: Option<Vec<u8>>,
}

impl StateRecord {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Every record of the state topic, partition by partition, in offset order.
fn state_records(bootstrap: &str) -> Vec<StateRecord> {
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    let records = common::daemon::read_topic(bootstrap, STATE);
    assert!(!records.is_empty(), "the state topic holds records");
    records
        .into_iter()
        .map(|(partition, _, key, headers, value)| StateRecord {
            partition,
            key: Key::parse(&key.expect("a key")).expect("a state key"),
            headers: headers.iter().map(|(n, v)| (n.clone(), text(v))).collect(),
            value,
        })
        .collect()
}

/// The live records of `file` for `recipient`: the last record of each key, tombstones
/// dropped, by chunk index.
fn live(records: &[StateRecord], recipient: &Recipient, file: &str) -> BTreeMap<u32, StateRecord> {
    let mut live = BTreeMap::new();
    for r in records
        .iter()
        .filter(|r| r.key.recipient == *recipient && r.key.file == file)
    {
        match r.value {
            Some(_) => live.insert(r.key.index, r.clone()),
            None => live.remove(&r.key.index),
        };
    }
    live
}

/// The stream's records of `file`.
fn stream_of(broker: &Broker, partitions: i32, file: &str) -> Vec<Record> {
    broker
        .records(partitions)
        .into_iter()
        .filter(|r| r.header("file-name") == Some(file))
        .collect()
}

#[test]
fn a_shorter_version_leaves_only_its_own_chunks_live_all_in_the_recipients_partition() {
    // 1. A state topic of 6 partitions, the stream of 4: the state's partition is its own.
    // 2. v1 of block.rpz in 5 chunks, then v2 in 2, to one resolver.
    // 3. Live: #1 and #2 of v2, headers as on the stream; tombstones for #3..#5; every record
    //    of the recipient in partition_of(hostname, 6).
    let broker = Broker::start(4);
    broker.cluster.create_topic(STATE, 6, 1).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let server = broker.server();
    let v1 = file(dir.path(), "block.rpz", 1, 500);
    send(
        &server,
        &[
            "--hostname",
            HOST,
            "--chunk-size",
            "100",
            v1.to_str().unwrap(),
        ],
    );
    let v2 = file(dir.path(), "block.rpz", 2, 150);
    send(
        &server,
        &[
            "--hostname",
            HOST,
            "--chunk-size",
            "100",
            v2.to_str().unwrap(),
        ],
    );

    let stream = stream_of(&broker, 4, "block.rpz");
    assert_eq!(stream.len(), 7);
    let v2_id = stream[6].header("transfer-id").unwrap();
    let records = state_records(&broker.cluster.bootstrap_servers());
    let me = Recipient::Host(HOST.into());
    let live = live(&records, &me, "block.rpz");
    assert_eq!(live.keys().copied().collect::<Vec<_>>(), [1, 2]);
    for (index, record) in &live {
        assert_eq!(record.header("transfer-id"), Some(v2_id));
        let on_stream = &stream[4 + *index as usize];
        assert_eq!(record.headers, on_stream.headers, "chunk {index}");
        assert_eq!(record.value.as_deref(), Some(&on_stream.value[..]));
    }
    let tombstones: Vec<u32> = records
        .iter()
        .filter(|r| r.value.is_none())
        .map(|r| r.key.index)
        .collect();
    assert_eq!(tombstones, [3, 4, 5]);
    let partition = partition_of(HOST.as_bytes(), 6);
    assert!(
        records.iter().all(|r| r.partition == partition),
        "all in partition {partition}: {:?}",
        records.iter().map(|r| r.partition).collect::<Vec<_>>()
    );
    assert_eq!(records.len(), 5 + 2 + 3, "v1, v2, the tombstones");
}

#[test]
fn a_zones_state_names_its_zone_and_a_removal_leaves_only_its_marker() {
    // 1. No state topic: `send` cannot create it on the mock broker, warns, and the broker
    //    creates it on its own.
    // 2. config.json and a 3-chunk zone.rpz to zone dc1: their state records carry zone-id.
    // 3. `--remove zone.rpz`: in the state only `#0` is live for it, an empty value with
    //    file-name, remove and zone-id; on the stream one removal message, keyed dc1, empty.
    let broker = Broker::start(4);
    let dir = tempfile::tempdir().unwrap();
    let server = broker.server();
    let rpz = file(dir.path(), "zone.rpz", 3, 250);
    let config = dir.path().join("config.json");
    std::fs::write(&config, br#"{"dns64": false}"#).unwrap();
    let started = Instant::now();
    let out = send(
        &server,
        &[
            "--zone-id",
            "dc1",
            "--chunk-size",
            "100",
            rpz.to_str().unwrap(),
            config.to_str().unwrap(),
        ],
    );
    eprintln!("the first send took {:?}", started.elapsed());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("cannot create topics"), "{stderr}");

    let zone = Recipient::Zone("dc1".into());
    let records = state_records(&broker.cluster.bootstrap_servers());
    assert_eq!(records.len(), 4);
    for r in &records {
        assert_eq!(r.key.recipient, zone);
        assert_eq!(r.header("zone-id"), Some("dc1"), "{r:?}");
        assert_eq!(r.header("hostname"), None);
    }
    assert_eq!(live(&records, &zone, "zone.rpz").len(), 3);

    let out = send(&server, &["--zone-id", "dc1", "--remove", "zone.rpz"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("cannot check that the state topic"),
        "the topic exists now, and its policy cannot be read: {stderr}"
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "removed zone.rpz from zone dc1"
    );
    let records = state_records(&broker.cluster.bootstrap_servers());
    let left = live(&records, &zone, "zone.rpz");
    assert_eq!(left.keys().copied().collect::<Vec<_>>(), [0]);
    let marker = &left[&0];
    assert_eq!(marker.value.as_deref(), Some(&b""[..]), "empty, not null");
    assert_eq!(marker.header("file-name"), Some("zone.rpz"));
    assert_eq!(marker.header("remove"), Some("1"));
    assert_eq!(marker.header("zone-id"), Some("dc1"));
    assert_eq!(marker.header("sha256"), None);
    assert_eq!(
        live(&records, &zone, "config.json").len(),
        1,
        "the other file stays"
    );
    let removals: Vec<Record> = stream_of(&broker, 4, "zone.rpz")
        .into_iter()
        .filter(|r| r.header("remove").is_some())
        .collect();
    assert_eq!(removals.len(), 1);
    assert_eq!(removals[0].key.as_deref(), Some("dc1"));
    assert!(removals[0].value.is_empty());
    assert_eq!(removals[0].header("remove"), Some("1"));
    assert_eq!(
        removals[0].header("transfer-id"),
        marker.header("transfer-id")
    );

    // 4. The file sent again: the marker goes, the new version is live.
    send(
        &server,
        &[
            "--zone-id",
            "dc1",
            "--chunk-size",
            "100",
            rpz.to_str().unwrap(),
        ],
    );
    let records = state_records(&broker.cluster.bootstrap_servers());
    let back = live(&records, &zone, "zone.rpz");
    assert_eq!(back.keys().copied().collect::<Vec<_>>(), [1, 2, 3]);
}

#[test]
fn signed_sends_sign_the_state_alike_and_a_signed_removal_verifies_over_its_text() {
    use base64::Engine as _;
    use ed25519_dalek::Verifier as _;
    let broker = Broker::start(2);
    let dir = tempfile::tempdir().unwrap();
    let server = broker.server();
    let key = dir.path().join("publisher.pem");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_kres-kafka"))
        .args(["keygen", "--out", key.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let line = String::from_utf8(out.stdout).unwrap();
    let public = base64::engine::general_purpose::STANDARD
        .decode(line.trim().strip_prefix("ed25519:").unwrap())
        .unwrap();
    let public = ed25519_dalek::VerifyingKey::from_bytes(&public.try_into().unwrap()).unwrap();

    let rpz = file(dir.path(), "block.rpz", 4, 300);
    let signed = ["--hostname", HOST, "--sign", key.to_str().unwrap()];
    send(
        &server,
        &[&signed[..], &["--chunk-size", "100", rpz.to_str().unwrap()]].concat(),
    );
    let me = Recipient::Host(HOST.into());
    let records = state_records(&broker.cluster.bootstrap_servers());
    let stream = stream_of(&broker, 2, "block.rpz");
    for (index, record) in live(&records, &me, "block.rpz") {
        assert!(record.header("signature").is_some());
        assert_eq!(
            record.headers,
            stream[index as usize - 1].headers,
            "chunk {index}: the stream's headers, signature included"
        );
    }

    send(&server, &[&signed[..], &["--remove", "block.rpz"]].concat());
    let removal = stream_of(&broker, 2, "block.rpz")
        .into_iter()
        .find(|r| r.header("remove").is_some())
        .unwrap();
    let at: u64 = removal.header("signed-at").unwrap().parse().unwrap();
    let signature = removal.header("signature").unwrap();
    let sig = signature.rsplit(':').next().unwrap();
    let sig = base64::engine::general_purpose::STANDARD
        .decode(sig)
        .unwrap();
    let sig = ed25519_dalek::Signature::from_slice(&sig).unwrap();
    let text = kres_kafka_guest::signature::removal_text(
        "block.rpz",
        &kres_kafka_guest::signature::Recipient::Host(HOST.into()),
        at,
    );
    public
        .verify(text.as_bytes(), &sig)
        .expect("the removal's signature verifies");
    let records = state_records(&broker.cluster.bootstrap_servers());
    let marker = &live(&records, &me, "block.rpz")[&0];
    assert_eq!(marker.header("signature"), Some(signature));
    assert_eq!(marker.header("signed-at"), removal.header("signed-at"));
    assert_eq!(marker.header("hostname"), Some(HOST));
}

/// The `cleanup.policy` of `topic` on `bootstrap`, as the broker describes it.
fn cleanup_policy(bootstrap: &str, topic: &str) -> String {
    use rdkafka::admin::{AdminClient, AdminOptions, ResourceSpecifier};
    use rdkafka::client::DefaultClientContext;
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let described = runtime
        .block_on(admin.describe_configs(
            [&ResourceSpecifier::Topic(topic)],
            &AdminOptions::new().request_timeout(Some(Duration::from_secs(10))),
        ))
        .expect("the broker describes configs");
    let resource = described
        .into_iter()
        .next()
        .unwrap()
        .expect("the topic is described");
    resource
        .get("cleanup.policy")
        .and_then(|e| e.value.clone())
        .unwrap_or_default()
}

/// On a real Kafka-protocol broker (nisshi), which serves CreateTopics and DescribeConfigs as
/// Kafka does: a missing state topic is created compacted; one that does not compact makes
/// `send` refuse, naming the setting, and publish nothing.
#[test]
fn on_a_real_broker_send_creates_the_state_topic_compacted_and_refuses_one_that_is_not() {
    let broker = common::nisshi::Nisshi::start();
    let out_dir = tempfile::tempdir().unwrap();
    broker.create_topic("knot-resolver", 3);
    let a = file(out_dir.path(), "a.dat", 1, 1_000);
    let out = send(&broker.server(), &["--hostname", HOST, a.to_str().unwrap()]);
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(said.contains("created the state topic"), "{said}");
    assert_eq!(cleanup_policy(&broker.bootstrap(), STATE), "compact");

    // A state topic made by hand, without compaction.
    broker.create_topic("fleet", 3);
    broker.create_topic("fleet-state", 3);
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_kres-kafka"))
        .args([
            "send",
            "--server",
            &broker.server(),
            "--topic",
            "fleet",
            "--timeout",
            "10s",
        ])
        .args(["--hostname", HOST, a.to_str().unwrap()])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("fleet-state") && stderr.contains("cleanup.policy=compact"),
        "{stderr}"
    );
}
