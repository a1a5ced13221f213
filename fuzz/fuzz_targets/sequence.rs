//! The stateful target: a sequence of publications, deliveries (with crashes at any flush of a
//! batch's commit), replays and maintenance through the guest's `process` over a real
//! directory, every promise of the README checked after each step (see
//! `kres_kafka_guest::process::model`).
#![no_main]

use kres_kafka_guest::process::model::{Step, check_sequence};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|steps: Vec<Step>| {
    if steps.len() <= 64 {
        check_sequence(steps);
    }
});
