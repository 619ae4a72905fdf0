//! TNEF (winmail.dat) unpacking, `postern::ingest::tnef`, against two public corpora and
//! against hostile input.
//!
//! This is a test binary of its own (not a module of tests/it): it installs a counting
//! global allocator, which would count and slow every other test of a shared binary.
//!
//! Corpora, in ../shared/corpora (a test that needs them and cannot find them fails with a
//! message saying so):
//! - tnefparse-examples: EXPECTED.json lists, per sample, the attachment names tnefparse
//!   finds (its samples live there or in mimekit-testdata/.../tnef).
//! - mimekit-testdata UnitTests/TestData/tnef: per sample, `<name>.list` (the names MimeKit
//!   must find) and `<name>/` (the files the `tnef` utility extracts, to compare bytes).
//!
//! Where the expectations and this reader differ on purpose, the test says so and why
//! (see `Verdict`); anything else is a failure.
//!
//! Memory: a counting global allocator (this test binary only) measures the peak of live
//! heap bytes on the test's thread while `unpack` runs, so "never allocates gigabytes" is
//! checked, not assumed.

use mail_parser::MimeHeaders;
use postern::ingest::tnef::{
    is_tnef, unpack, unpack_detailed, TnefAttachment, TnefError, Unpacked, MAX_ATTACHMENTS,
    MAX_OUTPUT_BYTES,
};
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

// ---------------------------------------------------------------------------------------
// Heap accounting

struct CountingAllocator;

thread_local! {
    static LIVE: Cell<usize> = const { Cell::new(0) };
    static PEAK: Cell<usize> = const { Cell::new(0) };
}

fn note_alloc(size: usize) {
    // try_with: the allocator also runs while thread-locals are being torn down.
    let _ = LIVE.try_with(|live| {
        let now = live.get().saturating_add(size);
        live.set(now);
        let _ = PEAK.try_with(|peak| peak.set(peak.get().max(now)));
    });
}

fn note_free(size: usize) {
    // Saturating: memory allocated on another thread may be freed on this one.
    let _ = LIVE.try_with(|live| live.set(live.get().saturating_sub(size)));
}

unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            note_alloc(layout.size());
        }
        p
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            note_alloc(layout.size());
        }
        p
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        note_free(layout.size());
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            note_free(layout.size());
            note_alloc(new_size);
        }
        p
    }
}

#[global_allocator]
static ALLOCATOR: CountingAllocator = CountingAllocator;

/// Runs `f` and returns its result with the peak of heap bytes it added on this thread.
fn measured<T>(f: impl FnOnce() -> T) -> (T, usize) {
    let base = LIVE.with(Cell::get);
    PEAK.with(|p| p.set(base));
    let out = f();
    (out, PEAK.with(Cell::get).saturating_sub(base))
}

#[test]
fn heap_accounting_sees_allocations() {
    let (v, peak) = measured(|| vec![1u8; 1 << 20]);
    assert!(
        peak >= 1 << 20,
        "the counting allocator is not in use: {peak}"
    );
    drop(v);
}

/// Allowed heap on top of the output: the attachment list, decoded names, small buffers.
const HEAP_SLACK: usize = 256 * 1024;

/// Unpacks and checks the promises that hold for any input: no panic (a panic fails the
/// test), content never larger than the input, heap bounded by the input plus a constant.
fn unpack_checked(data: &[u8]) -> Result<Unpacked, TnefError> {
    let (result, peak) = measured(|| unpack_detailed(data));
    if let Ok(u) = &result {
        let total: usize = u.attachments.iter().map(|a| a.data.len()).sum();
        assert!(
            total <= data.len(),
            "{total} bytes out of {} in",
            data.len()
        );
        assert!(u.attachments.len() <= MAX_ATTACHMENTS);
    }
    assert!(
        peak <= data.len() + HEAP_SLACK,
        "unpacking {} bytes took {peak} bytes of heap",
        data.len()
    );
    // `unpack` is `unpack_detailed` with damage folded in.
    let simple = unpack(data);
    match &result {
        Ok(u) if u.damage.is_some() && u.attachments.is_empty() => {
            assert_eq!(simple.as_ref().err(), u.damage.as_ref());
        }
        Ok(u) => assert_eq!(simple.as_ref().ok(), Some(&u.attachments)),
        Err(e) => assert_eq!(simple.as_ref().err(), Some(e)),
    }
    result
}

