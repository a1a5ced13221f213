//! Domain names as zscanner reads them (owners, `$ORIGIN`, names in record data), kept in wire
//! form for the comparisons the resolver's loader makes (apex, bailiwick, `rpz-` labels).

use super::Reason;
use super::lexer::{Cursor, Step, is_label, is_plain_name, is_wchar};

/// Longest name in wire form, terminal zero included (RFC 1035; zscanner's `ZS_MAX_DNAME_LENGTH`).
pub(super) const MAX_NAME: usize = 255;
/// Longest label (RFC 1035; zscanner's `ZS_MAX_LABEL_LENGTH`).
pub(super) const MAX_LABEL: usize = 63;

/// A name in wire form in a fixed buffer: no allocation per record.
#[derive(Clone)]
pub(super) struct Name {
    // Room for the longest name plus one label written before its length is checked.
    wire: [u8; MAX_NAME + MAX_LABEL + 1],
    len: usize,
    /// Written with an escape: only then can a label hold a zero byte.
    escaped: bool,
}

impl Name {
    /// The root, `.`.
    pub(super) fn root() -> Self {
        Name {
            wire: [0; MAX_NAME + MAX_LABEL + 1],
            len: 1,
            escaped: false,
        }
    }

    /// Make this the root, `.`.
    pub(super) fn set_root(&mut self) {
        self.wire[0] = 0;
        self.len = 1;
        self.escaped = false;
    }

    /// Make this `*.`.
    pub(super) fn set_wildcard(&mut self) {
        self.wire[..3].copy_from_slice(&[1, b'*', 0]);
        self.len = 3;
        self.escaped = false;
    }

    pub(super) fn wire(&self) -> &[u8] {
        &self.wire[..self.len]
    }

    pub(super) fn set(&mut self, other: &Name) {
        self.wire[..other.len].copy_from_slice(other.wire());
        self.len = other.len;
        self.escaped = other.escaped;
    }

    /// The labels, first to last, without the root.
    pub(super) fn labels(&self) -> Labels<'_> {
        Labels(self.wire())
    }

    /// The last label before the root, if the name is not the root.
    pub(super) fn last_label(&self) -> Option<&[u8]> {
        self.labels().last()
    }

    /// Keep the first `labels` labels, then the root.
    pub(super) fn truncate(&mut self, labels: usize) {
        let mut at = 0;
        for _ in 0..labels {
            at += 1 + self.wire[at] as usize;
        }
        self.wire[at] = 0;
        self.len = at + 1;
    }

    /// A label holds a zero byte (`\000`): the loader skips such owners.
    pub(super) fn has_zero(&self) -> bool {
        // Length bytes are never zero but the last: any other zero is in a label, and only an
        // escape can put it there.
        self.escaped && self.wire()[..self.len - 1].contains(&0)
    }

    pub(super) fn is_root(&self) -> bool {
        self.len == 1
    }

    /// `self` is `apex` or below it, comparing bytes exactly as libknot's
    /// `knot_dname_in_bailiwick` does (case matters).
    pub(super) fn in_bailiwick(&self, apex: &Name) -> bool {
        let (mine, its) = (self.labels().count(), apex.labels().count());
        if mine < its {
            return false;
        }
        let mut tail = self.wire();
        for _ in 0..mine - its {
            tail = &tail[1 + tail[0] as usize..];
        }
        tail == apex.wire()
    }

    /// The name in presentation form, for messages.
    pub(super) fn to_text(&self) -> String {
        let mut out = String::new();
        for label in self.labels() {
            for &b in label {
                if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'*' | b'/') {
                    out.push(b as char);
                } else {
                    out.push_str(&format!("\\{b:03}"));
                }
            }
            out.push('.');
        }
        if out.is_empty() {
            out.push('.');
        }
        out
    }
}

pub(super) struct Labels<'a>(&'a [u8]);

impl<'a> Iterator for Labels<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        let n = *self.0.first()? as usize;
        if n == 0 {
            return None;
        }
        let label = &self.0[1..1 + n];
        self.0 = &self.0[1 + n..];
        Some(label)
    }
}

/// A name may start with this byte (zscanner's `dname` entry).
pub(super) fn starts_name(b: u8) -> bool {
    is_label(b) || matches!(b, b'\\' | b'.' | b'@')
}

