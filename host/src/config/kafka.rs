//! The `kafka` section: the serde structure as operators write it ([`Section`]), its defaults,
//! and its resolution into checked [`Settings`], each concern checked by its own module (listed
//! in `config`). Combinations that cannot work are refused, naming the key; nothing here reads
//! a file (certificates are checked at start-up, by `tls`).

use super::address;
use super::librdkafka;
use super::partitions::{self, DEFAULT_METADATA_REFRESH, Partitions};
use super::security::{self, Sasl, SaslMechanism, SecurityProtocol, Tls};
use super::topics::{self, DEFAULT_TOPIC};
use super::trust::{self, TrustedKeys};
use super::validator::{self, DEFAULT_VALIDATE_TIMEOUT};
use super::{ConfigError, Server, values};
use crate::outcome::{Limits, Trust};
use bytesize::ByteSize;
use serde::Deserialize;
use serde_yaml_ng::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

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

/// Upstream's default files directory (Knot Resolver's state directory).
pub const DEFAULT_FILES_DIR: &str = "/var/lib/knot-resolver";
/// Five seconds: long enough to gather a publisher's burst of files into one call.
pub const DEFAULT_DEBOUNCE: Duration = Duration::from_secs(5);
/// A day: a publisher that stopped mid-transfer is not coming back for that transfer.
pub const DEFAULT_CHUNK_EXPIRY: Duration = Duration::from_secs(24 * 3600);
/// The upstream publisher's chunk size.
pub const DEFAULT_CHUNK_SIZE: u64 = 512 * 1024;
/// Default cap on a guest instance's linear memory: 256 MiB. A message's value is copied into
/// guest memory and a configuration file is parsed whole, so this must exceed the largest
/// message (Kafka's default `message.max.bytes` is 1 MiB; the publisher's chunks are 512 KiB)
/// and a large configuration's parse tree, while keeping a runaway guest from taking the host.
pub const DEFAULT_GUEST_MEMORY_LIMIT: u64 = 256 * 1024 * 1024;
/// Default time limit for one call: 30 s. Storing a chunk takes milliseconds; assembling a
/// file of the default maximum size, hashed and fsynced, takes seconds. A guest that loops is
/// stopped after this and the consumer moves on.
pub const DEFAULT_GUEST_TIME_LIMIT: Duration = Duration::from_secs(30);

/// Options of the consumer-group era, accepted and ignored (with a warning) so that existing
/// configurations keep starting: kres-kafka joins no group any more.
const DEPRECATED_GROUP_OPTIONS: [&str; 3] =
    ["group-protocol", "group-instance-id", "session-timeout"];

