//! mbox import source: real files written by others (MimeKit's with their known message
//! offsets, CPython's, Mail::Box's) and generated edge cases of every dialect.

use crate::common::files_under;
use postern::import::{
    Content, DateSource, FileSourceOptions, MboxDialect, MboxSource, Position, SourceError,
    SourceMessage,
};
use std::io::Write;
use std::path::{Path, PathBuf};

fn read_all(path: &Path, dialect: MboxDialect, options: &FileSourceOptions) -> Vec<SourceMessage> {
    MboxSource::open(path, dialect, options)
        .unwrap_or_else(|e| panic!("open {}: {e}", path.display()))
        .map(|m| m.unwrap_or_else(|e| panic!("reading {}: {e}", path.display())))
        .collect()
}

/// The messages of `path` read as `Auto` with messages over `max_message_size` left out.
fn read_with_limit(path: &Path, max_message_size: u64) -> Vec<SourceMessage> {
    let options = FileSourceOptions {
        max_message_size,
        ..Default::default()
    };
    read_all(path, MboxDialect::Auto, &options)
}

/// The size and head of an oversized message; panics for any other.
fn oversized(m: &SourceMessage) -> (u64, &[u8]) {
    match &m.content {
        Content::Oversized { size, head } => (*size, head),
        other => panic!("expected oversized, got {other:?}"),
    }
}

fn raw(m: &SourceMessage) -> &[u8] {
    m.raw()
        .unwrap_or_else(|| panic!("message at {} is not complete", m.origin))
}

fn offset(m: &SourceMessage) -> u64 {
    match m.position {
        Position::Mbox { offset } => offset,
        ref other => panic!("not an mbox position: {other}"),
    }
}

fn write_file(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, bytes).expect("write test file");
    path
}

/// The messages of `path` read in `dialect` with the default options.
fn read_default(path: &Path, dialect: MboxDialect) -> Vec<SourceMessage> {
    read_all(path, dialect, &Default::default())
}

/// `bytes` written to a file `name` in a new temporary folder (removed when dropped).
fn temp_file(name: &str, bytes: &[u8]) -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().expect("tmp");
    let path = write_file(tmp.path(), name, bytes);
    (tmp, path)
}

fn mimekit_mbox() -> PathBuf {
    crate::common::corpora_dir().join("mimekit-testdata/UnitTests/TestData/mbox")
}

/// MimeKit's offsets: each message's From_ line (`mboxMarkerOffset`) and its bytes
/// (`beginOffset`..`endOffset`). MimeKit's end excludes the line ending before the next
/// From_ line; we keep the message's own last line ending and drop only a blank separator
/// line, so ours is theirs plus at most one line ending.
///
/// Reads `path` in `dialect` and returns the messages read.
fn check_against_offsets(
    path: &Path,
    dialect: MboxDialect,
    offsets_json: &Path,
    eol: &[u8],
) -> Vec<SourceMessage> {
    let data = std::fs::read(path).expect("read");
    let ours = read_default(path, dialect);
    let expected: serde_json::Value =
        serde_json::from_slice(&std::fs::read(offsets_json).expect("offsets file")).expect("json");
    let expected = expected.as_array().expect("array of messages");
    assert_eq!(
        ours.len(),
        expected.len(),
        "message count for {}",
        offsets_json.display()
    );
    for (m, e) in ours.iter().zip(expected) {
        let marker = e["mboxMarkerOffset"].as_u64().expect("marker");
        let begin = e["beginOffset"].as_u64().expect("begin") as usize;
        let end = e["endOffset"].as_u64().expect("end") as usize;
        assert_eq!(offset(m), marker, "From_ line offset");
        let theirs = &data[begin..end];
        let mine = raw(m);
        assert!(
            mine == theirs || (mine.starts_with(theirs) && &mine[theirs.len()..] == eol),
            "message at {marker}: {} bytes, MimeKit has {} ({}..{})",
            mine.len(),
            theirs.len(),
            begin,
            end
        );
    }
    ours
}

