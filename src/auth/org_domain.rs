//! Organisational domains from the public suffix list (RFC 7489 section 3.2).
//!
//! mail-auth 0.12 finds DMARC's organisational domain by the DMARCbis DNS tree walk; Postern's
//! own decisions (telling direct mail from forwarded mail, the relaxed-alignment hints shown to
//! agents) need an answer that costs no DNS lookup and does not depend on what a sender chose to
//! publish, so they use the public suffix list here.
//!
//! The list comes from the `psl` crate: it compiles the whole list (ICANN and private sections)
//! into Rust code, needs no file at run time and no I/O, is `no_std` with no `unsafe`, and is
//! republished automatically whenever the upstream list changes (its version numbers follow the
//! list, so updating the list is `cargo update -p psl`). The `publicsuffix` crate, by the same
//! authors, parses a list file at run time instead: that would need a copy of the list to be
//! shipped, found and refreshed by Postern itself.
//!
//! Names are compared in one form: lower-case A-labels (`xn--…` punycode) with no trailing dot.
//! Non-ASCII labels are converted by UTS #46 (IDNA) processing, through the IDNA code of the
//! DNS library mail-auth already uses (hickory), so `食狮.公司.cn`, `XN--85X722F.xn--55qx5d.CN`
//! and `食狮。公司。cn` all name the same domain.

use mail_auth::hickory_resolver::proto::rr::Label;

/// Longest name accepted, in presentation form without the trailing dot (RFC 1035 2.3.4).
const MAX_NAME: usize = 253;
const MAX_LABEL: usize = 63;

/// `domain` in the form used for comparisons: lower-case A-labels, no trailing dot.
///
/// `None` when it is not a host name: empty, an empty label (leading dot, `..`), a label longer
/// than 63 bytes or a name longer than 253, a character other than letters, digits, `-` and `_`
/// in an ASCII label, an address literal (`[192.0.2.1]`), or a label that IDNA rejects.
pub fn normalize_domain(domain: &str) -> Option<String> {
    // IDNA label separators (UTS #46 section 2.3): ideographic and fullwidth full stops.
    let text: String = domain
        .trim()
        .chars()
        .map(|c| match c {
            '\u{3002}' | '\u{FF0E}' | '\u{FF61}' => '.',
            c => c,
        })
        .collect();
    let text = text.strip_suffix('.').unwrap_or(&text);
    if text.is_empty() {
        return None;
    }
    let mut labels = Vec::new();
    for label in text.split('.') {
        let ascii = if label.is_ascii() {
            label.to_ascii_lowercase()
        } else {
            Label::from_utf8(label)
                .ok()?
                .to_ascii()
                .to_ascii_lowercase()
        };
        let valid = !ascii.is_empty()
            && ascii.len() <= MAX_LABEL
            && ascii
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !valid {
            return None;
        }
        labels.push(ascii);
    }
    let name = labels.join(".");
    (name.len() <= MAX_NAME).then_some(name)
}

/// The registrable domain of `domain`: its public suffix and the one label before it
/// (`mail.shop.example.co.uk` → `example.co.uk`), normalised as [`normalize_domain`] does.
///
/// `None` when `domain` is itself a public suffix (`com`, `co.uk`, `公司.cn`, `test.ck` under the
/// `*.ck` rule), a single label of an unlisted top-level domain (the list's implicit `*` rule
/// makes every unlisted TLD a public suffix), or not a host name at all.
pub fn registrable_domain(domain: &str) -> Option<String> {
    let name = normalize_domain(domain)?;
    let found = psl::domain(name.as_bytes())?;
    std::str::from_utf8(found.as_bytes())
        .ok()
        .map(str::to_owned)
}

/// The organisational domain of `domain` (RFC 7489 section 3.2, with the public suffix list):
/// lower-case, in A-labels, without a trailing dot.
///
/// - A name below a public suffix gives its registrable domain: `a.b.example.co.uk` →
///   `example.co.uk`, `www.食狮.中国` → `xn--85x722f.xn--fiqs8s`.
/// - Under an unlisted top-level domain, the list's implicit `*` rule applies:
///   `a.b.example.internal` → `example.internal`.
/// - A name that is itself a public suffix (`com`, `co.uk`, `github.io`) or a lone label is its
///   own organisational domain (what RFC 7489 step 4 leaves undefined, and what DMARCbis's tree
///   walk also ends on); so two different public suffixes are never "aligned".
/// - Something that is not a host name (an address literal, an empty label, a character that
///   IDNA rejects) comes back trimmed and lower-cased, without a trailing dot, so it only ever
///   matches itself.
pub fn organizational_domain(domain: &str) -> String {
    match normalize_domain(domain) {
        Some(name) => match psl::domain(name.as_bytes()) {
            Some(found) => std::str::from_utf8(found.as_bytes())
                .map(str::to_owned)
                .unwrap_or(name),
            None => name,
        },
        None => {
            let text = domain.trim().to_lowercase();
            text.strip_suffix('.').unwrap_or(&text).to_string()
        }
    }
}

/// Relaxed identifier alignment (RFC 7489 section 3.1): both names are valid host names with the
/// same organisational domain. Strictly equal names are always aligned.
pub fn relaxed_aligned(a: &str, b: &str) -> bool {
    match (normalize_domain(a), normalize_domain(b)) {
        (Some(a), Some(b)) => a == b || organizational_domain(&a) == organizational_domain(&b),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn examples() {
        assert_eq!(
            organizational_domain("Mail.Shop.Example.CO.UK."),
            "example.co.uk"
        );
        assert_eq!(organizational_domain("com"), "com");
        assert_eq!(organizational_domain("  [192.0.2.1] "), "[192.0.2.1]");
        assert_eq!(
            organizational_domain("www.食狮。中国"),
            "xn--85x722f.xn--fiqs8s"
        );
        assert_eq!(registrable_domain("co.uk"), None);
        assert_eq!(registrable_domain(".example.com"), None);
        assert!(relaxed_aligned("bounce.shop.example", "SHOP.example"));
        assert!(!relaxed_aligned("a.github.io", "b.github.io"));
        assert!(!relaxed_aligned("", ""));
    }
}
