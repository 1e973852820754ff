//! Networks and NICs (Cyclades' model, reused by the OpenStack views): network types and
//! status, firewall profiles, and the pure address arithmetic (IPv4 pools, EUI-64 IPv6,
//! MAC formatting) the store's atomic allocation relies on.

use crate::ids::*;
use crate::time::Timestamp;
use serde::{Deserialize, Serialize};
use std::net::{Ipv4Addr, Ipv6Addr};

/// Cyclades network types.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum NetworkType {
    Custom,
    IpLessRouted,
    MacFiltered,
    PhysicalVlan,
}

impl NetworkType {
    pub fn as_str(self) -> &'static str {
        match self {
            NetworkType::Custom => "CUSTOM",
            NetworkType::IpLessRouted => "IP_LESS_ROUTED",
            NetworkType::MacFiltered => "MAC_FILTERED",
            NetworkType::PhysicalVlan => "PHYSICAL_VLAN",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "CUSTOM" => Some(Self::Custom),
            "IP_LESS_ROUTED" => Some(Self::IpLessRouted),
            "MAC_FILTERED" => Some(Self::MacFiltered),
            "PHYSICAL_VLAN" => Some(Self::PhysicalVlan),
            _ => None,
        }
    }
}

/// Network status (Cyclades: PENDING → ACTIVE → DELETED).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum NetworkStatus {
    Pending,
    Active,
    Deleted,
}

impl NetworkStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            NetworkStatus::Pending => "PENDING",
            NetworkStatus::Active => "ACTIVE",
            NetworkStatus::Deleted => "DELETED",
        }
    }
}

/// Firewall profile of a NIC.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum FirewallProfile {
    /// Drop unsolicited inbound traffic except a few well-known services.
    Enabled,
    /// Pass everything.
    Disabled,
    /// Drop all unsolicited inbound traffic.
    Protected,
}

impl FirewallProfile {
    pub fn as_str(self) -> &'static str {
        match self {
            FirewallProfile::Enabled => "ENABLED",
            FirewallProfile::Disabled => "DISABLED",
            FirewallProfile::Protected => "PROTECTED",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "ENABLED" => Some(Self::Enabled),
            "DISABLED" => Some(Self::Disabled),
            "PROTECTED" => Some(Self::Protected),
            _ => None,
        }
    }
}

/// A network.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Network {
    pub id: NetworkId,
    /// Numeric id (Cyclades shows it; the public network has serial 1).
    pub serial: i64,
    pub name: String,
    pub kind: NetworkType,
    /// IPv4 pool, e.g. `192.168.1.0/24`; `None` for IP-less networks.
    pub cidr: Option<String>,
    pub gateway: Option<String>,
    /// IPv6 prefix (addresses derived from MACs by EUI-64).
    pub cidr6: Option<String>,
    pub gateway6: Option<String>,
    pub dhcp: bool,
    /// The special network every server joins; nobody may modify it.
    pub public: bool,
    /// Visible to every project (the public network); else owned by `project_id`.
    pub shared: bool,
    pub project_id: Option<ProjectId>,
    pub status: NetworkStatus,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    pub deleted: bool,
    pub generation: i64,
}

/// A request to create a network.
#[derive(Clone, Debug)]
pub struct NetworkCreate {
    pub name: String,
    pub kind: NetworkType,
    pub cidr: Option<String>,
    pub gateway: Option<String>,
    pub cidr6: Option<String>,
    pub gateway6: Option<String>,
    pub dhcp: bool,
}

/// A network interface connection.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Nic {
    pub id: NicId,
    pub server_id: ServerId,
    /// The server's serial and the NIC's ordinal make the Cyclades id `nic-<serial>-<n>`.
    pub server_serial: i64,
    pub ordinal: u32,
    pub network_id: NetworkId,
    /// Filled on read from the network (names can change).
    #[serde(default)]
    pub network_name: String,
    #[serde(default)]
    pub network_serial: i64,
    pub mac: String,
    pub ipv4: Option<String>,
    pub ipv6: Option<String>,
    pub firewall: FirewallProfile,
    pub created_at: Timestamp,
}

impl Nic {
    /// Cyclades NIC id.
    pub fn cyclades_id(&self) -> String {
        format!("nic-{}-{}", self.server_serial, self.ordinal)
    }
}

