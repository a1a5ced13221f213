//! The daemon's configuration, read from the resolver's own config files (SPEC section 4),
//! turned once into checked settings that the services read.
//!
//! kres-kafka reads `hostname`, `management` and `kafka` and ignores the rest of Knot Resolver's
//! configuration. Several files are merged the way the manager merges them (`merge`); the
//! `kafka` section refuses keys it does not know, and combinations that cannot work are refused
//! at load, naming the key. `kafka` resolves the section, one module per concern checking its
//! keys: `address` (the brokers), `topics` (the topic, the status and state topics),
//! `security` (security protocol, TLS, SASL), `partitions`, `trust` (the publishers' keys),
//! `validator` (the resolver's own validator) and `librdkafka` (the passthrough options it
//! refuses). Loading reads only the config files themselves and a `trusted-keys` file: the
//! files they name (certificates, the guest) are checked at start-up by the services that use
//! them.
//!
//! Every error names the file, the line and column, and the key (`locate` says how): each
//! file is first read on its own, from its text, into the same structure, so that a value of
//! the wrong type or an unknown key is reported where it is written; the files are then merged
//! and the combination checked, and a refusal is located at the key it names. Values are read
//! as the resolver's manager reads them: YAML 1.1 booleans (`yes`, `off`), durations as `5s`.

mod address;
mod kafka;
mod librdkafka;
mod locate;
mod merge;
mod partitions;
mod security;
mod topics;
mod trust;
mod validator;
mod values;

pub use address::{AddressError, DEFAULT_KAFKA_PORT, Server};
pub use kafka::{
    DEFAULT_CHUNK_SIZE, DEFAULT_GUEST_MEMORY_LIMIT, DEFAULT_GUEST_TIME_LIMIT, Section, Settings,
    StartFrom,
};
pub use librdkafka::{GUARDED_TLS_OPTIONS, RESERVED_OPTIONS};
pub use partitions::Partitions;
pub use security::{ClientCertificate, Sasl, SaslMechanism, SecurityProtocol, Tls};

use merge::Source;
use serde::Deserialize;
use serde_yaml_ng::Value;
use std::fmt;
use std::path::PathBuf;

/// Where Knot Resolver keeps its configuration: kres-kafka reads `hostname` and `management`
/// there (and a `kafka` section, on the upstream branches whose manager accepts one).
pub const DEFAULT_CONFIG_FILE: &str = "/etc/knot-resolver/config.yaml";

/// kres-kafka's own settings, beside the resolver's: a stock 6.x manager refuses a `kafka`
/// section in its own files.
pub const DEFAULT_OWN_CONFIG_FILE: &str = "/etc/knot-resolver/kres-kafka.yaml";

/// The files `run` reads when none is named (those that exist, in this order).
pub const DEFAULT_CONFIG_FILES: [&str; 2] = [DEFAULT_CONFIG_FILE, DEFAULT_OWN_CONFIG_FILE];

/// Errors in the configuration, each naming the file (and where in it) or the key at fault.
/// None has a `source`: each message is whole, so that a chain of causes does not repeat it.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("reading {path}: {}", without_errno(error))]
    Read {
        path: PathBuf,
        error: std::io::Error,
    },
    /// `file:line:column: key: what is wrong`.
    #[error("{path}:{line}:{column}: {message}")]
    At {
        path: PathBuf,
        line: usize,
        column: usize,
        message: String,
    },
    /// A fault of the file as a whole.
    #[error("{path}: {message}")]
    InFile { path: PathBuf, message: String },
    /// A fault of the merged configuration (its key named), that no file's line is to blame
    /// for.
    #[error("{0}")]
    Invalid(String),
}

/// `No such file or directory`, without ` (os error 2)`.
fn without_errno(error: &std::io::Error) -> String {
    let text = error.to_string();
    match text.rfind(" (os error ") {
        Some(at) => text[..at].to_owned(),
        None => text,
    }
}

