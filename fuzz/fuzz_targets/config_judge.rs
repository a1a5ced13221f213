//! The whole judgement of a configuration: parsed, then validated against Knot Resolver's
//! closed JSON Schema (6.4.2, the embedded one), its patterns included.
#![no_main]

use kres_kafka_guest::judge::{self, NoResolver};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = judge::judge(&NoResolver, "config.yaml", data);
});
