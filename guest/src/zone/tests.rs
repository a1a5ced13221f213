use super::*;

fn judge(s: &str) -> Result<Summary, ZoneError> {
    judge_rpz(s.as_bytes())
}

fn refused(s: &str) -> Reason {
    judge(s).expect_err(s).reason
}

fn accepted(s: &str) -> Summary {
    judge(s).unwrap_or_else(|e| panic!("{s:?}: {e}"))
}

const TYPICAL: &str = "\
$TTL 2h
@ IN SOA localhost. root.localhost. ( 2024010101 ; serial
        1h 15m 30d 2h )
    IN NS localhost.
ads.example CNAME .
*.ads.example CNAME .
nodata.example 300 IN CNAME *.
pass.example CNAME rpz-passthru.
local.example A 192.0.2.1
local.example AAAA 2001:db8::1
local.example TXT \"blocked by policy\" \"second\"
";

#[test]
fn a_typical_rpz_is_accepted_and_its_skips_counted() {
    let s = accepted(TYPICAL);
    assert_eq!(s.records, 9);
    assert_eq!(s.skipped, 1);
    let first = s.first_skipped.unwrap();
    assert_eq!(first.line, 8);
    assert!(first.reason.contains("rpz-passthru"), "{}", first.reason);
}

#[test]
fn every_split_of_the_input_gives_the_same_verdict() {
    let bad = format!("{TYPICAL}x TXT \"a\" (\n \"b\" ) trailing\n");
    for text in [TYPICAL, bad.as_str()] {
        let whole = judge(text);
        for at in 0..=text.len() {
            let mut j = RpzJudge::new();
            let split = j
                .feed(&text.as_bytes()[..at])
                .and_then(|()| j.feed(&text.as_bytes()[at..]))
                .and_then(|()| j.finish());
            assert_eq!(split, whole, "split at {at}");
        }
        let mut j = RpzJudge::new();
        let bytes = text
            .as_bytes()
            .iter()
            .try_for_each(|b| j.feed(std::slice::from_ref(b)));
        assert_eq!(bytes.and_then(|()| j.finish()), whole);
    }
}

#[test]
fn the_error_names_its_line() {
    let e = judge("a A 1.2.3.4\n\nb WKS 1.2.3.4 6 25\n").unwrap_err();
    assert_eq!(e.line, 3);
    assert_eq!(
        e.to_string(),
        "line 3: record type \"WKS\" is not supported by the resolver's zone loader"
    );
    let e = judge("a TXT ( \"x\"\n\n \"y\" ) )\n").unwrap_err();
    assert_eq!(e.line, 3);
    assert_eq!(e.reason, Reason::UnopenedParenthesis);
}

#[test]
fn include_is_refused_whatever_it_names() {
    assert_eq!(refused("$INCLUDE /etc/passwd\n"), Reason::Include);
    assert_eq!(refused("$include missing.zone example.\n"), Reason::Include);
}

#[test]
fn directives_are_case_blind_and_strict() {
    accepted("$ttl 1w\n$Origin example.\n@ A 1.2.3.4\n");
    assert!(matches!(refused("$TTL\n"), Reason::Unexpected { .. }));
    assert!(matches!(refused("$TTL 1h30\n"), Reason::Unexpected { .. }));
    assert!(matches!(refused("$FOO 1\n"), Reason::Directive(_)));
    assert_eq!(refused("$ORIGIN example\n"), Reason::RelativeOrigin);
    assert_eq!(refused("$ORIGIN @\n"), Reason::RelativeOrigin);
    assert!(matches!(
        refused("$TTL 4294967296\n"),
        Reason::TimeTooLarge { .. }
    ));
}

#[test]
fn unknown_type_and_class_mnemonics_are_refused() {
    assert_eq!(
        refused("a WKS 1.2.3.4 6 25\n"),
        Reason::UnknownType("WKS".into())
    );
    assert_eq!(refused("a BLOCK .\n"), Reason::UnknownType("BLOCK".into()));
    assert_eq!(refused("a CH A 1.2.3.4\n"), Reason::Class("CH".into()));
    assert_eq!(refused("a HS TXT x\n"), Reason::Class("HS".into()));
    assert!(matches!(
        refused("a TYPE65536 \\# 0\n"),
        Reason::NumberTooLarge { .. }
    ));
    accepted("a in 60 a 1.2.3.4\na 60 IN A 1.2.3.4\na IN A 1.2.3.4\n");
    assert!(matches!(
        refused("a IN IN A 1.2.3.4\n"),
        Reason::UnknownType(_)
    ));
}

