//! Typing a scalar as PyYAML 6's `SafeLoader` types it: its tag, or for a plain scalar YAML
//! 1.1's implicit resolvers (`yaml/resolver.py`), then the constructors' conversion
//! (`yaml/constructor.py`) of booleans, integers (binary, octal, hexadecimal, sexagesimal,
//! underscores) and floats.

use super::*;

/// A tag as PyYAML sees it.
enum TagKind<'a> {
    /// `!` alone: PyYAML then types the scalar as if it were plain, whatever its style.
    NonSpecific,
    /// `!!name`, that is `tag:yaml.org,2002:name`.
    Core(&'a str),
    /// Anything else, as written.
    Other(String),
}

fn tag_kind(tag: &Tag) -> TagKind<'_> {
    let core = if tag.handle == CORE_TAG_PREFIX {
        Some(tag.suffix.as_str())
    } else if tag.handle.is_empty() {
        // `!` alone, or a verbatim `!<...>` whose whole text is the suffix.
        if tag.suffix == "!" {
            return TagKind::NonSpecific;
        }
        tag.suffix.strip_prefix(CORE_TAG_PREFIX)
    } else {
        None
    };
    match core {
        Some(name) => TagKind::Core(name),
        None if tag.handle == "!" => TagKind::Other(format!("!{}", tag.suffix)),
        None => TagKind::Other(format!("!<{}{}>", tag.handle, tag.suffix)),
    }
}

/// A list's or a mapping's tag must be none, `!`, or the core tag of its kind.
pub(super) fn check_collection_tag(
    tag: Option<&Tag>,
    core: &str,
    node: &'static str,
) -> Result<(), Why> {
    match tag.map(tag_kind) {
        None | Some(TagKind::NonSpecific) => Ok(()),
        Some(TagKind::Core(name)) if name == core => Ok(()),
        Some(TagKind::Core(name)) if is_known_core(name) => Err(Why::TagMismatch {
            tag: format!("!!{name}"),
            node,
        }),
        Some(TagKind::Core(name)) => Err(Why::UnknownTag(format!("!!{name}"))),
        Some(TagKind::Other(tag)) => Err(Why::UnknownTag(tag)),
    }
}

fn is_known_core(name: &str) -> bool {
    matches!(
        name,
        "str" | "int" | "float" | "bool" | "null" | "map" | "seq"
    )
}

/// PyYAML's type for a scalar: by its tag if it has one, else by YAML 1.1's implicit rules when
/// it is plain, else a string.
pub(super) fn type_scalar(
    text: &str,
    style: TScalarStyle,
    tag: Option<&Tag>,
) -> Result<Typed, Why> {
    let not = |what| Why::NotTagged {
        text: text.to_owned(),
        what,
    };
    match tag.map(tag_kind) {
        None if style == TScalarStyle::Plain => implicit(text),
        None => Ok(Typed::Str),
        Some(TagKind::NonSpecific) => implicit(text),
        Some(TagKind::Core("str")) => Ok(Typed::Str),
        Some(TagKind::Core("null")) => Ok(Typed::Null),
        Some(TagKind::Core("bool")) => bool_of(&text.to_lowercase())
            .map(Typed::Bool)
            .ok_or_else(|| not("a boolean")),
        Some(TagKind::Core("int")) => match int_of(text) {
            Ok(i) => Ok(Typed::Int(i)),
            Err(IntFail::Invalid) => Err(not("an integer")),
            Err(IntFail::Range) => Err(Why::IntegerRange(text.to_owned())),
        },
        Some(TagKind::Core("float")) => float_of(text)
            .map(Typed::Float)
            .ok_or_else(|| not("a float")),
        Some(TagKind::Core(name)) if is_known_core(name) => Err(Why::TagMismatch {
            tag: format!("!!{name}"),
            node: "a scalar",
        }),
        Some(TagKind::Core(name)) => Err(Why::UnknownTag(format!("!!{name}"))),
        Some(TagKind::Other(tag)) => Err(Why::UnknownTag(tag)),
    }
}

