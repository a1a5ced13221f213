//! The RPZ judge: whether Knot Resolver 6's policy-loader would load a zone file, decided in
//! the guest, in one streaming pass, before the file is put in place.
//!
//! The loader accepts a file when libzscanner (Knot DNS 3.4) parses all of it without one error
//! and `kr_rule_zonefile` (`lib/rules/zonefile.c`) does not stop it. This module reads the same
//! grammar and replays the one stop: an SOA met after other records whose owner is not the apex.
//! What the loader skips with a warning (class, `rpz-*` owners and targets, NS, DNSSEC types,
//! out-of-zone owners) is counted in the [`Summary`], not refused.
//!
//! It must never accept what the loader refuses. Where matching the loader exactly costs too
//! much, it refuses (each case is documented where it is decided):
//!
//! - `$INCLUDE`, always: the resolver would read another file on its host.
//! - Text-form data of the types zscanner knows but an RPZ has no use for (DS, DNSKEY, RRSIG,
//!   NSEC, NSEC3, SVCB, HTTPS, LOC, ...): [`Reason::UnjudgedType`]. Their `\#` form is accepted.
//! - CNAME and DNAME data in `\#` form ([`Reason::GenericName`]).
//! - A record (or blank line) longer than [`MAX_RECORD`] bytes, and a file ending inside a
//!   record without a newline, which zscanner silently drops.
//! - TTL sums that wrap around 64 bits in zscanner.
//!
//! It must never allocate per record in the common case: names live in fixed buffers, and only
//! the bytes of a record cut by the end of a piece are copied. The commonest lines of a block
//! list (`OWNER CNAME .`, `OWNER CNAME *.`) that only add a record are read in runs without the
//! grammar (`Zone::quick_lines`); a property test holds them to the grammar's verdicts.
//!
//! # Layout
//!
//! - `lexer`: blank space, parentheses, comments, numbers, times, character-strings, hex.
//! - `names`: domain names in wire form, and the loader's comparisons on them.
//! - `rdata`: record types and their data in text and generic form.

mod lexer;
mod names;
mod rdata;

use lexer::{Cursor, Step, Stop};
use names::{Form, Name, starts_name};

/// Longest record or blank line accepted, in bytes, parentheses and comments included. The
/// longest data (65535 bytes as `\DDD` escapes) is about 256 KiB of text; this bounds what the
/// judge keeps between two pieces.
pub const MAX_RECORD: usize = 1 << 20;

/// Bytes appended to a carried record at a time, so that a record cut by a piece boundary is
/// parsed again a bounded number of times, whatever the size of the pieces.
const CARRY_STEP: usize = 64 << 10;

/// Why the loader would refuse a file (or kres-kafka does, stricter).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {reason}")]
pub struct ZoneError {
    /// 1-based line of the error.
    pub line: u64,
    pub reason: Reason,
}

