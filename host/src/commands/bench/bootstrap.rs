//! `bench bootstrap`: a resolver that starts with nothing (an empty files directory and state
//! directory) against a fleet state already in the state topic: `files` files of ours, block
//! lists and configurations, `size` bytes in all, published by `kres-kafka send`. The time
//! from its start to every file in place, and its peak resident memory, beside the limit
//! measured in the same run: consuming the same records (the state topic's partition) and
//! writing each value to its file, every file fsynced once.
//!
//! The state of one resolver is one partition of the state topic, and librdkafka's mock
//! cluster keeps about 5 MiB a partition: the bench runs against a real Kafka-protocol broker,
//! `--broker`, or nisshi started here (`$NISSHI`, `target/tools/bin/nisshi` or `nisshi` on the
//! `PATH`, as the test suite installs it).

use super::harness::{self, Broker, Done, Topic};
use super::throughput::{ME, PATIENCE};
use super::workload::block_list;
use anyhow::{Context as _, bail};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// What `bench bootstrap` measures.
pub struct Options {
    pub files: usize,
    pub size: u64,
    pub dir: PathBuf,
    pub broker: Option<String>,
}

/// The target: the limit's share the daemon reaches, and its peak memory.
const TARGET_RATIO: f64 = 0.8;
const TARGET_RSS_MIB: f64 = 64.0;

/// One configuration for every this many files.
const CONFIG_EVERY: usize = 10;

