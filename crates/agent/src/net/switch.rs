//! One network's L2 segment as a pure state machine: ports, MAC learning, flooding,
//! per-port firewall and counters, and the DHCP server. No I/O: [`Switch::ingress`] takes a
//! frame and the socket path it came from and hands every delivery to a `send` callback,
//! so the whole forwarding logic is unit-tested over plain byte frames.
//!
//! Ports are the NICs plugged into this network, each identified by its allocated MAC and
//! by the unix socket QEMU sends from. Invariants:
//! - a frame is accepted only from a registered port's socket (unknown senders are dropped
//!   and counted), so nothing but a plugged NIC can inject into a segment;
//! - a port may not send with another port's allocated MAC, nor with a group MAC as the
//!   source (anti-spoofing); other source MACs are learned, bounded and aged;
//! - a frame never goes back out of the port it came in on, and never leaves the switch
//!   (isolation between networks is structural: each network is its own `Switch`);
//! - broadcast, multicast and unknown unicast are flooded to every other port, each copy
//!   judged by the receiving port's firewall;
//! - on a network with DHCP, client DHCP messages are answered by the switch and not
//!   forwarded, and DHCP server messages from guests are dropped (no rogue DHCP);
//! - a port whose QEMU cannot take a frame now (its socket queue is full: the kernel
//!   queues only `net.unix.max_dgram_qlen`, 10 by default, datagrams per socket) keeps
//!   frames in a FIFO backlog of at most [`MAX_BACKLOG_BYTES`], sent in order by
//!   [`Switch::flush`] before anything newer; only beyond that are frames dropped;
//! - counters are the guest's view (like libvirt's): `tx` = frames the guest sent and the
//!   switch accepted, `rx` = frames delivered to the guest; `tx_drop` = frames refused at
//!   ingress (spoofing, rogue DHCP, garbage), `rx_drop` = frames for the guest dropped by its
//!   firewall or because its backlog was full.

use super::dhcp::{self, Lease};
use super::firewall::{Conntrack, Profile};
use super::frame::{self, Eth, Mac, PROTO_UDP};
use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// How long a learned (non-allocated) MAC stays in the forwarding table without traffic.
pub const LEARNED_AGE: Duration = Duration::from_secs(300);
/// Most learned MACs per network; beyond it, unknown sources are not learned (their
/// traffic is still forwarded; frames to them are flooded).
pub const MAX_LEARNED: usize = 1024;
/// Most bytes waiting for one port whose QEMU is momentarily not reading.
pub const MAX_BACKLOG_BYTES: usize = 1 << 20;

/// A NIC as the switch sees it.
#[derive(Clone, Debug, PartialEq)]
pub struct PortConfig {
    pub mac: Mac,
    /// QEMU's end of the NIC: the datagram source address the switch recognises the port
    /// by, and where it delivers to.
    pub socket: PathBuf,
    /// Whether the network serves DHCP (the switch answers and intercepts DHCP).
    pub dhcp: bool,
    /// What DHCP offers this NIC; `None` on a network without DHCP or for a NIC without an
    /// IPv4 address (such a NIC's requests go unanswered).
    pub lease: Option<Lease>,
    pub firewall: Profile,
}

/// Per-port counters, from the guest's point of view.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    pub rx_packets: u64,
    pub rx_bytes: u64,
    pub rx_drop: u64,
    pub tx_packets: u64,
    pub tx_bytes: u64,
    pub tx_drop: u64,
}

/// What happened to one delivery attempt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SendOutcome {
    Sent,
    /// The receiver's queue is full: the frame waits in the port's backlog.
    Full,
    /// Nobody listens (the server is stopped): nothing to count.
    Absent,
}

#[derive(Debug)]
struct Port {
    cfg: PortConfig,
    counters: Counters,
    conntrack: Conntrack,
    /// Frames the port's QEMU could not take yet, oldest first.
    backlog: VecDeque<Vec<u8>>,
    backlog_bytes: usize,
}

