//! Parsing of References / In-Reply-To against independent vectors: Thunderbird's table and
//! Hyperkitty's malformed headers.

use crate::common::corpora_dir;
use postern::domain::parse_message_ids;
use postern::ingest::parse_message;

#[test]
fn thunderbird_reference_parsing_vectors() {
    let path = corpora_dir().join("threading-header-vectors/thunderbird-references-parsing.json");
    let doc: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    let cases = doc["cases"].as_array().unwrap();
    assert_eq!(cases.len(), 24);
    let mut failures = Vec::new();
    for (i, case) in cases.iter().enumerate() {
        let input = case["input"].as_str().unwrap();
        let want: Vec<String> = case["expected"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap().to_string())
            .collect();
        let got = parse_message_ids(input);
        if got != want {
            failures.push(format!(
                "case {}: {input:?} -> {got:?}, expected {want:?}",
                i + 1
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

fn hyperkitty(name: &str) -> Vec<u8> {
    let raw = std::fs::read(
        corpora_dir()
            .join("hyperkitty-testdata/hyperkitty/tests/testdata")
            .join(name),
    )
    .unwrap();
    // These files start with an mbox "From " line; the message begins after it.
    match raw.iter().position(|&b| b == b'\n') {
        Some(i) if raw.starts_with(b"From ") => raw[i + 1..].to_vec(),
        _ => raw,
    }
}

#[test]
fn hyperkitty_strange_and_wrong_in_reply_to() {
    // Their From header is "test at example.com": the envelope sender stands in.
    let sender = Some("test@example.com");
    let strange = parse_message(&hyperkitty("strange-in-reply-to-header.txt"), sender).unwrap();
    assert_eq!(
        strange.in_reply_to.as_deref(),
        Some("200704070053.46646.other.person@example.com")
    );
    // The closing bracket is missing: the id is recovered all the same.
    let wrong = parse_message(&hyperkitty("wrong-in-reply-to-header.txt"), sender).unwrap();
    assert_eq!(
        wrong.in_reply_to.as_deref(),
        Some("200704070053.46646.other.person@example")
    );
    // Every other Hyperkitty sample parses, with its sender.
    for entry in
        std::fs::read_dir(corpora_dir().join("hyperkitty-testdata/hyperkitty/tests/testdata"))
            .unwrap()
    {
        let path = entry.unwrap().path();
        let raw = hyperkitty(path.file_name().unwrap().to_str().unwrap());
        let parsed = parse_message(&raw, sender);
        assert!(parsed.is_ok(), "{}: {:?}", path.display(), parsed.err());
    }
}
