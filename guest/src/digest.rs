//! SHA-256 that can be stored and resumed: the eight state words, the length so far and the
//! bytes short of a block. A transfer's hash lives in its chunk set's metadata, so the file is
//! hashed once, as its chunks are appended, across batches and restarts. The compression
//! function is the caller's: the host's native one inside the sandbox (`digest` import), the
//! `sha2` crate's natively.

use serde::{Deserialize, Serialize};

/// SHA-256's compression function: `state` advanced over `blocks` (a multiple of 64 bytes).
pub type Compress<'a> = &'a dyn Fn(&mut [u32; 8], &[u8]);

/// The initial hash value (FIPS 180-4, 5.3.3).
const INITIAL: [u32; 8] = [
    0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19,
];

/// A SHA-256 computation in progress.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sha256State {
    words: [u32; 8],
    /// Bytes hashed so far, including `tail`.
    length: u64,
    /// The bytes after the last whole block, hex (under 64 bytes).
    #[serde(with = "hex_bytes")]
    tail: Vec<u8>,
}

impl Default for Sha256State {
    fn default() -> Self {
        Sha256State {
            words: INITIAL,
            length: 0,
            tail: Vec::new(),
        }
    }
}

impl Sha256State {
    /// The state as its parts: the words, the length, the tail.
    pub fn parts(&self) -> (&[u32; 8], u64, &[u8]) {
        (&self.words, self.length, &self.tail)
    }

    /// A state from its parts; `None` unless they can be one (a tail of under 64 bytes that
    /// agrees with the length).
    pub fn from_parts(words: [u32; 8], length: u64, tail: Vec<u8>) -> Option<Sha256State> {
        (tail.len() < 64 && length % 64 == tail.len() as u64).then_some(Sha256State {
            words,
            length,
            tail,
        })
    }

    /// Continue over `data`.
    pub fn update(&mut self, compress: Compress<'_>, mut data: &[u8]) {
        self.length += data.len() as u64;
        if !self.tail.is_empty() {
            let take = (64 - self.tail.len()).min(data.len());
            self.tail.extend_from_slice(&data[..take]);
            data = &data[take..];
            if self.tail.len() < 64 {
                return;
            }
            compress(&mut self.words, &self.tail);
            self.tail.clear();
        }
        let whole = data.len() - data.len() % 64;
        if whole > 0 {
            compress(&mut self.words, &data[..whole]);
        }
        self.tail.extend_from_slice(&data[whole..]);
    }

    /// The digest of everything hashed.
    pub fn finish(&self, compress: Compress<'_>) -> [u8; 32] {
        let mut words = self.words;
        let mut last = self.tail.clone();
        last.push(0x80);
        while last.len() % 64 != 56 {
            last.push(0);
        }
        last.extend_from_slice(&(self.length * 8).to_be_bytes());
        compress(&mut words, &last);
        let mut out = [0u8; 32];
        for (chunk, word) in out.chunks_exact_mut(4).zip(words) {
            chunk.copy_from_slice(&word.to_be_bytes());
        }
        out
    }
}

/// The `sha2` crate's compression function (SHA extensions where the CPU has them). It takes
/// blocks as its own array type: they are copied into one on the stack, [`RUN`] at a time, as
/// a call per block costs more than the copy (1.6 against 1.75 GB/s with SHA extensions).
pub fn native_compress(state: &mut [u32; 8], blocks: &[u8]) {
    use sha2::digest::generic_array::GenericArray;
    const RUN: usize = 32;
    let mut run = [GenericArray::default(); RUN];
    for bytes in blocks.chunks(64 * RUN) {
        let mut taken = 0;
        for (to, from) in run.iter_mut().zip(bytes.chunks_exact(64)) {
            to.copy_from_slice(from);
            taken += 1;
        }
        sha2::compress256(state, &run[..taken]);
    }
}

mod hex_bytes {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&crate::durable::hex(bytes))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let text = String::deserialize(d)?;
        crate::durable::unhex(text.as_bytes()).ok_or_else(|| serde::de::Error::custom("not hex"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sha2::{Digest, Sha256};

    #[test]
    fn any_split_and_a_stored_state_give_sha256() {
        let data: Vec<u8> = (0..5000u32).map(|i| (i * 7 % 251) as u8).collect();
        for cuts in [
            vec![],
            vec![1],
            vec![63, 64, 65],
            vec![100, 2000, 4999],
            vec![55, 56],
            // Runs of whole blocks exactly as long as `native_compress` takes at once.
            vec![2048, 4096],
        ] {
            let mut state = Sha256State::default();
            let mut from = 0;
            for cut in cuts.iter().copied().chain([data.len()]) {
                state.update(&native_compress, &data[from..cut]);
                // Through its stored form, as across two batches.
                let stored = serde_json::to_string(&state).unwrap();
                state = serde_json::from_str(&stored).unwrap();
                from = cut;
            }
            let expected: [u8; 32] = Sha256::digest(&data).into();
            assert_eq!(state.finish(&native_compress), expected, "cuts {cuts:?}");
            assert_eq!(state.parts().1, data.len() as u64);
        }
        let empty: [u8; 32] = Sha256::digest(b"").into();
        assert_eq!(Sha256State::default().finish(&native_compress), empty);
    }
}
