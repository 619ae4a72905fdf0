//! Pure pieces of threading: subject normalisation and Postern's reply tokens.

use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

/// Why a message landed in its ticket (the `thread_reason` column, shown by `ticket show`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ThreadReason {
    /// One of our reply tokens in In-Reply-To or References.
    ReplyToken,
    InReplyTo,
    References,
    /// Same customer, same normalised subject, within the window.
    Subject,
    NewTicket,
    /// A reply to a known ticket from someone who may not join it: a new, flagged ticket.
    UnverifiedReply,
    SpoofSuspected,
    /// The parent of replies that came before it: it joins their ticket.
    ParentOfExisting,
    /// A reply to a message we never saw, beside another reply to it.
    SharedParent,
    BounceOfOurMessage,
}

impl ThreadReason {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ReplyToken => "reply_token",
            Self::InReplyTo => "in_reply_to",
            Self::References => "references",
            Self::Subject => "subject",
            Self::NewTicket => "new_ticket",
            Self::UnverifiedReply => "unverified_reply",
            Self::SpoofSuspected => "spoof_suspected",
            Self::ParentOfExisting => "parent_of_existing",
            Self::SharedParent => "shared_parent",
            Self::BounceOfOurMessage => "bounce_of_our_message",
        }
    }
}

/// Reply and forward prefixes in the languages our customers' mail clients write.
/// Compared case-insensitively, before an optional `[n]`/`(n)` counter and a colon.
const PREFIXES: &[&str] = &[
    "re",
    "fwd",
    "fw",
    "tr",
    "aw",
    "wg",
    "sv",
    "vs",
    "réf",
    "ref",
    "rv",
    "r",
    "antw",
    "doorst",
    "odp",
    "pd",
    "enc",
    "res",
    "rif",
    "i",
    "ynt",
    "ilt",
    "vl",
    "vb",
    "továbbítás",
    "válasz",
    "回复",
    "答复",
    "回覆",
    "转发",
    "轉寄",
    "転送",
    "返信",
    "답장",
    "전달",
    "ответ",
    "пересл",
    "απ",
    "σχετ",
    "προώθ",
];

/// Removes one leading prefix (`Re:`, `RE[2]:`, `Fwd :`, `回复：`) if present.
fn strip_one_prefix(s: &str) -> Option<&str> {
    let lower = s.to_lowercase();
    for p in PREFIXES {
        if !lower.starts_with(p) {
            continue;
        }
        // Lower-casing can change byte lengths; walk the original by characters instead.
        let mut rest = &s[s
            .char_indices()
            .nth(p.chars().count())
            .map_or(s.len(), |(i, _)| i)..];
        rest = rest.trim_start();
        for (open, close) in [('[', ']'), ('(', ')')] {
            if let Some(inner) = rest.strip_prefix(open) {
                if let Some(end) = inner.find(close) {
                    if inner[..end].chars().all(|c| c.is_ascii_digit()) {
                        rest = inner[end + close.len_utf8()..].trim_start();
                    }
                }
            }
        }
        if let Some(after) = rest.strip_prefix(':').or_else(|| rest.strip_prefix('：')) {
            return Some(after.trim_start());
        }
    }
    None
}

/// Forward prefixes among [`PREFIXES`]: a subject starting with one of them says "forwarded".
const FORWARD_PREFIXES: &[&str] = &[
    "fwd",
    "fw",
    "tr",
    "wg",
    "doorst",
    "pd",
    "enc",
    "rv",
    "i",
    "ilt",
    "vb",
    "továbbítás",
    "转发",
    "轉寄",
    "転送",
    "전달",
    "пересл",
    "προώθ",
];

/// Does the subject say the message was forwarded (`Fwd:`, `TR:`, `WG:`, `转发:` ...), after
/// any leading tags and reply prefixes?
pub fn is_forward_subject(subject: &str) -> bool {
    let mut s = subject.trim();
    loop {
        let lower = s.to_lowercase();
        if let Some(rest) = strip_one_prefix(s) {
            if FORWARD_PREFIXES.iter().any(|p| {
                lower.starts_with(p) && strip_one_prefix(s).is_some() && {
                    // The matched prefix is the forward word itself, not a longer reply word.
                    let after = &lower[p.len()..];
                    after.trim_start().starts_with([':', '：', '[', '('])
                }
            }) {
                return true;
            }
            s = rest;
        } else if let Some(rest) = strip_one_tag(s) {
            s = rest;
        } else {
            return false;
        }
    }
}

