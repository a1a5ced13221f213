//! The status topic: what each resolver did, told back through Kafka, so that a publisher can
//! wait for the fleet (`send --wait`) and an operator can see it (`kres-kafka status`).
//!
//! A daemon publishes one JSON [`Record`] per outcome an operator needs (a file committed or
//! unchanged, a message rejected, a manager call served, refused or rolled back, a guest swapped
//! or refused, delivery paused or resumed, the daemon started or stopped), keyed by resolver, or `resolver/file` for a
//! file's records, so that a compacted topic keeps each resolver's latest state per file.
//!
//! This module must never delay or stop delivery: [`Status`] hands each record to librdkafka's
//! own bounded queue and returns; a record that cannot be queued or delivered is logged
//! (rate-limited) and counted (`kres_kafka_status_failures_total`), nothing more. The reading
//! side ([`Reader`]) joins no consumer group: it assigns partitions at offsets it chose.
//!
//! # Layout
//!
//! - this file: the record, and the daemon's reporter.
//! - `reader`: reading the status topic back, without a consumer group.
//! - `tracker`: `send --wait`'s bookkeeping of what the expected resolvers said.

mod reader;
mod tracker;

pub use reader::{ReadError, Reader};
pub use tracker::{Progress, Roster, Tracker};

use crate::config::Config;
use crate::kafka::{self, LogContext};
use crate::metrics::Metrics;
use crate::outcome::{Action, Outcome};
use rdkafka::client::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::error::KafkaError;
use rdkafka::message::DeliveryResult;
use rdkafka::producer::{BaseRecord, Producer as _, ProducerContext, ThreadedProducer};
use serde::{Deserialize, Serialize};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Records waiting in librdkafka's queue at most. A status topic that cannot be written fills
/// it within minutes of a busy resolver's work; past it records are dropped and counted, so a
/// broker outage costs memory for this many small records, never delivery.
const QUEUE_MAX: usize = 10_000;

/// How long librdkafka keeps trying to deliver one record: five minutes, enough to ride out a
/// leader election or a broker restart, short enough that a record still means "now".
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(300);

/// How long a stopping daemon waits for its last records (the stop itself among them): a
/// broker that answers takes milliseconds; one that does not must not hold up the stop (with
/// `kafka::reader::STOP_WAIT`, under a second in all).
pub const FLUSH_AT_STOP: Duration = Duration::from_millis(200);

/// What happened, as the `outcome` field says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Event {
    /// A file was committed (`size`, `sha256`; `action` is the call it asks for).
    Committed,
    /// Identical content was already in place.
    Unchanged,
    /// A file was withdrawn (`send --remove`): taken out of the files directory; `action` is
    /// the call it asks for.
    Removed,
    /// The guest refused the message (`kind`, `reason`).
    Rejected,
    /// The call into the guest did not return (`kind`, `reason`).
    Failed,
    /// The manager served the call in `action`; `transfer-ids` are the transfers it covers.
    Served,
    /// The manager refused the call, or could not be reached (`reason`).
    Refused,
    /// The manager refused a call: the batch's files were restored and the call made again.
    RolledBack,
    /// A new guest is in use (`guest-version`).
    GuestSwapped,
    /// A new guest failed its checks; the current one stays (`reason`).
    GuestRefused,
    /// Delivery stopped at this message, which stays to be done (`reason`: the files directory
    /// cannot be written); it is offered again until it goes through.
    Paused,
    /// Delivery goes on again after a pause.
    Resumed,
    Started,
    Stopped,
    /// Written by a newer kres-kafka: shown, never interpreted.
    #[serde(other)]
    Unknown,
}

impl Event {
    /// As in the JSON and the tables.
    pub fn as_str(self) -> &'static str {
        match self {
            Event::Committed => "committed",
            Event::Unchanged => "unchanged",
            Event::Removed => "removed",
            Event::Rejected => "rejected",
            Event::Failed => "failed",
            Event::Served => "served",
            Event::Refused => "refused",
            Event::RolledBack => "rolled-back",
            Event::GuestSwapped => "guest-swapped",
            Event::GuestRefused => "guest-refused",
            Event::Paused => "paused",
            Event::Resumed => "resumed",
            Event::Started => "started",
            Event::Stopped => "stopped",
            Event::Unknown => "unknown",
        }
    }
}

/// One status record, the value on the status topic (JSON).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Record {
    /// The resolver's hostname.
    pub resolver: String,
    #[serde(default)]
    pub zone_id: Option<String>,
    /// The file concerned (a file's records; the `file-name` header for a rejection).
    #[serde(default)]
    pub file: Option<String>,
    /// The message's `transfer-id` header, when it had one.
    #[serde(default)]
    pub transfer_id: Option<String>,
    /// For a manager call: the transfers whose commits it serves.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub transfer_ids: Vec<String>,
    #[serde(default)]
    pub sha256: Option<String>,
    #[serde(default)]
    pub size: Option<u64>,
    pub outcome: Event,
    /// For a commit, the call it asks for; for a call, which one.
    #[serde(default)]
    pub action: Option<Action>,
    /// For a rejection or failure: its kind (`invalid-config`, `time-limit`, ...).
    #[serde(default)]
    pub kind: Option<String>,
    #[serde(default)]
    pub reason: Option<String>,
    /// The guest in use.
    #[serde(default)]
    pub guest_version: Option<String>,
    /// kres-kafka's version.
    pub version: String,
    /// Unix seconds.
    pub time: u64,
}