/// The `kafka` section as written. Upstream's fields keep their meaning and defaults; the rest
/// are kres-kafka's, each with the default documented on its constant.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct Section {
    /// Run the consumer at all. Upstream default: false.
    #[serde(default, deserialize_with = "values::boolean")]
    pub enable: bool,
    /// Topic to consume. Upstream default: [`DEFAULT_TOPIC`].
    #[serde(default = "default_topic")]
    pub topic: String,
    /// Broker(s), one or a list, each `host:port`, `host@port` (upstream's form), `[v6]:port`,
    /// or a host alone (port 9092). Upstream default: `localhost@9092`.
    #[serde(default = "default_servers", deserialize_with = "values::servers")]
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
    /// `PLAIN`, `SCRAM-SHA-256` or `SCRAM-SHA-512` (`OAUTHBEARER` is refused: see
    /// docs/operator-guide.md, "SASL"); required by `sasl_plaintext` and `sasl_ssl`.
    pub sasl_mechanism: Option<SaslMechanism>,
    /// The SASL user.
    pub sasl_username: Option<String>,
    /// A file holding the SASL password (one trailing newline ignored): re-read when it
    /// changes, so a rotated password needs no restart.
    pub sasl_password_file: Option<PathBuf>,
    /// Check that the broker's certificate names the broker (librdkafka's
    /// `ssl.endpoint.identification.algorithm=https`). Default: true; turning it off logs a
    /// warning at every start.
    #[serde(default = "yes", deserialize_with = "values::boolean")]
    pub verify_hostname: bool,
    /// The group id offsets are committed to, for lag tools (no group is joined). Default:
    /// `kres-kafka-<hostname>`.
    pub group_id: Option<String>,
    /// This resolver's zone: a message whose Kafka key equals it is for this resolver
    /// (upstream's newest publisher addresses resolvers this way). Default: none, only the
    /// `hostname` header addresses it.
    pub zone_id: Option<String>,
    /// Where a new consumer group starts: `earliest` (default) or `latest`.
    #[serde(default)]
    pub start_from: StartFrom,
    /// Quiet time after the last commit before the manager is called: [`DEFAULT_DEBOUNCE`].
    #[serde(default = "default_debounce", deserialize_with = "values::duration")]
    pub debounce: Duration,
    /// Use `/reload/force` and `/renew/force`. Default: false.
    #[serde(default, deserialize_with = "values::boolean")]
    pub force: bool,
    /// Largest file accepted: [`Limits::DEFAULT_MAX_FILE_SIZE`].
    #[serde(default = "default_max_file_size")]
    pub max_file_size: ByteSize,
    /// Largest `total-chunks` accepted: [`Limits::DEFAULT_MAX_CHUNKS`].
    #[serde(default = "default_max_chunks")]
    pub max_chunks: u32,
    /// Incomplete chunk sets older than this are removed: [`DEFAULT_CHUNK_EXPIRY`].
    #[serde(
        default = "default_chunk_expiry",
        deserialize_with = "values::duration"
    )]
    pub chunk_expiry: Duration,
    /// Chunk size `kres-kafka send` uses: [`DEFAULT_CHUNK_SIZE`], as the upstream publisher.
    #[serde(default = "default_chunk_size")]
    pub chunk_size: ByteSize,
    /// A guest component to use instead of the embedded one.
    pub guest: Option<PathBuf>,
    /// kres-kafka's own state: the compiled-guest cache (`guest-cache/`) and the marker of a
    /// manager call still owed (`pending-action`). Default: `kres-kafka` beside the files
    /// directory. Never inside the files directory: the guest could plant code there.
    pub state_dir: Option<PathBuf>,
    /// Cap on the guest's memory: [`DEFAULT_GUEST_MEMORY_LIMIT`].
    #[serde(default = "default_guest_memory_limit")]
    pub guest_memory_limit: ByteSize,
    /// Time limit for one message in the guest: [`DEFAULT_GUEST_TIME_LIMIT`].
    #[serde(
        default = "default_guest_time_limit",
        deserialize_with = "values::duration"
    )]
    pub guest_time_limit: Duration,
    /// Serve Prometheus metrics on `GET /metrics`, liveness on `GET /health` and readiness on
    /// `GET /ready` ([`crate::health`]) at this `address@port` (or `address:port`). Default:
    /// off, since it is unauthenticated: bind it to loopback or a management network.
    #[serde(default, deserialize_with = "values::listener")]
    pub metrics_address: Option<Server>,
    /// Extra librdkafka options, applied after kres-kafka's own.
    #[serde(default, deserialize_with = "values::scalar_map")]
    pub librdkafka: BTreeMap<String, String>,
    /// The resolver's JSON Schema, used when its manager cannot be asked (`GET /schema`) and
    /// no copy was cached. Default: none; the guest's embedded Knot Resolver 6.4.2 schema.
    pub schema_file: Option<PathBuf>,
    /// The resolver's own validator: program and arguments, to which the manager's files are
    /// appended. Default: [`DEFAULT_VALIDATE_COMMAND`](validator::DEFAULT_VALIDATE_COMMAND)
    /// when `kresctl` is on `PATH`, else none; `[]` turns it off.
    pub validate_command: Option<Vec<String>>,
    /// Time limit of one validator run: [`DEFAULT_VALIDATE_TIMEOUT`].
    #[serde(
        default = "default_validate_timeout",
        deserialize_with = "values::duration"
    )]
    pub validate_timeout: Duration,
    /// The manager's `--config` files, in order: what it merges on every reload, and what the
    /// validator checks a delivered configuration with. Default:
    /// [`RESOLVER_CONFIG_FILE`](validator::RESOLVER_CONFIG_FILE) and
    /// `<files-dir>/`[`DELIVERED_CONFIG_NAME`](validator::DELIVERED_CONFIG_NAME).
    pub resolver_config: Option<Vec<PathBuf>>,
    /// Which partitions to read: `all` (default) or `addressed`.
    #[serde(default)]
    pub partitions: Partitions,
    /// How often the partition count is read again: [`DEFAULT_METADATA_REFRESH`].
    #[serde(
        default = "default_metadata_refresh",
        deserialize_with = "values::duration"
    )]
    pub metadata_refresh: Duration,
    /// The publishers' Ed25519 public keys whose signatures are accepted: a list of
    /// `ed25519:<base64 of 32 bytes>`, or the path of a file of them, one a line. Default: none.
    #[serde(default)]
    pub trusted_keys: TrustedKeys,
    /// Refuse any transfer that no trusted key signed. Default: true when `trusted-keys` is
    /// not empty, else false (with a warning at every start).
    #[serde(default, deserialize_with = "values::optional_boolean")]
    pub require_signature: Option<bool>,
    /// Deprecated, ignored: kres-kafka joins no consumer group.
    pub group_protocol: Option<Value>,
    /// Deprecated, ignored: kres-kafka joins no consumer group.
    pub group_instance_id: Option<Value>,
    /// Deprecated, ignored: kres-kafka joins no consumer group.
    pub session_timeout: Option<Value>,
    /// Where the daemon reports what it did (see `status`). Default: `<topic>`
    /// [`STATUS_TOPIC_SUFFIX`](topics::STATUS_TOPIC_SUFFIX); `null` turns reporting off.
    /// Absent and `null` differ, hence the two layers of `Option`.
    #[serde(default, deserialize_with = "values::present")]
    pub status_topic: Option<Option<String>>,
    /// The compacted topic that keeps the current version of every file per recipient (see
    /// `kres_kafka_guest::state`): `send` writes it, a resolver that starts with an empty
    /// journal reads it. Default: `<topic>`[`STATE_TOPIC_SUFFIX`](topics::STATE_TOPIC_SUFFIX);
    /// `null` turns it off.
    #[serde(default, deserialize_with = "values::present")]
    pub state_topic: Option<Option<String>>,
}