#[test]
fn types_without_a_judged_text_form_are_refused_but_their_generic_form_is_not() {
    assert!(matches!(refused("a DS 1 8 2 abcd\n"), Reason::UnjudgedType(t) if t == "DS"));
    assert!(matches!(
        refused("a HTTPS 1 . alpn=h2\n"),
        Reason::UnjudgedType(_)
    ));
    assert_eq!(refused("a TYPE65534 ab\n"), Reason::NoTextForm(65534));
    let s = accepted("a DS \\# 4 0001 0802\na TYPE65534 \\# 0\na TYPE1 1.2.3.4\n");
    assert_eq!(s.skipped, 1);
}

#[test]
fn generic_data_must_match_its_length() {
    accepted("a A \\# 4 c0000201\na TYPE300 \\# 3 ( 01 02\n 03 )\n");
    assert_eq!(
        refused("a A \\# 4 c00002\n"),
        Reason::GenericLength {
            declared: 4,
            actual: 3
        }
    );
    // Types zscanner reads in text form may not be empty, others may.
    assert!(matches!(refused("a A \\# 0\n"), Reason::Unexpected { .. }));
    assert!(matches!(
        refused("a TYPE300 \\# 00\n"),
        Reason::Unexpected { .. }
    ));
    assert!(matches!(
        refused("a TYPE300 \\# 1 abc\n"),
        Reason::Unexpected { .. }
    ));
    assert_eq!(
        refused("a CNAME \\# 1 00\n"),
        Reason::GenericName("CNAME".into())
    );
}

#[test]
fn crlf_is_refused_but_a_cr_inside_a_comment_is_not() {
    assert_eq!(refused("a A 1.2.3.4\r\n"), Reason::Crlf);
    assert_eq!(refused("\r\n"), Reason::Crlf);
    accepted("a A 1.2.3.4 ; note\r\n");
}

#[test]
fn blank_space_at_the_start_of_a_line_needs_a_previous_owner() {
    assert_eq!(refused("  \na A 1.2.3.4\n"), Reason::NoPreviousOwner);
    assert_eq!(refused("\t; note\na A 1.2.3.4\n"), Reason::NoPreviousOwner);
    assert_eq!(refused("(\n)\n"), Reason::NoPreviousOwner);
    let s = accepted("; note\na A 1.2.3.4\n  \n\tAAAA ::1\n");
    assert_eq!(s.records, 2);
}

#[test]
fn parentheses_must_balance() {
    assert_eq!(refused("a A 1.2.3.4 )\n"), Reason::UnopenedParenthesis);
    assert_eq!(refused("a TXT ( ( x )\n"), Reason::NestedParenthesis);
    assert_eq!(refused("a TXT ( x\n"), Reason::UnclosedParenthesis);
    accepted("a TXT ( x ; note\n y ) ; done\n");
    accepted("a A 1.2.3.4 ( ; note\n )\n");
    // An unquoted string ends at a parenthesis.
    assert_eq!(refused("a TXT a(b\n"), Reason::UnclosedParenthesis);
}

#[test]
fn owners_follow_the_name_limits() {
    accepted(&format!("{} A 1.2.3.4\n", "a".repeat(63)));
    assert!(matches!(
        refused(&format!("{} A 1.2.3.4\n", "a".repeat(64))),
        Reason::LabelTooLong { .. }
    ));
    let long = vec!["a".repeat(63); 4].join(".");
    assert_eq!(refused(&format!("{long} A 1.2.3.4\n")), Reason::NameTooLong);
    assert_eq!(refused("a..b A 1.2.3.4\n"), Reason::EmptyLabel);
    assert!(matches!(
        refused("a\"b A 1.2.3.4\n"),
        Reason::Unexpected { .. }
    ));
    assert!(matches!(refused("a\n"), Reason::Unexpected { .. }));
    accepted("a\\ b\\.c\\000\\255 A 1.2.3.4\n");
}

