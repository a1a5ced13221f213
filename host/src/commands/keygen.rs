//! `kres-kafka keygen`: a publisher's signing key, and the line resolvers trust it by; with
//! `--public`, that line again from any Ed25519 key file.
//!
//! The private key is written as PKCS#8 v1 (RFC 8410's `OneAsymmetricKey` without the public
//! key attached): the form `openssl genpkey` writes, and the only one OpenSSL 3.0's `openssl
//! pkey` and Python's `cryptography` read (both refuse the v2 form with the public key).

use anyhow::Context as _;
use ed25519_dalek::pkcs8::spki::der::pem::LineEnding;
use ed25519_dalek::pkcs8::{DecodePrivateKey as _, DecodePublicKey as _, EncodePrivateKey as _};
use ed25519_dalek::{SigningKey, VerifyingKey};
use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Arguments of `kres-kafka keygen`.
#[derive(Debug, clap::Args)]
#[group(required = true, multiple = false)]
pub struct Args {
    /// Where to write a new private key (PKCS#8 PEM, mode 0600); an existing file is never
    /// overwritten.
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,

    /// Print the `kafka.trusted-keys` line of this Ed25519 key file: a private key (ours, or
    /// `openssl genpkey -algorithm ed25519`'s) or a public key (`openssl pkey -pubout`'s).
    #[arg(long, value_name = "KEYFILE")]
    pub public: Option<PathBuf>,
}

/// Run `kres-kafka keygen`.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    match (args.out, args.public) {
        (Some(out), _) => generate(&out),
        (None, Some(file)) => {
            println!(
                "{}",
                crate::publish::public_key_line(&public_key_of(&file)?)
            );
            Ok(ExitCode::SUCCESS)
        }
        (None, None) => unreachable!("clap requires one"),
    }
}

/// Write a new key to `out` and print its public line.
fn generate(out: &Path) -> anyhow::Result<ExitCode> {
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed).map_err(|e| anyhow::anyhow!("the system's random source: {e}"))?;
    let key = SigningKey::from_bytes(&seed);
    let pem = ed25519_dalek::pkcs8::KeypairBytes {
        secret_key: seed,
        public_key: None,
    }
    .to_pkcs8_pem(LineEnding::LF)
    .map_err(|e| anyhow::anyhow!("encoding the key: {e}"))?;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(out)
        .with_context(|| format!("creating {}", out.display()))?;
    file.write_all(pem.as_bytes())
        .and_then(|()| file.sync_all())
        .with_context(|| format!("writing {}", out.display()))?;
    let public = key.verifying_key();
    eprintln!(
        "wrote the private key to {} (key id {}); give resolvers this line in kafka.trusted-keys:",
        out.display(),
        kres_kafka_guest::signature::key_id(public.as_bytes())
    );
    println!("{}", crate::publish::public_key_line(&public));
    Ok(ExitCode::SUCCESS)
}

/// The public key of the Ed25519 key in the PEM file `path`, private or public.
fn public_key_of(path: &Path) -> anyhow::Result<VerifyingKey> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let refuse = |holds: &str| {
        anyhow::anyhow!(
            "{} holds {holds}; expected an Ed25519 key in PEM (-----BEGIN PRIVATE KEY----- or -----BEGIN PUBLIC KEY-----)",
            path.display()
        )
    };
    let text = std::str::from_utf8(&bytes).map_err(|_| refuse("binary data, not PEM text"))?;
    let label = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("-----BEGIN ")?.strip_suffix("-----"))
        .ok_or_else(|| refuse("no PEM block"))?;
    let block = &text[text.find("-----BEGIN ").unwrap_or(0)..];
    match label {
        "PRIVATE KEY" => SigningKey::from_pkcs8_pem(block)
            .map(|k| k.verifying_key())
            .map_err(|e| {
                refuse(&format!(
                    "a private key that is not Ed25519 ({})",
                    algorithm(block, e)
                ))
            }),
        "PUBLIC KEY" => VerifyingKey::from_public_key_pem(block).map_err(|e| {
            refuse(&format!(
                "a public key that is not Ed25519 ({})",
                algorithm(block, e)
            ))
        }),
        "ENCRYPTED PRIVATE KEY" => Err(refuse(
            "an encrypted private key (its public key: openssl pkey -in FILE -pubout, then --public on that)",
        )),
        other => Err(refuse(&format!("a PEM {other}"))),
    }
}

/// The algorithm of the PKCS#8 or SubjectPublicKeyInfo PEM `block`, by name where known, else
/// why it could not be read.
fn algorithm(block: &str, error: impl std::fmt::Display) -> String {
    use ed25519_dalek::pkcs8::spki::der::{Decode as _, pem};
    use ed25519_dalek::pkcs8::{PrivateKeyInfo, spki::SubjectPublicKeyInfoRef};
    let Ok((_, der)) = pem::decode_vec(block.as_bytes()) else {
        return error.to_string();
    };
    let oid = PrivateKeyInfo::from_der(&der)
        .map(|k| k.algorithm.oid)
        .or_else(|_| SubjectPublicKeyInfoRef::from_der(&der).map(|k| k.algorithm.oid));
    match oid.map(|o| o.to_string()).as_deref() {
        Ok("1.2.840.113549.1.1.1") => "RSA".into(),
        Ok("1.2.840.10045.2.1") => "EC".into(),
        Ok("1.3.101.110") => "X25519".into(),
        Ok("1.3.101.111") => "X448".into(),
        Ok("1.3.101.113") => "Ed448".into(),
        Ok(other) => format!("algorithm {other}"),
        Err(_) => error.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_written_key_is_pkcs8_v1_and_its_public_line_can_be_had_again() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("key.pem");
        generate(&out).unwrap();
        let pem = std::fs::read_to_string(&out).unwrap();
        assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----\n"), "{pem}");
        // v1: version 0, no public key: 48 bytes of DER, 64 characters of base64.
        let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
        assert_eq!(body.len(), 64, "{pem}");
        let key = SigningKey::from_pkcs8_pem(&pem).unwrap();
        assert_eq!(public_key_of(&out).unwrap(), key.verifying_key());
        // Never over an existing file.
        assert!(generate(&out).is_err());
    }

    #[test]
    fn anything_but_an_ed25519_key_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("k");
        for (content, holds) in [
            ("hello\n", "holds no PEM block"),
            (
                "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
                "holds a PEM CERTIFICATE",
            ),
            (
                "-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----\n",
                "holds an encrypted private key",
            ),
            (
                // An X25519 private key, as `openssl genpkey -algorithm x25519` writes it.
                "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VuBCIEIBhVbosjAIe9Dd8qbJBJTmd76ij7k3YoEOJ004+dMhl3\n-----END PRIVATE KEY-----\n",
                "holds a private key that is not Ed25519 (X25519)",
            ),
        ] {
            std::fs::write(&file, content).unwrap();
            let e = public_key_of(&file).unwrap_err().to_string();
            assert!(e.starts_with(&format!("{} {holds}", file.display())), "{e}");
        }
        let e = public_key_of(&dir.path().join("missing")).unwrap_err();
        assert!(format!("{e:#}").contains("reading"), "{e:#}");
    }
}