/// How a name was written.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Form {
    Absolute,
    Relative,
    /// `@`, the origin.
    Origin,
}

/// Read a name into `out` (zscanner's `dname_`): labels of letters, digits, `*-_/` and escapes
/// (`\X` for any byte X but a digit, `\DDD` taken modulo 256 as zscanner does); absolute with a
/// final dot, else relative to `origin`; or `@`. It must be followed by blank space, a newline,
/// `;` or a parenthesis, which is left in place.
pub(super) fn name(cur: &mut Cursor<'_>, out: &mut Name, origin: &Name) -> Step<Form> {
    match cur.peek()? {
        b'@' => {
            cur.bump();
            cur.need_wchar("after @ in a name")?;
            out.set(origin);
            return Ok(Form::Origin);
        }
        b'.' => {
            cur.bump();
            cur.need_wchar("after the root name \".\"")?;
            out.set_root();
            return Ok(Form::Absolute);
        }
        _ => {}
    }
    if let Some(form) = plain_name(cur, out, origin) {
        return Ok(form);
    }
    bytewise(cur, out, origin)
}

/// [`name`] for a name written the common way: labels of plain characters joined by dots,
/// with or without the final dot, then blank space or a newline. Its bytes are copied at once
/// and each dot becomes the length of the label after it: where [`short_run`] can, the name's
/// end and its dots are found sixteen bytes at a time, else its end byte by byte and its dots
/// eight bytes at a time. `None` for anything else (an escape, an empty or long label, a long
/// name, a name the buffer cuts), with nothing consumed: [`bytewise`] reads those, and says
/// what is wrong.
#[inline]
fn plain_name(cur: &mut Cursor<'_>, out: &mut Name, origin: &Name) -> Option<Form> {
    let rest = cur.tail();
    let (len, short_dots) = match short_run(rest) {
        Some((len, dots)) => (len, Some(dots)),
        None => (rest.iter().position(|&b| !is_plain_name(b))?, None),
    };
    if len == 0 || !is_wchar(rest[len]) {
        return None;
    }
    let text = &rest[..len];
    let absolute = text[len - 1] == b'.';
    // In wire form the text moves one byte right, and the dot before a label is where its
    // length goes; a final dot becomes the root's zero.
    let wire_len = if absolute {
        len + 1
    } else {
        len + 1 + origin.len
    };
    if wire_len > MAX_NAME {
        return None;
    }
    copy_text(&mut out.wire[1..], text, rest);
    let mut at = 0; // where the length of the label being read goes
    match short_dots {
        Some(mut dots) => {
            while dots != 0 {
                let dot = dots.trailing_zeros() as usize;
                dots &= dots - 1;
                end_label(&mut out.wire, &mut at, dot)?;
            }
        }
        None => {
            let mut word_at = 0;
            while word_at < len {
                // Eight bytes of the copy (past its end: whatever the buffer holds, masked off).
                let word = u64::from_le_bytes(out.wire[1 + word_at..9 + word_at].try_into().ok()?);
                let mut dots = dot_bytes(word);
                if len - word_at < 8 {
                    dots &= (1u64 << (8 * (len - word_at))) - 1;
                }
                while dots != 0 {
                    let dot = word_at + (dots.trailing_zeros() / 8) as usize;
                    dots &= dots - 1;
                    end_label(&mut out.wire, &mut at, dot)?;
                }
                word_at += 8;
            }
        }
    }
    if absolute {
        out.wire[len] = 0;
    } else {
        let n = len - at;
        if n > MAX_LABEL {
            return None;
        }
        out.wire[at] = n as u8;
        copy_text(&mut out.wire[len + 1..], origin.wire(), &origin.wire);
    }
    out.len = wire_len;
    out.escaped = !absolute && origin.escaped;
    cur.pos += len;
    Some(if absolute {
        Form::Absolute
    } else {
        Form::Relative
    })
}

/// The label of a name's text from `at` ends at the dot at `dot`: its length goes in place of
/// the dot before it (`at`, in wire form), and the next label starts after this dot. `None`
/// when it is empty or too long.
#[inline]
fn end_label(wire: &mut [u8], at: &mut usize, dot: usize) -> Option<()> {
    let n = dot - *at;
    if n == 0 || n > MAX_LABEL {
        return None;
    }
    wire[*at] = n as u8;
    *at = dot + 1;
    Some(())
}

