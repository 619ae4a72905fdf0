//! When a message that reuses a stored Message-ID is the same message (a retry, a second
//! forwarding path, an import of mail that also arrived live) and when it is another one that
//! must be kept. A Message-ID is chosen by the sender, so anyone can reuse one: being first
//! with it must not let a stranger or a spoof get the real message dropped.

/// What is known of the copy already stored under the Message-ID.
#[derive(Debug, Clone, Copy)]
pub struct StoredCopy<'a> {
    pub sender: Option<&'a str>,
    /// The From domain that DMARC (or a trusted forwarder's ARC seal) proved, if any.
    pub authenticated: bool,
    /// Its raw bytes; `None` when they cannot be read (the copies are then compared by
    /// sender and authentication alone).
    pub raw: Option<&'a [u8]>,
}

/// The copy arriving now.
#[derive(Debug, Clone, Copy)]
pub struct IncomingCopy<'a> {
    pub sender: &'a str,
    pub authenticated: bool,
    pub raw: &'a [u8],
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DuplicateVerdict {
    /// The same message: acknowledge, store nothing.
    Duplicate,
    /// Another message under the same Message-ID: store it too.
    Distinct(DistinctBecause),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DistinctBecause {
    OtherSender,
    OtherBody,
    /// The stored copy was not authenticated and this one is: never drop a proven message
    /// in favour of an unproven one.
    NewlyAuthenticated,
}

pub fn judge_duplicate(stored: StoredCopy<'_>, incoming: IncomingCopy<'_>) -> DuplicateVerdict {
    if stored.sender != Some(incoming.sender) {
        return DuplicateVerdict::Distinct(DistinctBecause::OtherSender);
    }
    if let Some(raw) = stored.raw {
        if !same_body(raw, incoming.raw) {
            return DuplicateVerdict::Distinct(DistinctBecause::OtherBody);
        }
    }
    if incoming.authenticated && !stored.authenticated {
        return DuplicateVerdict::Distinct(DistinctBecause::NewlyAuthenticated);
    }
    DuplicateVerdict::Duplicate
}

/// The body sections (after the first empty line) are equal, line by line, ignoring line
/// endings and trailing white space, which relays and mailbox formats change.
pub fn same_body(a: &[u8], b: &[u8]) -> bool {
    let mut a = body_lines(a);
    let mut b = body_lines(b);
    loop {
        match (a.next(), b.next()) {
            (None, None) => return true,
            (Some(x), Some(y)) if x == y => {}
            // Trailing empty lines are not content.
            (Some([]), None) => return a.all(<[u8]>::is_empty),
            (None, Some([])) => return b.all(<[u8]>::is_empty),
            _ => return false,
        }
    }
}

fn body_lines(raw: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut lines = raw.split(|&c| c == b'\n');
    // Skip the header section: everything up to the first empty line.
    for line in lines.by_ref() {
        if line.strip_suffix(b"\r").unwrap_or(line).is_empty() {
            break;
        }
    }
    lines.map(<[u8]>::trim_ascii_end)
}

#[cfg(test)]
mod tests {
    use super::*;

    const REAL: &[u8] =
        b"From: ceo@brand.test\r\nMessage-ID: <x@brand.test>\r\n\r\nPlease refund order 12.\r\n";
    const RELAYED: &[u8] = b"Received: from relay\nFrom: ceo@brand.test\nMessage-ID: <x@brand.test>\n\nPlease refund order 12.  \n\n";
    const SPOOF: &[u8] =
        b"From: ceo@brand.test\r\nMessage-ID: <x@brand.test>\r\n\r\nWire 10,000 EUR now.\r\n";

    fn stored<'a>(raw: &'a [u8], authenticated: bool) -> StoredCopy<'a> {
        StoredCopy {
            sender: Some("ceo@brand.test"),
            authenticated,
            raw: Some(raw),
        }
    }

    fn incoming<'a>(raw: &'a [u8], authenticated: bool) -> IncomingCopy<'a> {
        IncomingCopy {
            sender: "ceo@brand.test",
            authenticated,
            raw,
        }
    }

    #[test]
    fn a_retry_or_a_relayed_copy_is_a_duplicate() {
        assert_eq!(
            judge_duplicate(stored(REAL, true), incoming(REAL, true)),
            DuplicateVerdict::Duplicate
        );
        assert_eq!(
            judge_duplicate(stored(REAL, false), incoming(RELAYED, false)),
            DuplicateVerdict::Duplicate
        );
        // A second copy that lost its authentication on the way is still the same message.
        assert_eq!(
            judge_duplicate(stored(REAL, true), incoming(RELAYED, false)),
            DuplicateVerdict::Duplicate
        );
    }

    #[test]
    fn a_spoof_stored_first_does_not_get_the_real_message_dropped() {
        // Same Message-ID and From, another body.
        assert_eq!(
            judge_duplicate(stored(SPOOF, false), incoming(REAL, true)),
            DuplicateVerdict::Distinct(DistinctBecause::OtherBody)
        );
        // Even a spoof that copied the body does not win over the authenticated message.
        assert_eq!(
            judge_duplicate(stored(REAL, false), incoming(REAL, true)),
            DuplicateVerdict::Distinct(DistinctBecause::NewlyAuthenticated)
        );
    }

    #[test]
    fn another_sender_is_another_message() {
        let other = StoredCopy {
            sender: Some("someone@else.test"),
            authenticated: false,
            raw: Some(REAL),
        };
        assert_eq!(
            judge_duplicate(other, incoming(REAL, false)),
            DuplicateVerdict::Distinct(DistinctBecause::OtherSender)
        );
    }

    #[test]
    fn bodies_compare_without_line_ending_or_trailing_space_differences() {
        assert!(same_body(REAL, RELAYED));
        assert!(!same_body(REAL, SPOOF));
        assert!(!same_body(
            REAL,
            b"From: a\r\n\r\nPlease refund order 12.\r\nP.S.\r\n"
        ));
        assert!(same_body(b"no body", b"H: v\r\n"));
    }
}
