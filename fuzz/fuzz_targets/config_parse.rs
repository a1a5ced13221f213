//! A configuration file's bytes through the manager's loaders as the guest runs them: JSON
//! first, then YAML 1.1 (repeated keys and merge keys refused).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    for name in ["config.yaml", "config.json"] {
        let _ = kres_kafka_guest::config::parse(name, data);
    }
});
