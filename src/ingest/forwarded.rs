//! Mail forwarded by hand: a support agent or a store owner forwards a customer's message to
//! the forwarding address, and the ticket's customer must be the original sender, not the
//! person who forwarded it.
//!
//! Two shapes exist: the original attached as a `message/rfc822` part (the most reliable, it
//! carries the real headers), or the original pasted into the body below a separator written
//! by the mail client. The separators and header words recognised here are written from the
//! clients' real output:
//!
//! | style | separator | header order |
//! |---|---|---|
//! | `gmail` | `---------- Forwarded message ---------` (10 and 9 dashes) | From, Date, Subject, To |
//! | `thunderbird` | `-------- Forwarded Message --------` (8 and 8) | Subject, Date, From, To |
//! | `yahoo` | `----- Forwarded Message -----` (5 and 5) | From, To, Sent, Subject |
//! | `apple` | `Begin forwarded message:` | From, Subject, Date, To |
//! | `outlook` | `-----Original Message-----`, a line of underscores, or no separator | From, Sent, To, Cc, Subject |
//!
//! with the separators and header words of English, French, German, Spanish, Italian,
//! Portuguese and Dutch. Lines quoted with `> ` (some clients quote forwarded text) are read
//! through their quoting.
//!
//! This module only reads content: it cannot know whether the message really is a forward
//! by someone entitled to make one. A customer's Outlook reply quotes the agent's message under
//! `-----Original Message-----` exactly as a forward would, so the caller must only trust the
//! result when the outer sender is an agent or one of the brand's own addresses (or the
//! subject carries a forward prefix), never for arbitrary senders.
//!
//! The line recognisers (`marker`, `header_field`, `is_rule`, `fold`) are shared with
//! [`super::reply_text`], which cuts the reply text at the same separators.

use crate::domain::EmailAddress;
use mail_parser::{HeaderName, Message, MimeHeaders};

/// The original message found inside a hand-forwarded one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForwardedOriginal {
    /// The original sender's address, lower-cased.
    pub from_address: String,
    pub from_name: Option<String>,
    pub subject: Option<String>,
    /// As written in the forwarded block (or the attached message's Date header), not parsed:
    /// inline dates are localised free text ("lun. 3 juin 2024 à 10:00").
    pub date: Option<String>,
    /// Only known when the original is attached as message/rfc822.
    pub message_id: Option<String>,
    /// Which client wrote the block: "gmail", "outlook", "apple", "thunderbird", "yahoo" or
    /// "rfc822-attachment".
    pub style: &'static str,
}

/// Separator and header lines are short in every client; anything longer is prose. The bound
/// also keeps the work per line constant, so scanning stays linear on hostile input.
const SHORT_LINE: usize = 200;

/// How many lines a forwarded header block may span (fields, wrapped values, blank lines
/// between fields in HTML-to-text output).
const BLOCK_LINES: usize = 20;

/// What a separator line announces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Marker {
    /// A forwarded message follows; the client that writes this separator.
    Forward(&'static str),
    /// Outlook's "-----Original Message-----": used for replies and forwards alike.
    Original,
}

/// The header fields a forwarded block shows, whatever the language.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Field {
    From,
    Date,
    Subject,
    To,
    /// Cc, Reply-To, Importance, Attachments...: part of a block, but not telling.
    Other,
}

/// Separators written between dashes ("---------- Forwarded message ---------").
const FORWARD_PHRASES: &[&str] = &[
    "forwarded message",
    "message transféré",
    "message transmis",
    "weitergeleitete nachricht",
    "mensaje reenviado",
    "messaggio inoltrato",
    "mensagem encaminhada",
    "mensagem reencaminhada",
    "doorgestuurd bericht",
    "doorgestuurde bericht",
];

/// Outlook's "-----Original Message-----" and its translations.
const ORIGINAL_PHRASES: &[&str] = &[
    "original message",
    "message d'origine",
    "ursprüngliche nachricht",
    "originalnachricht",
    "mensaje original",
    "messaggio originale",
    "mensagem original",
    "oorspronkelijk bericht",
];

