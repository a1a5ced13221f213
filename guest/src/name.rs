//! The rules a `file-name` must follow (SPEC section 2, step 2). Pure: no I/O.
//!
//! A name is a relative path that stays inside the files directory: `/`-separated components,
//! none empty, `.` or `..`, none holding NUL or another control character, none ending in a
//! suffix the guest reserves for its own files. Checking every component (not only the last)
//! keeps a publisher from writing into a chunk set (`a.chunks/1`) or a temporary.

use crate::error::{Error, Result};

/// Suffixes of the guest's own files: temporaries, the one-generation backup, chunk sets and
/// chunks being written. No component of a published name may end with one.
pub const RESERVED_SUFFIXES: [&str; 4] = [".tmp", ".backup", ".chunks", ".part"];

/// Longest name accepted, in bytes (Linux's `PATH_MAX` is 4096; the files directory's own path
/// and our suffixes need room too).
pub const MAX_NAME_LEN: usize = 1024;

/// Longest component accepted, in bytes: Linux's `NAME_MAX` (255) less room for `.chunks`.
pub const MAX_COMPONENT_LEN: usize = 240;

/// Check `name` and return it unchanged when it is safe.
pub fn check(name: &str) -> Result<&str> {
    let bad = |why: &str| Err(Error::BadName(format!("file-name {name:?} {why}")));
    if name.is_empty() {
        return bad("is empty");
    }
    if name.len() > MAX_NAME_LEN {
        return bad(&format!(
            "is {} bytes long: at most {MAX_NAME_LEN}",
            name.len()
        ));
    }
    if name.starts_with('/') {
        return bad("is absolute: it must be relative to the files directory");
    }
    if name.split('/').next() == Some(crate::journal::STATE_FILE) {
        return bad("is reserved for kres-kafka's own journal");
    }
    for component in name.split('/') {
        match component {
            "" => return bad("has an empty component"),
            "." => return bad("has a \".\" component"),
            ".." => return bad("escapes the files directory (\"..\" component)"),
            _ => {}
        }
        if component.contains('\0') {
            return bad("contains NUL");
        }
        if component.chars().any(char::is_control) {
            return bad("contains a control character");
        }
        if component.len() > MAX_COMPONENT_LEN {
            return bad(&format!(
                "has a component longer than {MAX_COMPONENT_LEN} bytes"
            ));
        }
        if let Some(suffix) = RESERVED_SUFFIXES.iter().find(|s| component.ends_with(*s)) {
            return bad(&format!(
                "ends a component in the reserved suffix {suffix:?}"
            ));
        }
    }
    Ok(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_journal_is_not_a_name_a_publisher_may_use() {
        assert!(check(".kres-kafka-state").is_err());
        assert!(check(".kres-kafka-state/x").is_err());
        check("zones/.kres-kafka-state").unwrap();
    }

    #[test]
    fn plain_and_nested_names_are_accepted() {
        for name in [
            "block.rpz",
            "zones/example.com.zone",
            "a/b/c.yaml",
            "..hidden",
            "a..b",
            "x.tmpl",
        ] {
            assert_eq!(check(name).unwrap(), name);
        }
    }

    #[test]
    fn unsafe_names_are_rejected_with_the_reason() {
        let cases = [
            ("", "is empty"),
            ("/etc/passwd", "is absolute"),
            ("../etc/passwd", "escapes"),
            ("a/../../b", "escapes"),
            ("a/..", "escapes"),
            ("..", "escapes"),
            ("a//b", "empty component"),
            ("a/", "empty component"),
            ("./a", "\".\" component"),
            ("a\0b", "NUL"),
            ("a\nb", "control character"),
            ("a.tmp", "\".tmp\""),
            ("a.backup", "\".backup\""),
            ("a.chunks/1", "\".chunks\""),
            ("dir.part/a", "\".part\""),
        ];
        for (name, why) in cases {
            match check(name) {
                Err(Error::BadName(m)) => assert!(m.contains(why), "{name:?}: {m:?} lacks {why:?}"),
                other => panic!("{name:?}: unexpected {other:?}"),
            }
        }
    }

    #[test]
    fn overlong_names_are_rejected() {
        assert!(check(&"a".repeat(MAX_NAME_LEN + 1)).is_err());
        assert!(check(&"a".repeat(MAX_COMPONENT_LEN + 1)).is_err());
        assert!(check(&"a".repeat(MAX_COMPONENT_LEN)).is_ok());
    }
}
