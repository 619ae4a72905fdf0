//! A Maildir file name and its bytes into what the Maildir reader makes of them
//! (src/import/maildir.rs, src/import/message_file.rs): flags from the name, folder from
//! the path, the leading `From ` line dropped, the Date header found, the size cap.
//! Walking the folders is file-system work and is not fuzzed.
//!
//! Input: one byte whose bit 0 gives a 2 KiB size cap (else the default 50 MiB), the
//! relative path up to the first LF (e.g. `.Archive.2023/cur/1.host:2,RS`), then the file.
#![no_main]

use libfuzzer_sys::fuzz_target;
use postern::import::maildir::message_from_bytes;
use postern::import::{Content, DEFAULT_MAX_MESSAGE_SIZE, OVERSIZED_HEAD};
use std::path::PathBuf;

fuzz_target!(|data: &[u8]| {
    let Some((&setup, data)) = data.split_first() else {
        return;
    };
    let data = data.to_vec();
    postern_fuzz::run(move || {
        let (name, raw) = match data.iter().position(|b| *b == b'\n') {
            Some(i) => (&data[..i], &data[i + 1..]),
            None => (&data[..], &[][..]),
        };
        let cap = if setup & 1 != 0 {
            2048
        } else {
            DEFAULT_MAX_MESSAGE_SIZE
        };
        let relative = PathBuf::from(String::from_utf8_lossy(name).into_owned());
        // What the reader holds of a file: all of it up to the cap plus one byte.
        let kept = raw
            .len()
            .min(usize::try_from(cap).unwrap_or(usize::MAX).saturating_add(1));
        let message =
            message_from_bytes(&relative, raw[..kept].to_vec(), raw.len() as u64, None, cap);
        match &message.content {
            Content::Complete(bytes) => assert!(bytes.len() as u64 <= cap),
            Content::Oversized { size, head } => {
                assert!(head.len() <= OVERSIZED_HEAD);
                assert!(*size > cap);
            }
        }
        assert!(message.flags.is_some() && message.folder.is_some());
    });
});
