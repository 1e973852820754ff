//! Per-port firewall: the three Synnefo profiles as pure functions over frames, plus the
//! small connection tracker they need.
//!
//! Direction is the guest's: *outbound* is what the guest sends into the switch, *inbound*
//! is what the switch is about to deliver to it. Outbound traffic is never filtered; every
//! outbound packet is recorded so that replies can be recognised. Inbound traffic is judged
//! by the port's profile:
//!
//! | profile | inbound traffic that passes |
//! |---|---|
//! | `DISABLED` | everything |
//! | `PROTECTED` | ARP; IPv6 neighbour/router discovery and MLD (ICMPv6 130-137, 143); replies to flows the guest started (TCP/UDP by 5-tuple, ICMP echo replies by identifier, other IP protocols by address pair); ICMP errors that quote such a flow; non-first IP fragments between addresses that have a flow of that protocol |
//! | `ENABLED` | as `PROTECTED`, plus ICMP/ICMPv6 echo requests and TCP to ports 22, 80 and 443 |
//!
//! Everything else is dropped under `PROTECTED`/`ENABLED`: unsolicited TCP/UDP, other
//! ethertypes (including 802.1Q-tagged frames, which cannot be inspected) and IP packets
//! too malformed to classify. DHCP between a guest and Nimbus never reaches this filter: the
//! switch answers it itself.
//!
//! Flows are tracked in every profile (also `DISABLED`), so switching a port to
//! `PROTECTED` keeps connections the guest already has. A flow lives while packets keep
//! passing in either direction: TCP 1 h idle, UDP 180 s, ICMP echo 30 s, other protocols
//! 600 s. A port tracks at most [`MAX_FLOWS`]; when full, expired flows are purged and then
//! the least recently used eighth makes room.

use super::frame::{ETHERTYPE_ARP, Eth, Ip, PROTO_ICMP, PROTO_ICMPV6, PROTO_TCP, PROTO_UDP};
use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// A port's firewall profile.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Profile {
    Disabled,
    Protected,
    Enabled,
}

impl Profile {
    /// The controller's names; an empty string (a NIC that never had one) is `DISABLED`.
    pub fn parse(s: &str) -> Option<Profile> {
        match s {
            "" | "DISABLED" => Some(Profile::Disabled),
            "PROTECTED" => Some(Profile::Protected),
            "ENABLED" => Some(Profile::Enabled),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Profile::Disabled => "DISABLED",
            Profile::Protected => "PROTECTED",
            Profile::Enabled => "ENABLED",
        }
    }
}

/// TCP ports `ENABLED` opens to unsolicited connections (Synnefo: SSH, HTTP, HTTPS).
pub const ENABLED_TCP_PORTS: [u16; 3] = [22, 80, 443];
/// Most flows one port tracks.
pub const MAX_FLOWS: usize = 4096;

const TCP_IDLE: Duration = Duration::from_secs(3600);
const UDP_IDLE: Duration = Duration::from_secs(180);
const ICMP_IDLE: Duration = Duration::from_secs(30);
const OTHER_IDLE: Duration = Duration::from_secs(600);

/// A flow from the guest's side. TCP/UDP: ports; ICMP echo: `lport` is the identifier and
/// `rport` 0; other protocols: both 0.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct FlowKey {
    proto: u8,
    local: IpAddr,
    remote: IpAddr,
    lport: u16,
    rport: u16,
}

fn idle_limit(proto: u8) -> Duration {
    match proto {
        PROTO_TCP => TCP_IDLE,
        PROTO_UDP => UDP_IDLE,
        PROTO_ICMP | PROTO_ICMPV6 => ICMP_IDLE,
        _ => OTHER_IDLE,
    }
}

fn is_echo_request(proto: u8, typ: u8) -> bool {
    (proto == PROTO_ICMP && typ == 8) || (proto == PROTO_ICMPV6 && typ == 128)
}

fn is_echo_reply(proto: u8, typ: u8) -> bool {
    (proto == PROTO_ICMP && typ == 0) || (proto == PROTO_ICMPV6 && typ == 129)
}

