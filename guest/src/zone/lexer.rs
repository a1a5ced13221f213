//! The bytes of one record, as libzscanner reads them: blank space and parentheses, comments,
//! numbers, TTLs, character-strings and hex. Each function consumes what its token allows and
//! leaves the byte that ends it for the caller, who knows what may follow.
//!
//! A cursor never looks past its buffer: reaching the end of a buffer that is not the end of the
//! file stops with [`Stop::More`], and the driver parses the record again once more bytes came.
//! So nothing here may change state outside the cursor before a record is complete.

use super::Reason;

/// Why parsing of a record stopped early.
#[derive(Debug)]
pub(super) enum Stop {
    /// The buffer ended inside the record: parse it again with more bytes.
    More,
    /// The record is wrong: the loader refuses the file. Boxed: every step returns a `Stop`,
    /// and a small one keeps the common path fast.
    Bad(Box<Reason>),
}

impl From<Reason> for Stop {
    fn from(reason: Reason) -> Self {
        Stop::Bad(Box::new(reason))
    }
}

pub(super) type Step<T> = Result<T, Stop>;

/// The classes of a byte, as bits of [`CLASS`].
const LABEL: u8 = 1; // a label character without escape: alnum and `*-_/`
const WCHAR: u8 = 2; // ends a token: zscanner's `all_wchar`, blank space, newline, `;`, `(`, `)`
const TEXT: u8 = 4; // a character of an unquoted character-string without escape
const QUOTED: u8 = 8; // a character of a quoted character-string without escape
const DIGIT: u8 = 16;
const HEX: u8 = 32;
const PLAIN_NAME: u8 = 64; // a byte of a name written without escapes: a label character or `.`

const fn classes() -> [u8; 256] {
    let mut t = [0u8; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        let mut k = 0;
        if c.is_ascii_alphanumeric() || matches!(c, b'*' | b'-' | b'_' | b'/') {
            k |= LABEL;
        }
        if matches!(c, b' ' | b'\t' | b'\n' | b';' | b'(' | b')') {
            k |= WCHAR;
        }
        if c >= 33 && c <= 126 && !matches!(c, b'\\' | b';' | b'"' | b'(' | b')') {
            k |= TEXT;
        }
        if (c >= 32 && c <= 126 && !matches!(c, b'\\' | b'"')) || c == b'\t' {
            k |= QUOTED;
        }
        if c.is_ascii_digit() {
            k |= DIGIT;
        }
        if c.is_ascii_hexdigit() {
            k |= HEX;
        }
        if k & LABEL != 0 || c == b'.' {
            k |= PLAIN_NAME;
        }
        t[b] = k;
        b += 1;
    }
    t
}

static CLASS: [u8; 256] = classes();

#[inline]
pub(super) fn is_label(b: u8) -> bool {
    CLASS[b as usize] & LABEL != 0
}

#[inline]
pub(super) fn is_plain_name(b: u8) -> bool {
    CLASS[b as usize] & PLAIN_NAME != 0
}

#[inline]
pub(super) fn is_wchar(b: u8) -> bool {
    CLASS[b as usize] & WCHAR != 0
}

#[inline]
fn is_digit(b: u8) -> bool {
    CLASS[b as usize] & DIGIT != 0
}

#[inline]
fn is_hex(b: u8) -> bool {
    CLASS[b as usize] & HEX != 0
}

/// Reading position in the bytes of one or more records.
pub(super) struct Cursor<'a> {
    buf: &'a [u8],
    pub(super) pos: usize,
    /// The buffer ends the file (the driver appended the newline zscanner appends).
    eof: bool,
    /// Inside parentheses: newlines and comments are blank space.
    pub(super) multiline: bool,
    /// Newlines consumed since the record began (error lines, the driver's line count).
    pub(super) lines: u64,
}

impl<'a> Cursor<'a> {
    pub(super) fn new(buf: &'a [u8], eof: bool) -> Self {
        Cursor {
            buf,
            pos: 0,
            eof,
            multiline: false,
            lines: 0,
        }
    }

