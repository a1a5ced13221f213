//! The closed schema against upstream's own verdicts: example configs and datamodel test cases
//! from Knot Resolver 6.4.2, kept in `tests/fixtures/kresconf` (its README says where each file
//! comes from and how to refresh them).

use super::*;
use serde_json::json;
use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Instant;

/// `tests/fixtures/kresconf/v6.4.2`, in the repository.
fn upstream() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/kresconf/v6.4.2")
}

fn read(relative: &str) -> Vec<u8> {
    let path = upstream().join(relative);
    std::fs::read(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

fn embedded() -> &'static Schema {
    static SCHEMA: OnceLock<Schema> = OnceLock::new();
    SCHEMA.get_or_init(|| Schema::compile(EMBEDDED_SCHEMA).expect("the embedded schema compiles"))
}

fn refusal(name: &str, content: &[u8]) -> String {
    match validate(name, content, Some(embedded())) {
        Err(Error::InvalidConfig(m)) => m,
        other => panic!("{name}: unexpected {other:?}"),
    }
}

#[test]
fn files_are_configuration_by_their_extension() {
    assert_eq!(Format::of("config.yaml"), Some(Format::Yaml));
    assert_eq!(Format::of("a/b.YML"), Some(Format::Yaml));
    assert_eq!(Format::of("c.json"), Some(Format::Json));
    assert_eq!(Format::of("block.rpz"), None);
    assert_eq!(Format::of("yaml"), None);
}

#[test]
fn the_embedded_schema_is_upstreams_6_4_2_schema() {
    assert_eq!(EMBEDDED_SCHEMA, read("config.schema.json"));
}

#[test]
fn every_valid_upstream_example_is_accepted() {
    // etc-config/README: the examples `kresctl validate` passes, the packaged and dev configs,
    // and the test configs CI merges onto config.dev.yaml (valid alone as far as the schema
    // goes: it has no required keys).
    for file in [
        "config.example.docker.yaml",
        "config.example.internal.yaml",
        "config.example.isp.yaml",
        "config.example.personal.yaml",
        "config.yaml",
        "config.dev.yaml",
        "config.test-defer.yaml",
        "config.test-forward.yaml",
        "config.test-local-data.yaml",
        "config.test-rate-limiting.yaml",
    ] {
        let content = read(&format!("etc-config/{file}"));
        if let Err(e) = validate(file, &content, Some(embedded())) {
            panic!("{file}: {e}");
        }
    }
}

#[test]
fn pre_6_0_configs_are_refused_even_where_the_open_schema_takes_them() {
    // config.migrate-test.yaml passes the schema as published: only closing it refuses the
    // old keys, as the manager does ("unexpected extra key(s)").
    let m = refusal(
        "config.migrate-test.yaml",
        &read("etc-config/config.migrate-test.yaml"),
    );
    assert!(m.contains("unknown key"), "{m}");
    let m = refusal(
        "config.migrate-test2.yaml",
        &read("etc-config/config.migrate-test2.yaml"),
    );
    assert!(
        m.contains("is refused by the resolver's schema at /"),
        "{m}"
    );
}

#[test]
fn upstream_datamodel_cases_valid_upstream_are_accepted_and_the_schema_ones_refused() {
    let cases: Vec<Value> =
        serde_json::from_slice(&read("datamodel-test-cases/cases.json")).unwrap();
    let (mut valid, mut invalid, mut refused) = (0, 0, 0);
    for case in &cases {
        let full = case["full_config"].to_string();
        let verdict = validate("case.json", full.as_bytes(), Some(embedded()));
        let label = format!("{} at {}", case["source"], case["json_pointer"]);
        if case["valid_in_upstream_test"] == true {
            // Includes the RuleSchema case with `tags: [t01]`: refused by the manager as a
            // whole config for a cross-field rule (tags must be in /views), not by the schema.
            valid += 1;
            if let Err(e) = verdict {
                panic!("{label}: valid upstream, refused here: {e}");
            }
        } else {
            invalid += 1;
            match verdict {
                Err(e) => {
                    refused += 1;
                    eprintln!("refused {label}: {e}");
                }
                Ok(_) => assert_ne!(
                    case["json_schema_v6.4.2_accepts"], false,
                    "{label}: the open schema refuses it, the closed one must too"
                ),
            }
        }
    }
    eprintln!(
        "datamodel cases: {valid} valid upstream, all accepted; \
         {refused} of {invalid} invalid ones refused by the closed schema"
    );
    assert_eq!((valid, invalid), (43, 18), "cases.json changed");
    assert!(refused >= 3, "{refused}");
}

#[test]
fn a_json_config_with_a_trailing_comma_is_accepted() {
    let doc = validate(
        "config.json",
        b"{\"workers\": 2, \"cache\": {\"size-max\": \"1G\",},}\n",
        Some(embedded()),
    )
    .unwrap();
    assert_eq!(doc, json!({"workers": 2, "cache": {"size-max": "1G"}}));
}

#[test]
fn a_misspelt_key_is_refused_naming_it_and_the_keys_allowed() {
    let m = refusal("config.yaml", b"netwrok:\n  listen: []\n");
    assert!(
        m.starts_with(
            "configuration \"config.yaml\" is refused by the resolver's schema at /netwrok: \
             unknown key \"netwrok\"; the keys allowed here are: "
        ),
        "{m}"
    );
    assert!(m.contains("network"), "{m}");
    let m = refusal("config.yaml", b"cache:\n  size-maxx: 1G\n");
    assert!(
        m.contains("at /cache/size-maxx: unknown key \"size-maxx\"") && m.contains("size-max,"),
        "{m}"
    );
    // Deep in a list, and inside an alternative (a server given as a mapping, not a string).
    let m = refusal(
        "c.yaml",
        b"forward:\n  - subtree: example.com\n    servers:\n      - address: 192.0.2.1\n        transpor: tls\n",
    );
    assert!(
        m.contains("at /forward/0/servers/0/transpor: unknown key \"transpor\""),
        "{m}"
    );
}

#[test]
fn a_wrong_type_or_out_of_range_value_is_refused_naming_its_place() {
    let cases: [(&[u8], &str); 5] = [
        (
            b"network:\n  listen:\n    - interface: 127.0.0.1\n      port: 99999\n",
            "at /network/listen/0/port: 99999 is greater than the maximum of 65535",
        ),
        (
            b"network:\n  listen:\n    - interface: 127.0.0.1\n      port: '53'\n",
            "at /network/listen/0/port: \"53\" is not null or an integer",
        ),
        (
            b"workers: 0\n",
            "at /workers: 0 is less than the minimum of 1",
        ),
        (
            b"cache:\n  size-max: 1 GB\n",
            "at /cache/size-max: \"1 GB\" does not match",
        ),
        // Quoted, `yes` is a string to YAML 1.1 too.
        (
            b"dnssec:\n  log-bogus: 'yes'\n",
            "at /dnssec/log-bogus: \"yes\" is not a boolean",
        ),
    ];
    for (content, why) in cases {
        let m = refusal("config.yaml", content);
        assert!(
            m.starts_with("configuration \"config.yaml\" is refused by the resolver's schema")
                && m.contains(why),
            "{m:?} lacks {why:?}"
        );
    }
}

/// The `Value` of `v` in the one-key YAML document `v: {scalar}`.
fn yaml_value(scalar: &str) -> Value {
    let doc = parse("c.yaml", format!("v: {scalar}\n").as_bytes())
        .unwrap_or_else(|e| panic!("v: {scalar}: {e}"));
    doc["v"].clone()
}

/// The message refusing the YAML document `content`.
fn yaml_refusal(content: &str) -> String {
    match parse("c.yaml", content.as_bytes()) {
        Err(Error::InvalidConfig(m)) => {
            assert!(
                m.starts_with("configuration \"c.yaml\" is not valid YAML: "),
                "{m}"
            );
            m
        }
        other => panic!("{content:?}: unexpected {other:?}"),
    }
}

#[test]
fn plain_scalars_are_typed_by_yaml_1_1_as_the_managers_pyyaml_types_them() {
    let cases = [
        ("yes", json!(true)),
        ("Yes", json!(true)),
        ("on", json!(true)),
        ("ON", json!(true)),
        ("True", json!(true)),
        ("off", json!(false)),
        ("no", json!(false)),
        ("NO", json!(false)),
        // Not booleans to PyYAML, nor odd cases.
        ("y", json!("y")),
        ("n", json!("n")),
        ("yES", json!("yES")),
        ("0755", json!(493)),
        ("-0755", json!(-493)),
        ("0x1F", json!(31)),
        ("0b101", json!(5)),
        ("1_000", json!(1000)),
        ("1:30", json!(90)),
        ("190:20:30", json!(685_230)),
        ("09", json!("09")),
        ("0o17", json!("0o17")),
        ("0", json!(0)),
        ("-12", json!(-12)),
        // A float needs a dot, and an exponent needs its sign.
        ("1e3", json!("1e3")),
        ("1.0e3", json!("1.0e3")),
        ("1.5e+3", json!(1500.0)),
        ("1.", json!(1.0)),
        (".5", json!(0.5)),
        ("+.5", json!("+.5")),
        ("1:30.5", json!(90.5)),
        ("1_0.2_5", json!(10.25)),
        ("~", json!(null)),
        ("null", json!(null)),
        ("NULL", json!(null)),
        ("", json!(null)),
        ("nULL", json!("nULL")),
        // A date to PyYAML; kept as written (see `yaml11::implicit`).
        ("2001-12-14", json!("2001-12-14")),
        ("1 GB", json!("1 GB")),
    ];
    for (scalar, expected) in cases {
        assert_eq!(yaml_value(scalar), expected, "v: {scalar}");
    }
}

#[test]
fn quoted_and_block_scalars_are_strings_whatever_they_spell() {
    for (scalar, expected) in [
        ("\"yes\"", "yes"),
        ("'on'", "on"),
        ("'0755'", "0755"),
        ("\"~\"", "~"),
        ("|\n  1:30", "1:30\n"),
        (">-\n  off", "off"),
        ("'<<'", "<<"),
    ] {
        assert_eq!(yaml_value(scalar), json!(expected), "v: {scalar}");
    }
}

#[test]
fn core_tags_are_honoured_and_other_tags_refused_by_name() {
    let cases = [
        ("!!str 123", json!("123")),
        ("!!str yes", json!("yes")),
        ("!!str", json!("")),
        ("!!int '12'", json!(12)),
        ("!!int 0x1F", json!(31)),
        ("!!float 1", json!(1.0)),
        ("!!float 1e3", json!(1000.0)),
        ("!!bool 'YES'", json!(true)),
        ("!!null whatever", json!(null)),
        ("!!map {a: 1}", json!({"a": 1})),
        ("!!seq [1]", json!([1])),
        ("!<tag:yaml.org,2002:int> '7'", json!(7)),
        // PyYAML types a scalar tagged `!` alone as a plain one, even quoted.
        ("! '12'", json!(12)),
    ];
    for (scalar, expected) in cases {
        assert_eq!(yaml_value(scalar), expected, "v: {scalar}");
    }
    for (scalar, named) in [
        ("!!binary aGk=", "the tag !!binary is not accepted"),
        (
            "!!timestamp 2001-12-14",
            "the tag !!timestamp is not accepted",
        ),
        ("!!set {a}", "the tag !!set is not accepted"),
        ("!local x", "the tag !local is not accepted"),
        ("!!int abc", "\"abc\" is not an integer"),
        ("!!bool y", "\"y\" is not a boolean"),
        ("!!seq {a: 1}", "the tag !!seq cannot be given to a mapping"),
        ("!!str [1]", "the tag !!str cannot be given to a list"),
    ] {
        let m = yaml_refusal(&format!("v: {scalar}\n"));
        assert!(m.contains(named), "{m:?} lacks {named:?}");
    }
}

#[test]
fn a_boolean_written_the_yaml_1_1_way_passes_the_closed_schema() {
    // Booleans of the 6.4.2 schema, written as the manager's PyYAML reads them.
    let doc = validate(
        "config.yaml",
        b"dnssec:\n  log-bogus: yes\n\
          network:\n  do-ipv6: off\n\
          cache:\n  prefetch:\n    expiring: on\n\
          options:\n  minimize: No\n",
        Some(embedded()),
    )
    .unwrap();
    assert_eq!(doc["dnssec"]["log-bogus"], true);
    assert_eq!(doc["network"]["do-ipv6"], false);
    assert_eq!(doc["cache"]["prefetch"]["expiring"], true);
    assert_eq!(doc["options"]["minimize"], false);
}

#[test]
fn two_spellings_of_one_configuration_parse_to_the_same_value() {
    let yaml = parse(
        "a.yaml",
        b"workers: 0x2\ndnssec: {log-bogus: yes}\ncache:\n  size-max: 1G\n",
    )
    .unwrap();
    let json = parse(
        "b.json",
        br#"{"cache": {"size-max": "1G"}, "dnssec": {"log-bogus": true}, "workers": 2}"#,
    )
    .unwrap();
    assert_eq!(yaml, json);
}

#[test]
fn keys_repeated_as_python_compares_them_are_refused_naming_the_key_and_place() {
    for (content, key) in [
        (
            "a: 1\nb: 2\na: 3\n",
            "\"a\" is given twice in one mapping at line 3 column 1",
        ),
        ("{yes: 1, true: 2}\n", "\"true\" is given twice"),
        ("{1: a, 0x1: b}\n", "\"0x1\" is given twice"),
        ("{1: a, 1.0: b}\n", "\"1.0\" is given twice"),
        ("{~: a, null: b}\n", "\"null\" is given twice"),
        ("{a: 1, 'a': 2}\n", "\"a\" is given twice"),
    ] {
        let m = yaml_refusal(content);
        assert!(m.contains(key), "{m:?} lacks {key:?}");
    }
    // Different to Python, different here: a string and a boolean.
    let doc = parse("c.yaml", b"{'yes': 1, yes: 2, a: 3}\n");
    assert!(doc.is_err(), "the text of both keys is \"yes\": {doc:?}");
    let m = yaml_refusal("? [a]\n: 1\n");
    assert!(
        m.contains("a mapping key must be a scalar, not a list at line 1 column 3"),
        "{m}"
    );
}

#[test]
fn merge_keys_second_documents_and_repeated_anchors_are_refused() {
    for (content, why) in [
        (
            "base: &b {x: 1}\nc:\n  <<: *b\n",
            "YAML merge keys (\"<<\") are not accepted",
        ),
        ("a: <<\n", "YAML merge keys"),
        ("a: =\n", "YAML 1.1's value key"),
        ("a: 1\n---\nb: 2\n", "a second document is not accepted"),
        ("a: 1\n---\n", "a second document is not accepted"),
        (
            "a: &x 1\nb: &x 2\n",
            "anchor &x is defined twice at line 2 column 4",
        ),
        (
            "a: &x [1, *x]\n",
            "an alias is used inside the node its anchor names",
        ),
        ("a: *nowhere\n", "line 1"),
    ] {
        let m = yaml_refusal(content);
        assert!(m.contains(why), "{m:?} lacks {why:?}");
    }
    // One document, however it is marked.
    assert_eq!(
        parse("c.yaml", b"---\na: 1\n...\n").unwrap(),
        json!({"a": 1})
    );
}

#[test]
fn aliases_repeat_what_their_anchor_names() {
    let doc = parse(
        "c.yaml",
        b"base: &b {size-max: 1G, ttl: &t 5s}\ncache: *b\nttl: *t\nlist: [&one 1, *one]\n",
    )
    .unwrap();
    assert_eq!(doc["cache"], json!({"size-max": "1G", "ttl": "5s"}));
    assert_eq!(doc["ttl"], "5s");
    assert_eq!(doc["list"], json!([1, 1]));
    // An alias as a key is its anchor's text.
    let doc = parse("c.yaml", b"k: &k name\n*k : v\n").unwrap();
    assert_eq!(doc["name"], "v");
}

#[test]
fn a_billion_laughs_is_refused_quickly() {
    let mut content = String::from("a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]\n");
    for i in 1..10 {
        let aliases = vec![format!("*a{}", i - 1); 10].join(", ");
        content.push_str(&format!("a{i}: &a{i} [{aliases}]\n"));
    }
    let start = Instant::now();
    let m = yaml_refusal(&content);
    assert!(
        m.contains("anchors and aliases copy more than 1000000 nodes"),
        "{m}"
    );
    assert!(start.elapsed().as_secs() < 5, "{:?}", start.elapsed());
    // Copying one long string many times counts its bytes.
    let long = "x".repeat(1 << 20);
    let content = format!("s: &s {long}\nl: [{}]\n", vec!["*s"; 20].join(", "));
    assert!(yaml_refusal(&content).contains("copy more than"));
}

#[test]
fn nesting_too_deep_is_refused_in_either_syntax() {
    let deep = format!("a: {}{}\n", "[".repeat(200), "]".repeat(200));
    assert!(yaml_refusal(&deep).contains("nest deeper than 128 levels"));
    // Deep through an alias: each half is within the limit, together they are not.
    let half = format!("{}1{}", "[".repeat(100), "]".repeat(100));
    let content = format!(
        "a: &x {half}\nb: {}*x{}\n",
        "[".repeat(100),
        "]".repeat(100)
    );
    assert!(yaml_refusal(&content).contains("nest deeper"));
    let json = format!("{{\"a\": {}{}}}", "[".repeat(200), "]".repeat(200));
    assert!(parse("c.json", json.as_bytes()).is_err());
    // Within the limit, fine.
    let ok = format!("a: {}{}\n", "[".repeat(100), "]".repeat(100));
    parse("c.yaml", ok.as_bytes()).unwrap();
}

#[test]
fn yaml_errors_name_line_and_column() {
    for (content, at) in [
        ("a: 1\nb: [1, 2\n", "line 3"),
        (
            "a:\n  b: 1\n  c: 1\n  b: 2\n",
            "\"b\" is given twice in one mapping at line 4 column 3",
        ),
        (
            "a: 1\nb: \u{1}\n",
            "the character U+0001 is not allowed in YAML at line 2 column 4",
        ),
        (
            "a: 1\nb: .inf\n",
            ".inf is not a finite number at line 2 column 4",
        ),
        (
            "a: 99999999999999999999\n",
            "integer 99999999999999999999 is out of range",
        ),
    ] {
        let m = yaml_refusal(content);
        assert!(m.contains(at), "{m:?} lacks {at:?}");
    }
    let m = match parse("c.yaml", b"a: 1\nb: \xff\n") {
        Err(Error::InvalidConfig(m)) => m,
        other => panic!("{other:?}"),
    };
    assert!(m.contains("not UTF-8 text at line 2 column 4"), "{m}");
}

#[test]
fn a_byte_order_mark_opening_the_file_is_skipped() {
    let doc = parse("c.yaml", "\u{feff}workers: 2\n".as_bytes()).unwrap();
    assert_eq!(doc, json!({"workers": 2}));
}

#[test]
fn parse_errors_come_before_the_schema() {
    let m = refusal("c.yaml", b"a: &x {b: 1}\nc:\n  <<: *x\n");
    assert!(m.contains("merge keys"), "{m}");
    let m = refusal("c.yaml", b"cache:\n  size-max: 1G\n  size-max: 2G\n");
    assert!(m.contains("\"size-max\" is given twice"), "{m}");
}

#[test]
fn without_a_schema_any_mapping_passes() {
    validate("c.yaml", b"anything: [1, 2]\n", None).unwrap();
}

/// `cargo test -p kres-kafka-guest --release -- --ignored --nocapture schema_timings`
#[test]
#[ignore = "a measurement, not a check"]
fn schema_timings() {
    const ROUNDS: u32 = 20;
    let start = Instant::now();
    for _ in 0..ROUNDS {
        Schema::compile(EMBEDDED_SCHEMA).unwrap();
    }
    eprintln!(
        "compile the embedded schema: {:?}",
        start.elapsed() / ROUNDS
    );
    let schema = Schema::compile(EMBEDDED_SCHEMA).unwrap();
    for file in [
        "config.yaml",
        "config.example.isp.yaml",
        "config.test-local-data.yaml",
    ] {
        let content = read(&format!("etc-config/{file}"));
        let start = Instant::now();
        for _ in 0..ROUNDS {
            validate(file, &content, Some(&schema)).unwrap();
        }
        eprintln!(
            "parse and validate {file} ({} bytes): {:?}",
            content.len(),
            start.elapsed() / ROUNDS
        );
    }
}
