//! `kres-kafka validate`: judge configuration and RPZ files exactly as the daemon would before
//! committing them, and kres-kafka's own configuration (a file with a `kafka` section) exactly
//! as `run` reads it. An RPZ file is judged as the resolver's zone loader judges it. The guest
//! parses a configuration as the manager does and checks it against the
//! resolver's schema (the manager's, else the cached or configured one, else the embedded
//! 6.4.2 one), then the resolver's own validator (`kresctl validate`, when configured or on
//! `PATH`) checks it together with the other files the manager merges.

use crate::config::{Config, DEFAULT_CONFIG_FILES};
use crate::manager::Manager;
use crate::outcome::{Context, GuestError, RejectKind, Rejection};
use crate::resolver::{self, ResolverAccess};
use crate::sandbox::{Sandbox, SandboxConfig};
use anyhow::Context as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

/// Arguments of `kres-kafka validate`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// kres-kafka's config files, as for `run` [default: those of `run` that exist, else
    /// every default].
    #[arg(long = "config", short = 'c', value_name = "PATH")]
    pub configs: Vec<PathBuf>,

    /// Configuration and RPZ files to judge; each is judged under its own file name.
    #[arg(value_name = "FILE", required = true)]
    pub files: Vec<PathBuf>,
}

/// Run `kres-kafka validate`: exit 0 when every file is valid, 1 when one is not, 2 when one
/// cannot be judged.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let configs = super::existing_or_default(&args.configs, &DEFAULT_CONFIG_FILES);
    let config = if configs.is_empty() {
        Config::defaults()?
    } else {
        Config::load(&configs)?
    };
    let kafka = &config.kafka;
    let manager = Manager::new(config.management.clone(), kafka.force);
    let schema = super::block_on(async {
        anyhow::Ok(
            resolver::initial_schema(
                &manager,
                &kafka.state_dir.join(crate::daemon::SCHEMA_CACHE),
                false,
                kafka.schema_file.as_deref(),
            )
            .await,
        )
    })?;
    // The guest writes nothing when it judges; it gets an empty scratch directory anyway.
    let scratch = tempfile::tempdir().context("creating a scratch directory")?;
    let sandbox = Sandbox::new(SandboxConfig {
        resolver: Arc::new(ResolverAccess::new(schema, crate::daemon::validator(kafka))),
        memory_limit: kafka.guest_memory_limit,
        time_limit: kafka.guest_time_limit,
        ..SandboxConfig::new(scratch.path())
    })?;
    let guest = sandbox.load_configured(kafka.guest.as_deref())?;
    let ctx = Context {
        hostname: config.hostname.clone(),
        zone_id: kafka.zone_id.clone(),
        limits: kafka.limits,
        now: crate::system::unix_now(),
        trust: kafka.trust.clone(),
    };

    let mut status = ExitCode::SUCCESS;
    let mut invalid = false;
    for path in &args.files {
        let shown = path.display();
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
            println!("{shown}: cannot judge: it has no usable file name");
            status = ExitCode::from(2);
            continue;
        };
        if kres_kafka_guest::config::Format::of(name).is_none()
            && !kres_kafka_guest::judge::is_zone(name)
        {
            println!(
                "{shown}: neither a configuration file (.json, .yaml, .yml) nor an RPZ file (.rpz): delivered as it is"
            );
            continue;
        }
        let content = match std::fs::read(path) {
            Ok(content) => content,
            Err(e) => {
                println!("{shown}: cannot judge: reading it: {e}");
                status = ExitCode::from(2);
                continue;
            }
        };
        if is_own_configuration(&content) {
            // kres-kafka's own file: judged exactly as `run` reads it, nothing started.
            match Config::load(std::slice::from_ref(path)) {
                Ok(_) => {
                    println!("{shown}: valid (kres-kafka's own configuration, as run reads it)")
                }
                Err(e) => {
                    println!("{shown}: invalid: {e}");
                    invalid = true;
                }
            }
            continue;
        }
        let started = std::time::Instant::now();
        let verdict = guest.check_config(&ctx, name, &content);
        tracing::debug!(file = %shown, took = ?started.elapsed(), "judged");
        match verdict {
            Ok(()) => println!("{shown}: valid"),
            Err(GuestError::Refused(Rejection {
                kind: RejectKind::Io,
                reason,
            })) => {
                println!("{shown}: cannot judge: {reason}");
                status = ExitCode::from(2);
            }
            Err(GuestError::Refused(Rejection { reason, .. })) => {
                println!("{shown}: invalid: {reason}");
                invalid = true;
            }
            Err(GuestError::Failed(failure)) => {
                println!("{shown}: cannot judge: {failure}");
                status = ExitCode::from(2);
            }
        }
    }
    if invalid && status == ExitCode::SUCCESS {
        status = ExitCode::from(1);
    }
    Ok(status)
}

/// Whether `content` is kres-kafka's own configuration: a mapping with a `kafka` section (a
/// stock Knot Resolver 6 manager refuses that key, so no resolver configuration has one).
fn is_own_configuration(content: &[u8]) -> bool {
    serde_yaml_ng::from_slice::<serde_yaml_ng::Value>(content)
        .is_ok_and(|v| v.as_mapping().is_some_and(|m| m.contains_key("kafka")))
}
