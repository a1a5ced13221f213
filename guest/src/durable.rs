//! Writing files so that a crash leaves them whole or absent, and hex encoding. Plain
//! `std::fs`, shared by the guest (its chunk metadata) and the host (its marker of a manager
//! call owed, its cache of compiled guests): one implementation of "durable".

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::Path;

/// Write `path` so that after a crash it holds either its old content or `content`, never a
/// mix: write `temporary` (a sibling of `path`), fsync it, rename it over `path`, fsync the
/// directory. `mode` sets the permissions of a newly created file (Unix only).
pub fn write_atomically(
    path: &Path,
    temporary: &Path,
    content: &[u8],
    mode: Option<u32>,
) -> io::Result<()> {
    let mut options = File::options();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    if let Some(mode) = mode {
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, mode);
    }
    #[cfg(not(unix))]
    let _ = mode;
    let mut file = options.open(temporary)?;
    file.write_all(content)?;
    file.sync_all()?;
    drop(file);
    fs::rename(temporary, path)?;
    sync_parent(path)
}

/// Fsync the directory holding `path`, so that a rename or removal in it is durable.
pub fn sync_parent(path: &Path) -> io::Result<()> {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => sync_dir(dir),
        _ => sync_dir(Path::new(".")),
    }
}

/// Fsync `dir` itself (its entries, not their content).
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Lower-case hexadecimal of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(DIGITS[usize::from(b >> 4)] as char);
        out.push(DIGITS[usize::from(b & 0xf)] as char);
    }
    out
}

/// The bytes of hexadecimal `text` (either case); `None` unless it is whole pairs of hex digits.
pub fn unhex(text: &[u8]) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    text.chunks_exact(2)
        .map(|pair| {
            let hi = (pair[0] as char).to_digit(16)?;
            let lo = (pair[1] as char).to_digit(16)?;
            Some((hi * 16 + lo) as u8)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_is_lower_case_two_digits_a_byte() {
        assert_eq!(hex(&[0x00, 0x0f, 0xa0, 0xff]), "000fa0ff");
        assert_eq!(hex(&[]), "");
        assert_eq!(unhex(b"000FA0ff"), Some(vec![0x00, 0x0f, 0xa0, 0xff]));
        assert_eq!(unhex(b"0g"), None);
        assert_eq!(unhex(b"abc"), None);
    }

    #[test]
    fn an_atomic_write_replaces_the_whole_file_and_leaves_no_temporary() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("marker");
        let tmp = dir.path().join("marker.tmp");
        write_atomically(&path, &tmp, b"first", None).unwrap();
        write_atomically(&path, &tmp, b"2nd", Some(0o600)).unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"2nd");
        assert!(!tmp.exists());
    }
}
