//! Just enough Ethernet / ARP / IPv4 / IPv6 / UDP / TCP / ICMP parsing for the virtual
//! switch: addresses, protocol, ports and ICMP type/id, all borrowed from the frame (no
//! copies), plus the one builder the switch needs (an IPv4/UDP frame for DHCP replies).
//!
//! Every parser is total: a truncated or malformed frame yields `None` instead of
//! panicking, because frames come from guests and guests are untrusted. Callers decide what
//! "unparseable" means (the firewall drops it on protected ports; a plain switch port
//! forwards it unchanged, like any L2 switch).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// A MAC address.
pub type Mac = [u8; 6];

pub const BROADCAST: Mac = [0xff; 6];

pub const ETHERTYPE_IPV4: u16 = 0x0800;
pub const ETHERTYPE_ARP: u16 = 0x0806;
pub const ETHERTYPE_IPV6: u16 = 0x86dd;

pub const PROTO_ICMP: u8 = 1;
pub const PROTO_TCP: u8 = 6;
pub const PROTO_UDP: u8 = 17;
pub const PROTO_ICMPV6: u8 = 58;

/// Group (multicast or broadcast) addresses have the I/G bit set.
pub fn is_group(mac: &Mac) -> bool {
    mac[0] & 1 == 1
}

pub fn format_mac(mac: &Mac) -> String {
    nimbus_model::network::format_mac(*mac)
}

fn be16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*b.get(at)?, *b.get(at + 1)?]))
}

/// An Ethernet II frame. 802.1Q-tagged frames are not unwrapped: their ethertype is the
/// tag's (0x8100), so the firewall treats them as "other" traffic.
#[derive(Clone, Copy, Debug)]
pub struct Eth<'a> {
    pub dst: Mac,
    pub src: Mac,
    pub ethertype: u16,
    pub payload: &'a [u8],
}

impl<'a> Eth<'a> {
    pub fn parse(frame: &'a [u8]) -> Option<Eth<'a>> {
        if frame.len() < 14 {
            return None;
        }
        let mut dst = [0u8; 6];
        let mut src = [0u8; 6];
        dst.copy_from_slice(&frame[0..6]);
        src.copy_from_slice(&frame[6..12]);
        Some(Eth {
            dst,
            src,
            ethertype: be16(frame, 12)?,
            payload: &frame[14..],
        })
    }

    /// The IP packet inside, if this is a well-formed IPv4 or IPv6 frame.
    pub fn ip(&self) -> Option<Ip<'a>> {
        match self.ethertype {
            ETHERTYPE_IPV4 => Ip::parse_v4(self.payload, false),
            ETHERTYPE_IPV6 => Ip::parse_v6(self.payload),
            _ => None,
        }
    }
}

/// An IPv4 or IPv6 packet reduced to what switching and filtering need.
#[derive(Clone, Copy, Debug)]
pub struct Ip<'a> {
    pub src: IpAddr,
    pub dst: IpAddr,
    /// The transport protocol (IPv6: the last next-header after the extension headers).
    pub proto: u8,
    /// The transport header and payload; `None` for a fragment other than the first (it
    /// carries no transport header).
    pub l4: Option<&'a [u8]>,
}

