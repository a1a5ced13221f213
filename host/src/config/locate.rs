//! Where in which file: every configuration error names the file, the line and column, and the
//! key path (`kres-kafka.yaml:7:12: kafka.debounce: expected a duration such as 5s, got 5`).
//!
//! The design, the simplest that locates both kinds of error without a YAML parser of our own:
//! - A value of the wrong type or an unknown key is found by serde while each file is read
//!   from its own text (never from the merged `Value`, which has no positions): serde_yaml_ng
//!   gives the position and the key path; [`at`] puts the position first and turns serde's
//!   `unknown field` list into one suggestion.
//! - A combination refused after the files are merged names its key; the merge remembers which
//!   file set each key, and [`find`] asks serde_yaml_ng for the position of that key in that
//!   file's text: a visitor that walks down to the key and fails there, so that the reader
//!   reports where it was.

use super::ConfigError;
use serde::de::{self, DeserializeSeed, MapAccess, Visitor};
use serde_yaml_ng::Value;
use std::fmt;
use std::path::Path;

/// A serde_yaml_ng error reading the file `path`, located and worded for an operator.
pub fn at(path: &Path, error: &serde_yaml_ng::Error) -> ConfigError {
    let text = error.to_string();
    let Some(location) = error.location() else {
        return ConfigError::InFile {
            path: path.to_owned(),
            message: text,
        };
    };
    let (line, column) = (location.line(), location.column());
    let message = text
        .strip_suffix(&format!(" at line {line} column {column}"))
        .unwrap_or(&text);
    ConfigError::At {
        path: path.to_owned(),
        line,
        column,
        message: unknown_key(message).unwrap_or_else(|| message.to_owned()),
    }
}

/// serde's `kafka: unknown field `sever`, expected one of `enable`, ...` as
/// `kafka.sever: unknown key; did you mean server?`.
fn unknown_key(message: &str) -> Option<String> {
    let start = message.find("unknown field `")?;
    let parent = message[..start].trim_end_matches(": ");
    // Backquoted: the field, then the fields expected.
    let quoted: Vec<&str> = message[start..].split('`').skip(1).step_by(2).collect();
    let (field, known) = quoted.split_first()?;
    let key = if parent.is_empty() {
        (*field).to_owned()
    } else {
        format!("{parent}.{field}")
    };
    Some(match closest(field, known) {
        Some(known) => format!("{key}: unknown key; did you mean {known}?"),
        None => format!("{key}: unknown key"),
    })
}

/// The candidate nearest `word`, if it is near enough to be a typo of it.
pub fn closest<'a>(word: &str, candidates: &[&'a str]) -> Option<&'a str> {
    candidates
        .iter()
        .map(|c| (distance(word, c), *c))
        .filter(|(d, _)| *d <= 2 || *d <= word.chars().count() / 3)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// Levenshtein distance.
fn distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let substituted = diagonal + usize::from(ca != *cb);
            diagonal = row[j + 1];
            row[j + 1] = substituted.min(row[j] + 1).min(diagonal + 1);
        }
    }
    row[b.len()]
}

/// The line and column of the value of `key` (a dotted path, `kafka.debounce`; a key that
/// itself holds dots, such as a librdkafka option, is matched whole) in the YAML `text`.
pub fn find(text: &str, key: &str) -> Option<(usize, usize)> {
    let Err(error) = Walk(key).deserialize(serde_yaml_ng::Deserializer::from_str(text)) else {
        return None;
    };
    let found = error.to_string().contains(FOUND);
    found
        .then(|| error.location())
        .flatten()
        .map(|l| (l.line(), l.column()))
}

/// The error [`Walk`] fails with on reaching its key; any other is a key not found.
const FOUND: &str = "kres-kafka: the key is here";

/// Walks down the mappings to the key it holds.
struct Walk<'a>(&'a str);

impl<'de> DeserializeSeed<'de> for Walk<'_> {
    type Value = ();
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Walk<'_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "a mapping holding {}", self.0)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(key) = map.next_key::<Value>()? {
            let Value::String(key) = key else {
                map.next_value::<de::IgnoredAny>()?;
                continue;
            };
            if key == self.0 {
                return map.next_value_seed(Here);
            }
            if let Some(rest) = self
                .0
                .strip_prefix(key.as_str())
                .and_then(|r| r.strip_prefix('.'))
            {
                return map.next_value_seed(Walk(rest));
            }
            map.next_value::<de::IgnoredAny>()?;
        }
        Ok(())
    }
}

/// Fails at once, inside the reader's call for the value, so that the error carries its
/// position.
struct Here;

impl<'de> DeserializeSeed<'de> for Here {
    type Value = ();
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Here {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any value")
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<(), E> {
        Err(E::custom(FOUND))
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<(), E> {
        Err(E::custom(FOUND))
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<(), E> {
        Err(E::custom(FOUND))
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<(), E> {
        Err(E::custom(FOUND))
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<(), E> {
        Err(E::custom(FOUND))
    }
    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        Err(E::custom(FOUND))
    }
    fn visit_seq<A: de::SeqAccess<'de>>(self, _: A) -> Result<(), A::Error> {
        Err(de::Error::custom(FOUND))
    }
    fn visit_map<A: MapAccess<'de>>(self, _: A) -> Result<(), A::Error> {
        Err(de::Error::custom(FOUND))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn find_gives_the_line_and_column_of_a_keys_value() {
        let text = "hostname: r1\nkafka:\n  enable: true\n  librdkafka:\n    fetch.wait.max.ms: 100\n  server: [a, b]\n  tls:\n    x: 1\n";
        assert_eq!(find(text, "hostname"), Some((1, 11)));
        assert_eq!(find(text, "kafka.enable"), Some((3, 11)));
        assert_eq!(
            find(text, "kafka.librdkafka.fetch.wait.max.ms"),
            Some((5, 24))
        );
        assert_eq!(find(text, "kafka.server"), Some((6, 11)));
        assert_eq!(find(text, "kafka.tls"), Some((8, 5)));
        assert_eq!(find(text, "kafka.topic"), None);
        assert_eq!(find(text, "hostname.x"), None);
        assert_eq!(find("a: [1, 2]\n", "a.b"), None);
    }

    #[test]
    fn an_unknown_key_suggests_the_nearest_known_one_or_none() {
        assert_eq!(
            unknown_key(
                "kafka: unknown field `sever`, expected one of `enable`, `server`, `topic`"
            )
            .as_deref(),
            Some("kafka.sever: unknown key; did you mean server?")
        );
        assert_eq!(
            unknown_key("kafka: unknown field `tpoic`, expected `topic` or `server`").as_deref(),
            Some("kafka.tpoic: unknown key; did you mean topic?")
        );
        assert_eq!(
            unknown_key("kafka: unknown field `compression`, expected one of `enable`, `server`")
                .as_deref(),
            Some("kafka.compression: unknown key")
        );
        assert_eq!(unknown_key("kafka.enable: invalid type"), None);
    }

    #[test]
    fn distance_counts_edits() {
        assert_eq!(distance("sever", "server"), 1);
        assert_eq!(distance("files_dir", "files-dir"), 1);
        assert_eq!(distance("", "abc"), 3);
        assert_eq!(distance("kitten", "sitting"), 3);
    }
}
