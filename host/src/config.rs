//! The daemon's configuration, read from the resolver's own config files (SPEC section 4).
//!
//! kres-kafka reads `hostname`, `management` and `kafka` and ignores the rest of Knot Resolver's
//! configuration. Several files are merged the way the manager merges them: mappings
//! recursively; a key set in two files is an error naming it. The `kafka` section refuses keys
//! it does not know, and combinations that cannot work are refused here, at load, with the key
//! that is wrong.

use crate::sandbox;
use crate::types::Limits;
use bytesize::ByteSize;
use serde::Deserialize;
use serde_yaml_ng::{Mapping, Value};
use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Where Knot Resolver keeps its configuration.
pub const DEFAULT_CONFIG_FILE: &str = "/etc/knot-resolver/config.yaml";

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
    pub kafka: Kafka,
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

/// `security-protocol`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum SecurityProtocol {
    /// No encryption (upstream's default).
    #[default]
    Plaintext,
    /// TLS, optionally with a client certificate.
    Ssl,
}

/// Where a new consumer group starts reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum StartFrom {
    /// The oldest message the broker keeps: a new resolver receives everything published.
    #[default]
    Earliest,
    /// Only messages published from now on.
    Latest,
}

/// The `kafka` section. Upstream's fields keep their meaning and defaults; the rest are
/// kres-kafka's, each with the default documented on its constant.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct Kafka {
    /// Run the consumer at all. Upstream default: false.
    #[serde(default)]
    pub enable: bool,
    /// Topic to consume. Upstream default: `knot-resolver`.
    #[serde(default = "default_topic")]
    pub topic: String,
    /// Broker(s), `host@port`, one or a list. Upstream default: `localhost@9092`.
    #[serde(default = "default_servers", deserialize_with = "one_or_many_servers")]
    pub server: Vec<Server>,
    /// Where files are delivered: the guest's only view of the filesystem.
    #[serde(default = "default_files_dir")]
    pub files_dir: PathBuf,
    /// `plaintext` or `ssl`.
    #[serde(default)]
    pub security_protocol: SecurityProtocol,
    /// CA certificate(s) trusted for the broker (PEM).
    pub ca_file: Option<PathBuf>,
    /// Client certificate for mutual TLS (PEM).
    pub cert_file: Option<PathBuf>,
    /// Client private key for mutual TLS (PEM).
    pub key_file: Option<PathBuf>,
    /// Password of an encrypted `key-file`.
    pub key_password: Option<String>,
    /// Check that the broker's certificate names the broker (librdkafka's
    /// `ssl.endpoint.identification.algorithm=https`). Default: true; turning it off logs a
    /// warning at every start.
    #[serde(default = "yes")]
    pub verify_hostname: bool,
    /// Consumer group. Default: `kres-kafka-<hostname>`, one group per resolver, so every
    /// resolver reads the whole topic.
    pub group_id: Option<String>,
    /// Upstream's recipient key: kres-kafka filters by the `hostname` header instead, so it is
    /// accepted (existing configs keep loading) and ignored with a warning.
    pub zone_id: Option<String>,
    /// Where a new consumer group starts: `earliest` (default) or `latest`.
    #[serde(default)]
    pub start_from: StartFrom,
    /// Quiet time after the last commit before the manager is called. Default: 5 s.
    #[serde(default = "default_debounce", with = "humantime_serde")]
    pub debounce: Duration,
    /// Use `/reload/force` and `/renew/force`. Default: false.
    #[serde(default)]
    pub force: bool,
    /// Largest file accepted. Default: 1 GiB.
    #[serde(default = "default_max_file_size")]
    pub max_file_size: ByteSize,
    /// Largest `total-chunks` accepted. Default: 4096.
    #[serde(default = "default_max_chunks")]
    pub max_chunks: u32,
    /// Incomplete chunk sets older than this are removed. Default: 24 h.
    #[serde(default = "default_chunk_expiry", with = "humantime_serde")]
    pub chunk_expiry: Duration,
    /// Chunk size `kres-kafka send` uses. Default: 512 KiB, as the upstream publisher.
    #[serde(default = "default_chunk_size")]
    pub chunk_size: ByteSize,
    /// A guest component to use instead of the embedded one.
    pub guest: Option<PathBuf>,
    /// kres-kafka's own state: the compiled-guest cache (`guest-cache/`) and the marker of a
    /// manager call still owed (`pending-action`). Default: `kres-kafka` beside the files
    /// directory. Never inside the files directory: the guest could plant code there.
    pub state_dir: Option<PathBuf>,
    /// Cap on the guest's memory. Default: 256 MiB.
    #[serde(default = "default_guest_memory_limit")]
    pub guest_memory_limit: ByteSize,
    /// Time limit for one message in the guest. Default: 30 s.
    #[serde(default = "default_guest_time_limit", with = "humantime_serde")]
    pub guest_time_limit: Duration,
    /// Serve Prometheus metrics on `GET /metrics` at this `address@port`. Default: off.
    #[serde(default, deserialize_with = "optional_server")]
    pub metrics_address: Option<Server>,
    /// Extra librdkafka options, applied after kres-kafka's own.
    #[serde(default, deserialize_with = "scalar_map")]
    pub librdkafka: BTreeMap<String, String>,
}

