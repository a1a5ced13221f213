//! `kres-kafka bench throughput`: the real daemon (this binary's `run`, default configuration)
//! against librdkafka's in-process mock broker, beside the limit measured in the same run.
//!
//! - **A**: one large RPZ file in chunks, for this resolver. Limit: consuming the same messages
//!   and writing their values into one file, fsynced once.
//! - **B**: many whole small JSON configurations, for this resolver, each judged against the
//!   resolver's schema and committed durably. Limit shown: consuming them raw.
//! - **S**: the large file for another resolver, then one small file for this one. Limit:
//!   consuming the same messages and throwing them away.
//!
//! The mock broker keeps only about 5 MiB per partition, so the workloads are produced while
//! they are consumed: the producer stays at most [`WINDOW`] ahead of what the consumer has
//! received (the daemon's `kres_kafka_received_bytes_total`). Both sides run with
//! `fetch.wait.max.ms` = [`FETCH_WAIT_MS`], as the mock does not wake a waiting fetch early;
//! every other setting is the default. Peak memory is the daemon's own (`VmHWM`).

use super::cost;
use crate::demo::standin::{Recorder, StandIn};
use anyhow::{Context as _, bail};
use kres_kafka_guest::headers::{CHUNK_INDEX, FILE_NAME, HOSTNAME, SHA256, TOTAL_CHUNKS};
use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer as _};
use rdkafka::message::{Header, Message as _, OwnedHeaders};
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer as _};
use sha2::{Digest, Sha256};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// The resolver the daemon works for.
const ME: &str = "bench-resolver";
/// The resolver workload S is for.
const OTHER: &str = "another-resolver";
/// How far the producer may run ahead of the consumer (the mock keeps ~5 MiB a partition).
const WINDOW: u64 = 4 << 20;
/// `fetch.wait.max.ms` on both sides: the mock broker does not wake a waiting fetch early.
const FETCH_WAIT_MS: &str = "1";
/// Longest any step may take.
const PATIENCE: Duration = Duration::from_secs(600);

/// Targets the project sets itself.
const TARGET_RATIO: f64 = 0.5;
const TARGET_COMMITS: f64 = 10_000.0;
const TARGET_RSS_MIB: f64 = 64.0;

/// What to run.
pub struct Options {
    /// Parts to run; empty: all.
    pub only: Vec<Part>,
    pub size: u64,
    pub chunk: usize,
    pub configs: usize,
    pub dir: PathBuf,
}

/// One record to publish.
struct Record {
    headers: Vec<(&'static str, String)>,
    value: Vec<u8>,
}

/// A workload: its records, made as they are published (a large file is never held whole).
trait Workload: Sync {
    fn count(&self) -> usize;
    fn record(&self, i: usize) -> Record;
}

/// A large RPZ file in chunks for `host`, then, if `then` is set, one small file for us.
struct Chunked {
    host: &'static str,
    name: &'static str,
    size: u64,
    chunk: usize,
    block: Vec<u8>,
    sha256: String,
    then: Option<&'static str>,
}

impl Chunked {
    fn new(host: &'static str, name: &'static str, size: u64, chunk: usize) -> Chunked {
        let block = crate::demo::sample_rpz(chunk)[..chunk].to_vec();
        let mut this = Chunked {
            host,
            name,
            size,
            chunk,
            block,
            sha256: String::new(),
            then: None,
        };
        let mut hasher = Sha256::new();
        for i in 0..this.chunks() {
            hasher.update(this.chunk_value(i));
        }
        this.sha256 = kres_kafka_guest::durable::hex(&hasher.finalize());
        this
    }

    fn chunks(&self) -> usize {
        self.size.div_ceil(self.chunk as u64) as usize
    }

    /// Chunk `i` (0-based): the block, stamped with its index, cut at the file's end.
    fn chunk_value(&self, i: usize) -> Vec<u8> {
        let len = (self.size - (i * self.chunk) as u64).min(self.chunk as u64) as usize;
        let mut value = self.block[..len].to_vec();
        let stamp = format!("; {i:010}\n");
        let n = stamp.len().min(len);
        value[..n].copy_from_slice(&stamp.as_bytes()[..n]);
        value
    }
}

impl Workload for Chunked {
    fn count(&self) -> usize {
        self.chunks() + usize::from(self.then.is_some())
    }

