//! The preflight: what delivery needs from this machine, tried before a start takes or touches
//! anything, and on its own as `kres-kafka run --check`.
//!
//! Each check names the key it follows from and the file, directory, socket or broker it
//! tried: the files directory and the state directory writable by the user the daemon runs as
//! (a file created and removed, not the mode bits read: ACLs, read-only mounts and root all
//! answer for themselves), the manager answering, the broker answering with these credentials
//! and describing the topic and the status topic, the trusted keys loaded.
//!
//! A problem either stops delivery (a directory that cannot be written: the start is refused)
//! or delays it (the manager or the broker not answering: the daemon starts, warns, and waits
//! for them). It never changes anything it checks, and a check never waits longer than
//! [`BROKER_TIMEOUT`].

use crate::config::{Config, Management};
use crate::kafka;
use crate::manager::Manager;
use rdkafka::client::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{BaseConsumer, Consumer as _, ConsumerContext};
use rdkafka::error::KafkaError;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How long the broker is given to describe a topic: a broker that answers at all does so in
/// milliseconds; a start against one that is down is held up this long, once.
pub const BROKER_TIMEOUT: Duration = Duration::from_secs(5);

/// How long the manager is given to answer `GET /v1/config` (served from its memory).
pub const MANAGER_TIMEOUT: Duration = Duration::from_secs(5);

/// What a problem does to delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    /// Nothing can be delivered: a start is refused.
    Stops,
    /// Delivery waits for it (files, or the manager calls they ask for): a start warns.
    Delays,
}

/// One check that failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub severity: Severity,
    /// The key, what was tried, and what it answered.
    pub text: String,
}

/// What the preflight found, in the order checked.
#[derive(Debug, Default)]
pub struct Report {
    /// The checks that passed, each saying what it found.
    pub passed: Vec<String>,
    pub problems: Vec<Problem>,
}

impl Report {
    fn add(&mut self, result: Result<String, Problem>) {
        match result {
            Ok(found) => self.passed.push(found),
            Err(problem) => self.problems.push(problem),
        }
    }

    /// The problems that stop delivery.
    pub fn stopping(&self) -> impl Iterator<Item = &Problem> {
        self.problems
            .iter()
            .filter(|p| p.severity == Severity::Stops)
    }
}

fn stops(text: String) -> Problem {
    Problem {
        severity: Severity::Stops,
        text,
    }
}

fn delays(text: String) -> Problem {
    Problem {
        severity: Severity::Delays,
        text,
    }
}

/// Run every check of `config`.
pub async fn check(config: &Config) -> Report {
    let kafka = &config.kafka;
    let mut report = Report::default();
    report.add(files_dir(&kafka.files_dir));
    report.add(state_dir(&kafka.state_dir));
    // A thread of its own, not the runtime's blocking pool, which a stopping runtime waits
    // for: a stop during the check does not wait out the broker's timeout.
    let (tx, broker) = tokio::sync::oneshot::channel();
    let for_broker = config.clone();
    let spawned = std::thread::Builder::new()
        .name("kafka-check".into())
        .spawn(move || {
            let _ = tx.send(self::broker(&for_broker));
        });
    report.add(manager(&config.management).await);
    match spawned {
        Ok(_) => match broker.await {
            Ok(found) => found.into_iter().for_each(|r| report.add(r)),
            Err(_) => report.add(Err(delays(
                "checking the broker: its thread ended early".into(),
            ))),
        },
        Err(e) => report.add(Err(delays(format!("checking the broker: {e}")))),
    }
    report.add(Ok(trusted_keys(config)));
    report
}

