//! Choosing the consumer group protocol at start-up: KIP-848's consumer protocol where every
//! broker offers `ConsumerGroupHeartbeat` v1 or later, the classic one otherwise. librdkafka has
//! no API that reports a broker's versions, but it asks every broker on connecting and, with
//! `debug=feature`, logs each API's range: a short-lived client that joins no group reads them.

use super::*;

/// The consumer group protocol in use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// KIP-848's `ConsumerGroupHeartbeat`: the broker assigns the partitions.
    Consumer,
    /// JoinGroup/SyncGroup, with static membership unless it is turned off.
    Classic,
}

impl Protocol {
    /// librdkafka's name for it (`group.protocol`).
    pub fn name(self) -> &'static str {
        match self {
            Protocol::Consumer => "consumer",
            Protocol::Classic => "classic",
        }
    }
}

/// The protocol chosen, and why, for the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Choice {
    pub protocol: Protocol,
    pub why: String,
}

/// The oldest `ConsumerGroupHeartbeat` version librdkafka speaks: Kafka 3.7 to 3.9 offer only
/// v0 (early access), and a consumer on it would stop with a fatal error.
const HEARTBEAT_VERSION: i16 = 1;

/// How long one attempt to hear from a broker lasts: enough for a connection over a slow link
/// (TCP, TLS, `ApiVersions`, metadata: four round trips), short enough not to hold up a stop
/// that comes meanwhile (the attempt finishes on its own thread).
const PROBE_ATTEMPT: Duration = Duration::from_secs(2);

/// Choose the group protocol: as configured, or with `auto` by asking the brokers which APIs
/// they offer. The consumer protocol when every broker that answered offers
/// `ConsumerGroupHeartbeat` v1 or later, the classic one otherwise. Waits for an answer as
/// long as it takes (the consumer could do nothing sooner), or until `shutdown`.
///
/// librdkafka has no API for a broker's versions, but it asks every broker on connecting
/// (`ApiVersions`) and, with `debug=feature`, logs each API and its versions; so a short-lived
/// client with the daemon's own options (TLS, SASL, the operator's) connects, fetches metadata,
/// and its log is read. It joins no group, so it changes nothing on the broker. The format
/// read is pinned by the tests below against librdkafka's mock broker.
pub async fn choose_protocol(
    kafka: &Settings,
    client_id: &str,
    shutdown: &CancellationToken,
) -> Choice {
    let configured = |protocol| Choice {
        protocol,
        why: format!("kafka.group-protocol is {}", protocol.name()),
    };
    match kafka.group_protocol {
        GroupProtocol::Consumer => return configured(Protocol::Consumer),
        GroupProtocol::Classic => return configured(Protocol::Classic),
        GroupProtocol::Auto => {}
    }
    let probe = match Probe::new(kafka, client_id) {
        Ok(probe) => Arc::new(probe),
        Err(e) => {
            return Choice {
                protocol: Protocol::Classic,
                why: format!("kafka.group-protocol is auto, and asking the broker failed: {e}"),
            };
        }
    };
    let mut told = false;
    loop {
        let attempt = tokio::task::spawn_blocking({
            let probe = Arc::clone(&probe);
            move || probe.attempt()
        });
        tokio::select! {
            // Shutdown first: the choice no longer matters, the daemon stops before consuming.
            biased;
            () = shutdown.cancelled() => {
                return Choice {
                    protocol: Protocol::Classic,
                    why: "stopped before a broker answered".into(),
                };
            }
            answer = attempt => {
                if let Ok(Some(choice)) = answer {
                    return choice;
                }
            }
        }
        if !told {
            tracing::info!(
                "waiting for a broker to answer, to choose the group protocol (kafka.group-protocol: auto)"
            );
            told = true;
        }
    }
}

/// A client that joins no group, connects, and reads what the brokers said they offer.
struct Probe {
    client: BaseConsumer<ProbeContext>,
    topic: String,
}

