//! The resolver's JSON Schema (draft 2020-12), closed the way its manager applies it, compiled
//! once and checked against each configuration (the first error found is reported).
//!
//! The schema the manager serves (`GET /schema`) lists every key of every section but never says
//! `additionalProperties: false`, while the manager refuses unknown keys at every level. So the
//! schema is *closed* before it is compiled: where an object schema lists `properties` and says
//! nothing about other keys, other keys are refused. Closing must never refuse what the manager
//! takes, so it looks at each instance location as a whole: the schema there and everything that
//! applies in place with it (`allOf`, `anyOf`, `oneOf`, local `$ref`):
//!
//! - one schema lists properties and is reached without `allOf` or `$ref` (the case throughout
//!   the 6.4.2 schema, including `anyOf` alternatives such as a server given as a string or as a
//!   mapping): it gets `additionalProperties: false`;
//! - several list properties, or the one listing them may be shared through `$ref`: the location
//!   gets `unevaluatedProperties: false`, which counts the keys every applying schema evaluated;
//! - left open: a location where something already speaks of other keys
//!   (`additionalProperties`, `patternProperties`, `unevaluatedProperties`), an `anyOf`/`oneOf`
//!   alternative that takes any mapping while no unconditional schema lists properties, and
//!   anything conditional or dynamic (`if`/`then`/`else`, `dependentSchemas`, `$dynamicRef`,
//!   a `$ref` that is not a local JSON pointer). Subschemas under `not`, `if`, `contains` and
//!   `propertyNames` are not touched: closing them would change what the schema around them
//!   accepts in ways that are hard to foresee.
//!
//! One thing is widened: where the schema types a value as a string, a number passes too, since
//! the manager's datamodel takes an integer or a float given for a string field as its text
//! (`nsid: 1234`, and YAML 1.1's `1:30` or `0755` read as numbers). String keywords (`pattern`,
//! lengths) do not apply to numbers, so this only ever accepts more. Nothing else is added:
//! where the schema types a value as a plain string, no further rule is guessed.
//! Patterns are the manager's Python regular expressions; `fancy-regex` reads the ones the
//! schema uses (look-ahead, `{,253}`) the same way. (That is why the validator is `jsonschema`:
//! `boon` compiles patterns with the `regex` crate, which has no look-around, and refuses the
//! schema.)

use super::explain::explain;
use jsonschema::Validator;
use serde_json::{Map, Value};

/// A compiled, closed resolver schema.
#[derive(Debug)]
pub struct Schema {
    validator: Validator,
    /// The closed schema text, to name the keys a mapping allows when it has an unknown one.
    closed: Value,
}

/// Why a document is refused: where, and what is wrong there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// JSON pointer to the offending value (or key), `""` for the whole document.
    pub pointer: String,
    /// What is wrong there, e.g. `99999 is greater than the maximum of 65535`.
    pub message: String,
}

impl Schema {
    /// Compile schema JSON text (as served by the manager's GET /schema), closing it.
    pub fn compile(text: &[u8]) -> Result<Schema, String> {
        let mut closed: Value =
            serde_json::from_slice(text).map_err(|e| format!("the schema is not JSON: {e}"))?;
        if !closed.is_object() {
            return Err("the schema is not a JSON object".to_owned());
        }
        close(&mut closed);
        // Offline: the manager's schema is self-contained, and the guest has no network anyway.
        // The `$schema` keyword picks the draft (2020-12 for every 6.x manager).
        let validator = jsonschema::options()
            .offline()
            .build(&closed)
            .map_err(|e| format!("the schema does not compile: {e}"))?;
        Ok(Schema { validator, closed })
    }

    /// The first place where `doc` breaks the schema, if any.
    pub fn check(&self, doc: &Value) -> Result<(), Refusal> {
        self.validator
            .validate(doc)
            .map_err(|e| explain(&e, &self.closed))
    }
}

/// Keywords whose subschemas apply to the same instance as the schema holding them.
const IN_PLACE: [&str; 3] = ["allOf", "anyOf", "oneOf"];
/// Keywords that already decide about keys a schema does not list.
const SPEAKS_OF_OTHER_KEYS: [&str; 3] = [
    "additionalProperties",
    "patternProperties",
    "unevaluatedProperties",
];
/// Keywords whose effect on which keys are evaluated depends on the instance or the call path.
const UNFATHOMED: [&str; 6] = [
    "if",
    "then",
    "else",
    "dependentSchemas",
    "$dynamicRef",
    "$recursiveRef",
];