/// The length of the run of plain name bytes (letters, digits, `*-_/` and dots) at the start
/// of `rest`, and where its dots are (bit `i`: `rest[i]` is one), read sixteen bytes at a
/// time with SSE2; `None` when the run is not over within the first 64 bytes, or `rest` ends
/// before the block that ends it.
#[cfg(target_arch = "x86_64")]
#[inline]
pub(super) fn short_run(rest: &[u8]) -> Option<(usize, u64)> {
    // SAFETY: SSE2 is part of x86-64 itself: every x86-64 processor has it (the compiler
    // assumes it for every x86-64 target), so a function that needs only SSE2 runs anywhere
    // this code does.
    unsafe { sse2::short_run(rest) }
}

#[cfg(target_arch = "x86_64")]
mod sse2 {
    use std::arch::x86_64::{
        __m128i, _mm_add_epi8, _mm_cmpeq_epi8, _mm_cmplt_epi8, _mm_movemask_epi8, _mm_or_si128,
        _mm_set_epi64x, _mm_set1_epi8,
    };

    /// See [`super::short_run`].
    #[target_feature(enable = "sse2")]
    #[inline]
    pub(super) fn short_run(rest: &[u8]) -> Option<(usize, u64)> {
        let mut dots = 0u64;
        for block in 0..4 {
            let bytes = rest.get(16 * block..)?.first_chunk::<16>()?;
            let (low, high) = bytes.split_at(8);
            let v = _mm_set_epi64x(
                i64::from_le_bytes(high.try_into().ok()?),
                i64::from_le_bytes(low.try_into().ok()?),
            );
            let letter = within(_mm_or_si128(v, _mm_set1_epi8(0x20)), b'a', b'z');
            // `-`, `.`, `/` and the digits are one range.
            let dash_to_nine = within(v, b'-', b'9');
            let plain = _mm_or_si128(
                _mm_or_si128(letter, dash_to_nine),
                _mm_or_si128(is(v, b'*'), is(v, b'_')),
            );
            let plain = _mm_movemask_epi8(plain) as u32;
            dots |= u64::from(_mm_movemask_epi8(is(v, b'.')) as u16) << (16 * block);
            let end = !plain & 0xffff;
            if end != 0 {
                let len = 16 * block + end.trailing_zeros() as usize;
                return Some((len, dots & ((1u64 << len) - 1)));
            }
        }
        None
    }

    /// The bytes of `v` from `lo` to `hi`, in one signed comparison: moved so that `lo` is the
    /// least signed byte, the range is what stays below its length.
    #[target_feature(enable = "sse2")]
    #[inline]
    fn within(v: __m128i, lo: u8, hi: u8) -> __m128i {
        let moved = _mm_add_epi8(v, _mm_set1_epi8(0x80u8.wrapping_sub(lo) as i8));
        _mm_cmplt_epi8(moved, _mm_set1_epi8((hi - lo + 1).wrapping_add(0x80) as i8))
    }

    /// The bytes of `v` equal to `b`.
    #[target_feature(enable = "sse2")]
    #[inline]
    fn is(v: __m128i, b: u8) -> __m128i {
        _mm_cmpeq_epi8(v, _mm_set1_epi8(b as i8))
    }
}

/// Elsewhere the name is read byte by byte ([`plain_name`]).
#[cfg(not(target_arch = "x86_64"))]
#[inline]
pub(super) fn short_run(_: &[u8]) -> Option<(usize, u64)> {
    None
}

/// The high bit of each byte of `word` that is a dot, and no other bit.
#[inline]
fn dot_bytes(word: u64) -> u64 {
    const LOW7: u64 = 0x7f7f_7f7f_7f7f_7f7f;
    let x = word ^ 0x2e2e_2e2e_2e2e_2e2e; // a dot becomes zero
    !(((x & LOW7) + LOW7) | x | LOW7)
}

