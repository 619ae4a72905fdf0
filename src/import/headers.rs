//! The little a source reads of a message itself: the end of its header block, one header's
//! value, its Date, and the mbox `From ` line's date.

use super::source::MessageFlags;
use chrono::{DateTime, NaiveDateTime, Utc};

/// How much of a message is searched for its header block (a longer header block is hostile
/// or broken; its Date is then not looked for).
pub const HEADER_SCAN_LIMIT: usize = 256 * 1024;

/// The header block of `raw` (without the blank line), at most [`HEADER_SCAN_LIMIT`] bytes.
pub fn header_block(raw: &[u8]) -> &[u8] {
    let raw = &raw[..raw.len().min(HEADER_SCAN_LIMIT)];
    let mut at = 0;
    while at < raw.len() {
        let end = memchr::memchr(b'\n', &raw[at..]).map_or(raw.len(), |i| at + i + 1);
        let line = &raw[at..end];
        if line == b"\n" || line == b"\r\n" {
            return &raw[..at];
        }
        at = end;
    }
    raw
}

/// The unfolded value of the first header named `name` (case-insensitive).
pub fn header_value(headers: &[u8], name: &str) -> Option<String> {
    let mut value: Option<Vec<u8>> = None;
    for line in headers.split_inclusive(|b| *b == b'\n') {
        let trimmed = trim_eol(line);
        if let Some(v) = value.as_mut() {
            if trimmed.first().is_some_and(|b| *b == b' ' || *b == b'\t') {
                v.push(b' ');
                v.extend_from_slice(trimmed.trim_ascii());
                continue;
            }
            break;
        }
        if trimmed.len() > name.len()
            && trimmed[name.len()] == b':'
            && trimmed[..name.len()].eq_ignore_ascii_case(name.as_bytes())
        {
            value = Some(trimmed[name.len() + 1..].trim_ascii().to_vec());
        }
    }
    value.map(|v| String::from_utf8_lossy(&v).into_owned())
}

/// The message's Date header as UTC, when there is one that parses.
pub fn header_date(headers: &[u8]) -> Option<DateTime<Utc>> {
    let value = header_value(headers, "Date")?;
    let parsed = mail_parser::DateTime::parse_rfc822(&value)?;
    DateTime::from_timestamp(parsed.to_timestamp(), 0)
}

/// Flags written by mbox mail readers: `Status: RO` (read, old), `X-Status: AFD` (answered,
/// flagged, deleted). `None` when neither header is there.
pub fn mbox_status_flags(headers: &[u8]) -> Option<MessageFlags> {
    let status = header_value(headers, "Status");
    let x_status = header_value(headers, "X-Status");
    if status.is_none() && x_status.is_none() {
        return None;
    }
    let status = status.unwrap_or_default();
    let x_status = x_status.unwrap_or_default();
    Some(MessageFlags {
        seen: status.contains('R'),
        answered: x_status.contains('A'),
        flagged: x_status.contains('F'),
        deleted: x_status.contains('D'),
        draft: x_status.contains('T'),
        forwarded: false,
    })
}

/// The date of an mbox `From sender DATE` line: asctime (`Mon Jun  3 12:50:27 1996`),
/// optionally with a zone before or after the year (`Fri Sep 26 17:18:40 +0000 2025`).
/// The envelope sender of an mbox `From ` line, when it is an address (`-`, `MAILER-DAEMON`
/// and other placeholders are not).
pub fn from_line_sender(line: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(trim_eol(line)).ok()?;
    let sender = text.strip_prefix("From ")?.split_whitespace().next()?;
    let sender = sender.trim_start_matches('<').trim_end_matches('>');
    (sender.contains('@') && sender.len() <= 320).then(|| sender.to_string())
}

pub fn from_line_date(line: &[u8]) -> Option<DateTime<Utc>> {
    let text = std::str::from_utf8(trim_eol(line)).ok()?;
    let mut words = text.split_whitespace();
    if words.next()? != "From" {
        return None;
    }
    words.next()?; // the envelope sender, or "-" (Thunderbird)
    let words: Vec<&str> = words.collect();
    if words.len() < 5 {
        return None;
    }
    let zone = words
        .iter()
        .position(|w| w.starts_with(['+', '-']) && w.len() == 5);
    let mut rest: Vec<&str> = words.clone();
    let offset_secs = match zone {
        Some(i) => {
            let w = rest.remove(i);
            let sign = if w.starts_with('-') { -1 } else { 1 };
            let hours: i64 = w[1..3].parse().ok()?;
            let minutes: i64 = w[3..5].parse().ok()?;
            sign * (hours * 3600 + minutes * 60)
        }
        None => 0,
    };
    let joined = rest.get(..5)?.join(" ");
    let naive = NaiveDateTime::parse_from_str(&joined, "%a %b %d %H:%M:%S %Y").ok()?;
    let utc = naive.and_utc() - chrono::Duration::seconds(offset_secs);
    Some(utc)
}

pub fn trim_eol(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// Whether `line` could be a header field line (`Name: value`): the sign that a `From ` line
/// before it starts a message rather than being body text.
pub fn looks_like_header_line(line: &[u8]) -> bool {
    let Some(colon) = memchr::memchr(b':', line) else {
        return false;
    };
    colon > 0
        && line[..colon]
            .iter()
            .all(|b| (33..=126).contains(b) && *b != b':')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_folded_headers_case_insensitively() {
        let h = b"Subject: a\r\n b\r\ndate: Fri, 23 Aug 2002 02:32:53 -0400\r\nX: y\r\n";
        assert_eq!(header_value(h, "subject").as_deref(), Some("a b"));
        let d = header_date(h).map(|d| d.to_rfc3339());
        assert_eq!(d.as_deref(), Some("2002-08-23T06:32:53+00:00"));
        assert_eq!(header_value(h, "Sub"), None);
    }

    #[test]
    fn header_block_stops_at_the_blank_line() {
        assert_eq!(header_block(b"A: 1\nB: 2\n\nbody\n"), b"A: 1\nB: 2\n");
        assert_eq!(header_block(b"A: 1\r\n\r\nB: 2\r\n"), b"A: 1\r\n");
    }

    #[test]
    fn reads_from_line_dates_of_several_writers() {
        let cases: [(&[u8], &str); 3] = [
            (
                b"From - Mon Jun  3 12:50:27 1996\n",
                "1996-06-03T12:50:27+00:00",
            ),
            (
                b"From 1844@xxx Fri Sep 26 17:18:40 +0200 2025\r\n",
                "2025-09-26T15:18:40+00:00",
            ),
            (
                b"From a@b.c Sat Nov  2 21:56:58 1996 -0100\n",
                "1996-11-02T22:56:58+00:00",
            ),
        ];
        for (line, want) in cases {
            assert_eq!(
                from_line_date(line).map(|d| d.to_rfc3339()).as_deref(),
                Some(want)
            );
        }
        assert_eq!(from_line_date(b"From - \n"), None);
        assert_eq!(from_line_date(b"From Russia with love\n"), None);
    }

    #[test]
    fn mbox_status_headers_become_flags() {
        let f = mbox_status_flags(b"Status: RO\nX-Status: A\n").unwrap_or_default();
        assert!(f.seen && f.answered && !f.flagged);
        assert_eq!(mbox_status_flags(b"Subject: x\n"), None);
    }
}
