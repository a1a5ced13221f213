//! `file-name` rules: whatever is accepted stays inside the directory.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|name: &str| {
    if let Ok(checked) = kres_kafka_guest::name::check(name) {
        let path = std::path::Path::new(checked);
        assert!(path.is_relative(), "{checked:?}");
        assert!(
            path.components()
                .all(|c| matches!(c, std::path::Component::Normal(_))),
            "{checked:?}"
        );
        assert!(!checked.contains('\0'));
    }
});
