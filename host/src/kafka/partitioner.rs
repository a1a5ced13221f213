//! Kafka's default partitioner, as the Java client, kafka-python (upstream's publisher) and
//! librdkafka's `murmur2_random` place a keyed record: murmur2 of the key, made positive by
//! clearing the sign bit, modulo the partition count. `send` asks librdkafka for it, and the
//! daemon computes it here to know which partitions a message for it can be on.

use std::collections::BTreeSet;

/// Kafka's murmur2 (32 bits, seed `0x9747b28c`), as `org.apache.kafka.common.utils.Utils`.
pub fn murmur2(data: &[u8]) -> u32 {
    const M: u32 = 0x5bd1_e995;
    const R: u32 = 24;
    // The length wraps as Java's `int` would; keys are far shorter.
    let mut h: u32 = 0x9747_b28c ^ (data.len() as u32);
    let mut words = data.chunks_exact(4);
    for word in &mut words {
        let mut k = u32::from_le_bytes([word[0], word[1], word[2], word[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }
    let tail = words.remainder();
    if !tail.is_empty() {
        for (i, byte) in tail.iter().enumerate().rev() {
            h ^= u32::from(*byte) << (8 * i);
        }
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h
}

/// The partition a record keyed `key` goes to among `count` (at least 1).
pub fn partition_of(key: &[u8], count: i32) -> i32 {
    debug_assert!(count > 0, "a topic has at least one partition");
    ((murmur2(key) & 0x7fff_ffff) % count.max(1) as u32) as i32
}

/// The partitions among `count` that a record keyed by one of `keys` goes to.
pub fn partitions_of<'a>(keys: impl IntoIterator<Item = &'a [u8]>, count: i32) -> BTreeSet<i32> {
    keys.into_iter()
        .map(|key| partition_of(key, count))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The reference vectors of librdkafka's `unittest_murmur2`, themselves checked against
    /// the Java client's output: every tail length, and the empty key.
    #[test]
    fn murmur2_gives_the_java_clients_hashes() {
        let unaligned = b"PreAmbleWillBeRemoved,ThePrePartThatIs";
        for (key, hash) in [
            (&b"kafka"[..], 0xd067_cf64),
            (b"giberish123456789", 0x8f55_2b0c),
            (b"1234", 0x9fc9_7b14),
            (b"234", 0xe7c0_09ca),
            (b"34", 0x8739_30da),
            (b"4", 0x5a4b_5ca1),
            (unaligned, 0x7842_4f1c),
            (&unaligned[1..], 0x4a62_b377),
            (&unaligned[2..], 0xe0e4_e09e),
            (b"", 0x106e_08d9),
        ] {
            assert_eq!(
                murmur2(key),
                hash,
                "murmur2({:?})",
                String::from_utf8_lossy(key)
            );
        }
    }

    #[test]
    fn a_key_goes_to_one_partition_within_the_count() {
        // 0xd067cf64 with the sign bit cleared is 1348980580.
        assert_eq!(partition_of(b"kafka", 10), 0);
        assert_eq!(partition_of(b"kafka", 7), 1_348_980_580 % 7);
        for count in 1..=64 {
            let p = partition_of(b"resolver1.example.net", count);
            assert!((0..count).contains(&p), "{p} of {count}");
        }
        let both = partitions_of([&b"dns-group1"[..], b"resolver1"], 12);
        assert!(!both.is_empty() && both.len() <= 2, "{both:?}");
    }
}
