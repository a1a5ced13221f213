//! Record types and their data in text form, as zscanner reads them; and the generic RFC 3597
//! form (`\# length hex`) that any type may use.
//!
//! Only the types an RPZ or local data needs are read in text form; for the other mnemonics
//! zscanner knows, the text form is refused ("kres-kafka does not judge"), stricter than the
//! loader, while their generic form is accepted as the loader accepts it.

use super::Reason;
use super::lexer::{Cursor, Step};
use super::names::{Name, name};

pub(super) const A: u16 = 1;
pub(super) const NS: u16 = 2;
pub(super) const CNAME: u16 = 5;
pub(super) const SOA: u16 = 6;
pub(super) const DNAME: u16 = 39;
pub(super) const DS: u16 = 43;
pub(super) const RRSIG: u16 = 46;
pub(super) const NSEC: u16 = 47;
pub(super) const DNSKEY: u16 = 48;
pub(super) const NSEC3: u16 = 50;

/// Longest record data in wire form (zscanner's `ZS_MAX_RDATA_LENGTH`, the RDLENGTH field).
const MAX_RDATA: usize = 65535;
/// Longest character-string (RFC 1035: a one-byte length).
const MAX_STRING: usize = 255;

/// How a type's data is written in text form.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Syntax {
    A,
    Aaaa,
    /// One name: NS, CNAME, PTR, DNAME.
    Name,
    Soa,
    Hinfo,
    /// Two names: MINFO, RP.
    NamePair,
    /// A 16-bit number and a name: MX, AFSDB, RT, KX, LP.
    Mx,
    /// Character-strings, long ones split: TXT, SPF, WALLET.
    Txt,
    Srv,
    Naptr,
    Uri,
    Caa,
    /// zscanner reads it; kres-kafka does not judge it.
    Unjudged,
    /// zscanner has no text form for it: only `\#`.
    None,
}

/// The mnemonics zscanner 3.4 knows, with their numbers and syntax. A mnemonic not here is
/// refused by zscanner itself ("unsupported record type").
const TYPES: [(&str, u16, Syntax); 49] = [
    ("A", A, Syntax::A),
    ("NS", NS, Syntax::Name),
    ("CNAME", CNAME, Syntax::Name),
    ("SOA", SOA, Syntax::Soa),
    ("PTR", 12, Syntax::Name),
    ("HINFO", 13, Syntax::Hinfo),
    ("MINFO", 14, Syntax::NamePair),
    ("MX", 15, Syntax::Mx),
    ("TXT", 16, Syntax::Txt),
    ("RP", 17, Syntax::NamePair),
    ("AFSDB", 18, Syntax::Mx),
    ("RT", 21, Syntax::Mx),
    ("KEY", 25, Syntax::Unjudged),
    ("AAAA", 28, Syntax::Aaaa),
    ("LOC", 29, Syntax::Unjudged),
    ("SRV", 33, Syntax::Srv),
    ("NAPTR", 35, Syntax::Naptr),
    ("KX", 36, Syntax::Mx),
    ("CERT", 37, Syntax::Unjudged),
    ("DNAME", DNAME, Syntax::Name),
    ("APL", 42, Syntax::Unjudged),
    ("DS", DS, Syntax::Unjudged),
    ("SSHFP", 44, Syntax::Unjudged),
    ("IPSECKEY", 45, Syntax::Unjudged),
    ("RRSIG", RRSIG, Syntax::Unjudged),
    ("NSEC", NSEC, Syntax::Unjudged),
    ("DNSKEY", DNSKEY, Syntax::Unjudged),
    ("DHCID", 49, Syntax::Unjudged),
    ("NSEC3", NSEC3, Syntax::Unjudged),
    ("NSEC3PARAM", 51, Syntax::Unjudged),
    ("TLSA", 52, Syntax::Unjudged),
    ("SMIMEA", 53, Syntax::Unjudged),
    ("CDS", 59, Syntax::Unjudged),
    ("CDNSKEY", 60, Syntax::Unjudged),
    ("OPENPGPKEY", 61, Syntax::Unjudged),
    ("CSYNC", 62, Syntax::Unjudged),
    ("ZONEMD", 63, Syntax::Unjudged),
    ("SVCB", 64, Syntax::Unjudged),
    ("HTTPS", 65, Syntax::Unjudged),
    ("SPF", 99, Syntax::Txt),
    ("NID", 104, Syntax::Unjudged),
    ("L32", 105, Syntax::Unjudged),
    ("L64", 106, Syntax::Unjudged),
    ("LP", 107, Syntax::Mx),
    ("EUI48", 108, Syntax::Unjudged),
    ("EUI64", 109, Syntax::Unjudged),
    ("URI", 256, Syntax::Uri),
    ("CAA", 257, Syntax::Caa),
    ("WALLET", 262, Syntax::Txt),
];

