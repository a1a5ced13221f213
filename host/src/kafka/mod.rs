//! Kafka, through rdkafka (librdkafka): client options (brokers, TLS, the operator's extra
//! options), the consumer ([`Reader`]: partitions assigned by hand, offsets from the journal),
//! Kafka's default partitioner, the conversion of records into guest messages, and
//! librdkafka's logs routed to `tracing`.
//!
//! Offsets are stored by hand once a message reached a durable end, and committed in the
//! background; the guest's journal is what a restart resumes from, so a crash replays nothing
//! that was done and loses nothing that was not.

use crate::config::{ClientCertificate, Settings, Tls};
use crate::outcome::Message;
use rdkafka::client::ClientContext;
use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::consumer::ConsumerContext;
use rdkafka::error::KafkaError;
use rdkafka::message::{BorrowedMessage, Headers, Message as _};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub mod partitioner;
mod reader;
pub mod state;

pub use reader::{
    COMMIT_EVERY, Consumer, Lost, Reader, ReaderContext, STOP_WAIT, Start, consumer_config,
};

/// A repeated broker error (the same text) is logged at most this often; in between it goes
/// to `debug`. librdkafka retries on its own and would otherwise repeat itself every second.
const REPEAT_ERROR_EVERY: Duration = Duration::from_secs(300);

/// Most kilobytes librdkafka keeps fetched ahead of the guest, per consumer: one batch
/// ([`crate::daemon::BATCH_BYTES`]), fetched while the guest writes the one before.
/// librdkafka also bounds one fetch response (`fetch.max.bytes`, as sent: compressed) by it,
/// and decompresses a response whole before queueing it; so memory holds this, the batch the
/// guest works on, and at worst one response decompressed. 16 MiB put the daemon's peak at 60
/// to 68 MiB on twelve partitions of compressed block lists (`bench throughput` W), 8 MiB at 57
/// to 58; a 1 MiB response bound saved 5 MiB more but made catching up from nisshi, which
/// answers each fetch slowly, 8 times slower (3 MB/s against 26).
pub const QUEUED_KBYTES: u32 = 8 * 1024;

/// Client options common to the consumer and the producer: brokers and TLS, then the
/// operator's `librdkafka` options.
pub fn client_config(kafka: &Settings, client_id: &str) -> ClientConfig {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", kafka.bootstrap_servers())
        .set("client.id", client_id)
        // librdkafka reconnects forever; these bound the wait between attempts.
        .set("reconnect.backoff.ms", "100")
        .set("reconnect.backoff.max.ms", "10000")
        .set_log_level(RDKafkaLogLevel::Info);
    let protocol = match (&kafka.tls, &kafka.sasl) {
        (Tls::Plaintext, None) => "plaintext",
        (Tls::Ssl { .. }, None) => "ssl",
        (Tls::Plaintext, Some(_)) => "sasl_plaintext",
        (Tls::Ssl { .. }, Some(_)) => "sasl_ssl",
    };
    config.set("security.protocol", protocol);
    if let Some(sasl) = &kafka.sasl {
        config
            .set("sasl.mechanism", sasl.mechanism.name())
            .set("sasl.username", &sasl.username);
        // Checked at start-up (`tls::check_sasl`); read afresh for every client.
        match sasl.password() {
            Ok(password) => {
                config.set("sasl.password", password);
            }
            Err(e) => tracing::error!(
                file = %sasl.password_file.display(),
                "reading kafka.sasl-password-file: {e}"
            ),
        }
    }
    match &kafka.tls {
        Tls::Plaintext => {}
        Tls::Ssl {
            ca_file,
            client,
            verify_hostname,
        } => {
            config.set(
                "ssl.endpoint.identification.algorithm",
                if *verify_hostname { "https" } else { "none" },
            );
            // Explicit, though librdkafka's default: verification is never off.
            config.set("enable.ssl.certificate.verification", "true");
            if let Some(ca) = ca_file {
                config.set("ssl.ca.location", ca.display().to_string());
            }
            if let Some(ClientCertificate {
                cert_file,
                key_file,
                key_password,
            }) = client
            {
                config.set("ssl.certificate.location", cert_file.display().to_string());
                config.set("ssl.key.location", key_file.display().to_string());
                if let Some(password) = key_password {
                    config.set("ssl.key.password", password);
                }
            }
        }
    }
    config
}

