//! A resolver host in a test: an in-process Kafka broker (librdkafka's mock cluster), a stand-in
//! manager on a unix socket, and the real `kres-kafka run` binary as a child process.

use kres_kafka::demo::standin::{Recorder, StandIn};
use rdkafka::ClientConfig;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use std::fs::File;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

pub const TOPIC: &str = "knot-resolver";

/// How long any wait in these tests may take before it fails with the daemon's log.
pub const PATIENCE: Duration = Duration::from_secs(60);

pub struct Broker {
    pub cluster: MockCluster<'static, rdkafka::producer::DefaultProducerContext>,
    pub producer: FutureProducer,
}

impl Broker {
    pub fn start(partitions: i32) -> Broker {
        Broker::on(MockCluster::new(1).unwrap(), partitions)
    }

    /// A broker on `cluster`, with the topic and a producer.
    fn on(
        cluster: MockCluster<'static, rdkafka::producer::DefaultProducerContext>,
        partitions: i32,
    ) -> Broker {
        cluster.create_topic(TOPIC, partitions, 1).unwrap();
        let producer = ClientConfig::new()
            .set("bootstrap.servers", cluster.bootstrap_servers())
            .set("linger.ms", "1")
            // Upstream's publisher is kafka-python, which places a keyed record as the Java
            // client does.
            .set("partitioner", "murmur2_random")
            .create()
            .unwrap();
        Broker { cluster, producer }
    }

    /// The broker as the `kafka.server` config value.
    pub fn server(&self) -> String {
        self.cluster
            .bootstrap_servers()
            .split(',')
            .next()
            .unwrap()
            .replacen(':', "@", 1)
    }

    /// The offsets committed to `group` for the first `partitions` partitions (-1: none).
    pub fn committed(&self, group: &str, partitions: i32) -> Vec<i64> {
        use rdkafka::consumer::{BaseConsumer, Consumer as _};
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", self.cluster.bootstrap_servers())
            .set("group.id", group)
            .create()
            .unwrap();
        let mut list = rdkafka::TopicPartitionList::new();
        for p in 0..partitions {
            list.add_partition(TOPIC, p);
        }
        let list = consumer
            .committed_offsets(list, Duration::from_secs(10))
            .unwrap();
        list.elements()
            .iter()
            .map(|e| match e.offset() {
                rdkafka::Offset::Offset(o) => o,
                _ => -1,
            })
            .collect()
    }

    /// Publish one message with these headers, as any publisher would.
    pub async fn publish(
        &self,
        key: &str,
        headers: &[(&str, &str)],
        value: &[u8],
        partition: Option<i32>,
    ) {
        let mut owned = OwnedHeaders::new();
        for (k, v) in headers {
            owned = owned.insert(Header {
                key: k,
                value: Some(*v),
            });
        }
        let mut record = FutureRecord::to(TOPIC)
            .key(key)
            .payload(value)
            .headers(owned);
        if let Some(p) = partition {
            record = record.partition(p);
        }
        self.producer
            .send(record, Duration::from_secs(10))
            .await
            .expect("delivered to the mock broker");
    }

    /// Publish a file as the upstream publisher does: 512 KiB chunks numbered from 1, no
    /// checksum, no transfer id, keyed by file name.
    pub async fn publish_upstream(&self, host: &str, name: &str, content: &[u8]) {
        const CHUNK: usize = 512 * 1024;
        let chunks: Vec<&[u8]> = if content.is_empty() {
            vec![content]
        } else {
            content.chunks(CHUNK).collect()
        };
        let total = chunks.len().to_string();
        for (i, chunk) in chunks.iter().enumerate() {
            let index = (i + 1).to_string();
            self.publish(
                name,
                &[
                    ("hostname", host),
                    ("file-name", name),
                    ("total-chunks", &total),
                    ("chunk-index", &index),
                ],
                chunk,
                None,
            )
            .await;
        }
        self.producer.flush(Duration::from_secs(10)).unwrap();
    }
}