/// A parsed IPv4 CIDR.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ipv4Cidr {
    pub network: Ipv4Addr,
    pub prefix: u8,
}

impl Ipv4Cidr {
    /// Parse `a.b.c.d/n`; host bits must be zero (as Cyclades/Neutron require).
    pub fn parse(s: &str) -> Result<Self, String> {
        let (addr, prefix) = s
            .split_once('/')
            .ok_or_else(|| format!("'{s}' is not a CIDR (a.b.c.d/n)"))?;
        let addr: Ipv4Addr = addr
            .parse()
            .map_err(|_| format!("'{addr}' is not an IPv4 address"))?;
        let prefix: u8 = prefix
            .parse()
            .map_err(|_| format!("'{prefix}' is not a prefix length"))?;
        if prefix > 32 {
            return Err(format!("prefix length {prefix} is larger than 32"));
        }
        let mask = Self::mask_of(prefix);
        if u32::from(addr) & !mask != 0 {
            return Err(format!("'{s}' has host bits set"));
        }
        Ok(Ipv4Cidr {
            network: addr,
            prefix,
        })
    }

    fn mask_of(prefix: u8) -> u32 {
        if prefix == 0 {
            0
        } else {
            u32::MAX << (32 - prefix)
        }
    }

    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        u32::from(ip) & Self::mask_of(self.prefix) == u32::from(self.network)
    }

    /// Usable host addresses (network and broadcast excluded for prefixes below /31).
    pub fn hosts(&self) -> impl Iterator<Item = Ipv4Addr> {
        let base = u32::from(self.network) as u64;
        let size = 1u64 << (32 - self.prefix as u32);
        let (first, last) = if self.prefix >= 31 {
            (base, base + size - 1)
        } else {
            (base + 1, base + size - 2)
        };
        (first..=last).map(|n| Ipv4Addr::from(n as u32))
    }

    /// The conventional gateway: the first host address.
    pub fn default_gateway(&self) -> Option<Ipv4Addr> {
        self.hosts().next()
    }

    pub fn to_string_cidr(&self) -> String {
        format!("{}/{}", self.network, self.prefix)
    }
}

/// The first free IPv4 host address of `cidr`, skipping the gateway and `used`.
pub fn first_free_ipv4(
    cidr: &Ipv4Cidr,
    gateway: Option<Ipv4Addr>,
    used: &std::collections::HashSet<Ipv4Addr>,
) -> Option<Ipv4Addr> {
    cidr.hosts()
        .find(|ip| Some(*ip) != gateway && !used.contains(ip))
}

/// A parsed IPv6 prefix (only /64 and shorter make sense for EUI-64).
pub fn parse_ipv6_cidr(s: &str) -> Result<(Ipv6Addr, u8), String> {
    let (addr, prefix) = s
        .split_once('/')
        .ok_or_else(|| format!("'{s}' is not an IPv6 CIDR"))?;
    let addr: Ipv6Addr = addr
        .parse()
        .map_err(|_| format!("'{addr}' is not an IPv6 address"))?;
    let prefix: u8 = prefix
        .parse()
        .map_err(|_| format!("'{prefix}' is not a prefix length"))?;
    if prefix > 64 {
        return Err(format!(
            "IPv6 prefix /{prefix} is longer than /64: EUI-64 addresses need a /64"
        ));
    }
    Ok((addr, prefix))
}

/// Parse `aa:bb:cc:dd:ee:ff`.
pub fn parse_mac(mac: &str) -> Option<[u8; 6]> {
    let parts: Vec<&str> = mac.split(':').collect();
    if parts.len() != 6 {
        return None;
    }
    let mut out = [0u8; 6];
    for (i, p) in parts.iter().enumerate() {
        if p.len() != 2 {
            return None;
        }
        out[i] = u8::from_str_radix(p, 16).ok()?;
    }
    Some(out)
}

