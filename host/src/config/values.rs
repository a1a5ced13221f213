//! How the `kafka` section's values are read from YAML where serde's defaults would say too
//! little or too much: durations (`5s`), booleans as Knot Resolver reads them (YAML 1.1, so
//! `yes`, `no`, `on`, `off`), one broker or a list, a listener address, librdkafka's scalars.
//!
//! Each error is raised inside the visitor of the value at fault, so that the YAML reader
//! locates it at that value and prefixes its key path (see `locate`); the messages here say
//! only what was expected and what was found.

use super::address::Server;
use serde::Deserialize;
use serde::de::{self, Deserializer, SeqAccess, Visitor};
use serde_yaml_ng::Value;
use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

/// What a duration looks like, in every message about one.
const DURATION: &str = "a duration such as 5s";

/// A duration as humantime writes it (`5s`, `500ms`, `2h`). A bare number is refused: seconds
/// or milliseconds would be a guess.
pub fn duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    struct Humantime;
    impl Visitor<'_> for Humantime {
        type Value = Duration;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str(DURATION)
        }
        fn visit_str<E: de::Error>(self, text: &str) -> Result<Duration, E> {
            humantime::parse_duration(text)
                .map_err(|e| E::custom(format!("expected {DURATION}, got {text:?} ({e})")))
        }
        fn visit_u64<E: de::Error>(self, n: u64) -> Result<Duration, E> {
            Err(E::custom(format!("expected {DURATION}, got {n}")))
        }
        fn visit_i64<E: de::Error>(self, n: i64) -> Result<Duration, E> {
            Err(E::custom(format!("expected {DURATION}, got {n}")))
        }
        fn visit_f64<E: de::Error>(self, n: f64) -> Result<Duration, E> {
            Err(E::custom(format!("expected {DURATION}, got {n}")))
        }
    }
    d.deserialize_any(Humantime)
}

/// A boolean as Knot Resolver's manager reads its files (PyYAML, YAML 1.1): `true`/`false`,
/// and `yes`/`no`/`on`/`off` in lower, title or upper case.
pub fn boolean<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    d.deserialize_any(Yaml11Bool)
}

/// [`boolean`], for a key whose absence (or `null`) means something of its own.
pub fn optional_boolean<'de, D: Deserializer<'de>>(d: D) -> Result<Option<bool>, D::Error> {
    struct Yaml11(bool);
    impl<'de> Deserialize<'de> for Yaml11 {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Yaml11, D::Error> {
            boolean(d).map(Yaml11)
        }
    }
    Option::<Yaml11>::deserialize(d).map(|b| b.map(|b| b.0))
}

struct Yaml11Bool;

/// What a boolean looks like, in every message about one.
const BOOLEAN: &str = "a boolean (true, false, yes, no, on, off)";

impl Visitor<'_> for Yaml11Bool {
    type Value = bool;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(BOOLEAN)
    }
    fn visit_bool<E: de::Error>(self, b: bool) -> Result<bool, E> {
        Ok(b)
    }
    fn visit_str<E: de::Error>(self, text: &str) -> Result<bool, E> {
        match text {
            "yes" | "Yes" | "YES" | "on" | "On" | "ON" | "true" | "True" | "TRUE" => Ok(true),
            "no" | "No" | "NO" | "off" | "Off" | "OFF" | "false" | "False" | "FALSE" => Ok(false),
            _ => Err(E::custom(format!("expected {BOOLEAN}, got {text:?}"))),
        }
    }
    fn visit_u64<E: de::Error>(self, n: u64) -> Result<bool, E> {
        Err(E::custom(format!("expected {BOOLEAN}, got {n}")))
    }
    fn visit_i64<E: de::Error>(self, n: i64) -> Result<bool, E> {
        Err(E::custom(format!("expected {BOOLEAN}, got {n}")))
    }
    fn visit_f64<E: de::Error>(self, n: f64) -> Result<bool, E> {
        Err(E::custom(format!("expected {BOOLEAN}, got {n}")))
    }
}

/// `server`: one address or a list of them.
pub fn servers<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Server>, D::Error> {
    struct OneOrMany;
    impl<'de> Visitor<'de> for OneOrMany {
        type Value = Vec<Server>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("an address (host:port, host@port or [ipv6]:port) or a list of them")
        }
        fn visit_str<E: de::Error>(self, text: &str) -> Result<Vec<Server>, E> {
            Server::parse(text)
                .map(|s| vec![s])
                .map_err(|e| E::custom(format!("{text:?}: {e}")))
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<Server>, A::Error> {
            let mut servers = Vec::new();
            while let Some(server) = seq.next_element::<Server>()? {
                servers.push(server);
            }
            Ok(servers)
        }
    }
    d.deserialize_any(OneOrMany)
}

/// A listener's address (`metrics-address`): any form [`Server`] reads, with its port.
pub fn listener<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Server>, D::Error> {
    struct Listener;
    impl Visitor<'_> for Listener {
        type Value = Server;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("address@port")
        }
        fn visit_str<E: de::Error>(self, text: &str) -> Result<Server, E> {
            Server::parse_with_port(text).map_err(|e| match e {
                super::address::AddressError::Form => {
                    E::custom(format!("{text:?}: expected address@port or address:port"))
                }
                port => E::custom(format!("{text:?}: {port}")),
            })
        }
    }
    d.deserialize_str(Listener).map(Some)
}

/// A key that is present: `Some(None)` for `null`, so that it differs from an absent key.
pub fn present<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Option<String>>, D::Error> {
    Option::<String>::deserialize(d).map(Some)
}

/// librdkafka's options: every value a string, as librdkafka takes them.
pub fn scalar_map<'de, D: Deserializer<'de>>(d: D) -> Result<BTreeMap<String, String>, D::Error> {
    let raw = BTreeMap::<String, Value>::deserialize(d)?;
    raw.into_iter()
        .map(|(k, v)| {
            let v = match v {
                Value::String(s) => s,
                Value::Bool(b) => b.to_string(),
                Value::Number(n) => n.to_string(),
                _ => {
                    return Err(de::Error::custom(format!(
                        "librdkafka option {k:?} must be a string, number or boolean"
                    )));
                }
            };
            Ok((k, v))
        })
        .collect()
}