impl Broker {
    /// Publish a file as upstream's newest publisher does: keyed by the zone-id, its own
    /// hostname in `hostname`, a `zone-id` header it never reads back; configuration files
    /// whole, other files in 512 KiB chunks numbered from 1; no checksum, no transfer id.
    pub async fn publish_to_zone(&self, zone: &str, publisher: &str, name: &str, content: &[u8]) {
        const CHUNK: usize = 512 * 1024;
        let config = [".json", ".yaml", ".yml"].iter().any(|e| name.ends_with(e));
        let base = [
            ("hostname", publisher),
            ("zone-id", zone),
            ("file-name", name),
        ];
        if config {
            self.publish(zone, &base, content, None).await;
        } else {
            let chunks: Vec<&[u8]> = content.chunks(CHUNK).collect();
            let total = chunks.len().to_string();
            for (i, chunk) in chunks.iter().enumerate() {
                let index = (i + 1).to_string();
                let mut headers = base.to_vec();
                headers.extend([("total-chunks", total.as_str()), ("chunk-index", &index)]);
                self.publish(zone, &headers, chunk, None).await;
            }
        }
        self.producer.flush(Duration::from_secs(10)).unwrap();
    }
}

/// A record as it is on the topic.
#[derive(Clone, Debug)]
pub struct Record {
    pub partition: i32,
    pub key: Option<String>,
    pub headers: Vec<(String, String)>,
    pub value: Vec<u8>,
}

impl Record {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// `kres-kafka send --server SERVER ARGS...`, giving the brokers 20 s; its output, after
/// checking that it succeeded.
pub fn send_ok(server: &str, args: &[&str]) -> std::process::Output {
    let out = Command::new(env!("CARGO_BIN_EXE_kres-kafka"))
        .args(["send", "--server", server, "--timeout", "20s"])
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "send {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// A record as a plain consumer reads it: partition, offset, key, headers, and the value
/// (`None` for a tombstone).
pub type Raw = (
    i32,
    i64,
    Option<Vec<u8>>,
    Vec<(String, Vec<u8>)>,
    Option<Vec<u8>>,
);

/// Every record of `topic` on the broker at `bootstrap` now (its partitions read from their
/// start to the ends they had when asked), partition by partition, each in offset order.
pub fn read_topic(bootstrap: &str, topic: &str) -> Vec<Raw> {
    use rdkafka::consumer::{BaseConsumer, Consumer as _};
    use rdkafka::message::{Headers as _, Message as _};
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "test-reader")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let metadata = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .unwrap();
    let partitions = metadata.topics()[0].partitions().len() as i32;
    let mut list = rdkafka::TopicPartitionList::new();
    let mut left = 0;
    for p in 0..partitions {
        let (low, high) = consumer
            .fetch_watermarks(topic, p, Duration::from_secs(10))
            .unwrap();
        left += high - low;
        list.add_partition_offset(topic, p, rdkafka::Offset::Beginning)
            .unwrap();
    }
    consumer.assign(&list).unwrap();
    let mut out = Vec::new();
    let deadline = Instant::now() + PATIENCE;
    while (out.len() as i64) < left {
        assert!(
            Instant::now() < deadline,
            "read {} of the {left} records of {topic}",
            out.len()
        );
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(100)) {
            out.push((
                m.partition(),
                m.offset(),
                m.key().map(<[u8]>::to_vec),
                m.headers()
                    .map(|h| {
                        h.iter()
                            .map(|h| (h.key.to_owned(), h.value.unwrap_or_default().to_vec()))
                            .collect()
                    })
                    .unwrap_or_default(),
                m.payload().map(<[u8]>::to_vec),
            ));
        }
    }
    out.sort_by_key(|r| (r.0, r.1));
    out
}

impl Broker {
    /// Every record of the topic so far, partition by partition, each in offset order.
    pub fn records(&self, _partitions: i32) -> Vec<Record> {
        let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        read_topic(&self.cluster.bootstrap_servers(), TOPIC)
            .into_iter()
            .map(|(partition, _, key, headers, value)| Record {
                partition,
                key: key.as_deref().map(text),
                headers: headers.iter().map(|(n, v)| (n.clone(), text(v))).collect(),
                value: value.unwrap_or_default(),
            })
            .collect()
    }
}

/// A resolver host: files directory, config, stand-in manager, and the daemon when running.
pub struct Host {
    pub dir: tempfile::TempDir,
    pub manager: Recorder,
    standin: Option<StandIn>,
    daemon: Option<Child>,
    runs: usize,
    env: Vec<(String, String)>,
}

impl Host {
    /// Set up a host for `hostname` on `broker`, with extra librdkafka options.
    pub fn new(broker: &Broker, hostname: &str, librdkafka: &[(&str, &str)]) -> Host {
        Host::with(&broker.server(), hostname, "", librdkafka)
    }

