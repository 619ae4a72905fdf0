//! Bytes as an mbox file into the mbox reader (src/import/mbox.rs), every dialect.
//!
//! Input: the first byte picks the dialect (bits 0-2), the size cap (bit 3: 2 KiB, to reach
//! the oversized path, or the default 50 MiB) and how reads are cut (bits 4-7); the rest is
//! the file. The file is read twice, in one read and in small reads (as a gzip decoder
//! delivers it), and both must yield the same messages. Each message's position must be
//! the offset of its `From ` line, which is what an import resumes from.
#![no_main]

use libfuzzer_sys::fuzz_target;
use postern::import::{MboxDialect, MboxSource, Position, SourceMessage, DEFAULT_MAX_MESSAGE_SIZE};
use std::collections::VecDeque;
use std::io::Read;
use std::path::Path;

const DIALECTS: [MboxDialect; 5] = [
    MboxDialect::Auto,
    MboxDialect::Mboxo,
    MboxDialect::Mboxrd,
    MboxDialect::Mboxcl,
    MboxDialect::Mboxcl2,
];

/// Hands out the file in the pieces given, one per read.
struct Pieces(VecDeque<Vec<u8>>);

impl Read for Pieces {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let Some(front) = self.0.front_mut() else {
            return Ok(0);
        };
        let n = front.len().min(buf.len());
        buf[..n].copy_from_slice(&front[..n]);
        front.drain(..n);
        if front.is_empty() {
            self.0.pop_front();
        }
        Ok(n)
    }
}

/// Every item of the source; an error ends it (the source yields nothing after one).
fn read_all(
    pieces: Vec<Vec<u8>>,
    dialect: MboxDialect,
    cap: u64,
) -> Vec<Result<SourceMessage, String>> {
    let source = match MboxSource::from_reader(
        Path::new("fuzz.mbox"),
        Pieces(pieces.into()),
        dialect,
        cap,
    ) {
        Ok(s) => s,
        Err(e) => return vec![Err(e.to_string())],
    };
    source.map(|item| item.map_err(|e| e.to_string())).collect()
}

fuzz_target!(|data: &[u8]| {
    let Some((&setup, file)) = data.split_first() else {
        return;
    };
    let file = file.to_vec();
    postern_fuzz::run(move || {
        let dialect = DIALECTS[usize::from(setup & 7) % DIALECTS.len()];
        let cap = if setup & 8 != 0 {
            2048
        } else {
            DEFAULT_MAX_MESSAGE_SIZE
        };
        let whole = read_all(vec![file.clone()], dialect, cap);
        let cut = read_all(postern_fuzz::pieces(&file, setup >> 4, 300), dialect, cap);
        assert!(whole == cut, "the messages depend on how the file was read");
        let mut last = None;
        for item in &whole {
            let Ok(message) = item else { continue };
            let Position::Mbox { offset } = message.position else {
                panic!("an mbox message without an mbox position");
            };
            let at = usize::try_from(offset).expect("offset");
            assert!(
                file[at..].starts_with(b"From "),
                "position {offset} is not at a From_ line"
            );
            assert!(last.is_none_or(|l| l < offset), "positions do not increase");
            last = Some(offset);
            if let Some(raw) = message.raw() {
                assert!(raw.len() as u64 <= cap, "a complete message over the cap");
            }
        }
    });
});