/// Give a running client new SASL credentials: its next connection, and its next
/// re-authentication, use them; connections already authenticated stay up.
pub fn set_sasl_credentials<C: ClientContext>(
    client: &rdkafka::client::Client<C>,
    username: &str,
    password: &str,
) -> Result<(), String> {
    use rdkafka::bindings;
    use std::ffi::{CStr, CString};
    let username = CString::new(username).map_err(|_| "the username holds a NUL byte")?;
    let password = CString::new(password).map_err(|_| "the password holds a NUL byte")?;
    // SAFETY: the client pointer is valid while `client` lives, librdkafka copies both
    // strings, and an error it returns is ours to read and free.
    unsafe {
        let error = bindings::rd_kafka_sasl_set_credentials(
            client.native_ptr(),
            username.as_ptr(),
            password.as_ptr(),
        );
        if error.is_null() {
            return Ok(());
        }
        let text = CStr::from_ptr(bindings::rd_kafka_error_string(error))
            .to_string_lossy()
            .into_owned();
        bindings::rd_kafka_error_destroy(error);
        Err(text)
    }
}

/// The low and high watermarks of `partition` as librdkafka last saw them (the high one in
/// every fetch response, the low one when known): no request to the broker. `None` until a
/// fetch response for the partition came; the low one `None` while unknown.
pub fn cached_watermarks<C: rdkafka::consumer::ConsumerContext>(
    consumer: &rdkafka::consumer::StreamConsumer<C>,
    topic: &str,
    partition: i32,
) -> Option<(Option<i64>, i64)> {
    use rdkafka::bindings;
    let topic = std::ffi::CString::new(topic).ok()?;
    let (mut low, mut high) = (-1_i64, -1_i64);
    // SAFETY: the client pointer is valid while `consumer` lives; librdkafka only reads the
    // topic name and writes the two offsets.
    let error = unsafe {
        bindings::rd_kafka_get_watermark_offsets(
            rdkafka::consumer::Consumer::client(consumer).native_ptr(),
            topic.as_ptr(),
            partition,
            &mut low,
            &mut high,
        )
    };
    // librdkafka's "invalid offset" (-1001) while it has not seen the partition's watermark.
    (error == bindings::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR && high >= 0)
        .then_some(((low >= 0).then_some(low), high))
}

/// Every kind [`error_kind`] gives, so that the counter of each starts at zero.
pub const ERROR_KINDS: [&str; 4] = ["authentication", "tls", "transport", "other"];

/// What kind of trouble a client error is, for `kres_kafka_broker_errors_total{kind}`.
pub fn error_kind(error: &KafkaError) -> &'static str {
    use rdkafka::types::RDKafkaErrorCode as Code;
    match error.rdkafka_error_code() {
        Some(
            Code::Authentication
            | Code::SaslAuthenticationFailed
            | Code::IllegalSASLState
            | Code::UnsupportedSASLMechanism,
        ) => "authentication",
        Some(Code::SSL) => "tls",
        Some(Code::BrokerTransportFailure | Code::AllBrokersDown | Code::Resolve) => "transport",
        _ => "other",
    }
}

/// Apply the operator's `librdkafka` options, after kres-kafka's own.
pub fn apply_extra_options(config: &mut ClientConfig, kafka: &Settings) {
    for (key, value) in &kafka.librdkafka {
        config.set(key, value);
    }
}

/// Logs librdkafka's messages and errors through `tracing`, without repeating itself.
/// Cloning gives a handle on the same state.
#[derive(Default, Clone)]
pub struct LogContext {
    seen: Arc<Mutex<HashMap<String, Instant>>>,
    last_error: Arc<Mutex<Option<String>>>,
}

