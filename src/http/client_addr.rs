//! Who a request comes from, for per-client limits: the address of the connection, or, when
//! that is a reverse proxy listed in `http.trusted_proxies`, the client its X-Forwarded-For
//! header names. Clients are counted by network (`http.ipv4_prefix`, `http.ipv6_prefix`:
//! each IPv4 address, each IPv6 /64 by default), as for the connection caps.

use crate::net::{ClientGroup, PrefixLengths};
use axum::extract::ConnectInfo;
use axum::http::{Extensions, HeaderMap};
use ipnet::IpNet;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// How to find the client of a request.
#[derive(Debug, Clone, Default)]
pub struct ClientAddresses {
    trusted_proxies: Arc<[IpNet]>,
    prefixes: PrefixLengths,
}

static NO_PEER_WARNED: AtomicBool = AtomicBool::new(false);

impl ClientAddresses {
    pub fn new(trusted_proxies: Vec<IpNet>, prefixes: PrefixLengths) -> Self {
        Self {
            trusted_proxies: trusted_proxies.into(),
            prefixes,
        }
    }

    /// The network a client is counted under.
    pub fn group(&self, client: IpAddr) -> ClientGroup {
        self.prefixes.group(client)
    }

    fn trusted(&self, ip: IpAddr) -> bool {
        self.trusted_proxies.iter().any(|n| n.contains(&ip))
    }

    /// The client address of a request, or None when the server was not started with the
    /// connection's address (then per-client limits do not apply, and a warning is logged
    /// once).
    pub fn client_of(&self, extensions: &Extensions, headers: &HeaderMap) -> Option<IpAddr> {
        let Some(ConnectInfo(peer)) = extensions.get::<ConnectInfo<SocketAddr>>() else {
            if !NO_PEER_WARNED.swap(true, Ordering::Relaxed) {
                tracing::warn!("the HTTP server does not know the address of its clients; per-client limits are off");
            }
            return None;
        };
        Some(self.resolve(peer.ip(), headers))
    }

    /// The peer, unless it is a trusted proxy: then the rightmost X-Forwarded-For entry that
    /// is not a trusted proxy (entries to its left were written by the client and prove
    /// nothing). A proxy that sent no usable header leaves the proxy as the client.
    pub fn resolve(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        let peer = canonical(peer);
        if !self.trusted(peer) {
            return peer;
        }
        let forwarded: Vec<&str> = headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .collect();
        for entry in forwarded.iter().rev() {
            match parse_forwarded(entry) {
                Some(ip) if self.trusted(ip) => continue,
                Some(ip) => return ip,
                None => return peer,
            }
        }
        peer
    }
}

/// An X-Forwarded-For entry: an address, possibly with a port ("1.2.3.4:5", "[::1]:5").
fn parse_forwarded(entry: &str) -> Option<IpAddr> {
    let entry = entry.trim();
    entry
        .parse::<IpAddr>()
        .ok()
        .or_else(|| entry.parse::<SocketAddr>().ok().map(|s| s.ip()))
        .map(canonical)
}

/// IPv4-mapped IPv6 addresses are the IPv4 client they stand for.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn xff(values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append("x-forwarded-for", v.parse().unwrap());
        }
        h
    }

    #[test]
    fn forwarded_for_is_believed_only_from_trusted_proxies() {
        let clients = ClientAddresses::new(
            vec!["10.0.0.0/8".parse().unwrap(), IpNet::from(ip("127.0.0.1"))],
            PrefixLengths::default(),
        );
        let h = xff(&["198.51.100.9, 203.0.113.5"]);
        // Not a proxy: the header is the client's own claim.
        assert_eq!(clients.resolve(ip("192.0.2.1"), &h), ip("192.0.2.1"));
        // A proxy: the rightmost entry it did not add itself.
        assert_eq!(clients.resolve(ip("127.0.0.1"), &h), ip("203.0.113.5"));
        let chained = xff(&["198.51.100.9", "203.0.113.5, 10.1.2.3"]);
        assert_eq!(clients.resolve(ip("10.9.9.9"), &chained), ip("203.0.113.5"));
        // Nothing usable: the proxy itself.
        assert_eq!(clients.resolve(ip("127.0.0.1"), &xff(&[])), ip("127.0.0.1"));
        assert_eq!(
            clients.resolve(ip("127.0.0.1"), &xff(&["unknown"])),
            ip("127.0.0.1")
        );
        assert_eq!(
            clients.resolve(ip("127.0.0.1"), &xff(&["[2001:db8::1]:443"])),
            ip("2001:db8::1")
        );
        assert_eq!(
            clients.resolve(ip("::ffff:127.0.0.1"), &xff(&["192.0.2.7"])),
            ip("192.0.2.7")
        );
    }
}
