//! What the guest may ask about the resolver (the sandbox's [`Resolver`]): the JSON Schema its
//! manager validates against, and a run of its own validator, `kresctl validate`, on the files
//! the manager merges with the new content in place.
//!
//! The schema comes from the manager (`GET /schema`, fetched by the daemon), else the copy cached
//! from an earlier fetch, else `kafka.schema-file`; with none of these the guest uses the one it
//! embeds. The validator runs as a child process with a time limit; it sees copies of the files,
//! in a scratch directory of the state directory, never the files directory itself.

use crate::manager::Manager;
use crate::outcome::Action;
use crate::sandbox::{Resolver, ValidateError};
use crate::scheduler::Ledger;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, OnceLock, RwLock};
use std::time::{Duration, Instant};

/// The resolver's schema and validator, shared by every guest call.
pub struct ResolverAccess {
    schema: RwLock<Option<Arc<[u8]>>>,
    validator: Option<Validator>,
    /// Where the guest records the manager calls its commits ask for; set once the scheduler
    /// exists (before the first message).
    ledger: OnceLock<Arc<Ledger>>,
}

impl ResolverAccess {
    pub fn new(schema: Option<Arc<[u8]>>, validator: Option<Validator>) -> Self {
        ResolverAccess {
            schema: RwLock::new(schema),
            validator,
            ledger: OnceLock::new(),
        }
    }

    /// Record the guest's owed calls in `ledger` from now on.
    pub fn set_ledger(&self, ledger: Arc<Ledger>) {
        let _ = self.ledger.set(ledger);
    }

    /// Use `schema` from now on (the manager served a new one).
    pub fn set_schema(&self, schema: Arc<[u8]>) {
        *self.schema.write().unwrap_or_else(|e| e.into_inner()) = Some(schema);
    }
}