// ---------------------------------------------------------------------------------------
// Corpora

fn corpora() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/corpora");
    assert!(
        dir.is_dir(),
        "this test needs the shared test corpora at {} (the ../shared folder beside the \
         project); it is missing",
        dir.display()
    );
    dir
}

fn tnefparse_dir() -> PathBuf {
    corpora().join("tnefparse-examples")
}

fn mimekit_dir() -> PathBuf {
    corpora().join("mimekit-testdata/UnitTests/TestData/tnef")
}

fn read(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

fn list_dir(dir: &Path) -> Vec<PathBuf> {
    let entries = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("cannot list corpus folder {}: {e}", dir.display()));
    let mut out: Vec<PathBuf> = entries
        .map(|e| e.expect("directory entry").path())
        .collect();
    out.sort();
    out
}

fn samples(dir: &Path) -> Vec<PathBuf> {
    let out: Vec<PathBuf> = list_dir(dir)
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "tnef"))
        .collect();
    assert!(!out.is_empty(), "no .tnef samples in {}", dir.display());
    out
}

fn all_samples() -> Vec<PathBuf> {
    let mut all = samples(&mimekit_dir());
    all.extend(samples(&tnefparse_dir().join("tests/examples")));
    all
}

fn file_name(p: &Path) -> String {
    p.file_name()
        .unwrap_or_default()
        .to_string_lossy()
        .into_owned()
}

// ---------------------------------------------------------------------------------------
// tnefparse: EXPECTED.json

/// Names that differ from tnefparse's on purpose, with the reason.
fn tnefparse_deviation(file: &str) -> Option<(Vec<Option<&'static str>>, &'static str)> {
    match file {
        "minimal_attachment.tnef" => Some((
            vec![None],
            "the attachment has no name at all; tnefparse invents 'unknown.dat', unpack \
             says None and leaves naming to the caller",
        )),
        _ => None,
    }
}

#[test]
fn tnefparse_expected_names() {
    let dir = tnefparse_dir();
    let expected_path = dir.join("EXPECTED.json");
    let expected: serde_json::Value = serde_json::from_slice(&read(&expected_path))
        .unwrap_or_else(|e| panic!("{} is not JSON: {e}", expected_path.display()));
    let specs = expected["specs"]
        .as_array()
        .expect("EXPECTED.json has a specs array");
    let (mut exact, mut deliberate, mut mismatches) = (0, Vec::new(), Vec::new());
    for spec in specs {
        let file = spec["file"].as_str().expect("spec.file");
        let want: Vec<&str> = spec["attachments"]
            .as_array()
            .expect("spec.attachments")
            .iter()
            .map(|v| v.as_str().expect("attachment name"))
            .collect();
        let own = dir.join("tests/examples").join(file);
        let path = if own.is_file() {
            own
        } else {
            mimekit_dir().join(file)
        };
        assert!(
            path.is_file(),
            "{file} (listed in EXPECTED.json) is neither in tnefparse-examples/tests/examples \
             nor in mimekit-testdata/UnitTests/TestData/tnef"
        );
        let got = unpack(&read(&path)).unwrap_or_else(|e| panic!("{file}: {e}"));
        let names: Vec<Option<&str>> = got.iter().map(|a| a.filename.as_deref()).collect();
        if names == want.iter().copied().map(Some).collect::<Vec<_>>() {
            exact += 1;
        } else if let Some((names_here, why)) =
            tnefparse_deviation(file).filter(|(n, _)| *n == names)
        {
            deliberate.push(format!("{file}: {want:?} -> {names_here:?}: {why}"));
        } else {
            mismatches.push(format!("{file}: expected {want:?}, got {names:?}"));
        }
    }
    eprintln!(
        "tnefparse EXPECTED.json: {} samples, {exact} exact, {} deliberate differences, {} \
         mismatches",
        specs.len(),
        deliberate.len(),
        mismatches.len()
    );
    for d in &deliberate {
        eprintln!("  deliberate: {d}");
    }
    assert!(
        mismatches.is_empty(),
        "mismatches:\n{}",
        mismatches.join("\n")
    );
    assert_eq!(specs.len(), 19, "EXPECTED.json changed: review this test");
}