#[test]
fn late_soa_with_another_owner_aborts_the_loader() {
    let late = "a CNAME .\nexample. SOA ns. host. 1 2 3 4 5\n";
    assert!(matches!(refused(late), Reason::LateSoa { .. }));
    // At the apex (the origin, before any SOA) it is only a warning.
    accepted("$ORIGIN example.\na CNAME .\n@ SOA ns. host. 1 2 3 4 5\n");
    // A repeated SOA at the first SOA's owner is ignored.
    accepted("@ SOA ns. host. 1 2 3 4 5\na CNAME .\n@ SOA ns. host. 2 2 3 4 5\n");
    let other = "rpz. SOA ns. host. 1 2 3 4 5\na.rpz. CNAME .\nother. SOA ns. host. 1 2 3 4 5\n";
    assert!(matches!(refused(other), Reason::LateSoa { .. }));
    // Owner case matters to the loader's comparison.
    let case = "rpz. SOA ns. host. 1 2 3 4 5\na.rpz. CNAME .\nRPZ. SOA ns. host. 1 2 3 4 5\n";
    assert!(matches!(refused(case), Reason::LateSoa { .. }));
    // The loader cuts an apex owner to `.` in place: a blank owner after it is `.`.
    let cut = "$ORIGIN rpz.\n@ SOA ns root 1 2 3 4 5\n@ NS ns\n  SOA ns root 2 2 3 4 5\n";
    assert!(matches!(refused(cut), Reason::LateSoa { .. }));
    accepted("$ORIGIN rpz.\n@ SOA ns root 1 2 3 4 5\n  SOA ns root 2 2 3 4 5\n");
    // Records the loader skips before its SOA check do not count as seen.
    accepted("x.rpz-ip CNAME .\nexample. SOA ns. host. 1 2 3 4 5\n");
}

#[test]
fn records_the_loader_skips_are_counted_not_refused() {
    let s = accepted(
        "rpz. SOA ns. host. 1 2 3 4 5\n\
         rpz. NS ns.\n\
         a.rpz. NS ns.\n\
         out. A 1.2.3.4\n\
         d.rpz. CNAME rpz-drop.\n\
         t.rpz. CNAME rpz-tcp-only.\n\
         32.1.2.0.192.rpz-client-ip.rpz. CNAME .\n\
         k.rpz. DNSKEY \\# 4 01000308\n",
    );
    // The loader looks only at the last label for `rpz-`: the client-ip trigger is loaded.
    assert_eq!(s.records, 8);
    assert_eq!(s.skipped, 5);
    assert_eq!(s.first_skipped.unwrap().line, 3);
}

#[test]
fn ttls_follow_zscanners_overflow_rules() {
    accepted("a 4294967295 A 1.2.3.4\na 1w2d3h4m5s A 1.2.3.4\n");
    for ttl in ["4294967296", "4294967297", "7102w", "4294967294s1s"] {
        assert!(
            matches!(
                refused(&format!("a {ttl} A 1.2.3.4\n")),
                Reason::TimeTooLarge { .. }
            ),
            "{ttl}"
        );
    }
}

#[test]
fn addresses_follow_inet_pton() {
    accepted("a A 0.0.0.0\na AAAA ::ffff:192.0.2.1\n");
    assert!(matches!(refused("a A 1.2.3.256\n"), Reason::BadIpv4(_)));
    assert!(matches!(refused("a A 1.2.3\n"), Reason::BadIpv4(_)));
    assert!(matches!(
        refused("a A 1.2.3.4x\n"),
        Reason::Unexpected { .. }
    ));
    assert!(matches!(refused("a AAAA 1::2::3\n"), Reason::BadIpv6(_)));
    assert!(matches!(refused("a AAAA 1.2.3.4\n"), Reason::BadIpv6(_)));
}

#[test]
fn text_follows_zscanners_string_rules() {
    // TXT splits a long string; other types do not.
    accepted(&format!("a TXT \"{}\"\n", "x".repeat(300)));
    assert!(matches!(
        refused(&format!("a HINFO \"{}\" os\n", "x".repeat(256))),
        Reason::StringTooLong { len: 256, .. }
    ));
    let big = format!("a TXT {}\n", vec!["x".repeat(255); 256].join(" "));
    assert_eq!(refused(&big), Reason::RdataTooLong);
    let fits = format!("a TXT {}\n", vec!["x".repeat(255); 255].join(" "));
    accepted(&fits);
    assert!(matches!(
        refused("a TXT \"caf\u{e9}\"\n"),
        Reason::Unexpected { .. }
    ));
    let latin1 = judge_rpz(b"a TXT \"a\xff\"\n").unwrap_err();
    assert_eq!(
        latin1.reason,
        Reason::Unexpected {
            byte: 0xff,
            where_: "in a quoted character-string"
        }
    );
    assert_eq!(refused("a TXT \"open\n"), Reason::UnterminatedString);
    assert_eq!(refused("a TXT \\256\n"), Reason::EscapeTooLarge);
    accepted("a TXT (\"in\nparens\")\n");
}