/// Class mnemonics, named in the error when one stands where zscanner wants a type (it knows
/// only IN).
const CLASSES: [&str; 5] = ["CH", "CS", "HS", "NONE", "ANY"];

/// The type a mnemonic or `TYPEnnn` names.
pub(super) fn lookup(word: &[u8]) -> Result<u16, Reason> {
    // The types of almost every RPZ line, as they are usually written.
    match word {
        b"CNAME" => return Ok(CNAME),
        b"A" => return Ok(A),
        _ => {}
    }
    if let Some(&(_, num, _)) = TYPES
        .iter()
        .find(|t| t.0.as_bytes().eq_ignore_ascii_case(word))
    {
        return Ok(num);
    }
    let text = String::from_utf8_lossy(word).into_owned();
    if word.len() > 4 && word[..4].eq_ignore_ascii_case(b"TYPE") {
        let digits = &word[4..];
        if digits.iter().all(u8::is_ascii_digit) {
            // zscanner reads 64 bits, then wants 16.
            return match text[4..].parse::<u64>() {
                Ok(n) if n <= u64::from(u16::MAX) => Ok(n as u16),
                _ => Err(Reason::NumberTooLarge {
                    what: "a TYPEnnn number",
                    max: u64::from(u16::MAX),
                }),
            };
        }
    }
    let upper = text.to_ascii_uppercase();
    if CLASSES.contains(&upper.as_str()) || upper.starts_with("CLASS") {
        return Err(Reason::Class(text));
    }
    Err(Reason::UnknownType(text))
}

/// The mnemonic of a type, or `TYPEnnn`.
pub(super) fn mnemonic(num: u16) -> String {
    match TYPES.iter().find(|t| t.1 == num) {
        Some(t) => t.0.to_owned(),
        None => format!("TYPE{num}"),
    }
}

fn syntax(num: u16) -> Syntax {
    // The types of almost every RPZ line first.
    match num {
        CNAME => return Syntax::Name,
        A => return Syntax::A,
        _ => {}
    }
    TYPES
        .iter()
        .find(|t| t.1 == num)
        .map_or(Syntax::None, |t| t.2)
}

