//! Validation of configuration files (SPEC section 2, step 4). Pure: no I/O.
//!
//! A file is configuration when its name ends in `.json`, `.yaml` or `.yml`. The whole assembled
//! file must parse, by its extension, into a mapping. Parsing yields a `serde_json::Value` for
//! both formats on purpose: that is the document a JSON Schema validator checks, so adding the
//! resolver's schema later is one more step on `doc`, not a new parser.

use crate::error::{Error, Result};
use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::Value;
use std::fmt;

/// The largest configuration file the guest parses, in bytes. A configuration is parsed whole
/// into memory; this keeps a hostile "config" from exhausting the guest's memory cap, and is far
/// above any real resolver configuration.
pub const MAX_CONFIG_SIZE: u64 = 16 * 1024 * 1024;

/// The two configuration formats, chosen by file extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Json,
    Yaml,
}

impl Format {
    /// The format of `name`, or `None` when it is not a configuration file. Extensions are
    /// matched without regard to ASCII case (`CONFIG.YAML` is configuration too).
    pub fn of(name: &str) -> Option<Format> {
        let ext = name.rsplit_once('.')?.1;
        if ext.eq_ignore_ascii_case("json") {
            Some(Format::Json)
        } else if ext.eq_ignore_ascii_case("yaml") || ext.eq_ignore_ascii_case("yml") {
            Some(Format::Yaml)
        } else {
            None
        }
    }
}

/// Parse and check a whole configuration file. `name` is only used in messages.
pub fn validate(name: &str, format: Format, content: &[u8]) -> Result<Value> {
    let invalid = |why: String| Error::InvalidConfig(format!("configuration {name:?} {why}"));
    let Strict(doc) = match format {
        Format::Json => serde_json::from_slice(content)
            .map_err(|e| invalid(format!("is not valid JSON: {e}")))?,
        Format::Yaml => serde_yaml_ng::from_slice(content)
            .map_err(|e| invalid(format!("is not valid YAML: {e}")))?,
    };
    if !doc.is_object() {
        return Err(invalid(format!(
            "must be a mapping at the top level, not {}",
            kind(&doc)
        )));
    }
    Ok(doc)
}

/// A document parsed into a `Value`, refusing a key repeated in one mapping: both parsers
/// would silently keep the last one, hiding an operator's mistake.
struct Strict(Value);

impl<'de> Deserialize<'de> for Strict {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        d.deserialize_any(StrictVisitor).map(Strict)
    }
}

struct StrictVisitor;

impl<'de> Visitor<'de> for StrictVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a configuration value")
    }

    fn visit_bool<E>(self, v: bool) -> std::result::Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> std::result::Result<Value, E> {
        Ok(v.into())
    }
    fn visit_u64<E>(self, v: u64) -> std::result::Result<Value, E> {
        Ok(v.into())
    }
    fn visit_f64<E>(self, v: f64) -> std::result::Result<Value, E> {
        Ok(serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number))
    }
    fn visit_str<E>(self, v: &str) -> std::result::Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }
    fn visit_string<E>(self, v: String) -> std::result::Result<Value, E> {
        Ok(Value::String(v))
    }
    fn visit_unit<E>(self) -> std::result::Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_none<E>(self) -> std::result::Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> std::result::Result<Value, D::Error> {
        d.deserialize_any(self)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> std::result::Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(Strict(item)) = seq.next_element()? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> std::result::Result<Value, A::Error> {
        let mut out = serde_json::Map::new();
        while let Some(key) = map.next_key::<String>()? {
            let Strict(value) = map.next_value()?;
            if out.contains_key(&key) {
                return Err(de::Error::custom(format!(
                    "key {key:?} is given twice in one mapping"
                )));
            }
            out.insert(key, value);
        }
        Ok(Value::Object(out))
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "empty (null)",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a mapping",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn format_follows_the_extension() {
        assert_eq!(Format::of("config.yaml"), Some(Format::Yaml));
        assert_eq!(Format::of("a/b.YML"), Some(Format::Yaml));
        assert_eq!(Format::of("c.json"), Some(Format::Json));
        assert_eq!(Format::of("block.rpz"), None);
        assert_eq!(Format::of("yaml"), None);
    }

    #[test]
    fn mappings_are_accepted() {
        let doc = validate(
            "c.yaml",
            Format::Yaml,
            b"workers: 2\nlogging:\n  level: info\n",
        )
        .unwrap();
        assert_eq!(doc["logging"]["level"], "info");
        validate("c.json", Format::Json, br#"{"workers": 2}"#).unwrap();
    }

    #[test]
    fn invalid_configurations_name_the_file_and_the_first_error() {
        let cases: [(&str, Format, &[u8], &str); 9] = [
            (
                "c.json",
                Format::Json,
                br#"{"a": 1, "a": 2}"#,
                "\"a\" is given twice",
            ),
            (
                "c.yaml",
                Format::Yaml,
                b"x:\n  b: 1\n  b: 2\n",
                "is not valid YAML",
            ),
            ("c.json", Format::Json, b"{\"a\": 1,", "is not valid JSON"),
            ("c.json", Format::Json, b"[1, 2]", "not a list"),
            ("c.yaml", Format::Yaml, b"a: [1, 2\n", "is not valid YAML"),
            ("c.yaml", Format::Yaml, b"", "not empty (null)"),
            ("c.yaml", Format::Yaml, b"just a string", "not a string"),
            ("c.yaml", Format::Yaml, b"a: 1\na: 2\n", "is not valid YAML"),
            (
                "c.yaml",
                Format::Yaml,
                b"a: 1\n---\nb: 2\n",
                "is not valid YAML",
            ),
        ];
        for (name, format, content, why) in cases {
            match validate(name, format, content) {
                Err(Error::InvalidConfig(m)) => {
                    assert!(m.contains(why) && m.contains(name), "{m:?} lacks {why:?}")
                }
                other => panic!(
                    "{:?}: unexpected {other:?}",
                    content.escape_ascii().to_string()
                ),
            }
        }
    }

    #[test]
    fn json_errors_carry_the_position() {
        let Err(Error::InvalidConfig(m)) = validate("c.json", Format::Json, b"{\n\"a\": tru }")
        else {
            panic!("accepted");
        };
        assert!(m.contains("line 2"), "{m}");
    }
}