#[test]
fn record_data_must_be_whole_and_alone() {
    assert_eq!(refused("a A\n"), Reason::MissingRdata("A".into()));
    assert_eq!(
        refused("a CNAME ;x\n"),
        Reason::MissingRdata("CNAME".into())
    );
    assert!(matches!(
        refused("a A 1.2.3.4 5.6.7.8\n"),
        Reason::Unexpected { .. }
    ));
    assert!(matches!(refused("a MX 10;x\n"), Reason::Unexpected { .. }));
    accepted("a CNAME .;x\na MX 10 mail\na SRV 0 5 5060 sip.example.\n");
    accepted("a NAPTR 100 10 \"u\" \"E2U+sip\" \"!^.*$!sip:x@example!\" .\n");
    accepted("a CAA 0 issue \"ca.example\"\na HINFO PC Linux\na SPF \"v=spf1 -all\"\n");
    accepted("a URI 10 1 \"https://example\"\na PTR b.\na DNAME b.\n");
}

#[test]
fn nul_is_refused_except_in_a_comment() {
    assert!(matches!(
        refused("a A 1.2.3.4\0\n"),
        Reason::Unexpected { byte: 0, .. }
    ));
    accepted("a A 1.2.3.4 ; \0\n");
}

#[test]
fn the_end_of_the_file_needs_no_newline_but_may_not_cut_a_record() {
    accepted("");
    accepted("; only a comment");
    accepted("a A 1.2.3.4");
    assert_eq!(refused("a TXT \"open"), Reason::UnterminatedString);
    assert_eq!(refused("a\\"), Reason::EndInsideRecord);
}

#[test]
fn relative_names_take_the_current_origin() {
    let s = accepted(
        "$ORIGIN rpz.example.\n@ SOA ns root 1 2 3 4 5\nbad CNAME .\n$ORIGIN other.\nx CNAME .\n",
    );
    // x.other. is outside the apex rpz.example.
    assert_eq!(s.skipped, 1);
}

#[test]
fn an_overlong_record_is_refused_while_streaming() {
    let mut j = RpzJudge::new();
    j.feed(b"a TXT (").unwrap();
    let chunk = vec![b' '; 64 << 10];
    let mut result = Ok(());
    for _ in 0..17 {
        result = j.feed(&chunk);
        if result.is_err() {
            break;
        }
    }
    assert_eq!(result.unwrap_err().reason, Reason::RecordTooLong);
}

/// The corpus in `tests/fixtures/rpz`: every file's verdict must be the real loader's, as
/// recorded in `verdicts.tsv` (checked with `loader.lua` against Knot Resolver 6.4.2).
#[test]
fn the_corpus_gets_the_loaders_verdicts() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/rpz");
    let table = std::fs::read_to_string(dir.join("verdicts.tsv")).unwrap();
    let mut checked = 0;
    let mut wrong = Vec::new();
    for line in table
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let mut cols = line.split('\t');
        let (file, verdict) = (cols.next().unwrap(), cols.next().unwrap());
        let bytes = std::fs::read(dir.join(file)).unwrap();
        let ours = judge_rpz(&bytes);
        let agrees = match verdict {
            "accept" => ours.is_ok(),
            "refuse" => ours.is_err(),
            other => panic!("{file}: verdict {other:?}"),
        };
        if !agrees {
            wrong.push(format!("{file}: loader {verdict}, judge {ours:?}"));
        }
        checked += 1;
    }
    assert!(checked >= 40, "only {checked} files in the corpus");
    assert!(wrong.is_empty(), "{wrong:#?}");
}

