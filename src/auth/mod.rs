//! Sender authentication: iprev, SPF (HELO and MAIL FROM), DKIM, ARC and DMARC, through
//! mail-auth, with one shared resolver and bounded caches. Verification runs on the bytes
//! exactly as received; nothing here rejects mail: the verdicts go to [`policy`].

mod absent_records;
mod cache;
pub mod org_domain;
pub mod policy;

pub use crate::domain::{
    ArcVerdict, AuthVerdicts, DmarcVerdict, PolicyOutcome, StoredAuthResults, Verdict,
};
pub use cache::BoundedCache;
pub use policy::{evaluate, AuthPolicy};

use mail_auth::hickory_resolver::config::{
    ConnectionConfig, NameServerConfig, ResolverConfig, ResolverOpts,
};
use mail_auth::spf::verify::HasValidLabels;
use mail_auth::{
    AuthenticatedMessage, AuthenticationResults, DkimOutput, DkimResult, DmarcResult, IprevResult,
    MessageAuthenticator, Parameters, RecordSet, SpfResult, Txt, MX,
};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("DNS resolver set-up failed: {0}")]
    Resolver(String),
    #[error("dns.nameservers: {0:?} is not an IP address (optionally with :port)")]
    BadNameserver(String),
}

impl Verdict {
    fn new(result: &str) -> Self {
        Self {
            result: result.to_string(),
            domain: None,
            selector: None,
            reason: None,
        }
    }
    fn domain(mut self, d: &str) -> Self {
        if !d.is_empty() {
            self.domain = Some(d.to_ascii_lowercase());
        }
        self
    }
    fn reason(mut self, r: impl ToString) -> Self {
        self.reason = Some(r.to_string());
        self
    }
}

impl AuthVerdicts {
    /// Every check "temperror": what is recorded when verification itself broke down.
    pub fn unavailable(reason: &str, hostname: &str) -> Self {
        let t = || Verdict::new("temperror").reason(reason);
        Self {
            iprev: t(),
            spf_helo: t(),
            spf_mail_from: t(),
            dkim: vec![t()],
            arc: ArcVerdict {
                result: "temperror".into(),
                sealers: vec![],
                hop_dmarc: vec![],
                reason: Some(reason.into()),
            },
            dmarc: DmarcVerdict {
                result: "temperror".into(),
                from_domain: String::new(),
                policy: "unspecified".into(),
                spf_aligned: false,
                dkim_aligned: false,
                reason: Some(reason.into()),
            },
            header: format!("{hostname}; auth=temperror ({reason})"),
        }
    }
}

/// The connection facts verification needs.
#[derive(Debug, Clone)]
pub struct SmtpFacts<'a> {
    pub ip: IpAddr,
    pub helo: &'a str,
    /// None for the null reverse-path.
    pub mail_from: Option<&'a str>,
}

/// The longest a "no such record" answer is believed: a domain that publishes SPF or
/// DMARC is seen within this time even if its zone asks for longer negative caching.
const NEGATIVE_TTL_CAP: Duration = Duration::from_secs(15 * 60);

/// mail-auth parameters wired to our shared caches.
type CachedParameters<'x, P> = Parameters<
    'x,
    P,
    BoundedCache<Box<str>, Txt>,
    BoundedCache<Box<str>, RecordSet<MX>>,
    BoundedCache<Box<str>, RecordSet<Ipv4Addr>>,
    BoundedCache<Box<str>, RecordSet<Ipv6Addr>>,
    BoundedCache<IpAddr, RecordSet<Box<str>>>,
>;

