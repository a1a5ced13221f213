//! Parsing a configuration file the way Knot Resolver's manager parses it: as JSON first, then,
//! when that fails on syntax, as YAML, whatever the file's extension (a `config.json` with a
//! trailing comma is valid YAML, and the manager takes it). The result is a `serde_json::Value`,
//! the document the schema check reads, and the one the host compares configurations by: two
//! files with the same `Value` are the same configuration to the manager.
//!
//! YAML is read by YAML 1.1's rules, as the manager's PyYAML reads it (see `yaml11`): `yes` is
//! a boolean and `0755` an integer there. Stricter than either parser alone, as the manager is:
//! a key repeated in one mapping is an error at any depth, and so is a YAML merge key
//! (`<<: *anchor`), which the manager's YAML loader cannot build.

// Declared here, not beside `parse` in `config`: only parsing reads YAML.
use super::yaml11;

use super::Format;
use crate::error::{Error, Result};
use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::Value;
use std::fmt;

/// Parse a configuration file as the manager does (JSON, then YAML) into a mapping. `name` only
/// chooses the wording of errors: a `.json` file's JSON error is reported first.
pub fn parse(name: &str, content: &[u8]) -> Result<Value> {
    let invalid = |why: String| Error::InvalidConfig(format!("configuration {name:?} {why}"));
    let doc = match serde_json::from_slice::<Strict>(content) {
        Ok(Strict(doc)) => doc,
        // The JSON parsed but broke a rule (a repeated key): YAML would only say it again, and
        // the manager does not fall back to YAML either.
        Err(e) if e.is_data() => return Err(invalid(format!("is not valid JSON: {e}"))),
        Err(json) => match yaml11::load(content) {
            Ok(doc) => doc,
            Err(yaml) if Format::of(name) == Some(Format::Json) => {
                return Err(invalid(format!(
                    "is not valid JSON: {json}; nor valid YAML: {yaml}"
                )));
            }
            Err(yaml) => return Err(invalid(format!("is not valid YAML: {yaml}"))),
        },
    };
    if !doc.is_object() {
        return Err(invalid(format!(
            "must be a mapping at the top level, not {}",
            kind(&doc)
        )));
    }
    Ok(doc)
}

/// A JSON document parsed into a `Value`, refusing a key repeated in one mapping (as the
/// manager's `json.loads` hook does) and a number that is not finite.
struct Strict(Value);

impl<'de> Deserialize<'de> for Strict {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        d.deserialize_any(StrictVisitor).map(Strict)
    }
}

/// Builds a `Value`, refusing repeated keys.
#[derive(Clone, Copy)]
struct StrictVisitor;

