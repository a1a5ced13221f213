//! Signed transfers: a resolver accepts only what a publisher key it trusts signed, for it, and
//! never a version older than the one in place.
//!
//! Every message of a signed transfer carries, all alike:
//!
//! - `sha256`: the whole file's digest (checked after assembly, as without a signature);
//! - `signed-at`: when it was signed, decimal milliseconds since the Unix epoch;
//! - `signature`: `ed25519:<key-id>:<base64 of the 64-byte signature>`, `<key-id>` being the
//!   first 16 hex digits of the SHA-256 of the 32-byte public key.
//!
//! The signed bytes are the UTF-8 text [`signed_text`]:
//! `kres-kafka-signature-v1\n<file-name>\n<sha256, lowercase hex>\n<recipient>\n<signed-at>\n`,
//! `<recipient>` being `zone:<key>` for a message addressed by key (zone-id) and
//! `host:<hostname>` for one addressed by the `hostname` header. So a signature covers the
//! content (through the digest), the name, who it is for and when; a file signed for one zone
//! or host does not verify for another, and an older signature cannot replace a newer file
//! (the journal keeps the `signed-at` of each file in place: [`crate::journal::Signed`]).
//!
//! A removal (`send --remove`, header `remove: 1`, no content) signs [`removal_text`]: the same
//! lines with the word `remove` in place of the digest.
//!
//! Each message is verified before anything of it is stored, so a writer without a trusted key
//! cannot even fill the disk with chunks; a batch verifies a given signature once.

use crate::durable::hex;
use crate::error::{Error, Result};
use crate::headers::{Parsed, SIGNATURE, SIGNED_AT, show};
use ed25519_dalek::{Signature, VerifyingKey};
use sha2::{Digest, Sha256};

/// The first line of the signed text: the format's name and version.
pub const DOMAIN: &str = "kres-kafka-signature-v1";

/// Who a message reached this resolver as: the identity a signature must name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recipient {
    /// By key, equal to the resolver's zone-id.
    Zone(String),
    /// By the `hostname` header, equal to the resolver's hostname.
    Host(String),
}

impl std::fmt::Display for Recipient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Recipient::Zone(zone) => write!(f, "zone:{zone}"),
            Recipient::Host(host) => write!(f, "host:{host}"),
        }
    }
}

/// What a verified signature vouches for: the time it was made, and the file's digest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Signed {
    pub at: u64,
    pub sha256: [u8; 32],
}

/// The bytes a publisher signs.
pub fn signed_text(name: &str, sha256: &[u8; 32], recipient: &Recipient, at: u64) -> String {
    format!("{DOMAIN}\n{name}\n{}\n{recipient}\n{at}\n", hex(sha256))
}

/// The bytes a publisher signs to withdraw file `name` from `recipient` (`send --remove`):
/// [`signed_text`] with the word `remove` where the digest was, so that a removal and a
/// transfer never sign the same text, and a removal is as fresh (`at`) as any transfer.
pub fn removal_text(name: &str, recipient: &Recipient, at: u64) -> String {
    format!("{DOMAIN}\n{name}\nremove\n{recipient}\n{at}\n")
}

/// The digest a removal is recorded with in the journal (see [`Signed`]): no content hashes
/// to it that anyone can find.
pub const REMOVED: [u8; 32] = [0; 32];

/// The id a signature names its key by: the first 16 hex digits of its SHA-256.
pub fn key_id(public: &[u8; 32]) -> String {
    hex(&Sha256::digest(public))[..16].to_owned()
}

/// Whether `signature` is `key`'s Ed25519 signature of `message`, verified strictly (RFC 8032,
/// with no small-order key and no malleable signature); a key that is not a point of the curve
/// is not valid.
pub fn verify_ed25519(key: &[u8; 32], message: &[u8], signature: &[u8; 64]) -> bool {
    VerifyingKey::from_bytes(key).is_ok_and(|key| {
        key.verify_strict(message, &Signature::from_bytes(signature))
            .is_ok()
    })
}

