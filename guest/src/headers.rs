//! Strict parsing of the wire format's headers (SPEC section 1). Pure: no I/O.
//!
//! Headers are bytes. Integers are plain ASCII decimal: no sign, no spaces, no `_`. A header
//! that is present but malformed rejects the message; unknown headers are ignored so that
//! publishers can add their own.

use crate::error::{Error, Result};

/// The resolver a message is for.
pub const HOSTNAME: &str = "hostname";
/// The file's name inside the files directory.
pub const FILE_NAME: &str = "file-name";
/// Number of chunks of the file.
pub const TOTAL_CHUNKS: &str = "total-chunks";
/// 1-based index of this chunk.
pub const CHUNK_INDEX: &str = "chunk-index";
/// Optional hex SHA-256 of the whole file (kres-kafka extension).
pub const SHA256: &str = "sha256";
/// Optional opaque transfer token (kres-kafka extension).
pub const TRANSFER_ID: &str = "transfer-id";
/// `ed25519:<key-id>:<base64 signature>` (see [`crate::signature`]).
pub const SIGNATURE: &str = "signature";
/// When the transfer was signed: decimal milliseconds since the Unix epoch.
pub const SIGNED_AT: &str = "signed-at";
/// The zone a message is for, where its key cannot say it (a state record's key names the
/// recipient, file and chunk): like a key equal to the zone-id (kres-kafka extension).
pub const ZONE_ID: &str = "zone-id";
/// `1`: the message withdraws file `file-name` from the resolver; its value is empty
/// (kres-kafka extension, `send --remove`).
pub const REMOVE: &str = "remove";

/// Longest `transfer-id` accepted: it is stored in every chunk set's metadata.
pub const MAX_TRANSFER_ID_LEN: usize = 256;

/// Which part of a file a message carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Chunk {
    /// 1-based index, `1..=total`.
    pub index: u32,
    /// Number of chunks, `>= 1`.
    pub total: u32,
}

impl Chunk {
    /// The message carries the whole file.
    pub const WHOLE: Chunk = Chunk { index: 1, total: 1 };

    pub fn is_whole(self) -> bool {
        self.total == 1
    }
}

/// The headers of a message addressed to this resolver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parsed<'a> {
    /// `file-name`, not yet checked as a path (see [`crate::name`]).
    pub file_name: &'a str,
    pub chunk: Chunk,
    /// `sha256`, decoded.
    pub sha256: Option<[u8; 32]>,
    /// `transfer-id`, as sent.
    pub transfer_id: Option<&'a [u8]>,
    /// `signature` and `signed-at`, as sent (see [`crate::signature`]).
    pub signature: Option<&'a [u8]>,
    pub signed_at: Option<&'a [u8]>,
    /// `remove: 1`: the message withdraws the file.
    pub remove: bool,
}

/// Who this resolver is, for addressing.
#[derive(Debug, Clone, Copy)]
pub struct Me<'a> {
    /// Its hostname: a message whose `hostname` header equals it is for it.
    pub hostname: &'a str,
    /// Its zone-id: a message whose key equals it is for it.
    pub zone_id: Option<&'a str>,
}

/// Why a message is not for this resolver, with words naming who it was for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Skip {
    /// Neither a key equal to our zone-id nor a `hostname` header.
    NoRecipient(String),
    /// A `hostname` header naming another resolver.
    OtherHost(String),
    /// A key naming another zone (and no `hostname` header of ours).
    OtherZone(String),
}

impl Skip {
    pub fn detail(&self) -> &str {
        match self {
            Skip::NoRecipient(d) | Skip::OtherHost(d) | Skip::OtherZone(d) => d,
        }
    }
}