/// ICMP errors that quote the packet that caused them.
fn is_icmp_error(proto: u8, typ: u8) -> bool {
    match proto {
        PROTO_ICMP => matches!(typ, 3 | 4 | 11 | 12),
        PROTO_ICMPV6 => matches!(typ, 1..=4),
        _ => false,
    }
}

/// The flow an outbound packet belongs to, if it starts or continues one.
fn outbound_key(ip: &Ip<'_>) -> Option<FlowKey> {
    let key = |lport, rport| FlowKey {
        proto: ip.proto,
        local: ip.src,
        remote: ip.dst,
        lport,
        rport,
    };
    match ip.proto {
        PROTO_TCP | PROTO_UDP => ip.ports().map(|(s, d)| key(s, d)),
        PROTO_ICMP | PROTO_ICMPV6 => {
            let (typ, _) = ip.icmp()?;
            if is_echo_request(ip.proto, typ) {
                ip.echo_id().map(|id| key(id, 0))
            } else {
                None
            }
        }
        // Non-first fragments have no transport header; their first fragment made the flow.
        _ if ip.l4.is_none() => None,
        _ => Some(key(0, 0)),
    }
}

/// The flow an inbound packet would be a reply in.
fn reply_key(ip: &Ip<'_>) -> Option<FlowKey> {
    let key = |lport, rport| FlowKey {
        proto: ip.proto,
        local: ip.dst,
        remote: ip.src,
        lport,
        rport,
    };
    match ip.proto {
        PROTO_TCP | PROTO_UDP => ip.ports().map(|(s, d)| key(d, s)),
        PROTO_ICMP | PROTO_ICMPV6 => {
            let (typ, _) = ip.icmp()?;
            if is_echo_reply(ip.proto, typ) {
                ip.echo_id().map(|id| key(id, 0))
            } else {
                None
            }
        }
        _ => Some(key(0, 0)),
    }
}

/// What the firewall decided, and the rule that decided it (for tests and tracing).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Allow(&'static str),
    Drop(&'static str),
}

impl Verdict {
    pub fn allowed(self) -> bool {
        matches!(self, Verdict::Allow(_))
    }
}

/// One port's connection tracker.
#[derive(Debug, Default)]
pub struct Conntrack {
    flows: HashMap<FlowKey, Instant>,
}

impl Conntrack {
    pub fn len(&self) -> usize {
        self.flows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.flows.is_empty()
    }

    /// Record what the guest sends (never filtered).
    pub fn outbound(&mut self, frame: &Eth<'_>, now: Instant) {
        let Some(key) = frame.ip().as_ref().and_then(outbound_key) else {
            return;
        };
        if !self.flows.contains_key(&key) && self.flows.len() >= MAX_FLOWS {
            self.make_room(now);
        }
        self.flows.insert(key, now);
    }

    /// Purge expired flows; if the table is still full, evict the least recently used
    /// eighth at once, so a guest opening flows as fast as it can costs O(1) amortized per
    /// flow instead of a scan of the whole table each time.
    fn make_room(&mut self, now: Instant) {
        self.flows
            .retain(|k, seen| now.saturating_duration_since(*seen) < idle_limit(k.proto));
        if self.flows.len() >= MAX_FLOWS {
            let mut seen: Vec<Instant> = self.flows.values().copied().collect();
            let cut = seen.len() / 8;
            let (_, threshold, _) = seen.select_nth_unstable(cut);
            let threshold = *threshold;
            self.flows.retain(|_, t| *t > threshold);
        }
    }

    /// True (and the flow refreshed) if `key` is a live flow.
    fn live(&mut self, key: &FlowKey, now: Instant) -> bool {
        match self.flows.get_mut(key) {
            Some(seen) if now.saturating_duration_since(*seen) < idle_limit(key.proto) => {
                *seen = now;
                true
            }
            Some(_) => {
                self.flows.remove(key);
                false
            }
            None => false,
        }
    }

    /// Any live flow of `proto` between the two addresses (for non-first fragments).
    fn any_between(&self, proto: u8, local: IpAddr, remote: IpAddr, now: Instant) -> bool {
        self.flows.iter().any(|(k, seen)| {
            k.proto == proto
                && k.local == local
                && k.remote == remote
                && now.saturating_duration_since(*seen) < idle_limit(k.proto)
        })
    }