/// [`verify_ed25519`] over bytes as they cross the sandbox's boundary: a key that is not 32
/// bytes or a signature that is not 64 is not valid. The host's `verify-ed25519`.
pub fn verify_ed25519_bytes(key: &[u8], message: &[u8], signature: &[u8]) -> bool {
    match (<&[u8; 32]>::try_from(key), <&[u8; 64]>::try_from(signature)) {
        (Ok(key), Ok(signature)) => verify_ed25519(key, message, signature),
        _ => false,
    }
}

/// Ed25519 verification as [`verify_ed25519`] does it: the host's, inside the sandbox.
pub type Verify<'a> = &'a dyn Fn(&[u8; 32], &[u8], &[u8; 64]) -> bool;

/// The keys a resolver trusts, and whether it requires a signature.
pub struct Trust {
    /// Each key's id and bytes (checked to be an Ed25519 public key).
    keys: Vec<(String, [u8; 32])>,
    pub require: bool,
}

impl Trust {
    /// The keys as the host sends them (32 bytes each); one that is not a valid Ed25519
    /// public key is an error naming it.
    pub fn new(keys: &[Vec<u8>], require: bool) -> std::result::Result<Trust, String> {
        let keys =
            keys.iter()
                .map(|bytes| {
                    let public: [u8; 32] = bytes.as_slice().try_into().map_err(|_| {
                        format!("a trusted key is {} bytes long, not 32", bytes.len())
                    })?;
                    VerifyingKey::from_bytes(&public).map_err(|_| {
                        format!("trusted key {} is not an Ed25519 key", key_id(&public))
                    })?;
                    Ok((key_id(&public), public))
                })
                .collect::<std::result::Result<_, String>>()?;
        Ok(Trust { keys, require })
    }

    fn key(&self, id: &str) -> Option<&[u8; 32]> {
        self.keys.iter().find(|(k, _)| k == id).map(|(_, key)| key)
    }
}

/// Check the signature of a message addressed to `recipient`: `Ok(Some)` when a trusted key
/// signed it, `Ok(None)` when it is unsigned and that is allowed. `others` are the identities
/// the message's key and `hostname` header could name, to tell a signature for someone else
/// from a bad one. `verified` remembers the signatures checked in this batch; `verify` checks
/// one ([`verify_ed25519`], natively or through the host).
pub fn check(
    trust: &Trust,
    name: &str,
    parsed: &Parsed<'_>,
    recipient: &Recipient,
    others: &[Recipient],
    verified: &mut Vec<[u8; 64]>,
    verify: Verify<'_>,
) -> Result<Option<Signed>> {
    let (Some(signature), Some(at)) = (parsed.signature, parsed.signed_at) else {
        if parsed.signature.is_some() || parsed.signed_at.is_some() {
            let (given, missing) = if parsed.signature.is_some() {
                (SIGNATURE, SIGNED_AT)
            } else {
                (SIGNED_AT, SIGNATURE)
            };
            return Err(Error::BadHeader(format!(
                "header {given:?} is given without {missing:?}"
            )));
        }
        if trust.require {
            return Err(Error::Unsigned(format!(
                "file {name:?} is not signed (no {SIGNATURE:?} header), and this resolver accepts only signed transfers"
            )));
        }
        return Ok(None);
    };
    let at = millis(at)?;
    let (id, bytes) = parse_signature(signature)?;
    // A removal's signature covers no content; a transfer's covers it through its digest.
    let sha256 = match parsed.sha256 {
        _ if parsed.remove => REMOVED,
        Some(sha256) => sha256,
        None => {
            return Err(Error::Unsigned(format!(
                "file {name:?} is signed but has no \"sha256\" header: the signature covers the file through it"
            )));
        }
    };
    let text_for = |recipient: &Recipient| {
        if parsed.remove {
            removal_text(name, recipient, at)
        } else {
            signed_text(name, &sha256, recipient, at)
        }
    };
    let Some(key) = trust.key(&id) else {
        return Err(Error::UnknownKey(format!(
            "file {name:?} is signed by key {id}, which this resolver does not trust"
        )));
    };
    let signed = Signed { at, sha256 };
    if verified.contains(&bytes) {
        return Ok(Some(signed));
    }
    let text = text_for(recipient);
    if verify(key, text.as_bytes(), &bytes) {
        verified.push(bytes);
        return Ok(Some(signed));
    }
    if let Some(other) = others
        .iter()
        .filter(|o| *o != recipient)
        .find(|o| verify(key, text_for(o).as_bytes(), &bytes))
    {
        return Err(Error::WrongRecipient(format!(
            "file {name:?} is signed for {other}, but reached this resolver as {recipient}"
        )));
    }
    Err(Error::BadSignature(format!(
        "the signature of file {name:?} by key {id} does not verify for its name, sha256, recipient {recipient} and signed-at {at}"
    )))
}

