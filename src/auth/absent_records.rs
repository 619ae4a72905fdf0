//! Remembers TXT names that have no record. mail-auth caches the records it finds but never
//! a name without one, so each message from a domain without SPF or DMARC asked the
//! resolver again, and hickory's answer from its own negative cache (clones of the SOA and
//! authority records with their TTLs counted down) cost more than the rest of SPF and
//! DMARC together. After a verification, each such name that is not in our cache is asked
//! once more (hickory answers from its cache) and a "no record" answer that carries a
//! negative TTL (RFC 2308) goes into our cache as mail-auth's own "record not found" error,
//! which mail-auth's lookups return exactly as if the resolver had said it.

use super::{Authenticator, NEGATIVE_TTL_CAP};
use mail_auth::hickory_resolver::net::{DnsError as NetDnsError, NetError};
use mail_auth::hickory_resolver::proto::rr::Name;
use mail_auth::{ResolverCache, Txt};
use std::time::{Duration, Instant};

/// The names DMARC's DNS tree walk (RFC 9989 4.10.1) asks about for `domain`, in order:
/// `_dmarc.` + the domain, then with its leftmost labels dropped (to seven labels at once
/// when it has eight or more) down to the top-level domain. Mirrors mail-auth's walk.
pub(super) fn dmarc_walk_names(domain: &str) -> Vec<String> {
    let domain = domain.trim_end_matches('.');
    let labels: Vec<&str> = domain.split('.').filter(|l| !l.is_empty()).collect();
    let total = labels.len();
    let mut names = Vec::new();
    if total < 2 {
        return names;
    }
    let mut count = total;
    loop {
        names.push(format!("_dmarc.{}", labels[total - count..].join(".")));
        if count == 1 {
            break;
        }
        count = if count >= 8 { 7 } else { count - 1 };
    }
    names
}

/// mail-auth's cache key for a name: lower case with the trailing dot.
fn cache_key(name: &str) -> Box<str> {
    let lower = name.to_lowercase();
    if lower.ends_with('.') {
        lower.into()
    } else {
        format!("{lower}.").into()
    }
}

impl Authenticator {
    /// Whether "`name` has no TXT record" is cached now (diagnostics and tests).
    pub fn remembers_absent_txt(&self, name: &str) -> bool {
        matches!(
            self.txt.get::<str>(&cache_key(name)),
            Some(Txt::Error(mail_auth::Error::Dns(
                mail_auth::DnsError::RecordNotFound(_)
            )))
        )
    }

    /// For each of `names` not in the TXT cache: if the resolver says it has no TXT record
    /// and gives a negative TTL, cache that answer for the TTL (at most the cap). Names with
    /// records are left to mail-auth, which caches them itself; errors are not cached.
    pub(super) async fn remember_absent_txt(&self, names: &[String]) {
        for name in names {
            if name.is_empty() || name.len() > 255 {
                continue;
            }
            let key = cache_key(name);
            if self.txt.get::<str>(&key).is_some() {
                continue;
            }
            // Parsed as mail-auth parses it: relaxed, so `_dmarc` labels are names.
            let Ok(dns_name) = Name::from_str_relaxed(&*key) else {
                continue;
            };
            let Err(NetError::Dns(NetDnsError::NoRecordsFound(none))) =
                self.resolver.0.txt_lookup(dns_name).await
            else {
                continue;
            };
            let Some(ttl) = none.negative_ttl.filter(|t| *t > 0) else {
                continue;
            };
            let ttl = Duration::from_secs(u64::from(ttl)).min(NEGATIVE_TTL_CAP);
            let absent =
                mail_auth::Error::Dns(mail_auth::DnsError::RecordNotFound(none.response_code));
            self.txt
                .insert(key, Txt::Error(absent), Instant::now() + ttl);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn walk_goes_from_the_domain_to_the_tld() {
        assert_eq!(
            dmarc_walk_names("Mail.Example.com."),
            [
                "_dmarc.Mail.Example.com",
                "_dmarc.Example.com",
                "_dmarc.com"
            ]
        );
        assert!(dmarc_walk_names("localhost").is_empty());
        let deep = dmarc_walk_names("a.b.c.d.e.f.g.h.i.j");
        assert_eq!(deep[0], "_dmarc.a.b.c.d.e.f.g.h.i.j");
        assert_eq!(deep[1], "_dmarc.d.e.f.g.h.i.j");
        assert_eq!(deep.last().map(String::as_str), Some("_dmarc.j"));
        assert_eq!(deep.len(), 8);
    }

    #[test]
    fn keys_match_mail_auth() {
        use mail_auth::common::resolver::ToFqdn;
        for n in ["Example.COM", "example.com.", "_dmarc.x.example"] {
            assert_eq!(cache_key(n), n.to_fqdn());
        }
    }
}
