//! `kres-kafka guest check` and `kres-kafka guest compile`: what an operator runs before
//! deploying a new guest. Loading the config here reads no certificate: an expired client
//! certificate does not keep a guest from being compiled.

use crate::config::{Config, DEFAULT_CONFIG_FILES};
use crate::sandbox::{Sandbox, SandboxConfig};
use anyhow::Context as _;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Compile, check against the world, self-test; print the version. Exit 1 if refused.
    Check(CheckArgs),
    /// Compile into the cache the daemon uses, so that starting or swapping to it is fast;
    /// without a path, the embedded guest (what a daemon without `kafka.guest` runs).
    Compile(CompileArgs),
}

/// Arguments of `kres-kafka guest check`.
#[derive(Debug, clap::Args)]
pub struct CheckArgs {
    /// The guest component.
    #[arg(value_name = "PATH")]
    pub path: PathBuf,
}

/// Arguments of `kres-kafka guest compile`.
#[derive(Debug, clap::Args)]
pub struct CompileArgs {
    /// The guest component [default: the embedded guest].
    #[arg(value_name = "PATH")]
    pub path: Option<PathBuf>,

    /// The resolver config whose guest cache (in `kafka.state-dir`, or its default) to fill.
    #[arg(long = "config", short = 'c', value_name = "PATH")]
    pub configs: Vec<PathBuf>,

    /// The cache directory, overriding the config's.
    #[arg(long, value_name = "DIR")]
    pub cache_dir: Option<PathBuf>,
}

/// `kres-kafka guest check` and `kres-kafka guest compile`.
pub fn run(command: Command) -> anyhow::Result<ExitCode> {
    // The self-test runs in a scratch directory of its own: no files directory is needed.
    let scratch = tempfile::tempdir().context("creating a scratch directory")?;
    let (path, cache_dir) = match &command {
        Command::Check(args) => (Some(args.path.clone()), None),
        Command::Compile(args) => {
            let dir = match &args.cache_dir {
                Some(dir) => dir.clone(),
                None => {
                    let configs = super::existing_or_default(&args.configs, &DEFAULT_CONFIG_FILES);
                    Config::load(&configs)?.kafka.guest_cache_dir()
                }
            };
            (args.path.clone(), Some(dir))
        }
    };
    let sandbox = Sandbox::new(SandboxConfig {
        cache_dir,
        ..SandboxConfig::new(scratch.path())
    })?;
    let (bytes, origin) = match &path {
        Some(path) => (
            std::fs::read(path).with_context(|| format!("reading guest {}", path.display()))?,
            path.display().to_string(),
        ),
        None => (
            crate::sandbox::DEFAULT_GUEST.to_vec(),
            "embedded".to_owned(),
        ),
    };
    let started = std::time::Instant::now();
    let guest = match sandbox.load(&bytes, &origin) {
        Ok(guest) => guest,
        Err(e) => {
            eprintln!("kres-kafka: refused: {e}");
            return Ok(ExitCode::from(1));
        }
    };
    let took = started.elapsed();
    println!(
        "ok: {origin}: version {:?}, sha256 {}, checked in {took:.0?}",
        guest.version(),
        guest.digest()
    );
    if matches!(command, Command::Compile(_)) {
        let artifact = sandbox.precompile(&bytes, &origin)?;
        println!("compiled into {}", artifact.display());
    }
    Ok(ExitCode::SUCCESS)
}