    /// Judge a frame about to be delivered to this port under `profile`.
    pub fn inbound(&mut self, profile: Profile, frame: &Eth<'_>, now: Instant) -> Verdict {
        if profile == Profile::Disabled {
            return Verdict::Allow("profile DISABLED passes everything");
        }
        if frame.ethertype == ETHERTYPE_ARP {
            return Verdict::Allow("ARP");
        }
        let Some(ip) = frame.ip() else {
            return Verdict::Drop("not ARP and not a well-formed IP packet");
        };
        if ip.l4.is_none() {
            return if self.any_between(ip.proto, ip.dst, ip.src, now) {
                Verdict::Allow("fragment of a tracked flow")
            } else {
                Verdict::Drop("fragment without a tracked flow")
            };
        }
        if let Some((typ, _)) = ip.icmp() {
            if ip.proto == PROTO_ICMPV6 && matches!(typ, 130..=137 | 143) {
                return Verdict::Allow("IPv6 neighbour discovery / MLD");
            }
            if is_echo_request(ip.proto, typ) {
                return if profile == Profile::Enabled {
                    Verdict::Allow("ENABLED accepts echo requests")
                } else {
                    Verdict::Drop("unsolicited echo request")
                };
            }
            if is_icmp_error(ip.proto, typ) {
                // The quoted packet is one the guest sent: its own flow, seen from the guest.
                let related = ip
                    .quoted()
                    .as_ref()
                    .and_then(outbound_key)
                    .is_some_and(|k| self.live(&k, now));
                return if related {
                    Verdict::Allow("ICMP error about a tracked flow")
                } else {
                    Verdict::Drop("ICMP error about an unknown flow")
                };
            }
        }
        if reply_key(&ip).is_some_and(|k| self.live(&k, now)) {
            return Verdict::Allow("reply to a flow the guest started");
        }
        if profile == Profile::Enabled
            && ip.proto == PROTO_TCP
            && ip
                .ports()
                .is_some_and(|(_, dport)| ENABLED_TCP_PORTS.contains(&dport))
        {
            return Verdict::Allow("ENABLED accepts TCP 22/80/443");
        }
        Verdict::Drop("unsolicited")
    }
}

#[cfg(test)]
mod tests {
    use super::super::frame::build::*;
    use super::super::frame::{BROADCAST, ETHERTYPE_IPV4};
    use super::*;

    const GUEST: &str = "10.0.0.2";
    const PEER: &str = "10.0.0.3";

    fn judge(ct: &mut Conntrack, profile: Profile, frame: &[u8], now: Instant) -> Verdict {
        ct.inbound(profile, &Eth::parse(frame).unwrap(), now)
    }

    fn send(ct: &mut Conntrack, frame: &[u8], now: Instant) {
        ct.outbound(&Eth::parse(frame).unwrap(), now);
    }

