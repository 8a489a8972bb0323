//! Who is asking: the client's address, from the TCP peer or, behind trusted proxies, from the
//! address they forwarded.
//!
//! `X-Forwarded-For` and `Forwarded` (RFC 7239 `for=`) are believed only when the TCP peer is
//! one of `TRUSTED_PROXIES`; anyone else could write any address into them. Each proxy appends
//! the address it received the request from, so the list is read from the right: the client is
//! the rightmost address that is not itself a trusted proxy. Entries further left were written
//! by whoever that client is, and are ignored.
//!
//! `X-Forwarded-For` is read when present, else `Forwarded`. A proxy that sets only
//! `Forwarded` must therefore clear an `X-Forwarded-For` a client may have sent (the README
//! shows the nginx lines).

use std::net::IpAddr;

/// The addresses and CIDR ranges whose forwarding headers are believed (`TRUSTED_PROXIES`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies(Vec<(IpAddr, u8)>);

impl TrustedProxies {
    /// Parses a comma-separated list of addresses (`10.0.0.1`, `::1`) and CIDR ranges
    /// (`10.0.0.0/8`, `fd00::/8`); empty means none. Fails naming the first entry that is not
    /// one.
    pub fn parse(text: &str) -> Result<TrustedProxies, String> {
        let mut ranges = Vec::new();
        for entry in text.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            let (address, bits) = match entry.split_once('/') {
                Some((address, bits)) => (address, Some(bits)),
                None => (entry, None),
            };
            let address: IpAddr = address
                .trim_start_matches('[')
                .trim_end_matches(']')
                .parse()
                .map_err(|_| format!("'{entry}' is not an IP address or CIDR range"))?;
            let address = canonical(address);
            let max = if address.is_ipv4() { 32 } else { 128 };
            let bits = match bits {
                None => max,
                Some(bits) => bits
                    .parse::<u8>()
                    .ok()
                    .filter(|b| *b <= max)
                    .ok_or_else(|| format!("'{entry}' has a prefix length beyond /{max}"))?,
            };
            ranges.push((address, bits));
        }
        Ok(TrustedProxies(ranges))
    }

    /// True when `address` is one of the trusted proxies.
    pub fn contains(&self, address: IpAddr) -> bool {
        let address = canonical(address);
        self.0
            .iter()
            .any(|(range, bits)| in_range(address, *range, *bits))
    }

    /// True when no proxy is trusted (the default): forwarding headers are never read.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// The client's address for a request from TCP peer `peer` that carried the given
/// `X-Forwarded-For` and `Forwarded` header values (every line, in order).
pub fn client_address(
    peer: IpAddr,
    proxies: &TrustedProxies,
    x_forwarded_for: &[&str],
    forwarded: &[&str],
) -> IpAddr {
    let peer = canonical(peer);
    if proxies.is_empty() || !proxies.contains(peer) {
        return peer;
    }
    let hops: Vec<&str> = if !x_forwarded_for.is_empty() {
        x_forwarded_for
            .iter()
            .flat_map(|line| line.split(','))
            .collect()
    } else {
        forwarded
            .iter()
            .flat_map(|line| line.split(','))
            .filter_map(forwarded_for)
            .collect()
    };
    // From the right: each trusted proxy vouches for the hop before it. The first address not
    // a trusted proxy is the client; an entry that is no address ("unknown", an obfuscated
    // identifier) stops the walk at the last proxy that could be believed.
    let mut client = peer;
    for hop in hops.iter().rev() {
        match parse_node(hop) {
            Some(address) => {
                client = address;
                if !proxies.contains(address) {
                    break;
                }
            }
            None => break,
        }
    }
    client
}

/// The key per-client limits count under: the address, or for IPv6 its /64, since one host
/// commonly holds a whole /64; the very rule `MAX_CONNECTIONS_PER_CLIENT` counts by.
pub fn limit_key(address: IpAddr) -> IpAddr {
    tiny_http::client_of(address)
}

/// The `for=` value of one `Forwarded` element (`for=192.0.2.1;proto=https`), if any.
fn forwarded_for(element: &str) -> Option<&str> {
    element.split(';').find_map(|pair| {
        let (name, value) = pair.split_once('=')?;
        name.trim()
            .eq_ignore_ascii_case("for")
            .then(|| value.trim().trim_matches('"'))
    })
}