/// Everything the daemon needs to know.
#[derive(Debug, Clone)]
pub struct Config {
    /// This resolver's hostname: the resolver config's `hostname`, else the machine's.
    pub hostname: String,
    pub management: Management,
    /// The resolver's `rundir`, where its policy-loader keeps the rule database (see
    /// [`crate::ruledb`]); Knot Resolver's default when its files set none.
    pub rundir: PathBuf,
    pub kafka: Settings,
}
/// How to reach the resolver's manager (Knot Resolver's `management` section).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Management {
    /// `management.unix-socket`.
    UnixSocket(PathBuf),
    /// `management.interface`: `address@port`.
    Interface { host: String, port: u16 },
}

/// Knot Resolver's default management socket.
pub const DEFAULT_MANAGEMENT_SOCKET: &str = "/run/knot-resolver/kres-api.sock";

impl Default for Management {
    fn default() -> Self {
        Management::UnixSocket(DEFAULT_MANAGEMENT_SOCKET.into())
    }
}

impl fmt::Display for Management {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Management::UnixSocket(path) => write!(f, "unix socket {}", path.display()),
            Management::Interface { host, port } => write!(f, "{host}@{port}"),
        }
    }
}

/// The parts of a resolver config file kres-kafka reads; everything else is the resolver's.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
struct ResolverConfig {
    hostname: Option<String>,
    #[serde(default)]
    management: ManagementSection,
    rundir: Option<PathBuf>,
    kafka: Option<Section>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
struct ManagementSection {
    unix_socket: Option<PathBuf>,
    interface: Option<String>,
}

impl Config {
    /// Read and merge `paths` (in order), then check the result.
    pub fn load(paths: &[PathBuf]) -> Result<Config, ConfigError> {
        let sources = paths
            .iter()
            .map(|p| Source::read(p))
            .collect::<Result<Vec<_>, _>>()?;
        Self::from_sources(&sources)
    }

    /// The configuration of a resolver whose files set nothing: every default.
    pub fn defaults() -> Result<Config, ConfigError> {
        Self::from_sources(&[])
    }

    /// Check each file on its own (where its errors can be located), merge them, and check
    /// the result; a refusal of the merged whole is located at the key it names.
    fn from_sources(sources: &[Source]) -> Result<Config, ConfigError> {
        for source in sources {
            serde_yaml_ng::from_str::<ResolverConfig>(&source.text)
                .map_err(|e| locate::at(&source.path, &e))?;
        }
        let merged = merge::merge(sources)?;
        Self::from_merged(Value::Mapping(merged.mapping)).map_err(|error| match error {
            ConfigError::Invalid(message) => locate_refusal(message, &merged.origins, sources),
            other => other,
        })
    }