/// Refuse `signed` unless it is newer than `current`, the version in place (or staged
/// earlier in the batch); the same signature again (a redelivery) is not a rollback.
pub fn check_fresh(name: &str, signed: &Signed, current: Option<&Signed>) -> Result<()> {
    match current {
        Some(current)
            if signed.at < current.at
                || (signed.at == current.at && signed.sha256 != current.sha256) =>
        {
            Err(Error::Stale(format!(
                "file {name:?} signed at {} is not newer than the version in place, signed at {}",
                signed.at, current.at
            )))
        }
        _ => Ok(()),
    }
}

/// `ed25519:<key-id>:<base64>`.
fn parse_signature(value: &[u8]) -> Result<(String, [u8; 64])> {
    use base64::Engine as _;
    let bad = |why: &str| {
        Error::BadHeader(format!(
            "header {SIGNATURE:?} is {}: {why} (expected ed25519:<key-id>:<base64 signature>)",
            show(value)
        ))
    };
    let text = std::str::from_utf8(value).map_err(|_| bad("not UTF-8"))?;
    let mut parts = text.splitn(3, ':');
    let (Some(algorithm), Some(id), Some(encoded)) = (parts.next(), parts.next(), parts.next())
    else {
        return Err(bad("not three fields"));
    };
    if algorithm != "ed25519" {
        return Err(bad("only ed25519 is known"));
    }
    if id.len() != 16 || !id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return Err(bad("the key id is not 16 lowercase hex digits"));
    }
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .map_err(|_| bad("the signature is not base64"))?;
    let bytes: [u8; 64] = bytes
        .try_into()
        .map_err(|_| bad("the signature is not 64 bytes"))?;
    Ok((id.to_owned(), bytes))
}