/// The subject of a reply: `Re: ` once in front of the subject without its reply prefixes
/// in any language (`Re: RE: AW: Order` gives `Re: Order`). Forward prefixes stay: the
/// conversation is about the forwarded message. Control characters become spaces.
pub fn reply_subject(subject: &str) -> String {
    let clean: String = subject
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let mut s = clean.trim();
    while let Some(rest) = strip_one_prefix(s) {
        let lower = s.to_lowercase();
        let is_forward = FORWARD_PREFIXES.iter().any(|p| {
            lower.starts_with(p)
                && lower[p.len()..]
                    .trim_start()
                    .starts_with([':', '：', '[', '('])
        });
        if is_forward {
            break;
        }
        s = rest;
    }
    let s = s.split_whitespace().collect::<Vec<_>>().join(" ");
    if s.is_empty() {
        "Re: (no subject)".to_string()
    } else {
        format!("Re: {s}")
    }
}

/// Removes one leading bracketed tag: a mailing-list tag `[acme-users]` or a ticket tag
/// `[#123]`, `[Ticket #123]`.
fn strip_one_tag(s: &str) -> Option<&str> {
    let inner = s.strip_prefix('[')?;
    let end = inner.find(']')?;
    // A tag is short and on one line; "[urgent] ..." counts too, it is not the topic.
    (end <= 64).then(|| inner[end + 1..].trim_start())
}

/// Is `[...]` a ticket reference like `[#123]` or `[Ticket #123]`?
fn is_ticket_tag(inner: &str) -> bool {
    inner
        .rsplit_once('#')
        .is_some_and(|(_, n)| !n.is_empty() && n.chars().all(|c| c.is_ascii_digit()))
}

/// The subject as used to match a reply to its ticket: reply/forward prefixes in many
/// languages, list and ticket tags removed (repeatedly), whitespace collapsed, lower case.
pub fn normalize_subject(subject: &str) -> String {
    let mut s = subject.trim();
    while let Some(rest) = strip_one_prefix(s).or_else(|| strip_one_tag(s)) {
        s = rest;
    }
    // Ticket tags elsewhere in the subject ("Order late [#123]").
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(open) = rest.find('[') {
        match rest[open + 1..].find(']') {
            Some(close) if is_ticket_tag(&rest[open + 1..open + 1 + close]) => {
                out.push_str(&rest[..open]);
                rest = &rest[open + close + 2..];
            }
            _ => {
                out.push_str(&rest[..=open]);
                rest = &rest[open + 1..];
            }
        }
    }
    out.push_str(rest);
    out.split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .to_lowercase()
}

/// Message-IDs in a raw References / In-Reply-To value, oldest first, without brackets.
/// Tolerates folding, free text around `<id>` ("Ana's message of ... <id>") and, when there
/// is no bracketed id at all, takes the whole trimmed value as one id, as Thunderbird does,
/// so that clients writing bare ids still thread.
pub fn parse_message_ids(raw: &str) -> Vec<String> {
    let mut ids = Vec::new();
    let mut rest = raw;
    while let Some(open) = rest.find('<') {
        let after = &rest[open + 1..];
        let Some(close) = after.find('>') else { break };
        let candidate = &after[..close];
        // "<a <b@c>": the id is the innermost bracketed run.
        let candidate = candidate.rsplit('<').next().unwrap_or(candidate);
        let id: String = candidate.chars().filter(|c| !c.is_whitespace()).collect();
        if !id.is_empty() && !ids.contains(&id) {
            ids.push(id);
        }
        rest = &after[close + 1..];
    }
    if ids.is_empty() {
        let whole = raw.trim();
        // "<id@host" whose closing bracket was lost: the id is still recognisable.
        let whole = match whole.strip_prefix('<') {
            Some(inner) if !inner.contains(['<', '>']) => inner.trim(),
            _ => whole,
        };
        if !whole.is_empty() {
            ids.push(whole.to_string());
        }
    }
    ids
}

type HmacSha256 = Hmac<Sha256>;
/// Bytes of the MAC kept in the token: 96 bits, far beyond guessing over SMTP.
const MAC_LEN: usize = 12;

fn mac(secret: &[u8], random: &str, ticket: i64) -> Option<HmacSha256> {
    let mut m = HmacSha256::new_from_slice(secret).ok()?;
    m.update(random.as_bytes());
    m.update(b".");
    m.update(ticket.to_string().as_bytes());
    Some(m)
}

