//! TLS to the broker: the start-up checks of the certificate files. (The librdkafka options an
//! operator may not use to weaken verification are refused with the configuration, in
//! `config`.)
//!
//! Every problem is found before the first connection, naming the config key, the file and
//! what is wrong with it, so a misconfigured resolver host fails at `systemctl start`, not at
//! the first message. Checks use OpenSSL, the library librdkafka itself uses for TLS.

use crate::config::{ClientCertificate, Tls};
use openssl::asn1::Asn1Time;
use openssl::pkey::{PKey, Private};
use openssl::x509::X509;
use std::path::Path;

/// A problem with the TLS files, naming the key and the file.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("kafka.{key}: cannot read {path}: {reason}")]
    Read {
        key: &'static str,
        path: String,
        reason: String,
    },
    #[error("kafka.{key}: {path} holds no PEM certificate")]
    NoCertificate { key: &'static str, path: String },
    #[error("kafka.{key}: {path} is not a valid PEM certificate: {reason}")]
    BadCertificate {
        key: &'static str,
        path: String,
        reason: String,
    },
    #[error("kafka.key-file: {path} is not a valid PEM private key{hint}: {reason}")]
    BadKey {
        path: String,
        hint: &'static str,
        reason: String,
    },
    #[error("kafka.{key}: the certificate in {path} expired on {not_after}")]
    Expired {
        key: &'static str,
        path: String,
        not_after: String,
    },
    #[error("kafka.{key}: the certificate in {path} is not valid before {not_before}")]
    NotYetValid {
        key: &'static str,
        path: String,
        not_before: String,
    },
    #[error("kafka.key-file: the key in {key_path} does not match the certificate in {cert_path}")]
    Mismatch { key_path: String, cert_path: String },
}

/// Check the files `tls` names; return warnings to log (a key readable by others, hostname
/// verification turned off). Plaintext has nothing to check.
pub fn check_files(tls: &Tls) -> Result<Vec<String>, TlsError> {
    let Tls::Ssl {
        ca_file,
        client,
        verify_hostname,
    } = tls
    else {
        return Ok(Vec::new());
    };
    let mut warnings = Vec::new();
    if !verify_hostname {
        warnings.push(
            "kafka.verify-hostname is false: the broker's certificate is not checked against its name; \
             anyone holding a certificate from the CA can pose as the broker"
                .to_owned(),
        );
    }
    if let Some(ca) = ca_file {
        // A bundle may hold old certificates beside current ones: one valid is enough.
        let validities: Vec<_> = certificates("ca-file", ca)?
            .iter()
            .map(|c| validity("ca-file", ca, c))
            .collect();
        if validities.iter().all(Result::is_err) {
            validities
                .into_iter()
                .next()
                .expect("at least one certificate")?;
        }
    }
    if let Some(ClientCertificate {
        cert_file: cert_path,
        key_file: key_path,
        key_password,
    }) = client
    {
        let cert = certificates("cert-file", cert_path)?.remove(0);
        validity("cert-file", cert_path, &cert)?;
        let key = private_key(key_path, key_password.as_deref())?;
        let public = cert.public_key().map_err(|e| TlsError::BadCertificate {
            key: "cert-file",
            path: cert_path.display().to_string(),
            reason: e.to_string(),
        })?;
        if !public.public_eq(&key) {
            return Err(TlsError::Mismatch {
                key_path: key_path.display().to_string(),
                cert_path: cert_path.display().to_string(),
            });
        }
        if let Some(warning) = key_permissions(key_path) {
            warnings.push(warning);
        }
    }
    Ok(warnings)
}

/// Check the SASL password file: it exists, can be read and is not empty; return a warning
/// when its group or others can read it.
pub fn check_sasl(sasl: Option<&crate::config::Sasl>) -> Result<Vec<String>, TlsError> {
    let Some(sasl) = sasl else {
        return Ok(Vec::new());
    };
    let path = &sasl.password_file;
    let password = sasl.password().map_err(|e| TlsError::Read {
        key: "sasl-password-file",
        path: path.display().to_string(),
        reason: e.to_string(),
    })?;
    if password.is_empty() {
        return Err(TlsError::Read {
            key: "sasl-password-file",
            path: path.display().to_string(),
            reason: "it is empty".into(),
        });
    }
    Ok(key_permissions(path)
        .map(|w| w.replacen("kafka.key-file", "kafka.sasl-password-file", 1))
        .into_iter()
        .collect())
}

fn read(key: &'static str, path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|e| TlsError::Read {
        key,
        path: path.display().to_string(),
        reason: e.to_string(),
    })
}

fn certificates(key: &'static str, path: &Path) -> Result<Vec<X509>, TlsError> {
    let pem = read(key, path)?;
    let shown = path.display().to_string();
    if !pem.windows(27).any(|w| w == b"-----BEGIN CERTIFICATE-----") {
        return Err(TlsError::NoCertificate { key, path: shown });
    }
    let certs = X509::stack_from_pem(&pem).map_err(|e| TlsError::BadCertificate {
        key,
        path: shown.clone(),
        reason: first_error(&e),
    })?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate { key, path: shown });
    }
    Ok(certs)
}

fn validity(key: &'static str, path: &Path, cert: &X509) -> Result<(), TlsError> {
    let now = Asn1Time::days_from_now(0).expect("the current time is representable");
    let path = path.display().to_string();
    if cert.not_after() < now {
        return Err(TlsError::Expired {
            key,
            path,
            not_after: cert.not_after().to_string(),
        });
    }
    if cert.not_before() > now {
        return Err(TlsError::NotYetValid {
            key,
            path,
            not_before: cert.not_before().to_string(),
        });
    }
    Ok(())
}

fn private_key(path: &Path, password: Option<&str>) -> Result<PKey<Private>, TlsError> {
    let pem = read("key-file", path)?;
    let shown = path.display().to_string();
    let encrypted = pem.windows(9).any(|w| w == b"ENCRYPTED");
    let parsed = match password {
        Some(password) => PKey::private_key_from_pem_passphrase(&pem, password.as_bytes()),
        None if encrypted => {
            return Err(TlsError::BadKey {
                path: shown,
                hint: " (it is encrypted: set kafka.key-password)",
                reason: "no password given".into(),
            });
        }
        None => PKey::private_key_from_pem(&pem),
    };
    parsed.map_err(|e| TlsError::BadKey {
        path: shown,
        hint: if encrypted {
            " (wrong kafka.key-password?)"
        } else {
            ""
        },
        reason: first_error(&e),
    })
}

/// A warning when the private key can be read by the file's group or by others.
fn key_permissions(path: &Path) -> Option<String> {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(path).ok()?.permissions().mode();
    (mode & 0o044 != 0).then(|| {
        format!(
            "kafka.key-file: {} is readable by {} (mode {:o}): make it readable by kres-kafka's user only (chmod 600)",
            path.display(),
            if mode & 0o004 != 0 { "everyone" } else { "its group" },
            mode & 0o777
        )
    })
}

fn first_error(e: &openssl::error::ErrorStack) -> String {
    e.errors()
        .first()
        .and_then(|e| e.reason().map(str::to_owned))
        .unwrap_or_else(|| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_ca_file_is_named_with_its_key() {
        let tls = Tls::Ssl {
            ca_file: Some("/nonexistent/ca.pem".into()),
            client: None,
            verify_hostname: true,
        };
        let e = check_files(&tls).unwrap_err().to_string();
        assert!(
            e.contains("kafka.ca-file: cannot read /nonexistent/ca.pem"),
            "{e}"
        );
        assert!(check_files(&Tls::Plaintext).unwrap().is_empty());
    }
}