fn yes() -> bool {
    true
}
fn default_topic() -> String {
    DEFAULT_TOPIC.into()
}
fn default_servers() -> Vec<Server> {
    vec![Server {
        host: "localhost".into(),
        port: super::DEFAULT_KAFKA_PORT,
    }]
}
fn default_files_dir() -> PathBuf {
    DEFAULT_FILES_DIR.into()
}
fn default_debounce() -> Duration {
    DEFAULT_DEBOUNCE
}
fn default_max_file_size() -> ByteSize {
    ByteSize::b(Limits::DEFAULT_MAX_FILE_SIZE)
}
fn default_max_chunks() -> u32 {
    Limits::DEFAULT_MAX_CHUNKS
}
fn default_chunk_expiry() -> Duration {
    DEFAULT_CHUNK_EXPIRY
}
fn default_chunk_size() -> ByteSize {
    ByteSize::b(DEFAULT_CHUNK_SIZE)
}
fn default_guest_memory_limit() -> ByteSize {
    ByteSize::b(DEFAULT_GUEST_MEMORY_LIMIT)
}
fn default_guest_time_limit() -> Duration {
    DEFAULT_GUEST_TIME_LIMIT
}
fn default_validate_timeout() -> Duration {
    DEFAULT_VALIDATE_TIMEOUT
}
fn default_metadata_refresh() -> Duration {
    DEFAULT_METADATA_REFRESH
}

impl Default for Section {
    fn default() -> Self {
        serde_yaml_ng::from_value(Value::Mapping(Default::default())).expect("defaults deserialize")
    }
}

/// The `kafka` section, checked and resolved: what every service reads.
#[derive(Debug, Clone)]
pub struct Settings {
    pub enable: bool,
    pub topic: String,
    pub servers: Vec<Server>,
    pub files_dir: PathBuf,
    pub tls: Tls,
    /// SASL with `sasl_plaintext` and `sasl_ssl`.
    pub sasl: Option<Sasl>,
    /// `group-id`, else `kres-kafka-<hostname>`.
    pub group_id: String,
    pub zone_id: Option<String>,
    pub start_from: StartFrom,
    pub debounce: Duration,
    pub force: bool,
    pub limits: Limits,
    pub chunk_expiry: Duration,
    pub chunk_size: u64,
    pub guest: Option<PathBuf>,
    /// `state-dir`, else `kres-kafka` beside the files directory.
    pub state_dir: PathBuf,
    pub guest_memory_limit: u64,
    pub guest_time_limit: Duration,
    pub metrics_address: Option<Server>,
    pub librdkafka: BTreeMap<String, String>,
    pub schema_file: Option<PathBuf>,
    /// The validator's program and arguments; empty: none.
    pub validate_command: Vec<String>,
    pub validate_timeout: Duration,
    /// The manager's `--config` files, in order.
    pub resolver_config: Vec<PathBuf>,
    pub partitions: Partitions,
    pub metadata_refresh: Duration,
    /// `trusted-keys` and `require-signature`, resolved.
    pub trust: Trust,
    /// Warnings to log at start-up: deprecated options that are set, and settings that leave
    /// the resolver's files or the SASL password unprotected.
    pub warnings: Vec<String>,
    /// `status-topic` as written: `None` for the default, `Some(None)` for off. Read through
    /// [`Settings::status_topic`], so that a topic overridden on the command line moves the
    /// default status topic with it.
    pub status_topic_setting: Option<Option<String>>,
    /// `state-topic` as written, read through [`Settings::state_topic`].
    pub state_topic_setting: Option<Option<String>>,
}

impl Settings {
    /// The status topic, `None` when reporting is off.
    pub fn status_topic(&self) -> Option<String> {
        topics::status_topic_of(&self.status_topic_setting, &self.topic)
    }