/// What is wrong, named as precisely as the grammar allows.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Reason {
    #[error("$INCLUDE is refused: it would make the resolver read another file on its host")]
    Include,
    #[error(
        "unknown directive \"${0}\" (the resolver's zone loader knows $ORIGIN, $TTL and $INCLUDE)"
    )]
    Directive(String),
    #[error("$ORIGIN needs an absolute name, ending with a dot")]
    RelativeOrigin,
    #[error("unbalanced parenthesis: \"(\" inside parentheses")]
    NestedParenthesis,
    #[error("unbalanced parenthesis: \")\" without \"(\"")]
    UnopenedParenthesis,
    #[error("unbalanced parenthesis: \"(\" not closed before the end of the file")]
    UnclosedParenthesis,
    #[error("the file ends inside a record")]
    EndInsideRecord,
    #[error("CRLF line end: the resolver's zone loader accepts only LF")]
    Crlf,
    #[error("{}", unexpected(*.byte, .where_))]
    Unexpected { byte: u8, where_: &'static str },
    #[error(
        "a line starting with blank space continues the previous record's owner, but there is none yet"
    )]
    NoPreviousOwner,
    #[error("label {label:?} is longer than 63 bytes")]
    LabelTooLong { label: String },
    #[error("domain name longer than 255 bytes")]
    NameTooLong,
    #[error("empty label (two dots in a row) in a domain name")]
    EmptyLabel,
    #[error("{what} is larger than {max}")]
    NumberTooLarge { what: &'static str, max: u64 },
    #[error("{what} does not fit 32 bits")]
    TimeTooLarge { what: &'static str },
    #[error("\\DDD escape larger than 255 in a character-string")]
    EscapeTooLarge,
    #[error("quoted character-string not closed on its line")]
    UnterminatedString,
    #[error("{what} is {len} bytes long: at most 255")]
    StringTooLong { what: &'static str, len: usize },
    #[error("record data longer than 65535 bytes")]
    RdataTooLong,
    #[error("record type {0:?} is not supported by the resolver's zone loader")]
    UnknownType(String),
    #[error("class {0:?} is not supported by the resolver's zone loader (only IN)")]
    Class(String),
    #[error(
        "kres-kafka does not judge record type {0} in text form (write it as \\# generic data, or leave it out: an RPZ has no use for it)"
    )]
    UnjudgedType(String),
    #[error(
        "TYPE{0} has no text form in the resolver's zone loader: write its data as \\# generic data"
    )]
    NoTextForm(u16),
    #[error("kres-kafka refuses {0} data in \\# generic form: write the name")]
    GenericName(String),
    #[error("\\# generic data declares {declared} bytes but has {actual}")]
    GenericLength { declared: usize, actual: usize },
    #[error("{0} record without data")]
    MissingRdata(String),
    #[error("invalid IPv4 address {0:?}")]
    BadIpv4(String),
    #[error("invalid IPv6 address {0:?}")]
    BadIpv6(String),
    #[error("record or blank line longer than {MAX_RECORD} bytes")]
    RecordTooLong,
    #[error(
        "SOA for {owner} after other records, and not at the apex {apex}: the resolver's loader aborts"
    )]
    LateSoa { owner: String, apex: String },
}

/// The length of the line at the start of `rest` if it is one [`Zone::quick_lines`] reads:
/// relative owners only if `relative`, of at most `room` bytes; absolute ones only if
/// `absolute`; `origin_root`: a relative owner's last label is its own.
#[inline]
fn quick_line(
    rest: &[u8],
    relative: bool,
    absolute: bool,
    room: usize,
    origin_root: bool,
) -> Option<usize> {
    let (len, dots) = names::short_run(rest)?;
    // Not empty, not starting with a dot, no two dots in a row.
    if len == 0 || dots & 1 != 0 || dots & (dots >> 1) != 0 {
        return None;
    }
    let is_absolute = dots >> (len - 1) & 1 != 0;
    let own_last = if is_absolute {
        if !absolute {
            return None;
        }
        true
    } else {
        if !relative || len > room {
            return None;
        }
        origin_root
    };
    if own_last {
        let inner = if is_absolute {
            dots & !(1 << (len - 1))
        } else {
            dots
        };
        let start = match inner {
            0 => 0,
            _ => 64 - inner.leading_zeros() as usize,
        };
        if rest[start..len].starts_with(b"rpz-") {
            return None;
        }
    }
    let tail = &rest[len..];
    if tail.starts_with(BLOCK) {
        Some(len + BLOCK.len())
    } else if tail.starts_with(BLOCK_BELOW) {
        Some(len + BLOCK_BELOW.len())
    } else {
        None
    }
}

fn unexpected(byte: u8, where_: &str) -> String {
    let shown = match byte {
        b'\0' => "NUL".to_owned(),
        b'\r' => "CR".to_owned(),
        b'\t' => "tab".to_owned(),
        b'\n' => "newline".to_owned(),
        b' ' => "blank".to_owned(),
        b if b.is_ascii_graphic() => format!("{:?}", b as char),
        b => format!("byte 0x{b:02x}"),
    };
    format!("unexpected {shown} {where_}")
}

/// What the loader would do with an accepted file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    /// Records read (SOA and NS included).
    pub records: u64,
    /// Records the loader skips with a warning: they have no effect.
    pub skipped: u64,
    /// The first of them, for the host to warn with.
    pub first_skipped: Option<Skipped>,
}

/// A record the loader skips, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    pub line: u64,
    pub reason: String,
}

/// Judge a whole file at once.
pub fn judge_rpz(bytes: &[u8]) -> Result<Summary, ZoneError> {
    let mut judge = RpzJudge::new();
    judge.feed(bytes)?;
    judge.finish()
}