/// tnefparse checks these in its other tests (not EXPECTED.json).
#[test]
fn tnefparse_other_samples() {
    let examples = tnefparse_dir().join("tests/examples");
    // test_cmdline.py: the zip holds 'file_abcdefgh.txt', 'file_abcdefgh-2.txt' (its own
    // renaming of the duplicate), 'VIA_Nytt_14021.htm'. unpack keeps the names as sent.
    let got = unpack(&read(&examples.join("duplicate_filename.tnef"))).expect("decodes");
    let names: Vec<_> = got.iter().map(|a| a.filename.as_deref()).collect();
    assert_eq!(
        names,
        [
            Some("file_abcdefgh.txt"),
            Some("file_abcdefgh.txt"),
            Some("VIA_Nytt_14021.htm")
        ]
    );

    // bad_checksum.tnef must still decode; its last attribute is cut 2 bytes short (no
    // checksum), after the image's content attribute, so the image is complete.
    let detailed =
        unpack_detailed(&read(&examples.join("bad_checksum.tnef"))).expect("signature ok");
    assert!(matches!(detailed.damage, Some(TnefError::Truncated { .. })));
    let [image] = detailed.attachments.as_slice() else {
        panic!("one attachment expected: {:?}", detailed.attachments.len());
    };
    assert_eq!(image.filename.as_deref(), Some("image001.png"));
    assert!(image.data.starts_with(b"\x89PNG\r\n\x1a\n"));
    assert!(
        image.data.ends_with(b"IEND\xae\x42\x60\x82"),
        "PNG is whole"
    );

    // IPM-DistList.tnef: an attached Outlook item (a distribution list), itself TNEF.
    let got = unpack(&read(&examples.join("IPM-DistList.tnef"))).expect("decodes");
    assert_eq!(got.len(), 1);
    assert_eq!(
        got[0].content_type.as_deref(),
        Some("application/vnd.ms-tnef")
    );
    assert!(is_tnef(None, None, &got[0].data));
    assert!(
        unpack_detailed(&got[0].data).is_ok(),
        "the inner stream reads too"
    );

    // umlaut.tnef: the long names come from MAPI properties, the 8.3 titles are ignored.
    let got = unpack(&read(&examples.join("umlaut.tnef"))).expect("decodes");
    assert_eq!(got[2].filename.as_deref(), Some("UmlautAnhang-äüö.txt"));
    assert!(got[2].data.starts_with(b"TEST "));
}

// ---------------------------------------------------------------------------------------
// MimeKit: .list files and extracted files

/// How one file the `tnef` utility extracted compares with what unpack returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Verdict {
    /// Same name, same bytes.
    Exact,
    /// Same name; the corpus copy has LF line ends where the stream (and unpack) has CRLF:
    /// the corpus snapshot normalised its text files, the TNEF attribute holds CRLF.
    CorpusLineEnds,
    /// Same name; the `tnef` utility keeps the 16-byte interface id in front of a
    /// PT_OBJECT value, unpack drops it (as MimeKit does) so that an OLE object is the
    /// compound file itself (it starts with D0 CF 11 E0).
    InterfaceIdDropped,
    /// Not returned: the legacy attAttachData placeholder ("This attachment is a MAPI 1.0
    /// embedded message and is not supported by this mail system.") of an attachment
    /// whose real content, the embedded message, is in its MAPI properties and is
    /// returned instead. The `tnef` utility writes both.
    PlaceholderSkipped,
}