    /// Parse and check a merged configuration.
    fn from_merged(value: Value) -> Result<Config, ConfigError> {
        let raw: ResolverConfig =
            serde_yaml_ng::from_value(value).map_err(|e| ConfigError::Invalid(e.to_string()))?;
        let hostname = match raw.hostname {
            Some(h) if !h.is_empty() => h,
            Some(_) => return Err(ConfigError::Invalid("hostname must not be empty".into())),
            None => crate::system::machine_hostname()
                .map_err(|e| ConfigError::Invalid(e.to_string()))?,
        };
        let management = match (raw.management.unix_socket, raw.management.interface) {
            (Some(_), Some(_)) => {
                return Err(ConfigError::Invalid(
                    "management: set unix-socket or interface, not both".into(),
                ));
            }
            (Some(path), None) => Management::UnixSocket(path),
            (None, Some(interface)) => {
                // Knot Resolver's own key keeps Knot Resolver's own form.
                let server = Some(&interface)
                    .filter(|i| i.contains('@'))
                    .ok_or(AddressError::Form)
                    .and_then(|i| Server::parse(i))
                    .map_err(|e| {
                        ConfigError::Invalid(match e {
                            AddressError::Form => {
                                format!("management.interface {interface:?}: expected address@port")
                            }
                            port => format!("management.interface {interface:?}: {port}"),
                        })
                    })?;
                Management::Interface {
                    host: server.host,
                    port: server.port,
                }
            }
            (None, None) => Management::default(),
        };
        let kafka = raw.kafka.unwrap_or_default().resolve(&hostname)?;
        Ok(Config {
            hostname,
            management,
            rundir: raw
                .rundir
                .unwrap_or_else(|| crate::ruledb::DEFAULT_RUNDIR.into()),
            kafka,
        })
    }
}

/// `message`, a refusal of the merged configuration, located at the first key it names that
/// a file sets (`kafka.cert-file is set without kafka.key-file` at `cert-file`'s line).
fn locate_refusal(
    message: String,
    origins: &std::collections::BTreeMap<String, usize>,
    sources: &[Source],
) -> ConfigError {
    let is_key_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_');
    let words: Vec<&str> = message
        .split(|c| !is_key_char(c))
        .map(|word| word.trim_end_matches('.'))
        .filter(|word| {
            ["kafka", "management", "hostname", "rundir"]
                .iter()
                .any(|top| word == top || word.starts_with(&format!("{top}.")))
        })
        .collect();
    let set = |key: &str| {
        origins
            .get(key)
            .map(|source| (key.to_owned(), &sources[*source]))
    };
    // The first key named that a file sets; else the nearest section of one that is.
    let named = words.iter().find_map(|word| set(word)).or_else(|| {
        words.iter().find_map(|word| {
            std::iter::successors(Some(*word), |w| w.rsplit_once('.').map(|(head, _)| head))
                .find_map(set)
        })
    });
    let Some((key, source)) = named else {
        return ConfigError::Invalid(message);
    };
    match locate::find(&source.text, &key) {
        Some((line, column)) => ConfigError::At {
            path: source.path.clone(),
            line,
            column,
            message,
        },
        None => ConfigError::InFile {
            path: source.path.clone(),
            message,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;
    use std::time::Duration;

    /// The configuration of one file, `test.yaml`, holding `yaml`.
    pub(super) fn parse(yaml: &str) -> Result<Config, ConfigError> {
        Config::from_sources(&[Source::parse("test.yaml".into(), yaml.into())?])
    }

    /// Why the configuration of [`parse`] is refused.
    pub(super) fn error(yaml: &str) -> String {
        parse(yaml).unwrap_err().to_string()
    }

    #[test]
    fn defaults_match_upstream() {
        let c = parse("hostname: r1\n").unwrap();
        assert_eq!(c.hostname, "r1");
        assert_eq!(
            c.management,
            Management::UnixSocket("/run/knot-resolver/kres-api.sock".into())
        );
        assert!(!c.kafka.enable);
        assert_eq!(c.kafka.topic, "knot-resolver");
        assert_eq!(c.kafka.bootstrap_servers(), "localhost:9092");
        assert_eq!(c.kafka.files_dir, Path::new("/var/lib/knot-resolver"));
        assert_eq!(c.kafka.tls, Tls::Plaintext);
        assert_eq!(c.kafka.group_id, "kres-kafka-r1");
        assert_eq!(c.kafka.debounce, Duration::from_secs(5));
        assert_eq!(c.kafka.start_from, StartFrom::Earliest);
        assert_eq!(c.kafka.chunk_size, 512 * 1024);
        assert_eq!(c.kafka.limits, crate::outcome::Limits::default());
    }

    #[test]
    fn servers_one_or_many_with_ipv6() {
        let c =
            parse("kafka:\n  server: [kafka1.example@9093, '::1@9092', kafka2, '[2001:db8::1]']\n")
                .unwrap();
        assert_eq!(
            c.kafka.bootstrap_servers(),
            "kafka1.example:9093,[::1]:9092,kafka2:9092,[2001:db8::1]:9092"
        );
        let c = parse("kafka:\n  server: 10.0.0.1@19092\n").unwrap();
        assert_eq!(c.kafka.bootstrap_servers(), "10.0.0.1:19092");
        // Kafka's and kcat's form; IPv6 unquoted in a block list (a flow list `[...]` needs it
        // quoted: YAML reads a leading `:` there as an indicator).
        let c = parse(
            "kafka:\n  server:\n    - 127.0.0.1:37143\n    - ::1\n    - '[2001:db8::2]:9093'\n    - kafka3\n",
        )
        .unwrap();
        assert_eq!(
            c.kafka.bootstrap_servers(),
            "127.0.0.1:37143,[::1]:9092,[2001:db8::2]:9093,kafka3:9092"
        );
        let c = parse("kafka:\n  server: 127.0.0.1:37143\n").unwrap();
        assert_eq!(c.kafka.bootstrap_servers(), "127.0.0.1:37143");
        let c = parse("kafka:\n  server: ::1\n").unwrap();
        assert_eq!(c.kafka.bootstrap_servers(), "[::1]:9092");
    }

    #[test]
    fn an_unknown_key_is_located_and_the_nearest_known_one_suggested() {
        assert_eq!(
            error("kafka:\n  enable: true\n  tpoic: x\n"),
            "test.yaml:3:3: kafka.tpoic: unknown key; did you mean topic?"
        );
        assert_eq!(
            error("hostname: r1\nkafka:\n  sever: 127.0.0.1:9092\n"),
            "test.yaml:3:3: kafka.sever: unknown key; did you mean server?"
        );
        assert_eq!(
            error("kafka:\n  compression: zstd\n"),
            "test.yaml:2:3: kafka.compression: unknown key"
        );
    }

    #[test]
    fn a_value_of_the_wrong_kind_is_located_and_says_what_was_expected() {
        for (yaml, expected) in [
            (
                "hostname: r1\nkafka:\n  debounce: 5\n",
                "test.yaml:3:13: kafka.debounce: expected a duration such as 5s, got 5",
            ),
            (
                "kafka:\n  enable: maybe\n",
                "test.yaml:2:11: kafka.enable: expected a boolean (true, false, yes, no, on, off), got \"maybe\"",
            ),
            (
                "kafka:\n  force: 1\n",
                "test.yaml:2:10: kafka.force: expected a boolean (true, false, yes, no, on, off), got 1",
            ),
            (
                "kafka:\n  server: a:b:c@x\n",
                "test.yaml:2:11: kafka.server: \"a:b:c@x\": expected host:port, host@port or [ipv6]:port",
            ),
            (
                "kafka:\n  server: [kafka1:9092, 'broker@99999']\n",
                "test.yaml:2:25: kafka.server[1]: \"broker@99999\": port \"99999\" is not a number from 1 to 65535",
            ),
            (
                "kafka:\n  metrics-address: 127.0.0.1\n",
                "test.yaml:2:20: kafka.metrics-address: \"127.0.0.1\": expected address@port or address:port",
            ),
            (
                "hostname: [r1]\n",
                "test.yaml:1:11: hostname: invalid type: sequence, expected a string",
            ),
        ] {
            assert_eq!(error(yaml), expected, "{yaml}");
        }
        let e = error("kafka:\n  chunk-expiry: 2 fortnights\n");
        assert!(
            e.starts_with("test.yaml:2:17: kafka.chunk-expiry: expected a duration such as 5s, got \"2 fortnights\" (unknown time unit \"fortnights\""),
            "{e}"
        );
    }

    #[test]
    fn booleans_read_as_the_resolver_reads_them() {
        for (written, value) in [
            ("yes", true),
            ("Yes", true),
            ("on", true),
            ("ON", true),
            ("true", true),
            ("no", false),
            ("off", false),
            ("False", false),
        ] {
            let c = parse(&format!(
                "kafka:\n  enable: {written}\n  force: {written}\n  require-signature: {written}\n  trusted-keys: [\"ed25519:iojj3XQJ8ZX9UtstPLpdcspnCb8dlBIb83SIAbQPb1w=\"]\n"
            ))
            .unwrap();
            assert_eq!(c.kafka.enable, value, "{written}");
            assert_eq!(c.kafka.force, value, "{written}");
            assert_eq!(c.kafka.trust.require_signature, value, "{written}");
        }
        let c = parse("kafka:\n  require-signature: null\n").unwrap();
        assert!(!c.kafka.trust.require_signature);
    }

    #[test]
    fn a_refused_combination_is_located_at_the_key_it_names() {
        assert_eq!(
            error("kafka:\n  security-protocol: ssl\n  cert-file: /c\n"),
            "test.yaml:3:14: kafka.cert-file is set without kafka.key-file"
        );
        assert_eq!(
            error("kafka:\n  librdkafka:\n    group.id: x\n"),
            "test.yaml:3:15: kafka.librdkafka.group.id is refused: kres-kafka's delivery guarantees rest on it; use kafka.group-id"
        );
        // The key named first is not set: the next one is.
        assert_eq!(
            error("kafka:\n  validate-command: [kresctl, validate]\n  guest-time-limit: 5s\n"),
            "test.yaml:3:21: kafka.validate-timeout (10s) must be less than kafka.guest-time-limit (5s): the validator runs within the guest's time for the message"
        );
    }

    #[test]
    fn other_sections_are_ignored() {
        parse("hostname: r1\nworkers: 4\ncache:\n  size-max: 100M\nkafka:\n  enable: true\n")
            .unwrap();
    }

    #[test]
    fn durations_and_sizes_read_as_operators_write_them() {
        let c = parse("kafka:\n  debounce: 500ms\n  max-file-size: 10MiB\n  chunk-expiry: 2h\n  librdkafka:\n    fetch.wait.max.ms: 100\n    enable.partition.eof: false\n").unwrap();
        assert_eq!(c.kafka.debounce, Duration::from_millis(500));
        assert_eq!(c.kafka.limits.max_file_size, 10 * 1024 * 1024);
        assert_eq!(c.kafka.chunk_expiry, Duration::from_secs(7200));
        assert_eq!(c.kafka.librdkafka["fetch.wait.max.ms"], "100");
        assert_eq!(c.kafka.librdkafka["enable.partition.eof"], "false");
    }

    #[test]
    fn impossible_combinations_are_refused_naming_the_key() {
        assert!(error("kafka:\n  server: host@0\n").contains("port \"0\""));
        assert!(
            error("kafka:\n  server: host@x\n").contains("kafka1")
                || error("kafka:\n  server: host@x\n").contains("host@x")
        );
        assert!(
            error("kafka:\n  security-protocol: ssl\n  cert-file: /c\n")
                .contains("kafka.cert-file is set without kafka.key-file")
        );
        assert!(
            error("kafka:\n  ca-file: /etc/hostname\n").contains("security-protocol is plaintext")
        );
        assert!(error("kafka:\n  security-protocol: tls\n").contains("unknown variant `tls`"));
        assert!(
            error("management:\n  unix-socket: /a\n  interface: 127.0.0.1@5000\n")
                .contains("not both")
        );
        assert!(error("management:\n  interface: 127.0.0.1\n").contains("expected address@port"));
    }

    #[test]
    fn management_interface_is_address_at_port() {
        let c = parse("management:\n  interface: '::1@5000'\n").unwrap();
        assert_eq!(
            c.management,
            Management::Interface {
                host: "::1".into(),
                port: 5000
            }
        );
    }

    #[test]
    fn files_merge_recursively_and_refuse_a_key_set_twice() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a.yaml");
        let b = dir.path().join("b.yaml");
        std::fs::write(&a, "hostname: r1\nkafka:\n  enable: true\n").unwrap();
        std::fs::write(&b, "kafka:\n  topic: other\n").unwrap();
        let c = Config::load(&[a.clone(), b.clone()]).unwrap();
        assert!(c.kafka.enable);
        assert_eq!(c.kafka.topic, "other");

        std::fs::write(&b, "\nkafka:\n  enable: false\n").unwrap();
        let err = Config::load(&[a.clone(), b.clone()])
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            format!(
                "{}:3:11: kafka.enable is also set in {}:3:11: set it in one file only",
                b.display(),
                a.display()
            )
        );
    }

    #[test]
    fn a_file_that_cannot_be_read_is_named_once() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.yaml");
        let err = anyhow::Error::from(Config::load(std::slice::from_ref(&missing)).unwrap_err());
        assert_eq!(
            format!("{err:#}"),
            format!("reading {}: No such file or directory", missing.display())
        );

        let broken = dir.path().join("broken.yaml");
        std::fs::write(&broken, "kafka:\n  enable: true\n   topic: x\n").unwrap();
        let err = anyhow::Error::from(Config::load(std::slice::from_ref(&broken)).unwrap_err());
        let err = format!("{err:#}");
        assert!(
            err.starts_with(&format!("{}:3:9: not valid YAML: ", broken.display())),
            "{err}"
        );

        let list = dir.path().join("list.yaml");
        std::fs::write(&list, "- a\n").unwrap();
        assert_eq!(
            Config::load(std::slice::from_ref(&list))
                .unwrap_err()
                .to_string(),
            format!(
                "{}: expected a mapping (key: value) at the top level",
                list.display()
            )
        );
    }
}
