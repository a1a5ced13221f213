//! The cache of compiled guests: Cranelift's output for a guest, so that starting with or
//! swapping to a known guest costs a file read instead of a compile.
//!
//! An artifact is native code that wasmtime loads without validation, so this module loads
//! only artifacts kres-kafka wrote itself: each ends with a keyed BLAKE3 hash (a MAC) of its
//! contents under a key that kres-kafka generated in the cache directory (readable by its user
//! only). BLAKE3 rather than HMAC-SHA256: the tag is checked on every start and swap, and it
//! is several times faster over the ten megabytes of code. A file that is not ours, damaged,
//! or made by another wasmtime or engine configuration is ignored and replaced by a fresh
//! compile. The cache must never be inside the guest's view (the files directory): the daemon
//! refuses such a configuration.
//!
//! The tag is a trailer, not a header, so that wasmtime can map the file as it is (its code
//! starts at the file's first byte) instead of copying it into fresh memory: a swap to a
//! cached guest reads the file once, to check the tag, and maps it.

use kres_kafka_guest::durable;
use sha2::{Digest, Sha256};
use std::fs::{self, File};
use std::io::{self, Read, Seek};
use std::os::unix::fs::{DirBuilderExt, FileExt};
use std::path::{Path, PathBuf};

/// Last bytes of every artifact, before its tag: format and version of this file layout.
const MAGIC: &[u8; 16] = b"kres-kafka-cwsm3";
const TAG_LEN: usize = 32;
/// What follows wasmtime's artifact in the file: [`MAGIC`], then the tag.
const TRAILER: usize = MAGIC.len() + TAG_LEN;
const KEY_FILE: &str = "mac-key";

/// A cache directory and its key.
pub struct Cache {
    dir: PathBuf,
    key: [u8; 32],
}

impl Cache {
    /// Open (creating it, mode 0700, and its key, mode 0600) the cache at `dir`.
    pub fn open(dir: &Path) -> io::Result<Cache> {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)?;
        let key_path = dir.join(KEY_FILE);
        let key = match fs::read(&key_path) {
            Ok(bytes) if bytes.len() == 32 => bytes.try_into().expect("length checked"),
            Ok(_) => {
                return Err(io::Error::other(format!(
                    "{} is not a kres-kafka cache key",
                    key_path.display()
                )));
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                let mut key = [0u8; 32];
                getrandom::fill(&mut key).map_err(|e| io::Error::other(e.to_string()))?;
                write_atomically(&key_path, &key)?;
                key
            }
            Err(e) => return Err(e),
        };
        Ok(Cache {
            dir: dir.to_owned(),
            key,
        })
    }

    /// Where the artifact of the guest with digest `guest` for engine `engine` lives.
    pub fn path(&self, guest: &str, engine: &str) -> PathBuf {
        self.dir.join(format!("{guest}-{engine}.cwasm"))
    }

    /// The artifact at `path`, opened, when it exists and ends with our tag. Load it through
    /// this descriptor: it is the file whose tag was checked, and kres-kafka never writes to an
    /// artifact once it is in place. Nothing past the artifact is read by wasmtime, which finds
    /// its sections through the header at the start.
    pub fn get(&self, path: &Path) -> Option<File> {
        let file = File::open(path).ok()?;
        let len = file.metadata().ok()?.len();
        let mut trailer = [0u8; TRAILER];
        let payload = len.checked_sub(TRAILER as u64);
        let readable = payload.is_some_and(|at| file.read_exact_at(&mut trailer, at).is_ok());
        let (magic, tag) = trailer.split_at(MAGIC.len());
        if !readable || magic != MAGIC {
            tracing::warn!(path = %path.display(), "ignoring a cache file that is not a kres-kafka artifact");
            return None;
        }
        let tag: [u8; TAG_LEN] = tag.try_into().expect("split at MAGIC.len()");
        let mut mac = blake3::Hasher::new_keyed(&self.key);
        mac.update_reader((&file).take(payload?)).ok()?;
        // `blake3::Hash` compares in constant time.
        if mac.finalize() != blake3::Hash::from_bytes(tag) {
            tracing::warn!(path = %path.display(), "ignoring a cached artifact kres-kafka did not write (bad tag)");
            return None;
        }
        Some(file)
    }

    /// Store `artifact` at `path` (atomically, mode 0600).
    pub fn put(&self, path: &Path, artifact: &[u8]) -> io::Result<()> {
        let tag = self.mac(artifact);
        let mut bytes = Vec::with_capacity(artifact.len() + TRAILER);
        bytes.extend_from_slice(artifact);
        bytes.extend_from_slice(MAGIC);
        bytes.extend_from_slice(tag.as_bytes());
        write_atomically(path, &bytes)
    }

    fn mac(&self, payload: &[u8]) -> blake3::Hash {
        blake3::keyed_hash(&self.key, payload)
    }
}