/// A file judged piece by piece: [`feed`](Self::feed) any split of it, then
/// [`finish`](Self::finish). Memory stays bounded by [`MAX_RECORD`] plus one step of a piece.
pub struct RpzJudge {
    /// The start of a record the last piece cut.
    carry: Vec<u8>,
    /// Line of the next record.
    line: u64,
    failed: Option<ZoneError>,
    zone: Zone,
    /// Whether [`Zone::quick_lines`] reads what it can (off only to test it against the rest).
    quick: bool,
}

/// What a file has set so far, and what the loader remembers between records.
struct Zone {
    origin: Name,
    owner: Name,
    has_owner: bool,
    /// Scratch for names in record data.
    target: Name,
    /// The first SOA's owner: the apex.
    apex: Option<Box<Name>>,
    /// A record has reached the loader's SOA check.
    seen_record: bool,
    summary: Summary,
}

impl Default for RpzJudge {
    fn default() -> Self {
        Self::new()
    }
}

impl RpzJudge {
    pub fn new() -> Self {
        RpzJudge {
            carry: Vec::new(),
            line: 1,
            failed: None,
            zone: Zone {
                origin: Name::root(),
                owner: Name::root(),
                has_owner: false,
                target: Name::root(),
                apex: None,
                seen_record: false,
                summary: Summary::default(),
            },
            quick: true,
        }
    }

    /// A judge that reads every line token by token, for tests of [`Zone::quick_lines`].
    #[cfg(test)]
    fn without_quick_lines() -> Self {
        RpzJudge {
            quick: false,
            ..Self::new()
        }
    }

    /// Judge the next piece. After an error every call returns it again.
    pub fn feed(&mut self, mut bytes: &[u8]) -> Result<(), ZoneError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        while !self.carry.is_empty() && !bytes.is_empty() {
            let n = bytes.len().min(CARRY_STEP);
            let (step, rest) = bytes.split_at(n);
            self.carry.extend_from_slice(step);
            bytes = rest;
            // A record can only end at a newline.
            if step.contains(&b'\n') {
                let carry = std::mem::take(&mut self.carry);
                let used = self.run(&carry, false);
                self.carry = carry;
                let used = used?;
                self.carry.drain(..used);
            }
            self.check_carry()?;
        }
        if !bytes.is_empty() {
            let used = self.run(bytes, false)?;
            self.carry.extend_from_slice(&bytes[used..]);
            self.check_carry()?;
        }
        Ok(())
    }

    /// The end of the file: judge what is left, as zscanner does, with a newline appended.
    pub fn finish(mut self) -> Result<Summary, ZoneError> {
        if let Some(e) = self.failed {
            return Err(e);
        }
        let mut carry = std::mem::take(&mut self.carry);
        carry.push(b'\n');
        self.run(&carry, true)?;
        Ok(self.zone.summary)
    }

    fn check_carry(&mut self) -> Result<(), ZoneError> {
        if self.carry.len() > MAX_RECORD {
            return Err(self.fail(0, Reason::RecordTooLong));
        }
        Ok(())
    }

    fn fail(&mut self, lines: u64, reason: Reason) -> ZoneError {
        let e = ZoneError {
            line: self.line + lines,
            reason,
        };
        self.failed = Some(e.clone());
        e
    }

    /// Judge the whole records in `buf`; return how many bytes they took.
    fn run(&mut self, buf: &[u8], eof: bool) -> Result<usize, ZoneError> {
        let mut cur = Cursor::new(buf, eof);
        loop {
            if cur.at_end() {
                return Ok(cur.pos);
            }
            if self.quick {
                let (bytes, lines) = self.zone.quick_lines(cur.tail());
                cur.pos += bytes;
                self.line += lines;
                self.zone.summary.records += lines;
            }
            let start = cur.pos;
            cur.lines = 0;
            cur.multiline = false;
            match self.zone.entry(&mut cur, self.line) {
                Ok(()) => self.line += cur.lines,
                Err(Stop::More) => return Ok(start),
                Err(Stop::Bad(reason)) => return Err(self.fail(cur.lines, *reason)),
            }
        }
    }
}

/// The commonest lines of a block list, as [`Zone::quick_lines`] reads them.
const BLOCK: &[u8] = b" CNAME .\n";
const BLOCK_BELOW: &[u8] = b" CNAME *.\n";

