//! The benchmark's harness: the real daemon as a child process (with a stand-in manager and a
//! warm guest cache), the limit's raw consumer, and the measurements around them.

use super::throughput::{FETCH_WAIT_MS, ME, PATIENCE};
use super::workload::{Configs, Record, Single, Workload, produce};
use crate::demo::standin::{Recorder, StandIn};
use anyhow::{Context as _, bail};
use kres_kafka_guest::headers::{FILE_NAME, HOSTNAME};
use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer as _};
use rdkafka::message::Message as _;
use rdkafka::mocking::MockCluster;
use sha2::{Digest, Sha256};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// The broker the bench runs against: librdkafka's in-process mock, or one given with
/// `--broker` (a real Kafka-protocol broker, e.g. nisshi).
pub(super) struct Broker {
    mock: Option<MockCluster<'static, rdkafka::producer::DefaultProducerContext>>,
    servers: String,
    /// Put before each topic's name: a real broker keeps the topics of earlier runs.
    prefix: String,
}

impl Broker {
    pub(super) fn mock() -> anyhow::Result<Broker> {
        let mock = MockCluster::new(1).context("starting the in-process broker")?;
        Ok(Broker {
            servers: mock.bootstrap_servers(),
            mock: Some(mock),
            prefix: String::new(),
        })
    }

    pub(super) fn external(servers: &str) -> Broker {
        Broker {
            mock: None,
            servers: servers.to_owned(),
            prefix: format!("kres-kafka-bench-{}-", crate::system::unix_now()),
        }
    }

    pub(super) fn servers(&self) -> &str {
        &self.servers
    }

    /// What the broker is, for the table's heading.
    pub(super) fn describe(&self) -> String {
        match self.mock {
            Some(_) => "the in-process broker".into(),
            None => format!("the broker at {}", self.servers),
        }
    }

    /// The name of this run's topic `name`.
    pub(super) fn topic(&self, name: &str) -> String {
        format!("{}{name}", self.prefix)
    }

    /// Create `topic` (a name from [`Broker::topic`]) with `partitions` partitions.
    pub(super) fn create_topic(&self, topic: &str, partitions: i32) -> anyhow::Result<()> {
        use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
        if let Some(mock) = &self.mock {
            return mock
                .create_topic(topic, partitions, 1)
                .with_context(|| format!("creating topic {topic}"));
        }
        let admin: AdminClient<rdkafka::client::DefaultClientContext> = ClientConfig::new()
            .set("bootstrap.servers", &self.servers)
            .create()
            .context("creating an admin client")?;
        let new = NewTopic::new(topic, partitions, TopicReplication::Fixed(1));
        let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
        // The bench's code around is synchronous; its runtime has threads to spare.
        let results = tokio::task::block_in_place(|| {
            tokio::runtime::Handle::current().block_on(admin.create_topics([&new], &options))
        })
        .with_context(|| format!("creating topic {topic} on {}", self.servers))?;
        for result in results {
            result.map_err(|(name, code)| anyhow::anyhow!("creating topic {name}: {code}"))?;
        }
        Ok(())
    }
}

