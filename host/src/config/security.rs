//! How kres-kafka reaches the brokers: `security-protocol`, with the TLS and SASL keys it
//! takes. A key set for a protocol that does not use it is refused rather than ignored, so
//! that no operator believes a connection encrypted or authenticated that is not.

use super::ConfigError;
use super::kafka::Section;
use serde::Deserialize;
use std::path::PathBuf;

/// `security-protocol`: Kafka's own names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
pub enum SecurityProtocol {
    /// No encryption (upstream's default).
    #[default]
    #[serde(rename = "plaintext")]
    Plaintext,
    /// TLS, optionally with a client certificate.
    #[serde(rename = "ssl")]
    Ssl,
    /// SASL authentication, no encryption.
    #[serde(rename = "sasl_plaintext", alias = "sasl-plaintext")]
    SaslPlaintext,
    /// SASL authentication over TLS (with every TLS setting and check of `ssl`).
    #[serde(rename = "sasl_ssl", alias = "sasl-ssl")]
    SaslSsl,
}

impl SecurityProtocol {
    pub fn name(self) -> &'static str {
        match self {
            SecurityProtocol::Plaintext => "plaintext",
            SecurityProtocol::Ssl => "ssl",
            SecurityProtocol::SaslPlaintext => "sasl_plaintext",
            SecurityProtocol::SaslSsl => "sasl_ssl",
        }
    }

    fn sasl(self) -> bool {
        matches!(
            self,
            SecurityProtocol::SaslPlaintext | SecurityProtocol::SaslSsl
        )
    }
}

/// `sasl-mechanism`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum SaslMechanism {
    #[serde(rename = "PLAIN")]
    Plain,
    #[serde(rename = "SCRAM-SHA-256")]
    ScramSha256,
    #[serde(rename = "SCRAM-SHA-512")]
    ScramSha512,
    #[serde(rename = "OAUTHBEARER")]
    OAuthBearer,
}

impl SaslMechanism {
    /// As librdkafka's `sasl.mechanism` takes it.
    pub fn name(self) -> &'static str {
        match self {
            SaslMechanism::Plain => "PLAIN",
            SaslMechanism::ScramSha256 => "SCRAM-SHA-256",
            SaslMechanism::ScramSha512 => "SCRAM-SHA-512",
            SaslMechanism::OAuthBearer => "OAUTHBEARER",
        }
    }
}

/// SASL credentials: the password is read from its file when a client is made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sasl {
    pub mechanism: SaslMechanism,
    pub username: String,
    pub password_file: PathBuf,
}

impl Sasl {
    /// The password: the file's content, one trailing newline ignored.
    pub fn password(&self) -> std::io::Result<String> {
        let text = std::fs::read_to_string(&self.password_file)?;
        let text = text.strip_suffix('\n').unwrap_or(&text);
        Ok(text.strip_suffix('\r').unwrap_or(text).to_owned())
    }

    /// The password now in the file when it differs from `current` and is not empty (a file
    /// being written, or emptied, keeps the password in use).
    pub fn changed_password(&self, current: Option<&str>) -> std::io::Result<Option<String>> {
        let new = self.password()?;
        Ok((!new.is_empty() && current != Some(new.as_str())).then_some(new))
    }
}

/// How to reach the brokers: plaintext, or TLS with what it needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Tls {
    Plaintext,
    Ssl {
        /// CA certificate(s) trusted for the broker; `None`: the system's.
        ca_file: Option<PathBuf>,
        /// Client certificate and key for mutual TLS.
        client: Option<ClientCertificate>,
        /// Check the broker's certificate against its name.
        verify_hostname: bool,
    },
}

/// A client certificate and its key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientCertificate {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
    pub key_password: Option<String>,
}