    /// Inbound frames to the guest (from PEER unless stated), each with the verdict under
    /// DISABLED, PROTECTED and ENABLED, after the guest has sent `outbound_setup`.
    #[test]
    fn profile_rules_table() {
        let (g, p) = (mac(2), mac(3));
        let into = |proto: u8, l4: Vec<u8>| v4(p, g, PEER, GUEST, proto, &l4);
        let into6 = |proto: u8, l4: Vec<u8>| v6(p, g, "fe80::3", "fe80::2", proto, &l4);
        // The guest's own traffic: a TCP connection, a UDP query, a ping, GRE.
        let setup = vec![
            v4(g, p, GUEST, PEER, PROTO_TCP, &tcp(40000, 5432)),
            v4(g, p, GUEST, PEER, PROTO_UDP, &udp(5353, 53, b"q")),
            v4(g, p, GUEST, PEER, PROTO_ICMP, &icmp(8, 77, &[])),
            v6(g, p, "fe80::2", "fe80::3", PROTO_ICMPV6, &icmp(128, 5, &[])),
            v4(g, p, GUEST, PEER, 47, &[0u8; 8]),
        ];
        let quoted_udp = {
            let orig = ipv4(GUEST, PEER, PROTO_UDP, &udp(5353, 53, b"q"));
            orig[..28].to_vec()
        };
        let quoted_unknown = {
            let orig = ipv4(GUEST, PEER, PROTO_UDP, &udp(9999, 53, b"q"));
            orig[..28].to_vec()
        };
        let mut fragment = into(PROTO_UDP, udp(53, 5353, b"big"));
        fragment[14 + 7] = 0x20;
        let mut stray_fragment = v4(p, g, "10.0.0.9", GUEST, PROTO_UDP, &udp(53, 5353, b"x"));
        stray_fragment[14 + 7] = 0x20;
        // (name, frame, DISABLED, PROTECTED, ENABLED)
        let cases: Vec<(&str, Vec<u8>, bool, bool, bool)> = vec![
            ("ARP", arp(p), true, true, true),
            (
                "TCP reply to the guest's connection",
                into(PROTO_TCP, tcp(5432, 40000)),
                true,
                true,
                true,
            ),
            (
                "TCP from the right host, wrong port",
                into(PROTO_TCP, tcp(5432, 40001)),
                true,
                false,
                false,
            ),
            (
                "TCP SYN to 22",
                into(PROTO_TCP, tcp(50000, 22)),
                true,
                false,
                true,
            ),
            (
                "TCP SYN to 80",
                into(PROTO_TCP, tcp(50000, 80)),
                true,
                false,
                true,
            ),
            (
                "TCP SYN to 443",
                into(PROTO_TCP, tcp(50000, 443)),
                true,
                false,
                true,
            ),
            (
                "TCP SYN to 8080",
                into(PROTO_TCP, tcp(50000, 8080)),
                true,
                false,
                false,
            ),
            (
                "TCP SYN to 22 over IPv6",
                into6(PROTO_TCP, tcp(50000, 22)),
                true,
                false,
                true,
            ),
            (
                "UDP reply",
                into(PROTO_UDP, udp(53, 5353, b"a")),
                true,
                true,
                true,
            ),
            (
                "UDP from a third host",
                v4(p, g, "10.0.0.9", GUEST, PROTO_UDP, &udp(53, 5353, b"a")),
                true,
                false,
                false,
            ),
            (
                "UDP to 22 (only TCP is opened)",
                into(PROTO_UDP, udp(1, 22, b"")),
                true,
                false,
                false,
            ),
            (
                "echo reply to the guest's ping",
                into(PROTO_ICMP, icmp(0, 77, &[])),
                true,
                true,
                true,
            ),
            (
                "echo reply with another id",
                into(PROTO_ICMP, icmp(0, 78, &[])),
                true,
                false,
                false,
            ),
            (
                "echo request",
                into(PROTO_ICMP, icmp(8, 1, &[])),
                true,
                false,
                true,
            ),
            (
                "ICMPv6 echo reply",
                into6(PROTO_ICMPV6, icmp(129, 5, &[])),
                true,
                true,
                true,
            ),
            (
                "ICMPv6 echo request",
                into6(PROTO_ICMPV6, icmp(128, 9, &[])),
                true,
                false,
                true,
            ),
            (
                "IPv6 neighbour solicitation",
                into6(PROTO_ICMPV6, icmp(135, 0, &[])),
                true,
                true,
                true,
            ),
            (
                "IPv6 router advertisement",
                into6(PROTO_ICMPV6, icmp(134, 0, &[])),
                true,
                true,
                true,
            ),
            (
                "port unreachable about the guest's query",
                into(PROTO_ICMP, icmp(3, 0, &quoted_udp)),
                true,
                true,
                true,
            ),
            (
                "port unreachable about nothing",
                into(PROTO_ICMP, icmp(3, 0, &quoted_unknown)),
                true,
                false,
                false,
            ),
            (
                "ICMP timestamp request",
                into(PROTO_ICMP, icmp(13, 0, &[])),
                true,
                false,
                false,
            ),
            ("GRE reply", into(47, vec![0u8; 8]), true, true, true),
            (
                "GRE from a third host",
                v4(p, g, "10.0.0.9", GUEST, 47, &[0u8; 8]),
                true,
                false,
                false,
            ),
            ("fragment of a tracked flow", fragment, true, true, true),
            (
                "fragment from a stranger",
                stray_fragment,
                true,
                false,
                false,
            ),
            (
                "VLAN-tagged frame",
                eth(p, g, 0x8100, &[0u8; 46]),
                true,
                false,
                false,
            ),
            ("LLDP", eth(p, g, 0x88cc, &[0u8; 46]), true, false, false),
            (
                "malformed IPv4",
                eth(p, g, ETHERTYPE_IPV4, &[0x45, 0, 0]),
                true,
                false,
                false,
            ),
            (
                "broadcast UDP",
                v4(
                    p,
                    BROADCAST,
                    PEER,
                    "255.255.255.255",
                    PROTO_UDP,
                    &udp(1, 2, b""),
                ),
                true,
                false,
                false,
            ),
        ];
        let now = Instant::now();
        for (profile, col) in [
            (Profile::Disabled, 0),
            (Profile::Protected, 1),
            (Profile::Enabled, 2),
        ] {
            let mut ct = Conntrack::default();
            for f in &setup {
                send(&mut ct, f, now);
            }
            for (name, frame, d, pr, en) in &cases {
                let want = [*d, *pr, *en][col];
                let got = judge(&mut ct, profile, frame, now);
                assert_eq!(got.allowed(), want, "{name} under {profile:?}: {got:?}");
            }
        }
    }