/// Parses one hop: `192.0.2.1`, `192.0.2.1:8080`, `2001:db8::1`, `[2001:db8::1]:8080`.
fn parse_node(text: &str) -> Option<IpAddr> {
    let text = text.trim().trim_matches('"');
    if let Some(rest) = text.strip_prefix('[') {
        let (address, _port) = rest.split_once(']')?;
        return address.parse().ok().map(canonical);
    }
    if let Ok(address) = text.parse::<IpAddr>() {
        return Some(canonical(address));
    }
    // An IPv4 address with a port (an IPv6 one without brackets parsed above).
    let (address, port) = text.rsplit_once(':')?;
    port.parse::<u16>().ok()?;
    address.parse().ok().map(canonical)
}

/// An IPv4-mapped IPv6 address (`::ffff:192.0.2.1`, as a dual-stack socket reports IPv4
/// peers) as the IPv4 address it is.
fn canonical(address: IpAddr) -> IpAddr {
    match address {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(address, IpAddr::V4),
        v4 => v4,
    }
}

fn in_range(address: IpAddr, range: IpAddr, bits: u8) -> bool {
    match (address, range) {
        (IpAddr::V4(a), IpAddr::V4(r)) => {
            let mask = u32::MAX.checked_shl(32 - u32::from(bits)).unwrap_or(0);
            u32::from(a) & mask == u32::from(r) & mask
        }
        (IpAddr::V6(a), IpAddr::V6(r)) => {
            let mask = u128::MAX.checked_shl(128 - u32::from(bits)).unwrap_or(0);
            u128::from(a) & mask == u128::from(r) & mask
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().expect("an address")
    }

    fn proxies(text: &str) -> TrustedProxies {
        TrustedProxies::parse(text).expect("a valid list")
    }

    #[test]
    fn lists_of_addresses_and_ranges_parse_and_match() {
        let trusted = proxies(" 10.0.0.0/8, 192.0.2.7 ,fd00::/8, ::1");
        assert!(trusted.contains(ip("10.1.2.3")));
        assert!(trusted.contains(ip("192.0.2.7")));
        assert!(!trusted.contains(ip("192.0.2.8")));
        assert!(trusted.contains(ip("fd12::1")));
        assert!(trusted.contains(ip("::1")));
        assert!(trusted.contains(ip("::ffff:10.9.9.9")));
        assert!(!trusted.contains(ip("2001:db8::1")));
        assert!(proxies("").is_empty());
        assert!(proxies("0.0.0.0/0").contains(ip("203.0.113.9")));
    }

    #[test]
    fn bad_entries_are_refused_by_name() {
        for bad in ["10.0.0.0/33", "nonsense", "::1/129", "10.0.0.1/x"] {
            let err = TrustedProxies::parse(bad).expect_err(bad);
            assert!(err.contains(bad), "{err}");
        }
    }

    #[test]
    fn forwarding_headers_from_an_untrusted_peer_are_ignored() {
        let peer = ip("203.0.113.5");
        assert_eq!(client_address(peer, &proxies(""), &["1.2.3.4"], &[]), peer);
        assert_eq!(
            client_address(peer, &proxies("10.0.0.0/8"), &["1.2.3.4"], &["for=1.2.3.4"]),
            peer
        );
    }

    #[test]
    fn the_client_is_the_rightmost_address_that_is_not_a_trusted_proxy() {
        let trusted = proxies("10.0.0.0/8");
        let peer = ip("10.0.0.1");
        // The client wrote 6.6.6.6 itself; the first proxy appended what it saw.
        let xff = ["6.6.6.6, 198.51.100.7", "10.0.0.2"];
        assert_eq!(
            client_address(peer, &trusted, &xff, &[]),
            ip("198.51.100.7")
        );
        let fwd = ["for=6.6.6.6, for=\"[2001:db8::7]:4711\";proto=https"];
        assert_eq!(client_address(peer, &trusted, &[], &fwd), ip("2001:db8::7"));
        assert_eq!(
            client_address(peer, &trusted, &["198.51.100.7:5555"], &[]),
            ip("198.51.100.7")
        );
        // Only proxies: the leftmost is as far as anyone can tell.
        assert_eq!(
            client_address(peer, &trusted, &["10.0.0.9"], &[]),
            ip("10.0.0.9")
        );
        // Garbage stops the walk at the last proxy.
        assert_eq!(client_address(peer, &trusted, &["unknown"], &[]), peer);
        // No header at all: the proxy itself.
        assert_eq!(client_address(peer, &trusted, &[], &[]), peer);
    }

    #[test]
    fn ipv6_clients_are_limited_by_their_64() {
        assert_eq!(limit_key(ip("2001:db8:1:2:3:4:5:6")), ip("2001:db8:1:2::"));
        assert_eq!(limit_key(ip("192.0.2.1")), ip("192.0.2.1"));
    }
}