/// The DNS resolver of the configuration (`dns.nameservers`, `dns.timeout`,
/// `dns.cache_size`), for sender authentication and for outbound mail (MX lookups, the
/// checks of sending domains).
pub fn dns_resolver(
    nameservers: &[String],
    timeout: Duration,
    cache_size: usize,
) -> Result<MessageAuthenticator, AuthError> {
    let mut opts = ResolverOpts::default();
    opts.timeout = timeout;
    opts.attempts = 1;
    // Our caches hold parsed records but mail-auth never caches a missing record; the
    // resolver's cache keeps NXDOMAIN/NODATA for the zone's negative TTL (RFC 2308), so
    // a sender domain without SPF or DMARC is not asked about again for every message.
    opts.cache_size = cache_size as u64;
    opts.negative_max_ttl = Some(NEGATIVE_TTL_CAP);
    let resolver = if nameservers.is_empty() {
        let (config, mut sys_opts) = mail_auth::hickory_resolver::system_conf::read_system_conf()
            .map_err(|e| AuthError::Resolver(e.to_string()))?;
        sys_opts.timeout = timeout;
        sys_opts.attempts = 1;
        sys_opts.cache_size = cache_size as u64;
        sys_opts.negative_max_ttl = Some(NEGATIVE_TTL_CAP);
        MessageAuthenticator::new(config, sys_opts)
    } else {
        let mut servers = Vec::new();
        for ns in nameservers {
            let addr: SocketAddr = ns
                .parse()
                .or_else(|_| ns.parse::<IpAddr>().map(|ip| SocketAddr::new(ip, 53)))
                .map_err(|_| AuthError::BadNameserver(ns.clone()))?;
            servers.push(addr);
        }
        let name_servers = servers
            .into_iter()
            .map(|addr| {
                let mut udp = ConnectionConfig::udp();
                udp.port = addr.port();
                let mut tcp = ConnectionConfig::tcp();
                tcp.port = addr.port();
                NameServerConfig::new(addr.ip(), true, vec![udp, tcp])
            })
            .collect();
        MessageAuthenticator::new(ResolverConfig::from_parts(None, vec![], name_servers), opts)
    };
    resolver.map_err(|e| AuthError::Resolver(e.to_string()))
}

pub struct Authenticator {
    resolver: MessageAuthenticator,
    hostname: String,
    txt: BoundedCache<Box<str>, Txt>,
    mx: BoundedCache<Box<str>, RecordSet<MX>>,
    ptr: BoundedCache<IpAddr, RecordSet<Box<str>>>,
    ipv4: BoundedCache<Box<str>, RecordSet<Ipv4Addr>>,
    ipv6: BoundedCache<Box<str>, RecordSet<Ipv6Addr>>,
}

fn spf_word(r: SpfResult) -> &'static str {
    match r {
        SpfResult::Pass => "pass",
        SpfResult::Fail => "fail",
        SpfResult::SoftFail => "softfail",
        SpfResult::Neutral => "neutral",
        SpfResult::TempError => "temperror",
        SpfResult::PermError => "permerror",
        SpfResult::None => "none",
    }
}

fn dkim_verdict(r: &DkimResult) -> Verdict {
    match r {
        DkimResult::Pass => Verdict::new("pass"),
        DkimResult::Neutral(e) => Verdict::new("neutral").reason(e),
        DkimResult::Fail(e) => Verdict::new("fail").reason(e),
        DkimResult::PermError(e) => Verdict::new("permerror").reason(e),
        DkimResult::TempError(e) => Verdict::new("temperror").reason(e),
        DkimResult::None => Verdict::new("none"),
    }
}

fn dmarc_word(r: &DmarcResult) -> (&'static str, Option<String>) {
    match r {
        DmarcResult::Pass => ("pass", None),
        DmarcResult::Fail(e) => ("fail", Some(e.to_string())),
        DmarcResult::TempError(e) => ("temperror", Some(e.to_string())),
        DmarcResult::PermError(e) => ("permerror", Some(e.to_string())),
        DmarcResult::None => ("none", None),
    }
}

/// The `dmarc=` result a hop wrote in its ARC-Authentication-Results, if any.
fn dmarc_in_results(value: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(value).to_ascii_lowercase();
    let at = text.find("dmarc=")?;
    Some(
        text[at + 6..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric())
            .collect(),
    )
}

impl Authenticator {
    /// [`Authenticator::verify`] with its panics caught: should the verification code panic
    /// on some hostile record, the message still gets verdicts (temperror) and the session
    /// lives. (Caught in place rather than in a task of its own: a spawned task cost each
    /// message a hand-off between the runtime's threads.)
    pub async fn verify_contained(
        self: &Arc<Self>,
        raw: Arc<Vec<u8>>,
        ip: IpAddr,
        helo: String,
        mail_from: Option<String>,
    ) -> AuthVerdicts {
        use futures_util::FutureExt;
        let facts = SmtpFacts {
            ip,
            helo: &helo,
            mail_from: mail_from.as_deref(),
        };
        match std::panic::AssertUnwindSafe(self.verify(&raw, &facts))
            .catch_unwind()
            .await
        {
            Ok(v) => v,
            Err(panic) => {
                let what = panic
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_default();
                tracing::error!(panic = %what, "sender verification failed internally");
                AuthVerdicts::unavailable("internal error during verification", &self.hostname)
            }
        }
    }

