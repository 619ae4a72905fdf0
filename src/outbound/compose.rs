//! Composing a reply with mail-builder: From the brand address with the account's name, To
//! the customer (and CCs), `Re:` subject without pile-up, In-Reply-To/References carrying
//! the customer's message and the thread, our reply token as Message-ID, Thread-Index and
//! Thread-Topic for Outlook, `Auto-Submitted` only when automated, optional quoted history.
//!
//! Header injection is impossible: every value from a request is checked for control
//! characters and refused; values from the store have them replaced by spaces.

use super::recipient::check_deliverable;
use super::OutboundError;
use crate::domain::Mailbox;
use crate::domain::{reply_subject, EmailAddress};
use crate::store::ReplyContext;
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use mail_builder::headers::address::Address;
use mail_builder::headers::raw::Raw;
use mail_builder::headers::text::Text;
use mail_builder::MessageBuilder;
use sha2::{Digest, Sha256};

/// What an agent (or a rule) writes.
#[derive(Debug, Clone, Default)]
pub struct ReplyDraft {
    /// Plain text body (required).
    pub text: String,
    /// HTML alternative, sent as is (the agent's editor is trusted).
    pub html: Option<String>,
    pub attachments: Vec<DraftAttachment>,
    /// Extra recipients, also participants of the ticket from then on.
    pub cc: Vec<String>,
    /// The agent who wrote it, when known.
    pub author_user_id: Option<i64>,
    /// The rule that wrote it (automated replies; not an agent's reply).
    pub author_rule_id: Option<i64>,
    /// The subject (a macro's, rendered); None: `Re: ` and the ticket's subject.
    pub subject: Option<String>,
    /// Quote the customer's last message under the reply.
    pub quote: bool,
}

#[derive(Debug, Clone)]
pub struct DraftAttachment {
    pub filename: String,
    pub content_type: String,
    pub data: Vec<u8>,
}

/// Limits on what a draft may carry.
#[derive(Debug, Clone, Copy)]
pub struct DraftLimits {
    pub max_message_size: usize,
    pub max_attachments: usize,
    pub max_recipients: usize,
}

/// The message as built, before signing, with what the store records of it.
#[derive(Debug, Clone)]
pub struct Composed {
    pub raw: Vec<u8>,
    pub subject: String,
    pub from: Mailbox,
    pub to: Vec<Mailbox>,
    pub cc: Vec<Mailbox>,
    pub in_reply_to: Option<String>,
    pub references: Vec<String>,
    pub text: String,
}

fn no_controls(field: &str, value: &str) -> Result<(), OutboundError> {
    if let Some(c) = value.chars().find(|c| c.is_control()) {
        return Err(OutboundError::Invalid(format!(
            "{field} contains a control character ({:?}); CR, LF and other control characters are not allowed in header values",
            c
        )));
    }
    Ok(())
}

/// Control characters (CR, LF...) of a stored value replaced by spaces.
fn flat(value: &str) -> String {
    value
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect::<String>()
        .trim()
        .to_string()
}

/// Checks a draft from a request: sizes, counts, CC addresses, attachment names and types.
pub fn validate(
    draft: &ReplyDraft,
    limits: &DraftLimits,
) -> Result<Vec<EmailAddress>, OutboundError> {
    if draft.text.trim().is_empty() {
        return Err(OutboundError::Invalid(
            "the reply has no text: give `text` (HTML alone is not enough; many clients show only text)".into(),
        ));
    }
    let total = draft.text.len()
        + draft.html.as_ref().map_or(0, String::len)
        + draft
            .attachments
            .iter()
            .map(|a| a.data.len())
            .sum::<usize>();
    if total > limits.max_message_size {
        return Err(OutboundError::Invalid(format!(
            "the reply is {total} bytes with its attachments; at most {} are allowed (outbound.max_message_size)",
            limits.max_message_size
        )));
    }
    if draft.attachments.len() > limits.max_attachments {
        return Err(OutboundError::Invalid(format!(
            "{} attachments; at most {} are allowed (outbound.max_attachments)",
            draft.attachments.len(),
            limits.max_attachments
        )));
    }
    if draft.cc.len() + 1 > limits.max_recipients {
        return Err(OutboundError::Invalid(format!(
            "too many recipients: at most {} with the customer (outbound.max_recipients)",
            limits.max_recipients
        )));
    }
    let mut cc = Vec::new();
    for a in &draft.cc {
        no_controls("cc", a)?;
        let parsed = EmailAddress::parse_envelope(a.trim(), false).map_err(|e| {
            OutboundError::Invalid(format!("cc {a:?} is not an e-mail address: {e}"))
        })?;
        check_deliverable(a.trim()).map_err(|e| OutboundError::Undeliverable {
            recipient: format!("cc {}", a.trim()),
            reason: e.reason,
        })?;
        cc.push(parsed);
    }
    for a in &draft.attachments {
        no_controls("attachment filename", &a.filename)?;
        no_controls("attachment content_type", &a.content_type)?;
        if a.filename.trim().is_empty() || a.filename.len() > 255 {
            return Err(OutboundError::Invalid(
                "every attachment needs a filename of 1 to 255 bytes".into(),
            ));
        }
        let ct = a.content_type.trim();
        let valid_ct = ct.split_once('/').is_some_and(|(t, s)| {
            let token = |x: &str| {
                !x.is_empty()
                    && x.chars()
                        .all(|c| c.is_ascii_alphanumeric() || "!#$&-^_.+".contains(c))
            };
            token(t) && token(s)
        });
        if !valid_ct {
            return Err(OutboundError::Invalid(format!(
                "attachment content_type {ct:?} is not a MIME type such as application/pdf"
            )));
        }
    }
    Ok(cc)
}