impl Port {
    /// Send a frame to the guest, behind anything already waiting.
    fn transmit(&mut self, bytes: &[u8], send: &mut dyn FnMut(&Path, &[u8]) -> SendOutcome) {
        if !self.backlog.is_empty() {
            self.enqueue(bytes);
            return;
        }
        match send(&self.cfg.socket, bytes) {
            SendOutcome::Sent => self.count_rx(bytes.len()),
            SendOutcome::Full => self.enqueue(bytes),
            SendOutcome::Absent => {}
        }
    }

    fn enqueue(&mut self, bytes: &[u8]) {
        if self.backlog_bytes + bytes.len() > MAX_BACKLOG_BYTES {
            self.counters.rx_drop += 1;
        } else {
            self.backlog_bytes += bytes.len();
            self.backlog.push_back(bytes.to_vec());
        }
    }

    fn count_rx(&mut self, len: usize) {
        self.counters.rx_packets += 1;
        self.counters.rx_bytes += len as u64;
    }

    /// Send what waits; answers whether anything still waits.
    fn flush(&mut self, send: &mut dyn FnMut(&Path, &[u8]) -> SendOutcome) -> bool {
        while let Some(f) = self.backlog.front() {
            match send(&self.cfg.socket, f) {
                SendOutcome::Sent => {
                    let len = f.len();
                    self.count_rx(len);
                    self.backlog_bytes -= len;
                    self.backlog.pop_front();
                }
                SendOutcome::Full => return true,
                SendOutcome::Absent => {
                    // The guest went away: what waited for it is lost.
                    self.counters.rx_drop += self.backlog.len() as u64;
                    self.backlog.clear();
                    self.backlog_bytes = 0;
                }
            }
        }
        false
    }
}

/// One network's switch.
#[derive(Debug)]
pub struct Switch {
    /// The switch's own MAC: the source of DHCP replies.
    mac: Mac,
    ports: HashMap<Mac, Port>,
    by_socket: HashMap<PathBuf, Mac>,
    /// Learned MAC → (port MAC, last seen).
    learned: HashMap<Mac, (Mac, Instant)>,
    /// Frames from sockets that are no port.
    pub unknown_senders: u64,
}

impl Switch {
    pub fn new(mac: Mac) -> Switch {
        Switch {
            mac,
            ports: HashMap::new(),
            by_socket: HashMap::new(),
            learned: HashMap::new(),
            unknown_senders: 0,
        }
    }

    /// Add a port, or update an existing one in place (its counters and tracked flows
    /// survive a re-plug, e.g. a restart of the server or a firewall change).
    pub fn plug(&mut self, cfg: PortConfig) {
        let mac = cfg.mac;
        if let Some(old) = self.ports.get(&mac) {
            self.by_socket.remove(&old.cfg.socket);
        }
        // A socket belongs to one port: a stale registration under another MAC goes.
        if let Some(other) = self.by_socket.insert(cfg.socket.clone(), mac)
            && other != mac
        {
            self.ports.remove(&other);
            self.learned.retain(|_, (p, _)| *p != other);
        }
        // An allocated MAC is never a learned one.
        self.learned.remove(&mac);
        match self.ports.get_mut(&mac) {
            Some(p) => p.cfg = cfg,
            None => {
                self.ports.insert(
                    mac,
                    Port {
                        cfg,
                        counters: Counters::default(),
                        conntrack: Conntrack::default(),
                        backlog: VecDeque::new(),
                        backlog_bytes: 0,
                    },
                );
            }
        }
    }

    /// Remove a port; answers whether it existed.
    pub fn unplug(&mut self, mac: &Mac) -> bool {
        let Some(p) = self.ports.remove(mac) else {
            return false;
        };
        self.by_socket.remove(&p.cfg.socket);
        self.learned.retain(|_, (port, _)| port != mac);
        true
    }

    pub fn is_empty(&self) -> bool {
        self.ports.is_empty()
    }