    /// Set up a host for `hostname` on the broker at `server` (`host@port`), with extra lines
    /// for the `kafka` section (where `$HOST_DIR` stands for the host's directory) and extra
    /// librdkafka options.
    ///
    /// As on a stock Knot Resolver host: the resolver's own `config.yaml` (hostname,
    /// management), kres-kafka's settings in `kres-kafka.yaml` beside it, and a manager started
    /// with `--config config.yaml --config files/config.yaml` (the delivered configuration).
    pub fn with(server: &str, hostname: &str, kafka: &str, librdkafka: &[(&str, &str)]) -> Host {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("files")).unwrap();
        let socket = dir.path().join("kres-api.sock");
        let resolver_config = dir.path().join("config.yaml");
        let delivered = dir.path().join("files/config.yaml");
        std::fs::write(
            &resolver_config,
            format!(
                "hostname: {hostname}\nmanagement:\n  unix-socket: {}\nrundir: {}\n",
                socket.display(),
                dir.path().join("run").display()
            ),
        )
        .unwrap();
        let config = format!(
            "kafka:\n  enable: true\n  topic: {TOPIC}\n  server: {server}\n  files-dir: {files}\n{debounce}\
             \x20 resolver-config: [{resolver}, {delivered}]\n\
             {kafka}\
             {librdkafka}",
            // A test may set its own debounce; 1 s keeps the others quick.
            debounce = if kafka.contains("debounce:") {
                ""
            } else {
                "  debounce: 1s\n"
            },
            kafka = kafka
                .replace("$HOST_DIR", &dir.path().display().to_string())
                .lines()
                .map(|l| format!("  {l}\n"))
                .collect::<String>(),
            files = dir.path().join("files").display(),
            resolver = resolver_config.display(),
            delivered = delivered.display(),
            librdkafka = if librdkafka.is_empty() {
                String::new()
            } else {
                "  librdkafka:\n".to_owned()
                    + &librdkafka
                        .iter()
                        .map(|(k, v)| format!("    {k}: '{v}'\n"))
                        .collect::<String>()
            },
        );
        std::fs::write(dir.path().join("kres-kafka.yaml"), config).unwrap();
        let manager = Recorder::manager(vec![resolver_config, delivered]);
        let standin = Some(StandIn::start(&socket, manager.clone()).unwrap());
        Host {
            dir,
            manager,
            standin,
            daemon: None,
            runs: 0,
            env: Vec::new(),
        }
    }

    /// Set an environment variable for the daemon's next start (`PATH`, to put a stand-in
    /// `kresctl` first).
    pub fn env(&mut self, name: &str, value: &str) {
        self.env.push((name.into(), value.into()));
    }

    pub fn files(&self) -> PathBuf {
        self.dir.path().join("files")
    }

    fn log(&self, run: usize) -> PathBuf {
        self.dir.path().join(format!("daemon-{run}.log"))
    }

    /// Start `kres-kafka run` (debug logs to `daemon-N.log`).
    pub fn start(&mut self) {
        assert!(self.daemon.is_none(), "already running");
        self.runs += 1;
        let log = File::create(self.log(self.runs)).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_kres-kafka"))
            .args(["run", "--log-level", "debug", "--config"])
            .arg(self.dir.path().join("config.yaml"))
            .arg("--config")
            .arg(self.dir.path().join("kres-kafka.yaml"))
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.daemon = Some(child);
    }

    /// The running daemon's pid.
    pub fn pid(&self) -> Option<u32> {
        self.daemon.as_ref().map(Child::id)
    }

    /// Run `kres-kafka run` on this host's configuration in the foreground, with `args` added,
    /// and return how it ended (for a start that must fail).
    pub fn run_once(&self, args: &[&str]) -> std::process::Output {
        let mut child = Command::new(env!("CARGO_BIN_EXE_kres-kafka"))
            .args(["run", "--config"])
            .arg(self.dir.path().join("config.yaml"))
            .arg("--config")
            .arg(self.dir.path().join("kres-kafka.yaml"))
            .args(args)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + PATIENCE;
        while child.try_wait().unwrap().is_none() {
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("kres-kafka run did not end within {PATIENCE:?}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        child.wait_with_output().unwrap()
    }

    /// Send `signal` to the running daemon.
    pub fn signal(&self, signal: i32) {
        let child = self.daemon.as_ref().expect("not running");
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc_kill(child.id() as i32, signal) };
    }

    /// Send `signal` to the daemon and wait for it to exit.
    pub async fn stop(&mut self, signal: i32) -> ExitStatus {
        let child = self.daemon.as_ref().expect("not running");
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc_kill(child.id() as i32, signal) };
        self.exit().await
    }

    /// Wait for the daemon to exit on its own.
    pub async fn exit(&mut self) -> ExitStatus {
        let mut child = self.daemon.take().expect("not running");
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "the daemon did not exit\n{}",
                self.logs()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The manager goes away (its socket disappears) or comes back.
    pub fn manager_down(&mut self) {
        self.standin = None;
    }
    pub fn manager_up(&mut self) {
        let socket = self.dir.path().join("kres-api.sock");
        self.standin = Some(StandIn::start(&socket, self.manager.clone()).unwrap());
    }

    /// All the daemon's logs so far, for failure messages.
    pub fn logs(&self) -> String {
        (1..=self.runs)
            .map(|run| {
                format!(
                    "--- daemon run {run} ---\n{}",
                    std::fs::read_to_string(self.log(run)).unwrap_or_default()
                )
            })
            .collect()
    }

    /// The log of one run.
    pub fn log_of(&self, run: usize) -> String {
        std::fs::read_to_string(self.log(run)).unwrap_or_default()
    }

    /// Wait until `done` holds, or fail with the daemon's logs; fail at once if the daemon
    /// exited on its own meanwhile.
    pub async fn wait_for(&mut self, what: &str, mut done: impl FnMut(&Host) -> bool) {
        let deadline = Instant::now() + PATIENCE;
        while !done(self) {
            if let Some(status) = self.daemon.as_mut().and_then(|c| c.try_wait().unwrap()) {
                self.daemon = None;
                panic!(
                    "the daemon exited ({status}) while waiting for {what}\n{}",
                    self.logs()
                );
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}\n{}",
                self.logs()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Whether `name` holds exactly `content`.
    pub fn holds(&self, name: &str, content: &[u8]) -> bool {
        std::fs::read(self.files().join(name)).is_ok_and(|c| c == content)
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.files().join(name)
    }

    /// Whether the daemon owes the manager no call: its marker of a call owed (written before
    /// a commit becomes visible, removed once every call asked for has been made) is gone.
    /// Waiting for this after the files are in place is waiting until no further call can come.
    pub fn owes_no_call(&self) -> bool {
        !self.dir.path().join("kres-kafka/pending-action").exists()
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        if let Some(mut child) = self.daemon.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

pub const SIGKILL: i32 = 9;
pub const SIGTERM: i32 = 15;

unsafe extern "C" {
    #[link_name = "kill"]
    fn libc_kill(pid: i32, signal: i32) -> i32;
}

/// Deterministic content of `len` bytes, different for each `seed`.
pub fn content(seed: u8, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u32).wrapping_mul(2654435761).to_le_bytes()[i % 4] ^ seed)
        .collect()
}

/// A TCP port free on 127.0.0.1 now, for a listener a child process opens later
/// (`metrics-address`, a broker). Taken below Linux's ephemeral range (32768 and up), where
/// the kernel never places a `bind(0)` (the mock brokers) or an outgoing connection, so that
/// nothing else takes it in between; never the same port twice in one test process.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    const FIRST: u32 = 20_000;
    const RANGE: u32 = 12_000;
    static TAKEN: AtomicU32 = AtomicU32::new(0);
    // Each test process starts at its own place in the range.
    let start = std::process::id().wrapping_mul(7919);
    loop {
        let n = TAKEN.fetch_add(1, Ordering::Relaxed);
        let port = (FIRST + start.wrapping_add(n) % RANGE) as u16;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// `GET /metrics` on 127.0.0.1:`port`: the body; empty while the daemon is not serving yet
/// (starting, or restarting), so that a wait can ask before it is up.
pub fn scrape(port: u16) -> String {
    use std::io::{Read, Write};
    let Ok(mut stream) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return String::new();
    };
    stream
        .write_all(b"GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n")
        .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    assert!(
        response.starts_with("HTTP/1.0 200") || response.starts_with("HTTP/1.1 200"),
        "{response}"
    );
    response
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_owned())
        .unwrap_or_default()
}

/// `GET path` on 127.0.0.1:`port`: the status code and the body; `None` while nothing listens
/// (before the daemon serves, after it stopped).
pub fn get(port: u16, path: &str) -> Option<(u16, String)> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream
        .write_all(format!("GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").as_bytes())
        .ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let (head, body) = response.split_once("\r\n\r\n")?;
    let status = head.split(' ').nth(1)?.parse().ok()?;
    Some((status, body.to_owned()))
}

/// The value of the metric `name` (with its labels, as scraped) on `port`; 0 while absent.
pub fn metric(port: u16, name: &str) -> u64 {
    scrape(port)
        .lines()
        .find_map(|l| l.strip_prefix(name).and_then(|v| v.strip_prefix(' ')))
        .map_or(0, |v| v.trim().parse().unwrap())
}
