//! The command line: one module per command, each with its arguments (the only place clap
//! types appear) and a `run` of the same shape, `fn run(args) -> anyhow::Result<ExitCode>`.
//! Exit status: 0 success, 1 the command's own "no" (a message rejected, a file not
//! delivered, a guest refused), 2 an error that kept it from working.

pub mod apply;
pub mod bench;
pub mod demo;
pub mod generate;
pub mod guest;
pub mod keygen;
pub mod run;
pub mod send;
pub mod status;
pub mod validate;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use std::future::Future;
use std::path::PathBuf;
use std::process::ExitCode;

/// Delivers files from Kafka to Knot Resolver 6 through a sandboxed WebAssembly guest.
#[derive(Debug, Parser)]
#[command(name = "kres-kafka", version, about)]
pub struct Cli {
    /// Log level (error, warn, info, debug, trace); `RUST_LOG` overrides it.
    #[arg(long, global = true, value_name = "LEVEL")]
    pub log_level: Option<String>,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Feed one message to the guest, as if it came from Kafka, and print the outcome as JSON.
    ///
    /// Exit status: 0 when the message was skipped, stored, committed or unchanged; 1 when it
    /// was rejected (the JSON says why); 2 when the guest or the arguments are unusable.
    Apply(apply::Args),

    /// Run the daemon: consume the topic and deliver files to this resolver.
    ///
    /// Reads the resolver's own config files (merged in order). SIGTERM or SIGINT finishes the
    /// message in progress, commits offsets, serves the pending manager call and exits 0.
    Run(run::Args),

    /// Publish files to one resolver or a zone: other files first, configuration last, in
    /// chunks.
    ///
    /// Exit status: 0 when the broker took every file (and, with `--wait`, every expected
    /// resolver committed it and had its reload or renew served); 1 otherwise, naming each
    /// resolver and file with the reason.
    Send(send::Args),

    /// Show what every resolver last reported on the status topic: one row per resolver and
    /// file.
    Status(status::Args),

    /// Show kres-kafka working with nothing installed: an in-process broker, a stand-in
    /// manager, a published RPZ file and configuration, delivered and reloaded.
    Demo(demo::Args),

    /// Judge configuration and RPZ files exactly as the daemon would before committing them.
    ///
    /// Prints one line per file: valid, or the first error. Exit status: 0 when every file is
    /// valid, 1 when one is not, 2 when one cannot be judged.
    Validate(validate::Args),

    /// Check a guest component, or compile it into the cache ahead of a deployment.
    #[command(subcommand)]
    Guest(guest::Command),

    /// Make a publisher's signing key for `send --sign`, and print the line resolvers trust
    /// it by (`kafka.trusted-keys`).
    Keygen(keygen::Args),

    /// Measure kres-kafka's figures on this machine and print them.
    Bench(bench::Args),

    /// Write the man pages and shell completions (for packaging).
    #[command(hide = true)]
    Generate(generate::Args),
}

impl Cli {
    /// The log level: `--log-level`, else `info` for the daemon (operators want its start-up
    /// and commits in the journal), else the quiet default.
    pub fn log_level(&self) -> Option<&str> {
        self.log_level
            .as_deref()
            .or(matches!(self.command, Command::Run(_)).then_some("info"))
    }

    /// Run the command.
    pub fn run(self) -> anyhow::Result<ExitCode> {
        match self.command {
            Command::Apply(args) => apply::run(args),
            Command::Run(args) => run::run(args),
            Command::Send(args) => send::run(args),
            Command::Status(args) => status::run(args),
            Command::Demo(args) => demo::run(args),
            Command::Validate(args) => validate::run(args),
            Command::Guest(command) => guest::run(command),
            Command::Keygen(args) => keygen::run(args),
            Command::Bench(args) => bench::run(args),
            Command::Generate(args) => generate::run(args),
        }
    }
}

/// Run `future` on a multi-threaded runtime (the guest runs on its blocking pool).
fn block_on<T>(future: impl Future<Output = anyhow::Result<T>>) -> anyhow::Result<T> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("kres-kafka")
        .build()
        .context("starting the async runtime")?
        .block_on(future)
}

/// Where a client command (`send`, `status`) finds its brokers: kres-kafka's config files,
/// overridden on the command line.
#[derive(Debug, clap::Args)]
pub struct ClientArgs {
    /// Config file(s) whose `kafka` section gives the brokers, topic (and status topic), TLS
    /// and chunk size; repeat to merge several [default: those of
    /// /etc/knot-resolver/config.yaml and /etc/knot-resolver/kres-kafka.yaml that exist, as
    /// `run` reads them].
    #[arg(long = "config", short = 'c', value_name = "PATH")]
    pub configs: Vec<PathBuf>,