/// Outlook's conversation index: 22 bytes for the conversation (time of its start and a
/// GUID derived from the ticket), then 5 bytes per reply (time since the start).
fn thread_index(ctx: &ReplyContext, now_ms: i64) -> String {
    // FILETIME: 100 ns units since 1601-01-01.
    const EPOCH_DIFF_MS: i64 = 11_644_473_600_000;
    let filetime = |ms: i64| ((ms + EPOCH_DIFF_MS).max(0) as u64) * 10_000;
    let start = filetime(ctx.ticket_created_at);
    let mut out = Vec::with_capacity(27);
    out.extend_from_slice(&start.to_be_bytes()[..6]);
    let guid = Sha256::digest(format!(
        "postern-thread:{}:{}",
        ctx.account_id, ctx.ticket_id
    ));
    out.extend_from_slice(&guid[..16]);
    let delta = filetime(now_ms).saturating_sub(start & 0xFFFF_FFFF_FFFF_0000);
    let child = ((delta >> 18) & 0x7FFF_FFFF) as u32;
    out.extend_from_slice(&child.to_be_bytes());
    out.push(rand::random::<u8>());
    B64.encode(out)
}

/// Text with CRLF line ends, as mail wants it.
fn crlf(text: &str) -> String {
    text.replace("\r\n", "\n")
        .replace('\r', "\n")
        .replace('\n', "\r\n")
}

fn quoted(ctx: &ReplyContext) -> Option<(String, String)> {
    let parent = ctx.parent.as_ref()?;
    let text = parent.text.as_deref()?.trim_end();
    let who = parent
        .from
        .as_ref()
        .map(|m| match &m.name {
            Some(n) if !n.trim().is_empty() => format!("{} <{}>", flat(n), m.address),
            _ => m.address.clone(),
        })
        .unwrap_or_else(|| "the customer".into());
    let date = chrono::DateTime::from_timestamp_millis(parent.date)
        .map(|d| d.format("%a, %d %b %Y %H:%M UTC").to_string())
        .unwrap_or_default();
    let header = format!("On {date}, {who} wrote:");
    let text_part = format!(
        "\n\n{header}\n{}",
        text.lines()
            .map(|l| if l.is_empty() {
                ">".to_string()
            } else {
                format!("> {l}")
            })
            .collect::<Vec<_>>()
            .join("\n")
    );
    let esc = |s: &str| {
        s.replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
            .replace('"', "&quot;")
    };
    let html_part = format!(
        "<p>{}</p><blockquote type=\"cite\" style=\"margin:0 0 0 .8ex;border-left:1px solid #ccc;padding-left:1ex\">{}</blockquote>",
        esc(&header),
        esc(text).replace('\n', "<br>\n")
    );
    Some((text_part, html_part))
}

