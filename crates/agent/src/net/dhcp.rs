//! The server side of DHCPv4 (RFC 2131, options from RFC 2132), small enough to audit:
//! a parser and an encoder for BOOTP messages with options, and [`respond`], a pure
//! function from a client's message and the NIC's allocation to the reply.
//!
//! Nimbus allocates every NIC's address when the NIC is created, so the "server" has no
//! pool and no lease database: a client is offered exactly its allocation, a request for
//! anything else is refused (DHCPNAK), and a client the switch does not know is ignored.
//! Leases never need to be remembered, which is why the server survives agent restarts
//! without state.
//!
//! Replies carry: message type (53), server identifier (54), lease time (51), renewal and
//! rebinding times (58, 59: 1/2 and 7/8 of the lease), subnet mask (1), broadcast address
//! (28) and, when the network has one, the router (3). DHCPINFORM is answered without a
//! lease time, as the RFC requires; DHCPRELEASE and DHCPDECLINE need no answer.

use super::frame::{BROADCAST, Mac};
use std::net::Ipv4Addr;

pub const SERVER_PORT: u16 = 67;
pub const CLIENT_PORT: u16 = 68;
const MAGIC: [u8; 4] = [99, 130, 83, 99];
/// The fixed BOOTP header before the magic cookie.
const HEADER: usize = 236;
/// BOOTP messages are at least 300 bytes; some clients drop shorter ones.
const MIN_LEN: usize = 300;
const FLAG_BROADCAST: u16 = 0x8000;

pub const OPT_SUBNET_MASK: u8 = 1;
pub const OPT_ROUTER: u8 = 3;
pub const OPT_BROADCAST: u8 = 28;
pub const OPT_REQUESTED_IP: u8 = 50;
pub const OPT_LEASE_TIME: u8 = 51;
pub const OPT_MESSAGE_TYPE: u8 = 53;
pub const OPT_SERVER_ID: u8 = 54;
pub const OPT_MESSAGE: u8 = 56;
pub const OPT_RENEWAL: u8 = 58;
pub const OPT_REBINDING: u8 = 59;

/// DHCP message types (option 53).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MessageType {
    Discover = 1,
    Offer = 2,
    Request = 3,
    Decline = 4,
    Ack = 5,
    Nak = 6,
    Release = 7,
    Inform = 8,
}

impl MessageType {
    fn from_u8(v: u8) -> Option<Self> {
        Some(match v {
            1 => Self::Discover,
            2 => Self::Offer,
            3 => Self::Request,
            4 => Self::Decline,
            5 => Self::Ack,
            6 => Self::Nak,
            7 => Self::Release,
            8 => Self::Inform,
            _ => return None,
        })
    }
}

/// Why a datagram is not a usable DHCP message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ParseError {
    TooShort,
    BadMagicCookie,
    /// An option runs past the end of the message.
    TruncatedOption,
    /// Not Ethernet (htype 1, hlen 6).
    NotEthernet,
}

/// A BOOTP/DHCP message. `options` holds every option except pad and end, in order; a code
/// that appears more than once has its values concatenated (RFC 3396).
#[derive(Clone, Debug, PartialEq)]
pub struct Message {
    /// 1 = BOOTREQUEST (client), 2 = BOOTREPLY (server).
    pub op: u8,
    pub xid: u32,
    pub secs: u16,
    pub flags: u16,
    pub ciaddr: Ipv4Addr,
    pub yiaddr: Ipv4Addr,
    pub siaddr: Ipv4Addr,
    pub giaddr: Ipv4Addr,
    pub chaddr: Mac,
    pub options: Vec<(u8, Vec<u8>)>,
}

fn ip_at(b: &[u8], at: usize) -> Ipv4Addr {
    Ipv4Addr::new(b[at], b[at + 1], b[at + 2], b[at + 3])
}

fn ip_of(v: &[u8]) -> Option<Ipv4Addr> {
    (v.len() == 4).then(|| ip_at(v, 0))
}