/// YAML 1.1's implicit types as PyYAML's `Resolver` lists them, tried in its order.
///
/// Timestamps (`2001-12-14`) stay strings. PyYAML makes dates of them, which JSON has no type
/// for and no field of the manager's schema takes (its `str` fields take str, int and float
/// only); keeping the text refuses nothing the manager takes, and a string-typed field sees
/// what was written.
fn implicit(text: &str) -> Result<Typed, Why> {
    if let Some(b) = bool_of(text) {
        return Ok(Typed::Bool(b));
    }
    if is_float(text) {
        let f = float_of(text).expect("a float by PyYAML's pattern converts");
        return Ok(Typed::Float(f));
    }
    if is_int(text) {
        return match int_of(text) {
            Ok(i) => Ok(Typed::Int(i)),
            // `0b_` and `0x_` match the pattern and have no digits: PyYAML fails on them too.
            Err(IntFail::Invalid) => Err(Why::NotTagged {
                text: text.to_owned(),
                what: "an integer",
            }),
            Err(IntFail::Range) => Err(Why::IntegerRange(text.to_owned())),
        };
    }
    match text {
        "<<" => Err(Why::MergeKey),
        "" | "~" | "null" | "Null" | "NULL" => Ok(Typed::Null),
        "=" => Err(Why::ValueKey),
        _ => Ok(Typed::Str),
    }
}

/// PyYAML's booleans. Implicitly only these spellings (not `y`, `n`, nor `tRUE`); `!!bool` takes
/// any case of them.
fn bool_of(text: &str) -> Option<bool> {
    match text {
        "yes" | "Yes" | "YES" | "true" | "True" | "TRUE" | "on" | "On" | "ON" => Some(true),
        "no" | "No" | "NO" | "false" | "False" | "FALSE" | "off" | "Off" | "OFF" => Some(false),
        _ => None,
    }
}

fn digit(b: &u8) -> bool {
    b.is_ascii_digit()
}

fn digit_or_underscore(b: &u8) -> bool {
    b.is_ascii_digit() || *b == b'_'
}

/// Length of the leading run of `s` in `class`.
fn run(s: &[u8], class: fn(&u8) -> bool) -> usize {
    s.iter().take_while(|b| class(b)).count()
}

/// `s` without a leading `-` or `+`.
fn unsigned(s: &[u8]) -> &[u8] {
    match s {
        [b'-' | b'+', rest @ ..] => rest,
        _ => s,
    }
}

/// What follows `(?::[0-5]?[0-9])*` at the start of `s`, and how many groups it took.
fn sexagesimal(mut s: &[u8]) -> (&[u8], usize) {
    let mut groups = 0;
    while let [b':', after @ ..] = s {
        let n = run(after, digit);
        // The next byte is no digit, so `[0-5]?[0-9]` must take the whole run.
        if !(n == 1 || n == 2 && after[0] <= b'5') {
            break;
        }
        s = &after[n..];
        groups += 1;
    }
    (s, groups)
}

/// PyYAML's int pattern:
/// `[-+]?0b[0-1_]+ | [-+]?0[0-7_]+ | [-+]?(0|[1-9][0-9_]*) | [-+]?0x[0-9a-fA-F_]+ |
/// [-+]?[1-9][0-9_]*(:[0-5]?[0-9])+`.
fn is_int(text: &str) -> bool {
    let s = unsigned(text.as_bytes());
    if let Some(digits) = s.strip_prefix(b"0b") {
        return !digits.is_empty() && digits.iter().all(|b| matches!(b, b'0' | b'1' | b'_'));
    }
    if let Some(digits) = s.strip_prefix(b"0x") {
        return !digits.is_empty() && digits.iter().all(|b| b.is_ascii_hexdigit() || *b == b'_');
    }
    if let Some(digits) = s.strip_prefix(b"0") {
        return digits.iter().all(|b| matches!(b, b'0'..=b'7' | b'_'));
    }
    if !matches!(s.first(), Some(b'1'..=b'9')) {
        return false;
    }
    let (rest, _) = sexagesimal(&s[run(s, digit_or_underscore)..]);
    rest.is_empty()
}

/// PyYAML's float pattern (PyYAML 6: a leading dot needs a digit after it):
/// `[-+]?[0-9][0-9_]*\.[0-9_]*([eE][-+][0-9]+)? | \.[0-9][0-9_]*([eE][-+][0-9]+)? |
/// [-+]?[0-9][0-9_]*(:[0-5]?[0-9])+\.[0-9_]* | [-+]?\.(inf|Inf|INF) | \.(nan|NaN|NAN)`.
/// The exponent needs its sign: `1.0e3` is a string, `1.0e+3` a float.
fn is_float(text: &str) -> bool {
    let exponent = |s: &[u8]| match s {
        [] => true,
        [b'e' | b'E', b'-' | b'+', digits @ ..] => !digits.is_empty() && digits.iter().all(digit),
        _ => false,
    };
    if matches!(text, ".nan" | ".NaN" | ".NAN") {
        return true;
    }
    if let [b'.', b'0'..=b'9', rest @ ..] = text.as_bytes() {
        return exponent(&rest[run(rest, digit_or_underscore)..]);
    }
    let s = unsigned(text.as_bytes());
    if matches!(s, b".inf" | b".Inf" | b".INF") {
        return true;
    }
    if !s.first().is_some_and(digit) {
        return false;
    }
    let s = &s[run(s, digit_or_underscore)..];
    if let [b'.', rest @ ..] = s {
        return exponent(&rest[run(rest, digit_or_underscore)..]);
    }
    match sexagesimal(s) {
        ([b'.', fraction @ ..], groups) if groups > 0 => fraction.iter().all(digit_or_underscore),
        _ => false,
    }
}

