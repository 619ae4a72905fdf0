//! Raw message bytes into intake's parsing (src/ingest/parse.rs): MIME parsing,
//! classification (bounces, auto-replies, forwarding confirmations, own mail), TNEF parts,
//! forwarded-original detection and reply stripping, as a message from SMTP gets them.
//! The same bytes, read as text, also go straight to reply stripping and inline-forward
//! detection, which otherwise only ever see decoded bodies.
//!
//! Checked: no uncaught panic (mail-parser's own panics are caught by `parse_inbound` on
//! purpose and are not crashes), no stack overflow on a 2 MiB stack, and a stripped reply
//! is never longer than the text it comes from.
#![no_main]

use libfuzzer_sys::fuzz_target;
use postern::ingest::classify::ClassifyContext;
use postern::ingest::forwarded::find_inline_forward;
use postern::ingest::parse_inbound;
use postern::ingest::reply_text::stripped_reply_if_shorter;

fuzz_target!(|data: &[u8]| {
    let data = data.to_vec();
    postern_fuzz::run(move || {
        let ctx = ClassifyContext::new("in.postern.test");
        if let Ok(parsed) = parse_inbound(&data, Some("forwarder@mail.example.test"), Some(&ctx)) {
            if let (Some(text), Some(stripped)) = (&parsed.text_body, &parsed.stripped_text) {
                assert!(
                    stripped.len() <= text.len(),
                    "stripped reply longer than its text"
                );
            }
        }
        let text = String::from_utf8_lossy(&data);
        if let Some(stripped) = stripped_reply_if_shorter(&text) {
            assert!(
                stripped.len() <= text.len(),
                "stripped reply longer than its text"
            );
        }
        let _ = find_inline_forward(&text);
    });
});