    pub(super) fn at_end(&self) -> bool {
        self.pos >= self.buf.len()
    }

    /// Why the buffer's end stops this record.
    #[cold]
    fn end(&self) -> Stop {
        if !self.eof {
            Stop::More
        } else if self.multiline {
            Reason::UnclosedParenthesis.into()
        } else {
            Reason::EndInsideRecord.into()
        }
    }

    #[inline]
    pub(super) fn peek(&self) -> Step<u8> {
        match self.buf.get(self.pos) {
            Some(&b) => Ok(b),
            None => Err(self.end()),
        }
    }

    #[inline]
    pub(super) fn peek_at(&self, ahead: usize) -> Step<u8> {
        match self.buf.get(self.pos + ahead) {
            Some(&b) => Ok(b),
            None => Err(self.end()),
        }
    }

    #[inline]
    pub(super) fn bump(&mut self) {
        self.pos += 1;
    }

    /// The byte at the cursor is wrong `where_`: say which byte it is.
    #[cold]
    pub(super) fn unexpected(&self, where_: &'static str) -> Stop {
        match self.buf.get(self.pos) {
            None => self.end(),
            Some(b'\r') if self.buf.get(self.pos + 1) == Some(&b'\n') => Reason::Crlf.into(),
            Some(&byte) => Reason::Unexpected { byte, where_ }.into(),
        }
    }

    /// Blank space (zscanner's `sep`): blanks and parentheses, and inside parentheses also
    /// comments and newlines. True if any was consumed.
    pub(super) fn sep(&mut self) -> Step<bool> {
        let start = self.pos;
        // Blanks, then a byte that ends blank space here: the common case, without the
        // byte-by-byte dispatch below.
        // (Tests, not a `match`: a jump table on the byte mispredicts at every token.)
        let mut b = self.peek()?;
        while b == b' ' || b == b'\t' {
            self.pos += 1;
            b = self.peek()?;
        }
        if !is_wchar(b) || (!self.multiline && (b == b'\n' || b == b';')) {
            return Ok(self.pos > start);
        }
        loop {
            match self.peek()? {
                b' ' | b'\t' => self.pos += 1,
                b'(' => {
                    if self.multiline {
                        return Err(Reason::NestedParenthesis.into());
                    }
                    self.multiline = true;
                    self.pos += 1;
                }
                b')' => {
                    if !self.multiline {
                        return Err(Reason::UnopenedParenthesis.into());
                    }
                    self.multiline = false;
                    self.pos += 1;
                }
                b'\n' if self.multiline => self.newline(),
                b';' if self.multiline => {
                    self.comment()?;
                    self.newline();
                }
                _ => return Ok(self.pos > start),
            }
        }
    }

    /// Blank space that must be there, `after` something named.
    pub(super) fn need_sep(&mut self, after: &'static str) -> Step<()> {
        if self.sep()? {
            Ok(())
        } else {
            Err(self.unexpected(after))
        }
    }

    /// Consume a newline the caller has seen.
    fn newline(&mut self) {
        self.pos += 1;
        self.lines += 1;
    }

    /// From `;` to the newline, which is left in place. Any byte but a newline may be in a
    /// comment, NUL and CR included.
    pub(super) fn comment(&mut self) -> Step<()> {
        match self.buf[self.pos..].iter().position(|&b| b == b'\n') {
            Some(n) => {
                self.pos += n;
                Ok(())
            }
            None => {
                self.pos = self.buf.len();
                Err(self.end())
            }
        }
    }

    /// What ends a record or a blank line (zscanner's `rest . newline`): blank space, a comment,
    /// the newline outside parentheses.
    pub(super) fn rest(&mut self, where_: &'static str) -> Step<()> {
        self.sep()?;
        if self.peek()? == b';' {
            self.comment()?;
        }
        if self.peek()? == b'\n' {
            self.newline();
            Ok(())
        } else {
            Err(self.unexpected(where_))
        }
    }

