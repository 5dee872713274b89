//! Network names: MAC addresses and IPv4 networks.

use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A 48-bit Ethernet MAC address, printed lowercase with colons.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MacAddr(pub [u8; 6]);

impl MacAddr {
    fn to_u64(self) -> u64 {
        self.0.iter().fold(0, |acc, b| (acc << 8) | u64::from(*b))
    }

    fn from_u64(n: u64) -> MacAddr {
        let b = n.to_be_bytes();
        MacAddr([b[2], b[3], b[4], b[5], b[6], b[7]])
    }

    /// The address `n` places after this one, counting the 48 bits as one
    /// number; `None` past `ff:ff:ff:ff:ff:ff`.
    pub fn offset(self, n: u64) -> Option<MacAddr> {
        let v = self.to_u64().checked_add(n)?;
        (v < 1 << 48).then(|| MacAddr::from_u64(v))
    }

    /// Multicast addresses (low bit of the first octet) never belong to a NIC.
    pub fn is_multicast(self) -> bool {
        self.0[0] & 1 == 1
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not a MAC address (write six hex pairs, e.g. \"52:54:00:12:34:56\")")]
pub struct ParseMacError(String);

impl FromStr for MacAddr {
    type Err = ParseMacError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || ParseMacError(s.to_owned());
        let mut out = [0u8; 6];
        let mut parts = s.split([':', '-']);
        for byte in &mut out {
            let p = parts.next().ok_or_else(err)?;
            if p.len() != 2 {
                return Err(err());
            }
            *byte = u8::from_str_radix(p, 16).map_err(|_| err())?;
        }
        if parts.next().is_some() {
            return Err(err());
        }
        Ok(MacAddr(out))
    }
}

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            b[0], b[1], b[2], b[3], b[4], b[5]
        )
    }
}

impl Serialize for MacAddr {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for MacAddr {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// An IPv4 network in CIDR form. The address is the network address itself:
/// `10.0.0.5/24` is refused, so that a profile says what it means.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Ipv4Net {
    addr: Ipv4Addr,
    prefix: u8,
}

impl Ipv4Net {
    pub fn new(addr: Ipv4Addr, prefix: u8) -> Option<Ipv4Net> {
        let net = Ipv4Net { addr, prefix };
        (prefix <= 32 && net.network() == addr).then_some(net)
    }

    pub fn prefix(self) -> u8 {
        self.prefix
    }

    fn mask_bits(self) -> u32 {
        if self.prefix == 0 {
            0
        } else {
            u32::MAX << (32 - self.prefix)
        }
    }

    pub fn netmask(self) -> Ipv4Addr {
        Ipv4Addr::from(self.mask_bits())
    }

    pub fn network(self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.addr) & self.mask_bits())
    }

    pub fn broadcast(self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.addr) | !self.mask_bits())
    }

    pub fn contains(self, ip: Ipv4Addr) -> bool {
        u32::from(ip) & self.mask_bits() == u32::from(self.network())
    }

    /// True when `ip` can be given to a host: inside the network and neither
    /// its network nor its broadcast address (a /31 or /32 has no such
    /// reserved addresses, RFC 3021).
    pub fn is_host(self, ip: Ipv4Addr) -> bool {
        self.contains(ip) && (self.prefix >= 31 || (ip != self.network() && ip != self.broadcast()))
    }

    /// Number of addresses hosts can use.
    pub fn host_count(self) -> u64 {
        let all = 1u64 << (32 - u32::from(self.prefix));
        if self.prefix >= 31 { all } else { all - 2 }
    }
}

/// Adds `n` to an address; `None` on overflow past 255.255.255.255.
pub fn ipv4_add(ip: Ipv4Addr, n: u64) -> Option<Ipv4Addr> {
    let v = u64::from(u32::from(ip)).checked_add(n)?;
    u32::try_from(v).ok().map(Ipv4Addr::from)
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{input}` is not an IPv4 network: {reason} (write e.g. \"10.77.0.0/24\")")]
pub struct ParseNetError {
    input: String,
    reason: String,
}

impl FromStr for Ipv4Net {
    type Err = ParseNetError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = |reason: String| ParseNetError {
            input: s.to_owned(),
            reason,
        };
        let (a, p) = s.split_once('/').ok_or_else(|| err("no /prefix".into()))?;
        let addr: Ipv4Addr = a
            .parse()
            .map_err(|_| err(format!("`{a}` is not an IPv4 address")))?;
        let prefix: u8 = p
            .parse()
            .ok()
            .filter(|p| *p <= 32)
            .ok_or_else(|| err(format!("`{p}` is not a prefix length from 0 to 32")))?;
        let probe = Ipv4Net { addr, prefix };
        Ipv4Net::new(addr, prefix).ok_or_else(|| {
            err(format!(
                "host bits are set; the network address is {}/{prefix}",
                probe.network()
            ))
        })
    }
}

impl fmt::Display for Ipv4Net {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

impl Serialize for Ipv4Net {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Ipv4Net {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mac_parse_print_and_count() {
        let m: MacAddr = "52:54:00:AB:cd:ff".parse().unwrap();
        assert_eq!(m.to_string(), "52:54:00:ab:cd:ff");
        assert_eq!(m.offset(1).unwrap().to_string(), "52:54:00:ab:ce:00");
        assert_eq!(
            "52-54-00-00-00-01".parse::<MacAddr>().unwrap().to_string(),
            "52:54:00:00:00:01"
        );
        assert!(
            "ff:ff:ff:ff:ff:ff"
                .parse::<MacAddr>()
                .unwrap()
                .offset(1)
                .is_none()
        );
        for bad in [
            "52:54:00:ab:cd",
            "52:54:00:ab:cd:ef:01",
            "5:54:00:ab:cd:ef",
            "zz:54:00:ab:cd:ef",
            "",
        ] {
            assert!(bad.parse::<MacAddr>().is_err(), "{bad}");
        }
        assert!(
            "01:00:5e:00:00:01"
                .parse::<MacAddr>()
                .unwrap()
                .is_multicast()
        );
    }

    #[test]
    fn networks() {
        let n: Ipv4Net = "10.77.0.0/24".parse().unwrap();
        assert_eq!(n.netmask(), Ipv4Addr::new(255, 255, 255, 0));
        assert_eq!(n.broadcast(), Ipv4Addr::new(10, 77, 0, 255));
        assert!(n.is_host(Ipv4Addr::new(10, 77, 0, 1)));
        assert!(!n.is_host(Ipv4Addr::new(10, 77, 0, 0)));
        assert!(!n.is_host(Ipv4Addr::new(10, 77, 0, 255)));
        assert!(!n.contains(Ipv4Addr::new(10, 77, 1, 1)));
        assert_eq!(n.host_count(), 254);
        assert!(
            "10.77.0.1/24"
                .parse::<Ipv4Net>()
                .unwrap_err()
                .to_string()
                .contains("10.77.0.0/24")
        );
        assert!("10.77.0.0/33".parse::<Ipv4Net>().is_err());
        assert!("10.77.0.0".parse::<Ipv4Net>().is_err());
        assert_eq!(
            "0.0.0.0/0".parse::<Ipv4Net>().unwrap().netmask(),
            Ipv4Addr::UNSPECIFIED
        );
    }
}