impl Probe {
    fn new(kafka: &Settings, client_id: &str) -> Result<Probe, KafkaError> {
        let mut config = client_config(kafka, client_id);
        apply_extra_options(&mut config, kafka);
        config
            .set("debug", "feature")
            .set_log_level(RDKafkaLogLevel::Debug);
        Ok(Probe {
            client: config.create_with_context(ProbeContext::default())?,
            topic: kafka.topic.clone(),
        })
    }

    /// Wait up to [`PROBE_ATTEMPT`] for a broker; `None` if none answered. Blocks.
    fn attempt(&self) -> Option<Choice> {
        let connected = std::thread::scope(|scope| {
            let fetch = scope.spawn(|| {
                self.client
                    .fetch_metadata(Some(&self.topic), PROBE_ATTEMPT)
                    .is_ok()
            });
            // librdkafka queues its log lines for the client's poll: meanwhile, log them (a
            // refused TLS handshake, say) as they come.
            while !fetch.is_finished() {
                self.client.poll(Duration::from_millis(50));
            }
            fetch.join().unwrap_or(false)
        });
        // Those of the `ApiVersions` answer were queued before the connection could carry the
        // metadata request. A poll handles log lines until its time is up, and returns early
        // with an error.
        while self.client.poll(Duration::from_millis(20)).is_some() {}
        connected.then(|| self.client.context().heard.choice())
    }
}

/// What each broker said about `ConsumerGroupHeartbeat`, read from librdkafka's log.
#[derive(Debug, Default)]
struct Heard {
    /// Broker (as librdkafka names it in its log) → highest `ConsumerGroupHeartbeat` version
    /// offered, `None` if not offered; only brokers whose `ApiVersions` answer was seen.
    brokers: Mutex<BTreeMap<String, Option<i16>>>,
}

impl Heard {
    /// Read one of librdkafka's `APIVERSION` log lines.
    fn read(&self, line: &str) {
        const ANSWER: &str = "Broker API support:";
        const HEARTBEAT: &str = "ApiKey ConsumerGroupHeartbeat (68) Versions ";
        let mut brokers = self.brokers.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(at) = line.find(ANSWER) {
            brokers.insert(line[..at].trim().to_owned(), None);
        } else if let Some(at) = line.find(HEARTBEAT) {
            let max = line[at + HEARTBEAT.len()..]
                .split("..")
                .nth(1)
                .and_then(|v| v.trim().parse().ok());
            brokers.insert(line[..at].trim().to_owned(), max);
        }
    }

    /// The protocol to use given what was heard.
    fn choice(&self) -> Choice {
        let brokers = self.brokers.lock().unwrap_or_else(|e| e.into_inner());
        let (protocol, why) = if brokers.is_empty() {
            (
                Protocol::Classic,
                "kafka.group-protocol is auto, and the broker did not say which APIs it offers"
                    .to_owned(),
            )
        } else if brokers
            .values()
            .all(|v| v.is_some_and(|v| v >= HEARTBEAT_VERSION))
        {
            (
                Protocol::Consumer,
                "kafka.group-protocol is auto, and the broker offers ConsumerGroupHeartbeat (KIP-848)"
                    .to_owned(),
            )
        } else if brokers.values().any(Option::is_some) {
            (
                Protocol::Classic,
                format!(
                    "kafka.group-protocol is auto, and the broker offers ConsumerGroupHeartbeat only below v{HEARTBEAT_VERSION} (early access), which librdkafka does not speak"
                ),
            )
        } else {
            (
                Protocol::Classic,
                "kafka.group-protocol is auto, and the broker does not offer ConsumerGroupHeartbeat (KIP-848)"
                    .to_owned(),
            )
        };
        Choice { protocol, why }
    }
}

/// The probe's context: reads the `APIVERSION` lines, logs the rest as [`LogContext`] does.
#[derive(Default)]
struct ProbeContext {
    log: LogContext,
    heard: Heard,
}

impl ClientContext for ProbeContext {
    fn log(&self, level: RDKafkaLogLevel, facility: &str, message: &str) {
        if facility == "APIVERSION" {
            self.heard.read(message);
        }
        self.log.log(level, facility, message);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        self.log.error(error, reason);
    }
}