/// Close `schema` in place (see the module documentation).
fn close(schema: &mut Value) {
    let mut plan = Vec::new();
    visit(schema, schema, String::new(), true, &mut plan);
    for (pointer, keyword) in plan {
        if let Some(Value::Object(node)) = schema.pointer_mut(&pointer) {
            node.insert(keyword.to_owned(), Value::Bool(false));
        }
    }
    widen_strings(schema);
}

/// Let a number stand where a string is expected (see the module documentation).
fn widen_strings(node: &mut Value) {
    match node {
        Value::Object(map) => {
            // A literal (`enum`, `const`) is a string the number's text would have to equal:
            // widening it would only make its refusal say less.
            let literal = map.contains_key("enum") || map.contains_key("const");
            match map.get_mut("type") {
                Some(t) if !literal && t.as_str() == Some("string") => {
                    *t = serde_json::json!(["string", "number"]);
                }
                Some(Value::Array(types)) if !literal => {
                    let has = |name: &str| types.iter().any(|t| t == name);
                    if has("string") && !has("number") && !has("integer") {
                        types.push("number".into());
                    }
                }
                _ => {}
            }
            map.values_mut().for_each(widen_strings);
        }
        Value::Array(list) => list.iter_mut().for_each(widen_strings),
        _ => {}
    }
}

/// Walk the schema tree once. `location` says that `node` is the first schema of an instance
/// location (the root, or reached through `properties`, `items`, ...), where closing is decided.
fn visit(
    root: &Value,
    node: &Value,
    path: String,
    location: bool,
    plan: &mut Vec<(String, &'static str)>,
) {
    let Value::Object(map) = node else {
        return;
    };
    if location && let Some(closing) = decide(root, node, &path) {
        plan.push(closing);
    }
    for (keyword, sub) in map {
        let here = format!("{path}/{}", escape(keyword));
        match (keyword.as_str(), sub) {
            ("properties" | "patternProperties", Value::Object(entries)) => {
                for (key, s) in entries {
                    visit(root, s, format!("{here}/{}", escape(key)), true, plan);
                }
            }
            // Reached only through `$ref`: closed where they are referenced.
            ("$defs" | "definitions", Value::Object(entries)) => {
                for (key, s) in entries {
                    visit(root, s, format!("{here}/{}", escape(key)), false, plan);
                }
            }
            ("items" | "prefixItems" | "additionalItems", Value::Array(list)) => {
                for (i, s) in list.iter().enumerate() {
                    visit(root, s, format!("{here}/{i}"), true, plan);
                }
            }
            (
                "items"
                | "additionalItems"
                | "additionalProperties"
                | "unevaluatedItems"
                | "unevaluatedProperties",
                _,
            ) => visit(root, sub, here, true, plan),
            ("allOf" | "anyOf" | "oneOf", Value::Array(list)) => {
                for (i, s) in list.iter().enumerate() {
                    visit(root, s, format!("{here}/{i}"), false, plan);
                }
            }
            // `not`, `if`/`then`/`else`, `contains`, `propertyNames`, `dependentSchemas` are
            // left as they are; every other keyword holds no schema.
            _ => {}
        }
    }
}

/// One schema applying in place at an instance location.
pub(super) struct Member<'a> {
    path: String,
    pub(super) node: &'a Map<String, Value>,
    /// Reached through `anyOf`/`oneOf`: applies only when its alternative is taken.
    conditional: bool,
    /// Reached through `allOf` or `$ref`: other schemas may apply beside it, or it may be used
    /// at other locations too.
    shared: bool,
}

/// The schemas applying in place with `node`, or `None` when that cannot be told statically.
pub(super) fn group<'a>(root: &'a Value, node: &'a Value, path: &str) -> Option<Vec<Member<'a>>> {
    let mut members: Vec<Member<'a>> = Vec::new();
    let mut stack = vec![(node, path.to_owned(), false, false)];
    while let Some((node, path, conditional, shared)) = stack.pop() {
        let Value::Object(map) = node else {
            continue; // `true`, `false`: they list no keys.
        };
        if members.iter().any(|m| m.path == path) {
            continue; // a `$ref` cycle
        }
        if UNFATHOMED.iter().any(|k| map.contains_key(*k)) {
            return None;
        }
        if let Some(reference) = map.get("$ref") {
            let (target, target_path) = resolve(root, reference)?;
            stack.push((target, target_path, conditional, true));
        }
        for keyword in IN_PLACE {
            if let Some(Value::Array(list)) = map.get(keyword) {
                for (i, s) in list.iter().enumerate() {
                    stack.push((
                        s,
                        format!("{path}/{keyword}/{i}"),
                        conditional || keyword != "allOf",
                        shared || keyword == "allOf",
                    ));
                }
            }
        }
        members.push(Member {
            path,
            node: map,
            conditional,
            shared,
        });
    }
    Some(members)
}