    fn record(&self, i: usize) -> Record {
        if i == self.chunks() {
            let name = self.then.expect("counted");
            return Record {
                headers: vec![(HOSTNAME, ME.into()), (FILE_NAME, name.into())],
                value: b"; ours, after the large file for another resolver\n".to_vec(),
            };
        }
        Record {
            headers: vec![
                (HOSTNAME, self.host.into()),
                (FILE_NAME, self.name.into()),
                (TOTAL_CHUNKS, self.chunks().to_string()),
                (CHUNK_INDEX, (i + 1).to_string()),
                (SHA256, self.sha256.clone()),
            ],
            value: self.chunk_value(i),
        }
    }
}

/// Small JSON configurations for us, each about 1 KiB, each setting keys of its own (so that
/// the manager can merge them all).
pub(super) struct Configs(pub usize);

impl Configs {
    pub(super) fn name(i: usize) -> String {
        format!("views/{i:05}.json")
    }

    pub(super) fn content(i: usize) -> Vec<u8> {
        let addresses: Vec<String> = (0..24)
            .map(|j| format!("\"h{j:02}-{i:05}.bench.example.\":[\"192.0.2.{j}\"]"))
            .collect();
        format!(
            "{{\"local-data\":{{\"addresses\":{{{}}}}}}}\n",
            addresses.join(",")
        )
        .into_bytes()
    }
}

impl Workload for Configs {
    fn count(&self) -> usize {
        self.0
    }

