//! Which clients count as one: a per-client limit keyed by the exact address is worth
//! little against IPv6, where one subscriber usually holds a whole /64 (2^64 addresses).
//! Clients are grouped by network prefix: by default each IPv4 address alone (/32) and
//! each IPv6 /64.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Prefix lengths that group client addresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PrefixLengths {
    ipv4: u8,
    ipv6: u8,
}

/// The network a client address belongs to (the address with its host bits cleared).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ClientGroup {
    network: IpAddr,
    prefix: u8,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("prefix length /{given} is not valid for {family} (give 1 to {max})")]
pub struct PrefixError {
    family: &'static str,
    given: u8,
    max: u8,
}

impl Default for PrefixLengths {
    fn default() -> Self {
        Self { ipv4: 32, ipv6: 64 }
    }
}

impl PrefixLengths {
    pub fn new(ipv4: u8, ipv6: u8) -> Result<Self, PrefixError> {
        if !(1..=32).contains(&ipv4) {
            return Err(PrefixError {
                family: "IPv4",
                given: ipv4,
                max: 32,
            });
        }
        if !(1..=128).contains(&ipv6) {
            return Err(PrefixError {
                family: "IPv6",
                given: ipv6,
                max: 128,
            });
        }
        Ok(Self { ipv4, ipv6 })
    }

    /// The group of `ip`. An IPv4 client seen through an IPv6 socket (`::ffff:a.b.c.d`)
    /// is grouped as IPv4.
    pub fn group(&self, ip: IpAddr) -> ClientGroup {
        match ip.to_canonical() {
            IpAddr::V4(v4) => {
                let bits = u32::from(v4) & mask32(self.ipv4);
                ClientGroup {
                    network: IpAddr::V4(Ipv4Addr::from(bits)),
                    prefix: self.ipv4,
                }
            }
            IpAddr::V6(v6) => {
                let bits = u128::from(v6) & mask128(self.ipv6);
                ClientGroup {
                    network: IpAddr::V6(Ipv6Addr::from(bits)),
                    prefix: self.ipv6,
                }
            }
        }
    }
}

fn mask32(prefix: u8) -> u32 {
    u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0)
}

fn mask128(prefix: u8) -> u128 {
    u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0)
}

impl fmt::Display for ClientGroup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn ipv6_addresses_of_one_64_are_one_client() {
        let p = PrefixLengths::default();
        let a = p.group(ip("2001:db8:1:2::1"));
        let b = p.group(ip("2001:db8:1:2:ffff:ffff:ffff:ffff"));
        let other = p.group(ip("2001:db8:1:3::1"));
        assert_eq!(a, b);
        assert_ne!(a, other);
        assert_eq!(a.to_string(), "2001:db8:1:2::/64");
    }

    #[test]
    fn ipv4_is_per_address_by_default_and_mapped_addresses_count_as_ipv4() {
        let p = PrefixLengths::default();
        assert_ne!(p.group(ip("192.0.2.1")), p.group(ip("192.0.2.2")));
        assert_eq!(p.group(ip("::ffff:192.0.2.1")), p.group(ip("192.0.2.1")));
        assert_eq!(p.group(ip("192.0.2.1")).to_string(), "192.0.2.1/32");
    }

    #[test]
    fn prefix_lengths_are_configurable() {
        let p = PrefixLengths::new(24, 48).unwrap();
        assert_eq!(p.group(ip("192.0.2.1")), p.group(ip("192.0.2.254")));
        assert_ne!(p.group(ip("192.0.2.1")), p.group(ip("192.0.3.1")));
        assert_eq!(
            p.group(ip("2001:db8:1:2::1")),
            p.group(ip("2001:db8:1:ff::1"))
        );
        let exact = PrefixLengths::new(32, 128).unwrap();
        assert_ne!(
            exact.group(ip("2001:db8::1")),
            exact.group(ip("2001:db8::2"))
        );
        assert!(PrefixLengths::new(0, 64).is_err());
        assert!(PrefixLengths::new(32, 129).is_err());
    }
}
