//! A schema error said for an operator: where (a JSON pointer into the configuration) and what,
//! in the configuration's own terms. An unknown key is named with the keys allowed beside it; a
//! value failing every alternative of an `anyOf` is explained by the alternative of its type.

use super::schema::{Refusal, escape, group};
use jsonschema::error::{TypeKind, ValidationErrorKind};
use jsonschema::{JsonType, ValidationError};
use serde_json::Value;

/// Say what is wrong where, for an operator: unknown keys are named with the keys allowed
/// there, and a failed `anyOf` is explained by the alternative the value came closest to.
pub(super) fn explain(e: &ValidationError, closed: &Value) -> Refusal {
    let pointer = e.instance_path().as_str().to_owned();
    match e.kind() {
        ValidationErrorKind::AnyOf { context } | ValidationErrorKind::OneOfNotValid { context } => {
            // Alternatives of another type than the value are beside the point when one was of
            // the right type.
            let near: Vec<&ValidationError> = context
                .iter()
                .filter(|errors| {
                    !errors.iter().any(|x| {
                        matches!(x.kind(), ValidationErrorKind::Type { .. })
                            && x.instance_path() == e.instance_path()
                    })
                })
                .filter_map(|errors| errors.first())
                .collect();
            match near.as_slice() {
                [one] => explain(one, closed),
                [] => {
                    let mut expected: Vec<&str> = Vec::new();
                    for x in context.iter().flatten() {
                        if let ValidationErrorKind::Type { kind } = x.kind() {
                            for t in types(kind) {
                                if !expected.contains(&t) {
                                    expected.push(t);
                                }
                            }
                        }
                    }
                    let message =
                        format!("{} is not {}", show(e.instance()), expected.join(" or "));
                    Refusal { pointer, message }
                }
                many => {
                    let forms: Vec<String> = many
                        .iter()
                        .map(|x| {
                            let r = explain(x, closed);
                            match r.pointer.strip_prefix(&pointer) {
                                Some("") => r.message,
                                Some(below) => format!("at {below}: {}", r.message),
                                None => format!("at {}: {}", r.pointer, r.message),
                            }
                        })
                        .collect();
                    let message = format!("no allowed form matches: {}", forms.join("; or "));
                    Refusal { pointer, message }
                }
            }
        }
        ValidationErrorKind::AdditionalProperties { unexpected }
        | ValidationErrorKind::UnevaluatedProperties { unexpected } => {
            let Some(first) = unexpected.first() else {
                return Refusal {
                    pointer,
                    message: e.to_string(),
                };
            };
            let mut message = format!("unknown key {first:?}");
            if unexpected.len() > 1 {
                let others: Vec<String> =
                    unexpected[1..].iter().map(|k| format!("{k:?}")).collect();
                message += &format!(" (and {})", others.join(", "));
            }
            let allowed = allowed_keys(closed, e.schema_path().as_str());
            if !allowed.is_empty() {
                message += &format!("; the keys allowed here are: {}", allowed.join(", "));
            }
            Refusal {
                pointer: format!("{pointer}/{}", escape(first)),
                message,
            }
        }
        ValidationErrorKind::Type { kind } => Refusal {
            pointer,
            message: format!("{} is not {}", show(e.instance()), types(kind).join(" or ")),
        },
        // jsonschema names two options and counts the others: name them all.
        ValidationErrorKind::Enum { options } => {
            let options = match &**options {
                Value::Array(options) => options.iter().map(Value::to_string).collect(),
                other => vec![other.to_string()],
            };
            Refusal {
                pointer,
                message: format!(
                    "{} is not one of {}",
                    show(e.instance()),
                    options.join(", ")
                ),
            }
        }
        _ => Refusal {
            pointer,
            message: e.masked_with(show(e.instance())).to_string(),
        },
    }
}

/// The keys listed at the schema location owning the keyword at `keyword_path`.
fn allowed_keys(closed: &Value, keyword_path: &str) -> Vec<String> {
    let Some((owner_path, _)) = keyword_path.rsplit_once('/') else {
        return Vec::new();
    };
    let Some(owner) = closed.pointer(owner_path) else {
        return Vec::new();
    };
    let mut keys = Vec::new();
    for member in group(closed, owner, owner_path).unwrap_or_default() {
        if let Some(Value::Object(properties)) = member.node.get("properties") {
            for key in properties.keys() {
                if !keys.contains(key) {
                    keys.push(key.clone());
                }
            }
        }
    }
    keys
}

/// The types a `type` keyword asked for, in words.
fn types(kind: &TypeKind) -> Vec<&'static str> {
    let word = |t: JsonType| match t {
        JsonType::Null => "null",
        JsonType::Boolean => "a boolean",
        JsonType::Integer => "an integer",
        JsonType::Number => "a number",
        JsonType::String => "a string",
        JsonType::Array => "a list",
        JsonType::Object => "a mapping",
    };
    match kind {
        TypeKind::Single(t) => vec![word(*t)],
        TypeKind::Multiple(set) => set.iter().map(word).collect(),
    }
}

/// A value as an error shows it: scalars as they are (if short), containers by their kind, so
/// that one message never carries a whole section.
fn show(value: &Value) -> String {
    const LONGEST: usize = 80;
    match value {
        Value::Array(_) => "a list".to_owned(),
        Value::Object(_) => "a mapping".to_owned(),
        Value::String(s) if s.chars().count() > LONGEST => {
            format!("a string of {} characters", s.chars().count())
        }
        scalar => scalar.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use crate::config::Schema;
    use serde_json::json;

    #[test]
    fn errors_say_where_and_what() {
        let schema = Schema::compile(
            json!({
                "type": "object",
                "properties": {
                    "port": {"type": "integer", "minimum": 1, "maximum": 65535},
                    "size": {"type": "string", "pattern": "^(\\d+)(B|K|M|G)$"},
                    "workers": {"anyOf": [{"type": "string", "enum": ["auto"]}, {"type": "integer", "minimum": 1}]},
                    "either": {"anyOf": [{"type": "string"}, {"type": "integer"}]},
                }
            })
            .to_string()
            .as_bytes(),
        )
        .unwrap();
        let cases = [
            (
                json!({"port": 70000}),
                "/port",
                "70000 is greater than the maximum of 65535",
            ),
            (json!({"port": "53"}), "/port", "\"53\" is not an integer"),
            (json!({"size": "1 GB"}), "/size", "\"1 GB\" does not match"),
            (
                json!({"workers": 0}),
                "/workers",
                "0 is less than the minimum of 1",
            ),
            (
                json!({"workers": "many"}),
                "/workers",
                "\"many\" is not one of \"auto\"",
            ),
            (
                json!({"either": [1]}),
                "/either",
                "a list is not a number or a string or an integer",
            ),
            (
                json!({"prot": 1}),
                "/prot",
                "unknown key \"prot\"; the keys allowed here are: either, port, size, workers",
            ),
        ];
        for (doc, pointer, message) in cases {
            let r = schema.check(&doc).unwrap_err();
            assert_eq!(r.pointer, pointer, "{doc}: {r:?}");
            assert!(
                r.message.contains(message),
                "{doc}: {r:?} lacks {message:?}"
            );
        }
    }
}
