//! Kafka, through rdkafka (librdkafka): client options (brokers, TLS, the operator's extra
//! options), the consumer, the conversion of records into guest messages, and librdkafka's logs
//! routed to `tracing`.
//!
//! Offsets are stored by hand (`enable.auto.offset.store=false`) once a message reached a
//! durable end, and committed in the background by librdkafka; so a crash replays from the last
//! stored offset and loses nothing.
//!
//! A restart must resume at once, so the group protocol is chosen with that in mind (see
//! [`choose_protocol`]): the consumer protocol (KIP-848) where the broker offers it, since a
//! member that leaves hands its partitions back at once; else the classic protocol with static
//! membership, with which a broker gives a restarted daemon its partitions back at once even
//! after a kill. [`close`] leaves the group at shutdown.

use crate::config::{ClientCertificate, Config, GroupProtocol, Settings, StartFrom, Tls};
use crate::outcome::Message;
use rdkafka::client::ClientContext;
use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer as _, ConsumerContext, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{BorrowedMessage, Headers, Message as _};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

mod protocol;

pub use protocol::{Choice, Protocol, choose_protocol};

/// A repeated broker error (the same text) is logged at most this often; in between it goes
/// to `debug`. librdkafka retries on its own and would otherwise repeat itself every second.
const REPEAT_ERROR_EVERY: Duration = Duration::from_secs(300);