impl Message {
    pub fn parse(b: &[u8]) -> Result<Message, ParseError> {
        if b.len() < HEADER + 4 {
            return Err(ParseError::TooShort);
        }
        if b[HEADER..HEADER + 4] != MAGIC {
            return Err(ParseError::BadMagicCookie);
        }
        if b[1] != 1 || b[2] != 6 {
            return Err(ParseError::NotEthernet);
        }
        let mut chaddr = [0u8; 6];
        chaddr.copy_from_slice(&b[28..34]);
        let mut options: Vec<(u8, Vec<u8>)> = Vec::new();
        let mut i = HEADER + 4;
        while i < b.len() {
            let code = b[i];
            match code {
                0 => i += 1,
                255 => break,
                _ => {
                    let len = usize::from(*b.get(i + 1).ok_or(ParseError::TruncatedOption)?);
                    let value = b
                        .get(i + 2..i + 2 + len)
                        .ok_or(ParseError::TruncatedOption)?;
                    match options.iter_mut().find(|(c, _)| *c == code) {
                        Some((_, v)) => v.extend_from_slice(value),
                        None => options.push((code, value.to_vec())),
                    }
                    i += 2 + len;
                }
            }
        }
        Ok(Message {
            op: b[0],
            xid: u32::from_be_bytes([b[4], b[5], b[6], b[7]]),
            secs: u16::from_be_bytes([b[8], b[9]]),
            flags: u16::from_be_bytes([b[10], b[11]]),
            ciaddr: ip_at(b, 12),
            yiaddr: ip_at(b, 16),
            siaddr: ip_at(b, 20),
            giaddr: ip_at(b, 24),
            chaddr,
            options,
        })
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut b = vec![0u8; HEADER];
        b[0] = self.op;
        b[1] = 1;
        b[2] = 6;
        b[4..8].copy_from_slice(&self.xid.to_be_bytes());
        b[8..10].copy_from_slice(&self.secs.to_be_bytes());
        b[10..12].copy_from_slice(&self.flags.to_be_bytes());
        b[12..16].copy_from_slice(&self.ciaddr.octets());
        b[16..20].copy_from_slice(&self.yiaddr.octets());
        b[20..24].copy_from_slice(&self.siaddr.octets());
        b[24..28].copy_from_slice(&self.giaddr.octets());
        b[28..34].copy_from_slice(&self.chaddr);
        b.extend_from_slice(&MAGIC);
        for (code, value) in &self.options {
            // Values longer than 255 bytes are split into several options (RFC 3396).
            for chunk in value.chunks(255) {
                b.push(*code);
                b.push(chunk.len() as u8);
                b.extend_from_slice(chunk);
            }
        }
        b.push(255);
        if b.len() < MIN_LEN {
            b.resize(MIN_LEN, 0);
        }
        b
    }

    pub fn option(&self, code: u8) -> Option<&[u8]> {
        self.options
            .iter()
            .find(|(c, _)| *c == code)
            .map(|(_, v)| v.as_slice())
    }

    pub fn message_type(&self) -> Option<MessageType> {
        match self.option(OPT_MESSAGE_TYPE)? {
            [t] => MessageType::from_u8(*t),
            _ => None,
        }
    }

    pub fn requested_ip(&self) -> Option<Ipv4Addr> {
        ip_of(self.option(OPT_REQUESTED_IP)?)
    }

    pub fn server_id(&self) -> Option<Ipv4Addr> {
        ip_of(self.option(OPT_SERVER_ID)?)
    }
}

/// What a NIC is given.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Lease {
    pub ip: Ipv4Addr,
    pub prefix: u8,
    pub gateway: Option<Ipv4Addr>,
    pub lease_secs: u32,
}

impl Lease {
    pub fn mask(&self) -> Ipv4Addr {
        Ipv4Addr::from(match self.prefix.min(32) {
            0 => 0,
            p => u32::MAX << (32 - u32::from(p)),
        })
    }

    pub fn broadcast(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.ip) | !u32::from(self.mask()))
    }

    /// The address the server speaks from (option 54): the network's gateway when it has
    /// one, else the subnet's last host address other than the client's, else (tiny /31
    /// and /32 subnets) a link-local address. Nothing answers ARP for it, so a client's
    /// unicast renewal goes unanswered and it rebinds by broadcast at T2, which works.
    pub fn server_ip(&self) -> Ipv4Addr {
        if let Some(g) = self.gateway {
            return g;
        }
        if self.prefix <= 30 {
            let last = u32::from(self.broadcast()) - 1;
            let pick = if last == u32::from(self.ip) {
                last - 1
            } else {
                last
            };
            return Ipv4Addr::from(pick);
        }
        Ipv4Addr::new(169, 254, 0, 1)
    }
}