    pub fn port_macs(&self) -> Vec<Mac> {
        self.ports.keys().copied().collect()
    }

    pub fn counters(&self, mac: &Mac) -> Option<Counters> {
        self.ports.get(mac).map(|p| p.counters)
    }

    pub fn config(&self, mac: &Mac) -> Option<&PortConfig> {
        self.ports.get(mac).map(|p| &p.cfg)
    }

    /// Retry every port's backlog, oldest frame first; answers whether frames still wait
    /// (the caller then tries again shortly).
    pub fn flush(&mut self, send: &mut dyn FnMut(&Path, &[u8]) -> SendOutcome) -> bool {
        let mut waiting = false;
        for p in self.ports.values_mut() {
            waiting |= p.flush(send);
        }
        waiting
    }

    /// The port a destination MAC lives on, if known.
    fn port_of(&mut self, dst: &Mac, now: Instant) -> Option<Mac> {
        if self.ports.contains_key(dst) {
            return Some(*dst);
        }
        match self.learned.get(dst) {
            Some((port, seen)) if now.saturating_duration_since(*seen) < LEARNED_AGE => Some(*port),
            Some(_) => {
                self.learned.remove(dst);
                None
            }
            None => None,
        }
    }

    /// Handle one frame that arrived from the socket `from`.
    pub fn ingress(
        &mut self,
        from: &Path,
        bytes: &[u8],
        now: Instant,
        send: &mut dyn FnMut(&Path, &[u8]) -> SendOutcome,
    ) {
        let Some(&src_port) = self.by_socket.get(from) else {
            self.unknown_senders += 1;
            return;
        };
        let Some(eth) = Eth::parse(bytes) else {
            self.count_tx_drop(&src_port);
            return;
        };
        // Anti-spoofing: no group source, no other port's allocated MAC.
        if frame::is_group(&eth.src) || (eth.src != src_port && self.ports.contains_key(&eth.src)) {
            self.count_tx_drop(&src_port);
            return;
        }
        let dhcp_network = self.ports.get(&src_port).is_some_and(|p| p.cfg.dhcp);
        let udp_ports = eth
            .ip()
            .filter(|ip| ip.proto == PROTO_UDP)
            .and_then(|ip| ip.ports());
        if dhcp_network
            && udp_ports.is_some_and(|(s, d)| s == dhcp::SERVER_PORT && d == dhcp::CLIENT_PORT)
        {
            // Only Nimbus serves DHCP on a DHCP network.
            self.count_tx_drop(&src_port);
            return;
        }
        if let Some(p) = self.ports.get_mut(&src_port) {
            p.counters.tx_packets += 1;
            p.counters.tx_bytes += bytes.len() as u64;
            p.conntrack.outbound(&eth, now);
        }
        if eth.src != src_port
            && (self.learned.contains_key(&eth.src) || self.learned.len() < MAX_LEARNED)
        {
            self.learned.insert(eth.src, (src_port, now));
        }
        if dhcp_network && udp_ports.is_some_and(|(_, d)| d == dhcp::SERVER_PORT) {
            self.serve_dhcp(src_port, &eth, send);
            return;
        }
        if eth.dst == self.mac {
            // Addressed to the switch itself and not DHCP: nothing answers it.
            return;
        }
        let targets: Vec<Mac> = if frame::is_group(&eth.dst) {
            self.ports
                .keys()
                .filter(|m| **m != src_port)
                .copied()
                .collect()
        } else {
            match self.port_of(&eth.dst, now) {
                Some(p) if p == src_port => Vec::new(),
                Some(p) => vec![p],
                None => self
                    .ports
                    .keys()
                    .filter(|m| **m != src_port)
                    .copied()
                    .collect(),
            }
        };
        for t in targets {
            self.deliver(&t, &eth, bytes, now, send);
        }
    }

    fn count_tx_drop(&mut self, port: &Mac) {
        if let Some(p) = self.ports.get_mut(port) {
            p.counters.tx_drop += 1;
        }
    }