impl Record {
    /// The Kafka key: `resolver/file` for a file's records, else `resolver`.
    pub fn key(&self) -> String {
        match &self.file {
            Some(file) => format!("{}/{file}", self.resolver),
            None => self.resolver.clone(),
        }
    }
}

/// The message a file's record is about: its headers the guest does not report back.
#[derive(Debug, Clone, Default)]
pub struct About {
    /// The `file-name` header.
    pub file: Option<String>,
    /// The `transfer-id` header.
    pub transfer_id: Option<String>,
}

impl About {
    pub fn of(message: &crate::outcome::Message) -> About {
        use kres_kafka_guest::headers;
        About {
            file: message.header(headers::FILE_NAME),
            transfer_id: message.header(headers::TRANSFER_ID),
        }
    }
}

/// The daemon's reporter. Cheap to clone; [`Status::off`] reports nothing.
#[derive(Clone, Default)]
pub struct Status {
    inner: Option<Arc<Inner>>,
}

struct Inner {
    producer: ThreadedProducer<Reporting>,
    topic: String,
    resolver: String,
    zone_id: Option<String>,
    guest_version: Mutex<String>,
}

/// The producer's context: librdkafka's logs as [`LogContext`] logs them, and failed
/// deliveries logged (rate-limited) and counted.
struct Reporting {
    log: LogContext,
    metrics: Metrics,
}

impl Reporting {
    fn failed(&self, why: &str) {
        self.metrics.status_failure();
        let text = format!("a status record was not delivered: {why}");
        if self.log.first_in_a_while(&text) {
            tracing::warn!(
                "{text} (delivery goes on; kres_kafka_status_failures_total counts these)"
            );
        } else {
            tracing::debug!("{text}");
        }
    }
}

impl ClientContext for Reporting {
    fn log(&self, level: RDKafkaLogLevel, facility: &str, message: &str) {
        self.log.log(level, facility, message);
    }
    fn error(&self, error: KafkaError, reason: &str) {
        self.metrics
            .broker_error("status", crate::kafka::error_kind(&error));
        self.log.error(error, reason);
    }
}

impl ProducerContext for Reporting {
    type DeliveryOpaque = ();
    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        if let Err((e, _)) = result {
            self.failed(&e.to_string());
        }
    }
}

impl Status {
    /// Report nothing.
    pub fn off() -> Status {
        Status::default()
    }

    /// The reporter for `config`'s status topic, with the consumer's brokers and TLS settings;
    /// off when `kafka.status-topic` is `null`, or (logged) when the producer cannot be made.
    pub fn new(config: &Config, metrics: Metrics, guest_version: &str) -> Status {
        let kafka = &config.kafka;
        let Some(topic) = kafka.status_topic() else {
            tracing::info!("kafka.status-topic is null: no status records");
            return Status::off();
        };
        let mut client = kafka::client_config(kafka, &format!("kres-kafka-{}", config.hostname));
        client
            // A retry must not put an older state after a newer one under the same key.
            .set("enable.idempotence", "true")
            .set("queue.buffering.max.messages", QUEUE_MAX.to_string())
            .set(
                "message.timeout.ms",
                DELIVERY_TIMEOUT.as_millis().to_string(),
            )
            .set("linger.ms", "50");
        kafka::apply_extra_options(&mut client, kafka);
        let context = Reporting {
            log: LogContext::default(),
            metrics,
        };
        match client.create_with_context(context) {
            Ok(producer) => Status {
                inner: Some(Arc::new(Inner {
                    producer,
                    topic,
                    resolver: config.hostname.clone(),
                    zone_id: kafka.zone_id.clone(),
                    guest_version: Mutex::new(guest_version.to_owned()),
                })),
            },
            Err(e) => {
                tracing::error!("creating the status producer: {e}; no status records");
                Status::off()
            }
        }
    }

    /// A record of `event` for this resolver, the other fields empty.
    fn record(inner: &Inner, event: Event) -> Record {
        Record {
            resolver: inner.resolver.clone(),
            zone_id: inner.zone_id.clone(),
            file: None,
            transfer_id: None,
            transfer_ids: Vec::new(),
            sha256: None,
            size: None,
            outcome: event,
            action: None,
            kind: None,
            reason: None,
            guest_version: Some(
                inner
                    .guest_version
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .clone(),
            ),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            time: crate::system::unix_now(),
        }
    }

    /// Queue `record`; never waits.
    fn publish(inner: &Inner, record: &Record) {
        let value = match serde_json::to_vec(record) {
            Ok(value) => value,
            Err(e) => return inner.producer.context().failed(&e.to_string()),
        };
        let key = record.key();
        let queued = inner
            .producer
            .send(BaseRecord::to(&inner.topic).key(&key).payload(&value));
        if let Err((e, _)) = queued {
            inner
                .producer
                .context()
                .failed(&format!("queueing it: {e}"));
        }
    }