/// Apple Mail's "Begin forwarded message:" line, without the colon.
const APPLE_PHRASES: &[&str] = &[
    "begin forwarded message",
    "début du message réexpédié",
    "début du message transféré",
    "anfang der weitergeleiteten nachricht",
    "inicio del mensaje reenviado",
    "inizio messaggio inoltrato",
    "início da mensagem reencaminhada",
    "início da mensagem encaminhada",
    "begin doorgestuurd bericht",
];

const FROM_NAMES: &[&str] = &["from", "de", "von", "da", "van", "fra", "från", "od"];
const DATE_NAMES: &[&str] = &[
    "date",
    "sent",
    "envoyé",
    "datum",
    "gesendet",
    "fecha",
    "enviado",
    "enviada",
    "data",
    "inviato",
    "verzonden",
    "verstuurd",
];
const SUBJECT_NAMES: &[&str] = &[
    "subject",
    "objet",
    "sujet",
    "betreff",
    "asunto",
    "oggetto",
    "assunto",
    "onderwerp",
    "ämne",
    "emne",
];
const TO_NAMES: &[&str] = &["to", "à", "pour", "a", "an", "para", "aan", "til", "till"];
const OTHER_NAMES: &[&str] = &[
    "cc",
    "cci",
    "bcc",
    "cco",
    "kopie",
    "reply-to",
    "répondre à",
    "antwort an",
    "responder a",
    "rispondi a",
    "antwoord aan",
    "importance",
    "priorité",
    "wichtigkeit",
    "importancia",
    "attachments",
    "pièces jointes",
    "anlagen",
    "adjuntos",
    "allegati",
    "anexos",
    "bijlagen",
];

/// Lower-cases and collapses white space (including the no-break spaces French typography
/// puts before colons), and straightens curly apostrophes, for comparing short lines.
pub(crate) fn fold(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut in_space = false;
    for c in s.trim().chars() {
        if c.is_whitespace() {
            if !in_space {
                out.push(' ');
                in_space = true;
            }
            continue;
        }
        in_space = false;
        match c {
            '\u{2018}' | '\u{2019}' => out.push('\''),
            c => out.extend(c.to_lowercase()),
        }
    }
    out
}

/// Removes "> " quoting, any depth ("> > From:", ">>From:").
pub(crate) fn unquote(line: &str) -> &str {
    let mut s = line.trim_start();
    while let Some(rest) = s.strip_prefix('>') {
        s = rest.trim_start_matches([' ', '\t']);
    }
    s
}

/// Recognises a separator line written by a mail client above forwarded or quoted mail.
pub(crate) fn marker(line: &str) -> Option<Marker> {
    let t = line.trim();
    if t.is_empty() || t.len() > SHORT_LINE {
        return None;
    }
    let dashes = t.chars().take_while(|&c| c == '-').count();
    if dashes >= 3 {
        let inner = fold(t.trim_matches(|c: char| c == '-' || c.is_whitespace()));
        if ORIGINAL_PHRASES.contains(&inner.as_str()) {
            return Some(Marker::Original);
        }
        if FORWARD_PHRASES.contains(&inner.as_str()) {
            // The dash count tells the clients apart: Gmail writes 10, Thunderbird 8,
            // Yahoo 5.
            let style = match dashes {
                10.. => "gmail",
                6..=9 => "thunderbird",
                _ => "yahoo",
            };
            return Some(Marker::Forward(style));
        }
        return None;
    }
    if !t.ends_with(':') {
        return None;
    }
    let folded = fold(t);
    let phrase = folded.strip_suffix(':')?.trim_end();
    APPLE_PHRASES
        .contains(&phrase)
        .then_some(Marker::Forward("apple"))
}

/// Outlook's horizontal rule above a header block, as plain text: a line of underscores.
pub(crate) fn is_rule(line: &str) -> bool {
    let t = line.trim();
    t.len() >= 10 && t.bytes().all(|b| b == b'_')
}