/// The reply to a client's message, or `None` when the server must stay silent: not a
/// client request, not addressed to this server, or a type that needs no answer.
/// `lease` is the allocation of the NIC named by `req.chaddr`; the caller has checked that
/// the request came from that NIC.
pub fn respond(req: &Message, lease: &Lease) -> Option<Message> {
    if req.op != 1 {
        return None;
    }
    let server = lease.server_ip();
    let t = req.message_type()?;
    let ack = |typ: MessageType, yiaddr: Ipv4Addr| {
        let mut options = vec![(OPT_MESSAGE_TYPE, vec![typ as u8])];
        options.push((OPT_SERVER_ID, server.octets().to_vec()));
        if typ != MessageType::Ack || yiaddr != Ipv4Addr::UNSPECIFIED {
            let l = lease.lease_secs;
            options.push((OPT_LEASE_TIME, l.to_be_bytes().to_vec()));
            options.push((OPT_RENEWAL, (l / 2).to_be_bytes().to_vec()));
            options.push((OPT_REBINDING, (l / 8 * 7).to_be_bytes().to_vec()));
        }
        options.push((OPT_SUBNET_MASK, lease.mask().octets().to_vec()));
        options.push((OPT_BROADCAST, lease.broadcast().octets().to_vec()));
        if let Some(g) = lease.gateway {
            options.push((OPT_ROUTER, g.octets().to_vec()));
        }
        Some(reply(req, typ, yiaddr, options))
    };
    let nak = || {
        let options = vec![
            (OPT_MESSAGE_TYPE, vec![MessageType::Nak as u8]),
            (OPT_SERVER_ID, server.octets().to_vec()),
            (
                OPT_MESSAGE,
                b"address not allocated to this client".to_vec(),
            ),
        ];
        Some(reply(req, MessageType::Nak, Ipv4Addr::UNSPECIFIED, options))
    };
    match t {
        MessageType::Discover => ack(MessageType::Offer, lease.ip),
        MessageType::Request => {
            // SELECTING: the client names the server it chose; another server's offer
            // is none of our business.
            if let Some(sid) = req.server_id()
                && sid != server
            {
                return None;
            }
            // SELECTING and INIT-REBOOT carry option 50; RENEWING and REBINDING put the
            // address in ciaddr.
            let wanted = req.requested_ip().unwrap_or(req.ciaddr);
            if wanted == lease.ip {
                ack(MessageType::Ack, lease.ip)
            } else {
                nak()
            }
        }
        MessageType::Inform => ack(MessageType::Ack, Ipv4Addr::UNSPECIFIED),
        _ => None,
    }
}

fn reply(
    req: &Message,
    typ: MessageType,
    yiaddr: Ipv4Addr,
    options: Vec<(u8, Vec<u8>)>,
) -> Message {
    Message {
        op: 2,
        xid: req.xid,
        secs: 0,
        flags: req.flags,
        // A NAK never echoes ciaddr; the other replies do (RFC 2131 table 3).
        ciaddr: if typ == MessageType::Nak {
            Ipv4Addr::UNSPECIFIED
        } else {
            req.ciaddr
        },
        yiaddr,
        siaddr: Ipv4Addr::UNSPECIFIED,
        giaddr: req.giaddr,
        chaddr: req.chaddr,
        options,
    }
}