impl<'a> Ip<'a> {
    /// `relaxed`: the packet is a quoted header inside an ICMP error, truncated after 8
    /// bytes of transport header, so the total-length field is not checked.
    pub fn parse_v4(p: &'a [u8], relaxed: bool) -> Option<Ip<'a>> {
        if p.len() < 20 || p[0] >> 4 != 4 {
            return None;
        }
        let ihl = usize::from(p[0] & 0x0f) * 4;
        if ihl < 20 || p.len() < ihl {
            return None;
        }
        let end = if relaxed {
            p.len()
        } else {
            let total = usize::from(be16(p, 2)?);
            // Ethernet pads short frames, so the buffer may be longer than the packet.
            if total < ihl || total > p.len() {
                return None;
            }
            total
        };
        let offset = be16(p, 6)? & 0x1fff;
        Some(Ip {
            src: IpAddr::V4(Ipv4Addr::new(p[12], p[13], p[14], p[15])),
            dst: IpAddr::V4(Ipv4Addr::new(p[16], p[17], p[18], p[19])),
            proto: p[9],
            l4: (offset == 0).then(|| &p[ihl..end]),
        })
    }

    pub fn parse_v6(p: &'a [u8]) -> Option<Ip<'a>> {
        Self::parse_v6_inner(p, false)
    }

    fn parse_v6_inner(p: &'a [u8], relaxed: bool) -> Option<Ip<'a>> {
        if p.len() < 40 || p[0] >> 4 != 6 {
            return None;
        }
        let end = if relaxed {
            p.len()
        } else {
            // A zero payload length means a jumbogram, which a 1500-byte segment never
            // carries: treat it as malformed.
            let len = usize::from(be16(p, 4)?);
            if len == 0 || 40 + len > p.len() {
                return None;
            }
            40 + len
        };
        let mut src = [0u8; 16];
        let mut dst = [0u8; 16];
        src.copy_from_slice(&p[8..24]);
        dst.copy_from_slice(&p[24..40]);
        let (mut next, mut off, mut first) = (p[6], 40usize, true);
        // Walk a bounded number of extension headers: hop-by-hop (0), routing (43),
        // fragment (44), destination options (60). Anything else is the transport.
        let mut walked = 0;
        while matches!(next, 0 | 43 | 44 | 60) {
            walked += 1;
            if walked > 8 || off + 8 > end {
                return None;
            }
            if next == 44 {
                if be16(p, off + 2)? >> 3 != 0 {
                    first = false;
                }
                next = p[off];
                off += 8;
            } else {
                let len = (usize::from(p[off + 1]) + 1) * 8;
                next = p[off];
                off += len;
            }
        }
        if off > end {
            return None;
        }
        Some(Ip {
            src: IpAddr::V6(Ipv6Addr::from(src)),
            dst: IpAddr::V6(Ipv6Addr::from(dst)),
            proto: next,
            l4: first.then(|| &p[off..end]),
        })
    }

    /// Source and destination ports of a TCP or UDP packet.
    pub fn ports(&self) -> Option<(u16, u16)> {
        match self.proto {
            PROTO_TCP | PROTO_UDP => {
                let l4 = self.l4?;
                Some((be16(l4, 0)?, be16(l4, 2)?))
            }
            _ => None,
        }
    }

    /// ICMP (v4 or v6) type and code.
    pub fn icmp(&self) -> Option<(u8, u8)> {
        match self.proto {
            PROTO_ICMP | PROTO_ICMPV6 => {
                let l4 = self.l4?;
                Some((*l4.first()?, *l4.get(1)?))
            }
            _ => None,
        }
    }

    /// The identifier of an ICMP echo request or reply.
    pub fn echo_id(&self) -> Option<u16> {
        be16(self.l4?, 4)
    }

    /// The packet quoted in an ICMP error message (after the 8-byte ICMP header).
    pub fn quoted(&self) -> Option<Ip<'a>> {
        let body = self.l4?.get(8..)?;
        match self.proto {
            PROTO_ICMP => Ip::parse_v4(body, true),
            PROTO_ICMPV6 => Ip::parse_v6_inner(body, true),
            _ => None,
        }
    }

    /// The UDP payload of a UDP packet.
    pub fn udp_payload(&self) -> Option<&'a [u8]> {
        if self.proto != PROTO_UDP {
            return None;
        }
        let l4 = self.l4?;
        let len = usize::from(be16(l4, 4)?);
        if len < 8 || len > l4.len() {
            return None;
        }
        Some(&l4[8..len])
    }
}

/// The Internet checksum (RFC 1071) over `parts`, concatenated.
pub fn checksum(parts: &[&[u8]]) -> u16 {
    let mut sum: u32 = 0;
    let mut odd: Option<u8> = None;
    for part in parts {
        for &b in *part {
            match odd.take() {
                Some(hi) => sum += u32::from(u16::from_be_bytes([hi, b])),
                None => odd = Some(b),
            }
        }
    }
    if let Some(hi) = odd {
        sum += u32::from(u16::from_be_bytes([hi, 0]));
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// An Ethernet + IPv4 + UDP frame with correct IP and UDP checksums.
pub fn udp4_frame(
    src_mac: Mac,
    dst_mac: Mac,
    src: Ipv4Addr,
    dst: Ipv4Addr,
    sport: u16,
    dport: u16,
    payload: &[u8],
) -> Vec<u8> {
    let udp_len = (8 + payload.len()) as u16;
    let total = 20 + udp_len;
    let mut f = Vec::with_capacity(14 + usize::from(total));
    f.extend_from_slice(&dst_mac);
    f.extend_from_slice(&src_mac);
    f.extend_from_slice(&ETHERTYPE_IPV4.to_be_bytes());
    let mut ip = [0u8; 20];
    ip[0] = 0x45;
    ip[2..4].copy_from_slice(&total.to_be_bytes());
    ip[8] = 64; // TTL
    ip[9] = PROTO_UDP;
    ip[12..16].copy_from_slice(&src.octets());
    ip[16..20].copy_from_slice(&dst.octets());
    let c = checksum(&[&ip]);
    ip[10..12].copy_from_slice(&c.to_be_bytes());
    f.extend_from_slice(&ip);
    let mut udp = [0u8; 8];
    udp[0..2].copy_from_slice(&sport.to_be_bytes());
    udp[2..4].copy_from_slice(&dport.to_be_bytes());
    udp[4..6].copy_from_slice(&udp_len.to_be_bytes());
    let mut pseudo = [0u8; 12];
    pseudo[0..4].copy_from_slice(&src.octets());
    pseudo[4..8].copy_from_slice(&dst.octets());
    pseudo[9] = PROTO_UDP;
    pseudo[10..12].copy_from_slice(&udp_len.to_be_bytes());
    let mut c = checksum(&[&pseudo, &udp, payload]);
    if c == 0 {
        // Zero means "no checksum" in UDP over IPv4; the all-ones form is equivalent.
        c = 0xffff;
    }
    udp[6..8].copy_from_slice(&c.to_be_bytes());
    f.extend_from_slice(&udp);
    f.extend_from_slice(payload);
    f
}

/// Frame builders for the unit tests of the switch, the firewall and DHCP.
#[cfg(test)]
pub mod build {
    use super::*;

    pub fn mac(last: u8) -> Mac {
        [0xfa, 0x16, 0x3e, 0, 0, last]
    }

    pub fn eth(src: Mac, dst: Mac, ethertype: u16, payload: &[u8]) -> Vec<u8> {
        let mut f = Vec::new();
        f.extend_from_slice(&dst);
        f.extend_from_slice(&src);
        f.extend_from_slice(&ethertype.to_be_bytes());
        f.extend_from_slice(payload);
        f
    }

    pub fn ipv4(src: &str, dst: &str, proto: u8, l4: &[u8]) -> Vec<u8> {
        let (s, d): (Ipv4Addr, Ipv4Addr) = (src.parse().unwrap(), dst.parse().unwrap());
        let mut ip = vec![0u8; 20];
        ip[0] = 0x45;
        ip[2..4].copy_from_slice(&((20 + l4.len()) as u16).to_be_bytes());
        ip[8] = 64;
        ip[9] = proto;
        ip[12..16].copy_from_slice(&s.octets());
        ip[16..20].copy_from_slice(&d.octets());
        let c = checksum(&[&ip]);
        ip[10..12].copy_from_slice(&c.to_be_bytes());
        ip.extend_from_slice(l4);
        ip
    }

    pub fn ipv6(src: &str, dst: &str, proto: u8, l4: &[u8]) -> Vec<u8> {
        let (s, d): (Ipv6Addr, Ipv6Addr) = (src.parse().unwrap(), dst.parse().unwrap());
        let mut ip = vec![0u8; 40];
        ip[0] = 0x60;
        ip[4..6].copy_from_slice(&(l4.len() as u16).to_be_bytes());
        ip[6] = proto;
        ip[7] = 64;
        ip[8..24].copy_from_slice(&s.octets());
        ip[24..40].copy_from_slice(&d.octets());
        ip.extend_from_slice(l4);
        ip
    }

    /// A TCP header with SYN set (checksums are not checked by the switch).
    pub fn tcp(sport: u16, dport: u16) -> Vec<u8> {
        let mut t = vec![0u8; 20];
        t[0..2].copy_from_slice(&sport.to_be_bytes());
        t[2..4].copy_from_slice(&dport.to_be_bytes());
        t[12] = 5 << 4;
        t[13] = 0x02;
        t
    }

    pub fn udp(sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
        let mut u = vec![0u8; 8];
        u[0..2].copy_from_slice(&sport.to_be_bytes());
        u[2..4].copy_from_slice(&dport.to_be_bytes());
        u[4..6].copy_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
        u.extend_from_slice(payload);
        u
    }

    /// ICMP(v6) with `typ`, and for echo messages the identifier `id`.
    pub fn icmp(typ: u8, id: u16, rest: &[u8]) -> Vec<u8> {
        let mut i = vec![typ, 0, 0, 0];
        i.extend_from_slice(&id.to_be_bytes());
        i.extend_from_slice(&[0, 1]);
        i.extend_from_slice(rest);
        i
    }

    pub fn v4(src_mac: Mac, dst_mac: Mac, src: &str, dst: &str, proto: u8, l4: &[u8]) -> Vec<u8> {
        eth(src_mac, dst_mac, ETHERTYPE_IPV4, &ipv4(src, dst, proto, l4))
    }

    pub fn v6(src_mac: Mac, dst_mac: Mac, src: &str, dst: &str, proto: u8, l4: &[u8]) -> Vec<u8> {
        eth(src_mac, dst_mac, ETHERTYPE_IPV6, &ipv6(src, dst, proto, l4))
    }

    pub fn arp(src_mac: Mac) -> Vec<u8> {
        eth(src_mac, BROADCAST, ETHERTYPE_ARP, &[0u8; 28])
    }
}

#[cfg(test)]
mod tests {
    use super::build::*;
    use super::*;

    #[test]
    fn parses_the_layers_table() {
        let a = mac(1);
        let b = mac(2);
        // (frame, proto, ports, ICMP type and code)
        type Case = (Vec<u8>, u8, Option<(u16, u16)>, Option<(u8, u8)>);
        let cases: Vec<Case> = vec![
            (
                v4(a, b, "10.0.0.1", "10.0.0.2", PROTO_TCP, &tcp(4000, 22)),
                PROTO_TCP,
                Some((4000, 22)),
                None,
            ),
            (
                v4(a, b, "10.0.0.1", "10.0.0.2", PROTO_UDP, &udp(68, 67, b"x")),
                PROTO_UDP,
                Some((68, 67)),
                None,
            ),
            (
                v4(a, b, "10.0.0.1", "10.0.0.2", PROTO_ICMP, &icmp(8, 7, &[])),
                PROTO_ICMP,
                None,
                Some((8, 0)),
            ),
            (
                v6(a, b, "fe80::1", "fe80::2", PROTO_TCP, &tcp(1, 443)),
                PROTO_TCP,
                Some((1, 443)),
                None,
            ),
            (
                v6(a, b, "fe80::1", "ff02::1", PROTO_ICMPV6, &icmp(135, 0, &[])),
                PROTO_ICMPV6,
                None,
                Some((135, 0)),
            ),
        ];
        for (i, (f, proto, ports, icmp)) in cases.into_iter().enumerate() {
            let e = Eth::parse(&f).unwrap();
            let ip = e.ip().unwrap_or_else(|| panic!("case {i}"));
            assert_eq!(ip.proto, proto, "case {i}");
            assert_eq!(ip.ports(), ports, "case {i}");
            assert_eq!(ip.icmp(), icmp, "case {i}");
        }
    }

    #[test]
    fn malformed_frames_are_none_never_a_panic() {
        let a = mac(1);
        let good = v4(
            a,
            BROADCAST,
            "10.0.0.1",
            "10.0.0.2",
            PROTO_UDP,
            &udp(1, 2, b"hi"),
        );
        // Every truncation of a good frame parses or is None; none panics.
        for n in 0..good.len() {
            if let Some(e) = Eth::parse(&good[..n])
                && let Some(ip) = e.ip()
            {
                let _ = (ip.ports(), ip.udp_payload(), ip.icmp(), ip.quoted());
            }
        }
        assert!(Eth::parse(&[0u8; 13]).is_none());
        // IPv4 with a bad header length, a total length beyond the buffer, wrong version.
        let mut bad = good.clone();
        bad[14] = 0x44;
        assert!(Eth::parse(&bad).unwrap().ip().is_none());
        let mut bad = good.clone();
        bad[16] = 0xff;
        assert!(Eth::parse(&bad).unwrap().ip().is_none());
        let mut bad = good.clone();
        bad[14] = 0x65;
        assert!(Eth::parse(&bad).unwrap().ip().is_none());
        // A UDP length longer than the packet.
        let mut bad = good.clone();
        bad[14 + 20 + 5] = 200;
        assert!(
            Eth::parse(&bad)
                .unwrap()
                .ip()
                .unwrap()
                .udp_payload()
                .is_none()
        );
        // Trailing Ethernet padding is ignored.
        let mut padded = good.clone();
        padded.extend_from_slice(&[0u8; 20]);
        let e = Eth::parse(&padded).unwrap();
        assert_eq!(e.ip().unwrap().udp_payload(), Some(&b"hi"[..]));
    }

    #[test]
    fn fragments_other_than_the_first_have_no_transport_header() {
        let a = mac(1);
        let mut f = v4(
            a,
            BROADCAST,
            "10.0.0.1",
            "10.0.0.2",
            PROTO_UDP,
            &udp(1, 2, b"x"),
        );
        f[14 + 6] = 0x00;
        f[14 + 7] = 0x10; // offset 16 * 8 bytes
        let ip = Eth::parse(&f).unwrap().ip().unwrap();
        assert!(ip.l4.is_none() && ip.ports().is_none());
        // IPv6: a fragment header with a non-zero offset, then UDP.
        let mut frag = vec![PROTO_UDP, 0, 0, 0x08, 0, 0, 0, 1];
        frag.extend_from_slice(&udp(1, 2, b"x"));
        let f = v6(a, BROADCAST, "fe80::1", "fe80::2", 44, &frag);
        let ip = Eth::parse(&f).unwrap().ip().unwrap();
        assert_eq!(ip.proto, PROTO_UDP);
        assert!(ip.l4.is_none());
        // The first fragment (offset 0) keeps its ports.
        let mut frag = vec![PROTO_UDP, 0, 0, 0x01, 0, 0, 0, 1];
        frag.extend_from_slice(&udp(1, 2, b"x"));
        let f = v6(a, BROADCAST, "fe80::1", "fe80::2", 44, &frag);
        assert_eq!(Eth::parse(&f).unwrap().ip().unwrap().ports(), Some((1, 2)));
    }

    #[test]
    fn icmp_errors_quote_the_original_packet() {
        let a = mac(1);
        let original = ipv4("10.0.0.5", "10.0.0.9", PROTO_UDP, &udp(5353, 53, b"query"));
        let body = original[..28].to_vec();
        let f = v4(
            a,
            BROADCAST,
            "10.0.0.9",
            "10.0.0.5",
            PROTO_ICMP,
            &icmp(3, 0, &body),
        );
        let ip = Eth::parse(&f).unwrap().ip().unwrap();
        let q = ip.quoted().unwrap();
        assert_eq!(q.src, "10.0.0.5".parse::<IpAddr>().unwrap());
        assert_eq!(q.ports(), Some((5353, 53)));
    }

    #[test]
    fn udp_builder_checksums_verify() {
        let f = udp4_frame(
            mac(1),
            BROADCAST,
            Ipv4Addr::new(10, 0, 0, 1),
            Ipv4Addr::BROADCAST,
            67,
            68,
            b"hello",
        );
        let e = Eth::parse(&f).unwrap();
        let ip = e.ip().unwrap();
        assert_eq!(ip.udp_payload(), Some(&b"hello"[..]));
        // A correct header checksums to zero.
        assert_eq!(checksum(&[&e.payload[..20]]), 0);
        let l4 = ip.l4.unwrap();
        let mut pseudo = vec![10, 0, 0, 1, 255, 255, 255, 255, 0, PROTO_UDP];
        pseudo.extend_from_slice(&(l4.len() as u16).to_be_bytes());
        assert_eq!(checksum(&[&pseudo, l4]), 0);
    }
}
