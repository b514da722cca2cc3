//! The SSRF guard of `web_fetch`: which addresses a fetch may connect to, the
//! injectable [`Resolver`], and the pinned reqwest resolver that makes the
//! HTTP client connect to exactly the addresses that were checked.
//!
//! Invariants:
//! - an address is allowed when an allow-list CIDR contains it as it is, or
//!   when [`refusal`] finds nothing wrong with it: loopback, private,
//!   link-local, shared (CGNAT), unspecified, broadcast, multicast,
//!   documentation, benchmarking and reserved ranges are refused, and an IPv6
//!   address that embeds an IPv4 one (mapped, NAT64, 6to4) is judged by the
//!   embedded address;
//! - a host name is resolved once per fetch; every address it resolves to is
//!   checked and one bad address refuses the host;
//! - the HTTP client resolves names only through [`PinnedResolver`], which
//!   answers the checked addresses and nothing for a name that was not
//!   checked, so a second DNS answer (rebinding) is never asked for or used.

use std::collections::HashMap;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, Mutex, PoisonError};

use async_trait::async_trait;
use ipnet::IpNet;

/// Resolves a host name to its addresses (the port is not its business).
#[async_trait]
pub trait Resolver: Send + Sync + 'static {
    async fn resolve(&self, host: &str) -> std::io::Result<Vec<IpAddr>>;
}

/// The system resolver (`getaddrinfo` through [`tokio::net::lookup_host`]).
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemResolver;

#[async_trait]
impl Resolver for SystemResolver {
    async fn resolve(&self, host: &str) -> std::io::Result<Vec<IpAddr>> {
        let addrs = tokio::net::lookup_host((host, 0)).await?;
        Ok(addrs.map(|addr| addr.ip()).collect())
    }
}

/// An IPv4 block: first address, prefix length, what it is.
type V4Block = (Ipv4Addr, u8, &'static str);
/// An IPv6 block: first address, prefix length, what it is.
type V6Block = (Ipv6Addr, u8, &'static str);

const PRIVATE: &str = "a private address";
const LOOPBACK: &str = "a loopback address";
const LINK_LOCAL: &str = "a link-local address";
const UNSPECIFIED: &str = "an unspecified address";
const MULTICAST: &str = "a multicast address";
const DOCUMENTATION: &str = "a documentation address";
const RESERVED: &str = "a reserved address";

/// IPv4 blocks that are not the public internet (RFC 6890 and successors).
const V4_REFUSED: &[V4Block] = &[
    (Ipv4Addr::new(0, 0, 0, 0), 8, UNSPECIFIED),
    (Ipv4Addr::new(10, 0, 0, 0), 8, PRIVATE),
    (
        Ipv4Addr::new(100, 64, 0, 0),
        10,
        "a shared (carrier-grade NAT) address",
    ),
    (Ipv4Addr::new(127, 0, 0, 0), 8, LOOPBACK),
    (Ipv4Addr::new(169, 254, 0, 0), 16, LINK_LOCAL),
    (Ipv4Addr::new(172, 16, 0, 0), 12, PRIVATE),
    (Ipv4Addr::new(192, 0, 0, 0), 24, RESERVED),
    (Ipv4Addr::new(192, 0, 2, 0), 24, DOCUMENTATION),
    (Ipv4Addr::new(192, 88, 99, 0), 24, RESERVED),
    (Ipv4Addr::new(192, 168, 0, 0), 16, PRIVATE),
    (Ipv4Addr::new(198, 18, 0, 0), 15, "a benchmarking address"),
    (Ipv4Addr::new(198, 51, 100, 0), 24, DOCUMENTATION),
    (Ipv4Addr::new(203, 0, 113, 0), 24, DOCUMENTATION),
    (Ipv4Addr::new(224, 0, 0, 0), 4, MULTICAST),
    (
        Ipv4Addr::new(255, 255, 255, 255),
        32,
        "the broadcast address",
    ),
    (Ipv4Addr::new(240, 0, 0, 0), 4, RESERVED),
];

/// IPv6 blocks that are not the public internet. Checked in order, after the
/// blocks that embed an IPv4 address.
const V6_REFUSED: &[V6Block] = &[
    (Ipv6Addr::UNSPECIFIED, 128, UNSPECIFIED),
    (Ipv6Addr::LOCALHOST, 128, LOOPBACK),
    (
        Ipv6Addr::new(0, 0, 0, 0, 0, 0, 0, 0),
        96,
        "an IPv4-compatible address",
    ),
    (Ipv6Addr::new(0x64, 0xff9b, 1, 0, 0, 0, 0, 0), 48, PRIVATE),
    (Ipv6Addr::new(0x100, 0, 0, 0, 0, 0, 0, 0), 64, RESERVED),
    (
        Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0),
        32,
        DOCUMENTATION,
    ),
    // IETF protocol assignments: Teredo, benchmarking, ORCHID and more.
    (Ipv6Addr::new(0x2001, 0, 0, 0, 0, 0, 0, 0), 23, RESERVED),
    (
        Ipv6Addr::new(0x3fff, 0, 0, 0, 0, 0, 0, 0),
        20,
        DOCUMENTATION,
    ),
    (Ipv6Addr::new(0x5f00, 0, 0, 0, 0, 0, 0, 0), 16, RESERVED),
    (
        Ipv6Addr::new(0xfc00, 0, 0, 0, 0, 0, 0, 0),
        7,
        "a unique-local address",
    ),
    (Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 0), 10, LINK_LOCAL),
    (
        Ipv6Addr::new(0xfec0, 0, 0, 0, 0, 0, 0, 0),
        10,
        "a site-local address",
    ),
    (Ipv6Addr::new(0xff00, 0, 0, 0, 0, 0, 0, 0), 8, MULTICAST),
];

