//! How deep and how many MIME parts a message may have before it is quarantined instead of
//! read. Checked on the parsed structure, iteratively, before classification, attachment
//! extraction or forward detection walk it (they recurse into attached messages).
//!
//! The parser (vendor/mail-parser, `MAX_NESTING` = 100) never builds a tree deeper than 100
//! containers whatever the input, so that dropping or copying it cannot overflow a stack;
//! this policy limit sits below that cap, so a message the parser had to cut short is always
//! quarantined here, whole, rather than read in part.

use mail_parser::{Message, PartType};

/// Containers (multiparts and attached messages) that may enclose a part. Real mail stays
/// under 10: a forward of a bounce of a reply is about 6.
pub const MAX_MIME_DEPTH: usize = 50;

/// Parts of a message, attached messages included. Real mail stays in the tens; each part
/// costs a row walk in every later step.
pub const MAX_MIME_PARTS: usize = 10_000;

/// Why a structure is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StructureViolation {
    TooDeep,
    TooManyParts,
}

impl StructureViolation {
    pub fn detail(&self) -> String {
        match self {
            StructureViolation::TooDeep => format!(
                "MIME parts are nested more than {MAX_MIME_DEPTH} deep (multiparts and attached \
                 messages); the raw message is kept as it came"
            ),
            StructureViolation::TooManyParts => format!(
                "the message has more than {MAX_MIME_PARTS} MIME parts; the raw message is kept \
                 as it came"
            ),
        }
    }
}

/// Walks every part of `message` and its attached messages without recursion.
pub fn check_structure(message: &Message<'_>) -> Result<(), StructureViolation> {
    // (message, part index, containers enclosing that part)
    let mut pending: Vec<(&Message<'_>, usize, usize)> = Vec::new();
    if !message.parts.is_empty() {
        pending.push((message, 0, 0));
    }
    let mut visited = 0usize;
    while let Some((msg, index, depth)) = pending.pop() {
        visited += 1;
        // Also guards against a part list that names a part twice (or itself).
        if visited > MAX_MIME_PARTS {
            return Err(StructureViolation::TooManyParts);
        }
        let Some(part) = msg.parts.get(index) else {
            continue;
        };
        match &part.body {
            PartType::Multipart(children) => {
                if !children.is_empty() && depth + 1 > MAX_MIME_DEPTH {
                    return Err(StructureViolation::TooDeep);
                }
                for &child in children {
                    let child = child as usize;
                    // The parser lists children after their multipart; anything else would be
                    // a loop.
                    if child > index {
                        pending.push((msg, child, depth + 1));
                    }
                }
            }
            PartType::Message(nested) if !nested.parts.is_empty() => {
                if depth + 1 > MAX_MIME_DEPTH {
                    return Err(StructureViolation::TooDeep);
                }
                pending.push((nested, 0, depth + 1));
            }
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use mail_parser::MessageParser;

    /// `levels` attached messages, each inside the one before.
    fn nested_messages(levels: usize) -> Vec<u8> {
        let mut raw = b"From: a@b.c\r\nSubject: nest\r\n".to_vec();
        for _ in 0..levels {
            raw.extend_from_slice(b"Content-Type: message/rfc822\r\n\r\n");
        }
        raw.extend_from_slice(b"From: d@e.f\r\nSubject: inner\r\n\r\nbody\r\n");
        raw
    }

    /// `levels` multiparts, each the only part of the one before.
    fn nested_multiparts(levels: usize) -> Vec<u8> {
        let mut raw = b"From: a@b.c\r\nSubject: nest\r\n".to_vec();
        for i in 0..levels {
            raw.extend_from_slice(
                format!("Content-Type: multipart/mixed; boundary=\"b{i}x\"\r\n\r\n--b{i}x\r\n")
                    .as_bytes(),
            );
        }
        raw.extend_from_slice(b"Content-Type: text/plain\r\n\r\nbody\r\n");
        for i in (0..levels).rev() {
            raw.extend_from_slice(format!("--b{i}x--\r\n").as_bytes());
        }
        raw
    }

    fn check(raw: &[u8]) -> Result<(), StructureViolation> {
        let message = MessageParser::default().parse(raw).unwrap();
        check_structure(&message)
    }

    #[test]
    fn ordinary_nesting_passes() {
        assert_eq!(check(&nested_messages(10)), Ok(()));
        assert_eq!(check(&nested_multiparts(10)), Ok(()));
        assert_eq!(check(&nested_messages(MAX_MIME_DEPTH)), Ok(()));
    }

    #[test]
    fn deep_nesting_is_refused_whatever_the_container() {
        assert_eq!(
            check(&nested_messages(MAX_MIME_DEPTH + 1)),
            Err(StructureViolation::TooDeep)
        );
        assert_eq!(
            check(&nested_multiparts(MAX_MIME_DEPTH + 1)),
            Err(StructureViolation::TooDeep)
        );
    }

    #[test]
    fn the_parser_cap_keeps_hostile_depth_refusable_and_droppable() {
        // Deeper than the parser's own cap: it stops opening containers at 100, the tree
        // stays shallow (this drop used to overflow the stack at 50,000) and is still refused.
        let raw = nested_messages(50_000);
        assert_eq!(check(&raw), Err(StructureViolation::TooDeep));
    }

    #[test]
    fn too_many_parts_is_refused() {
        let mut raw =
            b"From: a@b.c\r\nSubject: parts\r\nContent-Type: multipart/mixed; boundary=\"z\"\r\n\r\n"
                .to_vec();
        for _ in 0..MAX_MIME_PARTS + 1 {
            raw.extend_from_slice(b"--z\r\n\r\nx\r\n");
        }
        raw.extend_from_slice(b"--z--\r\n");
        assert_eq!(check(&raw), Err(StructureViolation::TooManyParts));
    }
}