/// The TLS settings, refusing keys that do not go together.
pub fn tls(section: &Section) -> Result<Tls, ConfigError> {
    let invalid = |m: &str| Err(ConfigError::Invalid(m.to_owned()));
    if section.key_password.is_some() && section.key_file.is_none() {
        return invalid("kafka.key-password is set without kafka.key-file");
    }
    let client = match (&section.cert_file, &section.key_file) {
        (Some(_), None) => return invalid("kafka.cert-file is set without kafka.key-file"),
        (None, Some(_)) => return invalid("kafka.key-file is set without kafka.cert-file"),
        (Some(cert), Some(key)) => Some(ClientCertificate {
            cert_file: cert.clone(),
            key_file: key.clone(),
            key_password: section.key_password.clone(),
        }),
        (None, None) => None,
    };
    match section.security_protocol {
        SecurityProtocol::Ssl | SecurityProtocol::SaslSsl => Ok(Tls::Ssl {
            ca_file: section.ca_file.clone(),
            client,
            verify_hostname: section.verify_hostname,
        }),
        protocol @ (SecurityProtocol::Plaintext | SecurityProtocol::SaslPlaintext) => {
            let tls_keys = [
                ("ca-file", section.ca_file.is_some()),
                ("cert-file", section.cert_file.is_some()),
                ("key-file", section.key_file.is_some()),
                ("key-password", section.key_password.is_some()),
                ("verify-hostname", !section.verify_hostname),
            ];
            match tls_keys.iter().find(|(_, set)| *set) {
                Some((key, _)) => Err(ConfigError::Invalid(format!(
                    "kafka.{key} is set but kafka.security-protocol is {}: set it to {}",
                    protocol.name(),
                    if protocol.sasl() { "sasl_ssl" } else { "ssl" }
                ))),
                None => Ok(Tls::Plaintext),
            }
        }
    }
}

/// The SASL settings, refusing keys that do not go together.
pub fn sasl(section: &Section) -> Result<Option<Sasl>, ConfigError> {
    let invalid = |m: String| Err(ConfigError::Invalid(m));
    let protocol = section.security_protocol;
    if !protocol.sasl() {
        let set = [
            ("sasl-mechanism", section.sasl_mechanism.is_some()),
            ("sasl-username", section.sasl_username.is_some()),
            ("sasl-password-file", section.sasl_password_file.is_some()),
        ];
        if let Some((key, _)) = set.iter().find(|(_, set)| *set) {
            return invalid(format!(
                "kafka.{key} is set but kafka.security-protocol is {}: set it to {}",
                protocol.name(),
                if protocol == SecurityProtocol::Ssl {
                    "sasl_ssl"
                } else {
                    "sasl_plaintext (or sasl_ssl)"
                }
            ));
        }
        return Ok(None);
    }
    let Some(mechanism) = section.sasl_mechanism else {
        return invalid(format!(
            "kafka.security-protocol is {} but kafka.sasl-mechanism is not set (PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512)",
            protocol.name()
        ));
    };
    if mechanism == SaslMechanism::OAuthBearer {
        return invalid("kafka.sasl-mechanism OAUTHBEARER is refused: this build has no OIDC token client (librdkafka needs libcurl for it, which kres-kafka does not build); use SCRAM-SHA-512".into());
    }
    let Some(username) = section.sasl_username.clone().filter(|u| !u.is_empty()) else {
        return invalid(format!(
            "kafka.sasl-mechanism is {} but kafka.sasl-username is not set",
            mechanism.name()
        ));
    };
    let Some(password_file) = section.sasl_password_file.clone() else {
        return invalid(format!(
            "kafka.sasl-mechanism is {} but kafka.sasl-password-file is not set",
            mechanism.name()
        ));
    };
    Ok(Some(Sasl {
        mechanism,
        username,
        password_file,
    }))
}

/// The warning logged at every start while a password crosses the network in clear.
pub fn warning(protocol: SecurityProtocol, mechanism: Option<SaslMechanism>) -> Option<String> {
    (protocol == SecurityProtocol::SaslPlaintext && mechanism == Some(SaslMechanism::Plain)).then(|| "kafka.sasl-mechanism is PLAIN over sasl_plaintext: the password crosses the network in clear; use sasl_ssl, or SCRAM".into())
}

#[cfg(test)]
mod tests {
    use crate::config::tests::error;

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
}