fn in_v4(ip: Ipv4Addr, base: Ipv4Addr, len: u8) -> bool {
    let mask = u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0);
    ip.to_bits() & mask == base.to_bits() & mask
}

fn in_v6(ip: Ipv6Addr, base: Ipv6Addr, len: u8) -> bool {
    let mask = u128::MAX.checked_shl(128 - u32::from(len)).unwrap_or(0);
    ip.to_bits() & mask == base.to_bits() & mask
}

/// The IPv4 address an IPv6 address stands for, and how: IPv4-mapped
/// (`::ffff:a.b.c.d`), NAT64 (`64:ff9b::a.b.c.d`) or 6to4 (`2002:aabb:ccdd::`).
fn embedded_v4(ip: Ipv6Addr) -> Option<(Ipv4Addr, &'static str)> {
    let bits = ip.to_bits();
    if in_v6(ip, Ipv6Addr::new(0, 0, 0, 0, 0, 0xffff, 0, 0), 96) {
        return Some((Ipv4Addr::from_bits(bits as u32), "IPv4-mapped"));
    }
    if in_v6(ip, Ipv6Addr::new(0x64, 0xff9b, 0, 0, 0, 0, 0, 0), 96) {
        return Some((Ipv4Addr::from_bits(bits as u32), "NAT64"));
    }
    if in_v6(ip, Ipv6Addr::new(0x2002, 0, 0, 0, 0, 0, 0, 0), 16) {
        return Some((Ipv4Addr::from_bits((bits >> 80) as u32), "6to4"));
    }
    None
}

/// Why `ip` is not a public internet address (`None`: it is one). Does not
/// look at any allow-list.
pub fn refusal(ip: IpAddr) -> Option<String> {
    match ip {
        IpAddr::V4(v4) => V4_REFUSED
            .iter()
            .find(|(base, len, _)| in_v4(v4, *base, *len))
            .map(|(_, _, what)| (*what).to_owned()),
        IpAddr::V6(v6) => {
            if let Some((v4, how)) = embedded_v4(v6) {
                return refusal(IpAddr::V4(v4))
                    .map(|what| format!("{how} for {v4}, which is {what}"));
            }
            let refused = V6_REFUSED
                .iter()
                .find(|(base, len, _)| in_v6(v6, *base, *len))
                .map(|(_, _, what)| (*what).to_owned());
            // Only 2000::/3 is global unicast today.
            refused.or_else(|| {
                (!in_v6(v6, Ipv6Addr::new(0x2000, 0, 0, 0, 0, 0, 0, 0), 3))
                    .then(|| RESERVED.to_owned())
            })
        }
    }
}

/// Checks addresses against the public-address rule and an allow-list.
#[derive(Clone, Debug, Default)]
pub struct Guard {
    allow: Vec<IpNet>,
}

impl Guard {
    pub fn new(allow: Vec<IpNet>) -> Self {
        Self { allow }
    }

    /// Why a connection to `ip` is refused (`None`: it may be made).
    pub fn check(&self, ip: IpAddr) -> Option<String> {
        if self.allow.iter().any(|net| net.contains(&ip)) {
            return None;
        }
        refusal(ip)
    }
}

/// The checked addresses of each host name of one fetch, and the resolver
/// the HTTP client uses: it answers only from them.
#[derive(Default)]
pub struct PinnedResolver {
    pins: Mutex<HashMap<String, Vec<IpAddr>>>,
}

