//! The daemon's configuration, read from the resolver's own config files (SPEC section 4),
//! turned once into checked settings that the services read.
//!
//! kres-kafka reads `hostname`, `management` and `kafka` and ignores the rest of Knot Resolver's
//! configuration. Several files are merged the way the manager merges them (`merge`); the
//! `kafka` section refuses keys it does not know, and combinations that cannot work are refused
//! at load, naming the key (`kafka`; the librdkafka options it refuses are listed in
//! `librdkafka`). Loading reads only the config files themselves: the files
//! they name (certificates, the guest) are checked at start-up by the services that use them.

mod kafka;
mod librdkafka;
mod merge;

pub use kafka::{
    ClientCertificate, DEFAULT_CHUNK_SIZE, DEFAULT_GUEST_MEMORY_LIMIT, DEFAULT_GUEST_TIME_LIMIT,
    Partitions, Sasl, SaslMechanism, Section, SecurityProtocol, Settings, StartFrom, Tls,
};
pub use librdkafka::{GUARDED_TLS_OPTIONS, RESERVED_OPTIONS};

use serde::Deserialize;
use serde_yaml_ng::{Mapping, Value};
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

/// Errors in the configuration, each naming the file or key at fault.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("reading {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is not valid YAML: {source}")]
    Yaml {
        path: PathBuf,
        source: serde_yaml_ng::Error,
    },
    #[error("{path} must hold a mapping at the top level")]
    NotMapping { path: PathBuf },
    #[error("key {key:?} is set in both {first} and {second}")]
    Conflict {
        key: String,
        first: PathBuf,
        second: PathBuf,
    },
    #[error("{0}")]
    Invalid(String),
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

/// A broker address, `host@port` in the config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Server {
    pub host: String,
    pub port: u16,
}

/// Kafka's customary port, upstream's default.
pub const DEFAULT_KAFKA_PORT: u16 = 9092;

impl Server {
    /// Parse `host@port`, `host`, `ipv6@port` or a bare IPv6 address.
    pub fn parse(s: &str) -> Result<Server, String> {
        let (host, port) = match s.rsplit_once('@') {
            Some((host, port)) => {
                let port = port
                    .parse::<u16>()
                    .ok()
                    .filter(|p| *p != 0)
                    .ok_or_else(|| {
                        format!("server {s:?}: port {port:?} is not a number from 1 to 65535")
                    })?;
                (host, port)
            }
            None => (s, DEFAULT_KAFKA_PORT),
        };
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if host.is_empty() || host.contains(char::is_whitespace) || host.contains('@') {
            return Err(format!("server {s:?}: expected host@port"));
        }
        Ok(Server {
            host: host.to_owned(),
            port,
        })
    }

    /// The address in librdkafka's `bootstrap.servers` syntax (`[v6]:port` for IPv6).
    pub fn bootstrap(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
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
        let merged = merge::read_merged(paths)?;
        let origin = paths
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(", ");
        Self::from_value(Value::Mapping(merged), &origin)
    }

    /// The configuration of a resolver whose files set nothing: every default.
    pub fn defaults() -> Result<Config, ConfigError> {
        Self::from_value(Value::Mapping(Mapping::new()), "the defaults")
    }