const PLACEHOLDER: &[u8] = b"This attachment is a MAPI 1.0 embedded message";

fn crlf_to_lf(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len());
    for (i, &b) in data.iter().enumerate() {
        if !(b == b'\r' && data.get(i + 1) == Some(&b'\n')) {
            out.push(b);
        }
    }
    out
}

/// The `tnef` utility numbers duplicate names: "Untitled Attachment.1", ".2".
fn names_match(ours: Option<&str>, theirs: &str) -> bool {
    let Some(ours) = ours else { return false };
    ours == theirs
        || theirs
            .strip_prefix(ours)
            .and_then(|rest| rest.strip_prefix('.'))
            .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

fn compare(ours: &[u8], theirs: &[u8]) -> Option<Verdict> {
    if ours == theirs {
        Some(Verdict::Exact)
    } else if crlf_to_lf(ours) == theirs {
        Some(Verdict::CorpusLineEnds)
    } else if theirs.get(16..) == Some(ours) {
        Some(Verdict::InterfaceIdDropped)
    } else {
        None
    }
}

/// Names MimeKit derives from the message body, not attachments: unpack does not return
/// the body (see `mimekit_samples`).
fn is_body_name(name: &str) -> bool {
    matches!(
        name,
        "body.rtf" | "body.html" | "body.txt" | "message.rtf" | "message.html" | "message.txt"
    )
}

#[test]
fn mimekit_samples() {
    let dir = mimekit_dir();
    let mut verdicts: BTreeMap<Verdict, Vec<String>> = BTreeMap::new();
    let mut mismatches = Vec::new();
    let (mut samples_seen, mut list_names, mut body_names) = (0, 0, 0);
    for path in samples(&dir) {
        samples_seen += 1;
        let stem = file_name(&path).trim_end_matches(".tnef").to_string();
        let got = unpack(&read(&path)).unwrap_or_else(|e| panic!("{stem}: {e}"));

        // The .list: every name must be among ours (MimeKit's own test is membership too).
        let list = String::from_utf8(read(&dir.join(format!("{stem}.list")))).expect("UTF-8 .list");
        for name in list.lines().map(str::trim).filter(|n| !n.is_empty()) {
            if is_body_name(name) {
                body_names += 1;
                continue;
            }
            list_names += 1;
            if !got.iter().any(|a| a.filename.as_deref() == Some(name)) {
                mismatches.push(format!("{stem}.list: {name:?} not found"));
            }
        }

        // The extracted files: each must pair with one of ours, and none of ours be left.
        let extracted = dir.join(&stem);
        let files: Vec<PathBuf> = if extracted.is_dir() {
            list_dir(&extracted)
                .into_iter()
                .filter(|p| !is_body_name(&file_name(p)))
                .collect()
        } else {
            Vec::new()
        };
        let mut used = vec![false; got.len()];
        for file in files {
            let name = file_name(&file);
            let theirs = read(&file);
            let pair = got.iter().enumerate().find_map(|(i, a)| {
                let verdict = compare(&a.data, &theirs)?;
                (!used[i] && names_match(a.filename.as_deref(), &name)).then_some((i, verdict))
            });
            let label = format!("{stem}/{name}");
            match pair {
                Some((i, verdict)) => {
                    used[i] = true;
                    verdicts.entry(verdict).or_default().push(label);
                }
                None if theirs.starts_with(PLACEHOLDER) => {
                    verdicts
                        .entry(Verdict::PlaceholderSkipped)
                        .or_default()
                        .push(label);
                }
                None => {
                    mismatches.push(format!("{label}: no attachment with that name and content"))
                }
            }
        }
        for (a, _) in got.iter().zip(&used).filter(|(_, u)| !**u) {
            mismatches.push(format!(
                "{stem}: extra attachment {:?} ({} bytes)",
                a.filename,
                a.data.len()
            ));
        }
    }
    eprintln!(
        "mimekit tnef: {samples_seen} samples; .list: {list_names} attachment names checked \
         ({body_names} body entries skipped); extracted files:"
    );
    for (verdict, files) in &verdicts {
        eprintln!("  {verdict:?}: {} {files:?}", files.len());
    }
    eprintln!("  mismatches: {}", mismatches.len());
    assert!(
        mismatches.is_empty(),
        "mismatches:\n{}",
        mismatches.join("\n")
    );
    assert_eq!(samples_seen, 19, "the sample set changed: review this test");
}

/// The two messages that carry a winmail.dat inside MIME: found by `is_tnef` from the
/// part's headers, and unpacked.
#[test]
fn mimekit_messages_with_winmail_dat() {
    for (file, want) in [
        // The same Outlook message as christmas.tnef: a picture and two attached items.
        (
            "rich-text.eml",
            &[
                "kitten-playing-with-a-christmas-tree.jpg",
                "Untitled Attachment",
                "Untitled Attachment",
            ][..],
        ),
        // Body only (an HTML body in koi8-r): nothing to unpack.
        ("ukr.eml", &[][..]),
    ] {
        let raw = read(&mimekit_dir().join(file));
        let message = mail_parser::MessageParser::default()
            .parse(&raw)
            .unwrap_or_else(|| panic!("{file} does not parse"));
        let tnef_parts: Vec<_> = message
            .attachments()
            .filter(|part| {
                let ct = part.content_type().map(|ct| match &ct.c_subtype {
                    Some(sub) => format!("{}/{}", ct.c_type, sub),
                    None => ct.c_type.to_string(),
                });
                is_tnef(ct.as_deref(), part.attachment_name(), part.contents())
            })
            .collect();
        assert_eq!(tnef_parts.len(), 1, "{file}: one winmail.dat");
        let got = unpack(tnef_parts[0].contents()).unwrap_or_else(|e| panic!("{file}: {e}"));
        let names: Vec<_> = got.iter().filter_map(|a| a.filename.as_deref()).collect();
        eprintln!("{file}: {names:?}");
        assert_eq!(names, want, "{file}");
    }
}

// ---------------------------------------------------------------------------------------
// Hostile input

/// xorshift64*: deterministic, so a failure reproduces.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
}