/// Reads "From: value", "De : value", "*From:* value" (bold in HTML turned to text).
pub(crate) fn header_field(line: &str) -> Option<(Field, &str)> {
    let s = line.trim_start().trim_start_matches('*');
    // The field name is short: look for the colon in the first few characters only, so a
    // long line costs no more than a short one. Most lines have none there (26 characters
    // are at most 104 bytes).
    if !s.as_bytes()[..s.len().min(26 * 4)].contains(&b':') {
        return None;
    }
    let colon = s
        .char_indices()
        .take(26)
        .find(|&(_, c)| c == ':')
        .map(|(i, _)| i)?;
    let name = s[..colon].trim_matches(|c: char| c.is_whitespace() || c == '*');
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_alphabetic() || c == ' ' || c == '-' || c == '\u{a0}')
    {
        return None;
    }
    let name = fold(name);
    let field = if FROM_NAMES.contains(&name.as_str()) {
        Field::From
    } else if DATE_NAMES.contains(&name.as_str()) {
        Field::Date
    } else if SUBJECT_NAMES.contains(&name.as_str()) {
        Field::Subject
    } else if TO_NAMES.contains(&name.as_str()) {
        Field::To
    } else if OTHER_NAMES.contains(&name.as_str()) {
        Field::Other
    } else {
        return None;
    };
    let value = s[colon + 1..]
        .trim_start_matches(|c: char| c.is_whitespace() || c == '*')
        .trim_end();
    Some((field, value))
}

/// Parses a mailbox as forwarded blocks write it: `Ana Lima <ana@example.com>`,
/// `"Lima, Ana" <ana@example.com>`, `Ana Lima [mailto:ana@example.com]`,
/// `Ana Lima (ana@example.com)`, `ana@example.com`, or Gmail's HTML-to-text
/// `*Ana Lima* <ana@example.com <mailto:ana@example.com>>`.
/// Returns the lower-cased address and the display name, if any.
pub(crate) fn parse_mailbox(value: &str) -> Option<(String, Option<String>)> {
    let value = value.trim();
    let (address, name) = if let Some(open) = value.find('<') {
        (address_at(&value[open + 1..]), &value[..open])
    } else if let Some(open) = value.find("[mailto:") {
        (address_at(&value[open + 8..]), &value[..open])
    } else if let Some(open) = value.find('(').filter(|&i| value[i..].contains('@')) {
        (address_at(&value[open + 1..]), &value[..open])
    } else {
        // A bare address, perhaps with a name around it: take the token that has an '@'.
        let token = value.split_whitespace().find(|t| t.contains('@'))?;
        let rest = value.replacen(token, "", 1);
        return finish(address_at(token), &rest);
    };
    finish(address, name)
}

/// The address at the start of `s`, up to the first character that cannot be part of it.
fn address_at(s: &str) -> &str {
    let s = s.trim_start();
    let s = s
        .strip_prefix("mailto:")
        .or_else(|| s.strip_prefix("MAILTO:"))
        .unwrap_or(s);
    let end = s
        .find(|c: char| {
            c.is_whitespace() || matches!(c, '<' | '>' | '[' | ']' | '(' | ')' | ',' | ';' | '"')
        })
        .unwrap_or(s.len());
    s[..end].trim_matches(|c| c == '\'' || c == '.' || c == ':')
}

fn finish(address: &str, name: &str) -> Option<(String, Option<String>)> {
    if !address.contains('@') || EmailAddress::parse(address).is_err() {
        return None;
    }
    let address = address.to_lowercase();
    let name = name
        .trim()
        .trim_matches(|c: char| c == '"' || c == '\'' || c == '*' || c.is_whitespace());
    let name = (!name.is_empty() && !name.eq_ignore_ascii_case(&address)).then(|| name.to_string());
    Some((address, name))
}

/// Lines at least this long may have been wrapped by the client.
const WRAP_COLUMN: usize = 60;

/// An address or comment opened and not closed: the value goes on on the next line.
fn unbalanced(value: &str) -> bool {
    let count = |c: char| value.matches(c).count();
    count('<') > count('>') || count('(') > count(')') || count('[') > count(']')
}

/// One forwarded header block, as read from the text.
#[derive(Debug, Default)]
struct Block {
    fields: Vec<(Field, String)>,
    /// The line after the block.
    end: usize,
}

impl Block {
    fn first(&self, field: Field) -> Option<&str> {
        self.fields
            .iter()
            .find(|(f, _)| *f == field)
            .map(|(_, v)| v.as_str())
            .filter(|v| !v.is_empty())
    }

    fn has(&self, field: Field) -> bool {
        self.fields.iter().any(|(f, _)| *f == field)
    }