/// Most kilobytes librdkafka keeps fetched ahead of the guest, per consumer.
pub const QUEUED_KBYTES: u32 = 16 * 1024;

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
    match &kafka.tls {
        Tls::Plaintext => {
            config.set("security.protocol", "plaintext");
        }
        Tls::Ssl {
            ca_file,
            client,
            verify_hostname,
        } => {
            config.set("security.protocol", "ssl");
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

/// The daemon's consumer.
pub type Consumer = StreamConsumer<LogContext>;

/// Create the consumer of `config`'s topic, in the resolver's own group, after choosing its
/// group protocol ([`choose_protocol`], which may wait for a broker to answer). Logs the choice.
pub async fn consumer(
    config: &Config,
    shutdown: &CancellationToken,
) -> Result<Consumer, KafkaError> {
    let kafka = &config.kafka;
    let client_id = format!("kres-kafka-{}", config.hostname);
    let choice = choose_protocol(kafka, &client_id, shutdown).await;
    match choice.protocol {
        Protocol::Consumer => tracing::info!(
            protocol = choice.protocol.name(), why = %choice.why,
            "group protocol: consumer (KIP-848)"
        ),
        Protocol::Classic => tracing::info!(
            protocol = choice.protocol.name(), why = %choice.why,
            group_instance_id = kafka.group_instance_id.as_deref().unwrap_or("none"),
            session_timeout = ?kafka.session_timeout,
            "group protocol: classic"
        ),
    }
    let consumer: Consumer = consumer_config(kafka, &client_id, choice.protocol)
        .create_with_context(LogContext::default())?;
    consumer.subscribe(&[&kafka.topic])?;
    Ok(consumer)
}

/// The consumer's options: the client's, the group's for `protocol`, then the operator's.
pub fn consumer_config(kafka: &Settings, client_id: &str, protocol: Protocol) -> ClientConfig {
    let mut client = client_config(kafka, client_id);
    client
        .set("group.id", &kafka.group_id)
        .set("group.protocol", protocol.name())
        .set("enable.auto.commit", "true")
        .set("enable.auto.offset.store", "false")
        // What librdkafka prefetches (64 MiB by default): bounded so that memory stays flat,
        // still two batches ahead of the guest.
        .set("queued.max.messages.kbytes", QUEUED_KBYTES.to_string())
        .set(
            "auto.offset.reset",
            match kafka.start_from {
                StartFrom::Earliest => "earliest",
                StartFrom::Latest => "latest",
            },
        );
    // The consumer protocol's session timeout is the broker's, and librdkafka refuses one set
    // here; static membership with it would be refused after a kill (UNRELEASED_INSTANCE_ID,
    // fatal to librdkafka) until the killed member timed out, and buys nothing after a clean
    // stop, when the member has left.
    if protocol == Protocol::Classic {
        client.set(
            "session.timeout.ms",
            kafka.session_timeout.as_millis().to_string(),
        );
        if let Some(id) = &kafka.group_instance_id {
            client.set("group.instance.id", id);
        }
    }
    apply_extra_options(&mut client, kafka);
    client
}

/// Commit the offsets stored so far, synchronously (at shutdown).
pub fn commit_stored(consumer: &Consumer) -> Result<(), KafkaError> {
    match consumer.commit_consumer_state(CommitMode::Sync) {
        // Nothing stored since the last commit.
        Err(KafkaError::ConsumerCommit(rdkafka::types::RDKafkaErrorCode::NoOffset)) => Ok(()),
        other => other,
    }
}

/// Leave the group and stop the consumer; blocks until librdkafka is done. With the consumer
/// protocol the member leaves (a last heartbeat), so a restart gets the partitions at once;
/// with the classic protocol a static member deliberately does not (its partitions wait for
/// it, without a rebalance), a dynamic one sends LeaveGroup. Offsets stored and not yet
/// committed are committed on the way (`enable.auto.commit`), though [`commit_stored`] has
/// done so already.
pub fn close(consumer: Consumer) {
    // Dropping the last handle is rdkafka's close: `rd_kafka_consumer_close_queue`, then
    // polling until librdkafka says it is closed.
    drop(consumer);
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

/// Mark `position` done: its offset is committed with the next (auto-)commit.
pub fn store(consumer: &Consumer, position: &Position) -> Result<(), KafkaError> {
    consumer.store_offset(&position.topic, position.partition, position.offset)
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
    fn the_classic_protocol_gets_static_membership_and_a_bounded_session_timeout() {
        let kafka = settings("enable: true\n").unwrap();
        let classic = consumer_config(&kafka, "c", Protocol::Classic);
        assert_eq!(classic.get("group.protocol"), Some("classic"));
        assert_eq!(classic.get("group.instance.id"), Some("kres-kafka-r1"));
        assert_eq!(classic.get("session.timeout.ms"), Some("10000"));
        // The consumer protocol's session timeout is the broker's; static membership would be
        // refused after a kill.
        let consumer = consumer_config(&kafka, "c", Protocol::Consumer);
        assert_eq!(consumer.get("group.protocol"), Some("consumer"));
        assert_eq!(consumer.get("group.instance.id"), None);
        assert_eq!(consumer.get("session.timeout.ms"), None);

        for off in ["group-instance-id: null\n", "group-instance-id: ''\n"] {
            let kafka = settings(off).unwrap();
            assert_eq!(kafka.group_instance_id, None, "{off}");
            let classic = consumer_config(&kafka, "c", Protocol::Classic);
            assert_eq!(classic.get("group.instance.id"), None, "{off}");
        }
        let kafka = settings("group-instance-id: rack7-r1\nsession-timeout: 30s\n").unwrap();
        let classic = consumer_config(&kafka, "c", Protocol::Classic);
        assert_eq!(classic.get("group.instance.id"), Some("rack7-r1"));
        assert_eq!(classic.get("session.timeout.ms"), Some("30000"));
    }

    #[test]
    fn group_options_that_cannot_work_are_refused_naming_the_key() {
        let refused = |yaml: &str| settings(yaml).unwrap_err();
        for (option, key) in [
            ("group.protocol", "kafka.group-protocol"),
            ("group.instance.id", "kafka.group-instance-id"),
            ("session.timeout.ms", "kafka.session-timeout"),
        ] {
            let error = refused(&format!("librdkafka:\n  {option}: x\n"));
            assert!(
                error.contains(&format!("kafka.librdkafka.{option} is refused")),
                "{error}"
            );
            assert!(error.contains(key), "{error}");
        }
        let error = refused("librdkafka:\n  heartbeat.interval.ms: 1000\n");
        assert!(error.contains("kafka.group-protocol: classic"), "{error}");
        settings("group-protocol: classic\nlibrdkafka:\n  heartbeat.interval.ms: 1000\n").unwrap();
        let error = refused("group-protocol: consumer\nsession-timeout: 20s\n");
        assert!(error.contains("kafka.session-timeout is set"), "{error}");
        let error = refused("group-protocol: consumer\ngroup-instance-id: r1\n");
        assert!(error.contains("kafka.group-instance-id is set"), "{error}");
        let error = refused("session-timeout: 2s\n");
        assert!(
            error.contains("kafka.session-timeout (2s) is below"),
            "{error}"
        );
        let error = refused("group-protocol: kip-848\n");
        assert!(error.contains("unknown variant `kip-848`"), "{error}");
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
