//! The wire headers of one message: who it is for, then every header the guest parses,
//! signature fields included. Any bytes: an error, never a panic.
#![no_main]

use kres_kafka_guest::headers::{self, Me};
use libfuzzer_sys::fuzz_target;

#[derive(Debug, arbitrary::Arbitrary)]
struct Input<'a> {
    key: Option<&'a [u8]>,
    zone: Option<&'a str>,
    headers: Vec<(&'a str, &'a [u8])>,
}

fuzz_target!(|input: Input<'_>| {
    let me = Me {
        hostname: "resolver1",
        zone_id: input.zone,
    };
    let _ = headers::recipient(input.key, input.headers.iter().copied(), me);
    if let Ok(parsed) = headers::parse(input.headers.iter().copied()) {
        assert!(parsed.chunk.index >= 1 && parsed.chunk.index <= parsed.chunk.total);
        let _ = kres_kafka_guest::name::check(parsed.file_name);
    }
});