/// Checks MimeKit's `{stem}.mbox.txt` against its LF offsets (read with `Auto`), then a CRLF
/// copy of it read in `crlf_dialect` against its DOS offsets; returns both readings.
fn check_lf_and_crlf(
    stem: &str,
    crlf_dialect: MboxDialect,
) -> (Vec<SourceMessage>, Vec<SourceMessage>) {
    let dir = mimekit_mbox();
    let lf_path = dir.join(format!("{stem}.mbox.txt"));
    let lf_offsets = dir.join(format!("{stem}.unix-offsets.json"));
    let lf = check_against_offsets(&lf_path, MboxDialect::Auto, &lf_offsets, b"\n");
    let tmp = tempfile::tempdir().expect("tmp");
    let crlf_bytes = String::from_utf8_lossy(&std::fs::read(&lf_path).expect("read"))
        .replace('\n', "\r\n")
        .into_bytes();
    let crlf_path = write_file(tmp.path(), &format!("{stem}.dos.mbox"), &crlf_bytes);
    let crlf_offsets = dir.join(format!("{stem}.dos-offsets.json"));
    let crlf = check_against_offsets(&crlf_path, crlf_dialect, &crlf_offsets, b"\r\n");
    (lf, crlf)
}

#[test]
fn mimekit_content_length_mbox_matches_known_offsets_lf_and_crlf() {
    // The LF Content-Length values do not fit the CRLF copy, so messages are delimited by
    // From_ lines; MimeKit never unescapes ">From ", which is our mboxcl2 reading.
    let (lf, crlf) = check_lf_and_crlf("content-length", MboxDialect::Mboxcl2);
    // Thunderbird "From - DATE" lines give the date when a message has no Date header.
    assert!(lf.iter().all(|m| m.date.is_some()));
    assert!(raw(&crlf[0]).ends_with(b"\r\n"));
}

#[test]
fn mimekit_gmail_style_mbox_matches_known_offsets() {
    let (lf, _) = check_lf_and_crlf("issue1189", MboxDialect::Auto);
    assert_eq!(lf[0].date_source, DateSource::Header);
}

#[test]
fn unescaped_from_lines_in_bodies_do_not_split_messages() {
    // MimeKit's simple.mbox.txt: "From - " lines with no blank line before them.
    let simple = read_default(&mimekit_mbox().join("simple.mbox.txt"), MboxDialect::Auto);
    assert_eq!(simple.len(), 3);
    assert!(raw(&simple[2]).starts_with(b"From: fejj@gnome.org\n"));
    // unmunged.mbox.txt starts with a UTF-8 BOM, and its bodies hold "From Russia with love".
    let unmunged = read_default(&mimekit_mbox().join("unmunged.mbox.txt"), MboxDialect::Auto);
    assert_eq!(offset(&unmunged[0]), 3, "the From_ line after the BOM");
    let first = String::from_utf8_lossy(raw(&unmunged[0])).into_owned();
    assert!(
        first.contains("\nFrom Russia with love\n\nWhat does Thunderbird do?"),
        "{first}"
    );
    assert!(String::from_utf8_lossy(raw(&unmunged[1])).starts_with("From: Jeffrey Stedfast"));
    // CPython's mailbox_01.mbox: "From time to time" in a body.
    let cpython = crate::common::corpora_dir()
        .join("cpython-email-testdata/Lib/test/test_email/data/mailbox_01.mbox");
    let msgs = read_default(&cpython, MboxDialect::Auto);
    assert_eq!(msgs.len(), 1);
    assert!(String::from_utf8_lossy(raw(&msgs[0])).contains("\nFrom time to time"));
}