fn yes() -> bool {
    true
}
fn default_topic() -> String {
    "knot-resolver".into()
}
fn default_servers() -> Vec<Server> {
    vec![Server {
        host: "localhost".into(),
        port: DEFAULT_KAFKA_PORT,
    }]
}
fn default_files_dir() -> PathBuf {
    "/var/lib/knot-resolver".into()
}
/// Five seconds: long enough to gather a publisher's burst of files into one call.
const DEFAULT_DEBOUNCE: Duration = Duration::from_secs(5);
fn default_debounce() -> Duration {
    DEFAULT_DEBOUNCE
}
fn default_max_file_size() -> ByteSize {
    ByteSize::b(Limits::DEFAULT_MAX_FILE_SIZE)
}
fn default_max_chunks() -> u32 {
    Limits::DEFAULT_MAX_CHUNKS
}
/// A day: a publisher that stopped mid-transfer is not coming back for that transfer.
const DEFAULT_CHUNK_EXPIRY: Duration = Duration::from_secs(24 * 3600);
fn default_chunk_expiry() -> Duration {
    DEFAULT_CHUNK_EXPIRY
}
/// The upstream publisher's chunk size.
pub const DEFAULT_CHUNK_SIZE: u64 = 512 * 1024;
fn default_chunk_size() -> ByteSize {
    ByteSize::b(DEFAULT_CHUNK_SIZE)
}
fn default_guest_memory_limit() -> ByteSize {
    ByteSize::b(sandbox::DEFAULT_MEMORY_LIMIT)
}
fn default_guest_time_limit() -> Duration {
    sandbox::DEFAULT_TIME_LIMIT
}

impl Default for Kafka {
    fn default() -> Self {
        serde_yaml_ng::from_value(Value::Mapping(Mapping::new())).expect("defaults deserialize")
    }
}

impl Kafka {
    /// The limits the guest enforces.
    pub fn limits(&self) -> Limits {
        Limits {
            max_file_size: self.max_file_size.as_u64(),
            max_chunks: self.max_chunks,
        }
    }

    /// The sandbox configuration.
    pub fn sandbox(&self) -> sandbox::SandboxConfig {
        sandbox::SandboxConfig {
            files_dir: self.files_dir.clone(),
            memory_limit: self.guest_memory_limit.as_u64(),
            time_limit: self.guest_time_limit,
            cache_dir: Some(self.guest_cache_dir()),
        }
    }

    /// `state-dir`, else `kres-kafka` beside the files directory (outside the guest's view).
    pub fn state_dir(&self) -> PathBuf {
        self.state_dir.clone().unwrap_or_else(|| {
            let parent = self.files_dir.parent().unwrap_or(Path::new("/var/lib"));
            parent.join("kres-kafka")
        })
    }

    /// Where compiled guests are cached: `guest-cache` in the state directory.
    pub fn guest_cache_dir(&self) -> PathBuf {
        self.state_dir().join("guest-cache")
    }

