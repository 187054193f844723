//! A key's IP restriction: a list of addresses and CIDR ranges, as Moodle's `iprestriction`.

use ipnetwork::IpNetwork;
use std::net::IpAddr;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IpRestriction(Vec<IpNetwork>);

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("“{entry}” is not an IP address or CIDR range (for example 203.0.113.4 or 192.168.0.0/16)")]
pub struct InvalidIpRestriction {
    pub entry: String,
}

impl IpRestriction {
    /// Parses a list separated by commas, spaces or new lines. Empty input means "no restriction".
    pub fn parse(input: &str) -> Result<Option<Self>, InvalidIpRestriction> {
        let mut networks = Vec::new();
        for entry in input.split(|c: char| c == ',' || c.is_whitespace()).filter(|e| !e.is_empty()) {
            let network = entry.parse::<IpNetwork>().map_err(|_| InvalidIpRestriction { entry: truncate(entry) })?;
            // A range written with host bits set (10.1.2.3/8) is normalised to its network.
            let network = IpNetwork::new(network.network(), network.prefix())
                .map_err(|_| InvalidIpRestriction { entry: truncate(entry) })?;
            if !networks.contains(&network) {
                networks.push(network);
            }
        }
        Ok(if networks.is_empty() { None } else { Some(IpRestriction(networks)) })
    }

    /// A restriction no address passes: what an unreadable stored restriction means, so that a
    /// corrupted row refuses everything rather than allowing anything.
    pub fn nothing() -> Self {
        IpRestriction(Vec::new())
    }

    /// The stored restriction, read as validation reads it: none, or the list, or (unreadable)
    /// nothing at all.
    pub fn from_stored(stored: Option<&str>) -> Option<Self> {
        match stored.map(IpRestriction::parse) {
            None | Some(Ok(None)) => None,
            Some(Ok(Some(r))) => Some(r),
            Some(Err(_)) => Some(IpRestriction::nothing()),
        }
    }

    pub fn allows(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        self.0.iter().any(|net| net.contains(ip))
    }

    /// The stored form: comma-separated, as Moodle stores it.
    pub fn to_stored(&self) -> String {
        self.0
            .iter()
            .map(|n| if n.prefix() == max_prefix(n) { n.ip().to_string() } else { n.to_string() })
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// IPv4 clients reached over an IPv6 socket appear as ::ffff:a.b.c.d; compare them as IPv4.
pub fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    }
}

fn max_prefix(n: &IpNetwork) -> u8 {
    if n.is_ipv4() {
        32
    } else {
        128
    }
}

fn truncate(s: &str) -> String {
    s.chars().take(60).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_addresses_and_ranges() {
        let r = IpRestriction::parse("203.0.113.4, 10.0.0.0/8\n2001:db8::/32").unwrap().unwrap();
        assert!(r.allows("203.0.113.4".parse().unwrap()));
        assert!(r.allows("10.200.1.1".parse().unwrap()));
        assert!(r.allows("2001:db8::1".parse().unwrap()));
        assert!(r.allows("::ffff:10.1.1.1".parse().unwrap()));
        assert!(!r.allows("203.0.113.5".parse().unwrap()));
        assert_eq!(r.to_stored(), "203.0.113.4, 10.0.0.0/8, 2001:db8::/32");
    }

    #[test]
    fn empty_is_no_restriction_and_garbage_is_refused() {
        assert_eq!(IpRestriction::parse("  ").unwrap(), None);
        let err = IpRestriction::parse("10.0.0.0/8, 999.1.1.1").unwrap_err();
        assert_eq!(err.entry, "999.1.1.1");
        assert!(IpRestriction::parse("10.0.0.0/33").is_err());
        let stored_allows = |stored: Option<&str>, ip: &str| {
            IpRestriction::from_stored(stored).is_none_or(|r| r.allows(ip.parse().unwrap()))
        };
        assert!(!stored_allows(Some("nonsense"), "127.0.0.1"));
        // Not even a peer whose address is unknown (0.0.0.0) passes an unreadable restriction.
        assert!(!stored_allows(Some("nonsense"), "0.0.0.0"));
        assert!(stored_allows(None, "127.0.0.1"));
    }
}

/// 32 hex digits of the address as IPv6 (IPv4 mapped), so ranges compare as text.
pub fn ip_hex(ip: IpAddr) -> String {
    let v6 = match canonical(ip) {
        IpAddr::V4(v4) => v4.to_ipv6_mapped(),
        IpAddr::V6(v6) => v6,
    };
    format!("{:032x}", u128::from(v6))
}

/// The first and last address of a range, in `ip_hex` form.
pub fn network_hex_range(network: &IpNetwork) -> (String, String) {
    let bounds = |ip: IpAddr| ip_hex(ip);
    match network {
        IpNetwork::V4(n) => (bounds(IpAddr::V4(n.network())), bounds(IpAddr::V4(n.broadcast()))),
        IpNetwork::V6(n) => {
            let first = u128::from(n.network());
            let host_bits = 128 - u32::from(n.prefix());
            let last = if host_bits == 128 { u128::MAX } else { first | ((1u128 << host_bits) - 1) };
            (format!("{first:032x}"), format!("{last:032x}"))
        }
    }
}

#[cfg(test)]
mod hex_tests {
    use super::*;

    #[test]
    fn ranges_contain_their_addresses_as_text() {
        let (lo, hi) = network_hex_range(&"10.1.0.0/16".parse().unwrap());
        let inside = ip_hex("10.1.200.3".parse().unwrap());
        let outside = ip_hex("10.2.0.1".parse().unwrap());
        assert!(lo <= inside && inside <= hi);
        assert!(!(lo <= outside && outside <= hi));
        assert_eq!(ip_hex("::ffff:10.1.200.3".parse().unwrap()), inside);
        let (lo, hi) = network_hex_range(&"2001:db8::/32".parse().unwrap());
        let v6 = ip_hex("2001:db8::42".parse().unwrap());
        assert!(lo <= v6 && v6 <= hi);
    }
}