    fn with(&self, event: Event, fill: impl FnOnce(&mut Record)) {
        if let Some(inner) = &self.inner {
            let mut record = Status::record(inner, event);
            fill(&mut record);
            Status::publish(inner, &record);
        }
    }

    /// Report a message's durable outcome; chunks stored and messages for others are not
    /// reported.
    pub fn message(&self, about: &About, outcome: &Outcome) {
        let event = match outcome {
            Outcome::Committed { .. } => Event::Committed,
            Outcome::Unchanged { .. } => Event::Unchanged,
            Outcome::Rejected(_) => Event::Rejected,
            Outcome::Failed(_) => Event::Failed,
            Outcome::Skipped { .. } | Outcome::Stored { .. } => return,
        };
        self.with(event, |r| {
            r.file = outcome.file().map(str::to_owned).or(about.file.clone());
            r.transfer_id = about.transfer_id.clone();
            r.kind = outcome.kind().map(str::to_owned);
            r.reason = outcome.reason();
            if let Outcome::Committed {
                action,
                size,
                sha256,
                ..
            } = outcome
            {
                r.action = Some(*action);
                r.size = Some(*size);
                r.sha256 = Some(sha256.clone());
            }
        });
    }

    /// Report a manager call: `Served`, `Refused` or `RolledBack`, for these transfers.
    pub fn call(
        &self,
        event: Event,
        action: Action,
        transfer_ids: &[String],
        reason: Option<String>,
    ) {
        self.with(event, |r| {
            r.action = Some(action);
            r.transfer_ids = transfer_ids.to_vec();
            r.reason = reason;
        });
    }

    /// Report a new guest in use.
    pub fn swapped(&self, version: &str) {
        if let Some(inner) = &self.inner {
            *inner
                .guest_version
                .lock()
                .unwrap_or_else(|e| e.into_inner()) = version.to_owned();
        }
        self.with(Event::GuestSwapped, |_| {});
    }

    /// Report a new guest refused.
    pub fn guest_refused(&self, reason: &str) {
        self.with(Event::GuestRefused, |r| r.reason = Some(reason.to_owned()));
    }

    /// Report delivery paused at the message `about`, for `reason`.
    pub fn paused(&self, about: &About, reason: &str) {
        self.with(Event::Paused, |r| {
            r.file = about.file.clone();
            r.transfer_id = about.transfer_id.clone();
            r.reason = Some(reason.to_owned());
        });
    }

    /// Report delivery going on again after a pause.
    pub fn resumed(&self) {
        self.with(Event::Resumed, |_| {});
    }

    /// Report the daemon started or stopped.
    pub fn lifecycle(&self, event: Event) {
        self.with(event, |_| {});
    }

    /// Give the status producer new SASL credentials (see [`crate::kafka::set_sasl_credentials`]).
    pub fn set_sasl_credentials(&self, username: &str, password: &str) -> Result<(), String> {
        match &self.inner {
            Some(inner) => {
                crate::kafka::set_sasl_credentials(inner.producer.client(), username, password)
            }
            None => Ok(()),
        }
    }

    /// Wait up to `timeout` for the records queued to be delivered. Blocks: call it off the
    /// async threads.
    pub fn flush(&self, timeout: Duration) {
        if let Some(inner) = &self.inner
            && let Err(e) = inner.producer.flush(timeout)
        {
            let left = inner.producer.in_flight_count();
            tracing::warn!("{left} status record(s) not delivered at stop: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(super) fn record(resolver: &str, event: Event, fill: impl FnOnce(&mut Record)) -> Record {
        let mut r = Record {
            resolver: resolver.into(),
            zone_id: None,
            file: None,
            transfer_id: None,
            transfer_ids: Vec::new(),
            sha256: None,
            size: None,
            outcome: event,
            action: None,
            kind: None,
            reason: None,
            guest_version: None,
            version: "0".into(),
            time: 0,
        };
        fill(&mut r);
        r
    }

    #[test]
    fn a_record_names_its_key_and_reads_back() {
        let r = record("r1", Event::Committed, |r| {
            r.file = Some("block.rpz".into());
            r.action = Some(Action::Renew);
        });
        assert_eq!(r.key(), "r1/block.rpz");
        let json = serde_json::to_string(&r).unwrap();
        assert!(json.contains("\"outcome\":\"committed\""), "{json}");
        assert!(json.contains("\"zone-id\":null"), "{json}");
        assert_eq!(serde_json::from_str::<Record>(&json).unwrap(), r);
        let newer = json.replace("\"committed\"", "\"archived\"");
        let read: Record = serde_json::from_str(&newer).unwrap();
        assert_eq!(read.outcome, Event::Unknown);
        assert_eq!(record("r1", Event::Started, |_| {}).key(), "r1");
        let paused = record("r1", Event::Paused, |r| r.file = Some("good.json".into()));
        let json = serde_json::to_string(&paused).unwrap();
        assert!(json.contains("\"outcome\":\"paused\""), "{json}");
        assert_eq!(paused.key(), "r1/good.json");
    }
}