const SIGNATURE: [u8; 4] = [0x78, 0x9F, 0x3E, 0x22];

fn attribute(level: u8, id: u32, data: &[u8]) -> Vec<u8> {
    let mut out = vec![level];
    out.extend_from_slice(&id.to_le_bytes());
    out.extend_from_slice(&(data.len() as u32).to_le_bytes());
    out.extend_from_slice(data);
    let sum = data.iter().fold(0u16, |s, &b| s.wrapping_add(u16::from(b)));
    out.extend_from_slice(&sum.to_le_bytes());
    out
}

fn stream(attributes: &[Vec<u8>]) -> Vec<u8> {
    let mut out = SIGNATURE.to_vec();
    out.extend_from_slice(&[0x34, 0x12]);
    for a in attributes {
        out.extend_from_slice(a);
    }
    out
}

const RENDDATA: u32 = 0x0006_9002;
const TITLE: u32 = 0x0001_8010;
const DATA: u32 = 0x0006_800F;
const ATTACHMENT: u32 = 0x0006_9005;

#[test]
fn every_prefix_of_a_sample() {
    let full_data = read(&mimekit_dir().join("two-files.tnef"));
    let full = unpack_checked(&full_data).expect("decodes");
    assert_eq!(full.damage, None);
    assert_eq!(full.attachments.len(), 2);
    let mut seen_partial = 0;
    for len in 0..=full_data.len() {
        let prefix = &full_data[..len];
        match unpack_checked(prefix) {
            Err(TnefError::NotTnef) => assert!(len < 4, "{len}: signature is there"),
            Err(e) => panic!("{len}: unexpected error {e}"),
            Ok(u) => {
                assert!(u.attachments.len() <= full.attachments.len());
                // Only content read in full comes out, and it is the right content.
                for (a, b) in u.attachments.iter().zip(&full.attachments) {
                    assert_eq!(a.data, b.data, "prefix {len}");
                    assert!(a.filename.is_some(), "prefix {len}");
                }
                if !u.attachments.is_empty() && u.damage.is_some() {
                    seen_partial += 1;
                }
            }
        }
    }
    assert!(seen_partial > 0, "some prefixes give a partial result");
    // The error says what happened.
    let cut = &full_data[..full_data.len() - 100];
    let err = unpack_detailed(&full_data[..30]).expect("signature").damage;
    assert!(err.is_some_and(|e| e.to_string().contains("truncated")));
    assert!(unpack(cut).is_ok(), "the first attachment is complete");
}