/// Decide whether a message is for `me` (SPEC section 2, step 1): its key, or its `zone-id`
/// header (a state record's key names more than the zone), equals our zone-id (its `hostname`
/// header is then the publisher's own and is ignored), or its `hostname` header equals our
/// hostname. `Ok(None)` means it is; `Ok(Some(skip))` means it must be skipped. A
/// message for another resolver is never rejected, whatever else is wrong with it: its
/// problems are its own resolver's to report.
pub fn recipient<'a>(
    key: Option<&[u8]>,
    headers: impl IntoIterator<Item = (&'a str, &'a [u8])>,
    me: Me<'_>,
) -> Result<Option<Skip>> {
    let zone = me.zone_id.map(str::as_bytes);
    if key.is_some() && key == zone {
        return Ok(None);
    }
    let headers: Vec<(&str, &[u8])> = headers.into_iter().collect();
    if let Some(zone) = zone
        && headers.iter().any(|(n, v)| *n == ZONE_ID && *v == zone)
    {
        return Ok(None);
    }
    let mut values = headers
        .iter()
        .filter(|(n, _)| *n == HOSTNAME)
        .map(|(_, v)| *v);
    // A key that is not ours is another zone's only where we have a zone: older publishers
    // key by file name.
    let other_zone = match (key, me.zone_id) {
        (Some(key), Some(zone)) => Some(format!("for zone {} (ours is {zone:?})", show(key))),
        _ => None,
    };
    let Some(first) = values.next() else {
        return Ok(Some(match other_zone {
            Some(zone) => Skip::OtherZone(zone),
            None => Skip::NoRecipient(format!("no {HOSTNAME:?} header")),
        }));
    };
    let mut ours = first == me.hostname.as_bytes();
    let mut count = 1;
    for value in values {
        ours |= value == me.hostname.as_bytes();
        count += 1;
    }
    match (ours, count) {
        (false, _) => Ok(Some(match other_zone {
            Some(zone) => Skip::OtherZone(format!("{zone}, from or for host {}", show(first))),
            None => Skip::OtherHost(format!("for {}", show(first))),
        })),
        (true, 1) => Ok(None),
        (true, n) => Err(Error::BadHeader(format!(
            "header {HOSTNAME:?} given {n} times"
        ))),
    }
}

/// Parse the headers of a message that [`recipient`] found to be ours.
pub fn parse<'a>(headers: impl IntoIterator<Item = (&'a str, &'a [u8])>) -> Result<Parsed<'a>> {
    let mut file_name = None;
    let mut total = None;
    let mut index = None;
    let mut sha256 = None;
    let mut transfer_id = None;
    let mut signature = None;
    let mut signed_at = None;
    let mut remove = None;
    for (name, value) in headers {
        let slot = match name {
            FILE_NAME => &mut file_name,
            TOTAL_CHUNKS => &mut total,
            CHUNK_INDEX => &mut index,
            SHA256 => &mut sha256,
            TRANSFER_ID => &mut transfer_id,
            SIGNATURE => &mut signature,
            SIGNED_AT => &mut signed_at,
            REMOVE => &mut remove,
            _ => continue,
        };
        if slot.replace(value).is_some() {
            return Err(Error::BadHeader(format!(
                "header {name:?} given more than once"
            )));
        }
    }

    let file_name =
        file_name.ok_or_else(|| Error::BadHeader(format!("header {FILE_NAME:?} is missing")))?;
    let file_name = std::str::from_utf8(file_name).map_err(|_| {
        Error::BadHeader(format!(
            "header {FILE_NAME:?} is not UTF-8: {}",
            show(file_name)
        ))
    })?;

    let chunk = match (total, index) {
        (None, None) => Chunk::WHOLE,
        (Some(_), None) => {
            return Err(Error::BadHeader(format!(
                "header {TOTAL_CHUNKS:?} is given without {CHUNK_INDEX:?}"
            )));
        }
        (None, Some(_)) => {
            return Err(Error::BadHeader(format!(
                "header {CHUNK_INDEX:?} is given without {TOTAL_CHUNKS:?}"
            )));
        }
        (Some(total), Some(index)) => {
            let total = decimal(TOTAL_CHUNKS, total)?;
            let index = decimal(CHUNK_INDEX, index)?;
            if total == 0 {
                return Err(Error::BadHeader(format!(
                    "header {TOTAL_CHUNKS:?} is 0: must be >= 1"
                )));
            }
            if index == 0 || index > total {
                return Err(Error::BadHeader(format!(
                    "header {CHUNK_INDEX:?} is {index}: must be within 1..={total} (1-based)"
                )));
            }
            Chunk { index, total }
        }
    };

    let sha256 = sha256.map(|v| hex_digest(SHA256, v)).transpose()?;

    if let Some(id) = transfer_id {
        if id.is_empty() {
            return Err(Error::BadHeader(format!("header {TRANSFER_ID:?} is empty")));
        }
        if id.len() > MAX_TRANSFER_ID_LEN {
            return Err(Error::BadHeader(format!(
                "header {TRANSFER_ID:?} is {} bytes long: at most {MAX_TRANSFER_ID_LEN}",
                id.len()
            )));
        }
    }

    let remove = match remove {
        None => false,
        Some(b"1") if total.is_none() && sha256.is_none() => true,
        Some(b"1") => {
            return Err(Error::BadHeader(format!(
                "header {REMOVE:?} withdraws a file: it comes without {TOTAL_CHUNKS:?}, {CHUNK_INDEX:?} and {SHA256:?}"
            )));
        }
        Some(other) => {
            return Err(Error::BadHeader(format!(
                "header {REMOVE:?} is {}: expected 1",
                show(other)
            )));
        }
    };

    Ok(Parsed {
        file_name,
        chunk,
        sha256,
        transfer_id,
        signature,
        signed_at,
        remove,
    })
}