pub async fn run(options: Options) -> anyhow::Result<()> {
    let scratch = tempfile::Builder::new()
        .prefix("kres-kafka-bench-bootstrap-")
        .tempdir_in(&options.dir)?;
    let nisshi;
    let broker = match &options.broker {
        Some(servers) => Broker::external(servers),
        None => {
            nisshi = Nisshi::start(scratch.path())?;
            Broker::external(&nisshi.servers())
        }
    };
    let topic = broker.topic("bootstrap");
    let state = format!("{topic}-state");
    // The state topic is `send`'s to create, compacted, with the stream's partition count.
    broker.create_topic(&topic, 2)?;

    // The fleet's files, published by `send` as a publisher does.
    let outbox = scratch.path().join("outbox");
    std::fs::create_dir_all(&outbox)?;
    let configs = options.files / CONFIG_EVERY;
    let lists = options.files - configs;
    let list_size = (options.size / lists.max(1) as u64) as usize;
    let mut expected = Vec::new();
    let mut paths = Vec::new();
    for i in 0..options.files {
        let (name, content) = if i % CONFIG_EVERY == CONFIG_EVERY - 1 {
            (
                format!("conf-{i:04}.yaml"),
                format!("workers: {}\n", 1 + i % 7).into_bytes(),
            )
        } else {
            (format!("list-{i:04}.rpz"), block_list(list_size, i as u64))
        };
        let path = outbox.join(&name);
        std::fs::write(&path, &content)?;
        expected.push((name, content.len() as u64));
        paths.push(path);
    }
    let bytes: u64 = expected.iter().map(|(_, size)| size).sum();
    eprintln!(
        "bench bootstrap: {} files ({lists} block lists, {configs} configurations), {bytes} bytes, on {}",
        options.files,
        broker.describe()
    );
    let published = Instant::now();
    let server = broker
        .servers()
        .split(',')
        .next()
        .unwrap_or_default()
        .to_owned();
    let out = Command::new(std::env::current_exe()?)
        .args([
            "send",
            "--server",
            &server,
            "--topic",
            &topic,
            "--hostname",
            ME,
        ])
        .args(["--timeout", "120s"])
        .args(&paths)
        .stdout(Stdio::null())
        .output()
        .context("running send")?;
    if !out.status.success() {
        bail!("send failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    eprintln!("  published in {:.1} s", published.elapsed().as_secs_f64());

    let (compiled, _) = harness::precompile(scratch.path())?;
    // The limit: the same records consumed and written, each file fsynced once.
    let limit_dir = scratch.path().join("limit");
    std::fs::create_dir_all(&limit_dir)?;
    let t0 = Instant::now();
    let done = harness::raw_backlog(broker.servers(), &state, 2, Some(&limit_dir), bytes, || {})?;
    let limit = done.duration_since(t0);
    drop(std::fs::remove_dir_all(&limit_dir));

    let ours = harness::catch_up(
        &broker,
        scratch.path(),
        &compiled,
        "daemon",
        Topic {
            name: &topic,
            partitions: 2,
            settings: "",
        },
        Done::Files(expected),
        0,
    )
    .await?;
    let ratio = limit.as_secs_f64() / ours.time.as_secs_f64();
    let mb = |d: Duration| bytes as f64 / 1e6 / d.as_secs_f64();
    println!(
        "bootstrap: a resolver starting from nothing, {} files, {bytes} bytes in the state",
        options.files
    );
    println!(
        "  limit (consume, write, fsync each file)  {:>7.2} s  {:>7.1} MB/s",
        limit.as_secs_f64(),
        mb(limit)
    );
    println!(
        "  kres-kafka (start to every file)          {:>7.2} s  {:>7.1} MB/s",
        ours.time.as_secs_f64(),
        mb(ours.time)
    );
    println!(
        "  share of the limit {ratio:.2} (target >= {TARGET_RATIO}: {}), peak RSS {:.1} MiB (target <= {TARGET_RSS_MIB}: {})",
        met(ratio >= TARGET_RATIO),
        ours.peak_rss_mib,
        met(ours.peak_rss_mib <= TARGET_RSS_MIB)
    );
    if ours.time > PATIENCE {
        bail!("the daemon took longer than {PATIENCE:?}");
    }
    Ok(())
}

fn met(ok: bool) -> &'static str {
    if ok { "met" } else { "NOT met" }
}

/// nisshi, a Kafka-protocol broker, on a free port with its data in `dir`.
struct Nisshi {
    child: Child,
    port: u16,
}

impl Nisshi {
    fn start(dir: &Path) -> anyhow::Result<Nisshi> {
        let binary = std::env::var_os("NISSHI")
            .map(PathBuf::from)
            .or_else(|| std::fs::canonicalize("target/tools/bin/nisshi").ok())
            .or_else(|| {
                std::env::split_paths(&std::env::var_os("PATH")?)
                    .map(|d| d.join("nisshi"))
                    .find(|p| p.is_file())
            })
            .context(
                "bench bootstrap needs a broker that keeps a few hundred MiB in a partition: \
                 --broker HOST:PORT, or nisshi ($NISSHI, target/tools/bin/nisshi, or on the PATH; \
                 `cargo test --test broker` installs it)",
            )?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let url = format!("tcp://127.0.0.1:{port}");
        let data = dir.join("nisshi");
        std::fs::create_dir_all(&data)?;
        let log_path = data.join("nisshi.log");
        let log = std::fs::File::create(&log_path)?;
        let child = Command::new(&binary)
            .args(["--listener-url", &url, "--advertised-listener-url", &url])
            .args(["--storage-engine", "sqlite:///nisshi.db"])
            .args(["--cluster-id", "kres-kafka-bench"])
            .env("RUST_LOG", "info")
            .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
            .current_dir(&data)
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {}", binary.display()))?;
        let mut nisshi = Nisshi { child, port };
        let started = Instant::now();
        loop {
            let text = std::fs::read_to_string(&log_path).unwrap_or_default();
            if text.contains("ready in") {
                return Ok(nisshi);
            }
            if let Some(status) = nisshi.child.try_wait()? {
                bail!("nisshi exited ({status}) before it was ready:\n{text}");
            }
            if started.elapsed() > Duration::from_secs(60) {
                bail!("nisshi was not ready within 60 s:\n{text}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn servers(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

impl Drop for Nisshi {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
