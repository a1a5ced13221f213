//! The state topic's record keys (pure).
//!
//! The stream is a log of changes; the state topic (compacted, `<topic>-state` by default)
//! keeps, for each recipient and file, the last thing published: a version of the file (one
//! record per chunk, the same records as on the stream) or its removal. A resolver that starts
//! with nothing reads it first. Compaction keeps the last record of each key, so a key names
//! one recipient, one file and one chunk:
//!
//! ```text
//! host:<hostname>/<file-name>#<chunk-index>     a file sent to one resolver
//! zone:<zone-id>/<file-name>#<chunk-index>      a file sent to a zone
//! host:<hostname>/<file-name>#0                 its removal (`send --remove`)
//! ```
//!
//! In the recipient, `%` is written `%25` and `/` is written `%2F`, so that the first `/`
//! ends it; the file name runs to the last `#`, which only digits follow. The records of one
//! recipient all go to one partition, the one its stream key maps to under Kafka's default
//! partitioner, so that a resolver reads only its own part of the state. A new version with
//! fewer chunks, or a removal, deletes the keys it leaves behind with tombstones (a record with
//! no value).

/// The chunk index a removal is recorded under.
pub const REMOVAL_INDEX: u32 = 0;

/// Who a state record is for: the recipient part of its key.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Recipient {
    Host(String),
    Zone(String),
}

impl Recipient {
    /// The stream key its messages carry (and whose partition its state records go to).
    pub fn stream_key(&self) -> &str {
        match self {
            Recipient::Host(name) | Recipient::Zone(name) => name,
        }
    }
}

/// One state key, parsed.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Key {
    pub recipient: Recipient,
    pub file: String,
    /// 1-based chunk index, or [`REMOVAL_INDEX`] for a removal.
    pub index: u32,
}

impl Key {
    /// The key's bytes.
    pub fn encode(&self) -> String {
        let (kind, name) = match &self.recipient {
            Recipient::Host(name) => ("host", name),
            Recipient::Zone(name) => ("zone", name),
        };
        let name = name.replace('%', "%25").replace('/', "%2F");
        format!("{kind}:{name}/{}#{}", self.file, self.index)
    }

    /// A key's bytes, parsed; `None` for bytes that are not a state key.
    pub fn parse(bytes: &[u8]) -> Option<Key> {
        let text = std::str::from_utf8(bytes).ok()?;
        let (kind, rest) = text.split_once(':')?;
        let (name, rest) = rest.split_once('/')?;
        let (file, index) = rest.rsplit_once('#')?;
        if file.is_empty()
            || index.is_empty()
            || !index.bytes().all(|b| b.is_ascii_digit())
            || (index.len() > 1 && index.starts_with('0'))
        {
            return None;
        }
        let name = decode(name)?;
        let recipient = match kind {
            "host" => Recipient::Host(name),
            "zone" => Recipient::Zone(name),
            _ => return None,
        };
        Some(Key {
            recipient,
            file: file.to_owned(),
            index: index.parse().ok()?,
        })
    }
}

/// `%25` and `%2F` back to `%` and `/`; any other `%` makes the key invalid.
fn decode(name: &str) -> Option<String> {
    let mut out = String::with_capacity(name.len());
    let mut rest = name;
    while let Some(at) = rest.find('%') {
        out.push_str(&rest[..at]);
        match rest.get(at..at + 3) {
            Some("%25") => out.push('%'),
            Some("%2F") => out.push('/'),
            _ => return None,
        }
        rest = &rest[at + 3..];
    }
    out.push_str(rest);
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_reads_back_as_written_whatever_the_names_hold() {
        for (recipient, file, index) in [
            (Recipient::Host("resolver1".into()), "block.rpz", 1),
            (Recipient::Zone("dc/east%1".into()), "zones/a#b.rpz", 12),
            (Recipient::Host("h".into()), "config.json", REMOVAL_INDEX),
        ] {
            let key = Key {
                recipient,
                file: file.into(),
                index,
            };
            let bytes = key.encode();
            assert_eq!(Key::parse(bytes.as_bytes()), Some(key), "{bytes}");
        }
        assert_eq!(
            Key {
                recipient: Recipient::Zone("a/b".into()),
                file: "c/d.rpz".into(),
                index: 3
            }
            .encode(),
            "zone:a%2Fb/c/d.rpz#3"
        );
    }

    #[test]
    fn what_is_not_a_state_key_is_refused() {
        for bad in [
            "resolver1",
            "host:r/x#",
            "host:r/#1",
            "host:r/x#01",
            "host:r/x#1a",
            "peer:r/x#1",
            "host:r%2x/x#1",
            "host:r",
        ] {
            assert_eq!(Key::parse(bad.as_bytes()), None, "{bad}");
        }
    }
}