pub fn format_mac(b: [u8; 6]) -> String {
    b.iter()
        .map(|x| format!("{x:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// The EUI-64 address of `mac` in the /64 of `prefix` (RFC 4291 appendix A).
pub fn eui64(prefix: Ipv6Addr, mac: [u8; 6]) -> Ipv6Addr {
    let p = prefix.octets();
    let mut o = [0u8; 16];
    o[..8].copy_from_slice(&p[..8]);
    o[8] = mac[0] ^ 0x02;
    o[9] = mac[1];
    o[10] = mac[2];
    o[11] = 0xff;
    o[12] = 0xfe;
    o[13] = mac[3];
    o[14] = mac[4];
    o[15] = mac[5];
    Ipv6Addr::from(o)
}

/// OpenStack's default MAC prefix (Neutron `base_mac`).
pub const MAC_PREFIX: [u8; 3] = [0xfa, 0x16, 0x3e];

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn cidr_parsing_table() {
        let ok = [
            ("192.168.1.0/24", 24),
            ("10.0.0.0/8", 8),
            ("10.1.2.3/32", 32),
            ("0.0.0.0/0", 0),
        ];
        for (s, p) in ok {
            assert_eq!(Ipv4Cidr::parse(s).unwrap().prefix, p, "{s}");
        }
        for bad in [
            "192.168.1.1/24",
            "192.168.1.0",
            "192.168.1.0/33",
            "300.1.1.0/24",
            "a/b",
        ] {
            assert!(Ipv4Cidr::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn hosts_exclude_network_and_broadcast() {
        let c = Ipv4Cidr::parse("192.168.1.0/30").unwrap();
        let h: Vec<Ipv4Addr> = c.hosts().collect();
        assert_eq!(
            h,
            vec![Ipv4Addr::new(192, 168, 1, 1), Ipv4Addr::new(192, 168, 1, 2)]
        );
        assert_eq!(Ipv4Cidr::parse("10.0.0.0/24").unwrap().hosts().count(), 254);
        assert_eq!(Ipv4Cidr::parse("10.0.0.4/31").unwrap().hosts().count(), 2);
        assert!(c.contains(Ipv4Addr::new(192, 168, 1, 3)));
        assert!(!c.contains(Ipv4Addr::new(192, 168, 1, 4)));
    }

    #[test]
    fn first_free_skips_gateway_and_used() {
        let c = Ipv4Cidr::parse("10.0.0.0/29").unwrap();
        let gw = c.default_gateway();
        assert_eq!(gw, Some(Ipv4Addr::new(10, 0, 0, 1)));
        let mut used = HashSet::new();
        assert_eq!(
            first_free_ipv4(&c, gw, &used),
            Some(Ipv4Addr::new(10, 0, 0, 2))
        );
        used.insert(Ipv4Addr::new(10, 0, 0, 2));
        used.insert(Ipv4Addr::new(10, 0, 0, 4));
        assert_eq!(
            first_free_ipv4(&c, gw, &used),
            Some(Ipv4Addr::new(10, 0, 0, 3))
        );
        for i in 2..=6 {
            used.insert(Ipv4Addr::new(10, 0, 0, i));
        }
        assert_eq!(first_free_ipv4(&c, gw, &used), None, "pool exhausted");
    }

    #[test]
    fn eui64_matches_rfc_example() {
        // The Cyclades seed's example pairs: aa:00:00:49:2e:7e style MACs.
        let prefix: Ipv6Addr = "2001:648:2ffc:1222::".parse().unwrap();
        let mac = parse_mac("aa:00:00:f5:3f:5b").unwrap();
        assert_eq!(
            eui64(prefix, mac).to_string(),
            "2001:648:2ffc:1222:a800:ff:fef5:3f5b"
        );
        assert_eq!(format_mac(mac), "aa:00:00:f5:3f:5b");
        assert!(parse_mac("aa:00:ff:f5:3f").is_none());
        assert!(parse_mac("zz:00:ff:f5:3f:5b").is_none());
        assert!(parse_ipv6_cidr("2001:db8::/64").is_ok());
        assert!(parse_ipv6_cidr("2001:db8::/80").is_err());
    }

    #[test]
    fn names_round_trip() {
        for t in [
            NetworkType::Custom,
            NetworkType::IpLessRouted,
            NetworkType::MacFiltered,
            NetworkType::PhysicalVlan,
        ] {
            assert_eq!(NetworkType::parse(t.as_str()), Some(t));
        }
        for f in [
            FirewallProfile::Enabled,
            FirewallProfile::Disabled,
            FirewallProfile::Protected,
        ] {
            assert_eq!(FirewallProfile::parse(f.as_str()), Some(f));
        }
    }
}
