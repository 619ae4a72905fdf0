//! DNS for outbound mail, through the configured resolver: where a recipient domain's mail
//! goes (MX, null MX, implicit MX), which addresses may be connected to, and TXT records.

use super::delivery::DeliveryError;
use mail_auth::hickory_resolver::proto::rr::RData;
use mail_auth::hickory_resolver::TokioResolver;
use std::net::{IpAddr, Ipv4Addr};

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

/// Is `ip` reachable on the public Internet? Loopback, private, link-local, shared (CGNAT),
/// documentation, multicast and unspecified addresses are not: a DNS record pointing there
/// must not make Postern talk to internal services.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_public_v4(v4);
            }
            let first = v6.segments()[0];
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (first & 0xfe00) == 0xfc00 // unique local
                || (first & 0xffc0) == 0xfe80 // link-local
                || (first == 0x2001 && v6.segments()[1] == 0x0db8)) // documentation
        }
    }
}

fn is_public_v4(v4: Ipv4Addr) -> bool {
    let o = v4.octets();
    !(v4.is_loopback()
        || v4.is_private()
        || v4.is_link_local()
        || v4.is_unspecified()
        || v4.is_broadcast()
        || v4.is_multicast()
        || v4.is_documentation()
        || o[0] == 0
        || (o[0] == 100 && (o[1] & 0xc0) == 64) // 100.64.0.0/10
        || o[0] >= 240)
}

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_ranges_are_not_public() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "192.168.1.1",
            "172.16.0.1",
            "169.254.1.1",
            "100.64.0.1",
            "0.0.0.0",
            "192.0.2.1",
            "::1",
            "fd00::1",
            "fe80::1",
            "::ffff:127.0.0.1",
        ] {
            assert!(!is_public(ip.parse().unwrap()), "{ip}");
        }
        for ip in ["8.8.8.8", "2a00:1450::1", "1.1.1.1"] {
            assert!(is_public(ip.parse().unwrap()), "{ip}");
        }
    }
}
