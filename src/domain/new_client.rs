//! What makes a use of a key news to its owner: a client it had not been used by, or a network
//! it had not been used from. A client is compared by its name without version numbers (an
//! update of Thunderbird is not a new client), a network is the address's /24 (IPv4) or /48
//! (IPv6), so the same client on a new address of the same provider's block is not news.

use std::net::IpAddr;

/// The network an address belongs to, for comparing: "203.0.113.0/24", "2001:db8:1::/48".
pub fn network_of(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, c, _] = v4.octets();
            format!("{a}.{b}.{c}.0/24")
        }
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => network_of(IpAddr::V4(v4)),
            None => {
                let s = v6.segments();
                format!("{:x}:{:x}:{:x}::/48", s[0], s[1], s[2])
            }
        },
    }
}

/// A client's name (`describe_user_agent`) without its version numbers, for comparing:
/// "Thunderbird 128 · Windows" and "Thunderbird 129 · Windows" are the same client.
pub fn client_family(name: &str) -> String {
    name.split_whitespace()
        .filter(|word| !word.chars().next().is_some_and(|c| c.is_ascii_digit()))
        .collect::<Vec<_>>()
        .join(" ")
}

/// What a new use was new in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Novelty {
    Client,
    Network,
}

/// Decides, use by use in the order they first happened, which uses of one key are news, given
/// the clients and networks it was used by and from before (`seen`, as `(client name, ip)`).
/// With nothing seen before, the first use is the key's first client: not news.
pub fn news<'a>(
    seen: impl IntoIterator<Item = (&'a str, IpAddr)>,
    new_uses: impl IntoIterator<Item = (&'a str, IpAddr)>,
) -> Vec<Option<Novelty>> {
    let mut clients = std::collections::HashSet::new();
    let mut networks = std::collections::HashSet::new();
    let mut named = std::collections::HashSet::new();
    for (name, ip) in seen {
        if named.insert(name) {
            clients.insert(client_family(name));
        }
        networks.insert(network_of(ip));
    }
    let mut first = clients.is_empty();
    new_uses
        .into_iter()
        .map(|(name, ip)| {
            let (client, network) = (client_family(name), network_of(ip));
            let novelty = if first {
                None
            } else if !clients.contains(&client) {
                Some(Novelty::Client)
            } else if !networks.contains(&network) {
                Some(Novelty::Network)
            } else {
                None
            };
            first = false;
            clients.insert(client);
            networks.insert(network);
            novelty
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn networks_are_slash_24_and_slash_48() {
        assert_eq!(network_of(ip("203.0.113.4")), "203.0.113.0/24");
        assert_eq!(network_of(ip("::ffff:203.0.113.200")), "203.0.113.0/24");
        assert_eq!(network_of(ip("2001:db8:1:2::9")), "2001:db8:1::/48");
    }

    #[test]
    fn versions_do_not_make_a_new_client() {
        assert_eq!(client_family("Thunderbird 128 · Windows"), "Thunderbird · Windows");
        assert_eq!(client_family("Nextcloud desktop 3.3 · Windows 10"), "Nextcloud desktop · Windows");
    }

    #[test]
    fn the_first_client_and_the_same_block_are_not_news() {
        let tb = "Thunderbird 128 · Windows";
        let nc = "Nextcloud Calendar (subscription)";
        assert_eq!(news([], [(tb, ip("198.51.100.1"))]), vec![None]);
        assert_eq!(
            news([], [(tb, ip("198.51.100.1")), (tb, ip("198.51.100.77")), (nc, ip("198.51.100.1"))]),
            vec![None, None, Some(Novelty::Client)]
        );
        assert_eq!(
            news([(tb, ip("198.51.100.1"))], [("Thunderbird 129 · Windows", ip("203.0.113.4"))]),
            vec![Some(Novelty::Network)]
        );
    }
}