/// When the daemon is done with a workload.
pub(super) enum Done {
    /// This file is in place (with this size, unless 0).
    File(&'static str, u64),
    /// This many files were committed.
    Committed(usize),
    /// Each of these files is in place with its size.
    Files(Vec<(String, u64)>),
}

impl Done {
    /// Whether the daemon with files directory `files` and metrics `metric` is done;
    /// `committed_before`: its committed count when the workload started.
    fn reached(&self, files: &Path, metric: impl Fn(&str) -> u64, committed_before: u64) -> bool {
        let holds = |name: &str, size: u64| {
            std::fs::metadata(files.join(name)).is_ok_and(|m| size == 0 || m.len() == size)
        };
        match self {
            Done::File(name, size) => holds(name, *size),
            Done::Committed(n) => {
                metric("kres_kafka_messages_total{outcome=\"committed\"}")
                    >= committed_before + *n as u64
            }
            Done::Files(list) => list.iter().all(|(name, size)| holds(name, *size)),
        }
    }
}

/// What a run through the daemon measured.
pub(super) struct Measured {
    pub(super) time: Duration,
    /// Peak resident memory from start-up to ready (compiling the guest), in MiB.
    pub(super) start_peak_mib: f64,
    /// Peak resident memory during the workload, in MiB.
    pub(super) peak_rss_mib: f64,
    pub(super) batches: u64,
    pub(super) files: PathBuf,
    /// Bytes the producer sent to the broker for the workload (compressed as `send` does).
    pub(super) sent: u64,
}

/// The real daemon, a child process with its own files directory and a stand-in manager, on
/// topic `topic`.
struct Daemon {
    child: Child,
    port: u16,
    files: PathBuf,
    _manager: StandIn,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Daemon {
    fn start(
        broker: &Broker,
        dir: &Path,
        topic: &Topic<'_>,
        manager_files: &[PathBuf],
    ) -> anyhow::Result<Daemon> {
        // The fleet's topic is made and filled before its daemons start.
        if topic.partitions == 1 {
            broker.create_topic(topic.name, 1)?;
        }
        let files = dir.join("files");
        std::fs::create_dir_all(&files)?;
        let socket = dir.join("kres-api.sock");
        let resolver = dir.join("config.yaml");
        std::fs::write(
            &resolver,
            format!(
                "hostname: {ME}\nmanagement:\n  unix-socket: {}\nrundir: {}\n",
                socket.display(),
                dir.join("run").display()
            ),
        )?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let server = broker
            .servers()
            .split(',')
            .next()
            .unwrap_or_default()
            .replacen(':', "@", 1);
        std::fs::write(
            dir.join("kres-kafka.yaml"),
            format!(
                "kafka:\n  enable: true\n  topic: {}\n  group-id: {}\n  server: {server}\n  files-dir: {}\n  state-dir: {}\n  \
                 resolver-config: [{}, {}]\n  metrics-address: 127.0.0.1@{port}\n{}  librdkafka:\n    fetch.wait.max.ms: {FETCH_WAIT_MS}\n",
                topic.name,
                // A group of its own: each daemon starts as a new resolver does, with no
                // offsets committed by an earlier round (a real broker keeps them).
                format_args!(
                    "kres-kafka-bench-{}-{}",
                    topic.name,
                    dir.file_name().unwrap_or_default().to_string_lossy()
                ),
                files.display(),
                dir.join("state").display(),
                resolver.display(),
                files.join("config.yaml").display(),
                topic.settings,
            ),
        )?;
        let mut configs = vec![resolver.clone(), files.join("config.yaml")];
        configs.extend(manager_files.iter().map(|f| files.join(f)));
        let manager = StandIn::start(&socket, Recorder::manager(configs))
            .context("starting the stand-in manager")?;
        let log = std::fs::File::create(dir.join("daemon.log"))?;
        let child = Command::new(std::env::current_exe()?)
            .args(["run", "--config"])
            .arg(&resolver)
            .arg("--config")
            .arg(dir.join("kres-kafka.yaml"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .context("starting the daemon")?;
        Ok(Daemon {
            child,
            port,
            files,
            _manager: manager,
        })
    }

    fn metric(&self, name: &str) -> u64 {
        metric_of(&scrape(self.port), name)
    }

    /// Start counting the peak afresh (Linux: `clear_refs` 5 resets `VmHWM`).
    fn reset_peak(&self) {
        let _ = std::fs::write(format!("/proc/{}/clear_refs", self.child.id()), "5");
    }

    /// The peak resident memory since start-up or [`Daemon::reset_peak`], in MiB.
    fn peak_rss_mib(&self) -> f64 {
        memory_mib(&self.child.id().to_string(), "VmHWM:")
    }
}

/// The topic a daemon reads, and its settings.
#[derive(Clone, Copy)]
pub(super) struct Topic<'a> {
    pub(super) name: &'a str,
    /// 1: made by the daemon's start; more: made and filled before.
    pub(super) partitions: i32,
    /// Lines for the `kafka` section, each indented by two spaces and ending in a newline.
    pub(super) settings: &'a str,
}

impl<'a> From<&'a str> for Topic<'a> {
    fn from(name: &'a str) -> Topic<'a> {
        Topic {
            name,
            partitions: 1,
            settings: "",
        }
    }
}

/// Give the daemon whose directory is `dir` the compiled guest in its cache.
fn warm_cache(dir: &Path, compiled: &Path) -> anyhow::Result<()> {
    // The whole cache: its entries are tagged with a key of its own.
    let cache = dir.join("state/guest-cache");
    std::fs::create_dir_all(&cache)?;
    for entry in std::fs::read_dir(
        compiled
            .parent()
            .context("the compiled guest's directory")?,
    )? {
        let entry = entry?;
        std::fs::copy(entry.path(), cache.join(entry.file_name()))?;
    }
    Ok(())
}

/// What [`catch_up`] saw.
pub(super) struct CaughtUp {
    /// From the daemon's start until it was done.
    pub(super) time: Duration,
    /// Bytes of values it fetched by then.
    pub(super) fetched: u64,
    /// Its peak resident memory over its whole life, start-up included, in MiB.
    pub(super) peak_rss_mib: f64,
    pub(super) files: PathBuf,
}

/// A fresh daemon (its guest compiled ahead) in `scratch/run` on `topic`, whose messages are
/// all there before it starts, from its start until it is `done` and fetched at least
/// `fetched` bytes of values.
pub(super) async fn catch_up(
    broker: &Broker,
    scratch: &Path,
    compiled: &Path,
    run: &str,
    topic: Topic<'_>,
    done: Done,
    fetched: u64,
) -> anyhow::Result<CaughtUp> {
    let dir = scratch.join(run);
    warm_cache(&dir, compiled)?;
    let t0 = Instant::now();
    let daemon = Daemon::start(broker, &dir, &topic, &[])?;
    let mut checks = 0u32;
    loop {
        // The files first: looking at them costs the daemon nothing, a scrape does.
        if done.reached(&daemon.files, |m| daemon.metric(m), 0)
            && let received = daemon.metric("kres_kafka_received_bytes_total")
            && received >= fetched
        {
            return Ok(CaughtUp {
                time: t0.elapsed(),
                fetched: received,
                peak_rss_mib: daemon.peak_rss_mib(),
                files: daemon.files.clone(),
            });
        }
        // Whether the daemon is still there every 100 ms: it reads /proc.
        checks = checks.wrapping_add(1);
        if checks.is_multiple_of(100) && (t0.elapsed() > PATIENCE || daemon_exited(&daemon)) {
            // The scratch directory goes with the bench: the log's end, here.
            let log = std::fs::read_to_string(dir.join("daemon.log")).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(5).collect();
            bail!(
                "the daemon did not catch up within {:?} ({}); its log ends:\n{}",
                t0.elapsed(),
                if daemon_exited(&daemon) {
                    "it exited"
                } else {
                    "still running"
                },
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            );
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// `workload` through a fresh daemon on `topic`.
pub(super) async fn through_daemon(
    broker: &Broker,
    scratch: &Path,
    compiled: &Path,
    topic: Topic<'_>,
    workload: &dyn Workload,
    done: Done,
    manager_files: &[PathBuf],
) -> anyhow::Result<Measured> {
    let dir = scratch.join(topic.name);
    warm_cache(&dir, compiled)?;
    let daemon = Daemon::start(broker, &dir, &topic, manager_files)?;
    let topic = topic.name;
    let servers = broker.servers();
    // Ready once a first file of ours went through.
    let started = Instant::now();
    while !daemon.files.join("warmup.rpz").exists() {
        if started.elapsed() > PATIENCE || daemon_exited(&daemon) {
            bail!(
                "the daemon did not start: see {}",
                dir.join("daemon.log").display()
            );
        }
        let record = Record {
            headers: vec![(HOSTNAME, ME.into()), (FILE_NAME, "warmup.rpz".into())],
            value: b"warmup.example CNAME .\n".to_vec(),
            partition: None,
        };
        produce(
            servers,
            topic,
            &Single(record),
            &AtomicU64::new(u64::MAX / 2),
        )?;
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let log = std::fs::read_to_string(dir.join("daemon.log")).unwrap_or_default();
    let loaded = log
        .lines()
        .find(|l| l.contains("guest loaded"))
        .unwrap_or("");
    eprintln!("  daemon ready (pid {}): {loaded}", daemon.child.id());
    let start_peak = daemon.peak_rss_mib();
    daemon.reset_peak();
    let baseline = daemon.metric("kres_kafka_received_bytes_total");
    let batches_before = daemon.metric("kres_kafka_batches_total");
    let committed_before = daemon.metric("kres_kafka_messages_total{outcome=\"committed\"}");

    let consumed = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    // What the daemon received, for the producer's window: not scraped for a workload
    // published unthrottled. A scrape costs the daemon (and this process) CPU the limit's
    // consumer does not pay, so it comes only as often as keeps what waits for the daemon
    // within a quarter of the window of its full size at 1 GB/s (a late figure only holds
    // the producer back: the broker never gets more than the window).
    let throttled = !workload.unthrottled();
    let every = Duration::from_secs_f64(workload.window() as f64 / 4e9)
        .clamp(Duration::from_millis(1), Duration::from_millis(10));
    let poller = {
        let (consumed, stop, port) = (Arc::clone(&consumed), Arc::clone(&stop), daemon.port);
        std::thread::spawn(move || {
            while throttled && !stop.load(Ordering::Relaxed) {
                let bytes = metric_of(&scrape(port), "kres_kafka_received_bytes_total");
                consumed.store(bytes.saturating_sub(baseline), Ordering::Relaxed);
                std::thread::sleep(every);
            }
        })
    };
    let t0 = Instant::now();
    let result = std::thread::scope(|scope| {
        let producer = scope.spawn(|| produce(servers, topic, workload, &consumed));
        // The files every 500 µs (a stat), whether the daemon is still there every 100 ms (it
        // reads /proc: CPU the limit's run does not spend).
        let mut checks = 0u32;
        let finished = loop {
            let finished = done.reached(&daemon.files, |m| daemon.metric(m), committed_before);
            if finished {
                break Ok(t0.elapsed());
            }
            checks = checks.wrapping_add(1);
            if checks.is_multiple_of(200) && (t0.elapsed() > PATIENCE || daemon_exited(&daemon)) {
                break Err(anyhow::anyhow!(
                    "the daemon did not finish: see {}",
                    dir.join("daemon.log").display()
                ));
            }
            std::thread::sleep(Duration::from_micros(500));
        };
        let sent = producer.join().expect("the producer panicked")?;
        finished.map(|time| (time, sent))
    });
    stop.store(true, Ordering::Relaxed);
    let _ = poller.join();
    let (time, sent) = result?;
    Ok(Measured {
        time,
        start_peak_mib: start_peak,
        peak_rss_mib: daemon.peak_rss_mib(),
        batches: daemon.metric("kres_kafka_batches_total") - batches_before,
        files: daemon.files.clone(),
        sent,
    })
}

/// Whether the daemon has exited: gone, or a zombie not yet waited for (`try_wait` needs
/// `&mut`, which the measuring loop does not have).
fn daemon_exited(daemon: &Daemon) -> bool {
    let stat = std::fs::read_to_string(format!("/proc/{}/stat", daemon.child.id()));
    // The state follows the command name, which is in parentheses.
    stat.map_or(true, |s| {
        s.rsplit_once(") ")
            .is_none_or(|(_, rest)| rest.starts_with('Z') || rest.starts_with('X'))
    })
}

/// The limit of a backlog: consume every partition of `topic` from its start until `bytes`
/// of values came, writing each value to the file in `dir` its `file-name` header names, each
/// file fsynced once whole (`dir` None: throwing them away). Returns when it was done; the
/// consumer is ready (assigned) when `ready` runs, before anything is read.
pub(super) fn raw_backlog(
    servers: &str,
    topic: &str,
    partitions: i32,
    dir: Option<&Path>,
    bytes: u64,
    ready: impl FnOnce(),
) -> anyhow::Result<Instant> {
    use rdkafka::message::Headers as _;
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", servers)
        .set("group.id", format!("limit-{topic}"))
        .set("fetch.wait.max.ms", FETCH_WAIT_MS)
        .create()
        .context("creating the limit's consumer")?;
    let mut list = rdkafka::TopicPartitionList::new();
    for p in 0..partitions {
        list.add_partition_offset(topic, p, rdkafka::Offset::Beginning)?;
    }
    consumer.assign(&list)?;
    ready();
    let t0 = Instant::now();
    let mut files = std::collections::HashMap::<String, std::fs::File>::new();
    let mut received = 0;
    while received < bytes {
        let Some(message) = consumer.poll(Duration::from_millis(100)) else {
            if t0.elapsed() > PATIENCE {
                bail!("the limit's consumer stalled");
            }
            continue;
        };
        let message = message?;
        let value = message.payload().unwrap_or_default();
        received += value.len() as u64;
        let Some(dir) = dir else { continue };
        let name = message
            .headers()
            .and_then(|h| h.iter().find(|h| h.key == FILE_NAME))
            .and_then(|h| h.value)
            .map(|v| String::from_utf8_lossy(v).replace('/', "_"))
            .context("a record without a file name")?;
        let file = match files.entry(name) {
            std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::hash_map::Entry::Vacant(e) => {
                let path = dir.join(e.key());
                e.insert(std::fs::File::create(path)?)
            }
        };
        file.write_all(value)?;
    }
    for file in files.values() {
        file.sync_all()?;
    }
    Ok(Instant::now())
}

/// Where the limit's consumer puts values.
pub(super) enum Sink {
    File(PathBuf),
    Discard,
}

/// The limit: consume `workload` from `topic` without kres-kafka, into `sink`.
pub(super) fn raw(
    broker: &Broker,
    topic: &str,
    workload: &dyn Workload,
    sink: Sink,
) -> anyhow::Result<Duration> {
    broker.create_topic(topic, 1)?;
    let servers = broker.servers();
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", servers)
        .set("group.id", format!("limit-{topic}"))
        .set("auto.offset.reset", "earliest")
        .set("fetch.wait.max.ms", FETCH_WAIT_MS)
        .create()
        .context("creating the limit's consumer")?;
    consumer.subscribe(&[topic])?;
    // Assigned and positioned once a first record arrived.
    let warm = Single(Record {
        headers: vec![],
        value: b"warm".to_vec(),
        partition: None,
    });
    produce(servers, topic, &warm, &AtomicU64::new(u64::MAX / 2))?;
    let started = Instant::now();
    loop {
        if let Some(message) = consumer.poll(Duration::from_millis(100)) {
            message?;
            break;
        }
        if started.elapsed() > PATIENCE {
            bail!("the limit's consumer received nothing");
        }
    }
    let mut file = match &sink {
        Sink::File(path) => Some(std::fs::File::create(path)?),
        Sink::Discard => None,
    };
    let consumed = AtomicU64::new(0);
    let total = workload.count();
    let t0 = Instant::now();
    std::thread::scope(|scope| {
        let producer = scope.spawn(|| produce(servers, topic, workload, &consumed));
        let mut received = 0;
        while received < total {
            let Some(message) = consumer.poll(Duration::from_millis(100)) else {
                if t0.elapsed() > PATIENCE {
                    bail!("the limit's consumer stalled");
                }
                continue;
            };
            let message = message?;
            let value = message.payload().unwrap_or_default();
            if let Some(file) = &mut file {
                file.write_all(value)?;
            }
            consumed.fetch_add(value.len() as u64, Ordering::Relaxed);
            received += 1;
        }
        if let Some(file) = &file {
            file.sync_all()?;
        }
        let time = t0.elapsed();
        producer.join().expect("the producer panicked")?;
        Ok(time)
    })
}

pub(super) fn sha256_file(path: &Path) -> anyhow::Result<String> {
    let mut file = std::fs::File::open(path)?;
    let mut hasher = Sha256::new();
    std::io::copy(&mut file, &mut hasher)?;
    Ok(kres_kafka_guest::durable::hex(&hasher.finalize()))
}

pub(super) fn metric_of(text: &str, name: &str) -> u64 {
    text.lines()
        .filter(|l| l.starts_with(name))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

/// `GET /metrics` on 127.0.0.1:`port`: the body (empty when it cannot be reached).
pub(super) fn scrape(port: u16) -> String {
    use std::io::Read;
    let Ok(mut stream) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return String::new();
    };
    let mut response = String::new();
    if stream
        .write_all(b"GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n")
        .is_err()
        || stream.read_to_string(&mut response).is_err()
    {
        return String::new();
    }
    response
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_owned())
        .unwrap_or_default()
}

/// Compile the embedded guest into a cache of its own; return the compiled file and the peak
/// resident memory of compiling it, in MiB.
pub(super) fn precompile(scratch: &Path) -> anyhow::Result<(PathBuf, f64)> {
    use crate::sandbox::{DEFAULT_GUEST, Sandbox, SandboxConfig};
    let _ = std::fs::write("/proc/self/clear_refs", "5");
    let before = memory_mib("self", "VmRSS:");
    let sandbox = Sandbox::new(SandboxConfig {
        cache_dir: Some(scratch.join("guest-cache")),
        ..SandboxConfig::new(scratch)
    })?;
    let compiled = sandbox.precompile(DEFAULT_GUEST, "embedded")?;
    let peak = memory_mib("self", "VmHWM:") - before;
    crate::system::release_free_memory();
    Ok((compiled, peak))
}

/// A first start: the daemon on an empty state directory (nothing cached) against a topic
/// that exists. The time from its start to the log's `consuming` (partitions assigned), and
/// its peak resident memory by then, in MiB.
pub(super) async fn first_start(
    broker: &Broker,
    scratch: &Path,
) -> anyhow::Result<(Duration, f64)> {
    let dir = scratch.join("first-start");
    std::fs::create_dir_all(&dir)?;
    let t0 = Instant::now();
    let daemon = Daemon::start(
        broker,
        &dir,
        &Topic::from(broker.topic("first-start").as_str()),
        &[],
    )?;
    let log = dir.join("daemon.log");
    loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if text.contains("consuming") {
            return Ok((t0.elapsed(), daemon.peak_rss_mib()));
        }
        if t0.elapsed() > PATIENCE || daemon_exited(&daemon) {
            bail!("the daemon did not start: see {}", log.display());
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// A memory figure (`VmRSS:`, `VmHWM:`) of process `pid` (or `self`), in MiB.
fn memory_mib(pid: &str, field: &str) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

/// What the disk allows workload B: each file written to a temporary and renamed into place in
/// a fresh directory, natively, then one flush: no Kafka, no judging, no journal.
pub(super) fn write_and_rename(dir: &Path, configs: &Configs) -> anyhow::Result<Duration> {
    std::fs::create_dir_all(dir.join("views"))?;
    let started = Instant::now();
    for i in 0..configs.0 {
        let path = dir.join(Configs::name(i));
        let tmp = path.with_extension("json.tmp");
        std::fs::write(&tmp, Configs::content(i))?;
        std::fs::rename(&tmp, &path)?;
    }
    crate::system::sync_filesystem(dir)?;
    Ok(started.elapsed())
}