impl Zone {
    /// The lines at the start of `bytes` whose only effect is one more record, read without
    /// the grammar, and how many they are: `OWNER CNAME .` and `OWNER CNAME *.` whose owner is
    /// plain characters and dots, shorter than 64 bytes (so no label is too long), without an
    /// empty label, and which the loader takes without a skip (its last label does not start
    /// with `rpz-`, it is within the apex). The owner's end and dots are found sixteen bytes at
    /// a time ([`names::short_run`]); elsewhere than x86-64, nothing is read here.
    ///
    /// The last of them is left to [`Zone::entry`], and so is everything else: what a record
    /// leaves behind (its owner, for a next line that starts with blank space; its target;
    /// that a record was seen) is what the last one leaves, and the grammar sets it.
    fn quick_lines(&self, bytes: &[u8]) -> (usize, u64) {
        // Most lines of other files end here, before the origin and the apex are looked at.
        let shaped = names::short_run(bytes).is_some_and(|(len, _)| {
            let tail = &bytes[len..];
            tail.starts_with(BLOCK) || tail.starts_with(BLOCK_BELOW)
        });
        if !shaped {
            return (0, 0);
        }
        let apex = self.apex.as_deref().unwrap_or(&self.origin);
        // A relative owner ends with the origin: the origin decides its last label, whether
        // it holds a zero byte, and (when the origin is within the apex) that it is within
        // the apex too.
        let relative = !self.origin.has_zero()
            && !self
                .origin
                .last_label()
                .is_some_and(|l| l.starts_with(b"rpz-"))
            && (apex.is_root() || self.origin.in_bailiwick(apex));
        let absolute = apex.is_root();
        if !relative && !absolute {
            return (0, 0);
        }
        // A relative owner's wire form is its text, one byte more, then the origin's.
        let room = (names::MAX_NAME - 1).saturating_sub(self.origin.wire().len());
        let (mut at, mut last, mut lines) = (0, 0, 0);
        while let Some(len) = quick_line(
            &bytes[at..],
            relative,
            absolute,
            room,
            self.origin.is_root(),
        ) {
            last = at;
            at += len;
            lines += 1;
        }
        if lines < 2 { (0, 0) } else { (last, lines - 1) }
    }

    /// One line's worth of the file (more with parentheses): a directive, a blank line or a
    /// record. State changes only once it is whole.
    fn entry(&mut self, cur: &mut Cursor<'_>, line: u64) -> Step<()> {
        match cur.peek()? {
            b'$' => self.directive(cur),
            b'\n' | b';' => cur.rest("in a blank line"),
            b' ' | b'\t' | b'(' | b')' => {
                // zscanner takes blank space at the start of a line as the previous owner even
                // when the line turns out blank, and fails if there is none yet.
                if !self.has_owner {
                    return Err(Reason::NoPreviousOwner.into());
                }
                cur.sep()?;
                if matches!(cur.peek()?, b'\n' | b';') {
                    return cur.rest("in a blank line");
                }
                self.record(cur, line)
            }
            b if starts_name(b) => {
                names::name(cur, &mut self.owner, &self.origin)?;
                self.has_owner = true;
                // The commonest lines of a block list, whole: what `record` would read.
                if cur.line_ends_with(b" CNAME .\n") {
                    self.target.set_root();
                    return self.load(rdata::CNAME, line);
                }
                if cur.line_ends_with(b" CNAME *.\n") {
                    self.target.set_wildcard();
                    return self.load(rdata::CNAME, line);
                }
                cur.need_sep("after the owner name")?;
                self.record(cur, line)
            }
            _ => Err(cur.unexpected("at the start of a line")),
        }
    }

    fn directive(&mut self, cur: &mut Cursor<'_>) -> Step<()> {
        cur.bump();
        let word = cur.word()?;
        let known = ["TTL", "ORIGIN", "INCLUDE"]
            .into_iter()
            .find(|k| k.as_bytes().eq_ignore_ascii_case(word));
        let Some(known) = known else {
            return Err(Reason::Directive(String::from_utf8_lossy(word).into_owned()).into());
        };
        if known == "INCLUDE" {
            return Err(Reason::Include.into());
        }
        cur.pos += word.len();
        cur.need_sep("after the directive")?;
        if known == "TTL" {
            cur.time("the $TTL value")?;
            return cur.rest("after the $TTL value");
        }
        let mut origin = Name::root();
        let root = Name::root();
        if names::name(cur, &mut origin, &root)? != Form::Absolute {
            return Err(Reason::RelativeOrigin.into());
        }
        cur.rest("after the $ORIGIN name")?;
        self.origin = origin;
        Ok(())
    }