impl fmt::Debug for PinnedResolver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PinnedResolver").finish_non_exhaustive()
    }
}

impl PinnedResolver {
    /// The checked addresses of `host`, if it was checked in this fetch.
    pub fn get(&self, host: &str) -> Option<Vec<IpAddr>> {
        let pins = self.pins.lock().unwrap_or_else(PoisonError::into_inner);
        pins.get(&host.to_ascii_lowercase()).cloned()
    }

    /// Records the checked addresses of `host`.
    pub fn pin(&self, host: &str, addrs: Vec<IpAddr>) {
        let mut pins = self.pins.lock().unwrap_or_else(PoisonError::into_inner);
        pins.insert(host.to_ascii_lowercase(), addrs);
    }
}

impl reqwest::dns::Resolve for PinnedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let found = self.get(name.as_str());
        let host = name.as_str().to_owned();
        Box::pin(async move {
            match found {
                Some(addrs) => {
                    let addrs: reqwest::dns::Addrs =
                        Box::new(addrs.into_iter().map(|ip| SocketAddr::new(ip, 0)));
                    Ok(addrs)
                }
                None => Err(format!("{host} was not checked before connecting").into()),
            }
        })
    }
}

/// Resolves `host` once with `resolver` and checks every answer.
pub async fn resolve_checked(
    resolver: &Arc<dyn Resolver>,
    guard: &Guard,
    host: &str,
) -> Result<Vec<IpAddr>, String> {
    let addrs = resolver
        .resolve(host)
        .await
        .map_err(|err| format!("{host} could not be resolved: {err}"))?;
    if addrs.is_empty() {
        return Err(format!("{host} has no addresses"));
    }
    for ip in &addrs {
        if let Some(why) = guard.check(*ip) {
            return Err(format!("refused: {host} resolves to {ip}, {why}"));
        }
    }
    Ok(addrs)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(text: &str) -> bool {
        refusal(text.parse().unwrap()).is_some()
    }

    #[test]
    fn non_public_addresses_are_refused() {
        for ip in [
            "0.0.0.0",
            "0.1.2.3",
            "10.0.0.1",
            "100.64.0.1",
            "100.127.255.255",
            "127.0.0.1",
            "127.255.0.9",
            "169.254.169.254",
            "172.16.0.1",
            "172.31.255.255",
            "192.0.0.8",
            "192.0.2.1",
            "192.168.1.1",
            "198.18.0.1",
            "198.19.255.255",
            "198.51.100.7",
            "203.0.113.9",
            "224.0.0.1",
            "239.255.255.250",
            "240.0.0.1",
            "255.255.255.255",
            "::",
            "::1",
            "::127.0.0.1",
            "::8.8.8.8",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "::ffff:169.254.169.254",
            "64:ff9b::7f00:1",
            "64:ff9b:1::1",
            "2002:7f00:1::",
            "2002:a00:1::1",
            "2001::1",
            "2001:db8::1",
            "3fff::1",
            "fc00::1",
            "fd12:3456::1",
            "fe80::1",
            "fec0::1",
            "ff02::1",
            "100::1",
            "4000::1",
        ] {
            assert!(refused(ip), "{ip} should be refused");
        }
    }

    #[test]
    fn public_addresses_pass() {
        for ip in [
            "1.1.1.1",
            "8.8.8.8",
            "100.63.255.255",
            "100.128.0.0",
            "172.15.255.255",
            "172.32.0.0",
            "192.169.0.1",
            "93.184.215.14",
            "2606:4700:4700::1111",
            "2a00:1450:4001::1",
            "::ffff:8.8.8.8",
            "64:ff9b::808:808",
            "2002:808:808::1",
        ] {
            assert!(
                !refused(ip),
                "{ip} should pass: {:?}",
                refusal(ip.parse().unwrap())
            );
        }
    }

    #[test]
    fn the_allow_list_matches_the_address_as_it_is() {
        let guard = Guard::new(vec!["127.0.0.1/32".parse().unwrap()]);
        assert_eq!(guard.check("127.0.0.1".parse().unwrap()), None);
        assert!(guard.check("127.0.0.2".parse().unwrap()).is_some());
        // The mapped form of an allowed address is another address.
        let mapped = guard.check("::ffff:127.0.0.1".parse().unwrap());
        assert_eq!(
            mapped.as_deref(),
            Some("IPv4-mapped for 127.0.0.1, which is a loopback address")
        );
    }
}
