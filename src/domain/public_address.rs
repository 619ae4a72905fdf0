//! Which IP addresses are on the public Internet. Postern connects to hosts that users name
//! (MX hosts of recipients, IMAP servers of imports); an address on a private network must
//! not let a user reach services inside ours.
//!
//! The tables follow IANA's IPv4 and IPv6 Special-Purpose Address Registries (RFC 6890 and
//! its updates). IPv6 addresses that carry an IPv4 address (IPv4-mapped, NAT64, 6to4) are
//! judged by that IPv4 address: `64:ff9b::7f00:1` reaches 127.0.0.1 through a translator.
//! The cases are in tests/fixtures/public_addresses.txt.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// IPv4 ranges that are not on the public Internet, with what they are.
const V4_NOT_PUBLIC: &[(Ipv4Addr, u8, &str)] = &[
    (Ipv4Addr::new(0, 0, 0, 0), 8, "\"this network\" (0.0.0.0/8)"),
    (Ipv4Addr::new(10, 0, 0, 0), 8, "private (10.0.0.0/8)"),
    (
        Ipv4Addr::new(100, 64, 0, 0),
        10,
        "shared address space, carrier-grade NAT (100.64.0.0/10)",
    ),
    (Ipv4Addr::new(127, 0, 0, 0), 8, "loopback (127.0.0.0/8)"),
    (
        Ipv4Addr::new(169, 254, 0, 0),
        16,
        "link-local (169.254.0.0/16)",
    ),
    (Ipv4Addr::new(172, 16, 0, 0), 12, "private (172.16.0.0/12)"),
    (
        Ipv4Addr::new(192, 0, 0, 0),
        24,
        "IETF protocol assignments (192.0.0.0/24)",
    ),
    (
        Ipv4Addr::new(192, 0, 2, 0),
        24,
        "documentation (192.0.2.0/24)",
    ),
    (
        Ipv4Addr::new(192, 88, 99, 0),
        24,
        "deprecated 6to4 relay anycast (192.88.99.0/24)",
    ),
    (
        Ipv4Addr::new(192, 168, 0, 0),
        16,
        "private (192.168.0.0/16)",
    ),
    (
        Ipv4Addr::new(198, 18, 0, 0),
        15,
        "benchmarking (198.18.0.0/15)",
    ),
    (
        Ipv4Addr::new(198, 51, 100, 0),
        24,
        "documentation (198.51.100.0/24)",
    ),
    (
        Ipv4Addr::new(203, 0, 113, 0),
        24,
        "documentation (203.0.113.0/24)",
    ),
    (Ipv4Addr::new(224, 0, 0, 0), 4, "multicast (224.0.0.0/4)"),
    (
        Ipv4Addr::new(240, 0, 0, 0),
        4,
        "reserved or broadcast (240.0.0.0/4)",
    ),
];

/// What an IPv6 range is to us.
#[derive(Clone, Copy)]
enum V6Range {
    /// Not public, whatever follows the prefix.
    NotPublic(&'static str),
    /// Carries an IPv4 address at this bit offset: judged by that address.
    EmbedsV4(&'static str, u32),
}

/// Special IPv6 ranges, most specific first (the first match decides). Global unicast
/// (2000::/3) outside these is public; everything else outside 2000::/3 is not.
const V6_RANGES: &[(Ipv6Addr, u8, V6Range)] = &[
    (
        Ipv6Addr::UNSPECIFIED,
        128,
        V6Range::NotPublic("unspecified (::/128)"),
    ),
    (
        Ipv6Addr::LOCALHOST,
        128,
        V6Range::NotPublic("loopback (::1/128)"),
    ),
    (
        Ipv6Addr::new(0, 0, 0, 0, 0, 0xffff, 0, 0),
        96,
        V6Range::EmbedsV4("IPv4-mapped (::ffff:0:0/96)", 96),
    ),
    (
        Ipv6Addr::new(0, 0, 0, 0, 0, 0, 0, 0),
        96,
        V6Range::NotPublic("IPv4-compatible, deprecated (::/96)"),
    ),
    (
        Ipv6Addr::new(0x64, 0xff9b, 0, 0, 0, 0, 0, 0),
        96,
        V6Range::EmbedsV4("NAT64 (64:ff9b::/96)", 96),
    ),
    (
        Ipv6Addr::new(0x64, 0xff9b, 1, 0, 0, 0, 0, 0),
        48,
        V6Range::NotPublic("local-use NAT64 (64:ff9b:1::/48)"),
    ),
    (
        Ipv6Addr::new(0x100, 0, 0, 0, 0, 0, 0, 0),
        64,
        V6Range::NotPublic("discard-only (100::/64)"),
    ),
    (
        Ipv6Addr::new(0x2001, 0, 0, 0, 0, 0, 0, 0),
        32,
        V6Range::NotPublic("Teredo (2001::/32)"),
    ),
    (
        Ipv6Addr::new(0x2001, 0, 0, 0, 0, 0, 0, 0),
        23,
        V6Range::NotPublic("IETF protocol assignments (2001::/23)"),
    ),
    (
        Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0),
        32,
        V6Range::NotPublic("documentation (2001:db8::/32)"),
    ),
    (
        Ipv6Addr::new(0x2002, 0, 0, 0, 0, 0, 0, 0),
        16,
        V6Range::EmbedsV4("6to4 (2002::/16)", 16),
    ),
    (
        Ipv6Addr::new(0x3fff, 0, 0, 0, 0, 0, 0, 0),
        20,
        V6Range::NotPublic("documentation (3fff::/20)"),
    ),
    (
        Ipv6Addr::new(0x5f00, 0, 0, 0, 0, 0, 0, 0),
        16,
        V6Range::NotPublic("segment routing SIDs (5f00::/16)"),
    ),
    (
        Ipv6Addr::new(0xfc00, 0, 0, 0, 0, 0, 0, 0),
        7,
        V6Range::NotPublic("unique local (fc00::/7)"),
    ),
    (
        Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 0),
        10,
        V6Range::NotPublic("link-local (fe80::/10)"),
    ),
    (
        Ipv6Addr::new(0xfec0, 0, 0, 0, 0, 0, 0, 0),
        10,
        V6Range::NotPublic("site-local, deprecated (fec0::/10)"),
    ),
    (
        Ipv6Addr::new(0xff00, 0, 0, 0, 0, 0, 0, 0),
        8,
        V6Range::NotPublic("multicast (ff00::/8)"),
    ),
];

