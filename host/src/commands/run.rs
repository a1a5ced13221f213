//! `kres-kafka run`: the daemon, with the process's signals: SIGTERM and SIGINT stop it (a
//! second one exits at once), SIGHUP asks it to check the guest file. `run --check`: the
//! daemon's preflight alone.

use crate::config::{Config, DEFAULT_CONFIG_FILES};
use anyhow::Context as _;
use std::path::PathBuf;
use std::process::ExitCode;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// Arguments of `kres-kafka run`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// A config file; repeat to merge several, as the manager does [default: those of
    /// /etc/knot-resolver/config.yaml (the resolver's) and /etc/knot-resolver/kres-kafka.yaml
    /// (kres-kafka's own) that exist].
    #[arg(long = "config", short = 'c', value_name = "PATH")]
    pub configs: Vec<PathBuf>,

    /// A guest component to use instead of `kafka.guest` or the embedded one.
    #[arg(long, value_name = "PATH")]
    pub guest: Option<PathBuf>,

    /// Check what delivery needs (the files and state directories writable by this user, the
    /// manager, the broker and both topics, the trusted keys), print what was found, and exit:
    /// 0 when nothing is wrong, 1 with every problem listed. Takes no lock, changes nothing.
    #[arg(long)]
    pub check: bool,
}

/// Run `kres-kafka run`.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let configs = super::existing_or_default(&args.configs, &DEFAULT_CONFIG_FILES);
    if configs.is_empty() {
        anyhow::bail!(
            "none of the default config files exists ({}): pass --config",
            DEFAULT_CONFIG_FILES.join(", ")
        );
    }
    let mut config = Config::load(&configs)?;
    // The files the configuration names are checked at every start, even a disabled one: an
    // operator who just wrote them wants to hear what is wrong now.
    for warning in crate::tls::check_files(&config.kafka.tls)? {
        tracing::warn!("{warning}");
    }
    for warning in crate::tls::check_sasl(config.kafka.sasl.as_ref())? {
        tracing::warn!("{warning}");
    }
    if args.check {
        return check(&config, &configs);
    }
    if !config.kafka.enable {
        println!(
            "Kafka delivery is disabled (kafka.enable is false in {}): nothing to do",
            super::show(&configs)
        );
        return Ok(ExitCode::SUCCESS);
    }
    if let Some(guest) = args.guest {
        config.kafka.guest = Some(guest);
    }
    super::block_on(async {
        let shutdown = CancellationToken::new();
        stop_on_signals(shutdown.clone())?;
        let recheck = recheck_on_hangup()?;
        crate::daemon::run(config, shutdown, recheck).await
    })?;
    Ok(ExitCode::SUCCESS)
}

/// `run --check`: the preflight, a line per check, problems marked; exit 1 when any.
fn check(config: &Config, configs: &[PathBuf]) -> anyhow::Result<ExitCode> {
    use crate::daemon::preflight::{self, Severity};
    println!(
        "checking kres-kafka's configuration from {}",
        super::show(configs)
    );
    if !config.kafka.enable {
        println!("note: kafka.enable is false: `run` would do nothing");
    }
    let report = super::block_on(async { Ok(preflight::check(config).await) })?;
    for found in &report.passed {
        println!("ok: {found}");
    }
    for problem in &report.problems {
        let what = match problem.severity {
            Severity::Stops => "stops delivery",
            Severity::Delays => "delays delivery",
        };
        println!("problem ({what}): {}", problem.text);
    }
    if report.problems.is_empty() {
        println!("no problem found");
        return Ok(ExitCode::SUCCESS);
    }
    eprintln!("kres-kafka: {} problem(s) found", report.problems.len());
    Ok(ExitCode::from(1))
}

/// Cancel `shutdown` on SIGTERM or SIGINT; a second signal exits at once.
fn stop_on_signals(shutdown: CancellationToken) -> anyhow::Result<()> {
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

/// One value per SIGHUP.
fn recheck_on_hangup() -> anyhow::Result<mpsc::UnboundedReceiver<()>> {
    let mut hangup = signal(SignalKind::hangup()).context("installing the SIGHUP handler")?;
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while hangup.recv().await.is_some() {
            tracing::info!("SIGHUP: checking the guest file");
            if tx.send(()).is_err() {
                return;
            }
        }
    });
    Ok(rx)
}