#[test]
fn perl_mail_box_mbox_reads_45_messages_in_lf_and_crlf() {
    let dir = crate::common::corpora_dir().join("perl-mail-box-threads");
    let mut files: Vec<PathBuf> = files_under(&dir)
        .into_iter()
        .filter(|p| {
            std::fs::read(p)
                .map(|d| d.starts_with(b"From "))
                .unwrap_or(false)
        })
        .collect();
    files.sort();
    assert!(
        files.len() >= 2,
        "expected the LF and CRLF mbox files in {}",
        dir.display()
    );
    for f in files {
        let msgs = read_default(&f, MboxDialect::Auto);
        assert_eq!(msgs.len(), 45, "{}", f.display());
        let crlf = std::fs::read(&f)
            .map(|d| d.windows(2).any(|w| w == b"\r\n"))
            .unwrap_or(false);
        for m in &msgs {
            let has_crlf = raw(m).windows(2).any(|w| w == b"\r\n");
            assert_eq!(has_crlf, crlf, "line endings kept in {}", m.origin);
            assert!(raw(m).len() > 100);
        }
    }
}

const M1: &str = "From: a@example.com\nSubject: one\nDate: Mon, 1 Jan 2024 10:00:00 +0000\n\nFrom here on\n>From the start\n>>From quoted twice\nend\n";
const M2: &str = "From: b@example.com\nSubject: two\n\nsecond body\n";

/// Writes messages as an mboxrd writer does: each line matching >*From gets one more '>'.
fn mboxrd(messages: &[&str]) -> Vec<u8> {
    let mut out = Vec::new();
    for m in messages {
        out.extend_from_slice(b"From sender@example.com Mon Jan  1 10:00:00 2024\n");
        for line in m.split_inclusive('\n') {
            let quotes = line.bytes().take_while(|b| *b == b'>').count();
            if line[quotes..].starts_with("From ") {
                out.push(b'>');
            }
            out.extend_from_slice(line.as_bytes());
        }
        out.push(b'\n');
    }
    out
}

#[test]
fn mboxrd_unescaping_round_trips() {
    let (_tmp, path) = temp_file("rd.mbox", &mboxrd(&[M1, M2]));
    let msgs = read_default(&path, MboxDialect::Mboxrd);
    assert_eq!(msgs.len(), 2);
    assert_eq!(raw(&msgs[0]), M1.as_bytes());
    assert_eq!(raw(&msgs[1]), M2.as_bytes());
    // Auto reads mboxrd the same way.
    let auto = read_default(&path, MboxDialect::Auto);
    assert_eq!(raw(&auto[0]), M1.as_bytes());
    assert_eq!(
        msgs[0].date.map(|d| d.to_rfc3339()).as_deref(),
        Some("2024-01-01T10:00:00+00:00")
    );
    assert_eq!(msgs[1].date_source, DateSource::MboxFromLine);
}

#[test]
fn mboxo_unescapes_only_single_quoted_from_lines() {
    // An mboxo writer quotes "From " only; ">From " stays as it was, so ">>From" is ambiguous
    // and mboxo keeps it.
    let file = "From x Mon Jan  1 10:00:00 2024\nSubject: o\n\n>From here\n>>From there\n\nFrom y Mon Jan  1 10:00:00 2024\nSubject: p\n\nbody\n";
    let (_tmp, path) = temp_file("o.mbox", file.as_bytes());
    let msgs = read_default(&path, MboxDialect::Mboxo);
    assert_eq!(raw(&msgs[0]), b"Subject: o\n\nFrom here\n>>From there\n");
    let rd = read_default(&path, MboxDialect::Mboxrd);
    assert_eq!(raw(&rd[0]), b"Subject: o\n\nFrom here\n>From there\n");
}

