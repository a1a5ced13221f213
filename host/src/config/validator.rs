//! The resolver's own validator, which checks a delivered configuration before the manager
//! is asked to load it: its command (`validate-command`), its time limit (`validate-timeout`),
//! and the manager's files it checks with (`resolver-config`).

use super::ConfigError;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// How long the resolver's own validator may run on one configuration: 10 s. `kresctl
/// validate` takes about a second; it runs inside the guest's time for that message, so it must
/// stay well below [`DEFAULT_GUEST_TIME_LIMIT`](super::DEFAULT_GUEST_TIME_LIMIT).
pub const DEFAULT_VALIDATE_TIMEOUT: Duration = Duration::from_secs(10);
/// The resolver's own validator, used when it is on `PATH` (Knot Resolver 6 installs it).
pub const DEFAULT_VALIDATE_COMMAND: [&str; 2] = ["kresctl", "validate"];
/// The manager's configuration file in Knot Resolver's packaging.
pub const RESOLVER_CONFIG_FILE: &str = "/etc/knot-resolver/config.yaml";
/// The delivered configuration the manager also loads (upstream's newest packaging starts it
/// with `--config /etc/knot-resolver/config.yaml --config /var/lib/knot-resolver/config.json`).
pub const DELIVERED_CONFIG_NAME: &str = "config.json";

/// The validator's program and arguments (empty: none), by default [`DEFAULT_VALIDATE_COMMAND`]
/// when it is on `PATH`. Refused when the program is empty, or when `timeout` leaves no time
/// within the guest's `guest_time_limit` for the message.
pub fn command(
    command: Option<&[String]>,
    timeout: Duration,
    guest_time_limit: Duration,
) -> Result<Vec<String>, ConfigError> {
    if let Some(command) = command
        && command.first().is_some_and(String::is_empty)
    {
        return Err(ConfigError::Invalid(
            "kafka.validate-command: the program name is empty".into(),
        ));
    }
    let command = command.map(<[String]>::to_vec).unwrap_or_else(|| {
        if crate::system::on_path(DEFAULT_VALIDATE_COMMAND[0]) {
            DEFAULT_VALIDATE_COMMAND.map(str::to_owned).to_vec()
        } else {
            Vec::new()
        }
    });
    if !command.is_empty() && timeout >= guest_time_limit {
        return Err(ConfigError::Invalid(format!(
            "kafka.validate-timeout ({timeout:?}) must be less than kafka.guest-time-limit ({guest_time_limit:?}): the validator runs within the guest's time for the message"
        )));
    }
    Ok(command)
}

/// The manager's `--config` files, in order: `files` as written, else
/// [`RESOLVER_CONFIG_FILE`] and the delivered configuration in `files_dir`.
pub fn resolver_config(files: Option<Vec<PathBuf>>, files_dir: &Path) -> Vec<PathBuf> {
    files.unwrap_or_else(|| {
        vec![
            RESOLVER_CONFIG_FILE.into(),
            files_dir.join(DELIVERED_CONFIG_NAME),
        ]
    })
}
