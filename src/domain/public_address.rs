//! Which IP addresses are on the public Internet. Postern connects to hosts that users name
//! (MX hosts of recipients, IMAP servers of imports); an address on a private network must
//! not let a user reach services inside ours.
//!
//! The tables follow IANA's IPv4 and IPv6 Special-Purpose Address Registries (RFC 6890 and
//! its updates). IPv6 addresses that carry an IPv4 address (IPv4-mapped, NAT64, 6to4) are
//! judged by that IPv4 address: `64:ff9b::7f00:1` reaches 127.0.0.1 through a translator.
//! The ranges are in special_addresses.txt, the cases in tests/fixtures/public_addresses.txt.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::LazyLock;

/// The ranges that are not on the public Internet, one a line (the file says how).
const SPECIAL_ADDRESSES: &str = include_str!("special_addresses.txt");

/// What an IPv6 range is to us.
#[derive(Clone, Copy)]
enum V6Range {
    /// Not public, whatever follows the prefix.
    NotPublic,
    /// Carries an IPv4 address at this bit offset: judged by that address.
    EmbedsV4(u32),
}

/// A range of the table: its network's bits, the prefix length and what it is, for people:
/// "loopback (127.0.0.0/8)".
struct Range {
    net: u128,
    len: u8,
    what: String,
    kind: V6Range,
}

/// The table's IPv4 and IPv6 ranges, read once. The table is a constant of this crate, checked
/// by the tests below, so a line that does not parse is a bug in it.
static RANGES: LazyLock<(Vec<Range>, Vec<Range>)> = LazyLock::new(|| {
    let (mut v4, mut v6) = (Vec::new(), Vec::new());
    for line in SPECIAL_ADDRESSES.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let range = parse_range(line)
            .unwrap_or_else(|| panic!("special_addresses.txt: cannot read {line:?}"));
        match range {
            (IpAddr::V4(_), r) => v4.push(r),
            (IpAddr::V6(_), r) => v6.push(r),
        }
    }
    (v4, v6)
});

/// `range | what | embeds-v4 OFFSET` (the last part optional).
fn parse_range(line: &str) -> Option<(IpAddr, Range)> {
    let mut parts = line.split('|').map(str::trim);
    let (cidr, what) = (parts.next()?, parts.next()?);
    let kind = match parts.next() {
        None => V6Range::NotPublic,
        Some(embeds) => V6Range::EmbedsV4(embeds.strip_prefix("embeds-v4 ")?.parse().ok()?),
    };
    let (net, len) = cidr.split_once('/')?;
    let net: IpAddr = net.parse().ok()?;
    let bits = match net {
        IpAddr::V4(v4) => u128::from(u32::from(v4)),
        IpAddr::V6(v6) => u128::from(v6),
    };
    let range = Range {
        net: bits,
        len: len.parse().ok()?,
        what: format!("{what} ({cidr})"),
        kind,
    };
    Some((net, range))
}

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
            for r in &RANGES.1 {
                if !in_prefix(bits, r.net, r.len, 128) {
                    continue;
                }
                let range = r.what.as_str();
                return match r.kind {
                    V6Range::NotPublic => Some(NotPublic {
                        range,
                        embedded: None,
                    }),
                    V6Range::EmbedsV4(offset) => {
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
    RANGES
        .0
        .iter()
        .find(|r| in_prefix(bits, r.net, r.len, 32))
        .map(|r| r.what.as_str())
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
    fn every_line_of_the_table_is_a_range() {
        let lines = SPECIAL_ADDRESSES
            .lines()
            .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
            .count();
        let (v4, v6) = &*RANGES;
        assert_eq!((v4.len(), v6.len()), (15, 17));
        assert_eq!(v4.len() + v6.len(), lines);
        assert!(v4
            .iter()
            .all(|r| r.len <= 32 && matches!(r.kind, V6Range::NotPublic)));
        assert!(v6.iter().all(|r| r.len <= 128));
        assert_eq!(v4[1].what, "private (10.0.0.0/8)");
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