/// Which keyword closes the location whose first schema is `node`, and where it goes.
fn decide(root: &Value, node: &Value, path: &str) -> Option<(String, &'static str)> {
    let members = group(root, node, path)?;
    let speaks = |m: &Member| SPEAKS_OF_OTHER_KEYS.iter().any(|k| m.node.contains_key(*k));
    if members.iter().any(speaks) {
        return None;
    }
    let listing: Vec<&Member> = members
        .iter()
        .filter(|m| m.node.contains_key("properties"))
        .collect();
    if listing.is_empty() {
        return None;
    }
    if !listing.iter().any(|m| !m.conditional) {
        // Only alternatives list keys: an alternative taking any mapping keeps other keys open.
        for m in &members {
            for keyword in ["anyOf", "oneOf"] {
                let Some(Value::Array(alternatives)) = m.node.get(keyword) else {
                    continue;
                };
                for (i, alternative) in alternatives.iter().enumerate() {
                    let sub = group(root, alternative, &format!("{}/{keyword}/{i}", m.path))?;
                    let lists = sub
                        .iter()
                        .any(|s| s.node.contains_key("properties") || speaks(s));
                    if !lists && takes_mappings(alternative, &sub) {
                        return None;
                    }
                }
            }
        }
    }
    match listing.as_slice() {
        [only] if !only.shared => Some((only.path.clone(), "additionalProperties")),
        _ => Some((path.to_owned(), "unevaluatedProperties")),
    }
}

/// Whether a schema (with what applies in place with it) may accept a mapping.
fn takes_mappings(schema: &Value, group: &[Member]) -> bool {
    if schema == &Value::Bool(false) {
        return false;
    }
    group.iter().all(|m| {
        let typed = match m.node.get("type") {
            Some(Value::String(t)) => t == "object",
            Some(Value::Array(ts)) => ts.iter().any(|t| t == "object"),
            _ => true,
        };
        let listed = match (m.node.get("enum"), m.node.get("const")) {
            (Some(Value::Array(values)), _) => values.iter().any(Value::is_object),
            (_, Some(value)) => value.is_object(),
            _ => true,
        };
        typed && listed
    })
}

/// The target of a local `$ref` (`#` or `#/json/pointer`) and its path.
fn resolve<'a>(root: &'a Value, reference: &Value) -> Option<(&'a Value, String)> {
    let pointer = percent_decode(reference.as_str()?.strip_prefix('#')?)?;
    Some((root.pointer(&pointer)?, pointer))
}

fn percent_decode(s: &str) -> Option<String> {
    let mut bytes = Vec::with_capacity(s.len());
    let mut rest = s.as_bytes();
    while let Some((&b, tail)) = rest.split_first() {
        if b == b'%' {
            let hex = std::str::from_utf8(tail.get(..2)?).ok()?;
            bytes.push(u8::from_str_radix(hex, 16).ok()?);
            rest = &tail[2..];
        } else {
            bytes.push(b);
            rest = tail;
        }
    }
    String::from_utf8(bytes).ok()
}

