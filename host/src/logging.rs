//! Structured logs on standard error through `tracing`: quiet by default (warnings and errors),
//! detailed at `debug`. `RUST_LOG` (full `EnvFilter` syntax) overrides `--log-level`.

use tracing_subscriber::EnvFilter;

/// Default level when neither `--log-level` nor `RUST_LOG` says otherwise.
pub const DEFAULT_LEVEL: &str = "warn";

/// Install the global subscriber. Safe to call once per process.
pub fn init(level: Option<&str>) {
    // `--log-level` applies to kres-kafka and its guest; dependencies stay at warnings.
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        let level = level.unwrap_or(DEFAULT_LEVEL);
        EnvFilter::new(format!("warn,kres_kafka={level},guest={level}"))
    });
    use std::io::IsTerminal;
    let _ = tracing_subscriber::fmt()
        // Colours only on a terminal: journald and log files get plain `key=value`.
        .with_ansi(std::io::stderr().is_terminal())
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}
