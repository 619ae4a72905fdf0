//! Envelope addresses (RFC 5321 `Mailbox`), as they appear in MAIL FROM and RCPT TO.
//!
//! The SMTP envelope is stricter than message headers: no comments, no folding
//! whitespace, no obsolete forms. What RFC 5322 allows only in headers is refused here.

use std::fmt;

/// Longest path RFC 5321 allows (256 octets including the angle brackets).
const MAX_ADDRESS_LEN: usize = 254;
const MAX_LOCAL_LEN: usize = 64;
const MAX_DOMAIN_LEN: usize = 255;
const MAX_LABEL_LEN: usize = 63;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct EmailAddress {
    local: String,
    domain: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AddressError {
    #[error("the address is empty")]
    Empty,
    #[error("the address has no @domain part")]
    NoDomain,
    #[error("the local part (before @) is empty")]
    NoLocalPart,
    #[error("the local part is longer than 64 octets")]
    LocalTooLong,
    #[error("the domain is longer than 255 octets")]
    DomainTooLong,
    #[error("the address is longer than 254 octets")]
    TooLong,
    #[error("invalid character {0:?} in the local part")]
    BadLocalChar(char),
    #[error("invalid domain {0:?}")]
    BadDomain(String),
    #[error("invalid address literal {0:?}")]
    BadAddressLiteral(String),
    #[error("non-ASCII address without SMTPUTF8")]
    NeedsSmtpUtf8,
}

impl EmailAddress {
    /// Parses a mailbox as RFC 5321 defines it (`Local-part "@" ( Domain / address-literal )`).
    /// With `utf8` (RFC 6531 SMTPUTF8), non-ASCII characters are allowed in atoms and labels.
    pub fn parse_envelope(input: &str, utf8: bool) -> Result<Self, AddressError> {
        if input.is_empty() {
            return Err(AddressError::Empty);
        }
        if !utf8 && !input.is_ascii() {
            return Err(AddressError::NeedsSmtpUtf8);
        }
        let at = split_at_sign(input)?;
        let (local, domain) = (&input[..at], &input[at + 1..]);
        if local.is_empty() {
            return Err(AddressError::NoLocalPart);
        }
        if domain.is_empty() {
            return Err(AddressError::NoDomain);
        }
        validate_local(local, utf8)?;
        if local.len() > MAX_LOCAL_LEN {
            return Err(AddressError::LocalTooLong);
        }
        validate_domain(domain, utf8)?;
        if input.len() > MAX_ADDRESS_LEN {
            return Err(AddressError::TooLong);
        }
        Ok(Self {
            local: local.to_string(),
            domain: domain.to_string(),
        })
    }

    /// Lenient parse for addresses we generate or read from our own store.
    pub fn parse(input: &str) -> Result<Self, AddressError> {
        Self::parse_envelope(input.trim(), true)
    }

    pub fn local(&self) -> &str {
        &self.local
    }

    pub fn domain(&self) -> &str {
        &self.domain
    }

    /// The form used as a lookup key: domain lower-cased, local part lower-cased too
    /// (every mailbox we host is case-insensitive, and so are the senders we match).
    pub fn normalized(&self) -> String {
        format!(
            "{}@{}",
            self.local.to_lowercase(),
            self.domain.to_ascii_lowercase()
        )
    }
}

impl fmt::Display for EmailAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.local, self.domain)
    }
}

/// Finds the `@` that separates local part and domain, skipping any inside a quoted local part.
fn split_at_sign(input: &str) -> Result<usize, AddressError> {
    let bytes = input.as_bytes();
    if bytes[0] == b'"' {
        let mut i = 1;
        while i < bytes.len() {
            match bytes[i] {
                b'\\' => i += 2,
                b'"' => {
                    return match bytes.get(i + 1) {
                        Some(b'@') => Ok(i + 1),
                        Some(&c) => Err(AddressError::BadLocalChar(c as char)),
                        None => Err(AddressError::NoDomain),
                    };
                }
                _ => i += 1,
            }
        }
        return Err(AddressError::BadLocalChar('"'));
    }
    input.rfind('@').ok_or(AddressError::NoDomain)
}

fn is_atext(c: char, utf8: bool) -> bool {
    c.is_ascii_alphanumeric() || "!#$%&'*+-/=?^_`{|}~".contains(c) || (utf8 && !c.is_ascii())
}

fn validate_local(local: &str, utf8: bool) -> Result<(), AddressError> {
    if let Some(inner) = local.strip_prefix('"') {
        // Quoted-string: qtextSMTP (32-33, 35-91, 93-126) or quoted-pairSMTP ("\" 32-126).
        let inner = inner
            .strip_suffix('"')
            .ok_or(AddressError::BadLocalChar('"'))?;
        let mut chars = inner.chars();
        while let Some(c) = chars.next() {
            match c {
                '\\' => match chars.next() {
                    Some(q) if (' '..='~').contains(&q) => {}
                    Some(q) => return Err(AddressError::BadLocalChar(q)),
                    None => return Err(AddressError::BadLocalChar('\\')),
                },
                '"' => return Err(AddressError::BadLocalChar('"')),
                c if (' '..='~').contains(&c) || (utf8 && !c.is_ascii()) => {}
                c => return Err(AddressError::BadLocalChar(c)),
            }
        }
        return Ok(());
    }
    // Dot-string: atoms separated by single dots, no leading or trailing dot.
    for atom in local.split('.') {
        if atom.is_empty() {
            return Err(AddressError::BadLocalChar('.'));
        }
        if let Some(c) = atom.chars().find(|&c| !is_atext(c, utf8)) {
            return Err(AddressError::BadLocalChar(c));
        }
    }
    Ok(())
}