    /// One copy of a frame to one port, through that port's firewall.
    fn deliver(
        &mut self,
        port: &Mac,
        eth: &Eth<'_>,
        bytes: &[u8],
        now: Instant,
        send: &mut dyn FnMut(&Path, &[u8]) -> SendOutcome,
    ) {
        let Some(p) = self.ports.get_mut(port) else {
            return;
        };
        let verdict = p.conntrack.inbound(p.cfg.firewall, eth, now);
        if !verdict.allowed() {
            p.counters.rx_drop += 1;
            return;
        }
        p.transmit(bytes, send);
    }

    /// Answer a client's DHCP message with the port's allocation. A request naming another
    /// NIC's hardware address, or from a NIC without a lease, is ignored.
    fn serve_dhcp(
        &mut self,
        port: Mac,
        eth: &Eth<'_>,
        send: &mut dyn FnMut(&Path, &[u8]) -> SendOutcome,
    ) {
        let switch_mac = self.mac;
        let Some(p) = self.ports.get_mut(&port) else {
            return;
        };
        let Some(lease) = p.cfg.lease else {
            return;
        };
        let Some(payload) = eth.ip().and_then(|ip| ip.udp_payload()) else {
            return;
        };
        let Ok(req) = dhcp::Message::parse(payload) else {
            return;
        };
        if req.chaddr != port {
            return;
        }
        let Some(reply) = dhcp::respond(&req, &lease) else {
            return;
        };
        let (dst_mac, dst_ip) = dhcp::destination(&req, &reply);
        let bytes = frame::udp4_frame(
            switch_mac,
            dst_mac,
            lease.server_ip(),
            dst_ip,
            dhcp::SERVER_PORT,
            dhcp::CLIENT_PORT,
            &reply.encode(),
        );
        // The switch's own answer is not subject to the port's firewall.
        p.transmit(&bytes, send);
    }
}

#[cfg(test)]
mod tests {
    use super::super::dhcp::{
        Message, MessageType, OPT_MESSAGE_TYPE, OPT_REQUESTED_IP, OPT_SERVER_ID,
    };
    use super::super::frame::build::*;
    use super::super::frame::{BROADCAST, PROTO_ICMP};
    use super::*;
    use std::net::{IpAddr, Ipv4Addr};

    const SWITCH: Mac = [0x02, 0, 0, 0, 0, 1];

    fn sock(n: u8) -> PathBuf {
        PathBuf::from(format!("/run/test/nic{n}.sock"))
    }

    fn cfg(n: u8, firewall: Profile) -> PortConfig {
        PortConfig {
            mac: mac(n),
            socket: sock(n),
            dhcp: true,
            lease: Some(Lease {
                ip: Ipv4Addr::new(10, 0, 0, 10 + n),
                prefix: 24,
                gateway: Some(Ipv4Addr::new(10, 0, 0, 1)),
                lease_secs: 3600,
            }),
            firewall,
        }
    }

    /// A switch with ports 1..=n, all DISABLED.
    fn switch(n: u8) -> Switch {
        let mut s = Switch::new(SWITCH);
        for i in 1..=n {
            s.plug(cfg(i, Profile::Disabled));
        }
        s
    }

    /// Send `frame` in from port `from`; answers the sockets it was delivered to.
    fn push(s: &mut Switch, from: u8, frame: &[u8]) -> Vec<(PathBuf, Vec<u8>)> {
        push_at(s, from, frame, Instant::now())
    }

    fn push_at(s: &mut Switch, from: u8, frame: &[u8], now: Instant) -> Vec<(PathBuf, Vec<u8>)> {
        let mut out = Vec::new();
        s.ingress(&sock(from), frame, now, &mut |p, b| {
            out.push((p.to_owned(), b.to_vec()));
            SendOutcome::Sent
        });
        out
    }

