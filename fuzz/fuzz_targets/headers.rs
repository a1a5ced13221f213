//! The wire headers of one message: who it is for, every header the guest parses, and the
//! signature fields checked against a trusted key (parsing `signature` and `signed-at`, the
//! key id, the Ed25519 verification and the freshness check). Any bytes: an error, never a
//! panic.
#![no_main]

use kres_kafka_guest::headers::{self, Me};
use kres_kafka_guest::signature::{self, Recipient, Signed, Trust};
use libfuzzer_sys::fuzz_target;

/// The public key of the all-sevens seed: a trusted key the fuzzer's signatures may name.
const TRUSTED: [u8; 32] = [
    0xea, 0x4a, 0x6c, 0x63, 0xe2, 0x9c, 0x52, 0x0a, 0xbe, 0xf5, 0x50, 0x7b, 0x13, 0x2e, 0xc5, 0xf9,
    0x95, 0x47, 0x76, 0xae, 0xbe, 0xbe, 0x7b, 0x92, 0x42, 0x1e, 0xea, 0x69, 0x14, 0x46, 0xd2, 0x2c,
];

#[derive(Debug, arbitrary::Arbitrary)]
struct Input<'a> {
    key: Option<&'a [u8]>,
    zone: Option<&'a str>,
    headers: Vec<(&'a str, &'a [u8])>,
    require: bool,
    current: Option<(u64, [u8; 32])>,
}

fuzz_target!(|input: Input<'_>| {
    let me = Me {
        hostname: "resolver1",
        zone_id: input.zone,
    };
    let _ = headers::recipient(input.key, input.headers.iter().copied(), me);
    let Ok(parsed) = headers::parse(input.headers.iter().copied()) else {
        return;
    };
    assert!(parsed.chunk.index >= 1 && parsed.chunk.index <= parsed.chunk.total);
    let Ok(name) = kres_kafka_guest::name::check(parsed.file_name) else {
        return;
    };
    // An invalid key is the host's to refuse; the fuzzer keeps to a valid one.
    let Ok(trust) = Trust::new(&[TRUSTED.to_vec()], input.require) else {
        return;
    };
    let recipient = Recipient::Host("resolver1".into());
    let others = [Recipient::Zone("z".into())];
    let mut verified = Vec::new();
    if let Ok(Some(signed)) = signature::check(
        &trust,
        name,
        &parsed,
        &recipient,
        &others,
        &mut verified,
        &signature::verify_ed25519,
    ) {
        let current = input.current.map(|(at, sha256)| Signed { at, sha256 });
        let _ = signature::check_fresh(name, &signed, current.as_ref());
    }
});