/// One JSON pointer segment.
pub(super) fn escape(key: &str) -> String {
    key.replace('~', "~0").replace('/', "~1")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn closed(schema: Value) -> Value {
        let mut schema = schema;
        close(&mut schema);
        schema
    }

    #[test]
    fn an_object_listing_properties_is_closed_at_every_depth() {
        let s = closed(json!({
            "type": "object",
            "properties": {
                "a": {"type": "object", "properties": {"b": {"type": "string"}}},
                "l": {"type": "array", "items": {"type": "object", "properties": {"c": {}}}},
                "m": {"type": "object", "additionalProperties": {"type": "string"}},
                "free": {"type": "object"},
            }
        }));
        assert_eq!(s["additionalProperties"], false);
        assert_eq!(s["properties"]["a"]["additionalProperties"], false);
        assert_eq!(s["properties"]["l"]["items"]["additionalProperties"], false);
        // An explicit rule for other keys stays (widened to numbers, as every string type).
        assert_eq!(
            s["properties"]["m"]["additionalProperties"],
            json!({"type": ["string", "number"]})
        );
        assert_eq!(s["properties"]["free"].get("additionalProperties"), None);
    }

    #[test]
    fn every_object_of_the_6_4_2_schema_gets_additional_properties_false() {
        fn walk(node: &Value, objects: &mut usize) {
            match node {
                Value::Object(map) => {
                    if map.contains_key("properties") {
                        *objects += 1;
                        assert_eq!(map["additionalProperties"], false, "{node}");
                    }
                    assert_eq!(map.get("unevaluatedProperties"), None);
                    for (keyword, sub) in map {
                        if keyword != "default" {
                            walk(sub, objects);
                        }
                    }
                }
                Value::Array(list) => list.iter().for_each(|s| walk(s, objects)),
                _ => {}
            }
        }
        let mut schema: Value = serde_json::from_slice(crate::config::EMBEDDED_SCHEMA).unwrap();
        close(&mut schema);
        let mut objects = 0;
        walk(&schema, &mut objects);
        assert_eq!(objects, 35);
    }

    #[test]
    fn a_number_passes_where_a_string_is_expected_as_the_manager_takes_it() {
        let schema = Schema::compile(super::super::EMBEDDED_SCHEMA).unwrap();
        schema.check(&serde_json::json!({"nsid": 1234})).unwrap();
        schema.check(&serde_json::json!({"nsid": "r1"})).unwrap();
        // Only numbers: a mapping is still refused there.
        assert!(
            schema
                .check(&serde_json::json!({"nsid": {"a": 1}}))
                .is_err()
        );
    }

    #[test]
    fn an_alternative_listing_properties_is_closed_by_itself() {
        let s = closed(
            json!({"anyOf": [{"type": "string"}, {"type": "object", "properties": {"a": {}}}]}),
        );
        assert_eq!(s["anyOf"][1]["additionalProperties"], false);
        assert_eq!(s.get("unevaluatedProperties"), None);
    }

    #[test]
    fn combined_schemas_are_closed_where_they_meet() {
        let s = closed(json!({
            "$defs": {"base": {"type": "object", "properties": {"a": {}}}},
            "type": "object",
            "properties": {
                "x": {"allOf": [{"properties": {"a": {}}}, {"properties": {"b": {}}}]},
                "y": {"$ref": "#/$defs/base"},
                "z": {"$ref": "#/$defs/base", "properties": {"c": {}}},
            }
        }));
        let p = &s["properties"];
        for key in ["x", "y", "z"] {
            assert_eq!(p[key]["unevaluatedProperties"], false, "{key}");
        }
        assert_eq!(s["$defs"]["base"].get("additionalProperties"), None);
        assert_eq!(p["x"]["allOf"][0].get("additionalProperties"), None);
        let schema = Schema::compile(s.to_string().as_bytes()).unwrap();
        let ok = json!({"x": {"a": 1, "b": 2}, "y": {"a": 1}, "z": {"a": 1, "c": 2}});
        assert_eq!(schema.check(&ok), Ok(()));
        let refusal = schema.check(&json!({"z": {"a": 1, "d": 2}})).unwrap_err();
        assert_eq!(refusal.pointer, "/z/d");
    }

    #[test]
    fn an_alternative_taking_any_mapping_keeps_the_location_open() {
        for open in [json!(true), json!({}), json!({"type": "object"})] {
            let s = closed(json!({"anyOf": [{"properties": {"a": {}}}, open]}));
            assert_eq!(s.get("unevaluatedProperties"), None, "{s}");
            assert_eq!(s["anyOf"][0].get("additionalProperties"), None, "{s}");
        }
        // A constraint beside listed properties does not open them.
        let s = closed(json!({"properties": {"a": {}}, "anyOf": [{"required": ["a"]}, {}]}));
        assert_eq!(s["additionalProperties"], false);
    }

    #[test]
    fn conditional_and_negated_schemas_are_left_alone() {
        let s = closed(json!({
            "properties": {"a": {}},
            "if": {"properties": {"a": {"const": 1}}},
            "then": {"properties": {"b": {}}},
            "not": {"properties": {"c": {}}},
        }));
        assert_eq!(s.get("additionalProperties"), None);
        assert_eq!(s["if"].get("additionalProperties"), None);
        assert_eq!(s["not"].get("additionalProperties"), None);
        let s = closed(json!({"properties": {"a": {"$ref": "https://example.com/x"}}}));
        assert_eq!(s["additionalProperties"], false);
        assert_eq!(s["properties"]["a"].get("unevaluatedProperties"), None);
    }

    #[test]
    fn a_schema_that_does_not_compile_is_an_error() {
        assert!(Schema::compile(b"[]").is_err());
        assert!(Schema::compile(b"{").is_err());
        let e = Schema::compile(br#"{"type": "objet"}"#).unwrap_err();
        assert!(e.contains("does not compile"), "{e}");
    }
}