    /// A record after its owner and blank space: class and TTL in either order, type, data.
    fn record(&mut self, cur: &mut Cursor<'_>, line: u64) -> Step<()> {
        let (mut class, mut ttl) = (false, false);
        let word = loop {
            let b = cur.peek()?;
            if b.is_ascii_digit() && !ttl {
                cur.time("the TTL")?;
                cur.need_sep("after the TTL")?;
                ttl = true;
                continue;
            }
            let word = cur.word()?;
            if word.eq_ignore_ascii_case(b"IN") && !class {
                cur.pos += 2;
                cur.need_sep("after the class")?;
                class = true;
                continue;
            }
            if word.is_empty() {
                return Err(cur.unexpected("where the record type was expected"));
            }
            break word;
        };
        let rtype = rdata::lookup(word)?;
        cur.pos += word.len();
        let blank = cur.sep()?;
        if !blank && !matches!(cur.peek()?, b'\n' | b';') {
            return Err(cur.unexpected("after the record type"));
        }
        if blank && cur.peek()? == b'\\' && cur.peek_at(1)? == b'#' {
            rdata::generic(cur, rtype)?;
        } else {
            rdata::text(cur, rtype, &self.origin, &mut self.target)?;
        }
        cur.rest("after the record data")?;
        self.load(rtype, line)
    }

    /// What `kr_rule_zonefile` does with a whole record (`process_record`, with `is_rpz`).
    fn load(&mut self, rtype: u16, line: u64) -> Step<()> {
        self.summary.records += 1;
        if self.owner.has_zero() {
            self.skip(line, || "owner holds a zero byte".into());
            return Ok(());
        }
        if let Some(label) = self.owner.last_label()
            && label.starts_with(b"rpz-")
        {
            let label = String::from_utf8_lossy(label).into_owned();
            self.skip(line, || format!("owner in .{label} is not supported"));
            return Ok(());
        }
        let apex = self.apex.as_deref().unwrap_or(&self.origin);
        if rtype == rdata::SOA {
            if self.seen_record && apex.wire() != self.owner.wire() {
                return Err(Reason::LateSoa {
                    owner: self.owner.to_text(),
                    apex: apex.to_text(),
                }
                .into());
            }
            if self.apex.is_none() {
                self.apex = Some(Box::new(self.owner.clone()));
            }
            self.seen_record = true;
            return Ok(());
        }
        self.seen_record = true;
        let at_apex = apex.wire() == self.owner.wire();
        if apex.is_root() {
            // Everything is in the root's zone, and relative to it a name is itself.
        } else if !self.owner.in_bailiwick(apex) {
            let (owner, apex) = (self.owner.to_text(), apex.to_text());
            self.skip(line, || format!("owner {owner} is outside the zone {apex}"));
            return Ok(());
        } else {
            // The loader makes the owner relative to the apex in zscanner's own buffer, so a
            // following line with a blank owner gets the cut name: `@ NS x` then ` SOA ...` is
            // an SOA for `.`, which aborts when the apex is not the root.
            let keep = self.owner.labels().count() - apex.labels().count();
            self.owner.truncate(keep);
        }
        match rtype {
            rdata::DS | rdata::RRSIG | rdata::NSEC | rdata::NSEC3 | rdata::DNSKEY => {
                self.skip(line, || {
                    format!("type {} is not supported", rdata::mnemonic(rtype))
                });
            }
            // libknot's metatypes: SIG, OPT, NXNAME, TKEY, TSIG, IXFR, AXFR, ANY.
            24 | 41 | 128 | 249..=252 | 255 => {
                self.skip(line, || {
                    format!("type {} is not supported", rdata::mnemonic(rtype))
                });
            }
            // The apex NS is skipped silently; others with a warning.
            rdata::NS if at_apex => {}
            rdata::NS => self.skip(line, || "NS records are skipped in an RPZ".into()),
            rdata::CNAME => {
                if let Some(label) = self.target.last_label()
                    && label.starts_with(b"rpz-")
                {
                    let label = String::from_utf8_lossy(label).into_owned();
                    self.skip(line, || format!("CNAME target .{label} is not supported"));
                }
            }
            _ => {}
        }
        Ok(())
    }

    fn skip(&mut self, line: u64, reason: impl FnOnce() -> String) {
        self.summary.skipped += 1;
        if self.summary.first_skipped.is_none() {
            self.summary.first_skipped = Some(Skipped {
                line,
                reason: reason(),
            });
        }
    }
}

#[cfg(test)]
mod tests;