/// Why an address is not on the public Internet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NotPublic {
    /// The range the address is in.
    pub range: &'static str,
    /// For IPv6 that carries an IPv4 address: that address and its range.
    pub embedded: Option<(Ipv4Addr, &'static str)>,
}

impl fmt::Display for NotPublic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.embedded {
            Some((v4, range)) => write!(f, "{} of {v4}, {range}", self.range),
            None => f.write_str(self.range),
        }
    }
}

/// Is `ip` reachable on the public Internet? See [`not_public`].
pub fn is_public_ip(ip: IpAddr) -> bool {
    not_public(ip).is_none()
}

/// Why `ip` is not on the public Internet (loopback, private, link-local, shared, reserved,
/// documentation, benchmarking, multicast, or an IPv6 form of one of those), or None when
/// it is: a DNS record pointing there must not make Postern talk to internal services.
pub fn not_public(ip: IpAddr) -> Option<NotPublic> {
    match ip {
        IpAddr::V4(v4) => v4_range(v4).map(|range| NotPublic {
            range,
            embedded: None,
        }),
        IpAddr::V6(v6) => {
            let bits = u128::from(v6);
            for &(net, len, kind) in V6_RANGES {
                if !in_prefix(bits, u128::from(net), len, 128) {
                    continue;
                }
                return match kind {
                    V6Range::NotPublic(range) => Some(NotPublic {
                        range,
                        embedded: None,
                    }),
                    V6Range::EmbedsV4(range, offset) => {
                        // The 32 bits that follow `offset` bits from the left.
                        let v4 = Ipv4Addr::from((bits >> (96 - offset)) as u32);
                        v4_range(v4).map(|inner| NotPublic {
                            range,
                            embedded: Some((v4, inner)),
                        })
                    }
                };
            }
            if in_prefix(bits, 0x2000 << 112, 3, 128) {
                None
            } else {
                Some(NotPublic {
                    range: "not global unicast (outside 2000::/3)",
                    embedded: None,
                })
            }
        }
    }
}

fn v4_range(v4: Ipv4Addr) -> Option<&'static str> {
    let bits = u128::from(u32::from(v4));
    V4_NOT_PUBLIC
        .iter()
        .find(|(net, len, _)| in_prefix(bits, u128::from(u32::from(*net)), *len, 32))
        .map(|(_, _, what)| *what)
}

/// Do the first `len` of `width` bits of `a` and `net` agree?
fn in_prefix(a: u128, net: u128, len: u8, width: u32) -> bool {
    let len = u32::from(len);
    if len == 0 {
        return true;
    }
    let shift = width - len;
    (a >> shift) == (net >> shift)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every case of tests/fixtures/public_addresses.txt: `address public|blocked`, one a
    /// line, `#` comments.
    #[test]
    fn special_purpose_ranges_follow_the_table() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/public_addresses.txt"
        );
        let table = std::fs::read_to_string(path).expect("tests/fixtures/public_addresses.txt");
        let mut failures = Vec::new();
        let mut cases = 0;
        for (n, line) in table.lines().enumerate() {
            let line = line.split('#').next().unwrap_or_default().trim();
            if line.is_empty() {
                continue;
            }
            let mut fields = line.split_whitespace();
            let (Some(addr), Some(expected), None) = (fields.next(), fields.next(), fields.next())
            else {
                panic!(
                    "line {}: expected `address public|blocked`: {line:?}",
                    n + 1
                );
            };
            let ip: IpAddr = addr
                .parse()
                .unwrap_or_else(|e| panic!("line {}: {addr:?}: {e}", n + 1));
            let public = match expected {
                "public" => true,
                "blocked" => false,
                other => panic!("line {}: {other:?} is neither public nor blocked", n + 1),
            };
            cases += 1;
            let verdict = not_public(ip);
            if verdict.is_none() != public {
                failures.push(format!(
                    "line {}: {addr} should be {expected}, is {}",
                    n + 1,
                    verdict.map_or("public".to_string(), |w| format!("blocked: {w}"))
                ));
            }
        }
        assert!(cases > 50, "only {cases} cases read from {path}");
        assert!(failures.is_empty(), "{}", failures.join("\n"));
    }

    #[test]
    fn reasons_name_the_embedded_address() {
        let why = not_public("64:ff9b::7f00:1".parse().unwrap()).unwrap();
        assert_eq!(
            why.to_string(),
            "NAT64 (64:ff9b::/96) of 127.0.0.1, loopback (127.0.0.0/8)"
        );
    }
}