    /// `bootstrap.servers`.
    pub fn bootstrap_servers(&self) -> String {
        self.server
            .iter()
            .map(Server::bootstrap)
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Refuse combinations that cannot work, naming the key.
    fn check(&self) -> Result<(), ConfigError> {
        let invalid = |m: String| Err(ConfigError::Invalid(m));
        if self.server.is_empty() {
            return invalid("kafka.server: at least one broker is needed".into());
        }
        if self.topic.is_empty() {
            return invalid("kafka.topic must not be empty".into());
        }
        if self.max_chunks == 0 {
            return invalid("kafka.max-chunks must be at least 1".into());
        }
        if self.chunk_size.as_u64() == 0 {
            return invalid("kafka.chunk-size must be at least 1 byte".into());
        }
        if self.guest_time_limit.is_zero() {
            return invalid("kafka.guest-time-limit must be more than 0".into());
        }
        match (&self.cert_file, &self.key_file) {
            (Some(_), None) => {
                return invalid("kafka.cert-file is set without kafka.key-file".into());
            }
            (None, Some(_)) => {
                return invalid("kafka.key-file is set without kafka.cert-file".into());
            }
            _ => {}
        }
        if self.state_dir().starts_with(&self.files_dir) {
            return invalid(format!(
                "kafka.state-dir {} is inside kafka.files-dir: the guest could plant code there",
                self.state_dir().display()
            ));
        }
        if self.key_password.is_some() && self.key_file.is_none() {
            return invalid("kafka.key-password is set without kafka.key-file".into());
        }
        if self.security_protocol == SecurityProtocol::Plaintext {
            let tls_keys = [
                ("ca-file", self.ca_file.is_some()),
                ("cert-file", self.cert_file.is_some()),
                ("key-file", self.key_file.is_some()),
                ("key-password", self.key_password.is_some()),
                ("verify-hostname", !self.verify_hostname),
            ];
            if let Some((key, _)) = tls_keys.iter().find(|(_, set)| *set) {
                return invalid(format!(
                    "kafka.{key} is set but kafka.security-protocol is plaintext: set it to ssl"
                ));
            }
        }
        let guarded = [
            (
                &crate::tls::GUARDED_OPTIONS[..],
                "it would replace or weaken kres-kafka's TLS settings",
            ),
            (
                &crate::kafka::RESERVED_OPTIONS[..],
                "kres-kafka's delivery guarantees rest on it",
            ),
        ];
        for option in self.librdkafka.keys() {
            for (options, why) in guarded {
                if let Some((_, instead)) = options.iter().find(|(name, _)| name == option) {
                    return invalid(format!(
                        "kafka.librdkafka.{option} is refused: {why}; use {instead}"
                    ));
                }
            }
        }
        if self.security_protocol == SecurityProtocol::Ssl {
            let warnings =
                crate::tls::check_files(self).map_err(|e| ConfigError::Invalid(e.to_string()))?;
            for warning in warnings {
                tracing::warn!("{warning}");
            }
            if !self.verify_hostname {
                tracing::warn!(
                    "kafka.verify-hostname is false: the broker's certificate is not checked against its name; \
                     anyone holding a certificate from the CA can pose as the broker"
                );
            }
        }
        Ok(())
    }
}

/// The parts of a resolver config file kres-kafka reads; everything else is the resolver's.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
struct ResolverConfig {
    hostname: Option<String>,
    #[serde(default)]
    management: ManagementSection,
    kafka: Option<Kafka>,
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
        let mut merged = Mapping::new();
        let mut origins = BTreeMap::new();
        for path in paths {
            let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                path: path.clone(),
                source,
            })?;
            let value: Value =
                serde_yaml_ng::from_str(&text).map_err(|source| ConfigError::Yaml {
                    path: path.clone(),
                    source,
                })?;
            let mapping = match value {
                Value::Mapping(m) => m,
                Value::Null => Mapping::new(),
                _ => return Err(ConfigError::NotMapping { path: path.clone() }),
            };
            merge(&mut merged, mapping, "", path, &mut origins)?;
        }
        let origin = paths
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(", ");
        Self::from_value(Value::Mapping(merged), &origin)
    }

    /// Parse a merged configuration; `origin` names it in errors.
    pub fn from_value(value: Value, origin: &str) -> Result<Config, ConfigError> {
        let raw: ResolverConfig = serde_yaml_ng::from_value(value)
            .map_err(|e| ConfigError::Invalid(format!("{origin}: {e}")))?;
        let hostname = match raw.hostname {
            Some(h) if !h.is_empty() => h,
            Some(_) => return Err(ConfigError::Invalid("hostname must not be empty".into())),
            None => {
                crate::apply::machine_hostname().map_err(|e| ConfigError::Invalid(e.to_string()))?
            }
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
        let kafka = raw.kafka.unwrap_or_default();
        kafka.check()?;
        Ok(Config {
            hostname,
            management,
            kafka,
        })
    }

    /// The consumer group: `kafka.group-id`, else `kres-kafka-<hostname>`.
    pub fn group_id(&self) -> String {
        self.kafka
            .group_id
            .clone()
            .unwrap_or_else(|| format!("kres-kafka-{}", self.hostname))
    }
}