/// `signed-at`: plain ASCII decimal milliseconds.
fn millis(value: &[u8]) -> Result<u64> {
    let bad = || {
        Error::BadHeader(format!(
            "header {SIGNED_AT:?} is {}: expected decimal milliseconds since the Unix epoch",
            show(value)
        ))
    };
    if value.is_empty() || value.len() > 19 || !value.iter().all(u8::is_ascii_digit) {
        return Err(bad());
    }
    std::str::from_utf8(value)
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or_else(bad)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::{Signer, SigningKey};

    fn key(seed: u8) -> SigningKey {
        SigningKey::from_bytes(&[seed; 32])
    }

    fn header(key: &SigningKey, text: &str) -> String {
        use base64::Engine as _;
        let sig = key.sign(text.as_bytes());
        format!(
            "ed25519:{}:{}",
            key_id(key.verifying_key().as_bytes()),
            base64::engine::general_purpose::STANDARD.encode(sig.to_bytes())
        )
    }

    /// What the host's `verify-ed25519` runs ([`verify_ed25519_bytes`]): a signature holds for its key and message only,
    /// strictly (a small-order key verifies nothing), and bytes that are no key verify nothing.
    #[test]
    fn ed25519_verification_is_strict() {
        let signer = key(7);
        let public = signer.verifying_key().to_bytes();
        let message = b"kres-kafka-signature-v1\na.rpz\n";
        let signature = signer.sign(message).to_bytes();
        assert!(verify_ed25519(&public, message, &signature));
        assert!(!verify_ed25519(
            &public,
            b"kres-kafka-signature-v1\nb.rpz\n",
            &signature
        ));
        assert!(!verify_ed25519(
            &key(8).verifying_key().to_bytes(),
            message,
            &signature
        ));
        for byte in [0, 31, 32, 63] {
            let mut damaged = signature;
            damaged[byte] ^= 1;
            assert!(!verify_ed25519(&public, message, &damaged), "byte {byte}");
        }
        // The identity point, of small order: with R the identity and s = 0, a lax check would
        // accept this signature of any message.
        let mut identity = [0u8; 32];
        identity[0] = 1;
        let mut forged = [0u8; 64];
        forged[0] = 1;
        let lax = VerifyingKey::from_bytes(&identity).unwrap();
        assert!(
            ed25519_dalek::Verifier::verify(&lax, message, &Signature::from_bytes(&forged)).is_ok()
        );
        assert!(!verify_ed25519(&identity, message, &forged));
        // Not a point of the curve (y = 2 has no x).
        let mut not_a_point = [0u8; 32];
        not_a_point[0] = 2;
        assert!(VerifyingKey::from_bytes(&not_a_point).is_err());
        assert!(!verify_ed25519(&not_a_point, message, &signature));
        // As the bytes cross the sandbox: only a 32-byte key and a 64-byte signature.
        assert!(verify_ed25519_bytes(&public, message, &signature));
        assert!(!verify_ed25519_bytes(&public[..31], message, &signature));
        assert!(!verify_ed25519_bytes(
            &[public.as_slice(), &[0]].concat(),
            message,
            &signature
        ));
        assert!(!verify_ed25519_bytes(&public, message, &signature[..63]));
        assert!(!verify_ed25519_bytes(
            &public,
            message,
            &[signature.as_slice(), &[0]].concat()
        ));
    }

    fn parsed<'a>(sig: &'a str, at: &'a str, sha: [u8; 32]) -> Parsed<'a> {
        Parsed {
            file_name: "a.rpz",
            chunk: crate::headers::Chunk::WHOLE,
            sha256: Some(sha),
            transfer_id: None,
            signature: Some(sig.as_bytes()),
            signed_at: Some(at.as_bytes()),
            remove: false,
        }
    }

    #[test]
    fn the_signed_text_is_the_documented_one() {
        let text = signed_text(
            "zones/a.rpz",
            &[0xab; 32],
            &Recipient::Zone("z1".into()),
            42,
        );
        assert_eq!(
            text,
            format!(
                "kres-kafka-signature-v1\nzones/a.rpz\n{}\nzone:z1\n42\n",
                "ab".repeat(32)
            )
        );
    }

    #[test]
    fn each_way_a_signature_can_fail_has_its_own_reason() {
        let (good, other) = (key(1), key(2));
        let trust = Trust::new(&[good.verifying_key().to_bytes().to_vec()], true).unwrap();
        let me = Recipient::Host("r1".into());
        let sha = [7; 32];
        let text = signed_text("a.rpz", &sha, &me, 1000);
        let sig = header(&good, &text);
        let ok = check(
            &trust,
            "a.rpz",
            &parsed(&sig, "1000", sha),
            &me,
            &[],
            &mut Vec::new(),
            &verify_ed25519,
        );
        assert_eq!(
            ok.unwrap(),
            Some(Signed {
                at: 1000,
                sha256: sha
            })
        );

        let reason = |r: Result<Option<Signed>>| match r {
            Err(e) => e.kind(),
            Ok(v) => panic!("accepted: {v:?}"),
        };
        let mut unsigned = parsed(&sig, "1000", sha);
        (unsigned.signature, unsigned.signed_at) = (None, None);
        assert_eq!(
            reason(check(
                &trust,
                "a.rpz",
                &unsigned,
                &me,
                &[],
                &mut Vec::new(),
                &verify_ed25519
            )),
            "unsigned"
        );
        let by_other = header(&other, &text);
        assert_eq!(
            reason(check(
                &trust,
                "a.rpz",
                &parsed(&by_other, "1000", sha),
                &me,
                &[],
                &mut Vec::new(),
                &verify_ed25519,
            )),
            "unknown-key"
        );
        // Another file's digest, another time.
        assert_eq!(
            reason(check(
                &trust,
                "a.rpz",
                &parsed(&sig, "1000", [8; 32]),
                &me,
                &[],
                &mut Vec::new(),
                &verify_ed25519,
            )),
            "bad-signature"
        );
        assert_eq!(
            reason(check(
                &trust,
                "a.rpz",
                &parsed(&sig, "1001", sha),
                &me,
                &[],
                &mut Vec::new(),
                &verify_ed25519,
            )),
            "bad-signature"
        );
        // Signed for r2, retargeted at r1.
        let r2 = Recipient::Host("r2".into());
        let for_r2 = header(&good, &signed_text("a.rpz", &sha, &r2, 1000));
        assert_eq!(
            reason(check(
                &trust,
                "a.rpz",
                &parsed(&for_r2, "1000", sha),
                &me,
                &[r2],
                &mut Vec::new(),
                &verify_ed25519,
            )),
            "wrong-recipient"
        );
        for bad in [
            "ed25519:xyz:AAAA",
            "rsa:0123456789abcdef:AAAA",
            "ed25519:0123456789abcdef:!!",
        ] {
            assert_eq!(
                reason(check(
                    &trust,
                    "a.rpz",
                    &parsed(bad, "1000", sha),
                    &me,
                    &[],
                    &mut Vec::new(),
                    &verify_ed25519,
                )),
                "bad-header",
                "{bad}"
            );
        }
        assert_eq!(
            reason(check(
                &trust,
                "a.rpz",
                &parsed(&sig, "-1", sha),
                &me,
                &[],
                &mut Vec::new(),
                &verify_ed25519,
            )),
            "bad-header"
        );
    }

    #[test]
    fn only_a_newer_signature_or_the_same_one_again_replaces_a_file() {
        let now = Signed {
            at: 10,
            sha256: [1; 32],
        };
        assert!(
            check_fresh(
                "a",
                &Signed {
                    at: 11,
                    sha256: [2; 32]
                },
                Some(&now)
            )
            .is_ok()
        );
        assert!(check_fresh("a", &now, Some(&now)).is_ok(), "a redelivery");
        assert!(
            check_fresh(
                "a",
                &Signed {
                    at: 9,
                    sha256: [1; 32]
                },
                Some(&now)
            )
            .is_err()
        );
        assert!(
            check_fresh(
                "a",
                &Signed {
                    at: 10,
                    sha256: [2; 32]
                },
                Some(&now)
            )
            .is_err()
        );
        assert!(check_fresh("a", &now, None).is_ok());
    }

    #[test]
    fn a_removal_signs_the_word_remove_where_a_transfer_signs_its_digest() {
        let to = Recipient::Host("resolver1".into());
        assert_eq!(
            removal_text("rpz/block.rpz", &to, 1_700_000_000_000),
            "kres-kafka-signature-v1\nrpz/block.rpz\nremove\nhost:resolver1\n1700000000000\n"
        );
        let zone = Recipient::Zone("dc1".into());
        assert!(removal_text("a", &zone, 5).contains("\nzone:dc1\n"));
        // No file's digest is the word `remove`: a signed transfer never verifies as a removal.
        assert_ne!(
            removal_text("a", &to, 5),
            signed_text("a", &[0; 32], &to, 5)
        );
    }
}
