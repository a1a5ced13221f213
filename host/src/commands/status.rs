//! `kres-kafka status`: what every resolver last reported, read from the status topic from its
//! beginning to its end as of now (no consumer group), one row per resolver and file.

use crate::status::{Reader, Record};
use std::process::ExitCode;

/// Arguments of `kres-kafka status`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub client: super::ClientArgs,

    /// Only this file's rows (the resolvers' own rows are left out).
    #[arg(long, value_name = "NAME")]
    pub file: Option<String>,

    /// Print the latest record per resolver and file as a JSON array.
    #[arg(long)]
    pub json: bool,
}

/// `kres-kafka status`.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let kafka = args.client.settings()?;
    let latest = Reader::new(&kafka)?.latest()?;
    let rows: Vec<&Record> = latest
        .values()
        .filter(|r| args.file.is_none() || r.file == args.file)
        .collect();
    if args.json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(ExitCode::SUCCESS);
    }
    let now = crate::system::unix_now();
    let table: Vec<[String; 6]> = rows
        .iter()
        .map(|r| {
            let mut outcome = r.outcome.as_str().to_owned();
            if let Some(reason) = &r.reason {
                outcome = format!("{outcome}: {reason}");
            }
            [
                r.resolver.clone(),
                r.file.clone().unwrap_or_else(|| "-".into()),
                r.sha256
                    .as_deref()
                    .map_or("-".into(), |s| s.chars().take(12).collect()),
                humantime::format_duration(std::time::Duration::from_secs(
                    now.saturating_sub(r.time),
                ))
                .to_string(),
                r.guest_version.clone().unwrap_or_else(|| "-".into()),
                outcome,
            ]
        })
        .collect();
    let header = ["RESOLVER", "FILE", "SHA256", "AGE", "GUEST", "OUTCOME"].map(str::to_owned);
    let mut widths = header.clone().map(|h| h.len());
    for row in &table {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    for row in std::iter::once(&header).chain(&table) {
        let mut line = String::new();
        for (i, (cell, w)) in row.iter().zip(widths).enumerate() {
            if i + 1 == row.len() {
                line.push_str(cell);
            } else {
                line.push_str(&format!("{cell:w$}  "));
            }
        }
        println!("{line}");
    }
    Ok(ExitCode::SUCCESS)
}