    /// A run of ASCII letters and digits (a type, a class, a directive), not consumed.
    pub(super) fn word(&self) -> Step<&'a [u8]> {
        let rest = &self.buf[self.pos..];
        match rest.iter().position(|b| !b.is_ascii_alphanumeric()) {
            Some(n) => Ok(&rest[..n]),
            None => Err(self.end()),
        }
    }

    /// A decimal number that fits 64 bits (zscanner's `number`).
    pub(super) fn number(&mut self, what: &'static str) -> Step<u64> {
        if !is_digit(self.peek()?) {
            return Err(self.unexpected(what));
        }
        let mut n: u64 = 0;
        while let b @ b'0'..=b'9' = self.peek()? {
            n = n
                .checked_mul(10)
                .and_then(|n| n.checked_add(u64::from(b - b'0')))
                .ok_or(Reason::NumberTooLarge {
                    what,
                    max: u64::MAX,
                })?;
            self.pos += 1;
        }
        Ok(n)
    }

    /// A number of at most `max` (zscanner's `num8`, `num16`, `num32`).
    pub(super) fn uint(&mut self, what: &'static str, max: u64) -> Step<u64> {
        let n = self.number(what)?;
        if n > max {
            return Err(Reason::NumberTooLarge { what, max }.into());
        }
        Ok(n)
    }

    /// A time in seconds, plain (`3600`) or in units (`1h30m`, `2W`), as zscanner's `time`
    /// computes it, with its overflow rules: each unit's multiplication must fit 32 bits, and
    /// every sum after the first block must stay below 2^32 - 1.
    ///
    /// Stricter than zscanner in one corner: its 64-bit sum may wrap around
    /// (`18446744073709551615s1s` is 0 there); here any 64-bit overflow is refused.
    pub(super) fn time(&mut self, what: &'static str) -> Step<u32> {
        let mut n = self.number(what)?;
        if unit(self.peek()?).is_some() {
            n = self.apply_unit(n, what)?;
            while is_digit(self.peek()?) {
                let sum = n;
                let block = self.number(what)?;
                if unit(self.peek()?).is_none() {
                    return Err(self.unexpected("after a number in a time with units"));
                }
                let block = self.apply_unit(block, what)?;
                n = match block.checked_add(sum) {
                    Some(total) if total < u64::from(u32::MAX) => total,
                    _ => return Err(Reason::TimeTooLarge { what }.into()),
                };
            }
        }
        u32::try_from(n).map_err(|_| Reason::TimeTooLarge { what }.into())
    }

    fn apply_unit(&mut self, n: u64, what: &'static str) -> Step<u64> {
        let seconds = unit(self.peek()?).unwrap_or(1);
        self.pos += 1;
        if seconds == 1 {
            return Ok(n); // zscanner checks no bound for `s`
        }
        if n > u64::from(u32::MAX) / seconds {
            return Err(Reason::TimeTooLarge { what }.into());
        }
        Ok(n * seconds)
    }

    /// A character-string (zscanner's `text`), quoted or not; returns its length in bytes.
    /// It must be followed by blank space, a newline, `;` or a parenthesis.
    pub(super) fn text(&mut self, what: &'static str) -> Step<usize> {
        let first = self.peek()?;
        if is_wchar(first) {
            return Err(self.unexpected(what));
        }
        let mut len = 0;
        if first == b'"' {
            self.pos += 1;
            loop {
                let b = self.peek()?;
                if CLASS[b as usize] & QUOTED != 0 {
                    self.pos += 1;
                } else if b == b'"' {
                    self.pos += 1;
                    break;
                } else if b == b'\\' {
                    self.pos += 1;
                    self.text_escape()?;
                } else if b == b'\n' && self.multiline {
                    self.newline();
                } else if b == b'\n' {
                    return Err(Reason::UnterminatedString.into());
                } else {
                    return Err(self.unexpected("in a quoted character-string"));
                }
                len += 1;
            }
        } else {
            loop {
                let b = self.peek()?;
                if CLASS[b as usize] & TEXT != 0 {
                    self.pos += 1;
                } else if b == b'\\' {
                    self.pos += 1;
                    self.text_escape()?;
                } else {
                    break;
                }
                len += 1;
            }
        }
        if !is_wchar(self.peek()?) {
            return Err(self.unexpected("after a character-string"));
        }
        Ok(len)
    }

    /// After `\` in a character-string: `\DDD` (at most 255) or a printable character.
    fn text_escape(&mut self) -> Step<()> {
        let b = self.peek()?;
        if is_digit(b) {
            let mut v = 0u32;
            for _ in 0..3 {
                let d = self.peek()?;
                if !is_digit(d) {
                    return Err(self.unexpected("in a \\DDD escape (three digits)"));
                }
                v = v * 10 + u32::from(d - b'0');
                if v > 255 {
                    return Err(Reason::EscapeTooLarge.into());
                }
                self.pos += 1;
            }
            Ok(())
        } else if (32..=126).contains(&b) {
            self.pos += 1;
            Ok(())
        } else {
            Err(self.unexpected("after \\ in a character-string"))
        }
    }

    /// Hex digits in pairs, blank space allowed between pairs (zscanner's `hex_array`); returns
    /// the number of bytes.
    pub(super) fn hex(&mut self) -> Step<usize> {
        let mut n = 0;
        loop {
            if !is_hex(self.peek()?) {
                if n == 0 {
                    return Err(self.unexpected("where hex data was expected"));
                }
                return Ok(n);
            }
            while is_hex(self.peek()?) {
                if !is_hex(self.peek_at(1)?) {
                    self.pos += 1;
                    return Err(self.unexpected("in hex data (digits come in pairs)"));
                }
                self.pos += 2;
                n += 1;
            }
            if !self.sep()? {
                return Ok(n);
            }
        }
    }

    /// The end of data that runs to the end of the line (zscanner's `end_wchar`): a newline or
    /// a comment, outside parentheses.
    pub(super) fn need_line_end(&self, where_: &'static str) -> Step<()> {
        match self.peek()? {
            b'\n' | b';' if !self.multiline => Ok(()),
            _ => Err(self.unexpected(where_)),
        }
    }

    /// A token must end here (zscanner's `all_wchar`).
    pub(super) fn need_wchar(&self, where_: &'static str) -> Step<()> {
        if is_wchar(self.peek()?) {
            Ok(())
        } else {
            Err(self.unexpected(where_))
        }
    }

    /// How many bytes from the cursor on are plain label characters (no escape), up to
    /// `limit`; reaching the buffer's end counts as a stop too (the caller peeks next).
    #[inline]
    pub(super) fn label_run(&self, limit: usize) -> usize {
        let rest = &self.buf[self.pos.min(self.buf.len())..];
        let rest = &rest[..rest.len().min(limit)];
        rest.iter()
            .position(|&b| !is_label(b))
            .unwrap_or(rest.len())
    }

    /// If the bytes at the cursor are `rest` (the rest of a line, its newline last), consume
    /// them; else consume nothing. For lines written the common way, read at once.
    #[inline]
    pub(super) fn line_ends_with(&mut self, rest: &[u8]) -> bool {
        debug_assert_eq!(rest.last(), Some(&b'\n'));
        if !self.multiline && self.tail().starts_with(rest) {
            self.pos += rest.len();
            self.lines += 1;
            true
        } else {
            false
        }
    }

    /// The bytes from the cursor to the buffer's end, not consumed.
    #[inline]
    pub(super) fn tail(&self) -> &'a [u8] {
        &self.buf[self.pos.min(self.buf.len())..]
    }

    /// The next `n` bytes, not consumed.
    pub(super) fn ahead(&self, n: usize) -> &'a [u8] {
        &self.buf[self.pos..self.pos + n]
    }

    /// The next `n` bytes, or fewer at the buffer's end, not consumed.
    #[inline]
    pub(super) fn ahead_upto(&self, n: usize) -> &'a [u8] {
        let rest = &self.buf[self.pos.min(self.buf.len())..];
        &rest[..rest.len().min(n)]
    }

    /// The bytes from `start` to the cursor.
    pub(super) fn since(&self, start: usize) -> &'a [u8] {
        &self.buf[start..self.pos]
    }
}