proptest::proptest! {
    /// Lines `NAME CNAME .` and `NAME CNAME *.`, read whole at once, get the verdict the
    /// token-by-token reading gives the same lines written with two blanks (which it alone
    /// reads): the same records, skips, first skip and error, whatever the owners (relative,
    /// absolute, outside the apex, `rpz-` labels, escapes, the apex itself) and the zone.
    #[test]
    fn common_lines_read_whole_get_the_token_by_token_verdict(
        header in proptest::sample::select(vec![
            "",
            "$ORIGIN rpz.example.\n@ SOA a. b. 1 2 3 4 5\n",
            "@ SOA a. b. 1 2 3 4 5\n",
            "$ORIGIN rpz.example.\n",
        ]),
        lines in proptest::collection::vec(
            (
                proptest::sample::select(vec![
                    "ads", "*.ads", "ads.example.", "x.rpz.example.", "rpz.example.", "@",
                    "a.rpz-drop", "a\\000b", "a\\.b", ".", "a..b", "other.test.",
                ]),
                proptest::sample::select(vec![".", "*.", "rpz-drop.", "x."]),
            ),
            1..8,
        ),
    ) {
        let mut whole = header.to_owned();
        let mut by_token = header.to_owned();
        for (owner, target) in &lines {
            whole.push_str(&format!("{owner} CNAME {target}\n"));
            by_token.push_str(&format!("{owner}  CNAME {target}\n"));
        }
        proptest::prop_assert_eq!(judge(&whole), judge(&by_token));
    }
}

use proptest::strategy::Strategy as _;

/// The verdict of reading `text` in two pieces cut at `cut`, quick lines on or off.
fn judge_in_two(text: &[u8], cut: usize, quick: bool) -> Result<Summary, ZoneError> {
    let mut j = if quick {
        RpzJudge::new()
    } else {
        RpzJudge::without_quick_lines()
    };
    let cut = cut.min(text.len());
    j.feed(&text[..cut])
        .and_then(|()| j.feed(&text[cut..]))
        .and_then(|()| j.finish())
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(2000))]
    /// Files of block-list lines among everything that changes what such a line means (origins,
    /// apexes, owners the loader skips or refuses, lines that continue the last owner, an SOA
    /// after them) get from the quick lines the verdict of reading every line token by token:
    /// the same records, skips, first skip, and error with its line, wherever the pieces are
    /// cut.
    #[test]
    fn quick_lines_get_the_token_by_token_verdict(
        header in proptest::sample::select(vec![
            "",
            "$ORIGIN rpz.example.\n@ SOA a. b. 1 2 3 4 5\n",
            "@ SOA a. b. 1 2 3 4 5\n",
            "$ORIGIN rpz.example.\n",
            "rpz.example. SOA a. b. 1 2 3 4 5\n$ORIGIN example.\n",
            "rpz.example. SOA a. b. 1 2 3 4 5\n$ORIGIN x.rpz.example.\n",
            "$ORIGIN a.rpz-x.\n",
            ". SOA a. b. 1 2 3 4 5\n",
            "$ORIGIN rpz.example.\n. SOA a. b. 1 2 3 4 5\n",
            "rpz.example. SOA a. b. 1 2 3 4 5\n$ORIGIN .\n",
            "$ORIGIN a\\098c.\n",
        ]),
        lines in proptest::collection::vec(
            proptest::prop_oneof![
                6 => (
                    proptest::prop_oneof![
                        3 => proptest::sample::select(vec![
                            "ads", "*.ads", "ads.example.", "A-b_c/d.Ex9", "rpz", "a.",
                            "x.rpz.example.",
                        ]),
                        1 => proptest::sample::select(vec![
                            "rpz.example.", "a.rpz-drop", "rpz-x", "rpz-x.", "a.rpz-x.",
                            "a..b", ".a", "a\\000b", "@", "other.test.",
                            "abcdefghijklmnopqrstuvwxyzabcdefghijklmnopqrstuvwxyzabcdefghijk",
                            "abcdefghijklmnopqrstuvwxyzabcdefghijklmnopqrstuvwxyzabcdefghijkl",
                            "abcdefghijklmnopqrstuvwxyzabcdefghijklmnopqrstuvwxyzabcdefghij.",
                            "abcdefghijklmnopqrstuvwxyzabcdefghijklmnopqrstuvwxyzabcdefghijkl.",
                            "a.b.c.d.e.f.g.h.i.j.k.l.m.n.o.p.q.r.s.t.u.v.w.x.y.z.a.b.c.d.e.f",
                            // As long as a relative owner may be under the long origin below
                            // (49 bytes), and one byte more.
                            "abcdefghijklmnopqrstuvwxyzabcdefghijklmnopqrstuvw",
                            "abcdefghijklmnopqrstuvwxyzabcdefghijklmnopqrstuvwx",
                            "RPZ-x", "a.RPZ-x.",
                        ]),
                    ],
                    proptest::prop_oneof![
                        3 => proptest::sample::select(vec![" CNAME .\n", " CNAME *.\n"]),
                        1 => proptest::sample::select(vec![
                            "  CNAME .\n", " CNAME rpz-drop.\n", " CNAME .", " cname .\n",
                            " CNAME . ; c\n", " A 192.0.2.1\n",
                        ]),
                    ],
                ).prop_map(|(owner, rest)| format!("{owner}{rest}")),
                1 => proptest::sample::select(vec![
                    "$ORIGIN rpz.example.\n", "$ORIGIN example.\n", "$ORIGIN a\\000b.\n",
                    "$ORIGIN rpz-x.example.\n", "$ORIGIN x.rpz.example.\n", "$ORIGIN a.rpz-x.\n",
                    "$ORIGIN oooooooooooooooooooooooooooooooooooooooooooooooooo.oooooooooooooooooooooooooooooooooooooooooooooooooo.oooooooooooooooooooooooooooooooooooooooooooooooooo.oooooooooooooooooooooooooooooooooooooooooooooooooo.\n",
                    "@ SOA a. b. 1 2 3 4 5\n", "rpz.example. SOA a. b. 1 2 3 4 5\n",
                    " A 192.0.2.1\n", " SOA a. b. 1 2 3 4 5\n", "; comment\n", "\n",
                    "x.example. NS a.\n", "$TTL 300\n",
                ]).prop_map(str::to_owned),
            ],
            1..40,
        ),
        cut in 0usize..2000,
        piece in 1usize..80,
    ) {
        let text = format!("{header}{}", lines.concat());
        let slow = judge_in_two(text.as_bytes(), cut, false);
        proptest::prop_assert_eq!(&judge_in_two(text.as_bytes(), cut, true), &slow);
        // In small pieces: quick lines at every distance from a piece's end, and records
        // carried from piece to piece.
        let mut j = RpzJudge::new();
        let small = text
            .as_bytes()
            .chunks(piece)
            .try_for_each(|p| j.feed(p))
            .and_then(|()| j.finish());
        proptest::prop_assert_eq!(&small, &slow);
    }
}

