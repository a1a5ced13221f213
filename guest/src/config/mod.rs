//! Validation of configuration files (SPEC section 2, step 4), as Knot Resolver's manager
//! validates them. Pure: no I/O, so the host can run the same checks natively.
//!
//! # Layout
//!
//! - `parse`: JSON, then YAML, into a mapping; repeated keys and YAML merge keys refused.
//! - `yaml11`: YAML read as the manager's PyYAML reads it (YAML 1.1 typing of plain scalars,
//!   in `yaml11::scalar`).
//! - `schema`: the resolver's JSON Schema, closed (unknown keys refused), compiled.
//! - `explain`: a schema error said for an operator: where and what.
//!
//! Whether a file is configuration depends on its extension only ([`Format::of`]); how it is
//! parsed does not. What the manager checks beyond its schema (mutually exclusive keys, tags that
//! must appear in `views`, files that must exist) is left to it: a JSON Schema check is a
//! strictly weaker check than the manager's, and refuses nothing the manager takes.

mod explain;
mod parse;
mod schema;
mod yaml11;

pub use parse::parse;
pub use schema::{Refusal, Schema};

use crate::error::{Error, Result};
use serde_json::Value;

/// The largest configuration file the guest parses, in bytes. A configuration is parsed whole
/// into memory; this keeps a hostile "config" from exhausting the guest's memory cap, and is far
/// above any real resolver configuration.
pub const MAX_CONFIG_SIZE: u64 = 16 * 1024 * 1024;

/// The JSON Schema of Knot Resolver 6.4.2's configuration (`doc/_static/config.schema.json` of
/// tag `v6.4.2`, the same text its manager serves at `GET /schema`). The last-resort default,
/// when no manager can be asked for the schema of the resolver actually installed.
pub const EMBEDDED_SCHEMA: &[u8] = include_bytes!("../../schema/knot-resolver-6.4.2.schema.json");

/// The two configuration syntaxes a file name announces. Parsing tries both whatever the name
/// says, as the manager does; the name only decides whether a file is configuration at all, and
/// which parser's error is shown first.
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

/// Parse, then check against `schema` when given. `name` is only used in messages. Returns the
/// parsed document.
pub fn validate(name: &str, content: &[u8], schema: Option<&Schema>) -> Result<Value> {
    let doc = parse(name, content)?;
    if let Some(schema) = schema
        && let Err(Refusal { pointer, message }) = schema.check(&doc)
    {
        let at = if pointer.is_empty() {
            "the top level".to_owned()
        } else {
            pointer
        };
        return Err(Error::InvalidConfig(format!(
            "configuration {name:?} is refused by the resolver's schema at {at}: {message}"
        )));
    }
    Ok(doc)
}

#[cfg(test)]
mod tests;