/// Copy `text` (at most [`MAX_NAME`] bytes, the start of `window`) to the start of `to` in
/// fixed 32-byte steps where `window` and `to` have room for them (the bytes past `text`
/// overwritten later or never read), else at its length.
#[inline]
fn copy_text(to: &mut [u8], text: &[u8], window: &[u8]) {
    const STEP: usize = 32;
    let mut at = 0;
    while at < text.len() {
        match (
            window[at..].first_chunk::<STEP>(),
            to[at..].first_chunk_mut::<STEP>(),
        ) {
            (Some(from), Some(to)) => *to = *from,
            _ => {
                to[at..text.len()].copy_from_slice(&text[at..]);
                return;
            }
        }
        at += STEP;
    }
}

/// [`name`] byte by byte: any name zscanner reads, and the exact error for one it refuses.
fn bytewise(cur: &mut Cursor<'_>, out: &mut Name, origin: &Name) -> Step<Form> {
    out.len = 0;
    out.escaped = false;
    loop {
        let at = out.len;
        out.len += 1;
        let start = cur.pos;
        loop {
            // Plain characters in bulk; one past the limit so that the check below sees it.
            let room = MAX_LABEL + 1 - (out.len - at - 1);
            let run = cur.label_run(room);
            if run > 0 {
                let bytes = cur.ahead(run);
                if out.len - at - 1 + run > MAX_LABEL {
                    cur.pos += run;
                    return Err(Reason::LabelTooLong {
                        label: String::from_utf8_lossy(cur.since(start)).into_owned(),
                    }
                    .into());
                }
                copy_run(
                    &mut out.wire[out.len..],
                    bytes,
                    cur.ahead_upto(MAX_LABEL + 1),
                );
                out.len += run;
                cur.pos += run;
            }
            let b = cur.peek()?;
            let byte = if is_label(b) {
                cur.bump();
                b
            } else if b == b'\\' {
                cur.bump();
                out.escaped = true;
                escape(cur)?
            } else {
                break;
            };
            if out.len - at - 1 == MAX_LABEL {
                return Err(Reason::LabelTooLong {
                    label: String::from_utf8_lossy(cur.since(start)).into_owned(),
                }
                .into());
            }
            out.wire[out.len] = byte;
            out.len += 1;
        }
        let n = out.len - at - 1;
        if n == 0 {
            return Err(match cur.peek()? {
                b'.' => Reason::EmptyLabel.into(),
                _ => cur.unexpected("in a domain name"),
            });
        }
        out.wire[at] = n as u8;
        if out.len >= MAX_NAME {
            return Err(Reason::NameTooLong.into());
        }
        match cur.peek()? {
            b'.' => {
                cur.bump();
                if is_wchar(cur.peek()?) {
                    out.wire[out.len] = 0;
                    out.len += 1;
                    return Ok(Form::Absolute);
                }
            }
            b if is_wchar(b) => {
                if out.len + origin.len > MAX_NAME {
                    return Err(Reason::NameTooLong.into());
                }
                out.wire[out.len..out.len + origin.len].copy_from_slice(origin.wire());
                out.len += origin.len;
                out.escaped |= origin.escaped;
                return Ok(Form::Relative);
            }
            _ => return Err(cur.unexpected("in a domain name")),
        }
    }
}

/// Copy `run` (at most [`MAX_LABEL`] + 1 bytes) to the start of `to`. Labels are short, and a
/// copy of a length known only at run time is a call to `memmove`: when the buffer holds a
/// whole label's worth past the run (`window`, which starts with `run`), those are copied at a
/// fixed length instead, the bytes past the run overwritten later or never read.
#[inline]
fn copy_run(to: &mut [u8], run: &[u8], window: &[u8]) {
    const N: usize = MAX_LABEL + 1;
    if let (Ok(window), Some(to)) = (<&[u8; N]>::try_from(window), to.first_chunk_mut::<N>()) {
        *to = *window;
    } else {
        to[..run.len()].copy_from_slice(run);
    }
}

