//! `kres-kafka apply`: one message from the command line through the guest, the outcome as one
//! JSON object on standard output. Operators use it to inject a file by hand and to try a new
//! guest offline; tests use it to drive the real binary.

use crate::cli::ApplyArgs;
use crate::sandbox::{DEFAULT_GUEST, GuestFailure, Sandbox};
use crate::types::{Action, Context, Message, Outcome, Rejection};
use anyhow::{Context as _, bail};
use serde::Serialize;
use std::io::Read;
use std::process::ExitCode;

/// The JSON line `apply` prints.
#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct Report {
    /// `skipped`, `stored`, `committed`, `unchanged` or `rejected`.
    pub status: &'static str,
    /// The file concerned, when known.
    pub file: Option<String>,
    /// What the resolver's manager would be asked to do.
    pub action: Action,
    /// For `rejected`: the kind of error (`bad-header`, `time-limit`, ...).
    pub kind: Option<String>,
    /// For `skipped` and `rejected`: why.
    pub reason: Option<String>,
    /// For `stored`: chunk index, total and how many are on disk.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub chunk: Option<[u32; 3]>,
    /// For `committed`: size and SHA-256 of the file.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
}

impl Report {
    fn new(status: &'static str, file: Option<String>) -> Self {
        Report {
            status,
            file,
            action: Action::None,
            kind: None,
            reason: None,
            chunk: None,
            size: None,
            sha256: None,
        }
    }

    /// The report for what a call into the guest returned.
    pub fn of(result: Result<Result<Outcome, Rejection>, GuestFailure>) -> Self {
        let rejected = |kind: String, reason: String| Report {
            kind: Some(kind),
            reason: Some(reason),
            ..Report::new("rejected", None)
        };
        match result {
            Ok(Ok(Outcome::Skipped { reason })) => Report {
                reason: Some(reason),
                ..Report::new("skipped", None)
            },
            Ok(Ok(Outcome::Stored {
                file,
                index,
                total,
                received,
            })) => Report {
                chunk: Some([index, total, received]),
                ..Report::new("stored", Some(file))
            },
            Ok(Ok(Outcome::Committed {
                file,
                action,
                size,
                sha256,
            })) => Report {
                action,
                size: Some(size),
                sha256: Some(sha256),
                ..Report::new("committed", Some(file))
            },
            Ok(Ok(Outcome::Unchanged { file })) => Report::new("unchanged", Some(file)),
            Ok(Err(Rejection { kind, reason })) => rejected(kind.as_str().to_owned(), reason),
            Err(failure) => rejected(failure.kind().to_owned(), failure.to_string()),
        }
    }
}

/// Run `kres-kafka apply`.
pub fn run(args: ApplyArgs) -> anyhow::Result<ExitCode> {
    if !args.files_dir.is_dir() {
        bail!(
            "the files directory {} does not exist or is not a directory",
            args.files_dir.display()
        );
    }
    let value = match &args.value_file {
        Some(path) => std::fs::read(path).with_context(|| format!("reading {}", path.display()))?,
        None => {
            let mut value = Vec::new();
            std::io::stdin()
                .read_to_end(&mut value)
                .context("reading the value from standard input")?;
            value
        }
    };
    let hostname = match args.hostname {
        Some(name) => name,
        None => machine_hostname()?,
    };

    let sandbox = Sandbox::new(args.limits.sandbox(args.files_dir.clone()))?;
    let guest = match &args.guest {
        Some(path) => sandbox.load_file(path)?,
        None => sandbox.load(DEFAULT_GUEST, "embedded")?,
    };
    let ctx = Context {
        hostname,
        limits: args.limits.limits(),
        now: unix_now(),
    };
    let msg = Message {
        key: args.key.map(String::into_bytes),
        headers: args
            .headers
            .into_iter()
            .map(|(n, v)| (n, v.into_bytes()))
            .collect(),
        value,
        topic: String::new(),
        partition: -1,
        offset: -1,
    };
    let named = msg
        .headers
        .iter()
        .find(|(n, _)| n == "file-name")
        .map(|(_, v)| String::from_utf8_lossy(v).into_owned());
    let mut report = Report::of(guest.process(&ctx, msg));
    if report.status == "rejected" {
        report.file = named;
    }
    println!("{}", serde_json::to_string(&report)?);
    Ok(if report.status == "rejected" {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

/// The machine's hostname, which Knot Resolver uses when its config sets none.
pub fn machine_hostname() -> anyhow::Result<String> {
    gethostname::gethostname().into_string().map_err(|name| {
        anyhow::anyhow!("the machine's hostname {name:?} is not UTF-8: pass --hostname")
    })
}

/// Seconds since the Unix epoch.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