    fn original(&self, style: &'static str) -> Option<ForwardedOriginal> {
        let (from_address, from_name) = parse_mailbox(self.first(Field::From)?)?;
        Some(ForwardedOriginal {
            from_address,
            from_name,
            subject: self.first(Field::Subject).map(str::to_string),
            date: self.first(Field::Date).map(str::to_string),
            message_id: None,
            style,
        })
    }
}

/// Reads the header block that starts at `lines[start]` (after leading blank lines). A field
/// value may wrap onto following lines (up to two); blank lines are allowed between fields
/// (HTML-to-text output puts some there) but end the block otherwise.
fn read_block(lines: &[&str], start: usize) -> Block {
    let mut block = Block {
        fields: Vec::new(),
        end: start,
    };
    let end = lines.len().min(start + BLOCK_LINES);
    let mut continuations = 0;
    let mut prev_len = 0;
    let mut i = start;
    while i < end {
        let line = lines[i];
        i += 1;
        let above_len = std::mem::replace(&mut prev_len, line.len());
        if line.trim().is_empty() {
            // Go on only if a field follows the blank lines.
            let next = lines[i.min(end)..end]
                .iter()
                .find(|l| !l.trim().is_empty())
                .and_then(|l| header_field(l));
            if next.is_none() {
                break;
            }
            continue;
        }
        if let Some((field, value)) = header_field(line) {
            block.fields.push((field, value.to_string()));
            block.end = i;
            continuations = 0;
        } else if continuations < 2
            && line.len() <= SHORT_LINE
            && marker(line).is_none()
            && !is_rule(line)
        {
            let Some((_, value)) = block.fields.last_mut() else {
                break;
            };
            // A wrapped value, or the first line of the body? HTML-to-text output puts the
            // body right below the last field, so only take the line when wrapping is
            // likely: the line above was long (clients wrap near 72-78 columns), the value
            // is visibly unfinished, or another field follows.
            let wrapped = above_len >= WRAP_COLUMN
                || unbalanced(value)
                || lines.get(i).is_some_and(|l| header_field(l).is_some());
            if !wrapped {
                break;
            }
            value.push(' ');
            value.push_str(line.trim());
            block.end = i;
            continuations += 1;
        } else {
            break;
        }
    }
    block
}

/// Finds the first forwarded block in plain text. "First" is the outermost, most recent
/// forward: when a forward contains older forwards, its own block comes first, and that is
/// the one whose sender wrote to the person forwarding. A block whose From gives no address
/// (Outlook sometimes writes only a display name) is passed over for the next one.
pub fn find_inline_forward(text: &str) -> Option<ForwardedOriginal> {
    let lines: Vec<&str> = text
        .split('\n')
        .map(|l| unquote(l.strip_suffix('\r').unwrap_or(l)))
        .collect();
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i];
        let mut next = i + 1;
        let found = if line.is_empty() {
            None
        } else {
            match marker(line) {
                Some(Marker::Forward(style)) => read_block(&lines, i + 1).original(style),
                Some(Marker::Original) => read_block(&lines, i + 1).original("outlook"),
                None if is_rule(line) => {
                    // Outlook's rule is drawn above the header block of replies and forwards;
                    // on its own it is just a line.
                    let block = read_block(&lines, i + 1);
                    match block.fields.first() {
                        Some((Field::From, _)) if block.fields.len() >= 2 => {
                            block.original("outlook")
                        }
                        _ => None,
                    }
                }
                None => match header_field(line) {
                    // A header block with no separator at all (Outlook desktop draws its rule
                    // in HTML only). Without a separator it takes more to be sure: From first,
                    // then a date and a subject, which prose that merely says "From: ..."
                    // never has.
                    Some((Field::From, _)) => {
                        let block = read_block(&lines, i);
                        if block.has(Field::Date) && block.has(Field::Subject) {
                            block.original("outlook")
                        } else {
                            // Its lines cannot start a better block: go on after them, which
                            // also keeps hostile runs of "From:" lines linear.
                            next = next.max(block.end);
                            None
                        }
                    }
                    _ => None,
                },
            }
        };
        if found.is_some() {
            return found;
        }
        i = next;
    }
    None
}