#[test]
fn sampled_prefixes_of_every_sample() {
    for path in all_samples() {
        let data = read(&path);
        let stride = (data.len() / 300).max(1);
        let lengths = (0..data.len())
            .step_by(stride)
            .chain(data.len().saturating_sub(40)..=data.len());
        for len in lengths {
            let _ = unpack_checked(&data[..len]);
        }
    }
}

#[test]
fn mutated_samples() {
    let mut rng = Rng(0x5EED_0001);
    for path in all_samples() {
        let original = read(&path);
        for _ in 0..60 {
            let mut data = original.clone();
            for _ in 0..1 + rng.below(8) {
                let at = rng.below(data.len());
                if rng.below(3) == 0 && at + 4 <= data.len() {
                    // A length or a count that claims everything.
                    data[at..at + 4].copy_from_slice(&[0xFF, 0xFF, 0xFF, 0xFF]);
                } else {
                    data[at] ^= 1 << rng.below(8);
                }
            }
            let _ = unpack_checked(&data);
        }
    }
}

#[test]
fn random_bytes_after_a_valid_signature() {
    let mut rng = Rng(0x5EED_0002);
    for _ in 0..3000 {
        let mut data = SIGNATURE.to_vec();
        let n = rng.below(2048);
        data.extend(rng.bytes(n));
        // Often start with a plausible level byte, so that parsing goes further.
        if data.len() > 6 && rng.below(2) == 0 {
            data[6] = 1 + rng.below(2) as u8;
        }
        let _ = unpack_checked(&data);
    }
}

/// A random MAPI property list: valid framing with random types, ids, counts and sizes,
/// sometimes absurd ones, to drive the property reader everywhere.
fn random_mapi_list(rng: &mut Rng) -> Vec<u8> {
    const TYPES: [u16; 12] = [
        0x0002, 0x0003, 0x0005, 0x000B, 0x000D, 0x001E, 0x001F, 0x0040, 0x0048, 0x0102, 0x101F,
        0x1003,
    ];
    const IDS: [u16; 7] = [0x3701, 0x3704, 0x3707, 0x370E, 0x3001, 0x8005, 0x3705];
    let n = rng.below(6);
    let mut out = if rng.below(10) == 0 {
        u32::MAX.to_le_bytes().to_vec()
    } else {
        (n as u32).to_le_bytes().to_vec()
    };
    for _ in 0..n {
        let kind = TYPES[rng.below(TYPES.len())];
        let id = IDS[rng.below(IDS.len())];
        out.extend_from_slice(&kind.to_le_bytes());
        out.extend_from_slice(&id.to_le_bytes());
        if id >= 0x8000 {
            out.extend(rng.bytes(16));
            let named = rng.below(2) as u32;
            out.extend_from_slice(&named.to_le_bytes());
            let len = if rng.below(8) == 0 {
                u32::MAX
            } else {
                rng.below(12) as u32
            };
            out.extend_from_slice(&len.to_le_bytes());
            out.extend(rng.bytes(len.min(12) as usize));
        }
        let count = if rng.below(8) == 0 {
            u32::MAX
        } else {
            1 + rng.below(3) as u32
        };
        out.extend_from_slice(&count.to_le_bytes());
        for _ in 0..count.min(3) {
            let size = if rng.below(8) == 0 {
                u32::MAX - rng.below(8) as u32
            } else {
                rng.below(40) as u32
            };
            out.extend_from_slice(&size.to_le_bytes());
            out.extend(rng.bytes(size.min(40) as usize));
        }
    }
    out
}