impl Resolver for ResolverAccess {
    fn schema(&self) -> Option<Arc<[u8]>> {
        self.schema
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn validate(&self, name: &str, content: &[u8]) -> Result<(), ValidateError> {
        match &self.validator {
            Some(validator) => validator.run(name, content),
            None => Ok(()),
        }
    }

    fn owe(&self, call: Action) -> Result<(), String> {
        match self.ledger.get() {
            Some(ledger) => ledger
                .owe(call)
                .map_err(|e| format!("writing the owed-call marker: {e}")),
            // No scheduler (`validate`, tools): nothing will be called.
            None => Ok(()),
        }
    }
}

/// The resolver's own validator and what it validates.
#[derive(Debug, Clone)]
pub struct Validator {
    /// Program and arguments, e.g. `kresctl validate`; the files are appended.
    pub command: Vec<String>,
    /// The manager's `--config` files, in order.
    pub resolver_config: Vec<PathBuf>,
    /// The files directory: a delivered `name` is `files_dir/name`.
    pub files_dir: PathBuf,
    /// Where the copies are made (in the state directory).
    pub scratch: PathBuf,
    /// How long one run may take before it is killed and the configuration refused.
    pub timeout: Duration,
}

/// Where the schema comes from: the manager, then its cached copy, then `schema_file`; `None`
/// leaves the guest its embedded one. With `keep`, a schema fetched from the manager is cached
/// at `cache` for the next start.
pub async fn initial_schema(
    manager: &Manager,
    cache: &Path,
    keep: bool,
    schema_file: Option<&Path>,
) -> Option<Arc<[u8]>> {
    match manager.schema().await {
        Ok(schema) => {
            if keep {
                store(cache, &schema);
            }
            tracing::info!(bytes = schema.len(), "using the manager's schema");
            return Some(Arc::from(&schema[..]));
        }
        Err(e) => tracing::info!("the manager's schema cannot be had now: {e}"),
    }
    let source = [Some(cache), schema_file].into_iter().flatten().find_map(|path| {
        let bytes = std::fs::read(path).ok()?;
        match serde_json::from_slice::<serde::de::IgnoredAny>(&bytes) {
            Ok(_) => Some((path, bytes)),
            Err(e) => {
                tracing::warn!(path = %path.display(), "ignoring a schema that is not JSON: {e}");
                None
            }
        }
    });
    match source {
        Some((path, bytes)) => {
            tracing::info!(path = %path.display(), "using the resolver's schema from a file");
            Some(Arc::from(bytes))
        }
        None => {
            tracing::info!("using the embedded Knot Resolver 6.4.2 schema");
            None
        }
    }
}

/// Fetch the manager's schema again (after a reload: the manager may have been upgraded); keep
/// the one in use when it cannot be had.
pub async fn refresh_schema(manager: &Manager, access: &ResolverAccess, cache: &Path) {
    match manager.schema().await {
        Ok(schema) => {
            if access.schema().as_deref() != Some(&schema[..]) {
                tracing::info!(bytes = schema.len(), "the manager serves a new schema");
                store(cache, &schema);
                access.set_schema(Arc::from(&schema[..]));
            }
        }
        Err(e) => tracing::debug!("the manager's schema cannot be had now: {e}"),
    }
}

fn store(cache: &Path, schema: &[u8]) {
    let tmp = cache.with_extension("tmp");
    if let Err(e) = kres_kafka_guest::durable::write_atomically(cache, &tmp, schema, Some(0o644)) {
        tracing::warn!(path = %cache.display(), "caching the manager's schema: {e}");
    }
}

/// Longest output of the validator kept, to find its first line.
const MAX_OUTPUT: u64 = 64 * 1024;

impl Validator {
    /// Run the validator on the manager's files with `content` in place of `name`. A delivered
    /// configuration that is not one of the manager's files is validated alone.
    pub fn run(&self, name: &str, content: &[u8]) -> Result<(), ValidateError> {
        let unavailable = ValidateError::Unavailable;
        std::fs::create_dir_all(&self.scratch)
            .map_err(|e| unavailable(format!("creating {}: {e}", self.scratch.display())))?;
        let dir = tempfile::tempdir_in(&self.scratch)
            .map_err(|e| unavailable(format!("creating a scratch directory: {e}")))?;
        let base = Path::new(name)
            .file_name()
            .map_or_else(|| "config".into(), |n| n.to_owned());
        let copy = dir.path().join(base);
        std::fs::write(&copy, content)
            .map_err(|e| unavailable(format!("writing {}: {e}", copy.display())))?;
        let target = self.files_dir.join(name);
        let files = self.files_for(&target, &copy);
        let started = Instant::now();
        let result = self.execute(&files);
        tracing::debug!(file = name, files = ?files, took = ?started.elapsed(), ok = result.is_ok(), "resolver's validator ran");
        result
    }

    /// The manager's files in order, `copy` in place of `target`; `copy` alone when `target`
    /// is not one of them. Files that do not exist are left out, as the manager's packaging
    /// does for the optional delivered configuration.
    fn files_for(&self, target: &Path, copy: &Path) -> Vec<PathBuf> {
        if !self.resolver_config.iter().any(|f| f == target) {
            return vec![copy.to_owned()];
        }
        self.resolver_config
            .iter()
            .filter_map(|f| {
                if f == target {
                    Some(copy.to_owned())
                } else {
                    f.exists().then(|| f.clone())
                }
            })
            .collect()
    }