    fn record(&self, i: usize) -> Record {
        Record {
            headers: vec![(HOSTNAME, ME.into()), (FILE_NAME, Configs::name(i))],
            value: Configs::content(i),
        }
    }
}

/// Publish `workload` to `topic`, staying at most [`WINDOW`] bytes ahead of `consumed`.
fn produce(
    servers: &str,
    topic: &str,
    workload: &dyn Workload,
    consumed: &AtomicU64,
) -> anyhow::Result<()> {
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", servers)
        .create()
        .context("creating the bench's producer")?;
    let mut produced = 0u64;
    for i in 0..workload.count() {
        let record = workload.record(i);
        while produced > consumed.load(Ordering::Relaxed) + WINDOW {
            producer.poll(Duration::ZERO);
            std::thread::sleep(Duration::from_micros(200));
        }
        produced += record.value.len() as u64;
        let mut headers = OwnedHeaders::new();
        for (key, value) in &record.headers {
            headers = headers.insert(Header {
                key,
                value: Some(value.as_bytes()),
            });
        }
        let mut pending = BaseRecord::<(), [u8]>::to(topic)
            .payload(&record.value)
            .headers(headers);
        loop {
            match producer.send(pending) {
                Ok(()) => break,
                Err((e, back)) => {
                    if !matches!(
                        e.rdkafka_error_code(),
                        Some(rdkafka::types::RDKafkaErrorCode::QueueFull)
                    ) {
                        bail!("publishing: {e}");
                    }
                    producer.poll(Duration::from_millis(5));
                    pending = back;
                }
            }
        }
        producer.poll(Duration::ZERO);
    }
    producer
        .flush(Duration::from_secs(60))
        .context("flushing the bench's producer")?;
    Ok(())
}

/// Run the workloads, print the table, then the guest's cost.
pub async fn run(options: Options) -> anyhow::Result<()> {
    let scratch = tempfile::Builder::new()
        .prefix("kres-kafka-bench")
        .tempdir_in(&options.dir)
        .with_context(|| format!("creating a scratch directory in {}", options.dir.display()))?;
    let cluster = MockCluster::new(1).context("starting the in-process broker")?;
    let servers = cluster.bootstrap_servers();
    let mb = |bytes: u64| bytes as f64 / 1e6;
    let size = options.size;
    let runs = |part: Part| options.only.is_empty() || options.only.contains(&part);
    eprintln!(
        "throughput: {} MiB in {} KiB chunks (A, S), {} configurations (B), files in {}",
        size >> 20,
        options.chunk >> 10,
        options.configs,
        options.dir.display()
    );
    let mut rows = Vec::new();
    let mut peaks = Vec::new();
    // Compiled once, as `kres-kafka guest compile` or a daemon's first start does; each daemon
    // then starts with it in its cache, as it does on every later start.
    let (compiled, compile_peak) = precompile(scratch.path())?;

    if runs(Part::A) {
        let a = Chunked::new(ME, "zones/big.rpz", size, options.chunk);
        eprintln!("A: kres-kafka");
        let done = Done::File("zones/big.rpz", size);
        let ours = through_daemon(&cluster, scratch.path(), &compiled, "a", &a, done, &[]).await?;
        if sha256_file(&ours.files.join("zones/big.rpz"))? != a.sha256 {
            bail!("workload A: the delivered file is not the file published");
        }
        eprintln!("A: limit");
        let sink = Sink::File(scratch.path().join("limit-a"));
        let limit = raw(&servers, &cluster, "a-limit", &a, sink)?;
        let (ours_rate, limit_rate) = (mb(size) / secs(ours.time), mb(size) / secs(limit));
        let ratio = ours_rate / limit_rate;
        rows.push(format!(
            "  A  {:>4} MiB RPZ in {} KiB chunks            {ours_rate:>8.0} MB/s      consume, write, fsync {limit_rate:>6.0} MB/s   {ratio:>5.2}  >= {TARGET_RATIO}: {}",
            size >> 20,
            options.chunk >> 10,
            met(ratio >= TARGET_RATIO)
        ));
        peaks.push(("A", ours));
    }
    if runs(Part::B) {
        let b = Configs(options.configs);
        let files: Vec<PathBuf> = (0..b.0).map(|i| PathBuf::from(Configs::name(i))).collect();
        eprintln!("B: kres-kafka");
        let done = Done::Committed(b.0);
        let ours =
            through_daemon(&cluster, scratch.path(), &compiled, "b", &b, done, &files).await?;
        eprintln!("B: limit");
        let limit = raw(&servers, &cluster, "b-limit", &b, Sink::Discard)?;
        let disk = write_and_rename(&scratch.path().join("b-disk"), &b)?;
        let (commits, limit_rate) = (b.0 as f64 / secs(ours.time), b.0 as f64 / secs(limit));
        let disk_rate = b.0 as f64 / secs(disk);
        rows.push(format!(
            "  B  {:>5} whole 1 KiB JSON configurations    {commits:>8.0} commits/s  consume only {limit_rate:>8.0} msg/s                >= {TARGET_COMMITS:.0}/s: {}",
            b.0,
            met(commits >= TARGET_COMMITS)
        ));
        rows.push(format!(
            "                                                                   the disk: write, rename, one sync {disk_rate:>6.0} files/s   {:>5.2}",
            commits / disk_rate
        ));
        peaks.push(("B", ours));
    }
    if runs(Part::S) {
        let mut s = Chunked::new(OTHER, "zones/big.rpz", size, options.chunk);
        s.then = Some("ours.rpz");
        eprintln!("S: kres-kafka");
        let done = Done::File("ours.rpz", 0);
        let ours = through_daemon(&cluster, scratch.path(), &compiled, "s", &s, done, &[]).await?;
        eprintln!("S: limit");
        let limit = raw(&servers, &cluster, "s-limit", &s, Sink::Discard)?;
        let (ours_rate, limit_rate) = (mb(size) / secs(ours.time), mb(size) / secs(limit));
        let ratio = ours_rate / limit_rate;
        rows.push(format!(
            "  S  {:>4} MiB for another resolver, then ours {ours_rate:>8.0} MB/s      consume only {limit_rate:>13.0} MB/s   {ratio:>5.2}  >= {TARGET_RATIO}: {}",
            size >> 20,
            met(ratio >= TARGET_RATIO)
        ));
        peaks.push(("S", ours));
    }

    if !rows.is_empty() {
        println!(
            "throughput: kres-kafka {} (release build: {}), default configuration, against the in-process broker",
            env!("CARGO_PKG_VERSION"),
            !cfg!(debug_assertions)
        );
        println!(
            "  both sides with fetch.wait.max.ms={FETCH_WAIT_MS} (the mock broker does not wake a waiting fetch early);"
        );
        println!(
            "  the producer stays {} MiB ahead (it keeps ~5 MiB a partition)",
            WINDOW >> 20
        );
        println!();
        println!(
            "  workload                                      kres-kafka          limit, same run                    ratio  target"
        );
        for row in &rows {
            println!("{row}");
        }
        let during: Vec<String> = peaks
            .iter()
            .map(|(name, m)| format!("{name} {:.1} MiB", m.peak_rss_mib))
            .collect();
        let worst = peaks
            .iter()
            .filter(|(name, _)| *name != "B")
            .map(|(_, m)| m.peak_rss_mib)
            .fold(0.0, f64::max);
        println!(
            "  peak RSS of the daemon during the workload: {}   <= {TARGET_RSS_MIB} MiB (A, S): {}",
            during.join(", "),
            met(worst <= TARGET_RSS_MIB)
        );
        let start: Vec<String> = peaks
            .iter()
            .map(|(name, m)| format!("{name} {:.1} MiB", m.start_peak_mib))
            .collect();
        println!(
            "  peak RSS from start-up to the first message (guest compiled ahead): {}",
            start.join(", ")
        );
        println!(
            "  peak RSS while compiling the guest (a first start without `guest compile`, a new guest): {compile_peak:.1} MiB"
        );
        let batches: Vec<String> = peaks
            .iter()
            .map(|(name, m)| format!("{name} {}", m.batches))
            .collect();
        println!("  batches (each one group commit): {}", batches.join(", "));
        println!();
    }
    if runs(Part::Cost) {
        cost::run(scratch.path(), options.chunk).await?;
    }
    Ok(())
}

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

fn met(ok: bool) -> &'static str {
    if ok { "met" } else { "NOT met" }
}

