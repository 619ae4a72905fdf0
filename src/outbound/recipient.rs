//! Which recipient addresses mail can ever be delivered to. Postern delivers only to domain
//! names it looks up in DNS (MX, then A/AAAA, through the address filter); an address whose
//! domain is an address literal (`a@[127.0.0.1]`), a bare IP address, or not a valid
//! Internet domain name can never be delivered: retrying it for days helps no one, and an
//! address literal handed to a relay would let a user choose which machine Postern's relay
//! connects to. Such a recipient is refused when the reply is queued, and fails permanently
//! (without a connection) if one reaches the queue anyway. The cases are in
//! tests/fixtures/outbound_recipients.txt.

use std::net::IpAddr;

/// Longest domain name in DNS presentation form, without the trailing dot (RFC 1035).
const MAX_DOMAIN_LEN: usize = 253;
const MAX_LABEL_LEN: usize = 63;

/// Top-level names that never lead to a mail server on the Internet (RFC 6761 localhost
/// and invalid, RFC 7686 onion).
const NEVER_DELIVERABLE_TLDS: &[&str] = &["localhost", "invalid", "onion"];

/// Why an address cannot receive mail, with the enhanced status code (RFC 3463) it
/// fails with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Undeliverable {
    /// `5.1.3` (bad destination mailbox address syntax) or `5.1.2` (bad destination
    /// system: a domain that mail cannot be routed to).
    pub status: &'static str,
    /// What is wrong, for people.
    pub reason: String,
}

impl Undeliverable {
    fn syntax(reason: impl Into<String>) -> Self {
        Self {
            status: "5.1.3",
            reason: reason.into(),
        }
    }

    fn system(reason: impl Into<String>) -> Self {
        Self {
            status: "5.1.2",
            reason: reason.into(),
        }
    }
}

impl std::fmt::Display for Undeliverable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.status, self.reason)
    }
}

/// Checks that mail to `address` can be routed: its domain is a DNS name of at least two
/// labels, letters, digits and hyphens (or non-ASCII letters of an internationalised name),
/// with a top-level label that is not all digits (RFC 3696 2), and not a special-use name.
pub fn check_deliverable(address: &str) -> Result<(), Undeliverable> {
    let Some((local, domain)) = address.rsplit_once('@') else {
        return Err(Undeliverable::syntax("the address has no @domain part"));
    };
    if local.is_empty() {
        return Err(Undeliverable::syntax("the address has no local part"));
    }
    if domain.starts_with('[') || domain.ends_with(']') {
        return Err(Undeliverable::system(format!(
            "the domain {domain} is an address literal; Postern delivers only to domain names \
             (found through their MX records), never straight to an IP address"
        )));
    }
    let name = domain.strip_suffix('.').unwrap_or(domain);
    if name.parse::<IpAddr>().is_ok() {
        return Err(Undeliverable::system(format!(
            "the domain {domain} is an IP address, not a domain name"
        )));
    }
    if name.is_empty() {
        return Err(Undeliverable::syntax("the domain is empty"));
    }
    if name.len() > MAX_DOMAIN_LEN {
        return Err(Undeliverable::syntax(format!(
            "the domain is longer than {MAX_DOMAIN_LEN} characters"
        )));
    }
    let labels: Vec<&str> = name.split('.').collect();
    for label in &labels {
        if let Some(why) = bad_label(label) {
            return Err(Undeliverable::syntax(format!(
                "the domain {domain} is not a valid domain name: {why}"
            )));
        }
    }
    let tld = labels.last().copied().unwrap_or_default();
    if labels.len() < 2 {
        return Err(Undeliverable::system(format!(
            "the domain {domain} has a single label; names without a dot (such as localhost) \
             are never mail domains on the Internet (RFC 7085)"
        )));
    }
    if tld.bytes().all(|b| b.is_ascii_digit()) {
        return Err(Undeliverable::syntax(format!(
            "the domain {domain} ends in an all-numeric label, which no top-level domain is \
             (RFC 3696); it looks like an IP address"
        )));
    }
    if NEVER_DELIVERABLE_TLDS
        .iter()
        .any(|t| tld.eq_ignore_ascii_case(t))
    {
        return Err(Undeliverable::system(format!(
            "the domain {domain} is under .{tld}, a special-use name that never leads to a \
             mail server on the Internet"
        )));
    }
    Ok(())
}

/// What is wrong with one label, if anything.
fn bad_label(label: &str) -> Option<String> {
    if label.is_empty() {
        return Some("it has an empty label (two dots in a row, or a leading dot)".into());
    }
    if label.len() > MAX_LABEL_LEN {
        return Some(format!(
            "the label {label:?} is longer than {MAX_LABEL_LEN} characters"
        ));
    }
    if label.starts_with('-') || label.ends_with('-') {
        return Some(format!("the label {label:?} starts or ends with a hyphen"));
    }
    // Non-ASCII letters stand for an internationalised name (its xn-- form is what DNS sees).
    let allowed =
        |c: char| c.is_ascii_alphanumeric() || c == '-' || (!c.is_ascii() && c.is_alphanumeric());
    label
        .chars()
        .find(|&c| !allowed(c))
        .map(|c| format!("{c:?} is not allowed in a domain name"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every case of tests/fixtures/outbound_recipients.txt: `address deliverable|5.1.x`,
    /// one a line, `#` comments.
    #[test]
    fn recipients_follow_the_table() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/outbound_recipients.txt"
        );
        let table = std::fs::read_to_string(path).expect("tests/fixtures/outbound_recipients.txt");
        let mut failures = Vec::new();
        let mut cases = 0;
        for (n, line) in table.lines().enumerate() {
            let line = line.split(" #").next().unwrap_or_default().trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let Some((address, expected)) = line.rsplit_once(char::is_whitespace) else {
                panic!(
                    "line {}: expected `address deliverable|5.1.x`: {line:?}",
                    n + 1
                );
            };
            let address = address.trim();
            cases += 1;
            let got = match check_deliverable(address) {
                Ok(()) => "deliverable".to_string(),
                Err(e) => e.status.to_string(),
            };
            if got != expected {
                failures.push(format!(
                    "line {}: {address:?} should be {expected}, is {got} ({:?})",
                    n + 1,
                    check_deliverable(address).err()
                ));
            }
        }
        assert!(cases > 20, "only {cases} cases read from {path}");
        assert!(failures.is_empty(), "{}", failures.join("\n"));
    }
}
