//! `kres-kafka keygen`: a publisher's signing key, and the line resolvers trust it by.

use anyhow::Context as _;
use ed25519_dalek::SigningKey;
use ed25519_dalek::pkcs8::EncodePrivateKey as _;
use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::PathBuf;
use std::process::ExitCode;

/// Arguments of `kres-kafka keygen`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Where to write the private key (PKCS#8 PEM, mode 0600); an existing file is never
    /// overwritten.
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
}

/// Run `kres-kafka keygen`.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed).map_err(|e| anyhow::anyhow!("the system's random source: {e}"))?;
    let key = SigningKey::from_bytes(&seed);
    let pem = key
        .to_pkcs8_pem(ed25519_dalek::pkcs8::spki::der::pem::LineEnding::LF)
        .map_err(|e| anyhow::anyhow!("encoding the key: {e}"))?;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    file.write_all(pem.as_bytes())
        .and_then(|()| file.sync_all())
        .with_context(|| format!("writing {}", args.out.display()))?;
    let public = key.verifying_key();
    eprintln!(
        "wrote the private key to {} (key id {}); give resolvers this line in kafka.trusted-keys:",
        args.out.display(),
        kres_kafka_guest::signature::key_id(public.as_bytes())
    );
    println!("{}", crate::publish::public_key_line(&public));
    Ok(ExitCode::SUCCESS)
}