    fn to(out: &[(PathBuf, Vec<u8>)]) -> Vec<PathBuf> {
        let mut v: Vec<PathBuf> = out.iter().map(|(p, _)| p.clone()).collect();
        v.sort();
        v
    }

    fn ping(from: u8, to_mac: Mac, to_ip: &str) -> Vec<u8> {
        v4(
            mac(from),
            to_mac,
            &format!("10.0.0.{}", 10 + from),
            to_ip,
            PROTO_ICMP,
            &icmp(8, 1, &[]),
        )
    }

    #[test]
    fn forwarding_table() {
        // (name, sender, frame, expected receivers)
        let stranger: Mac = [0x52, 0x54, 0, 9, 9, 9];
        let cases: Vec<(&str, u8, Vec<u8>, Vec<u8>)> = vec![
            (
                "broadcast floods to every other port",
                1,
                arp(mac(1)),
                vec![2, 3],
            ),
            (
                "multicast floods",
                2,
                v6(
                    mac(2),
                    [0x33, 0x33, 0, 0, 0, 1],
                    "fe80::2",
                    "ff02::1",
                    58,
                    &icmp(135, 0, &[]),
                ),
                vec![1, 3],
            ),
            (
                "unicast to a port's MAC goes to that port only",
                1,
                ping(1, mac(3), "10.0.0.13"),
                vec![3],
            ),
            (
                "unicast to an unknown MAC floods",
                1,
                ping(1, stranger, "10.0.0.99"),
                vec![2, 3],
            ),
            (
                "a frame to yourself goes nowhere",
                2,
                ping(2, mac(2), "10.0.0.12"),
                vec![],
            ),
            (
                "frames to the switch's MAC are consumed",
                1,
                ping(1, SWITCH, "10.0.0.1"),
                vec![],
            ),
            (
                "a spoofed source MAC is dropped",
                1,
                v4(
                    mac(2),
                    mac(3),
                    "10.0.0.12",
                    "10.0.0.13",
                    PROTO_ICMP,
                    &icmp(8, 1, &[]),
                ),
                vec![],
            ),
            (
                "a group source MAC is dropped",
                1,
                eth(BROADCAST, mac(2), 0x0800, &[0u8; 40]),
                vec![],
            ),
            ("a runt frame is dropped", 1, vec![1, 2, 3], vec![]),
        ];
        for (name, from, frame, want) in cases {
            let mut s = switch(3);
            let got = to(&push(&mut s, from, &frame));
            let want: Vec<PathBuf> = want.into_iter().map(sock).collect();
            assert_eq!(got, want, "{name}");
        }
    }

    #[test]
    fn learns_macs_behind_ports_and_ages_them() {
        let mut s = switch(3);
        let t0 = Instant::now();
        // Port 3 sends with a second MAC (e.g. a bridge inside the guest).
        let inner: Mac = [0x52, 0x54, 0, 1, 2, 3];
        push_at(&mut s, 3, &eth(inner, BROADCAST, 0x0806, &[0u8; 28]), t0);
        let f = eth(
            mac(1),
            inner,
            0x0800,
            &ipv4("10.0.0.11", "10.0.0.50", PROTO_ICMP, &icmp(8, 1, &[])),
        );
        assert_eq!(to(&push_at(&mut s, 1, &f, t0)), vec![sock(3)], "learned");
        // It moves when it shows up behind another port.
        push_at(&mut s, 2, &eth(inner, BROADCAST, 0x0806, &[0u8; 28]), t0);
        assert_eq!(to(&push_at(&mut s, 1, &f, t0)), vec![sock(2)], "moved");
        // After the age limit it is unknown again and floods.
        let later = t0 + LEARNED_AGE + Duration::from_secs(1);
        assert_eq!(
            to(&push_at(&mut s, 1, &f, later)),
            vec![sock(2), sock(3)],
            "aged out"
        );
        // Unplugging a port forgets what was learned behind it.
        push_at(&mut s, 3, &eth(inner, BROADCAST, 0x0806, &[0u8; 28]), later);
        s.unplug(&mac(3));
        assert_eq!(to(&push_at(&mut s, 1, &f, later)), vec![sock(2)]);
    }