    /// Parse a merged configuration; `origin` names it in errors.
    pub fn from_value(value: Value, origin: &str) -> Result<Config, ConfigError> {
        let raw: ResolverConfig = serde_yaml_ng::from_value(value)
            .map_err(|e| ConfigError::Invalid(format!("{origin}: {e}")))?;
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
                let server = Server::parse(&interface)
                    .map_err(|e| ConfigError::Invalid(format!("management.interface: {e}")))?;
                if !interface.contains('@') {
                    return Err(ConfigError::Invalid(format!(
                        "management.interface {interface:?}: expected address@port"
                    )));
                }
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;
    use std::time::Duration;

    fn parse(yaml: &str) -> Result<Config, ConfigError> {
        Config::from_value(serde_yaml_ng::from_str(yaml).unwrap(), "test.yaml")
    }

    fn error(yaml: &str) -> String {
        parse(yaml).unwrap_err().to_string()
    }

    #[test]
    fn trusted_keys_are_checked_and_require_a_signature_by_default() {
        use base64::Engine as _;
        let key = ed25519_dalek::SigningKey::from_bytes(&[3; 32]).verifying_key();
        let line = format!(
            "ed25519:{}",
            base64::engine::general_purpose::STANDARD.encode(key.as_bytes())
        );
        let c = parse(&format!(
            "hostname: r1\nkafka:\n  trusted-keys: [\"{line}\"]\n"
        ))
        .unwrap();
        assert_eq!(c.kafka.trust.keys, [key.to_bytes()]);
        assert!(c.kafka.trust.require_signature);
        assert!(
            !c.kafka
                .warnings
                .iter()
                .any(|w| w.contains("require-signature"))
        );

        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("publishers.keys");
        std::fs::write(&file, format!("# the publisher\n{line}\n\n")).unwrap();
        let c = parse(&format!(
            "hostname: r1\nkafka:\n  trusted-keys: {}\n  require-signature: false\n",
            file.display()
        ))
        .unwrap();
        assert_eq!(c.kafka.trust.keys.len(), 1);
        assert!(!c.kafka.trust.require_signature);

        let c = parse("hostname: r1\n").unwrap();
        assert!(!c.kafka.trust.require_signature);
        assert!(
            c.kafka
                .warnings
                .iter()
                .any(|w| w.contains("anyone who can write to the topic")),
            "{:?}",
            c.kafka.warnings
        );

        for (keys, says) in [
            ("[\"rsa:AAAA\"]", "does not start with \"ed25519:\""),
            (
                "[\"ed25519:AAAA\"]",
                "3 bytes, an Ed25519 public key has 32",
            ),
            ("[\"ed25519:!!\"]", "not base64"),
            ("/nonexistent/keys", "reading /nonexistent/keys"),
        ] {
            let e = error(&format!("hostname: r1\nkafka:\n  trusted-keys: {keys}\n"));
            assert!(
                e.contains("kafka.trusted-keys") && e.contains(says),
                "{keys}: {e}"
            );
        }
        let e = error("hostname: r1\nkafka:\n  require-signature: true\n");
        assert!(e.contains("kafka.trusted-keys is empty"), "{e}");
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
    fn the_status_topic_follows_the_topic_unless_named_or_turned_off() {
        let mut c = parse("hostname: r1\n").unwrap();
        assert_eq!(
            c.kafka.status_topic().as_deref(),
            Some("knot-resolver-status")
        );
        c.kafka.topic = "dns".into();
        assert_eq!(c.kafka.status_topic().as_deref(), Some("dns-status"));
        let named = parse("kafka:\n  status-topic: fleet\n").unwrap();
        assert_eq!(named.kafka.status_topic().as_deref(), Some("fleet"));
        let off = parse("kafka:\n  status-topic: null\n").unwrap();
        assert_eq!(off.kafka.status_topic(), None);
        for bad in ["''", "knot-resolver"] {
            let e = error(&format!("kafka:\n  status-topic: {bad}\n"));
            assert!(e.contains("kafka.status-topic"), "{e}");
        }
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
    }

    #[test]
    fn unknown_kafka_key_is_named() {
        assert!(error("kafka:\n  enable: true\n  tpoic: x\n").contains("unknown field `tpoic`"));
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
    fn tls_settings_cannot_be_weakened_or_misplaced() {
        assert!(
            error("kafka:\n  verify-hostname: false\n")
                .contains("kafka.verify-hostname is set but kafka.security-protocol is plaintext")
        );
        assert!(
            error("kafka:\n  key-password: x\n")
                .contains("kafka.key-password is set without kafka.key-file")
        );
        for option in [
            "enable.ssl.certificate.verification",
            "ssl.endpoint.identification.algorithm",
            "ssl.ca.location",
            "security.protocol",
        ] {
            let e = error(&format!("kafka:\n  librdkafka:\n    {option}: x\n"));
            assert!(
                e.contains(&format!("kafka.librdkafka.{option} is refused")),
                "{e}"
            );
        }
        assert!(
            error("kafka:\n  librdkafka:\n    security.protocol: plaintext\n")
                .contains("use kafka.security-protocol")
        );
    }

    #[test]
    fn guest_cache_is_beside_the_files_directory_never_inside() {
        let c = parse("kafka:\n  files-dir: /var/lib/knot-resolver\n").unwrap();
        assert_eq!(
            c.kafka.guest_cache_dir(),
            Path::new("/var/lib/kres-kafka/guest-cache")
        );
        let e = error("kafka:\n  files-dir: /srv/files\n  state-dir: /srv/files/kres\n");
        assert!(
            e.contains("kafka.state-dir /srv/files/kres is inside kafka.files-dir"),
            "{e}"
        );
    }

    #[test]
    fn librdkafka_options_that_delivery_rests_on_are_refused() {
        let e = error("kafka:\n  librdkafka:\n    enable.auto.offset.store: true\n");
        assert!(e.contains("kafka.librdkafka.enable.auto.offset.store is refused: kres-kafka's delivery guarantees"), "{e}");
        assert!(error("kafka:\n  librdkafka:\n    group.id: x\n").contains("use kafka.group-id"));
        assert!(
            error("kafka:\n  librdkafka:\n    bootstrap.servers: x\n").contains("use kafka.server")
        );
        // Tuning options pass through.
        parse("kafka:\n  librdkafka:\n    fetch.wait.max.ms: 100\n").unwrap();
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

        std::fs::write(&b, "kafka:\n  enable: false\n").unwrap();
        let err = Config::load(&[a.clone(), b.clone()])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("\"kafka.enable\"") && err.contains("a.yaml") && err.contains("b.yaml"),
            "{err}"
        );

        let err = Config::load(&[dir.path().join("missing.yaml")])
            .unwrap_err()
            .to_string();
        assert!(err.contains("missing.yaml"), "{err}");
    }
}