impl<'de> de::DeserializeSeed<'de> for StrictVisitor {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> std::result::Result<Value, D::Error> {
        d.deserialize_any(self)
    }
}

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
    fn visit_f64<E: de::Error>(self, v: f64) -> std::result::Result<Value, E> {
        serde_json::Number::from_f64(v)
            .map(Value::Number)
            .ok_or_else(|| E::custom(format!("{v} is not a finite number")))
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
        while let Some(item) = seq.next_element_seed(self)? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> std::result::Result<Value, A::Error> {
        let mut out = serde_json::Map::new();
        while let Some(key) = map.next_key::<String>()? {
            let value = map.next_value_seed(self)?;
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

    fn refusal(name: &str, content: &[u8]) -> String {
        match parse(name, content) {
            Err(Error::InvalidConfig(m)) => {
                assert!(
                    m.contains(&format!("{name:?}")),
                    "{m:?} does not name {name}"
                );
                m
            }
            other => panic!(
                "{:?}: unexpected {other:?}",
                content.escape_ascii().to_string()
            ),
        }
    }

    #[test]
    fn mappings_are_accepted_in_either_syntax() {
        let doc = parse("c.yaml", b"workers: 2\nlogging:\n  level: info\n").unwrap();
        assert_eq!(doc["logging"]["level"], "info");
        assert_eq!(parse("c.json", br#"{"workers": 2}"#).unwrap()["workers"], 2);
    }

    #[test]
    fn syntax_follows_the_content_not_the_extension() {
        // JSON in a .yaml file, YAML in a .json file: the manager reads both.
        let doc = parse("c.yaml", br#"{"workers": 2}"#).unwrap();
        assert_eq!(doc["workers"], 2);
        let doc = parse("c.json", b"workers: 2\n").unwrap();
        assert_eq!(doc["workers"], 2);
    }

    #[test]
    fn json_with_a_trailing_comma_is_read_as_yaml() {
        let doc = parse("config.json", b"{\"workers\": 2, \"a\": [1, 2,],}\n").unwrap();
        assert_eq!(doc, serde_json::json!({"workers": 2, "a": [1, 2]}));
    }

    #[test]
    fn repeated_keys_are_refused_at_any_depth_in_both_syntaxes() {
        let cases: [(&str, &[u8]); 4] = [
            ("c.json", br#"{"a": 1, "a": 2}"#),
            ("c.json", br#"{"x": [{"y": {"b": 1, "b": 2}}]}"#),
            ("c.yaml", b"a: 1\na: 2\n"),
            ("c.yaml", b"x:\n  - y:\n      b: 1\n      b: 2\n"),
        ];
        for (name, content) in cases {
            let m = refusal(name, content);
            assert!(m.contains("is given twice in one mapping"), "{m}");
        }
        // A JSON duplicate is reported as such, not as the YAML error it would also be.
        assert!(refusal("c.yaml", br#"{"a": 1, "a": 2}"#).contains("is not valid JSON"));
    }

    #[test]
    fn yaml_merge_keys_are_refused() {
        for content in [
            &b"base: &b {size-max: 1G}\ncache:\n  <<: *b\n  ttl-min: 5s\n"[..],
            b"a: &a {x: 1}\nb: &b {y: 1}\nc:\n  <<: [*a, *b]\n",
        ] {
            let m = refusal("c.yaml", content);
            assert!(m.contains("merge keys"), "{m}");
        }
        // Plain anchors and aliases are fine: PyYAML expands them too.
        let doc = parse("c.yaml", b"a: &x [1, 2]\nb: *x\n").unwrap();
        assert_eq!(doc["b"], serde_json::json!([1, 2]));
    }

    #[test]
    fn invalid_configurations_name_the_file_and_the_first_error() {
        let cases: [(&str, &[u8], &str); 9] = [
            ("c.json", br#"{"a": 1, "a": 2}"#, "\"a\" is given twice"),
            ("c.yaml", b"x:\n  b: 1\n  b: 2\n", "is not valid YAML"),
            ("c.json", b"{\"a\": 1,", "is not valid JSON"),
            ("c.json", b"[1, 2]", "not a list"),
            ("c.yaml", b"a: [1, 2\n", "is not valid YAML"),
            ("c.yaml", b"", "not empty (null)"),
            ("c.yaml", b"just a string", "not a string"),
            ("c.yaml", b"a: 1\na: 2\n", "is not valid YAML"),
            ("c.yaml", b"a: 1\n---\nb: 2\n", "is not valid YAML"),
        ];
        for (name, content, why) in cases {
            let m = refusal(name, content);
            assert!(m.contains(why), "{m:?} lacks {why:?}");
        }
    }

    #[test]
    fn a_json_file_invalid_in_both_syntaxes_reports_both_errors() {
        let m = refusal("c.json", b"{\n\"a\": [1, }");
        assert!(
            m.contains("is not valid JSON") && m.contains("line 2"),
            "{m}"
        );
        assert!(m.contains("nor valid YAML"), "{m}");
        // A YAML file's JSON error would be noise: only the YAML one is given.
        let m = refusal("c.yaml", b"a: [1, }");
        assert!(!m.contains("JSON"), "{m}");
    }

    #[test]
    fn numbers_that_are_not_finite_are_refused() {
        let m = refusal("c.yaml", b"cache:\n  size-max: .inf\n");
        assert!(m.contains("not a finite number"), "{m}");
    }
}
