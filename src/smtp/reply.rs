//! SMTP replies with enhanced status codes (RFC 3463).

use std::fmt::Write;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub code: u16,
    pub enhanced: &'static str,
    pub text: String,
}

impl Reply {
    pub fn new(code: u16, enhanced: &'static str, text: impl Into<String>) -> Self {
        Self {
            code,
            enhanced,
            text: text.into(),
        }
    }

    pub fn is_error(&self) -> bool {
        self.code >= 400
    }

    /// The category of a refusal, for the rejected-messages metric.
    pub fn rejection_reason(&self) -> &'static str {
        match (self.code, self.enhanced) {
            (_, "5.1.1") => "unknown_recipient",
            (_, "5.7.1") if self.text.contains("relaying denied") => "relay_denied",
            (_, "5.7.1") => "policy",
            (_, "5.1.3" | "5.1.7" | "5.6.7") => "bad_address",
            (_, "4.5.3") => "too_many_recipients",
            (_, "5.3.4") => "too_large",
            (_, "5.4.6") => "mail_loop",
            (_, "4.3.1") => "disk_full",
            (_, "4.3.0") => "storage_failure",
            (c, _) if c < 500 => "temporary_failure",
            _ => "other",
        }
    }

    /// Appends the reply in wire form; multi-line text becomes `code-` continuation lines.
    pub fn write_to(&self, out: &mut Vec<u8>) {
        let lines: Vec<&str> = self.text.split('\n').collect();
        let mut s = String::new();
        for (i, line) in lines.iter().enumerate() {
            let sep = if i + 1 == lines.len() { ' ' } else { '-' };
            if self.enhanced.is_empty() {
                let _ = write!(s, "{}{}{}\r\n", self.code, sep, line);
            } else {
                let _ = write!(s, "{}{}{} {}\r\n", self.code, sep, self.enhanced, line);
            }
        }
        out.extend_from_slice(s.as_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multi_line() {
        let mut out = Vec::new();
        Reply::new(250, "", "a\nb\nc").write_to(&mut out);
        assert_eq!(out, b"250-a\r\n250-b\r\n250 c\r\n");
        out.clear();
        Reply::new(550, "5.1.1", "no").write_to(&mut out);
        assert_eq!(out, b"550 5.1.1 no\r\n");
    }
}
