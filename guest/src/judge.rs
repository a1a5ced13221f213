//! Judging a file the resolver loads before it is committed: an RPZ file as the resolver's zone
//! loader judges it (`zone`), and a configuration file (SPEC section 2, step 4) in layers,
//! each refusal naming the file and the first error:
//!
//! 1. parsed as the manager parses it and checked against the resolver's JSON Schema, closed
//!    (`config`); the schema is the one the host hands over (the manager's), else the one
//!    embedded;
//! 2. the resolver's own validator (`kresctl validate`), run by the host on the files the
//!    manager merges, with this content in place.
//!
//! And, once a configuration is committed, whether the manager's running configuration must
//! change when it takes it.

use crate::bindings::kres::kafka::types::Action;
use crate::config::{self, EMBEDDED_SCHEMA, Schema};
use crate::error::{Error, Result};
use crate::zone;
use serde_json::Value;
use std::io::Read;
use std::path::Path;
use std::sync::{Arc, Mutex};

/// What the guest asks the host about the resolver (the WIT `resolver` import; a stand-in in
/// native tests).
pub trait Resolver {
    /// The resolver's schema, or `None` for the embedded one. Shared: asking again for the
    /// same schema should give the same allocation, so that it is not compared byte by byte.
    fn schema(&self) -> Option<Arc<[u8]>>;
    /// The resolver's own validator on `content` as the configuration `name`.
    fn validate(&self, name: &str, content: &[u8]) -> std::result::Result<(), Validation>;
    /// Record durably that the manager must be asked for `call`; `Err` says why it could not.
    fn owe(&self, call: Action) -> std::result::Result<(), String>;
}

/// Why the resolver's validator did not accept a configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Validation {
    /// It refused: its first line of error output.
    Refused(String),
    /// It could not judge.
    Unavailable(String),
}

/// No host: the embedded schema, no validator. For native tests and tools.
pub struct NoResolver;

impl Resolver for NoResolver {
    fn schema(&self) -> Option<Arc<[u8]>> {
        None
    }
    fn validate(&self, _: &str, _: &[u8]) -> std::result::Result<(), Validation> {
        Ok(())
    }
    fn owe(&self, _: Action) -> std::result::Result<(), String> {
        Ok(())
    }
}

/// Judge the configuration `name`; return it parsed as the manager parses it.
pub fn judge(resolver: &dyn Resolver, name: &str, content: &[u8]) -> Result<Value> {
    let schema = schema(resolver);
    let doc = config::validate(name, content, Some(&*schema))?;
    match resolver.validate(name, content) {
        Ok(()) => Ok(doc),
        Err(Validation::Refused(why)) => Err(Error::InvalidConfig(format!(
            "configuration {name:?} is refused by the resolver's validator: {why}"
        ))),
        Err(Validation::Unavailable(why)) => Err(Error::Io {
            what: format!("validating configuration {name:?}"),
            source: std::io::Error::other(why),
        }),
    }
}

/// The host's schema compiled and closed, or the embedded one when the host has none or its
/// does not compile (logged: a broken schema must not stop deliveries). Compiled once for as
/// long as the schema text stays the same: inside the sandbox, once per batch.
fn schema(resolver: &dyn Resolver) -> Arc<Schema> {
    /// The schema text last compiled (`None`: the embedded one), and what it compiled to.
    type Compiled = Option<(Option<Arc<[u8]>>, Arc<Schema>)>;
    static COMPILED: Mutex<Compiled> = Mutex::new(None);
    let text = resolver.schema();
    let mut compiled = COMPILED.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((seen, schema)) = compiled.as_ref() {
        let same = match (seen, &text) {
            (Some(a), Some(b)) => Arc::ptr_eq(a, b) || a == b,
            (None, None) => true,
            _ => false,
        };
        if same {
            return Arc::clone(schema);
        }
    }
    let schema = Arc::new(compile(text.as_deref()));
    *compiled = Some((text, Arc::clone(&schema)));
    schema
}

fn compile(text: Option<&[u8]>) -> Schema {
    if let Some(text) = text {
        match Schema::compile(text) {
            Ok(schema) => return schema,
            Err(e) => crate::log_warn(format!(
                "the resolver's schema does not compile ({e}): using the embedded 6.4.2 schema"
            )),
        }
    }
    Schema::compile(EMBEDDED_SCHEMA).expect("the embedded schema compiles (tested)")
}

/// Whether the manager's running configuration must change when it takes `new` in place of
/// `old` (`None`: there was no file, or it did not parse). Both are parsed as the manager
/// parses them, so equal documents here are equal to the manager: a change it does not see
/// (comments, spacing, quoting, `yes` for `true`) asks for no check of the reload.
pub fn changes(old: Option<&Value>, new: &Value) -> bool {
    let empty = Value::Object(Default::default());
    old.unwrap_or(&empty) != new
}