/// Read the data of a record of type `rtype` in text form. The name in a CNAME is left in
/// `target` (the loader looks at it). Stops at the byte that ends the data.
pub(super) fn text(cur: &mut Cursor<'_>, rtype: u16, origin: &Name, target: &mut Name) -> Step<()> {
    let s = syntax(rtype);
    if matches!(cur.peek()?, b'\n' | b';') && s != Syntax::Unjudged && s != Syntax::None {
        return Err(Reason::MissingRdata(mnemonic(rtype)).into());
    }
    match s {
        Syntax::A => {
            let start = cur.pos;
            while matches!(cur.peek()?, b'0'..=b'9' | b'.') {
                cur.bump();
            }
            cur.need_wchar("in an IPv4 address")?;
            if !ipv4(cur.since(start)) {
                return Err(Reason::BadIpv4(lossy(cur.since(start))).into());
            }
        }
        Syntax::Aaaa => {
            let start = cur.pos;
            while matches!(cur.peek()?, b'0'..=b'9' | b'a'..=b'f' | b'A'..=b'F' | b'.' | b':') {
                cur.bump();
            }
            cur.need_wchar("in an IPv6 address")?;
            if !ipv6(cur.since(start)) {
                return Err(Reason::BadIpv6(lossy(cur.since(start))).into());
            }
        }
        Syntax::Name => {
            name(cur, target, origin)?;
        }
        Syntax::Soa => {
            name(cur, target, origin)?;
            cur.need_sep("after the SOA primary server")?;
            name(cur, target, origin)?;
            cur.need_sep("after the SOA mailbox")?;
            cur.uint("the SOA serial", u64::from(u32::MAX))?;
            cur.need_sep("after the SOA serial")?;
            for what in ["the SOA refresh", "the SOA retry", "the SOA expire"] {
                cur.time(what)?;
                cur.need_sep("after an SOA time")?;
            }
            cur.time("the SOA minimum")?;
            cur.need_wchar("after the SOA minimum")?;
        }
        Syntax::Hinfo => {
            string(cur, "the HINFO CPU")?;
            cur.need_sep("after the HINFO CPU")?;
            string(cur, "the HINFO OS")?;
        }
        Syntax::NamePair => {
            name(cur, target, origin)?;
            cur.need_sep("after the first name")?;
            name(cur, target, origin)?;
        }
        Syntax::Mx => {
            cur.uint("the preference", u64::from(u16::MAX))?;
            cur.need_sep("after the preference")?;
            name(cur, target, origin)?;
        }
        Syntax::Txt => {
            let mut wire = 0;
            loop {
                let len = cur.text("a character-string")?;
                // zscanner splits a long string into strings of 255 bytes, each with its length.
                wire += len + len.div_ceil(MAX_STRING).max(1);
                if wire > MAX_RDATA {
                    return Err(Reason::RdataTooLong.into());
                }
                if !cur.sep()? || matches!(cur.peek()?, b'\n' | b';') {
                    break;
                }
            }
            cur.need_line_end("after the character-strings")?;
        }
        Syntax::Srv => {
            for what in ["the SRV priority", "the SRV weight", "the SRV port"] {
                cur.uint(what, u64::from(u16::MAX))?;
                cur.need_sep("after a number")?;
            }
            name(cur, target, origin)?;
        }
        Syntax::Naptr => {
            for what in ["the NAPTR order", "the NAPTR preference"] {
                cur.uint(what, u64::from(u16::MAX))?;
                cur.need_sep("after a number")?;
            }
            for what in ["the NAPTR flags", "the NAPTR services", "the NAPTR regexp"] {
                string(cur, what)?;
                cur.need_sep("after a character-string")?;
            }
            name(cur, target, origin)?;
        }
        Syntax::Uri => {
            for what in ["the URI priority", "the URI weight"] {
                cur.uint(what, u64::from(u16::MAX))?;
                cur.need_sep("after a number")?;
            }
            if 4 + cur.text("the URI target")? > MAX_RDATA {
                return Err(Reason::RdataTooLong.into());
            }
        }
        Syntax::Caa => {
            cur.uint("the CAA flags", u64::from(u8::MAX))?;
            cur.need_sep("after the CAA flags")?;
            let tag = string(cur, "the CAA tag")?;
            cur.need_sep("after the CAA tag")?;
            if 2 + tag + cur.text("the CAA value")? > MAX_RDATA {
                return Err(Reason::RdataTooLong.into());
            }
        }
        Syntax::Unjudged => return Err(Reason::UnjudgedType(mnemonic(rtype)).into()),
        Syntax::None => return Err(Reason::NoTextForm(rtype).into()),
    }
    Ok(())
}

/// One character-string of at most 255 bytes (zscanner's `text_string` outside TXT).
fn string(cur: &mut Cursor<'_>, what: &'static str) -> Step<usize> {
    let len = cur.text(what)?;
    if len > MAX_STRING {
        return Err(Reason::StringTooLong { what, len }.into());
    }
    Ok(len)
}

/// Read `\# length hex...` (RFC 3597), the cursor on the `\`. Types zscanner reads in text form
/// may not have empty data; other types may, written `\# 0`.
///
/// Stricter than the loader: CNAME and DNAME data must be in text form, because the loader reads
/// their name without checking it is one.
pub(super) fn generic(cur: &mut Cursor<'_>, rtype: u16) -> Step<()> {
    if matches!(rtype, CNAME | DNAME) {
        return Err(Reason::GenericName(mnemonic(rtype)).into());
    }
    cur.bump();
    cur.bump();
    cur.need_sep("after \\#")?;
    let may_be_empty = syntax(rtype) == Syntax::None || rtype == 42; // APL
    if may_be_empty && cur.peek()? == b'0' && super::lexer::is_wchar(cur.peek_at(1)?) {
        cur.bump();
        return Ok(());
    }
    let declared = cur.uint("the \\# data length", MAX_RDATA as u64)? as usize;
    cur.need_sep("after the \\# data length")?;
    let actual = cur.hex()?;
    if actual != declared {
        return Err(Reason::GenericLength { declared, actual }.into());
    }
    cur.need_line_end("after the \\# hex data")
}

fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// An IPv4 address as glibc's `inet_pton(AF_INET)` takes it: four decimal octets of at most
/// 255, no leading zero.
pub(super) fn ipv4(s: &[u8]) -> bool {
    let mut octets = 0;
    for part in s.split(|&b| b == b'.') {
        octets += 1;
        let ok = match part {
            [] => false,
            [b'0'] => true,
            [b'0', ..] => false,
            _ => {
                part.len() <= 3
                    && part.iter().all(u8::is_ascii_digit)
                    && part.iter().fold(0u32, |v, &d| v * 10 + u32::from(d - b'0')) <= 255
            }
        };
        if !ok || octets > 4 {
            return false;
        }
    }
    octets == 4
}

/// An IPv6 address as glibc's `inet_pton(AF_INET6)` takes it: eight groups of at most four hex
/// digits, or fewer with one `::` standing for at least one zero group; the last 32 bits may be
/// an IPv4 address.
pub(super) fn ipv6(s: &[u8]) -> bool {
    let (head, tail) = match find_double_colon(s) {
        Some(i) => (&s[..i], Some(&s[i + 2..])),
        None => (s, None),
    };
    let groups = |part: &[u8], last: bool| -> Option<usize> {
        if part.is_empty() {
            return Some(0);
        }
        let fields: Vec<&[u8]> = part.split(|&b| b == b':').collect();
        let mut n = 0;
        for (i, f) in fields.iter().enumerate() {
            if last && i == fields.len() - 1 && f.contains(&b'.') {
                if !ipv4(f) {
                    return None;
                }
                n += 2;
            } else if f.is_empty() || f.len() > 4 || !f.iter().all(u8::is_ascii_hexdigit) {
                return None;
            } else {
                n += 1;
            }
        }
        Some(n)
    };
    match tail {
        None => groups(head, true) == Some(8),
        Some(tail) => {
            if find_double_colon(tail).is_some() {
                return false;
            }
            match (groups(head, tail.is_empty()), groups(tail, true)) {
                // A `::` after an IPv4 part is no address.
                (Some(h), Some(t)) => !(tail.is_empty() && head.contains(&b'.')) && h + t < 8,
                _ => false,
            }
        }
    }
}

fn find_double_colon(s: &[u8]) -> Option<usize> {
    s.windows(2).position(|w| w == b"::")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv4_follows_inet_pton() {
        for ok in ["1.2.3.4", "0.0.0.0", "255.255.255.255", "10.0.0.1"] {
            assert!(ipv4(ok.as_bytes()), "{ok}");
        }
        for bad in [
            "1.2.3",
            "1.2.3.4.5",
            "256.1.1.1",
            "01.2.3.4",
            "1..2.3",
            "1.2.3.4.",
            ".1.2.3",
            "",
        ] {
            assert!(!ipv4(bad.as_bytes()), "{bad}");
        }
    }

    #[test]
    fn ipv6_follows_inet_pton() {
        for ok in [
            "::",
            "::1",
            "1::",
            "2001:db8::1",
            "1:2:3:4:5:6:7:8",
            "1:2:3:4:5:6:7::",
            "::ffff:1.2.3.4",
            "1:2:3:4:5:6:1.2.3.4",
            "FFFF::abcd",
        ] {
            assert!(ipv6(ok.as_bytes()), "{ok}");
        }
        for bad in [
            "",
            ":",
            ":::",
            "1:2:3:4:5:6:7:8:9",
            "1:2:3:4:5:6:7:8::",
            "1::2::3",
            "12345::",
            "1:2:3:4:5:6:7",
            ":1:2:3:4:5:6:7:8",
            "1:2:3:4:5:6:7:8:",
            "::1.2.3",
            "1.2.3.4::",
            "::1.2.3.4:1",
        ] {
            assert!(!ipv6(bad.as_bytes()), "{bad}");
        }
    }

    #[test]
    fn mnemonics_are_case_blind_and_typennn_is_any_16_bit_number() {
        assert_eq!(lookup(b"cname"), Ok(CNAME));
        assert_eq!(lookup(b"TYPE65534"), Ok(65534));
        assert_eq!(lookup(b"type1"), Ok(A));
        assert!(lookup(b"TYPE65536").is_err());
        assert_eq!(lookup(b"WKS"), Err(Reason::UnknownType("WKS".into())));
        assert_eq!(lookup(b"CH"), Err(Reason::Class("CH".into())));
        assert_eq!(lookup(b"CLASS1"), Err(Reason::Class("CLASS1".into())));
        assert_eq!(mnemonic(257), "CAA");
        assert_eq!(mnemonic(65534), "TYPE65534");
    }
}