    /// A resolver on `nameservers` (IP or IP:port; the system configuration when empty),
    /// each lookup bounded by `timeout`, caches of `cache_size` entries per record type.
    pub fn new(
        nameservers: &[String],
        timeout: Duration,
        cache_size: usize,
        hostname: &str,
    ) -> Result<Self, AuthError> {
        let resolver = dns_resolver(nameservers, timeout, cache_size)?;
        Ok(Self {
            resolver,
            hostname: hostname.to_string(),
            txt: BoundedCache::new(cache_size),
            mx: BoundedCache::new(cache_size),
            ptr: BoundedCache::new(cache_size),
            ipv4: BoundedCache::new(cache_size),
            ipv6: BoundedCache::new(cache_size),
        })
    }

    fn params<P>(&self, p: P) -> CachedParameters<'_, P> {
        Parameters::new(p)
            .with_txt_cache(&self.txt)
            .with_mx_cache(&self.mx)
            .with_ptr_cache(&self.ptr)
            .with_ipv4_cache(&self.ipv4)
            .with_ipv6_cache(&self.ipv6)
    }

    /// Verifies one message as received from `facts`.
    pub async fn verify(&self, raw: &[u8], facts: &SmtpFacts<'_>) -> AuthVerdicts {
        // An IPv4 client seen through an IPv6 socket (::ffff:a.b.c.d) is an IPv4 client for
        // SPF and iprev (RFC 7208 5.6).
        let facts = &SmtpFacts {
            ip: facts.ip.to_canonical(),
            ..facts.clone()
        };
        let helo = facts.helo;
        // RFC 7208 2.4: with a null reverse-path, MAIL FROM is checked as postmaster@HELO.
        let postmaster = format!("postmaster@{helo}");
        let mail_from = facts
            .mail_from
            .filter(|m| !m.is_empty())
            .unwrap_or(&postmaster);
        let mail_from_domain = mail_from.rsplit_once('@').map_or(helo, |(_, d)| d);
        let host = self.hostname.as_str();

        let message = AuthenticatedMessage::parse(raw);
        let spf_helo = self.resolver.verify_spf(self.params(
            mail_auth::spf::verify::SpfParameters::verify_ehlo(facts.ip, helo, host),
        ));
        let spf_mail = self.resolver.verify_spf(self.params(
            mail_auth::spf::verify::SpfParameters::verify_mail_from(
                facts.ip, helo, host, mail_from,
            ),
        ));
        let iprev = self.resolver.verify_iprev(self.params(facts.ip));
        let (spf_helo, spf_mail, iprev) = tokio::join!(spf_helo, spf_mail, iprev);

        let iprev_v = match &iprev.result {
            IprevResult::Pass => Verdict::new("pass"),
            IprevResult::Fail(e) => Verdict::new("fail").reason(e),
            IprevResult::TempError(e) => Verdict::new("temperror").reason(e),
            IprevResult::PermError(e) => Verdict::new("permerror").reason(e),
            IprevResult::None => Verdict::new("none"),
        };
        let iprev_v = match iprev.ptr.as_ref().and_then(|p| p.first()) {
            Some(name) => iprev_v.domain(name.trim_end_matches('.')),
            None => iprev_v,
        };
        let spf_helo_v = Verdict::new(spf_word(spf_helo.result())).domain(spf_helo.domain());
        let spf_mail_v = Verdict::new(spf_word(spf_mail.result())).domain(spf_mail.domain());
        let spf_helo_v = match spf_helo.explanation() {
            Some(e) => spf_helo_v.reason(e),
            None => spf_helo_v,
        };
        let spf_mail_v = match spf_mail.explanation() {
            Some(e) => spf_mail_v.reason(e),
            None => spf_mail_v,
        };

        // Names that had no SPF record (SpfResult::None): see `absent_records`. Only those
        // mail-auth asked about: a HELO that is no domain name is not looked up.
        let mut absent_txt: Vec<String> = [&spf_helo, &spf_mail]
            .into_iter()
            .filter(|o| o.result() == SpfResult::None)
            .map(|o| o.domain())
            .filter(|d| d.len() <= 255 && d.has_valid_labels())
            .map(str::to_string)
            .collect();

        let Some(message) = message else {
            self.remember_absent_txt(&absent_txt).await;
            let reason = "the message header could not be parsed";
            let header = format!(
                "{host}; dkim=none; spf={}; dmarc=none; arc=none",
                spf_mail_v.result
            );
            return AuthVerdicts {
                iprev: iprev_v,
                spf_helo: spf_helo_v,
                spf_mail_from: spf_mail_v,
                dkim: vec![],
                arc: ArcVerdict {
                    result: "none".into(),
                    sealers: vec![],
                    hop_dmarc: vec![],
                    reason: Some(reason.into()),
                },
                dmarc: DmarcVerdict {
                    result: "none".into(),
                    from_domain: String::new(),
                    policy: "unspecified".into(),
                    spf_aligned: false,
                    dkim_aligned: false,
                    reason: Some(reason.into()),
                },
                header,
            };
        };
        let (dkim, arc) = tokio::join!(
            self.resolver.verify_dkim(self.params(&message)),
            self.resolver.verify_arc(self.params(&message))
        );
        // DMARC must not count a signature we refuse (see `signature_defect`).
        let dkim_for_dmarc: Vec<_> = dkim
            .iter()
            .filter(|o| o.signature().is_none_or(|s| signature_defect(s).is_none()))
            .cloned()
            .collect();
        let dmarc = self
            .resolver
            .verify_dmarc(self.params(mail_auth::dmarc::verify::DmarcParameters::new(
                &message,
                &dkim_for_dmarc,
                mail_from_domain,
                &spf_mail,
            )))
            .await;
        // A temporary error stops the walk: the rest of its names were not asked.
        if !matches!(dmarc.dkim_result(), DmarcResult::TempError(_)) {
            absent_txt.extend(absent_records::dmarc_walk_names(dmarc.domain()));
        }
        self.remember_absent_txt(&absent_txt).await;

        let from = message.from().to_string();
        let header = AuthenticationResults::new(host)
            .with_dkim_results(&dkim_as_reported(&dkim), &from)
            .with_spf_ehlo_result(&spf_helo, facts.ip, helo)
            .with_spf_mailfrom_result(&spf_mail, facts.ip, facts.mail_from.unwrap_or(""), helo)
            .with_arc_result(&arc, facts.ip)
            .with_dmarc_result(&dmarc)
            .with_iprev_result(&iprev, facts.ip)
            .to_string();

        let mut dkim_v: Vec<Verdict> = dkim
            .iter()
            .map(|o| {
                let v = dkim_verdict(o.result());
                match o.signature() {
                    Some(s) => {
                        let v = match signature_defect(s) {
                            // RFC 8301 3.1, RFC 6376 6.1.1: such a signature must be ignored
                            // whatever its cryptography says; mail-auth does not check these.
                            Some(defect) if v.result == "pass" => {
                                Verdict::new("permerror").reason(defect.reason)
                            }
                            _ => v,
                        };
                        Verdict {
                            selector: Some(s.s.clone()),
                            ..v.domain(&s.d)
                        }
                    }
                    None => v,
                }
            })
            .collect();
        // A DKIM-Signature mail-auth could not parse at all still says "signed": report it.
        // (Errors of the DKIM kind already come back from mail-auth as neutral verdicts.)
        for e in message.errors.iter().filter(|e| {
            e.name.eq_ignore_ascii_case(b"DKIM-Signature")
                && !matches!(e.header, mail_auth::Error::Dkim(_))
        }) {
            dkim_v.push(
                Verdict::new("permerror").reason(format!("unusable DKIM-Signature: {}", e.header)),
            );
        }
        if dkim_v.is_empty() {
            dkim_v.push(Verdict::new("none").reason("no DKIM signature"));
        }
        let arc_v = {
            let mut v = dkim_verdict(arc.result());
            // RFC 8301 3.1 for DKIM holds for ARC's signatures too (RFC 8617 names only
            // rsa-sha256): a chain that verifies only thanks to SHA-1 is not trusted.
            let sha1 = mail_auth::common::crypto::Algorithm::RsaSha1;
            if v.result == "pass"
                && (message.as_headers.iter().any(|h| h.header.a == sha1)
                    || message.ams_headers.iter().any(|h| h.header.a == sha1))
            {
                v = Verdict::new("fail")
                    .reason("the ARC chain is signed with rsa-sha1 (RFC 8301 3.1)");
            }
            let mut seals: Vec<(u32, String)> = message
                .as_headers
                .iter()
                .map(|h| (h.header.i, h.header.d.to_ascii_lowercase()))
                .collect();
            seals.sort();
            let hop_dmarc = seals
                .iter()
                .map(|(i, _)| {
                    message
                        .aar_headers
                        .iter()
                        .find(|h| h.header.i == *i)
                        .and_then(|h| dmarc_in_results(h.value))
                })
                .collect();
            ArcVerdict {
                result: v.result,
                sealers: seals.into_iter().map(|(_, d)| d).collect(),
                hop_dmarc,
                reason: v.reason,
            }
        };
        let (spf_word_d, _) = dmarc_word(dmarc.spf_result());
        let (dkim_word_d, dkim_reason) = dmarc_word(dmarc.dkim_result());
        let spf_aligned = spf_word_d == "pass";
        let dkim_aligned = dkim_word_d == "pass";
        let result = if spf_aligned || dkim_aligned {
            "pass"
        } else if [spf_word_d, dkim_word_d].contains(&"temperror") {
            "temperror"
        } else if dmarc.dmarc_record().is_none() {
            "none"
        } else if [spf_word_d, dkim_word_d].contains(&"permerror") {
            "permerror"
        } else {
            "fail"
        };
        let policy = match dmarc.policy() {
            mail_auth::dmarc::Policy::None => "none",
            mail_auth::dmarc::Policy::Quarantine => "quarantine",
            mail_auth::dmarc::Policy::Reject => "reject",
            mail_auth::dmarc::Policy::Unspecified => "unspecified",
        };
        let from_domain = from
            .rsplit_once('@')
            .map_or("", |(_, d)| d)
            .to_ascii_lowercase();
        // mail-auth writes dmarc=none when neither identifier produced a result, even with a
        // record published; the header must say what we concluded.
        let header = rewrite_clause(&header, "dmarc", result);
        let header = rewrite_clause(&header, "arc", &arc_v.result);
        AuthVerdicts {
            iprev: iprev_v,
            spf_helo: spf_helo_v,
            spf_mail_from: spf_mail_v,
            dkim: dkim_v,
            arc: arc_v,
            dmarc: DmarcVerdict {
                result: result.into(),
                from_domain,
                policy: policy.into(),
                spf_aligned,
                dkim_aligned,
                reason: if result == "pass" { None } else { dkim_reason },
            },
            header,
        }
    }
}