#[test]
fn mboxcl2_content_length_keeps_from_lines_in_bodies() {
    let tmp = tempfile::tempdir().expect("tmp");
    let body1 = "From the desk of the CEO\nSubject: not a header\n>From stays\n";
    let body2 = "short\n";
    let file = format!(
        "From a Mon Jan  1 10:00:00 2024\nSubject: cl1\nContent-Length: {}\n\n{body1}\nFrom b Mon Jan  1 10:00:00 2024\nSubject: cl2\nContent-Length: {}\n\n{body2}\n",
        body1.len(),
        body2.len()
    );
    let path = write_file(tmp.path(), "cl2.mbox", file.as_bytes());
    for dialect in [MboxDialect::Auto, MboxDialect::Mboxcl2] {
        let msgs = read_default(&path, dialect);
        assert_eq!(msgs.len(), 2, "{dialect:?}");
        let expected = format!("Subject: cl1\nContent-Length: {}\n\n{body1}", body1.len());
        assert_eq!(String::from_utf8_lossy(raw(&msgs[0])), expected);
        assert_eq!(
            raw(&msgs[1]),
            format!("Subject: cl2\nContent-Length: 6\n\n{body2}").as_bytes()
        );
    }
    // Without Content-Length the same file splits at the body's From line.
    let msgs = read_default(&path, MboxDialect::Mboxrd);
    assert_eq!(msgs.len(), 3);
}

#[test]
fn a_wrong_content_length_falls_back_to_from_lines() {
    let file = "From a Mon Jan  1 10:00:00 2024\nSubject: one\nContent-Length: 3\n\nhello world\n\nFrom b Mon Jan  1 10:00:00 2024\nSubject: two\nContent-Length: 9999\n\nbye\n";
    let (_tmp, path) = temp_file("wrong.mbox", file.as_bytes());
    let msgs = read_default(&path, MboxDialect::Auto);
    assert_eq!(msgs.len(), 2);
    assert_eq!(
        raw(&msgs[0]),
        b"Subject: one\nContent-Length: 3\n\nhello world\n"
    );
    // The last one promised 9999 bytes: the file was cut.
    assert!(msgs[1].truncated);
    assert!(!msgs[0].truncated);
}

#[test]
fn crlf_mbox_keeps_crlf_and_drops_the_separator() {
    let rd = String::from_utf8_lossy(&mboxrd(&[M1, M2])).replace('\n', "\r\n");
    let (_tmp, path) = temp_file("crlf.mbox", rd.as_bytes());
    let msgs = read_default(&path, MboxDialect::Auto);
    assert_eq!(msgs.len(), 2);
    assert_eq!(raw(&msgs[0]), M1.replace('\n', "\r\n").as_bytes());
    assert_eq!(raw(&msgs[1]), M2.replace('\n', "\r\n").as_bytes());
}

#[test]
fn gzip_mbox_streams_with_offsets_in_the_decompressed_data() {
    let tmp = tempfile::tempdir().expect("tmp");
    let plain = mboxrd(&[M1, M2, M1]);
    let path = tmp.path().join("box.mbox.gz");
    let mut gz = flate2::write::GzEncoder::new(
        std::fs::File::create(&path).expect("create"),
        flate2::Compression::default(),
    );
    gz.write_all(&plain).expect("gzip");
    gz.finish().expect("gzip end");
    let plain_path = write_file(tmp.path(), "box.mbox", &plain);
    let from_gz = read_default(&path, MboxDialect::Auto);
    let from_plain = read_default(&plain_path, MboxDialect::Auto);
    assert_eq!(from_gz.len(), 3);
    for (a, b) in from_gz.iter().zip(&from_plain) {
        assert_eq!(a.position, b.position);
        assert_eq!(a.content, b.content);
    }
    // Resuming a .gz re-reads and skips up to the checkpoint.
    let options = FileSourceOptions {
        resume_after: Some(from_gz[1].position.clone()),
        ..Default::default()
    };
    let rest = read_all(&path, MboxDialect::Auto, &options);
    assert_eq!(rest.len(), 1);
    assert_eq!(rest[0].position, from_gz[2].position);

    // Damaged gzip: a clear error, not a panic and not silence.
    let mut damaged = std::fs::read(&path).expect("read");
    let cut = damaged.len() / 2;
    damaged.truncate(cut);
    let damaged_path = write_file(tmp.path(), "damaged.mbox.gz", &damaged);
    let results: Vec<_> = MboxSource::open(&damaged_path, MboxDialect::Auto, &Default::default())
        .map(|s| s.collect::<Vec<_>>())
        .unwrap_or_else(|e| vec![Err(e)]);
    let err = results
        .into_iter()
        .find_map(Result::err)
        .expect("an error for damaged gzip");
    assert!(matches!(err, SourceError::Gzip { .. }), "{err}");
    let not_gz = write_file(tmp.path(), "text.mbox.gz", b"From a\n\nplain\n");
    let err = MboxSource::open(&not_gz, MboxDialect::Auto, &Default::default()).err();
    assert!(matches!(err, Some(SourceError::Gzip { .. })), "{err:?}");
}