    #[test]
    fn networks_are_isolated_and_strangers_cannot_inject() {
        let mut a = switch(2);
        let mut b = Switch::new([0x02, 0, 0, 0, 0, 2]);
        b.plug(cfg(7, Profile::Disabled));
        // Port 7 belongs to network B: its socket is a stranger to A.
        let mut delivered = 0;
        a.ingress(&sock(7), &arp(mac(7)), Instant::now(), &mut |_, _| {
            delivered += 1;
            SendOutcome::Sent
        });
        assert_eq!(delivered, 0);
        assert_eq!(a.unknown_senders, 1);
        // A broadcast on A reaches A's ports only.
        assert_eq!(to(&push(&mut a, 1, &arp(mac(1)))), vec![sock(2)]);
        assert_eq!(to(&push(&mut b, 7, &arp(mac(7)))), Vec::<PathBuf>::new());
    }

    #[test]
    fn counters_count_the_guests_view() {
        let mut s = switch(2);
        let f = ping(1, mac(2), "10.0.0.12");
        push(&mut s, 1, &f);
        push(&mut s, 1, &f);
        let c1 = s.counters(&mac(1)).unwrap();
        let c2 = s.counters(&mac(2)).unwrap();
        assert_eq!(
            (c1.tx_packets, c1.tx_bytes, c1.rx_packets),
            (2, 2 * f.len() as u64, 0)
        );
        assert_eq!(
            (c2.rx_packets, c2.rx_bytes, c2.tx_packets),
            (2, 2 * f.len() as u64, 0)
        );
        // An absent receiver is not counted; a firewall drop is rx_drop.
        s.ingress(&sock(1), &f, Instant::now(), &mut |_, _| {
            SendOutcome::Absent
        });
        s.plug(cfg(2, Profile::Protected));
        push(&mut s, 1, &f);
        let c2 = s.counters(&mac(2)).unwrap();
        assert_eq!(
            (c2.rx_packets, c2.rx_drop),
            (2, 1),
            "re-plugging keeps the counters"
        );
        // Spoofed frames count as tx_drop of the sender.
        push(&mut s, 1, &eth(mac(2), BROADCAST, 0x0806, &[0u8; 28]));
        assert_eq!(s.counters(&mac(1)).unwrap().tx_drop, 1);
    }

    #[test]
    fn firewall_profiles_apply_per_receiving_port() {
        let mut s = Switch::new(SWITCH);
        s.plug(cfg(1, Profile::Disabled));
        s.plug(cfg(2, Profile::Protected));
        s.plug(cfg(3, Profile::Enabled));
        // Port 1 pings 2 and 3: PROTECTED drops the echo request, ENABLED lets it in.
        assert_eq!(
            to(&push(&mut s, 1, &ping(1, mac(2), "10.0.0.12"))),
            Vec::<PathBuf>::new()
        );
        assert_eq!(
            to(&push(&mut s, 1, &ping(1, mac(3), "10.0.0.13"))),
            vec![sock(3)]
        );
        // Port 2 pings 1: the request goes out, the reply comes back in.
        assert_eq!(
            to(&push(&mut s, 2, &ping(2, mac(1), "10.0.0.11"))),
            vec![sock(1)]
        );
        let pong = v4(
            mac(1),
            mac(2),
            "10.0.0.11",
            "10.0.0.12",
            PROTO_ICMP,
            &icmp(0, 1, &[]),
        );
        assert_eq!(to(&push(&mut s, 1, &pong)), vec![sock(2)]);
        // A broadcast ARP reaches everyone; a flooded ping only the ports that accept it.
        assert_eq!(to(&push(&mut s, 1, &arp(mac(1)))), vec![sock(2), sock(3)]);
        let flooded = v4(
            mac(1),
            BROADCAST,
            "10.0.0.11",
            "10.0.0.255",
            PROTO_ICMP,
            &icmp(8, 1, &[]),
        );
        assert_eq!(to(&push(&mut s, 1, &flooded)), vec![sock(3)]);
        // Switching port 2 to DISABLED takes effect at once.
        s.plug(cfg(2, Profile::Disabled));
        assert_eq!(
            to(&push(&mut s, 1, &ping(1, mac(2), "10.0.0.12"))),
            vec![sock(2)]
        );
    }