/// Why a signature whose cryptography verified is still refused, and the closest
/// mail-auth error for the Authentication-Results header.
struct Defect {
    reason: &'static str,
    error: mail_auth::Error,
}

/// Rules mail-auth does not enforce: RFC 8301 3.1 (rsa-sha1 signatures must not be
/// considered valid: SHA-1 collisions can be bought), RFC 6376 6.1.1 (the signature must
/// cover From) and 3.5 (its identity `i=` must be the signing domain or a subdomain of it).
fn signature_defect(s: &mail_auth::dkim::Signature) -> Option<Defect> {
    use mail_auth::dkim::DkimError;
    if s.a == mail_auth::common::crypto::Algorithm::RsaSha1 {
        return Some(Defect {
            reason: "rsa-sha1 signatures are not accepted (RFC 8301 3.1)",
            error: mail_auth::Error::Dkim(DkimError::UnsupportedAlgorithm),
        });
    }
    if !s.h.iter().any(|h| h.eq_ignore_ascii_case("from")) {
        return Some(Defect {
            reason: "the signature does not cover the From header (RFC 6376 6.1.1)",
            error: mail_auth::Error::NoHeadersFound,
        });
    }
    if !s.i.is_empty() {
        let identity_domain =
            s.i.rsplit_once('@')
                .map_or(s.i.as_str(), |(_, d)| d)
                .to_ascii_lowercase();
        let d = s.d.to_ascii_lowercase();
        if identity_domain != d && !identity_domain.ends_with(&format!(".{d}")) {
            return Some(Defect {
                reason: "the signature's i= is outside its d= domain (RFC 6376 3.5)",
                error: mail_auth::Error::Dkim(DkimError::FailedAuidMatch),
            });
        }
    }
    None
}

