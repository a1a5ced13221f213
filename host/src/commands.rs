//! The asynchronous commands' edges: runtime, signals, configuration, exit status.

use crate::cli::{DemoArgs, GuestCommand, RunArgs, SendArgs};
use crate::config::{Config, Server};
use anyhow::Context as _;
use std::future::Future;
use std::process::ExitCode;
use tokio_util::sync::CancellationToken;

/// Run `future` on a multi-threaded runtime (the guest runs on its blocking pool).
pub fn block_on(
    future: impl Future<Output = anyhow::Result<ExitCode>>,
) -> anyhow::Result<ExitCode> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("kres-kafka")
        .build()
        .context("starting the async runtime")?
        .block_on(future)
}

/// `kres-kafka run`.
pub async fn run(args: RunArgs) -> anyhow::Result<ExitCode> {
    let mut config = Config::load(&args.configs)?;
    if !config.kafka.enable {
        println!(
            "Kafka delivery is disabled (kafka.enable is false in {}): nothing to do",
            show(&args.configs)
        );
        return Ok(ExitCode::SUCCESS);
    }
    if let Some(guest) = args.guest {
        config.kafka.guest = Some(guest);
    }
    let shutdown = CancellationToken::new();
    stop_on_signals(shutdown.clone())?;
    crate::daemon::run(config, shutdown).await?;
    Ok(ExitCode::SUCCESS)
}

/// `kres-kafka send`.
pub async fn send(args: SendArgs) -> anyhow::Result<ExitCode> {
    let mut kafka = if args.configs.is_empty() {
        crate::config::Kafka::default()
    } else {
        Config::load(&args.configs)?.kafka
    };
    if !args.server.is_empty() {
        kafka.server = args
            .server
            .iter()
            .map(|s| Server::parse(s))
            .collect::<Result<_, _>>()
            .map_err(anyhow::Error::msg)?;
    }
    if let Some(topic) = args.topic {
        kafka.topic = topic;
    }
    let chunk_size = args
        .chunk_size
        .map_or(kafka.chunk_size.as_u64(), |s| s.as_u64());
    anyhow::ensure!(chunk_size > 0, "--chunk-size must be at least 1 byte");
    let mut files = Vec::new();
    for path in &args.files {
        let base = path
            .file_name()
            .and_then(|n| n.to_str())
            .with_context(|| format!("{} has no usable file name", path.display()))?;
        let name = match &args.dest_dir {
            Some(dir) => format!("{}/{base}", dir.trim_end_matches('/')),
            None => base.to_owned(),
        };
        kres_kafka_guest::name::check(&name)
            .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        std::fs::File::open(path).with_context(|| format!("reading {}", path.display()))?;
        files.push(crate::send::Outgoing {
            path: path.clone(),
            name,
        });
    }

    let producer = crate::send::producer(&kafka).context("creating the Kafka producer")?;
    let progress = crate::send::progress_bar(&files);
    let sent = crate::send::send(
        &producer,
        &kafka.topic,
        &args.hostname,
        &files,
        chunk_size,
        &progress,
    )
    .await;
    progress.finish_and_clear();
    for (name, size, chunks) in &sent.delivered {
        println!(
            "delivered {name} ({size} bytes, {chunks} chunks) to {}",
            args.hostname
        );
    }
    if sent.failed.is_empty() {
        return Ok(ExitCode::SUCCESS);
    }
    for (name, reason) in &sent.failed {
        eprintln!("kres-kafka: not delivered: {name}: {reason}");
    }
    Ok(ExitCode::from(1))
}

/// `kres-kafka demo`.
pub async fn demo(args: DemoArgs) -> anyhow::Result<ExitCode> {
    crate::demo::run(args.keep).await?;
    Ok(ExitCode::SUCCESS)
}

/// Cancel `shutdown` on SIGTERM or SIGINT; a second signal exits at once.
fn stop_on_signals(shutdown: CancellationToken) -> anyhow::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    tokio::spawn(async move {
        for round in 0.. {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
            if round > 0 {
                tracing::warn!("second signal: exiting without finishing");
                std::process::exit(130);
            }
            tracing::info!("signal received: finishing the message in progress");
            shutdown.cancel();
        }
    });
    Ok(())
}

fn show(paths: &[std::path::PathBuf]) -> String {
    paths
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// `kres-kafka guest check` and `kres-kafka guest compile`.
pub fn guest(command: GuestCommand) -> anyhow::Result<ExitCode> {
    use crate::sandbox::{Sandbox, SandboxConfig};
    // The self-test runs in a scratch directory of its own: no files directory is needed.
    let scratch = tempfile::tempdir().context("creating a scratch directory")?;
    let (path, cache_dir) = match &command {
        GuestCommand::Check(args) => (args.path.clone(), None),
        GuestCommand::Compile(args) => {
            let dir = match &args.cache_dir {
                Some(dir) => dir.clone(),
                None => Config::load(&args.configs)?.kafka.guest_cache_dir(),
            };
            (args.path.clone(), Some(dir))
        }
    };
    let sandbox = Sandbox::new(SandboxConfig {
        cache_dir,
        ..SandboxConfig::new(scratch.path())
    })?;
    let bytes =
        std::fs::read(&path).with_context(|| format!("reading guest {}", path.display()))?;
    let started = std::time::Instant::now();
    let guest = match sandbox.load(&bytes, &path.display().to_string()) {
        Ok(guest) => guest,
        Err(e) => {
            eprintln!("kres-kafka: refused: {e}");
            return Ok(ExitCode::from(1));
        }
    };
    let took = started.elapsed();
    println!(
        "ok: {}: version {:?}, sha256 {}, checked in {took:.0?}",
        path.display(),
        guest.version(),
        guest.digest()
    );
    if matches!(command, GuestCommand::Compile(_)) {
        let artifact = sandbox.precompile(&bytes, &path.display().to_string())?;
        println!("compiled into {}", artifact.display());
    }
    Ok(ExitCode::SUCCESS)
}