fn validate_domain(domain: &str, utf8: bool) -> Result<(), AddressError> {
    if let Some(literal) = domain.strip_prefix('[') {
        let literal = literal
            .strip_suffix(']')
            .ok_or_else(|| AddressError::BadAddressLiteral(domain.to_string()))?;
        return validate_address_literal(literal)
            .then_some(())
            .ok_or_else(|| AddressError::BadAddressLiteral(domain.to_string()));
    }
    if domain.len() > MAX_DOMAIN_LEN {
        return Err(AddressError::DomainTooLong);
    }
    let bad = || AddressError::BadDomain(domain.to_string());
    for label in domain.split('.') {
        let ok = !label.is_empty()
            && label.len() <= MAX_LABEL_LEN
            && !label.starts_with('-')
            && !label.ends_with('-')
            && label
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || (utf8 && !c.is_ascii()));
        if !ok {
            return Err(bad());
        }
    }
    Ok(())
}

/// RFC 5321 address-literal: IPv4, or `IPv6:` in its full, compressed and v4-mapped forms.
/// General address literals (`tag:content`) are refused: nothing routes them.
fn validate_address_literal(literal: &str) -> bool {
    match literal.strip_prefix("IPv6:") {
        Some(v6) => valid_ipv6_literal(v6),
        None => valid_ipv4(literal),
    }
}

fn valid_ipv4(s: &str) -> bool {
    let parts: Vec<&str> = s.split('.').collect();
    parts.len() == 4
        && parts.iter().all(|p| {
            !p.is_empty() && p.len() <= 3 && p.bytes().all(|b| b.is_ascii_digit()) && {
                p.parse::<u16>().map(|n| n <= 255).unwrap_or(false)
            }
        })
}

fn valid_hex_groups(s: &str) -> Option<usize> {
    if s.is_empty() {
        return Some(0);
    }
    let groups: Vec<&str> = s.split(':').collect();
    groups
        .iter()
        .all(|g| !g.is_empty() && g.len() <= 4 && g.bytes().all(|b| b.is_ascii_hexdigit()))
        .then_some(groups.len())
}

fn valid_ipv6_literal(s: &str) -> bool {
    // A trailing dotted IPv4 stands for the last two groups: check it, then put two plain
    // groups in its place, so that one grammar covers IPv6-full/comp and IPv6v4-full/comp.
    let with_groups;
    let hex = match s.rfind(':') {
        Some(i) if s[i + 1..].contains('.') => {
            if !valid_ipv4(&s[i + 1..]) {
                return false;
            }
            with_groups = format!("{}0:0", &s[..=i]);
            with_groups.as_str()
        }
        _ => s,
    };
    match hex.find("::") {
        Some(pos) => {
            // Both sides must be clean group lists: this refuses a second "::", ":::" and a
            // stray colon at either end ("1::2:"), which splitting on the first "::" alone
            // would let through.
            let (left, right) = (&hex[..pos], &hex[pos + 2..]);
            match (valid_hex_groups(left), valid_hex_groups(right)) {
                // IPv6-comp: at most 6 groups besides the "::", which stands for at least two
                // zero groups (4 plus the IPv4 when one ends it, the IPv4 counting as 2).
                (Some(l), Some(r)) => l + r <= 6,
                _ => false,
            }
        }
        None => valid_hex_groups(hex) == Some(8),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_plain_and_quoted() {
        assert!(EmailAddress::parse_envelope("a@b.c", false).is_ok());
        assert!(EmailAddress::parse_envelope("\"a b\"@b.c", false).is_ok());
        assert!(EmailAddress::parse_envelope("a@[1.2.3.4]", false).is_ok());
        assert!(EmailAddress::parse_envelope("a@[IPv6:::1]", false).is_ok());
        assert!(EmailAddress::parse_envelope("a@[IPv6::1]", false).is_err());
        assert!(EmailAddress::parse_envelope("a@[IPv6:1::1.2.3.4]", false).is_ok());
        assert!(EmailAddress::parse_envelope("a@[IPv6:1:2:3:4:5:6:1.2.3.4]", false).is_ok());
        assert!(EmailAddress::parse_envelope("a@[IPv6:::1.2.3.4]", false).is_ok());
    }

    #[test]
    fn refuses_malformed_ipv6_literals() {
        for bad in [
            "a@[IPv6:::::]",
            "a@[IPv6:1:::]",
            "a@[IPv6:1::2:]",
            "a@[IPv6:1::2::3]",
            "a@[IPv6:1:2:3:4:::1.2.3.4]",
            "a@[IPv6::1.2.3.4]",
            "a@[IPv6:1:2:3:4:5:6::8]",
            "a@[IPv6:1:2:3:4:5:6::1.2.3.4]",
            "a@[IPv6:1:2:3:4:5:1.2.3.4]",
        ] {
            assert!(EmailAddress::parse_envelope(bad, false).is_err(), "{bad}");
        }
    }

    #[test]
    fn refuses_header_only_forms() {
        for bad in [
            "a..b@c", ".a@c", "a.@c", "a@-c.d", "a@c..d", "(x)a@c", "a @c", "a@", "@c",
        ] {
            assert!(EmailAddress::parse_envelope(bad, false).is_err(), "{bad}");
        }
    }

    #[test]
    fn utf8_needs_smtputf8() {
        assert_eq!(
            EmailAddress::parse_envelope("josé@exemple.fr", false),
            Err(AddressError::NeedsSmtpUtf8)
        );
        assert!(EmailAddress::parse_envelope("josé@exemple.fr", true).is_ok());
    }
}