    /// Broker(s), overriding `kafka.server`: `host:port`, `host@port`, `[ipv6]:port`, or a
    /// host alone (port 9092); repeat for more.
    #[arg(long, value_name = "HOST:PORT", value_parser = parse_server)]
    pub server: Vec<crate::config::Server>,

    /// Topic, overriding `kafka.topic` (the status topic follows it unless configured).
    #[arg(long)]
    pub topic: Option<String>,
}

impl ClientArgs {
    /// The `kafka` section of the config files (`--config`, else the default files `run`
    /// reads, else the defaults), their TLS files checked, `--server` and `--topic` overriding
    /// theirs.
    fn settings(&self) -> anyhow::Result<crate::config::Settings> {
        self.settings_with(&crate::config::DEFAULT_CONFIG_FILES)
    }

    /// [`ClientArgs::settings`] with `defaults` as the files read when none is given: a
    /// publisher on a resolver host is configured by the same files as its daemon.
    fn settings_with(&self, defaults: &[&str]) -> anyhow::Result<crate::config::Settings> {
        let configs = existing_or_default(&self.configs, defaults);
        let config = if configs.is_empty() {
            crate::config::Config::defaults()?
        } else if self.configs.is_empty() {
            crate::config::Config::load(&configs).with_context(|| {
                format!(
                    "the default config files ({}); --config names others",
                    show(&configs)
                )
            })?
        } else {
            crate::config::Config::load(&configs)?
        };
        if self.configs.is_empty() && !configs.is_empty() {
            tracing::info!("kafka settings from {}", show(&configs));
        }
        let mut kafka = config.kafka;
        for warning in crate::tls::check_sasl(kafka.sasl.as_ref())? {
            tracing::warn!("{warning}");
        }
        for warning in crate::tls::check_files(&kafka.tls)? {
            tracing::warn!("{warning}");
        }
        if !self.server.is_empty() {
            kafka.servers = self.server.clone();
        }
        if let Some(topic) = &self.topic {
            kafka.topic = topic.clone();
        }
        Ok(kafka)
    }
}

/// `--server`: refused by clap (exit 2) with the forms expected, before anything starts.
fn parse_server(text: &str) -> Result<crate::config::Server, crate::config::AddressError> {
    crate::config::Server::parse(text)
}

/// `given` when any; else those of `defaults` that exist.
fn existing_or_default(given: &[PathBuf], defaults: &[&str]) -> Vec<PathBuf> {
    if !given.is_empty() {
        return given.to_vec();
    }
    defaults
        .iter()
        .map(PathBuf::from)
        .filter(|p| p.exists())
        .collect()
}

fn show(paths: &[PathBuf]) -> String {
    paths
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(configs: &[PathBuf]) -> ClientArgs {
        ClientArgs {
            configs: configs.to_vec(),
            server: Vec::new(),
            topic: None,
        }
    }

    #[test]
    fn client_commands_read_the_default_files_that_exist_as_run_does() {
        let dir = tempfile::tempdir().unwrap();
        let own = dir.path().join("kres-kafka.yaml");
        std::fs::write(
            &own,
            "kafka:\n  server: broker.example@19092\n  topic: zone-files\n",
        )
        .unwrap();
        let missing = dir.path().join("config.yaml");
        let defaults = [missing.to_str().unwrap(), own.to_str().unwrap()];

        let kafka = client(&[]).settings_with(&defaults).unwrap();
        assert_eq!(kafka.bootstrap_servers(), "broker.example:19092");
        assert_eq!(kafka.topic, "zone-files");

        // `--config` replaces the defaults; `--server` overrides either.
        let other = dir.path().join("other.yaml");
        std::fs::write(&other, "kafka:\n  topic: other\n").unwrap();
        assert_eq!(
            client(&[other]).settings_with(&defaults).unwrap().topic,
            "other"
        );
        let mut args = client(&[]);
        args.server = vec![crate::config::Server::parse("127.0.0.1:9093").unwrap()];
        assert_eq!(
            args.settings_with(&defaults).unwrap().bootstrap_servers(),
            "127.0.0.1:9093"
        );

        // None exists: the defaults, as before.
        let none = [missing.to_str().unwrap()];
        assert_eq!(
            client(&[])
                .settings_with(&none)
                .unwrap()
                .bootstrap_servers(),
            "localhost:9092"
        );

        // A default file that cannot be read says it was a default.
        std::fs::write(&missing, "kafka: [").unwrap();
        let error = format!("{:#}", client(&[]).settings_with(&defaults).unwrap_err());
        assert!(error.contains("--config names others"), "{error}");
    }
}