/// Where a reply goes (RFC 2131 §4.1, no relay agents on a Nimbus segment): NAKs are
/// broadcast; a client that has an address (ciaddr) gets unicast to it; a client that asked
/// for broadcast gets broadcast; otherwise unicast to the offered address at its MAC.
pub fn destination(req: &Message, reply: &Message) -> (Mac, Ipv4Addr) {
    if reply.message_type() == Some(MessageType::Nak) {
        (BROADCAST, Ipv4Addr::BROADCAST)
    } else if req.ciaddr != Ipv4Addr::UNSPECIFIED {
        (req.chaddr, req.ciaddr)
    } else if req.flags & FLAG_BROADCAST != 0 {
        (BROADCAST, Ipv4Addr::BROADCAST)
    } else {
        (req.chaddr, reply.yiaddr)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CLIENT: Mac = [0xfa, 0x16, 0x3e, 0, 0, 7];

    fn lease() -> Lease {
        Lease {
            ip: Ipv4Addr::new(10, 1, 0, 11),
            prefix: 24,
            gateway: Some(Ipv4Addr::new(10, 1, 0, 1)),
            lease_secs: 86_400,
        }
    }

    fn request(typ: MessageType, extra: Vec<(u8, Vec<u8>)>) -> Message {
        let mut options = vec![(OPT_MESSAGE_TYPE, vec![typ as u8])];
        options.extend(extra);
        Message {
            op: 1,
            xid: 0xdead_beef,
            secs: 3,
            flags: 0,
            ciaddr: Ipv4Addr::UNSPECIFIED,
            yiaddr: Ipv4Addr::UNSPECIFIED,
            siaddr: Ipv4Addr::UNSPECIFIED,
            giaddr: Ipv4Addr::UNSPECIFIED,
            chaddr: CLIENT,
            options,
        }
    }

    #[test]
    fn encode_then_parse_round_trips() {
        let m = request(
            MessageType::Request,
            vec![
                (OPT_REQUESTED_IP, vec![10, 1, 0, 11]),
                (55, vec![1, 3, 6, 15]),
                (OPT_MESSAGE, vec![b'x'; 300]),
            ],
        );
        let bytes = m.encode();
        assert!(bytes.len() >= MIN_LEN);
        let back = Message::parse(&bytes).unwrap();
        assert_eq!(back, m, "a 300-byte option is split and concatenated back");
        assert_eq!(back.message_type(), Some(MessageType::Request));
        assert_eq!(back.requested_ip(), Some(Ipv4Addr::new(10, 1, 0, 11)));
    }

    #[test]
    fn parser_rejects_malformed_messages_table() {
        let good = request(MessageType::Discover, vec![]).encode();
        let mut bad_cookie = good.clone();
        bad_cookie[HEADER] = 0;
        let mut not_ether = good.clone();
        not_ether[1] = 6;
        let mut truncated_option = good[..HEADER + 4].to_vec();
        truncated_option.extend_from_slice(&[OPT_MESSAGE_TYPE, 5, 1]);
        let mut no_end = good[..HEADER + 4].to_vec();
        no_end.extend_from_slice(&[0, 0, OPT_MESSAGE_TYPE, 1, 1]);
        type Case = (
            &'static str,
            Vec<u8>,
            Result<Option<MessageType>, ParseError>,
        );
        let cases: Vec<Case> = vec![
            ("good", good.clone(), Ok(Some(MessageType::Discover))),
            ("empty", vec![], Err(ParseError::TooShort)),
            (
                "header only",
                good[..HEADER].to_vec(),
                Err(ParseError::TooShort),
            ),
            ("bad cookie", bad_cookie, Err(ParseError::BadMagicCookie)),
            ("token ring", not_ether, Err(ParseError::NotEthernet)),
            (
                "option past end",
                truncated_option,
                Err(ParseError::TruncatedOption),
            ),
            (
                "pads, no end option",
                no_end,
                Ok(Some(MessageType::Discover)),
            ),
        ];
        for (name, bytes, want) in cases {
            let got = Message::parse(&bytes).map(|m| m.message_type());
            assert_eq!(got, want, "{name}");
        }
        // No prefix of a valid message panics the parser.
        for n in 0..good.len() {
            let _ = Message::parse(&good[..n]);
        }
    }

    #[test]
    fn server_answers_table() {
        let l = lease();
        let ours = (OPT_SERVER_ID, vec![10, 1, 0, 1]);
        let other_server = (OPT_SERVER_ID, vec![10, 1, 0, 254]);
        let want = |ip: [u8; 4]| (OPT_REQUESTED_IP, ip.to_vec());
        let mut renewing = request(MessageType::Request, vec![]);
        renewing.ciaddr = l.ip;
        let mut renewing_wrong = renewing.clone();
        renewing_wrong.ciaddr = Ipv4Addr::new(10, 1, 0, 99);
        let mut reply_op = request(MessageType::Discover, vec![]);
        reply_op.op = 2;
        let cases: Vec<(&str, Message, Option<MessageType>)> = vec![
            (
                "discover → offer",
                request(MessageType::Discover, vec![]),
                Some(MessageType::Offer),
            ),
            (
                "selecting our offer → ack",
                request(
                    MessageType::Request,
                    vec![ours.clone(), want([10, 1, 0, 11])],
                ),
                Some(MessageType::Ack),
            ),
            (
                "selecting another server → silence",
                request(
                    MessageType::Request,
                    vec![other_server, want([10, 1, 0, 11])],
                ),
                None,
            ),
            (
                "init-reboot with the right address → ack",
                request(MessageType::Request, vec![want([10, 1, 0, 11])]),
                Some(MessageType::Ack),
            ),
            (
                "init-reboot with a stale address → nak",
                request(MessageType::Request, vec![want([192, 168, 1, 5])]),
                Some(MessageType::Nak),
            ),
            ("renewing → ack", renewing, Some(MessageType::Ack)),
            (
                "renewing someone else's address → nak",
                renewing_wrong,
                Some(MessageType::Nak),
            ),
            (
                "inform → ack",
                request(MessageType::Inform, vec![]),
                Some(MessageType::Ack),
            ),
            (
                "release → silence",
                request(MessageType::Release, vec![]),
                None,
            ),
            (
                "decline → silence",
                request(MessageType::Decline, vec![]),
                None,
            ),
            ("a server's own reply → silence", reply_op, None),
            (
                "no message type → silence",
                {
                    let mut m = request(MessageType::Discover, vec![]);
                    m.options.clear();
                    m
                },
                None,
            ),
        ];
        for (name, req, want) in cases {
            let got = respond(&req, &l);
            assert_eq!(got.as_ref().and_then(Message::message_type), want, "{name}");
            if let Some(r) = got {
                assert_eq!((r.op, r.xid, r.chaddr), (2, req.xid, req.chaddr), "{name}");
                assert_eq!(r.server_id(), Some(Ipv4Addr::new(10, 1, 0, 1)), "{name}");
            }
        }
    }

    #[test]
    fn offers_carry_the_allocation() {
        let l = lease();
        let offer = respond(&request(MessageType::Discover, vec![]), &l).unwrap();
        assert_eq!(offer.yiaddr, l.ip);
        assert_eq!(offer.option(OPT_SUBNET_MASK), Some(&[255, 255, 255, 0][..]));
        assert_eq!(offer.option(OPT_ROUTER), Some(&[10, 1, 0, 1][..]));
        assert_eq!(offer.option(OPT_BROADCAST), Some(&[10, 1, 0, 255][..]));
        assert_eq!(
            offer.option(OPT_LEASE_TIME),
            Some(&86_400u32.to_be_bytes()[..])
        );
        assert_eq!(
            offer.option(OPT_RENEWAL),
            Some(&43_200u32.to_be_bytes()[..])
        );
        assert_eq!(
            offer.option(OPT_REBINDING),
            Some(&75_600u32.to_be_bytes()[..])
        );
        // INFORM: configuration without an address or a lease time.
        let inform = respond(&request(MessageType::Inform, vec![]), &l).unwrap();
        assert_eq!(inform.yiaddr, Ipv4Addr::UNSPECIFIED);
        assert!(inform.option(OPT_LEASE_TIME).is_none());
        // Without a gateway: no router option, and the server speaks from the last host.
        let bare = Lease { gateway: None, ..l };
        let offer = respond(&request(MessageType::Discover, vec![]), &bare).unwrap();
        assert!(offer.option(OPT_ROUTER).is_none());
        assert_eq!(offer.server_id(), Some(Ipv4Addr::new(10, 1, 0, 254)));
        let last = Lease {
            ip: Ipv4Addr::new(10, 1, 0, 254),
            ..bare
        };
        assert_eq!(last.server_ip(), Ipv4Addr::new(10, 1, 0, 253));
        let tiny = Lease { prefix: 32, ..bare };
        assert_eq!(tiny.server_ip(), Ipv4Addr::new(169, 254, 0, 1));
        assert_eq!(tiny.mask(), Ipv4Addr::BROADCAST);
    }

    #[test]
    fn replies_go_where_rfc_2131_says() {
        let l = lease();
        let disc = request(MessageType::Discover, vec![]);
        let offer = respond(&disc, &l).unwrap();
        assert_eq!(destination(&disc, &offer), (CLIENT, l.ip));
        let mut bcast = disc.clone();
        bcast.flags = FLAG_BROADCAST;
        assert_eq!(
            destination(&bcast, &offer),
            (BROADCAST, Ipv4Addr::BROADCAST)
        );
        let mut renew = request(MessageType::Request, vec![]);
        renew.ciaddr = l.ip;
        let ack = respond(&renew, &l).unwrap();
        assert_eq!(destination(&renew, &ack), (CLIENT, l.ip));
        let stale = request(
            MessageType::Request,
            vec![(OPT_REQUESTED_IP, vec![1, 2, 3, 4])],
        );
        let nak = respond(&stale, &l).unwrap();
        assert_eq!(destination(&stale, &nak), (BROADCAST, Ipv4Addr::BROADCAST));
    }
}
