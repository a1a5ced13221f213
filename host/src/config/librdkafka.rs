//! The librdkafka options the `librdkafka` passthrough map may not set: those kres-kafka's
//! delivery guarantees and TLS and SASL settings rest on, each naming the key to use instead.

use super::ConfigError;
use std::collections::BTreeMap;

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

/// Refuse a passthrough option that would replace one of kres-kafka's settings (`sasl.*`, the
/// [`GUARDED_TLS_OPTIONS`]) or that its delivery guarantees rest on ([`RESERVED_OPTIONS`]).
pub fn check_passthrough(options: &BTreeMap<String, String>) -> Result<(), ConfigError> {
    let invalid = |m: String| Err(ConfigError::Invalid(m));
    let guarded = [
        (
            &GUARDED_TLS_OPTIONS[..],
            "it would replace or weaken kres-kafka's TLS settings",
        ),
        (
            &RESERVED_OPTIONS[..],
            "kres-kafka's delivery guarantees rest on it",
        ),
    ];
    for option in options.keys() {
        if option.starts_with("sasl.") {
            return invalid(format!(
                "kafka.librdkafka.{option} is refused: it would replace kres-kafka's SASL settings; use kafka.security-protocol, kafka.sasl-mechanism, kafka.sasl-username and kafka.sasl-password-file"
            ));
        }
        for (list, why) in guarded {
            if let Some((_, instead)) = list.iter().find(|(name, _)| name == option) {
                return invalid(format!(
                    "kafka.librdkafka.{option} is refused: {why}; use {instead}"
                ));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::config::tests::{error, parse};

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
}