impl LogContext {
    /// The last error librdkafka reported, to explain a failure (a TLS handshake refused, a
    /// broker unreachable) that otherwise surfaces as a timeout.
    pub fn last_error(&self) -> Option<String> {
        self.last_error
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn remember(&self, text: &str) {
        *self.last_error.lock().unwrap_or_else(|e| e.into_inner()) = Some(text.to_owned());
    }

    /// Whether `text` was not logged at warn level within [`REPEAT_ERROR_EVERY`].
    pub(crate) fn first_in_a_while(&self, text: &str) -> bool {
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        match seen.get(text) {
            Some(at) if now.duration_since(*at) < REPEAT_ERROR_EVERY => false,
            _ => {
                seen.insert(text.to_owned(), now);
                true
            }
        }
    }
}

impl ClientContext for LogContext {
    fn log(&self, level: RDKafkaLogLevel, facility: &str, message: &str) {
        match level {
            RDKafkaLogLevel::Emerg
            | RDKafkaLogLevel::Alert
            | RDKafkaLogLevel::Critical
            | RDKafkaLogLevel::Error => {
                if self.first_in_a_while(message) {
                    tracing::warn!(target: "librdkafka", facility, "{message}");
                } else {
                    tracing::debug!(target: "librdkafka", facility, "{message}");
                }
            }
            RDKafkaLogLevel::Warning | RDKafkaLogLevel::Notice | RDKafkaLogLevel::Info => {
                tracing::debug!(target: "librdkafka", facility, "{message}")
            }
            RDKafkaLogLevel::Debug => tracing::trace!(target: "librdkafka", facility, "{message}"),
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        let text = format!("{error}: {reason}");
        self.remember(&text);
        if self.first_in_a_while(&text) {
            tracing::warn!(target: "librdkafka", "Kafka: {text} (retrying)");
        } else {
            tracing::debug!(target: "librdkafka", "Kafka: {text} (retrying)");
        }
    }
}

impl ConsumerContext for LogContext {}

impl rdkafka::producer::ProducerContext for LogContext {
    type DeliveryOpaque = ();
    fn delivery(&self, _: &rdkafka::message::DeliveryResult<'_>, _: Self::DeliveryOpaque) {}
}

/// Where a record came from: enough to store its offset once it is done.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Position {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
}

/// Convert a record into the guest's message. A header without a value becomes empty bytes.
pub fn to_message(record: &BorrowedMessage<'_>) -> (Message, Position) {
    let headers = record
        .headers()
        .map(|headers| {
            headers
                .iter()
                .map(|h| {
                    (
                        h.key.to_owned(),
                        h.value.map(<[u8]>::to_vec).unwrap_or_default(),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    let position = Position {
        topic: record.topic().to_owned(),
        partition: record.partition(),
        offset: record.offset(),
    };
    let message = Message {
        key: record.key().map(<[u8]>::to_vec),
        headers,
        value: record.payload().unwrap_or_default().into(),
        topic: position.topic.clone(),
        partition: position.partition,
        offset: position.offset,
    };
    (message, position)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::config::Section;

    /// The `kafka` section `yaml`, resolved for the resolver `r1`.
    pub(super) fn settings(yaml: &str) -> Result<Settings, String> {
        serde_yaml_ng::from_str::<Section>(yaml)
            .map_err(|e| e.to_string())?
            .resolve("r1")
            .map_err(|e| e.to_string())
    }

    #[test]
    fn the_consumer_joins_no_group_and_commits_only_what_is_done() {
        let kafka = settings("enable: true\n").unwrap();
        let config = consumer_config(&kafka, "c");
        assert_eq!(config.get("group.id"), Some("kres-kafka-r1"));
        assert_eq!(config.get("enable.auto.offset.store"), Some("false"));
        assert_eq!(config.get("enable.auto.commit"), Some("false"));
        for key in ["group.protocol", "group.instance.id", "session.timeout.ms"] {
            assert_eq!(config.get(key), None, "{key}");
        }
    }

    #[test]
    fn group_options_of_old_configurations_are_accepted_with_a_deprecation_warning() {
        let deprecated = |kafka: &Settings| {
            kafka
                .warnings
                .iter()
                .filter(|w| w.contains("deprecated"))
                .count()
        };
        let kafka = settings("enable: true\n").unwrap();
        assert_eq!(deprecated(&kafka), 0, "{:?}", kafka.warnings);
        let kafka = settings(
            "group-protocol: classic\ngroup-instance-id: rack7-r1\nsession-timeout: 30s\n",
        )
        .unwrap();
        assert_eq!(deprecated(&kafka), 3, "{:?}", kafka.warnings);
        for key in ["group-protocol", "group-instance-id", "session-timeout"] {
            assert!(
                kafka
                    .warnings
                    .iter()
                    .any(|w| w.contains(&format!("kafka.{key} is deprecated and ignored"))),
                "{key}: {:?}",
                kafka.warnings
            );
        }
        // Setting them through the passthrough map is refused: nothing would honour them.
        for option in ["group.protocol", "group.instance.id", "session.timeout.ms"] {
            let error = settings(&format!("librdkafka:\n  {option}: x\n")).unwrap_err();
            assert!(
                error.contains(&format!("kafka.librdkafka.{option} is refused"))
                    && error.contains("joins no group"),
                "{error}"
            );
        }
        let error = settings("partitions: some\n").unwrap_err();
        assert!(error.contains("unknown variant `some`"), "{error}");
        assert_eq!(
            settings("partitions: addressed\n").unwrap().partitions,
            crate::config::Partitions::Addressed
        );
    }

    #[test]
    fn sasl_settings_reach_librdkafka_and_contradictions_are_refused_naming_the_key() {
        let dir = tempfile::tempdir().unwrap();
        let password = dir.path().join("password");
        std::fs::write(&password, "s3cret\n").unwrap();
        let yaml = |protocol: &str, extra: &str| {
            format!(
                "security-protocol: {protocol}\nsasl-mechanism: SCRAM-SHA-512\nsasl-username: resolver1\nsasl-password-file: {}\n{extra}",
                password.display()
            )
        };
        let kafka = settings(&yaml("sasl_ssl", "")).unwrap();
        let config = client_config(&kafka, "c");
        assert_eq!(config.get("security.protocol"), Some("sasl_ssl"));
        assert_eq!(config.get("sasl.mechanism"), Some("SCRAM-SHA-512"));
        assert_eq!(config.get("sasl.username"), Some("resolver1"));
        assert_eq!(
            config.get("sasl.password"),
            Some("s3cret"),
            "one trailing newline ignored"
        );
        assert_eq!(
            config.get("enable.ssl.certificate.verification"),
            Some("true")
        );
        let kafka = settings(&yaml("sasl_plaintext", "")).unwrap();
        assert_eq!(
            client_config(&kafka, "c").get("security.protocol"),
            Some("sasl_plaintext")
        );
        assert!(kafka.warnings.iter().all(|w| !w.contains("PLAIN over")));
        let plain =
            settings(&yaml("sasl_plaintext", "").replace("SCRAM-SHA-512", "PLAIN")).unwrap();
        assert!(
            plain
                .warnings
                .iter()
                .any(|w| w.contains("PLAIN over sasl_plaintext"))
        );
        assert_eq!(
            crate::tls::check_sasl(plain.sasl.as_ref()).unwrap().len(),
            1,
            "mode 644 warns"
        );

        let refused = |yaml: &str| settings(yaml).unwrap_err();
        for (yaml, says) in [
            ("sasl-mechanism: PLAIN\n".to_owned(), "kafka.sasl-mechanism is set but kafka.security-protocol is plaintext"),
            ("security-protocol: ssl\nsasl-username: u\n".to_owned(), "kafka.sasl-username is set but kafka.security-protocol is ssl: set it to sasl_ssl"),
            ("security-protocol: sasl_ssl\n".to_owned(), "kafka.sasl-mechanism is not set"),
            ("security-protocol: sasl_ssl\nsasl-mechanism: SCRAM-SHA-256\nsasl-password-file: /p\n".to_owned(), "kafka.sasl-username is not set"),
            ("security-protocol: sasl_ssl\nsasl-mechanism: SCRAM-SHA-256\nsasl-username: u\n".to_owned(), "kafka.sasl-password-file is not set"),
            ("security-protocol: sasl_ssl\nsasl-mechanism: OAUTHBEARER\nsasl-username: u\nsasl-password-file: /p\n".to_owned(), "OAUTHBEARER is refused"),
            (yaml("sasl_plaintext", "ca-file: /ca.pem\n"), "kafka.ca-file is set but kafka.security-protocol is sasl_plaintext: set it to sasl_ssl"),
            ("librdkafka:\n  sasl.password: x\n".to_owned(), "kafka.librdkafka.sasl.password is refused"),
            ("librdkafka:\n  security.protocol: sasl_ssl\n".to_owned(), "kafka.librdkafka.security.protocol is refused"),
            ("security-protocol: SASL_SSL\n".to_owned(), "unknown variant `SASL_SSL`"),
        ] {
            let error = refused(&yaml);
            assert!(error.contains(says), "{yaml}: {error}");
        }
        std::fs::write(&password, "").unwrap();
        let kafka = settings(&yaml("sasl_ssl", "")).unwrap();
        let error = crate::tls::check_sasl(kafka.sasl.as_ref())
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("kafka.sasl-password-file") && error.contains("empty"),
            "{error}"
        );
    }

    #[test]
    fn a_repeated_broker_error_is_logged_once_and_remembered() {
        let log = LogContext::default();
        let handle = log.clone();
        let failure = "ssl://127.0.0.1:9093/1: SSL handshake failed: certificate verify failed";
        assert!(log.first_in_a_while(failure));
        assert!(
            !log.first_in_a_while(failure),
            "the same error again within the window"
        );
        assert!(
            log.first_in_a_while("ssl://127.0.0.1:9094/2: SSL handshake failed"),
            "another broker's error"
        );
        log.error(
            KafkaError::Global(rdkafka::types::RDKafkaErrorCode::AllBrokersDown),
            "2/2 brokers are down",
        );
        let last = handle.last_error().expect("remembered through a clone");
        assert!(last.contains("2/2 brokers are down"), "{last}");
    }
}