    /// The state topic, `None` when it is off.
    pub fn state_topic(&self) -> Option<String> {
        topics::state_topic_of(&self.state_topic_setting, &self.topic)
    }

    /// Where compiled guests are cached: `guest-cache` in the state directory.
    pub fn guest_cache_dir(&self) -> PathBuf {
        self.state_dir.join("guest-cache")
    }

    /// `bootstrap.servers`.
    pub fn bootstrap_servers(&self) -> String {
        self.servers
            .iter()
            .map(Server::bootstrap)
            .collect::<Vec<_>>()
            .join(",")
    }
}

impl Section {
    /// Check the section and resolve its defaults for the resolver `hostname`.
    pub fn resolve(self, hostname: &str) -> Result<Settings, ConfigError> {
        address::check_brokers(&self.server)?;
        topics::check(&self.topic, &self.status_topic, &self.state_topic)?;
        self.check_limits()?;
        let state_dir = self.state_dir()?;
        let validate_command = validator::command(
            self.validate_command.as_deref(),
            self.validate_timeout,
            self.guest_time_limit,
        )?;
        let tls = security::tls(&self)?;
        let sasl = security::sasl(&self)?;
        partitions::check_metadata_refresh(self.metadata_refresh)?;
        let trust = trust::resolve(&self.trusted_keys, self.require_signature)?;
        librdkafka::check_passthrough(&self.librdkafka)?;
        let warnings = self
            .deprecation_warnings()
            .into_iter()
            .chain(security::warning(
                self.security_protocol,
                self.sasl_mechanism,
            ))
            .chain(trust::warning(&trust))
            .collect();
        Ok(Settings {
            enable: self.enable,
            topic: self.topic,
            servers: self.server,
            tls,
            sasl,
            group_id: self
                .group_id
                .unwrap_or_else(|| format!("kres-kafka-{hostname}")),
            zone_id: self.zone_id,
            start_from: self.start_from,
            debounce: self.debounce,
            force: self.force,
            limits: Limits {
                max_file_size: self.max_file_size.as_u64(),
                max_chunks: self.max_chunks,
            },
            chunk_expiry: self.chunk_expiry,
            chunk_size: self.chunk_size.as_u64(),
            guest: self.guest,
            state_dir,
            files_dir: self.files_dir.clone(),
            guest_memory_limit: self.guest_memory_limit.as_u64(),
            guest_time_limit: self.guest_time_limit,
            metrics_address: self.metrics_address,
            librdkafka: self.librdkafka,
            schema_file: self.schema_file,
            validate_command,
            validate_timeout: self.validate_timeout,
            resolver_config: validator::resolver_config(self.resolver_config, &self.files_dir),
            partitions: self.partitions,
            metadata_refresh: self.metadata_refresh,
            trust,
            warnings,
            status_topic_setting: self.status_topic,
            state_topic_setting: self.state_topic,
        })
    }

    /// Refuse limits under which nothing could be delivered: no chunk, empty chunks, no time.
    fn check_limits(&self) -> Result<(), ConfigError> {
        let invalid = |m: &str| Err(ConfigError::Invalid(m.to_owned()));
        if self.max_chunks == 0 {
            return invalid("kafka.max-chunks must be at least 1");
        }
        if self.chunk_size.as_u64() == 0 {
            return invalid("kafka.chunk-size must be at least 1 byte");
        }
        if self.guest_time_limit.is_zero() {
            return invalid("kafka.guest-time-limit must be more than 0");
        }
        Ok(())
    }

    /// `state-dir`, else `kres-kafka` beside the files directory; never inside it, where the
    /// guest could plant code.
    fn state_dir(&self) -> Result<PathBuf, ConfigError> {
        let state_dir = self.state_dir.clone().unwrap_or_else(|| {
            let parent = self.files_dir.parent().unwrap_or(Path::new("/var/lib"));
            parent.join("kres-kafka")
        });
        if state_dir.starts_with(&self.files_dir) {
            return Err(ConfigError::Invalid(format!(
                "kafka.state-dir {} is inside kafka.files-dir: the guest could plant code there",
                state_dir.display()
            )));
        }
        Ok(state_dir)
    }

    /// A warning for each deprecated option that is set.
    fn deprecation_warnings(&self) -> Vec<String> {
        DEPRECATED_GROUP_OPTIONS
            .iter()
            .zip([
                self.group_protocol.is_some(),
                self.group_instance_id.is_some(),
                self.session_timeout.is_some(),
            ])
            .filter(|(_, set)| *set)
            .map(|(key, _)| {
                format!("kafka.{key} is deprecated and ignored: kres-kafka assigns itself partitions and joins no consumer group (remove it)")
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use crate::config::tests::{error, parse};
    use std::path::Path;

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
}
