//! Whom to trust: the publishers' Ed25519 keys (`trusted-keys`, written out or in a file of
//! their own) and whether a transfer must be signed by one (`require-signature`).

use super::ConfigError;
use crate::outcome::Trust;
use serde::Deserialize;
use std::path::PathBuf;

/// `trusted-keys`: the keys themselves, or a file of them.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum TrustedKeys {
    Keys(Vec<String>),
    File(PathBuf),
}

impl Default for TrustedKeys {
    fn default() -> Self {
        TrustedKeys::Keys(Vec::new())
    }
}

/// Parse one trusted key, `ed25519:<base64 of 32 bytes>`.
pub fn parse_public_key(text: &str) -> Result<[u8; 32], String> {
    use base64::Engine as _;
    let encoded = text
        .strip_prefix("ed25519:")
        .ok_or_else(|| format!("{text:?} does not start with \"ed25519:\""))?;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .map_err(|e| format!("{text:?}: not base64 ({e})"))?;
    let key: [u8; 32] = bytes.try_into().map_err(|b: Vec<u8>| {
        format!("{text:?}: {} bytes, an Ed25519 public key has 32", b.len())
    })?;
    ed25519_dalek::VerifyingKey::from_bytes(&key)
        .map_err(|_| format!("{text:?} is not an Ed25519 public key"))?;
    Ok(key)
}

/// The trusted keys (reading the file that holds them, if one is named) and whether a
/// signature is required: by default, when there is a key to check it with.
pub fn resolve(
    trusted_keys: &TrustedKeys,
    require_signature: Option<bool>,
) -> Result<Trust, ConfigError> {
    let invalid = |m: String| Err(ConfigError::Invalid(m));
    let (lines, whence) = match trusted_keys {
        TrustedKeys::Keys(keys) => (keys.clone(), "kafka.trusted-keys".to_owned()),
        TrustedKeys::File(path) => match std::fs::read_to_string(path) {
            Ok(text) => (
                text.lines()
                    .map(str::trim)
                    .filter(|l| !l.is_empty() && !l.starts_with('#'))
                    .map(str::to_owned)
                    .collect(),
                format!("kafka.trusted-keys file {}", path.display()),
            ),
            Err(e) => {
                return invalid(format!(
                    "kafka.trusted-keys: reading {}: {e}",
                    path.display()
                ));
            }
        },
    };
    let mut keys = Vec::new();
    for line in &lines {
        match parse_public_key(line) {
            Ok(key) => keys.push(key),
            Err(why) => return invalid(format!("{whence}: {why}")),
        }
    }
    let require_signature = require_signature.unwrap_or(!keys.is_empty());
    if require_signature && keys.is_empty() {
        return invalid(
            "kafka.require-signature is true but kafka.trusted-keys is empty: no transfer could be accepted".into(),
        );
    }
    Ok(Trust {
        keys,
        require_signature,
    })
}

/// The warning logged at every start while unsigned transfers are accepted.
pub fn warning(trust: &Trust) -> Option<String> {
    (!trust.require_signature).then(|| "kafka.require-signature is off: anyone who can write to the topic controls this resolver's files (see docs/operator-guide.md, \"Signing and key rotation\")".into())
}

#[cfg(test)]
mod tests {
    use crate::config::tests::{error, parse};

    #[test]
    fn trusted_keys_are_checked_and_require_a_signature_by_default() {
        use base64::Engine as _;
        let key = ed25519_dalek::SigningKey::from_bytes(&[3; 32]).verifying_key();
        let line = format!(
            "ed25519:{}",
            base64::engine::general_purpose::STANDARD.encode(key.as_bytes())
        );
        let c = parse(&format!(
            "hostname: r1\nkafka:\n  trusted-keys: [\"{line}\"]\n"
        ))
        .unwrap();
        assert_eq!(c.kafka.trust.keys, [key.to_bytes()]);
        assert!(c.kafka.trust.require_signature);
        assert!(
            !c.kafka
                .warnings
                .iter()
                .any(|w| w.contains("require-signature"))
        );

        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("publishers.keys");
        std::fs::write(&file, format!("# the publisher\n{line}\n\n")).unwrap();
        let c = parse(&format!(
            "hostname: r1\nkafka:\n  trusted-keys: {}\n  require-signature: false\n",
            file.display()
        ))
        .unwrap();
        assert_eq!(c.kafka.trust.keys.len(), 1);
        assert!(!c.kafka.trust.require_signature);

        let c = parse("hostname: r1\n").unwrap();
        assert!(!c.kafka.trust.require_signature);
        assert!(
            c.kafka
                .warnings
                .iter()
                .any(|w| w.contains("anyone who can write to the topic")),
            "{:?}",
            c.kafka.warnings
        );

        for (keys, says) in [
            ("[\"rsa:AAAA\"]", "does not start with \"ed25519:\""),
            (
                "[\"ed25519:AAAA\"]",
                "3 bytes, an Ed25519 public key has 32",
            ),
            ("[\"ed25519:!!\"]", "not base64"),
            ("/nonexistent/keys", "reading /nonexistent/keys"),
        ] {
            let e = error(&format!("hostname: r1\nkafka:\n  trusted-keys: {keys}\n"));
            assert!(
                e.contains("kafka.trusted-keys") && e.contains(says),
                "{keys}: {e}"
            );
        }
        let e = error("hostname: r1\nkafka:\n  require-signature: true\n");
        assert!(e.contains("kafka.trusted-keys is empty"), "{e}");
    }
}