/// Finds the original message inside a hand-forwarded one: an attached message/rfc822 part,
/// or an inline forwarded block in the body text. None when the message is not a forward.
///
/// An attachment wins over inline text: it carries the real headers, Message-ID included.
/// Delivery reports (multipart/report) also attach the original message, but they are
/// bounces, not forwards, and are left alone.
pub fn find_forwarded_original(message: &Message<'_>) -> Option<ForwardedOriginal> {
    if message.content_type().is_some_and(|ct| {
        ct.ctype().eq_ignore_ascii_case("multipart")
            && ct
                .subtype()
                .is_some_and(|s| s.eq_ignore_ascii_case("report"))
    }) {
        return None;
    }
    let attached = message
        .attachments()
        .filter_map(|part| part.message())
        .find_map(attached_original);
    if attached.is_some() {
        return attached;
    }
    // The first text body is the one the forwarder wrote; mail-parser gives HTML-only mail
    // as text converted from the HTML.
    let text = message.body_text(0)?;
    find_inline_forward(&text)
}

fn attached_original(inner: &Message<'_>) -> Option<ForwardedOriginal> {
    let addr = inner
        .from()
        .and_then(|a| a.iter().find(|a| a.address.is_some()))?;
    let from_address = addr.address.as_deref()?.trim().to_lowercase();
    if from_address.is_empty() {
        return None;
    }
    let clean = |s: &str| {
        let s = s.split_whitespace().collect::<Vec<_>>().join(" ");
        (!s.is_empty()).then_some(s)
    };
    Some(ForwardedOriginal {
        from_address,
        from_name: addr.name.as_deref().and_then(clean),
        subject: inner.subject().and_then(clean),
        date: inner.header_raw(HeaderName::Date).and_then(clean),
        message_id: inner.message_id().and_then(clean),
        style: "rfc822-attachment",
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markers() {
        let cases = [
            (
                "---------- Forwarded message ---------",
                Some(Marker::Forward("gmail")),
            ),
            (
                "-------- Message transféré --------",
                Some(Marker::Forward("thunderbird")),
            ),
            (
                "----- Forwarded Message -----",
                Some(Marker::Forward("yahoo")),
            ),
            (
                "Début du message réexpédié\u{a0}:",
                Some(Marker::Forward("apple")),
            ),
            ("-----Message d\u{2019}origine-----", Some(Marker::Original)),
            ("-----", None),
            ("Begin forwarded message", None),
            ("I forwarded message to you:", None),
        ];
        for (line, expected) in cases {
            assert_eq!(marker(line), expected, "{line:?}");
        }
    }

    #[test]
    fn header_fields() {
        assert_eq!(
            header_field("De\u{a0}: Ana <a@b.c>"),
            Some((Field::From, "Ana <a@b.c>"))
        );
        assert_eq!(
            header_field("*From:* Ana <a@b.c>"),
            Some((Field::From, "Ana <a@b.c>"))
        );
        assert_eq!(
            header_field("Gesendet: Montag"),
            Some((Field::Date, "Montag"))
        );
        assert_eq!(header_field("Re: order"), None);
        assert_eq!(header_field("Note: from us"), None);
        assert_eq!(header_field("http://x.y/"), None);
        assert_eq!(header_field(&"x".repeat(100_000)), None);
    }

    #[test]
    fn mailboxes() {
        let m = |s| parse_mailbox(s);
        let ana = |n: Option<&str>| Some(("ana@example.com".to_string(), n.map(str::to_string)));
        assert_eq!(m("Ana Lima <Ana@Example.com>"), ana(Some("Ana Lima")));
        assert_eq!(m("\"Lima, Ana\" <ana@example.com>"), ana(Some("Lima, Ana")));
        assert_eq!(
            m("Ana Lima [mailto:ana@example.com]"),
            ana(Some("Ana Lima"))
        );
        assert_eq!(m("Ana Lima (ana@example.com)"), ana(Some("Ana Lima")));
        assert_eq!(m("ana@example.com"), ana(None));
        assert_eq!(m("<ana@example.com>"), ana(None));
        assert_eq!(m("ana@example.com <ana@example.com>"), ana(None));
        assert_eq!(
            m("*Ana Lima* <ana@example.com <mailto:ana@example.com>>"),
            ana(Some("Ana Lima"))
        );
        assert_eq!(
            m("'Ana Lima' <mailto:ana@example.com>"),
            ana(Some("Ana Lima"))
        );
        assert_eq!(m("Ana Lima"), None);
        assert_eq!(m("Ana <not an address>"), None);
    }
}