/// Seconds in a time unit letter, if it is one.
fn unit(b: u8) -> Option<u64> {
    match b.to_ascii_lowercase() {
        b's' => Some(1),
        b'm' => Some(60),
        b'h' => Some(3600),
        b'd' => Some(86400),
        b'w' => Some(604_800),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cur(s: &str) -> Cursor<'_> {
        Cursor::new(s.as_bytes(), true)
    }

    fn time(s: &str) -> Result<u32, String> {
        let mut c = cur(s);
        c.time("TTL").map_err(|e| format!("{e:?}"))
    }

    #[test]
    fn times_in_units_add_up() {
        assert_eq!(time("3600\n"), Ok(3600));
        assert_eq!(time("1h30m\n"), Ok(5400));
        assert_eq!(time("2W\n"), Ok(1_209_600));
        assert_eq!(time("1d1s\n"), Ok(86401));
        assert_eq!(time("4294967295\n"), Ok(u32::MAX));
    }

    #[test]
    fn times_beyond_32_bits_are_refused() {
        assert!(time("4294967296\n").is_err());
        assert!(time("4294967296s\n").is_err());
        assert!(time("71582789m\n").is_err());
        assert_eq!(time("71582788m\n"), Ok(4_294_967_280));
        // zscanner's block sum must stay strictly below 2^32 - 1.
        assert!(time("4294967294s1s\n").is_err());
        assert!(time("18446744073709551615s1s\n").is_err());
        assert!(time("99999999999999999999\n").is_err());
    }

    #[test]
    fn a_time_block_after_a_unit_needs_its_own_unit() {
        let mut c = cur("1h30 ");
        assert!(c.time("TTL").is_err());
    }

    #[test]
    fn blank_space_tracks_parentheses_and_comments_inside_them() {
        let mut c = cur(" ( ; note\n\t) x");
        assert!(c.sep().unwrap());
        assert!(!c.multiline);
        assert_eq!(c.lines, 1);
        assert_eq!(c.peek().unwrap(), b'x');
        assert!(matches!(
            cur("((").sep(),
            Err(Stop::Bad(r)) if *r == Reason::NestedParenthesis
        ));
        assert!(matches!(
            cur(")").sep(),
            Err(Stop::Bad(r)) if *r == Reason::UnopenedParenthesis
        ));
    }

    #[test]
    fn a_buffer_that_is_not_the_end_asks_for_more() {
        let mut c = Cursor::new(b"12", false);
        assert!(matches!(c.number("x"), Err(Stop::More)));
        let mut c = Cursor::new(b"1 ( ", true);
        c.pos = 1;
        assert!(matches!(
            c.sep(),
            Err(Stop::Bad(r)) if *r == Reason::UnclosedParenthesis
        ));
    }

    #[test]
    fn character_strings_count_escapes_as_one_byte() {
        let mut c = cur("\"a\\\"b\\255 ;\" ");
        assert_eq!(c.text("TXT").unwrap(), 6);
        let mut c = cur("a\\065b(");
        assert_eq!(c.text("TXT").unwrap(), 3);
        assert!(cur("\\256 ").text("TXT").is_err());
        assert!(cur("\"a\n").text("TXT").is_err());
        assert!(cur("\"caf\u{e9}\" ").text("TXT").is_err());
        assert!(cur("\"a\"b ").text("TXT").is_err());
        assert!(cur("\\\t ").text("TXT").is_err());
    }

    #[test]
    fn hex_comes_in_pairs_with_blanks_between_them() {
        let mut c = cur("0a 0B ff\n");
        assert_eq!(c.hex().unwrap(), 3);
        assert!(cur("abc\n").hex().is_err());
        assert!(cur("zz\n").hex().is_err());
    }

    #[test]
    fn a_cr_before_a_newline_is_named() {
        let c = cur("\r\n");
        assert!(matches!(c.unexpected("x"), Stop::Bad(r) if *r == Reason::Crlf));
    }
}