    fn dhcp_frame(from: u8, chaddr: Mac, typ: MessageType, extra: Vec<(u8, Vec<u8>)>) -> Vec<u8> {
        let mut options = vec![(OPT_MESSAGE_TYPE, vec![typ as u8])];
        options.extend(extra);
        let m = Message {
            op: 1,
            xid: 42,
            secs: 0,
            flags: 0x8000,
            ciaddr: Ipv4Addr::UNSPECIFIED,
            yiaddr: Ipv4Addr::UNSPECIFIED,
            siaddr: Ipv4Addr::UNSPECIFIED,
            giaddr: Ipv4Addr::UNSPECIFIED,
            chaddr,
            options,
        };
        frame::udp4_frame(
            mac(from),
            BROADCAST,
            Ipv4Addr::UNSPECIFIED,
            Ipv4Addr::BROADCAST,
            68,
            67,
            &m.encode(),
        )
    }

    /// The address a DHCP reply was sent to.
    fn ip_dst(bytes: &[u8]) -> Option<IpAddr> {
        Some(Eth::parse(bytes)?.ip()?.dst)
    }

    fn dhcp_reply(out: &[(PathBuf, Vec<u8>)]) -> Message {
        assert_eq!(out.len(), 1, "exactly one reply");
        let e = Eth::parse(&out[0].1).unwrap();
        assert_eq!(e.src, SWITCH);
        Message::parse(e.ip().unwrap().udp_payload().unwrap()).unwrap()
    }

    #[test]
    fn dhcp_is_served_by_the_switch() {
        let mut s = switch(2);
        s.plug(cfg(2, Profile::Protected));
        // DISCOVER from port 2 (PROTECTED: the switch's answer is not filtered).
        let out = push(
            &mut s,
            2,
            &dhcp_frame(2, mac(2), MessageType::Discover, vec![]),
        );
        assert_eq!(
            to(&out),
            vec![sock(2)],
            "answered to the asker only, not flooded"
        );
        assert_eq!(ip_dst(&out[0].1), Some(IpAddr::V4(Ipv4Addr::BROADCAST)));
        let offer = dhcp_reply(&out);
        assert_eq!(offer.message_type(), Some(MessageType::Offer));
        assert_eq!(offer.yiaddr, Ipv4Addr::new(10, 0, 0, 12));
        let req = dhcp_frame(
            2,
            mac(2),
            MessageType::Request,
            vec![
                (OPT_SERVER_ID, vec![10, 0, 0, 1]),
                (OPT_REQUESTED_IP, vec![10, 0, 0, 12]),
            ],
        );
        assert_eq!(
            dhcp_reply(&push(&mut s, 2, &req)).message_type(),
            Some(MessageType::Ack)
        );
        // A request naming another NIC's MAC, and a NIC without a lease: silence.
        assert!(
            push(
                &mut s,
                1,
                &dhcp_frame(1, mac(2), MessageType::Discover, vec![])
            )
            .is_empty()
        );
        let mut bare = cfg(1, Profile::Disabled);
        bare.lease = None;
        s.plug(bare);
        assert!(
            push(
                &mut s,
                1,
                &dhcp_frame(1, mac(1), MessageType::Discover, vec![])
            )
            .is_empty()
        );
        // A guest answering as a DHCP server is dropped on a DHCP network.
        let rogue = frame::udp4_frame(
            mac(1),
            BROADCAST,
            Ipv4Addr::new(10, 0, 0, 11),
            Ipv4Addr::BROADCAST,
            67,
            68,
            &[0u8; 300],
        );
        assert!(push(&mut s, 1, &rogue).is_empty());
        assert_eq!(s.counters(&mac(1)).unwrap().tx_drop, 1);
        // Without DHCP on the network, DHCP is ordinary traffic and is flooded.
        let mut plain = Switch::new(SWITCH);
        for i in 1..=3 {
            let mut c = cfg(i, Profile::Disabled);
            c.dhcp = false;
            c.lease = None;
            plain.plug(c);
        }
        let out = push(
            &mut plain,
            1,
            &dhcp_frame(1, mac(1), MessageType::Discover, vec![]),
        );
        assert_eq!(to(&out), vec![sock(2), sock(3)]);
        assert_eq!(
            to(&push(&mut plain, 2, &rogue_from(2))),
            vec![sock(1), sock(3)]
        );
    }

