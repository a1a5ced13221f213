//! The librdkafka options the `librdkafka` passthrough map may not set: those kres-kafka's
//! delivery guarantees and TLS settings rest on, each naming the key to use instead.

/// librdkafka options that kres-kafka's delivery guarantees rest on: the passthrough map
/// refuses them, naming the config key to use instead.
pub const RESERVED_OPTIONS: [(&str, &str); 10] = [
    ("bootstrap.servers", "kafka.server"),
    ("group.id", "kafka.group-id"),
    (
        "enable.auto.offset.store",
        "nothing: offsets are stored only after a message reached a durable end",
    ),
    (
        "enable.auto.commit",
        "nothing: only offsets of finished messages are committed",
    ),
    ("auto.offset.reset", "kafka.start-from"),
    (
        "partitioner",
        "nothing: `send` places messages with Kafka's default partitioner, which kafka.partitions: addressed relies on",
    ),
    (
        "enable.idempotence",
        "nothing: the publisher must not reorder or duplicate chunks",
    ),
    (
        "group.protocol",
        "nothing: kres-kafka assigns itself partitions and joins no group",
    ),
    (
        "group.instance.id",
        "nothing: kres-kafka assigns itself partitions and joins no group",
    ),
    (
        "session.timeout.ms",
        "nothing: kres-kafka assigns itself partitions and joins no group",
    ),
];

/// librdkafka options that would replace or weaken kres-kafka's TLS settings; the passthrough
/// map refuses them and names the config key to use instead.
pub const GUARDED_TLS_OPTIONS: [(&str, &str); 16] = [
    ("security.protocol", "kafka.security-protocol"),
    (
        "enable.ssl.certificate.verification",
        "nothing: certificate verification cannot be turned off",
    ),
    (
        "ssl.endpoint.identification.algorithm",
        "kafka.verify-hostname",
    ),
    ("ssl.ca.location", "kafka.ca-file"),
    ("ssl.ca.pem", "kafka.ca-file"),
    ("ssl.ca.certificate.stores", "kafka.ca-file"),
    ("ssl.certificate.location", "kafka.cert-file"),
    ("ssl.certificate.pem", "kafka.cert-file"),
    ("ssl.key.location", "kafka.key-file"),
    ("ssl.key.pem", "kafka.key-file"),
    ("ssl.key.password", "kafka.key-password"),
    (
        "ssl.keystore.location",
        "kafka.cert-file and kafka.key-file",
    ),
    ("ssl.keystore.password", "kafka.key-password"),
    (
        "ssl.engine.location",
        "nothing: OpenSSL engines are not supported",
    ),
    (
        "ssl.providers",
        "nothing: OpenSSL providers are not supported",
    ),
    ("ssl_engine_callback_data", "nothing"),
];