#[test]
fn random_well_framed_streams() {
    let mut rng = Rng(0x5EED_0003);
    const IDS: [u32; 7] = [
        RENDDATA,
        TITLE,
        DATA,
        ATTACHMENT,
        0x0006_9007,
        0x0006_9003,
        0x0001_0001,
    ];
    for _ in 0..2000 {
        let attributes: Vec<Vec<u8>> = (0..rng.below(12))
            .map(|_| {
                let level = [1, 2, 2, 2, 3][rng.below(5)];
                let id = IDS[rng.below(IDS.len())];
                let data = if id == ATTACHMENT {
                    random_mapi_list(&mut rng)
                } else {
                    let n = rng.below(64);
                    rng.bytes(n)
                };
                attribute(level, id, &data)
            })
            .collect();
        let data = stream(&attributes);
        let _ = unpack_checked(&data);
    }
}

#[test]
fn huge_length_fields() {
    let started = Instant::now();
    // An attribute that claims 4 GiB.
    let mut data = stream(&[]);
    data.extend_from_slice(&[2, 0x0F, 0x80, 0x06, 0x00, 0xFF, 0xFF, 0xFF, 0xFF, b'x']);
    let u = unpack_checked(&data).expect("signature ok");
    assert_eq!(
        u.damage,
        Some(TnefError::Truncated {
            offset: 6,
            needed: u64::from(u32::MAX) + 11,
            available: 10
        })
    );
    assert!(matches!(unpack(&data), Err(TnefError::Truncated { .. })));

    // Property lists whose counts and sizes claim billions; the content attribute and
    // anything read before the bad field survive.
    let mut long_name = 2u32.to_le_bytes().to_vec();
    long_name.extend_from_slice(&0x001Eu16.to_le_bytes());
    long_name.extend_from_slice(&0x3707u16.to_le_bytes());
    long_name.extend_from_slice(&1u32.to_le_bytes());
    long_name.extend_from_slice(&8u32.to_le_bytes());
    long_name.extend_from_slice(b"long.txt");
    let hostile_tails: [&[u8]; 5] = [
        // PT_BINARY PR_ATTACH_DATA_BIN, 4 billion values
        &[
            0x02, 0x01, 0x01, 0x37, 0xFF, 0xFF, 0xFF, 0xFF, 0x04, 0, 0, 0, 1, 2, 3, 4,
        ],
        // PT_BINARY PR_ATTACH_DATA_BIN, one value of 4 GiB
        &[
            0x02, 0x01, 0x01, 0x37, 0x01, 0, 0, 0, 0xF0, 0xFF, 0xFF, 0xFF, 1, 2,
        ],
        // multi-valued PT_LONG, 4 billion values
        &[0x03, 0x10, 0x05, 0x37, 0xFF, 0xFF, 0xFF, 0xFF, 7, 0, 0, 0],
        // named property with a 4 GiB name
        &[
            0x03, 0x00, 0x00, 0x80, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 1, 0, 0,
            0, 0xFF, 0xFF, 0xFF, 0xFF, b'a', 0,
        ],
        // an unknown property type
        &[0x99, 0x00, 0x01, 0x37, 0, 0, 0, 0],
    ];
    for tail in hostile_tails {
        let mut props = long_name.clone();
        props.extend_from_slice(tail);
        // Also with a count of 4 billion properties.
        for count in [2u32, u32::MAX] {
            props[..4].copy_from_slice(&count.to_le_bytes());
            let data = stream(&[
                attribute(2, RENDDATA, &[]),
                attribute(2, TITLE, b"SHORT.TXT\0"),
                attribute(2, DATA, b"content"),
                attribute(2, ATTACHMENT, &props),
            ]);
            let (got, peak) = measured(|| unpack(&data));
            let got = got.expect("decodes");
            assert_eq!(
                got,
                vec![TnefAttachment {
                    filename: Some("long.txt".into()),
                    content_type: None,
                    data: b"content".to_vec()
                }]
            );
            assert!(peak < 64 * 1024, "{peak} bytes of heap");
        }
    }
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "huge counts are not looped over"
    );
}