    #[test]
    fn flows_expire_and_replies_keep_them_alive() {
        let (g, p) = (mac(2), mac(3));
        let mut ct = Conntrack::default();
        let t0 = Instant::now();
        send(
            &mut ct,
            &v4(g, p, GUEST, PEER, PROTO_UDP, &udp(5000, 53, b"")),
            t0,
        );
        send(
            &mut ct,
            &v4(g, p, GUEST, PEER, PROTO_ICMP, &icmp(8, 1, &[])),
            t0,
        );
        let reply = v4(p, g, PEER, GUEST, PROTO_UDP, &udp(53, 5000, b""));
        let pong = v4(p, g, PEER, GUEST, PROTO_ICMP, &icmp(0, 1, &[]));
        // Replies within the idle limit pass and refresh the flow...
        let t1 = t0 + Duration::from_secs(170);
        assert!(judge(&mut ct, Profile::Protected, &reply, t1).allowed());
        assert!(
            judge(
                &mut ct,
                Profile::Protected,
                &reply,
                t1 + Duration::from_secs(170)
            )
            .allowed()
        );
        // ...an echo flow is gone after 30 s, and an idle UDP flow after 180 s.
        assert!(
            !judge(
                &mut ct,
                Profile::Protected,
                &pong,
                t0 + Duration::from_secs(31)
            )
            .allowed()
        );
        assert!(
            !judge(
                &mut ct,
                Profile::Protected,
                &reply,
                t1 + Duration::from_secs(360)
            )
            .allowed()
        );
    }

    #[test]
    fn the_table_is_bounded() {
        let (g, p) = (mac(2), mac(3));
        let mut ct = Conntrack::default();
        let t0 = Instant::now();
        for port in 0..(MAX_FLOWS as u16 + 100) {
            let f = v4(g, p, GUEST, PEER, PROTO_UDP, &udp(port, 53, b""));
            send(&mut ct, &f, t0 + Duration::from_millis(port.into()));
        }
        assert!(
            ct.len() <= MAX_FLOWS && ct.len() > MAX_FLOWS / 2,
            "{}",
            ct.len()
        );
        // The most recent flows survive; the oldest were evicted.
        let newest = v4(
            p,
            g,
            PEER,
            GUEST,
            PROTO_UDP,
            &udp(53, MAX_FLOWS as u16 + 99, b""),
        );
        let oldest = v4(p, g, PEER, GUEST, PROTO_UDP, &udp(53, 0, b""));
        let now = t0 + Duration::from_secs(5);
        assert!(judge(&mut ct, Profile::Protected, &newest, now).allowed());
        assert!(!judge(&mut ct, Profile::Protected, &oldest, now).allowed());
    }

    #[test]
    fn profile_names() {
        for (s, p) in [
            ("ENABLED", Profile::Enabled),
            ("DISABLED", Profile::Disabled),
            ("PROTECTED", Profile::Protected),
        ] {
            assert_eq!(Profile::parse(s), Some(p));
            assert_eq!(p.as_str(), s);
        }
        assert_eq!(Profile::parse(""), Some(Profile::Disabled));
        assert_eq!(Profile::parse("protected"), None);
    }
}