    fn rogue_from(n: u8) -> Vec<u8> {
        frame::udp4_frame(
            mac(n),
            BROADCAST,
            Ipv4Addr::new(10, 0, 0, 12),
            Ipv4Addr::BROADCAST,
            67,
            68,
            &[0u8; 300],
        )
    }

    #[test]
    fn a_busy_receiver_gets_its_frames_later_in_order() {
        let mut s = switch(2);
        let frames: Vec<Vec<u8>> = (0..5u8)
            .map(|i| {
                v4(
                    mac(1),
                    mac(2),
                    "10.0.0.11",
                    "10.0.0.12",
                    PROTO_ICMP,
                    &icmp(8, 1, &[i]),
                )
            })
            .collect();
        // Port 2's queue is full for the first three frames; the rest queue behind them.
        let mut full = 3;
        let mut sent = Vec::new();
        for f in &frames {
            s.ingress(&sock(1), f, Instant::now(), &mut |_, b| {
                if full > 0 {
                    full -= 1;
                    SendOutcome::Full
                } else {
                    sent.push(b.to_vec());
                    SendOutcome::Sent
                }
            });
        }
        assert!(sent.is_empty(), "nothing overtakes a waiting frame");
        assert_eq!(s.counters(&mac(2)).unwrap().rx_packets, 0);
        // Flushing delivers all of them, oldest first.
        let waiting = s.flush(&mut |_, b| {
            sent.push(b.to_vec());
            SendOutcome::Sent
        });
        assert!(!waiting);
        assert_eq!(sent, frames);
        let c = s.counters(&mac(2)).unwrap();
        assert_eq!((c.rx_packets, c.rx_drop), (5, 0));
        // A backlog is bounded: beyond MAX_BACKLOG_BYTES frames are dropped and counted.
        let big = eth(mac(1), mac(2), 0x0800, &vec![0u8; 60_000]);
        for _ in 0..(MAX_BACKLOG_BYTES / big.len() + 3) {
            s.ingress(&sock(1), &big, Instant::now(), &mut |_, _| {
                SendOutcome::Full
            });
        }
        assert!(s.counters(&mac(2)).unwrap().rx_drop >= 2);
        assert!(s.flush(&mut |_, _| SendOutcome::Full), "still waiting");
        // A receiver that went away loses its backlog.
        assert!(!s.flush(&mut |_, _| SendOutcome::Absent));
        assert!(!s.flush(&mut |_, _| panic!("nothing left to send")));
    }

    #[test]
    fn replugging_a_socket_under_another_mac_replaces_the_port() {
        let mut s = switch(2);
        let mut moved = cfg(5, Profile::Disabled);
        moved.socket = sock(2);
        s.plug(moved);
        assert!(s.counters(&mac(2)).is_none());
        let mut macs = s.port_macs();
        macs.sort();
        assert_eq!(macs, vec![mac(1), mac(5)]);
        assert!(s.unplug(&mac(5)) && !s.unplug(&mac(5)));
        assert!(!s.is_empty());
        assert!(s.unplug(&mac(1)) && s.is_empty());
    }
}