/// Whether `name` is a file the resolver loads as an RPZ zone (`local-data.rpz[].file`):
/// judged as its zone loader judges it before it is committed. A file of another name is
/// delivered as it is.
pub fn is_zone(name: &str) -> bool {
    name.ends_with(".rpz")
}

/// Judge the RPZ file `name`, whole in `content`.
pub fn judge_zone(name: &str, content: &[u8]) -> Result<()> {
    let mut judge = zone::RpzJudge::new();
    judge
        .feed(content)
        .and_then(|()| judge.finish())
        .map(|_| ())
        .map_err(|e| refused_zone(name, e))
}

/// Judge the RPZ file `name`, read from `path` a piece at a time: memory stays bounded by the
/// piece, whatever the file's size.
pub fn judge_zone_file(name: &str, path: &Path) -> Result<()> {
    /// The size of a piece: large enough that reading costs little next to judging.
    const PIECE: usize = 256 * 1024;
    let read_error = |source| Error::Io {
        what: format!("reading {name:?} to judge it"),
        source,
    };
    let mut file = std::fs::File::open(path).map_err(read_error)?;
    let mut judge = zone::RpzJudge::new();
    let mut piece = vec![0; PIECE];
    loop {
        let n = match file.read(&mut piece) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(read_error(e)),
        };
        judge.feed(&piece[..n]).map_err(|e| refused_zone(name, e))?;
    }
    judge
        .finish()
        .map(|_| ())
        .map_err(|e| refused_zone(name, e))
}

/// Why the host's native judge did not accept a zone file (the WIT `files.zone-refusal`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostRefusal {
    /// The resolver's zone loader would refuse it: `line N: reason`.
    Refused(String),
    /// The host could not read it.
    Unreadable(String),
}

/// Judge the RPZ file `name`, assembled at `rel` in the files directory (`path` for the guest)
/// with SHA-256 `sha256`: by the host, natively with the same code, when it offers to (it may
/// have judged the bytes while it wrote them), else here, a piece at a time.
pub fn judge_zone_assembled(
    platform: &dyn crate::batch::Platform,
    name: &str,
    rel: &str,
    path: &Path,
    sha256: &[u8; 32],
) -> Result<()> {
    match platform.judge_zone(rel, sha256) {
        Some(Ok(())) => Ok(()),
        Some(Err(HostRefusal::Refused(why))) => Err(refused_zone(name, why)),
        Some(Err(HostRefusal::Unreadable(why))) => Err(Error::Io {
            what: format!("reading {name:?} to judge it"),
            source: std::io::Error::other(why),
        }),
        None => judge_zone_file(name, path),
    }
}

fn refused_zone(name: &str, e: impl std::fmt::Display) -> Error {
    Error::InvalidZone(format!(
        "RPZ file {name:?} would be refused by the resolver's zone loader: {e}"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Refusing;
    impl Resolver for Refusing {
        fn schema(&self) -> Option<Arc<[u8]>> {
            Some(
                br#"{"type": "object", "properties": {"workers": {"type": "integer"}}}"#[..].into(),
            )
        }
        fn validate(&self, _: &str, content: &[u8]) -> std::result::Result<(), Validation> {
            match content {
                b"workers: 3\n" => Err(Validation::Refused("workers: 3 is odd".into())),
                b"workers: 5\n" => Err(Validation::Unavailable("kresctl: not found".into())),
                _ => Ok(()),
            }
        }
        fn owe(&self, _: Action) -> std::result::Result<(), String> {
            Ok(())
        }
    }

    #[test]
    fn the_hosts_schema_then_the_resolvers_validator_judge() {
        judge(&Refusing, "c.yaml", b"workers: 2\n").unwrap();
        // The host's schema, closed: a key it does not list is refused.
        let e = judge(&Refusing, "c.yaml", b"cache: {}\n").unwrap_err();
        assert!(e.to_string().contains("at /cache"), "{e}");
        let e = judge(&Refusing, "c.yaml", b"workers: 3\n").unwrap_err();
        assert!(
            matches!(&e, Error::InvalidConfig(m) if m.contains("\"c.yaml\" is refused by the resolver's validator: workers: 3 is odd")),
            "{e}"
        );
        assert!(matches!(
            judge(&Refusing, "c.yaml", b"workers: 5\n").unwrap_err(),
            Error::Io { .. }
        ));
        // Without a host: the embedded schema.
        let e = judge(&NoResolver, "c.yaml", b"netwrok: {}\n").unwrap_err();
        assert!(e.to_string().contains("at /netwrok"), "{e}");
    }

    #[test]
    fn only_a_change_the_manager_sees_counts() {
        let doc = |text: &[u8]| config::parse("c.yaml", text).unwrap();
        let new = doc(b"workers: 2\n");
        assert!(!changes(Some(&doc(b"# tuned\nworkers:   2\n")), &new));
        assert!(changes(Some(&doc(b"workers: 1\n")), &new));
        assert!(changes(None, &new));
        assert!(!changes(None, &doc(b"{}")));
    }
}