/// A Message-ID (without angle brackets) for a message Postern writes in `ticket`:
/// `{random}.{ticket}.{mac}@{domain}`. A reply quoting it finds its ticket, and the MAC
/// (keyed by the server secret) means nobody can forge one for another ticket.
pub fn mint_reply_token(secret: &[u8], ticket: i64, domain: &str) -> String {
    let random = format!("{:016x}", rand::random::<u64>());
    let tag = mac(secret, &random, ticket)
        .map(|m| hex::encode(&m.finalize().into_bytes()[..MAC_LEN]))
        .unwrap_or_default();
    format!("{random}.{ticket}.{tag}@{}", domain.to_ascii_lowercase())
}

/// The ticket named by one of our reply tokens, when `message_id` is one and its MAC is right.
pub fn verify_reply_token(secret: &[u8], message_id: &str, domain: &str) -> Option<i64> {
    let id = message_id
        .trim()
        .trim_start_matches('<')
        .trim_end_matches('>');
    let (local, host) = id.rsplit_once('@')?;
    if !host.eq_ignore_ascii_case(domain) {
        return None;
    }
    let mut parts = local.split('.');
    let (random, ticket, tag) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || random.len() != 16 {
        return None;
    }
    let ticket: i64 = ticket.parse().ok()?;
    let tag = hex::decode(tag).ok()?;
    if tag.len() != MAC_LEN {
        return None;
    }
    // Constant-time comparison of the truncated MAC.
    mac(secret, random, ticket)?
        .verify_truncated_left(&tag)
        .ok()
        .map(|_| ticket)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strips_prefixes_in_many_languages() {
        for (input, want) in [
            ("Re: Order 1234", "order 1234"),
            ("RE: RE: Re[2]: Order 1234", "order 1234"),
            ("Fwd: FW: Order 1234", "order 1234"),
            ("TR: Réf : Order 1234", "order 1234"),
            ("AW: WG: SV: VS: RV: Order 1234", "order 1234"),
            ("回复：Order 1234", "order 1234"),
            ("答复: 転送: Order 1234", "order 1234"),
            ("Re: [acme-support] Re: Order   1234", "order 1234"),
            ("[Ticket #42] Re: Order 1234", "order 1234"),
            ("Re: Order 1234 [#42]", "order 1234"),
            ("Re (3): Order 1234", "order 1234"),
            ("Order 1234", "order 1234"),
        ] {
            assert_eq!(normalize_subject(input), want, "{input}");
        }
        assert!(is_forward_subject("Fwd: Order 1234"));
        assert!(is_forward_subject("[acme] TR : Commande"));
        assert!(is_forward_subject("Re: WG: Bestellung"));
        assert!(!is_forward_subject("Re: Order 1234"));
        assert!(!is_forward_subject("Forwarding question"));
        // Words that merely start like a prefix stay.
        assert_eq!(normalize_subject("Refund please"), "refund please");
        assert_eq!(normalize_subject("Ireland order"), "ireland order");
        assert_eq!(normalize_subject("Re:"), "");
        assert_eq!(normalize_subject("[draft] notes [v2]"), "notes [v2]");
    }

    #[test]
    fn reply_subjects_do_not_pile_up() {
        for (input, want) in [
            ("Order 1234", "Re: Order 1234"),
            ("Re: Order 1234", "Re: Order 1234"),
            ("RE: Re: AW: Re[2]: Order 1234", "Re: Order 1234"),
            ("Re: Fwd: Order", "Re: Fwd: Order"),
            ("回复：订单", "Re: 订单"),
            ("Order\r\nBcc: evil@x.test", "Re: Order Bcc: evil@x.test"),
            ("", "Re: (no subject)"),
        ] {
            assert_eq!(reply_subject(input), want, "{input}");
        }
    }

    #[test]
    fn reply_tokens_verify_and_resist_forgery() {
        let secret = b"0123456789abcdef0123456789abcdef";
        let id = mint_reply_token(secret, 42, "In.Postern.Test");
        assert_eq!(
            verify_reply_token(secret, &format!("<{id}>"), "in.postern.test"),
            Some(42)
        );
        assert_eq!(
            verify_reply_token(b"another secret", &id, "in.postern.test"),
            None
        );
        assert_eq!(verify_reply_token(secret, &id, "other.test"), None);
        // Changing the ticket number breaks the MAC.
        let forged = id.replacen(".42.", ".43.", 1);
        assert_eq!(verify_reply_token(secret, &forged, "in.postern.test"), None);
        assert_eq!(
            verify_reply_token(secret, "abc@in.postern.test", "in.postern.test"),
            None
        );
    }
}