fn rand_u64() -> u64 {
    let mut bytes = [0u8; 8];
    let _ = getrandom::fill(&mut bytes);
    u64::from_le_bytes(bytes)
}

/// Hex SHA-256 of `bytes`.
pub fn digest(bytes: &[u8]) -> String {
    durable::hex(&Sha256::digest(bytes))
}

/// Hex SHA-256 of `file`, from its start, read in pieces: a guest whose compiled code is
/// cached is never read whole.
pub fn digest_file(mut file: &File) -> io::Result<String> {
    file.rewind()?;
    let mut sha = Sha256::new();
    let mut piece = vec![0u8; 1 << 16];
    loop {
        match file.read(&mut piece) {
            Ok(0) => return Ok(durable::hex(&sha.finalize())),
            Ok(n) => sha.update(&piece[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

/// A `Hasher` feeding SHA-256, to turn wasmtime's engine compatibility hash into a stable name.
pub struct Sha256Hasher(pub Sha256);

impl std::hash::Hasher for Sha256Hasher {
    fn finish(&self) -> u64 {
        let digest = self.0.clone().finalize();
        u64::from_le_bytes(digest[..8].try_into().expect("8 bytes"))
    }
    fn write(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }
}

fn write_atomically(path: &Path, bytes: &[u8]) -> io::Result<()> {
    // Unique per writer: two processes filling the same cache entry must not share a temporary.
    let tmp = path.with_extension(format!("tmp.{}.{:x}", std::process::id(), rand_u64()));
    durable::write_atomically(path, &tmp, bytes, Some(0o600))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What wasmtime would load from `cache` at `path`: the artifact, when its tag checks.
    fn loaded(cache: &Cache, path: &Path) -> Option<Vec<u8>> {
        let mut file = cache.get(path)?;
        let mut bytes = Vec::new();
        file.rewind().unwrap();
        file.read_to_end(&mut bytes).unwrap();
        assert_eq!(&bytes[bytes.len() - TRAILER..][..MAGIC.len()], MAGIC);
        bytes.truncate(bytes.len() - TRAILER);
        Some(bytes)
    }

    #[test]
    fn only_artifacts_tagged_with_our_key_are_returned() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::open(dir.path()).unwrap();
        let path = cache.path("guest", "engine");
        assert_eq!(loaded(&cache, &path), None);
        cache.put(&path, b"native code").unwrap();
        assert_eq!(loaded(&cache, &path).as_deref(), Some(&b"native code"[..]));
        // The artifact starts the file, as wasmtime maps it.
        assert!(fs::read(&path).unwrap().starts_with(b"native code"));

        // Same key on reopening; another cache's key does not verify.
        let reopened = Cache::open(dir.path()).unwrap();
        assert_eq!(
            loaded(&reopened, &path).as_deref(),
            Some(&b"native code"[..])
        );
        let other = tempfile::tempdir().unwrap();
        let foreign = Cache::open(other.path()).unwrap();
        foreign
            .put(&foreign.path("guest", "engine"), b"evil code")
            .unwrap();
        fs::copy(foreign.path("guest", "engine"), &path).unwrap();
        assert_eq!(loaded(&cache, &path), None);

        // A changed code byte, a changed tag, a file too short for a tag: all refused.
        for damage in [
            |b: &mut Vec<u8>| b[0] ^= 1,
            |b: &mut Vec<u8>| *b.last_mut().unwrap() ^= 1,
            |b: &mut Vec<u8>| b.truncate(TRAILER - 1),
        ] {
            cache.put(&path, b"native code").unwrap();
            let mut bytes = fs::read(&path).unwrap();
            damage(&mut bytes);
            fs::write(&path, bytes).unwrap();
            assert_eq!(loaded(&cache, &path), None);
        }
    }

    #[test]
    fn cache_and_key_are_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let cache_dir = dir.path().join("cache");
        Cache::open(&cache_dir).unwrap();
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&cache_dir), 0o700);
        assert_eq!(mode(&cache_dir.join(KEY_FILE)), 0o600);
    }
}