#[test]
fn empty_missing_and_non_mbox_files() {
    let tmp = tempfile::tempdir().expect("tmp");
    let empty = write_file(tmp.path(), "empty.mbox", b"");
    assert_eq!(read_default(&empty, MboxDialect::Auto).len(), 0);

    let missing = tmp.path().join("nope.mbox");
    let err = MboxSource::open(&missing, MboxDialect::Auto, &Default::default()).err();
    assert!(matches!(err, Some(SourceError::NotFound { .. })), "{err:?}");
    assert!(err
        .map(|e| e.to_string())
        .unwrap_or_default()
        .contains("nope.mbox"));

    let eml = crate::common::corpora_dir()
        .join("cpython-email-testdata/Lib/test/test_email/data/msg_01.txt");
    let err = MboxSource::open(&eml, MboxDialect::Auto, &Default::default()).err();
    match err {
        Some(e @ SourceError::NotMbox { .. }) => {
            assert!(e.to_string().contains("not an mbox"), "{e}")
        }
        other => panic!("expected NotMbox, got {other:?}"),
    }
}

#[test]
fn oversized_messages_are_yielded_with_size_and_position() {
    let big_body = "x".repeat(100) + "\n";
    let big = format!("Subject: big\n\n{}", big_body.repeat(2000)); // ~200 KB
    let (_tmp, path) = temp_file("big.mbox", &mboxrd(&[M1, &big, M2]));
    let msgs = read_with_limit(&path, 100_000);
    assert_eq!(msgs.len(), 3);
    assert_eq!(raw(&msgs[0]), M1.as_bytes());
    let (size, head) = oversized(&msgs[1]);
    assert_eq!(
        size,
        big.len() as u64 + 1,
        "size counted before the separator"
    );
    assert!(head.len() <= 100_000 && head.starts_with(b"Subject: big\n"));
    assert!(msgs[1].origin.contains("at byte"), "{}", msgs[1].origin);
    assert_eq!(raw(&msgs[2]), M2.as_bytes());
}

#[test]
fn resume_from_an_offset_yields_exactly_the_rest() {
    let (_tmp, path) = temp_file("r.mbox", &mboxrd(&[M1, M2, M1, M2]));
    let all = read_default(&path, MboxDialect::Auto);
    for (i, m) in all.iter().enumerate() {
        let options = FileSourceOptions {
            resume_after: Some(m.position.clone()),
            ..Default::default()
        };
        let rest = read_all(&path, MboxDialect::Auto, &options);
        assert_eq!(rest, all[i + 1..].to_vec(), "resume after message {i}");
    }
    // A checkpoint that does not fall on a message is refused.
    let options = FileSourceOptions {
        resume_after: Some(Position::Mbox { offset: 5 }),
        ..Default::default()
    };
    let err = MboxSource::open(&path, MboxDialect::Auto, &options).err();
    assert!(
        matches!(err, Some(SourceError::BadCheckpoint { .. })),
        "{err:?}"
    );
}