/// Plain ASCII decimal, at least one digit, fits in `u32`.
fn decimal(name: &str, value: &[u8]) -> Result<u32> {
    if value.is_empty() || !value.iter().all(u8::is_ascii_digit) {
        return Err(Error::BadHeader(format!(
            "header {name:?} is {}: expected plain ASCII decimal digits",
            show(value)
        )));
    }
    value
        .iter()
        .try_fold(0u32, |n, d| {
            n.checked_mul(10)?.checked_add(u32::from(d - b'0'))
        })
        .ok_or_else(|| Error::BadHeader(format!("header {name:?} is {}: too large", show(value))))
}

/// 64 hexadecimal digits, either case.
fn hex_digest(name: &str, value: &[u8]) -> Result<[u8; 32]> {
    let bad = || {
        Error::BadHeader(format!(
            "header {name:?} is {}: expected 64 hexadecimal digits",
            show(value)
        ))
    };
    crate::durable::unhex(value)
        .and_then(|bytes| <[u8; 32]>::try_from(bytes).ok())
        .ok_or_else(bad)
}

/// A header value quoted for a log line, escaped and cut to a readable length.
pub fn show(value: &[u8]) -> String {
    const MAX: usize = 80;
    let cut = &value[..value.len().min(MAX)];
    let ellipsis = if value.len() > MAX { "..." } else { "" };
    format!("\"{}{ellipsis}\"", cut.escape_ascii())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h<'a>(pairs: &'a [(&'a str, &'a str)]) -> Vec<(&'a str, &'a [u8])> {
        pairs.iter().map(|(n, v)| (*n, v.as_bytes())).collect()
    }

    const RES1: Me = Me {
        hostname: "res1",
        zone_id: None,
    };

    fn by_host<'a>(pairs: &'a [(&'a str, &'a str)], me: Me) -> Result<Option<Skip>> {
        recipient(None, h(pairs), me)
    }

    #[test]
    fn missing_or_foreign_hostname_is_skipped_not_rejected() {
        assert!(by_host(&[("file-name", "a")], RES1).unwrap().is_some());
        let skip = by_host(&[("hostname", "res2"), ("chunk-index", "x")], RES1).unwrap();
        assert_eq!(skip, Some(Skip::OtherHost("for \"res2\"".into())));
        assert_eq!(by_host(&[("hostname", "res1")], RES1).unwrap(), None);
    }

    #[test]
    fn a_key_equal_to_our_zone_addresses_us_whatever_the_hostname_header() {
        let me = Me {
            hostname: "res1",
            zone_id: Some("dns-group1"),
        };
        // Upstream's newest publisher: key = zone-id, hostname = its own host.
        let pub_host = h(&[("hostname", "publisher.example"), ("hostname", "x")]);
        assert_eq!(
            recipient(Some(b"dns-group1"), pub_host.clone(), me).unwrap(),
            None
        );
        let other = recipient(Some(b"dns-group2"), pub_host, me).unwrap();
        assert!(matches!(other, Some(Skip::OtherZone(d)) if d.contains("dns-group2")));
        // The hostname header still addresses us, whatever the key (older publishers key by
        // file name).
        assert_eq!(
            recipient(Some(b"block.rpz"), h(&[("hostname", "res1")]), me).unwrap(),
            None
        );
        // Without a zone of our own, a key addresses nobody.
        assert!(matches!(
            recipient(Some(b"dns-group1"), h(&[]), RES1).unwrap(),
            Some(Skip::NoRecipient(_))
        ));
    }

    #[test]
    fn hostname_must_match_exactly() {
        for other in ["RES1", "res1 ", "res1.example", "res"] {
            assert!(
                by_host(&[("hostname", other)], RES1).unwrap().is_some(),
                "{other}"
            );
        }
    }

    #[test]
    fn repeated_hostname_for_us_is_rejected() {
        let err = by_host(&[("hostname", "res1"), ("hostname", "x")], RES1).unwrap_err();
        assert!(matches!(err, Error::BadHeader(m) if m.contains("\"hostname\" given 2 times")));
    }

    #[test]
    fn whole_file_without_chunk_headers_or_with_one_of_one() {
        let p = parse(h(&[("file-name", "a.rpz")])).unwrap();
        assert_eq!(p.chunk, Chunk::WHOLE);
        let p = parse(h(&[
            ("file-name", "a"),
            ("total-chunks", "1"),
            ("chunk-index", "1"),
        ]))
        .unwrap();
        assert!(p.chunk.is_whole());
    }

    #[test]
    fn chunk_numbers_are_one_based_and_within_total() {
        let p = parse(h(&[
            ("file-name", "a"),
            ("total-chunks", "3"),
            ("chunk-index", "3"),
        ]))
        .unwrap();
        assert_eq!(p.chunk, Chunk { index: 3, total: 3 });
    }

    #[test]
    fn malformed_headers_are_rejected_naming_the_header() {
        let cases: &[(&[(&str, &str)], &str)] = &[
            (&[], "\"file-name\" is missing"),
            (
                &[("file-name", "a"), ("file-name", "b")],
                "\"file-name\" given more than once",
            ),
            (
                &[("file-name", "a"), ("total-chunks", "2")],
                "without \"chunk-index\"",
            ),
            (
                &[("file-name", "a"), ("chunk-index", "2")],
                "without \"total-chunks\"",
            ),
            (
                &[
                    ("file-name", "a"),
                    ("total-chunks", "+2"),
                    ("chunk-index", "1"),
                ],
                "\"total-chunks\" is \"+2\"",
            ),
            (
                &[
                    ("file-name", "a"),
                    ("total-chunks", " 2"),
                    ("chunk-index", "1"),
                ],
                "\"total-chunks\" is \" 2\"",
            ),
            (
                &[
                    ("file-name", "a"),
                    ("total-chunks", "1_0"),
                    ("chunk-index", "1"),
                ],
                "\"total-chunks\" is \"1_0\"",
            ),
            (
                &[
                    ("file-name", "a"),
                    ("total-chunks", ""),
                    ("chunk-index", "1"),
                ],
                "\"total-chunks\" is \"\"",
            ),
            (
                &[
                    ("file-name", "a"),
                    ("total-chunks", "99999999999"),
                    ("chunk-index", "1"),
                ],
                "too large",
            ),
            (
                &[
                    ("file-name", "a"),
                    ("total-chunks", "0"),
                    ("chunk-index", "0"),
                ],
                "\"total-chunks\" is 0",
            ),
            (
                &[
                    ("file-name", "a"),
                    ("total-chunks", "3"),
                    ("chunk-index", "0"),
                ],
                "\"chunk-index\" is 0",
            ),
            (
                &[
                    ("file-name", "a"),
                    ("total-chunks", "3"),
                    ("chunk-index", "4"),
                ],
                "\"chunk-index\" is 4",
            ),
            (
                &[
                    ("file-name", "a"),
                    ("chunk-index", "-1"),
                    ("total-chunks", "3"),
                ],
                "\"chunk-index\" is \"-1\"",
            ),
            (
                &[("file-name", "a"), ("sha256", "abc")],
                "\"sha256\" is \"abc\"",
            ),
            (
                &[("file-name", "a"), ("sha256", &"g".repeat(64))],
                "\"sha256\"",
            ),
            (
                &[("file-name", "a"), ("transfer-id", "")],
                "\"transfer-id\" is empty",
            ),
        ];
        for (headers, expected) in cases {
            let err = parse(h(headers)).unwrap_err();
            match err {
                Error::BadHeader(m) => assert!(m.contains(expected), "{m:?} lacks {expected:?}"),
                other => panic!("{headers:?}: unexpected {other:?}"),
            }
        }
    }

    #[test]
    fn non_utf8_file_name_is_rejected() {
        let err = parse([("file-name", &b"a\xff"[..])]).unwrap_err();
        assert!(
            matches!(err, Error::BadHeader(m) if m.contains("not UTF-8") && m.contains("\\xff"))
        );
    }

    #[test]
    fn sha256_accepts_either_case() {
        let lower = "ab".repeat(32);
        let upper = "AB".repeat(32);
        let (lower, upper) = (
            [("file-name", "a"), ("sha256", &*lower)],
            [("file-name", "a"), ("sha256", &*upper)],
        );
        let a = parse(h(&lower)).unwrap();
        let b = parse(h(&upper)).unwrap();
        assert_eq!(a.sha256, Some([0xab; 32]));
        assert_eq!(a.sha256, b.sha256);
    }

    #[test]
    fn unknown_headers_are_ignored() {
        let p = parse(h(&[("x-trace", "1"), ("file-name", "a")])).unwrap();
        assert_eq!(p.file_name, "a");
    }
}