/// A part of the benchmark, for `--only`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Part {
    A,
    B,
    S,
    /// The guest's cost under WebAssembly against native.
    Cost,
}

/// When the daemon is done with a workload.
enum Done {
    /// This file is in place (with this size, unless 0).
    File(&'static str, u64),
    /// This many files were committed.
    Committed(usize),
}

/// What a run through the daemon measured.
struct Measured {
    time: Duration,
    /// Peak resident memory from start-up to ready (compiling the guest), in MiB.
    start_peak_mib: f64,
    /// Peak resident memory during the workload, in MiB.
    peak_rss_mib: f64,
    batches: u64,
    files: PathBuf,
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
        cluster: &MockCluster<'_, impl rdkafka::ClientContext>,
        dir: &Path,
        topic: &str,
        manager_files: &[PathBuf],
    ) -> anyhow::Result<Daemon> {
        cluster
            .create_topic(topic, 1, 1)
            .context("creating a topic")?;
        let files = dir.join("files");
        std::fs::create_dir_all(&files)?;
        let socket = dir.join("kres-api.sock");
        let resolver = dir.join("config.yaml");
        std::fs::write(
            &resolver,
            format!(
                "hostname: {ME}\nmanagement:\n  unix-socket: {}\n",
                socket.display()
            ),
        )?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let server = cluster
            .bootstrap_servers()
            .split(',')
            .next()
            .unwrap_or_default()
            .replacen(':', "@", 1);
        std::fs::write(
            dir.join("kres-kafka.yaml"),
            format!(
                "kafka:\n  enable: true\n  topic: {topic}\n  server: {server}\n  files-dir: {}\n  state-dir: {}\n  \
                 resolver-config: [{}, {}]\n  metrics-address: 127.0.0.1@{port}\n  librdkafka:\n    fetch.wait.max.ms: {FETCH_WAIT_MS}\n",
                files.display(),
                dir.join("state").display(),
                resolver.display(),
                files.join("config.yaml").display(),
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
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
            .map_or(f64::NAN, |kb| kb / 1024.0)
    }
}

/// `workload` through a fresh daemon on topic `topic`.
async fn through_daemon(
    cluster: &MockCluster<'static, rdkafka::producer::DefaultProducerContext>,
    scratch: &Path,
    compiled: &Path,
    topic: &str,
    workload: &dyn Workload,
    done: Done,
    manager_files: &[PathBuf],
) -> anyhow::Result<Measured> {
    let dir = scratch.join(topic);
    std::fs::create_dir_all(&dir)?;
    // The whole cache: its entries are tagged with a key of its own.
    let cache = dir.join("state/guest-cache");
    std::fs::create_dir_all(&cache)?;
    for entry in std::fs::read_dir(compiled.parent().unwrap_or(scratch))? {
        let entry = entry?;
        std::fs::copy(entry.path(), cache.join(entry.file_name()))?;
    }
    let daemon = Daemon::start(cluster, &dir, topic, manager_files)?;
    let servers = cluster.bootstrap_servers();
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
            value: b"warm\n".to_vec(),
        };
        produce(
            &servers,
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
    let poller = {
        let (consumed, stop, port) = (Arc::clone(&consumed), Arc::clone(&stop), daemon.port);
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let bytes = metric_of(&scrape(port), "kres_kafka_received_bytes_total");
                consumed.store(bytes.saturating_sub(baseline), Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(1));
            }
        })
    };
    let t0 = Instant::now();
    let result = std::thread::scope(|scope| {
        let producer = scope.spawn(|| produce(&servers, topic, workload, &consumed));
        let finished = loop {
            let finished = match &done {
                Done::File(name, size) => std::fs::metadata(daemon.files.join(name))
                    .is_ok_and(|m| *size == 0 || m.len() == *size),
                Done::Committed(n) => {
                    daemon.metric("kres_kafka_messages_total{outcome=\"committed\"}")
                        >= committed_before + *n as u64
                }
            };
            if finished {
                break Ok(t0.elapsed());
            }
            if t0.elapsed() > PATIENCE || daemon_exited(&daemon) {
                break Err(anyhow::anyhow!(
                    "the daemon did not finish: see {}",
                    dir.join("daemon.log").display()
                ));
            }
            std::thread::sleep(Duration::from_micros(500));
        };
        producer.join().expect("the producer panicked")?;
        finished
    });
    stop.store(true, Ordering::Relaxed);
    let _ = poller.join();
    let time = result?;
    Ok(Measured {
        time,
        start_peak_mib: start_peak,
        peak_rss_mib: daemon.peak_rss_mib(),
        batches: daemon.metric("kres_kafka_batches_total") - batches_before,
        files: daemon.files.clone(),
    })
}