/// mail-auth's DKIM results with each refused signature's pass turned into a permerror, as
/// the Authentication-Results header shows them.
fn dkim_as_reported<'x>(dkim: &'x [DkimOutput<'x>]) -> Vec<DkimOutput<'x>> {
    dkim.iter()
        .map(|o| {
            match (
                o.result(),
                o.signature()
                    .and_then(|s| signature_defect(s).map(|d| (s, d))),
            ) {
                (DkimResult::Pass, Some((s, defect))) => {
                    DkimOutput::perm_err(defect.error).with_signature(s)
                }
                _ => o.clone(),
            }
        })
        .collect()
}

/// Replaces the result word of the `<method>=` clause (`dmarc`, `arc`) of an
/// Authentication-Results value.
fn rewrite_clause(header: &str, method: &str, result: &str) -> String {
    let clause = format!("\t{method}=");
    let Some(at) = header.find(&clause) else {
        return header.to_string();
    };
    let start = at + clause.len();
    let end = header[start..]
        .find(|c: char| !c.is_ascii_alphanumeric())
        .map_or(header.len(), |e| start + e);
    if &header[start..end] == result {
        return header.to_string();
    }
    // The comment that followed the old word explained it; drop it with the word.
    let mut rest = &header[end..];
    if let Some(after) = rest.strip_prefix(" (") {
        if let Some(close) = after.find(')') {
            rest = &after[close + 1..];
        }
    }
    format!("{}{}{}", &header[..start], result, rest)
}

/// Postern's own reading of parsed authentication headers, which otherwise runs only
/// after DNS answers: for the fuzz targets (fuzz/), not for use elsewhere.
#[doc(hidden)]
pub mod fuzz_entry {
    /// Parses `raw` as mail-auth does for verification, then applies to each DKIM and ARC
    /// header what [`super::Authenticator::verify`] applies to it. Returns a count derived
    /// from the results, so that none of the work is optimised away.
    pub fn read_auth_headers(raw: &[u8]) -> usize {
        let Some(message) = mail_auth::AuthenticatedMessage::parse(raw) else {
            return 0;
        };
        let mut seen = message.errors.len();
        for h in &message.dkim_headers {
            seen += usize::from(super::signature_defect(&h.header).is_some());
        }
        for h in &message.aar_headers {
            seen += super::dmarc_in_results(h.value).map_or(0, |r| r.len());
        }
        let from = message.from();
        let from_domain = from.rsplit_once('@').map_or("", |(_, d)| d);
        seen + super::absent_records::dmarc_walk_names(from_domain).len()
    }

    /// [`super::rewrite_clause`], which edits the Authentication-Results header text.
    pub fn rewrite_clause(header: &str, method: &str, result: &str) -> String {
        super::rewrite_clause(header, method, result)
    }
}

#[cfg(test)]
mod tests {
    use super::{dmarc_in_results, rewrite_clause};

    #[test]
    fn dmarc_clause_says_our_verdict() {
        let h = "mx;\r\n\tspf=none smtp.mailfrom=a@b;\r\n\tdmarc=none (no result) header.from=c policy.dmarc=reject;\r\n\tiprev=pass";
        assert_eq!(
            rewrite_clause(h, "dmarc", "fail"),
            "mx;\r\n\tspf=none smtp.mailfrom=a@b;\r\n\tdmarc=fail header.from=c policy.dmarc=reject;\r\n\tiprev=pass"
        );
        assert_eq!(rewrite_clause(h, "dmarc", "none"), h);
        // Only the named method's clause changes.
        assert_eq!(
            rewrite_clause(h, "iprev", "fail"),
            h.replace("iprev=pass", "iprev=fail")
        );
    }

    #[test]
    fn reads_a_hops_dmarc_result() {
        assert_eq!(
            dmarc_in_results(b"i=1; mx.google.com; dkim=pass header.i=@shop.test; DMARC=Pass (p=REJECT) header.from=shop.test"),
            Some("pass".into())
        );
        assert_eq!(dmarc_in_results(b"i=1; mx.example; spf=fail"), None);
    }
}