#[test]
fn a_truncated_last_message_is_yielded_and_flagged() {
    let tmp = tempfile::tempdir().expect("tmp");
    let mut data = mboxrd(&[M1, M2]);
    data.truncate(data.len() - 5); // cut in the middle of the last line
    let path = write_file(tmp.path(), "cut.mbox", &data);
    let msgs = read_default(&path, MboxDialect::Auto);
    assert_eq!(msgs.len(), 2);
    assert!(!msgs[0].truncated);
    assert!(msgs[1].truncated);
    assert!(raw(&msgs[1]).starts_with(b"From: b@example.com"));
}

#[test]
fn mbox_status_headers_give_flags() {
    let file = "From a Mon Jan  1 10:00:00 2024\nStatus: RO\nX-Status: A\nSubject: s\n\nbody\n";
    let (_tmp, path) = temp_file("s.mbox", file.as_bytes());
    let msgs = read_default(&path, MboxDialect::Auto);
    let flags = msgs[0].flags.expect("flags");
    assert!(flags.seen && flags.answered && !flags.flagged);
}

#[test]
fn very_long_lines_are_read_in_pieces_without_losing_bytes() {
    let tmp = tempfile::tempdir().expect("tmp");
    // A 300 KB line (several read pieces) in a message under the cap, and a 3 MB line with no
    // line end at all in one over it: both read, the second reported oversized.
    let long = format!("Subject: long\n\n{}\n", "z".repeat(300_000));
    let mut data = mboxrd(&[M1, &long]);
    data.extend_from_slice(b"From x Mon Jan  1 10:00:00 2024\nSubject: huge\n\n");
    data.extend(std::iter::repeat_n(b'q', 3_000_000));
    let path = write_file(tmp.path(), "long.mbox", &data);
    let msgs = read_with_limit(&path, 1_000_000);
    assert_eq!(msgs.len(), 3);
    assert_eq!(raw(&msgs[1]), long.as_bytes());
    let (size, head) = oversized(&msgs[2]);
    assert_eq!(size, 3_000_000 + "Subject: huge\n\n".len() as u64);
    assert!(head.len() <= postern::import::OVERSIZED_HEAD);
    assert!(msgs[2].truncated, "the file ends mid-line");
}

#[test]
fn a_message_with_a_garbage_header_block_stays_a_message_of_its_own() {
    // A damaged export: the entry's "headers" are binary junk with no colon. Its dated From_
    // line after a blank line still starts a message (to be quarantined by the importer);
    // gluing it to the message before would alter that message and hide the damage.
    let dir = tempfile::tempdir().expect("tempdir");
    let mut data = Vec::new();
    data.extend_from_slice(b"From alice@example.com Mon Jan  5 10:00:00 2026\n");
    data.extend_from_slice(b"From: alice@example.com\nSubject: first\n\nHello\n\n");
    data.extend_from_slice(b"From MAILER-DAEMON Tue Jan  6 11:00:00 2026\n");
    data.extend_from_slice(b"\x1b[0m\x8f\xfe corrupted export block\nSubject Order question\n\xff\xfe ]]]]\n\nOrder 99999\n\n");
    // An undated "From " line after a blank line is still body text.
    data.extend_from_slice(b"From bob@example.com Wed Jan  7 12:00:00 2026\n");
    data.extend_from_slice(
        b"From: bob@example.com\nSubject: third\n\nSee below\n\nFrom the order page, nothing\n",
    );
    let path = write_file(dir.path(), "damaged.mbox", &data);
    let msgs = read_default(&path, MboxDialect::Auto);
    assert_eq!(msgs.len(), 3, "three entries, three messages");
    assert_eq!(
        raw(&msgs[0]),
        b"From: alice@example.com\nSubject: first\n\nHello\n"
    );
    assert!(raw(&msgs[1]).starts_with(b"\x1b[0m\x8f\xfe corrupted"));
    assert!(raw(&msgs[1]).ends_with(b"Order 99999\n"));
    assert!(String::from_utf8_lossy(raw(&msgs[2])).ends_with("\n\nFrom the order page, nothing\n"));
}