#[test]
fn attachment_limit() {
    let one = [attribute(2, RENDDATA, &[]), attribute(2, DATA, b"x")].concat();
    let at_limit = stream(&vec![one.clone(); MAX_ATTACHMENTS]);
    assert_eq!(
        unpack_checked(&at_limit).expect("ok").attachments.len(),
        MAX_ATTACHMENTS
    );
    let over = stream(&vec![one; MAX_ATTACHMENTS + 1]);
    let err = unpack(&over).expect_err("over the limit");
    assert_eq!(err, TnefError::TooManyAttachments { limit: 1000 });
    assert!(err.to_string().contains("more than 1000 attachments"));

    // Attributes without content cost nothing and are not attachments.
    let empty = [attribute(2, RENDDATA, &[]), attribute(2, TITLE, b"a\0")].concat();
    let many_empty = stream(&vec![empty; 5 * MAX_ATTACHMENTS]);
    assert_eq!(unpack(&many_empty), Ok(vec![]));
}

#[test]
fn output_byte_limit() {
    let big = vec![0u8; MAX_OUTPUT_BYTES + 1];
    let data = stream(&[attribute(2, RENDDATA, &[]), attribute(2, DATA, &big)]);
    drop(big);
    let (result, peak) = measured(|| unpack(&data));
    assert_eq!(
        result,
        Err(TnefError::OutputTooLarge {
            limit: MAX_OUTPUT_BYTES
        })
    );
    assert!(peak < 64 * 1024, "refused before copying: {peak} bytes");
}

#[test]
fn not_tnef_and_padding() {
    // Named winmail.dat, but a PDF: the hint says yes, unpack says no.
    let pdf = b"%PDF-1.4 not tnef";
    assert!(is_tnef(
        Some("application/octet-stream"),
        Some("winmail.dat"),
        pdf
    ));
    assert_eq!(unpack(pdf), Err(TnefError::NotTnef));
    assert!(!is_tnef(Some("application/pdf"), Some("a.pdf"), pdf));
    // Signature only, or a cut key: damage, nothing decoded.
    assert!(matches!(
        unpack(&SIGNATURE),
        Err(TnefError::Truncated { .. })
    ));
    // A valid empty stream (body only), and one with transport padding after it.
    assert_eq!(unpack(&stream(&[])), Ok(vec![]));
    let mut padded = stream(&[attribute(2, RENDDATA, &[]), attribute(2, DATA, b"x")]);
    padded.extend_from_slice(b"\r\n\0\0");
    assert_eq!(unpack_detailed(&padded).expect("ok").damage, None);
    // Garbage after the last attribute (not padding): reported, attachments kept.
    padded.extend_from_slice(b"garbage!");
    let u = unpack_detailed(&padded).expect("ok");
    assert_eq!(u.attachments.len(), 1);
    assert!(matches!(u.damage, Some(TnefError::BadLevel { .. })));
}
