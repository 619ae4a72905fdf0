//! DNS for outbound mail, through the configured resolver: where a recipient domain's mail
//! goes (MX, null MX, implicit MX), which addresses may be connected to, and TXT records.

use super::delivery::DeliveryError;
use mail_auth::hickory_resolver::proto::rr::RData;
use mail_auth::hickory_resolver::TokioResolver;
use std::net::IpAddr;

/// The hosts that take mail for `domain`, best first (RFC 5321 5.1): its MX records, or the
/// domain itself when it has none. A null MX (RFC 7505) or a domain that does not exist is
/// a permanent failure; a lookup that fails is a temporary one.
pub async fn mail_hosts(
    resolver: &TokioResolver,
    domain: &str,
) -> Result<Vec<String>, DeliveryError> {
    let fqdn = format!("{}.", domain.trim_end_matches('.'));
    match resolver.mx_lookup(fqdn.as_str()).await {
        Ok(lookup) => {
            let mut mx: Vec<(u16, String)> = lookup
                .answers()
                .iter()
                .filter_map(|r| match &r.data {
                    RData::MX(m) => Some((
                        m.preference,
                        m.exchange
                            .to_ascii()
                            .trim_end_matches('.')
                            .to_ascii_lowercase(),
                    )),
                    _ => None,
                })
                .collect();
            if mx.len() == 1 && mx[0].1.is_empty() {
                return Err(DeliveryError::permanent(format!(
                    "{domain} accepts no mail (null MX record, RFC 7505)"
                )));
            }
            mx.retain(|(_, h)| !h.is_empty());
            if mx.is_empty() {
                return Ok(vec![domain.to_string()]);
            }
            mx.sort_by_key(|(p, _)| *p);
            Ok(mx.into_iter().map(|(_, h)| h).collect())
        }
        Err(e) if e.is_nx_domain() => Err(DeliveryError::permanent(format!(
            "the recipient domain {domain} does not exist (NXDOMAIN)"
        ))),
        Err(e) if e.is_no_records_found() => Ok(vec![domain.to_string()]),
        Err(e) => Err(DeliveryError::transient(format!(
            "MX lookup for {domain} failed: {e}"
        ))),
    }
}

/// The addresses of a host (A and AAAA).
pub async fn host_addresses(
    resolver: &TokioResolver,
    host: &str,
) -> Result<Vec<IpAddr>, DeliveryError> {
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(vec![ip]);
    }
    let fqdn = format!("{}.", host.trim_end_matches('.'));
    match resolver.lookup_ip(fqdn.as_str()).await {
        Ok(l) => Ok(l.iter().collect()),
        Err(e) if e.is_nx_domain() || e.is_no_records_found() => Ok(vec![]),
        Err(e) => Err(DeliveryError::transient(format!(
            "address lookup for {host} failed: {e}"
        ))),
    }
}

pub use crate::domain::{is_public_ip as is_public, not_public};

/// Every TXT record at `name`, each as one string (its pieces joined). `Ok(None)` when the
/// name has none (or does not exist).
pub async fn txt_records(
    resolver: &TokioResolver,
    name: &str,
) -> Result<Option<Vec<String>>, String> {
    let fqdn = format!("{}.", name.trim_end_matches('.'));
    match resolver.txt_lookup(fqdn.as_str()).await {
        Ok(lookup) => {
            let records: Vec<String> = lookup
                .answers()
                .iter()
                .filter_map(|r| match &r.data {
                    RData::TXT(t) => Some(
                        t.txt_data
                            .iter()
                            .map(|piece| String::from_utf8_lossy(piece).into_owned())
                            .collect::<String>(),
                    ),
                    _ => None,
                })
                .collect();
            Ok((!records.is_empty()).then_some(records))
        }
        Err(e) if e.is_nx_domain() || e.is_no_records_found() => Ok(None),
        Err(e) => Err(format!("lookup of {name} failed: {e}")),
    }
}
