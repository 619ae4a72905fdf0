//! The per-support-address mailbox Postern hosts: `<local>-<token>@<inbound domain>`.

use rand::Rng;

/// 16 characters of base32: 80 random bits, unguessable, and safe in any local part.
const TOKEN_LEN: usize = 16;
const TOKEN_ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz234567";
/// Keeps the whole local part within RFC 5321's 64 octets.
const MAX_PREFIX_LEN: usize = 40;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForwardingAddress {
    pub address: String,
    pub token: String,
}

impl ForwardingAddress {
    /// A fresh address for the support mailbox whose local part is `support_local`.
    pub fn generate(support_local: &str, inbound_domain: &str) -> Self {
        let mut rng = rand::thread_rng();
        let token: String = (0..TOKEN_LEN)
            .map(|_| TOKEN_ALPHABET[rng.gen_range(0..TOKEN_ALPHABET.len())] as char)
            .collect();
        let prefix = sanitize_prefix(support_local);
        Self {
            address: format!("{prefix}-{token}@{}", inbound_domain.to_ascii_lowercase()),
            token,
        }
    }
}

/// Lower-case letters, digits, dots and hyphens only, so the address is a plain dot-atom.
fn sanitize_prefix(local: &str) -> String {
    let mut out: String = local
        .to_lowercase()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '-'
            }
        })
        .take(MAX_PREFIX_LEN)
        .collect();
    out = out.trim_matches('-').to_string();
    if out.is_empty() {
        "support".to_string()
    } else {
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::EmailAddress;

    #[test]
    fn generated_addresses_are_valid_and_distinct() {
        let a = ForwardingAddress::generate("Support+FR", "in.example.com");
        let b = ForwardingAddress::generate("Support+FR", "in.example.com");
        assert_ne!(a.address, b.address);
        assert!(a.address.starts_with("support-fr-"));
        assert!(EmailAddress::parse_envelope(&a.address, false).is_ok());
        assert_eq!(a.token.len(), TOKEN_LEN);
    }
}