/// Merge `from` into `into`: mappings recursively, any other value set twice is a conflict.
fn merge(
    into: &mut Mapping,
    from: Mapping,
    prefix: &str,
    path: &Path,
    origins: &mut BTreeMap<String, PathBuf>,
) -> Result<(), ConfigError> {
    for (key, value) in from {
        let name = match &key {
            Value::String(s) => s.clone(),
            other => serde_yaml_ng::to_string(other)
                .unwrap_or_default()
                .trim()
                .to_owned(),
        };
        let full = if prefix.is_empty() {
            name
        } else {
            format!("{prefix}.{name}")
        };
        match (into.get_mut(&key), value) {
            (Some(Value::Mapping(existing)), Value::Mapping(incoming)) => {
                merge(existing, incoming, &full, path, origins)?;
            }
            (Some(_), _) => {
                return Err(ConfigError::Conflict {
                    first: origins.get(&full).cloned().unwrap_or_default(),
                    key: full,
                    second: path.to_owned(),
                });
            }
            (None, value) => {
                record_origins(&value, &full, path, origins);
                into.insert(key, value);
            }
        }
    }
    Ok(())
}

fn record_origins(value: &Value, key: &str, path: &Path, origins: &mut BTreeMap<String, PathBuf>) {
    origins.insert(key.to_owned(), path.to_owned());
    if let Value::Mapping(m) = value {
        for (k, v) in m {
            if let Value::String(k) = k {
                record_origins(v, &format!("{key}.{k}"), path, origins);
            }
        }
    }
}

fn one_or_many_servers<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<Server>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    let list = match OneOrMany::deserialize(d)? {
        OneOrMany::One(s) => vec![s],
        OneOrMany::Many(v) => v,
    };
    list.iter()
        .map(|s| Server::parse(s))
        .collect::<Result<_, _>>()
        .map_err(serde::de::Error::custom)
}

fn optional_server<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Server>, D::Error> {
    let text = String::deserialize(d)?;
    if !text.contains('@') {
        return Err(serde::de::Error::custom(format!(
            "metrics-address {text:?}: expected address@port"
        )));
    }
    Server::parse(&text)
        .map(Some)
        .map_err(serde::de::Error::custom)
}

fn scalar_map<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<BTreeMap<String, String>, D::Error> {
    let raw = BTreeMap::<String, Value>::deserialize(d)?;
    raw.into_iter()
        .map(|(k, v)| {
            let v = match v {
                Value::String(s) => s,
                Value::Bool(b) => b.to_string(),
                Value::Number(n) => n.to_string(),
                _ => {
                    return Err(serde::de::Error::custom(format!(
                        "librdkafka option {k:?} must be a string, number or boolean"
                    )));
                }
            };
            Ok((k, v))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(yaml: &str) -> Result<Config, ConfigError> {
        Config::from_value(serde_yaml_ng::from_str(yaml).unwrap(), "test.yaml")
    }

    fn error(yaml: &str) -> String {
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
        assert_eq!(c.kafka.security_protocol, SecurityProtocol::Plaintext);
        assert_eq!(c.group_id(), "kres-kafka-r1");
        assert_eq!(c.kafka.debounce, Duration::from_secs(5));
        assert_eq!(c.kafka.start_from, StartFrom::Earliest);
        assert_eq!(c.kafka.chunk_size.as_u64(), 512 * 1024);
        assert_eq!(c.kafka.limits(), Limits::default());
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
        let c = parse("kafka:\n  debounce: 500ms\n  max-file-size: 10MiB\n  chunk-expiry: 2h\n  librdkafka:\n    session.timeout.ms: 6000\n    enable.partition.eof: false\n").unwrap();
        assert_eq!(c.kafka.debounce, Duration::from_millis(500));
        assert_eq!(c.kafka.max_file_size.as_u64(), 10 * 1024 * 1024);
        assert_eq!(c.kafka.chunk_expiry, Duration::from_secs(7200));
        assert_eq!(c.kafka.librdkafka["session.timeout.ms"], "6000");
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
        assert!(
            error("kafka:\n  security-protocol: ssl\n  ca-file: /nonexistent/ca.pem\n")
                .contains("kafka.ca-file: cannot read /nonexistent/ca.pem")
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