/// After `\` in a name: three digits (their value modulo 256, as zscanner's `uint8_t`
/// arithmetic gives) or any one byte.
fn escape(cur: &mut Cursor<'_>) -> Step<u8> {
    let b = cur.peek()?;
    if !b.is_ascii_digit() {
        cur.bump();
        return Ok(b);
    }
    let mut v = 0u8;
    for _ in 0..3 {
        let d = cur.peek()?;
        if !d.is_ascii_digit() {
            return Err(cur.unexpected("in a \\DDD escape (three digits)"));
        }
        v = v.wrapping_mul(10).wrapping_add(d - b'0');
        cur.bump();
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::zone::lexer::Stop;

    fn parse(s: &str) -> Result<(Vec<u8>, Form), String> {
        let mut origin = Name::root();
        {
            let mut c = Cursor::new(b"example.org. ", true);
            name(&mut c, &mut origin, &Name::root()).unwrap();
        }
        let mut c = Cursor::new(s.as_bytes(), true);
        let mut out = Name::root();
        match name(&mut c, &mut out, &origin) {
            Ok(form) => Ok((out.wire().to_vec(), form)),
            Err(Stop::Bad(r)) => Err(r.to_string()),
            Err(Stop::More) => Err("more".into()),
        }
    }

    #[test]
    fn absolute_relative_and_origin_names_become_wire_form() {
        assert_eq!(
            parse("a.b. ").unwrap(),
            (b"\x01a\x01b\0".to_vec(), Form::Absolute)
        );
        assert_eq!(
            parse("a\n").unwrap(),
            (b"\x01a\x07example\x03org\0".to_vec(), Form::Relative)
        );
        assert_eq!(
            parse("@;").unwrap(),
            (b"\x07example\x03org\0".to_vec(), Form::Origin)
        );
        assert_eq!(parse(". ").unwrap(), (b"\0".to_vec(), Form::Absolute));
        assert_eq!(parse("*.x. ").unwrap().0, b"\x01*\x01x\0".to_vec());
    }

    #[test]
    fn escapes_give_any_byte_and_ddd_wraps_as_in_zscanner() {
        assert_eq!(parse("a\\.b. ").unwrap().0, b"\x03a.b\0".to_vec());
        assert_eq!(parse("\\065. ").unwrap().0, b"\x01A\0".to_vec());
        assert_eq!(parse("\\999. ").unwrap().0, vec![1, 231, 0]);
        assert!(parse("\\06x. ").is_err());
    }

    #[test]
    fn labels_beyond_63_bytes_and_names_beyond_255_are_refused() {
        let ok = format!("{}. ", "a".repeat(63));
        parse(&ok).unwrap();
        let long = format!("{}. ", "a".repeat(64));
        assert!(parse(&long).unwrap_err().contains("63"));
        let name = format!("{}. ", vec!["a".repeat(63); 4].join("."));
        assert!(parse(&name).unwrap_err().contains("255"));
        let fits = format!("{}.{}. ", vec!["a".repeat(63); 3].join("."), "a".repeat(61));
        assert_eq!(parse(&fits).unwrap().0.len(), 255);
        let over = format!("{}.{}. ", vec!["a".repeat(63); 3].join("."), "a".repeat(62));
        assert!(parse(&over).unwrap_err().contains("255"));
        // Relative: the origin (13 bytes) must fit too.
        let rel = format!("{}.{} ", vec!["a".repeat(63); 3].join("."), "a".repeat(50));
        assert!(parse(&rel).unwrap_err().contains("255"));
    }

    #[test]
    fn empty_labels_and_stray_characters_are_refused() {
        assert!(parse("a..b ").unwrap_err().contains("empty label"));
        assert!(parse(".a ").is_err());
        assert!(parse("a\"b ").is_err());
        assert!(parse("a@ ").is_err());
        assert!(parse("@a ").is_err());
        assert!(parse("a\r\n").is_err());
    }

    #[test]
    fn bailiwick_and_rpz_labels_compare_exact_bytes() {
        let n = |s: &str| {
            let mut c = Cursor::new(s.as_bytes(), true);
            let mut out = Name::root();
            name(&mut c, &mut out, &Name::root()).unwrap();
            out
        };
        assert!(n("a.rpz. ").in_bailiwick(&n("rpz. ")));
        assert!(n("rpz. ").in_bailiwick(&n("rpz. ")));
        assert!(!n("a.RPZ. ").in_bailiwick(&n("rpz. ")));
        assert!(!n("rpz. ").in_bailiwick(&n("a.rpz. ")));
        assert!(n("x. ").in_bailiwick(&Name::root()));
        assert_eq!(n("a.rpz-drop. ").last_label(), Some(&b"rpz-drop"[..]));
        assert!(n("a\\000b. ").has_zero());
        assert_eq!(n("a\\000b.c. ").to_text(), "a\\000b.c.");
    }

    /// What [`name`] makes of `text` after `origin`, as (wire form, form, bytes consumed)
    /// or the error; `bulk` false: [`bytewise`] alone.
    fn read(text: &[u8], origin: &Name, bulk: bool) -> Result<(Vec<u8>, Form, usize), String> {
        let mut c = Cursor::new(text, false);
        let mut out = Name::root();
        let got = if bulk {
            name(&mut c, &mut out, origin)
        } else {
            match c.peek() {
                Ok(b'@' | b'.') => name(&mut c, &mut out, origin),
                _ => bytewise(&mut c, &mut out, origin),
            }
        };
        match got {
            Ok(form) => Ok((out.wire().to_vec(), form, c.pos)),
            Err(Stop::Bad(r)) => Err(r.to_string()),
            Err(Stop::More) => Err("more".into()),
        }
    }

    /// Every byte at every place of the first blocks of sixteen: read in bulk as byte by byte.
    #[test]
    fn every_byte_anywhere_in_a_name_is_read_in_bulk_as_byte_by_byte() {
        let origin = Name::root();
        for byte in 0..=255u8 {
            for at in 0..70 {
                let mut text: Vec<u8> = (0..at)
                    .map(|i| if i % 5 == 4 { b'.' } else { b'a' })
                    .collect();
                text.push(byte);
                text.extend_from_slice(
                    b"b.example CNAME .\nwww.example.org. CNAME *.\nx.y.z CNAME .\n",
                );
                assert_eq!(
                    read(&text, &origin, true),
                    read(&text, &origin, false),
                    "{byte:#x} at {at}"
                );
            }
        }
    }

    proptest::proptest! {
        /// The bulk path reads every name exactly as the byte-by-byte one does: the same wire
        /// form, the same bytes consumed, the same error, whatever the labels' lengths, the
        /// escapes, the name's length, the origin's, and where the buffer ends.
        #[test]
        fn names_read_in_bulk_are_read_as_byte_by_byte(
            labels in proptest::collection::vec(
                (
                    proptest::prop_oneof![1usize..4, 60usize..66],
                    proptest::sample::select(b"ab9*-_/".to_vec()),
                ),
                0..6,
            ),
            odd in proptest::option::weighted(
                0.3,
                // Every byte the sixteen-at-a-time classes draw a line at, on both sides.
                (
                    0usize..400,
                    proptest::sample::select(
                        b".\\@\"\x00 )*+,-/09:@AZ[^_`az{\x7f\x80\xaa\xae\xff".to_vec(),
                    ),
                ),
            ),
            dot_after in proptest::collection::vec(proptest::bool::weighted(0.85), 6),
            end in proptest::sample::select(vec![&b" "[..], b"\t", b"\n", b";", b"(", b")", b".", b"..", b". ", b"", b"x\\", b"\r\n"]),
            origin_labels in 0usize..5,
            // What follows the name in the buffer: none (the name cut by the buffer's end,
            // read byte by byte) or enough for blocks of sixteen.
            after in proptest::sample::select(vec![&b""[..], b" CNAME .\n", b"x.example. CNAME .\nexample.org CNAME *.\nwww.example.net. CNAME .\n"]),
        ) {
            let mut text = Vec::new();
            for (i, (len, fill)) in labels.iter().enumerate() {
                text.extend(std::iter::repeat_n(*fill, *len));
                if dot_after[i] && i + 1 < labels.len() {
                    text.push(b'.');
                }
            }
            if let Some((at, byte)) = odd
                && !text.is_empty()
            {
                let at = at % text.len();
                text[at] = byte;
            }
            text.extend_from_slice(end);
            text.extend_from_slice(after);
            let mut origin = Name::root();
            let origin_text = format!("{}. ", vec!["o".repeat(50); origin_labels].join("."));
            if origin_labels > 0 {
                name(&mut Cursor::new(origin_text.as_bytes(), true), &mut origin, &Name::root())
                    .unwrap();
            }
            proptest::prop_assert_eq!(read(&text, &origin, true), read(&text, &origin, false));
        }
    }
}