#[test]
fn a_block_list_is_read_in_quick_lines_with_the_same_summary() {
    let mut text = String::from("$TTL 300\n@ SOA a. b. 1 2 3 4 5\n");
    for i in 0..2000 {
        text.push_str(&format!("n{i}.example CNAME .\n*.n{i}.example CNAME *.\n"));
    }
    text.push_str("a.rpz-drop CNAME .\nx.test. CNAME rpz-passthru.\n");
    let quick = judge_in_two(text.as_bytes(), text.len() / 3, true);
    assert_eq!(quick, judge_in_two(text.as_bytes(), text.len() / 3, false));
    assert_eq!(quick.unwrap().records, 4003);
}

/// The quick lines are taken at all (the property test holds only what they give): on x86-64,
/// the only architecture they read.
#[cfg(target_arch = "x86_64")]
#[test]
fn quick_lines_take_a_run_of_block_list_lines_but_its_last() {
    let judge = RpzJudge::new();
    let run = "ads.example CNAME .\n*.ads.example CNAME *.\nx.test. CNAME .\n";
    let text = format!("{run}; the run ends\n{}", " ".repeat(16));
    let last = run.len() - "x.test. CNAME .\n".len();
    assert_eq!(judge.zone.quick_lines(text.as_bytes()), (last, 2));
    // Not one of them: a type the quick lines do not read, a skipped owner, a comment.
    for other in ["a.example A 192.0.2.1\n", "a.rpz-x CNAME .\n", "; c\n"] {
        let text = format!("{other}{run}{}", " ".repeat(16));
        assert_eq!(judge.zone.quick_lines(text.as_bytes()), (0, 0), "{other}");
    }
}