enum IntFail {
    Invalid,
    Range,
}

/// PyYAML's `construct_yaml_int`: underscores dropped, then `0b` binary, `0x` hexadecimal, a
/// leading `0` octal, `:` base 60, else decimal; each part read as Python's `int()` reads it.
fn int_of(text: &str) -> Result<i128, IntFail> {
    let value: String = text.chars().filter(|&c| c != '_').collect();
    let (negative, value) = match value.as_bytes().first() {
        None => return Err(IntFail::Invalid),
        Some(b'-') => (true, &value[1..]),
        Some(b'+') => (false, &value[1..]),
        Some(_) => (false, &value[..]),
    };
    let n = if value == "0" {
        0
    } else if let Some(digits) = value.strip_prefix("0b") {
        python_int(digits, 2)?
    } else if let Some(digits) = value.strip_prefix("0x") {
        python_int(digits, 16)?
    } else if value.starts_with('0') {
        python_int(value, 8)?
    } else if value.contains(':') {
        let mut n: i128 = 0;
        for part in value.split(':') {
            let part = python_int(part, 10)?;
            n = n
                .checked_mul(60)
                .and_then(|n| n.checked_add(part))
                .ok_or(IntFail::Range)?;
        }
        n
    } else {
        python_int(value, 10)?
    };
    if negative {
        n.checked_neg().ok_or(IntFail::Range)
    } else {
        Ok(n)
    }
}

/// Python's `int(s, base)` on a string without underscores: surrounding whitespace, a sign, and
/// for bases 2, 8 and 16 the matching `0b`, `0o`, `0x` prefix are allowed.
fn python_int(s: &str, base: u32) -> Result<i128, IntFail> {
    let s = s.trim();
    let (negative, s) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    let prefix = match base {
        2 => "0b",
        8 => "0o",
        16 => "0x",
        _ => "",
    };
    let digits = match s.get(..2) {
        Some(p) if !prefix.is_empty() && p.eq_ignore_ascii_case(prefix) => &s[2..],
        _ => s,
    };
    if digits.is_empty() {
        return Err(IntFail::Invalid);
    }
    let mut n: i128 = 0;
    for c in digits.chars() {
        let d = c.to_digit(base).ok_or(IntFail::Invalid)?;
        n = n
            .checked_mul(i128::from(base))
            .and_then(|n| n.checked_add(i128::from(d)))
            .ok_or(IntFail::Range)?;
    }
    Ok(if negative { -n } else { n })
}

/// PyYAML's `construct_yaml_float`: underscores dropped, lower case, `.inf`, `.nan`, `:` base
/// 60, else Python's `float()`. Not-finite results are refused later, as values.
fn float_of(text: &str) -> Option<f64> {
    let value: String = text
        .chars()
        .filter(|&c| c != '_')
        .collect::<String>()
        .to_lowercase();
    let (sign, value) = match value.as_bytes().first()? {
        b'-' => (-1.0, &value[1..]),
        b'+' => (1.0, &value[1..]),
        _ => (1.0, &value[..]),
    };
    if value == ".inf" {
        return Some(sign * f64::INFINITY);
    }
    if value == ".nan" {
        return Some(f64::NAN);
    }
    if value.contains(':') {
        // As PyYAML sums them: the last part first, each times a growing power of 60.
        let mut sum = 0.0;
        let mut base = 1.0;
        for part in value.rsplit(':') {
            sum += python_float(part)? * base;
            base *= 60.0;
        }
        return Some(sign * sum);
    }
    Some(sign * python_float(value)?)
}

/// Python's `float()` on a string without underscores. Rust reads the same spellings (`1.`,
/// `.5`, `1e3`, `inf`, `nan`) and rounds the same way (correctly).
fn python_float(s: &str) -> Option<f64> {
    s.trim().parse().ok()
}