/// Create a file in `dir` and remove it: writing is what is asked of it, and only trying
/// tells (ACLs, a read-only mount, root's privileges). The name is one no publisher may use
/// (`.tmp`), which the guest's maintenance removes should a crash leave it.
fn try_writing(dir: &Path) -> std::io::Result<()> {
    let path = dir.join(format!(".kres-kafka-check-{}.tmp", std::process::id()));
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&path)?;
    match std::fs::remove_file(&path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// The user whose permissions were tried.
fn user() -> String {
    format!("uid {}", crate::system::effective_uid())
}

/// `kafka.files-dir`: a directory this user can write.
fn files_dir(dir: &Path) -> Result<String, Problem> {
    if !dir.is_dir() {
        return Err(stops(format!(
            "kafka.files-dir {} does not exist or is not a directory",
            dir.display()
        )));
    }
    try_writing(dir).map_err(|e| {
        stops(format!(
            "kafka.files-dir {} is not writable by {}: {e}: nothing can be delivered",
            dir.display(),
            user()
        ))
    })?;
    Ok(format!(
        "kafka.files-dir {}: writable by {} (a file created and removed)",
        dir.display(),
        user()
    ))
}

/// `kafka.state-dir`: a directory this user can write, or one it can create (a start does).
fn state_dir(dir: &Path) -> Result<String, Problem> {
    if dir.is_dir() {
        return match try_writing(dir) {
            Ok(()) => Ok(format!(
                "kafka.state-dir {}: writable by {} (a file created and removed)",
                dir.display(),
                user()
            )),
            Err(e) => Err(stops(format!(
                "kafka.state-dir {} is not writable by {}: {e}",
                dir.display(),
                user()
            ))),
        };
    }
    if dir.exists() {
        return Err(stops(format!(
            "kafka.state-dir {} is not a directory",
            dir.display()
        )));
    }
    // Created at start: the nearest directory that exists must take it.
    let parent = dir.ancestors().skip(1).find(|a| a.exists());
    let Some(parent) = parent.filter(|p| p.is_dir()) else {
        return Err(stops(format!(
            "kafka.state-dir {} cannot be created: {} is not a directory",
            dir.display(),
            parent.unwrap_or(dir).display()
        )));
    };
    match try_writing(parent) {
        Ok(()) => Ok(format!(
            "kafka.state-dir {}: does not exist yet; a start creates it in {} (writable by {})",
            dir.display(),
            parent.display(),
            user()
        )),
        Err(e) => Err(stops(format!(
            "kafka.state-dir {} does not exist and cannot be created in {} by {}: {e}",
            dir.display(),
            parent.display(),
            user()
        ))),
    }
}

/// The manager's key and address, as an operator finds them in the resolver's config.
pub fn manager_key(endpoint: &Management) -> String {
    match endpoint {
        Management::UnixSocket(path) => format!("management.unix-socket {}", path.display()),
        Management::Interface { host, port } => format!("management.interface {host}@{port}"),
    }
}

/// The manager answers `GET /v1/config`; its version when `GET /` gives one.
async fn manager(endpoint: &Management) -> Result<String, Problem> {
    let key = manager_key(endpoint);
    let manager = Manager::new(endpoint.clone(), false);
    let answer = tokio::time::timeout(MANAGER_TIMEOUT, manager.running_config())
        .await
        .unwrap_or_else(|_| Err(format!("no answer within {MANAGER_TIMEOUT:?}")));
    match answer {
        Ok(_) => {
            let version = manager_version(endpoint)
                .await
                .map(|v| format!(", version {v}"))
                .unwrap_or_default();
            Ok(format!(
                "{key}: the manager answers GET /v1/config{version}"
            ))
        }
        Err(e) => Err(delays(format!(
            "{key}: the manager does not answer ({e}): files are delivered, the reloads and renews they ask for wait until it does"
        ))),
    }
}

/// The `version` of the manager's `GET /` (Knot Resolver's manager says it there), if any.
/// One plain HTTP/1.0 request: the manager's answer is not needed beyond this field.
async fn manager_version(endpoint: &Management) -> Option<String> {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    async fn ask<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(
        mut stream: S,
    ) -> Option<Vec<u8>> {
        stream
            .write_all(b"GET / HTTP/1.0\r\nHost: localhost\r\nAccept: application/json\r\n\r\n")
            .await
            .ok()?;
        let mut response = Vec::new();
        stream
            .take(64 * 1024)
            .read_to_end(&mut response)
            .await
            .ok()?;
        Some(response)
    }
    let response = tokio::time::timeout(MANAGER_TIMEOUT, async {
        match endpoint {
            Management::UnixSocket(path) => {
                ask(tokio::net::UnixStream::connect(path).await.ok()?).await
            }
            Management::Interface { host, port } => {
                ask(tokio::net::TcpStream::connect((host.as_str(), *port))
                    .await
                    .ok()?)
                .await
            }
        }
    })
    .await
    .ok()??;
    let text = String::from_utf8_lossy(&response);
    let (head, body) = text.split_once("\r\n\r\n")?;
    if head.split_whitespace().nth(1) != Some("200") {
        return None;
    }
    let json: serde_json::Value = serde_json::from_str(body.trim()).ok()?;
    json.get("version")?.as_str().map(str::to_owned)
}

/// The preflight's client context: librdkafka's logs kept out of the daemon's log (the
/// preflight reports what matters), its last error kept to say why the broker did not answer.
#[derive(Clone, Default)]
struct Quiet {
    last_error: Arc<Mutex<Option<String>>>,
}

impl ClientContext for Quiet {
    fn log(&self, _: RDKafkaLogLevel, facility: &str, message: &str) {
        tracing::trace!(target: "librdkafka", facility, "{message}");
    }
    fn error(&self, error: KafkaError, reason: &str) {
        *self.last_error.lock().unwrap_or_else(|e| e.into_inner()) =
            Some(format!("{error}: {reason}"));
    }
}

impl ConsumerContext for Quiet {}

/// The broker answers with these credentials and describes the topic and the status topic.
/// Blocks (up to [`BROKER_TIMEOUT`] per topic).
fn broker(config: &Config) -> Vec<Result<String, Problem>> {
    let kafka = &config.kafka;
    let servers = kafka.bootstrap_servers();
    let context = Quiet::default();
    let client = kafka::consumer_config(kafka, &format!("kres-kafka-{}-check", config.hostname))
        .create_with_context::<_, BaseConsumer<Quiet>>(context.clone());
    let consumer = match client {
        Ok(consumer) => consumer,
        Err(e) => {
            return vec![Err(delays(format!(
                "kafka.server {servers}: making a client: {e}"
            )))];
        }
    };
    let mut found = Vec::new();
    for (key, topic) in [
        ("kafka.topic", Some(kafka.topic.clone())),
        ("kafka.status-topic", kafka.status_topic()),
    ] {
        let Some(topic) = topic else {
            found.push(Ok(format!("{key}: null: no status records")));
            continue;
        };
        let metadata = match consumer.fetch_metadata(Some(&topic), BROKER_TIMEOUT) {
            Ok(metadata) => metadata,
            Err(e) => {
                let why = context
                    .last_error
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .clone()
                    .unwrap_or_else(|| e.to_string());
                found.push(Err(delays(format!(
                    "kafka.server {servers}: the broker did not describe {key} {topic} within {BROKER_TIMEOUT:?} ({why}): nothing is delivered until it does"
                ))));
                // The broker is down or refuses us: the other topic would say the same.
                break;
            }
        };
        let described = metadata.topics().iter().find(|t| t.name() == topic);
        found.push(match described {
            None => Err(delays(format!(
                "{key} {topic}: the broker at {servers} did not describe it"
            ))),
            Some(t) if t.error().is_some() => Err(delays(format!(
                "{key} {topic}: the broker at {servers} says: {}",
                rdkafka::types::RDKafkaErrorCode::from(t.error().expect("checked"))
            ))),
            Some(t) if t.partitions().is_empty() => Err(delays(format!(
                "{key} {topic}: no partitions on the broker at {servers}"
            ))),
            Some(t) => Ok(format!(
                "{key} {topic}: {} partition(s) on the broker at {servers}",
                t.partitions().len()
            )),
        });
    }
    found
}

/// The keys transfers may be signed with.
fn trusted_keys(config: &Config) -> String {
    let trust = &config.kafka.trust;
    let required = if trust.require_signature {
        "every transfer must be signed by one"
    } else {
        "unsigned transfers are accepted (kafka.require-signature is false)"
    };
    format!(
        "kafka.trusted-keys: {} key(s) loaded; {required}",
        trust.keys.len()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_directory_is_writable_only_if_a_file_can_be_made_in_it() {
        let dir = tempfile::tempdir().unwrap();
        let found = files_dir(dir.path()).unwrap();
        assert!(found.contains("writable"), "{found}");
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            0,
            "nothing left"
        );
        let file = dir.path().join("file");
        std::fs::write(&file, "").unwrap();
        let problem = files_dir(&file).unwrap_err();
        assert_eq!(problem.severity, Severity::Stops);
        assert!(problem.text.contains("kafka.files-dir"), "{}", problem.text);
        let missing = dir.path().join("a/b");
        let found = state_dir(&missing).unwrap();
        assert!(found.contains("a start creates it"), "{found}");
        assert!(!missing.exists(), "a check creates nothing");
        let problem = state_dir(&file.join("x")).unwrap_err();
        assert!(problem.text.contains("kafka.state-dir"), "{}", problem.text);
    }
}
