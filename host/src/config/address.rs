//! Broker and listener addresses as operators write them: Kafka's and kcat's `host:port`,
//! upstream Knot Resolver's `host@port`, `[v6]:port`, and a host or IPv6 address alone (port
//! 9092). Anything else is refused when the configuration or the command line is read, never
//! handed to librdkafka to be misread (`127.0.0.1:9092` once became host `127.0.0.1:9092`).

use super::ConfigError;
use serde::Deserialize;
use std::fmt;
use std::net::Ipv6Addr;

/// Kafka's customary port, upstream's default.
pub const DEFAULT_KAFKA_PORT: u16 = 9092;

/// A broker (or listener) address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Server {
    /// A host name, an IPv4 address or an IPv6 address (without brackets).
    pub host: String,
    pub port: u16,
}

/// Why an address was refused; the caller names the key and the text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AddressError {
    #[error("expected host:port, host@port or [ipv6]:port")]
    Form,
    #[error("port {0:?} is not a number from 1 to 65535")]
    Port(String),
}

impl Server {
    /// Parse `host:port`, `host@port`, `[v6]:port`, `[v6]@port`, `v6@port`, or a host, `[v6]`
    /// or bare IPv6 address alone (port [`DEFAULT_KAFKA_PORT`]).
    pub fn parse(text: &str) -> Result<Server, AddressError> {
        let (host, port) = split(text)?;
        Ok(Server {
            host: host.to_owned(),
            port: port.unwrap_or(DEFAULT_KAFKA_PORT),
        })
    }

    /// Parse an address whose port must be written (a listener has no customary port).
    pub fn parse_with_port(text: &str) -> Result<Server, AddressError> {
        match split(text)? {
            (host, Some(port)) => Ok(Server {
                host: host.to_owned(),
                port,
            }),
            (_, None) => Err(AddressError::Form),
        }
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

/// Refuse an empty `server` list: there would be no broker to ask.
pub fn check_brokers(servers: &[Server]) -> Result<(), ConfigError> {
    if servers.is_empty() {
        return Err(ConfigError::Invalid(
            "kafka.server: at least one broker is needed".into(),
        ));
    }
    Ok(())
}

/// Host and port (when written) of `text`.
fn split(text: &str) -> Result<(&str, Option<u16>), AddressError> {
    if text.parse::<Ipv6Addr>().is_ok() {
        return Ok((text, None));
    }
    let (host, port) = if let Some(rest) = text.strip_prefix('[') {
        let (v6, after) = rest.split_once(']').ok_or(AddressError::Form)?;
        v6.parse::<Ipv6Addr>().map_err(|_| AddressError::Form)?;
        let port = match after {
            "" => None,
            _ => Some(
                after
                    .strip_prefix(':')
                    .or_else(|| after.strip_prefix('@'))
                    .ok_or(AddressError::Form)?,
            ),
        };
        (v6, port)
    } else if let Some((host, port)) = text.rsplit_once('@') {
        // Upstream's `v6@port` keeps the address unbracketed.
        if host.contains(':') && host.parse::<Ipv6Addr>().is_err() {
            return Err(AddressError::Form);
        }
        (host, Some(port))
    } else if let Some((host, port)) = text.split_once(':') {
        if port.contains(':') {
            // More than one colon and not an IPv6 address.
            return Err(AddressError::Form);
        }
        (host, Some(port))
    } else {
        (text, None)
    };
    let name_like = |h: &str| {
        !h.is_empty()
            && h.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
    };
    if !(name_like(host) || host.parse::<Ipv6Addr>().is_ok()) {
        return Err(AddressError::Form);
    }
    let port = port
        .map(|p| {
            p.parse::<u16>()
                .ok()
                .filter(|p| *p != 0)
                .ok_or_else(|| AddressError::Port(p.to_owned()))
        })
        .transpose()?;
    Ok((host, port))
}

impl fmt::Display for Server {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.bootstrap())
    }
}

/// One address from a YAML string; the error (located by the YAML reader at this value)
/// quotes the text.
impl<'de> Deserialize<'de> for Server {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Server, D::Error> {
        struct Address;
        impl serde::de::Visitor<'_> for Address {
            type Value = Server;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("host:port, host@port or [ipv6]:port")
            }
            fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<Server, E> {
                Server::parse(text).map_err(|e| E::custom(format!("{text:?}: {e}")))
            }
        }
        d.deserialize_str(Address)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server(host: &str, port: u16) -> Server {
        Server {
            host: host.into(),
            port,
        }
    }

    #[test]
    fn every_customary_form_reads_as_host_and_port() {
        for (text, host, port) in [
            ("127.0.0.1:37143", "127.0.0.1", 37143),
            ("kafka1.example:9093", "kafka1.example", 9093),
            ("kafka1.example@9093", "kafka1.example", 9093),
            ("10.0.0.1@19092", "10.0.0.1", 19092),
            ("kafka2", "kafka2", 9092),
            ("my_broker", "my_broker", 9092),
            ("[2001:db8::1]:9094", "2001:db8::1", 9094),
            ("[2001:db8::1]@9094", "2001:db8::1", 9094),
            ("[2001:db8::1]", "2001:db8::1", 9092),
            ("::1", "::1", 9092),
            ("2001:db8::1", "2001:db8::1", 9092),
            ("::1@9093", "::1", 9093),
        ] {
            assert_eq!(Server::parse(text), Ok(server(host, port)), "{text}");
        }
    }

    #[test]
    fn anything_else_is_refused_saying_which_forms_are_expected() {
        for text in [
            "a:b:c@x",
            "",
            "host:",
            "@9092",
            ":9092",
            "a b:9092",
            "a,b:9092",
            "[::1",
            "[::1]x",
            "[::1]:",
            "[kafka1]:9092",
            "1:2:3",
            "host:9092@9093",
            "http://broker:9092",
        ] {
            let e = Server::parse(text).unwrap_err();
            assert!(
                matches!(e, AddressError::Form | AddressError::Port(_)),
                "{text}"
            );
        }
        assert_eq!(
            Server::parse("a:b:c@x").unwrap_err().to_string(),
            "expected host:port, host@port or [ipv6]:port"
        );
        for (text, port) in [
            ("broker@99999", "99999"),
            ("broker:0", "0"),
            ("broker@x", "x"),
            ("[::1]:http", "http"),
        ] {
            assert_eq!(
                Server::parse(text),
                Err(AddressError::Port(port.into())),
                "{text}"
            );
        }
        assert_eq!(
            Server::parse("broker@99999").unwrap_err().to_string(),
            "port \"99999\" is not a number from 1 to 65535"
        );
    }

    #[test]
    fn a_listener_needs_its_port_written() {
        assert_eq!(
            Server::parse_with_port("127.0.0.1:9100"),
            Ok(server("127.0.0.1", 9100))
        );
        assert_eq!(
            Server::parse_with_port("127.0.0.1"),
            Err(AddressError::Form)
        );
    }

    #[test]
    fn bootstrap_brackets_ipv6() {
        assert_eq!(server("::1", 9092).bootstrap(), "[::1]:9092");
        assert_eq!(server("kafka1", 9093).bootstrap(), "kafka1:9093");
    }
}