fn daemon_exited(daemon: &Daemon) -> bool {
    // `try_wait` needs `&mut`; the pid's status file is enough here.
    !Path::new(&format!("/proc/{}", daemon.child.id())).exists()
}

/// One record.
struct Single(Record);

impl Workload for Single {
    fn count(&self) -> usize {
        1
    }
    fn record(&self, _: usize) -> Record {
        Record {
            headers: self.0.headers.clone(),
            value: self.0.value.clone(),
        }
    }
}

/// Where the limit's consumer puts values.
enum Sink {
    File(PathBuf),
    Discard,
}

/// The limit: consume `workload` from `topic` without kres-kafka, into `sink`.
fn raw(
    servers: &str,
    cluster: &MockCluster<'static, rdkafka::producer::DefaultProducerContext>,
    topic: &str,
    workload: &dyn Workload,
    sink: Sink,
) -> anyhow::Result<Duration> {
    cluster
        .create_topic(topic, 1, 1)
        .context("creating a topic")?;
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

fn sha256_file(path: &Path) -> anyhow::Result<String> {
    let mut file = std::fs::File::open(path)?;
    let mut hasher = Sha256::new();
    std::io::copy(&mut file, &mut hasher)?;
    Ok(kres_kafka_guest::durable::hex(&hasher.finalize()))
}

fn metric_of(text: &str, name: &str) -> u64 {
    text.lines()
        .filter(|l| l.starts_with(name))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

/// `GET /metrics` on 127.0.0.1:`port`: the body (empty when it cannot be reached).
fn scrape(port: u16) -> String {
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
fn precompile(scratch: &Path) -> anyhow::Result<(PathBuf, f64)> {
    use crate::sandbox::{DEFAULT_GUEST, Sandbox, SandboxConfig};
    let _ = std::fs::write("/proc/self/clear_refs", "5");
    let before = own_rss_mib("VmRSS:");
    let sandbox = Sandbox::new(SandboxConfig {
        cache_dir: Some(scratch.join("guest-cache")),
        ..SandboxConfig::new(scratch)
    })?;
    let compiled = sandbox.precompile(DEFAULT_GUEST, "embedded")?;
    let peak = own_rss_mib("VmHWM:") - before;
    crate::system::release_free_memory();
    Ok((compiled, peak))
}

/// A figure of this process's `/proc/self/status`, in MiB.
fn own_rss_mib(field: &str) -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

/// What the disk allows workload B: each file written to a temporary and renamed into place in
/// a fresh directory, natively, then one flush: no Kafka, no judging, no journal.
fn write_and_rename(dir: &Path, configs: &Configs) -> anyhow::Result<Duration> {
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
