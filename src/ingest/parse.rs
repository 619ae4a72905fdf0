//! Turns raw bytes into the rows of one message, or says why it cannot.

use crate::store::{Mailbox, NewAttachment};
use mail_parser::{HeaderValue, MessageParser, MimeHeaders};
use sha2::{Digest, Sha256};

/// The account-independent part of a parsed message.
#[derive(Debug, Clone)]
pub struct ParsedMessage {
    pub message_id: Option<String>,
    pub dedup_key: String,
    pub in_reply_to: Option<String>,
    pub references: Vec<String>,
    pub from: Mailbox,
    pub to: Vec<Mailbox>,
    pub cc: Vec<Mailbox>,
    pub reply_to: Option<String>,
    pub subject: String,
    pub sent_at: Option<i64>,
    pub text_body: Option<String>,
    pub html_body: Option<String>,
    pub attachments: Vec<NewAttachment>,
}

/// Why a message goes to quarantine instead of a ticket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unusable {
    pub reason: &'static str,
    pub detail: String,
}

fn mailboxes(value: Option<&mail_parser::Address<'_>>) -> Vec<Mailbox> {
    value
        .map(|a| {
            a.iter()
                .filter_map(|addr| {
                    let address = addr.address.as_deref()?.trim();
                    if address.is_empty() {
                        return None;
                    }
                    Some(Mailbox {
                        name: addr
                            .name
                            .as_deref()
                            .map(str::trim)
                            .filter(|n| !n.is_empty())
                            .map(str::to_string),
                        address: address.to_lowercase(),
                    })
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Threading headers read from their raw text, which is more tolerant of the free text and
/// bare ids real clients write than a strict msg-id grammar; the parsed value is the fallback.
fn thread_ids(
    message: &mail_parser::Message<'_>,
    name: &str,
    parsed: &HeaderValue<'_>,
) -> Vec<String> {
    match message.header_raw(name) {
        Some(raw) => crate::domain::parse_message_ids(raw),
        None => id_list(parsed),
    }
}

fn id_list(value: &HeaderValue<'_>) -> Vec<String> {
    value
        .as_text_list()
        .map(|l| {
            l.iter()
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
                .collect()
        })
        .unwrap_or_default()
}

/// Hash of the message without its trace headers and with uniform line endings: the same
/// message relayed twice by different hops hashes the same.
pub fn content_hash(raw: &[u8]) -> String {
    const TRACE: [&[u8]; 5] = [
        b"received:",
        b"return-path:",
        b"delivered-to:",
        b"x-original-to:",
        b"authentication-results:",
    ];
    let mut hasher = Sha256::new();
    let mut in_header = true;
    let mut skipping = false;
    for line in raw.split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if in_header {
            if line.is_empty() {
                in_header = false;
            } else if line[0] == b' ' || line[0] == b'\t' {
                if skipping {
                    continue;
                }
            } else {
                skipping = TRACE
                    .iter()
                    .any(|t| line.len() >= t.len() && line[..t.len()].eq_ignore_ascii_case(t));
                if skipping {
                    continue;
                }
            }
        }
        hasher.update(line.trim_ascii_end());
        hasher.update(b"\n");
    }
    hex::encode(hasher.finalize())
}

/// Parses `raw`. `envelope_sender` stands in for a missing From.
pub fn parse_message(raw: &[u8], envelope_sender: Option<&str>) -> Result<ParsedMessage, Unusable> {
    let message = MessageParser::default()
        .parse(raw)
        .ok_or_else(|| Unusable {
            reason: "unparseable",
            detail: "no message header could be found".into(),
        })?;
    // The parser is lenient enough to read header fields out of any bytes at all, so a
    // binary file (an Outlook .msg, a zip) sent as a message would become a ticket of junk.
    // RFC 5322 allows no NUL anywhere and no mail program writes one in a header: that is
    // the sign of something that is not an Internet message.
    let header_end = (message.root_part().offset_body as usize).min(raw.len());
    if raw[..header_end].contains(&0) {
        return Err(Unusable {
            reason: "unparseable",
            detail: "NUL bytes in the header section: binary data, not an Internet message".into(),
        });
    }
    let from = mailboxes(message.from())
        .into_iter()
        .next()
        .or_else(|| mailboxes(message.sender()).into_iter().next())
        .or_else(|| {
            envelope_sender.map(|s| Mailbox {
                name: None,
                address: s.to_lowercase(),
            })
        })
        .ok_or_else(|| Unusable {
            reason: "no_sender",
            detail: "neither From, Sender nor the envelope sender give an address".into(),
        })?;
    let message_id = message
        .message_id()
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string);
    let dedup_key = match &message_id {
        Some(id) => format!("mid:{id}"),
        None => format!("sha256:{}", content_hash(raw)),
    };
    let attachments = message
        .attachments()
        .map(|part| {
            let content_type = part
                .content_type()
                .map(|ct| match &ct.c_subtype {
                    Some(sub) => format!("{}/{}", ct.c_type, sub),
                    None => ct.c_type.to_string(),
                })
                .unwrap_or_else(|| "application/octet-stream".into())
                .to_ascii_lowercase();
            let content_id = part
                .content_id()
                .map(|c| c.trim_matches(|ch| ch == '<' || ch == '>').to_string());
            let inline =
                content_id.is_some() && part.content_disposition().is_none_or(|d| d.is_inline());
            NewAttachment {
                filename: part.attachment_name().map(str::to_string),
                content_type,
                content_id,
                inline,
                data: part.contents().to_vec(),
            }
        })
        .collect();
    Ok(ParsedMessage {
        in_reply_to: thread_ids(&message, "In-Reply-To", message.in_reply_to())
            .into_iter()
            .next(),
        references: thread_ids(&message, "References", message.references()),
        to: mailboxes(message.to()),
        cc: mailboxes(message.cc()),
        reply_to: mailboxes(message.reply_to())
            .into_iter()
            .next()
            .map(|m| m.address),
        subject: message.subject().unwrap_or("").trim().to_string(),
        sent_at: message.date().map(|d| d.to_timestamp() * 1000),
        text_body: message.body_text(0).map(|t| t.into_owned()),
        // The parser lists a plain-text-only body as an HTML body too (converted on the
        // fly): keep HTML only when the sender wrote some.
        html_body: message
            .html_part(0)
            .filter(|part| part.is_text_html())
            .and_then(|_| message.body_html(0))
            .map(|t| t.into_owned()),
        attachments,
        message_id,
        dedup_key,
        from,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_basic_fields() {
        let raw = b"From: \"Ana\" <Ana@Example.COM>\r\nTo: s@x.y\r\nSubject: Hello\r\nMessage-ID: <a1@x>\r\nIn-Reply-To: <p@x>\r\nReferences: <r1@x> <p@x>\r\n\r\nHi\r\n";
        let p = parse_message(raw, None).unwrap();
        assert_eq!(p.from.address, "ana@example.com");
        assert_eq!(p.from.name.as_deref(), Some("Ana"));
        assert_eq!(p.message_id.as_deref(), Some("a1@x"));
        assert_eq!(p.dedup_key, "mid:a1@x");
        assert_eq!(p.in_reply_to.as_deref(), Some("p@x"));
        assert_eq!(p.references, vec!["r1@x", "p@x"]);
        assert_eq!(p.text_body.as_deref().map(str::trim), Some("Hi"));
        assert!(p.html_body.is_none());
    }

    #[test]
    fn envelope_sender_stands_in_and_missing_sender_is_unusable() {
        let raw = b"Subject: no from\r\n\r\nbody\r\n";
        assert_eq!(
            parse_message(raw, Some("B@x.y")).unwrap().from.address,
            "b@x.y"
        );
        assert_eq!(parse_message(raw, None).unwrap_err().reason, "no_sender");
    }

    #[test]
    fn binary_data_is_unparseable() {
        // The start of an OLE compound file (Outlook .msg), then bytes that look like fields.
        let mut raw = vec![0xd0, 0xcf, 0x11, 0xe0, 0xa1, 0xb1, 0x1a, 0xe1, 0, 0, 0, 0];
        raw.extend_from_slice(b"junk: x\r\n\r\nbody\r\n");
        let err = parse_message(&raw, Some("a@b.c")).unwrap_err();
        assert_eq!(err.reason, "unparseable");
        // A NUL in the body is not the header's business.
        let raw = b"From: a@b.c\r\nSubject: s\r\n\r\nbody\0with a NUL\r\n";
        assert!(parse_message(raw, None).is_ok());
    }

    #[test]
    fn hash_ignores_trace_headers_and_line_endings() {
        let a = b"Received: from a\r\n  by b\r\nSubject: x\r\n\r\nbody\r\n";
        let b = b"Received: from c\nReturn-Path: <z@z>\nSubject: x\n\nbody\n";
        let c = b"Subject: y\r\n\r\nbody\r\n";
        assert_eq!(content_hash(a), content_hash(b));
        assert_ne!(content_hash(a), content_hash(c));
    }
}