impl ConsumerContext for ProbeContext {}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kafka::tests::settings;

    /// A mock broker offering `ConsumerGroupHeartbeat` in `versions` (`None`: not at all),
    /// owned by the client returned, and the settings to reach it.
    fn broker(versions: Option<(i16, i16)>) -> (rdkafka::producer::BaseProducer, Settings) {
        use rdkafka::producer::Producer as _;
        let owner: rdkafka::producer::BaseProducer = ClientConfig::new()
            .set("test.mock.num.brokers", "1")
            .create()
            .unwrap();
        let (min, max) = versions.unwrap_or((-1, -1));
        // rdkafka's `MockCluster::apiversion` knows no API key past 53; this one is 68.
        // SAFETY: the mock cluster belongs to `owner`, alive here.
        let set = unsafe {
            let mock = rdkafka_sys::rd_kafka_handle_mock_cluster(owner.client().native_ptr());
            assert!(!mock.is_null());
            rdkafka_sys::rd_kafka_mock_set_apiversion(mock, 68, min, max)
        };
        assert_eq!(
            set,
            rdkafka_sys::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR
        );
        let servers = owner.client().mock_cluster().unwrap().bootstrap_servers();
        let kafka = settings(&format!("server: {}\n", servers.replacen(':', "@", 1))).unwrap();
        (owner, kafka)
    }

    #[tokio::test]
    async fn auto_uses_the_consumer_protocol_where_the_broker_offers_it() {
        let (_cluster, kafka) = broker(Some((1, 1)));
        let choice = choose_protocol(&kafka, "test", &CancellationToken::new()).await;
        assert_eq!(choice.protocol, Protocol::Consumer, "{}", choice.why);
        assert!(
            choice.why.contains("offers ConsumerGroupHeartbeat"),
            "{}",
            choice.why
        );
    }

    #[tokio::test]
    async fn auto_uses_the_classic_protocol_where_the_broker_lacks_consumer_group_heartbeat() {
        let (_cluster, kafka) = broker(None);
        let choice = choose_protocol(&kafka, "test", &CancellationToken::new()).await;
        assert_eq!(choice.protocol, Protocol::Classic, "{}", choice.why);
        assert!(choice.why.contains("does not offer"), "{}", choice.why);
    }

    #[tokio::test]
    async fn auto_uses_the_classic_protocol_where_the_broker_offers_only_early_access_v0() {
        let (_cluster, kafka) = broker(Some((0, 0)));
        let choice = choose_protocol(&kafka, "test", &CancellationToken::new()).await;
        assert_eq!(choice.protocol, Protocol::Classic, "{}", choice.why);
        assert!(choice.why.contains("only below v1"), "{}", choice.why);
    }

    #[tokio::test]
    async fn a_configured_protocol_is_used_without_asking_and_shutdown_ends_the_wait() {
        // Nothing listens on port 1: asking would never end.
        let nowhere = |protocol: &str| {
            settings(&format!(
                "server: 127.0.0.1@1\ngroup-protocol: {protocol}\n"
            ))
            .unwrap()
        };
        let never = CancellationToken::new();
        for (name, protocol) in [
            ("consumer", Protocol::Consumer),
            ("classic", Protocol::Classic),
        ] {
            let choice = tokio::time::timeout(
                Duration::from_secs(5),
                choose_protocol(&nowhere(name), "test", &never),
            )
            .await
            .expect("no broker is asked");
            assert_eq!(choice.protocol, protocol);
            assert_eq!(choice.why, format!("kafka.group-protocol is {name}"));
        }
        let shutdown = CancellationToken::new();
        let stop = shutdown.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(200)).await;
            stop.cancel();
        });
        let choice = tokio::time::timeout(
            Duration::from_secs(5),
            choose_protocol(&nowhere("auto"), "test", &shutdown),
        )
        .await
        .expect("shutdown ends the wait for a broker");
        assert_eq!(choice.why, "stopped before a broker answered");
    }
}