/// Builds the reply. `message_id` is our reply token (without brackets).
pub fn compose(
    ctx: &ReplyContext,
    draft: &ReplyDraft,
    cc: &[EmailAddress],
    message_id: &str,
    automated: bool,
    now_ms: i64,
) -> Result<Composed, OutboundError> {
    let customer = ctx.customer.clone().ok_or_else(|| {
        OutboundError::Invalid(format!(
            "ticket {} has no customer address to reply to",
            ctx.ticket_id
        ))
    })?;
    let from = Mailbox {
        name: Some(flat(&ctx.account_name)).filter(|n| !n.is_empty()),
        address: ctx.from_address.trim().to_string(),
    };
    no_controls("the account's sending address", &from.address)?;
    let to_name = customer.name.as_deref().map(flat).filter(|n| !n.is_empty());
    let to = Mailbox {
        name: to_name,
        address: customer.address.clone(),
    };
    no_controls("the customer's address", &to.address)?;
    let cc: Vec<Mailbox> = cc
        .iter()
        .map(|a| Mailbox {
            name: None,
            address: a.normalized(),
        })
        .filter(|m| m.address != to.address.to_ascii_lowercase())
        .collect();
    // A macro's subject comes from the store's data: one line, control characters flattened.
    let subject = match draft.subject.as_deref().map(flat) {
        Some(s) if !s.is_empty() => s,
        _ => reply_subject(&ctx.ticket_subject),
    };
    // The conversation's topic stays the ticket's, whatever this message's subject.
    let topic = reply_subject(&ctx.ticket_subject)
        .trim_start_matches("Re: ")
        .to_string();
    let in_reply_to = ctx
        .parent
        .as_ref()
        .and_then(|p| p.message_id.clone())
        .map(|id| flat(&id))
        .filter(|id| !id.is_empty() && !id.contains(['<', '>', ' ']));
    // RFC 5322 3.6.4: the parent's References followed by the parent; without them the
    // thread as we know it. Long chains keep the first and the newest (as mail clients do).
    let mut references: Vec<String> = Vec::new();
    let mut push = |id: &str| {
        let id = flat(id);
        if !id.is_empty() && !id.contains(['<', '>', ' ']) && !references.contains(&id) {
            references.push(id);
        }
    };
    match &ctx.parent {
        Some(p) if !p.references.is_empty() || p.message_id.is_some() => {
            p.references.iter().for_each(|r| push(r));
            if let Some(id) = &p.message_id {
                push(id);
            }
        }
        _ => ctx.thread_ids.iter().for_each(|r| push(r)),
    }
    if references.len() > 20 {
        let first = references[0].clone();
        let tail = references.split_off(references.len() - 19);
        references = std::iter::once(first).chain(tail).collect();
    }

    let mut text = draft.text.trim_end().to_string();
    let mut html = draft.html.clone();
    if draft.quote {
        if let Some((t, h)) = quoted(ctx) {
            text.push_str(&t);
            html = html.map(|mut x| {
                x.push_str(&h);
                x
            });
        }
    }
    let mut b = MessageBuilder::new()
        .from(match &from.name {
            Some(n) => Address::new_address(Some(n.clone()), from.address.clone()),
            None => Address::new_address(None::<String>, from.address.clone()),
        })
        .to(Address::new_address(to.name.clone(), to.address.clone()))
        .subject(Text::new(subject.clone()))
        .message_id(message_id.to_string())
        .date(now_ms / 1000)
        .header("Thread-Topic", Text::new(topic))
        .header("Thread-Index", Raw::new(thread_index(ctx, now_ms)));
    if !cc.is_empty() {
        b = b.cc(Address::new_list(
            cc.iter()
                .map(|m| Address::new_address(None::<String>, m.address.clone()))
                .collect(),
        ));
    }
    if let Some(irt) = &in_reply_to {
        b = b.in_reply_to(irt.clone());
    }
    if !references.is_empty() {
        b = b.references(references.clone());
    }
    if automated {
        // RFC 3834: answers generated by software say so, so that other robots do not answer.
        b = b.header("Auto-Submitted", Raw::new("auto-replied"));
    }
    b = b.text_body(crlf(&text));
    if let Some(h) = &html {
        b = b.html_body(crlf(h));
    }
    for a in &draft.attachments {
        b = b.attachment(
            a.content_type.trim().to_string(),
            a.filename.trim().to_string(),
            a.data.clone(),
        );
    }
    let raw = b
        .write_to_vec()
        .map_err(|e| OutboundError::Compose(e.to_string()))?;
    Ok(Composed {
        raw,
        subject,
        from,
        to: vec![to],
        cc,
        in_reply_to,
        references,
        text,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::ParentMessage;

    fn ctx() -> ReplyContext {
        ReplyContext {
            account_id: 1,
            account_name: "Acme Support".into(),
            from_address: "support@acme.test".into(),
            ticket_id: 7,
            ticket_subject: "RE: Re: Order 77".into(),
            ticket_created_at: 1_700_000_000_000,
            customer: Some(Mailbox {
                name: Some("Ana Lima".into()),
                address: "ana@customer.test".into(),
            }),
            parent: Some(ParentMessage {
                message_id: Some("m2@customer.test".into()),
                references: vec!["m1@customer.test".into()],
                from: Some(Mailbox {
                    name: Some("Ana".into()),
                    address: "ana@customer.test".into(),
                }),
                date: 1_700_000_100_000,
                text: Some("Where is it?\nThanks".into()),
            }),
            thread_ids: vec![],
        }
    }

    fn limits() -> DraftLimits {
        DraftLimits {
            max_message_size: 1 << 20,
            max_attachments: 2,
            max_recipients: 3,
        }
    }

    #[test]
    fn reply_headers() {
        let draft = ReplyDraft {
            text: "It ships today.".into(),
            quote: true,
            cc: vec!["boss@customer.test".into()],
            ..Default::default()
        };
        let cc = validate(&draft, &limits()).unwrap();
        let c = compose(
            &ctx(),
            &draft,
            &cc,
            "abc.7.def@in.test",
            false,
            1_700_000_200_000,
        )
        .unwrap();
        let raw = String::from_utf8(c.raw).unwrap();
        assert!(
            raw.contains("From: \"Acme Support\" <support@acme.test>\r\n"),
            "{raw}"
        );
        assert!(
            raw.contains("To: \"Ana Lima\" <ana@customer.test>\r\n"),
            "{raw}"
        );
        assert!(raw.contains("Cc: <boss@customer.test>\r\n"), "{raw}");
        assert!(raw.contains("Subject: Re: Order 77\r\n"), "{raw}");
        assert!(raw.contains("Message-ID: <abc.7.def@in.test>\r\n"), "{raw}");
        assert!(raw.contains("In-Reply-To: <m2@customer.test>\r\n"), "{raw}");
        assert!(
            raw.contains("References: <m1@customer.test> <m2@customer.test>\r\n"),
            "{raw}"
        );
        assert!(raw.contains("Thread-Topic: Order 77\r\n"), "{raw}");
        assert!(raw.contains("Thread-Index: "), "{raw}");
        assert!(!raw.contains("Auto-Submitted"), "{raw}");
        assert!(raw.contains("> Where is it?"), "{raw}");
        let auto = compose(&ctx(), &draft, &cc, "x.7.y@in.test", true, 0).unwrap();
        assert!(String::from_utf8(auto.raw)
            .unwrap()
            .contains("Auto-Submitted: auto-replied\r\n"));
    }

    #[test]
    fn a_macro_subject_is_kept_on_one_line() {
        let draft = ReplyDraft {
            text: "We are closed.".into(),
            subject: Some("Closed until Monday\r\nBcc: x@evil.test".into()),
            author_rule_id: Some(3),
            ..Default::default()
        };
        let c = compose(&ctx(), &draft, &[], "x.7.y@in.test", true, 0).unwrap();
        assert_eq!(c.subject, "Closed until Monday  Bcc: x@evil.test");
        let raw = String::from_utf8(c.raw).unwrap();
        assert!(
            raw.contains("Subject: Closed until Monday  Bcc: x@evil.test\r\n"),
            "{raw}"
        );
        assert!(!raw.contains("\nBcc:"), "{raw}");
        // The conversation keeps the ticket's topic.
        assert!(raw.contains("Thread-Topic: Order 77\r\n"), "{raw}");
        let blank = ReplyDraft {
            subject: Some("  ".into()),
            ..draft
        };
        let c = compose(&ctx(), &blank, &[], "x.7.y@in.test", true, 0).unwrap();
        assert_eq!(c.subject, "Re: Order 77");
    }

    #[test]
    fn injection_is_refused() {
        for draft in [
            ReplyDraft {
                text: "x".into(),
                cc: vec!["a@b.test\r\nBcc: evil@x.test".into()],
                ..Default::default()
            },
            ReplyDraft {
                text: "x".into(),
                attachments: vec![DraftAttachment {
                    filename: "a.pdf\r\nX-Evil: 1".into(),
                    content_type: "application/pdf".into(),
                    data: vec![1],
                }],
                ..Default::default()
            },
            ReplyDraft {
                text: "x".into(),
                attachments: vec![DraftAttachment {
                    filename: "a.pdf".into(),
                    content_type: "text/plain\nX-Evil: 1".into(),
                    data: vec![1],
                }],
                ..Default::default()
            },
        ] {
            let e = validate(&draft, &limits()).unwrap_err();
            assert!(e.to_string().contains("control character"), "{e}");
        }
        // A subject stored with CR/LF (decoded from an encoded-word) cannot inject either.
        let mut c = ctx();
        c.ticket_subject = "Hi\r\nBcc: evil@x.test".into();
        let raw = compose(
            &c,
            &ReplyDraft {
                text: "x".into(),
                ..Default::default()
            },
            &[],
            "a.7.b@in.test",
            false,
            0,
        )
        .unwrap()
        .raw;
        let raw = String::from_utf8(raw).unwrap();
        assert!(!raw.contains("\r\nBcc:"), "{raw}");
    }
}