    fn execute(&self, files: &[PathBuf]) -> Result<(), ValidateError> {
        let unavailable = ValidateError::Unavailable;
        let (program, args) = self
            .command
            .split_first()
            .expect("an empty validate-command means no validator");
        let shown = self.command.join(" ");
        let mut child = Command::new(program)
            .args(args)
            .args(files)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| {
                unavailable(format!(
                    "the resolver's validator ({shown}) could not be run: {e}"
                ))
            })?;
        // Read both streams on their own threads: a validator that fills a pipe must not
        // block before it exits.
        let read = |stream: Option<Box<dyn Read + Send>>| {
            std::thread::spawn(move || {
                let mut text = Vec::new();
                if let Some(stream) = stream {
                    let _ = stream.take(MAX_OUTPUT).read_to_end(&mut text);
                }
                String::from_utf8_lossy(&text).into_owned()
            })
        };
        let stdout = read(child.stdout.take().map(|s| Box::new(s) as _));
        let stderr = read(child.stderr.take().map(|s| Box::new(s) as _));
        let deadline = Instant::now() + self.timeout;
        let status = loop {
            match child.try_wait() {
                Ok(Some(status)) => break status,
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(5))
                }
                Ok(None) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(unavailable(format!(
                        "the resolver's validator ({shown}) did not finish within {:?}",
                        self.timeout
                    )));
                }
                Err(e) => {
                    return Err(unavailable(format!(
                        "waiting for the resolver's validator: {e}"
                    )));
                }
            }
        };
        if status.success() {
            return Ok(());
        }
        let (stdout, stderr) = (
            stdout.join().unwrap_or_default(),
            stderr.join().unwrap_or_default(),
        );
        let first = |text: &str| {
            text.lines()
                .map(str::trim)
                .find(|l| !l.is_empty())
                .map(str::to_owned)
        };
        Err(ValidateError::Refused(
            first(&stderr)
                .or_else(|| first(&stdout))
                .unwrap_or_else(|| format!("the resolver's validator ({shown}) failed: {status}")),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn validator(dir: &Path, script: &str) -> Validator {
        let program = dir.join("kresctl");
        std::fs::write(&program, format!("#!/bin/sh\n{script}\n")).unwrap();
        std::fs::set_permissions(
            &program,
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )
        .unwrap();
        Validator {
            command: vec![program.display().to_string(), "validate".into()],
            resolver_config: vec![dir.join("etc.yaml"), dir.join("files/config.json")],
            files_dir: dir.join("files"),
            scratch: dir.join("state/validate"),
            timeout: Duration::from_secs(5),
        }
    }

    #[test]
    fn the_new_content_takes_the_place_of_its_file_among_the_managers() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("etc.yaml"), "workers: 1\n").unwrap();
        let v = validator(
            dir.path(),
            r#"shift; for f in "$@"; do echo "== $f" >&2; cat "$f" >&2; done; exit 1"#,
        );
        let err = v.run("config.json", b"{\"x\": 1}").unwrap_err().to_string();
        // The first line names the first file: the resolver's own, unchanged.
        assert!(err.ends_with("etc.yaml"), "{err}");
        let files = v.files_for(&dir.path().join("files/config.json"), Path::new("/c"));
        assert_eq!(files, [dir.path().join("etc.yaml"), "/c".into()]);
        // Not one of the manager's files: alone.
        let alone = v.files_for(&dir.path().join("files/other.yaml"), Path::new("/c"));
        assert_eq!(alone, [PathBuf::from("/c")]);
    }

    #[test]
    fn a_refusal_is_its_first_line_of_error_output_and_a_hang_is_cut_short() {
        let dir = tempfile::tempdir().unwrap();
        let v = validator(
            dir.path(),
            "echo; echo 'bad: /cache/size-max: too small' >&2; echo more >&2; exit 1",
        );
        assert_eq!(
            v.run("c.yaml", b"a: 1").unwrap_err(),
            ValidateError::Refused("bad: /cache/size-max: too small".into())
        );
        let ok = validator(dir.path(), "exit 0");
        ok.run("c.yaml", b"a: 1").unwrap();
        let mut slow = validator(dir.path(), "sleep 10");
        slow.timeout = Duration::from_millis(200);
        let err = slow.run("c.yaml", b"a: 1").unwrap_err();
        assert!(
            matches!(&err, ValidateError::Unavailable(e) if e.contains("did not finish within")),
            "{err}"
        );
        let missing = Validator {
            command: vec!["/nonexistent/kresctl".into()],
            ..ok
        };
        assert!(matches!(
            missing.run("c.yaml", b"").unwrap_err(),
            ValidateError::Unavailable(e) if e.contains("could not be run")
        ));
    }
}
