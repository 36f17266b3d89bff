//! Frame → IP → TCP/UDP decoding.
//!
//! Link layers are stripped here (Ethernet with 802.1Q/QinQ through `etherparse`; SLL, SLL2,
//! NULL/LOOP, PPP, C-HDLC, PPI and raw IP by their fixed headers), then `etherparse` walks the
//! IP header and IPv6 extension headers. What comes out is a set of offsets into the captured
//! bytes, which is all the Deep Packet and FlowPic steps need.

use etherparse::{EtherType, LaxNetSlice, LaxSlicedPacket};

/// Why a frame produced no TCP/UDP packet. Counted per file, never fatal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DecodeSkip {
    UnsupportedLinkType,
    TruncatedLinkHeader,
    NotIp,
    MalformedIp,
    NonFirstFragment,
    NotTcpUdp,
    TruncatedL4Header,
}

impl DecodeSkip {
    pub fn describe(self) -> &'static str {
        match self {
            DecodeSkip::UnsupportedLinkType => "unsupported link type",
            DecodeSkip::TruncatedLinkHeader => "truncated link-layer header",
            DecodeSkip::NotIp => "not IP (ARP, LLDP, ...)",
            DecodeSkip::MalformedIp => "malformed or truncated IP header",
            DecodeSkip::NonFirstFragment => "non-first IP fragment",
            DecodeSkip::NotTcpUdp => "not TCP/UDP (ICMP, tunnels, ...)",
            DecodeSkip::TruncatedL4Header => "truncated TCP/UDP header",
        }
    }
}

/// Transport protocol of a decoded packet (IANA protocol numbers).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
pub enum L4 {
    Tcp = 6,
    Udp = 17,
}

impl L4 {
    pub fn name(self) -> &'static str {
        match self {
            L4::Tcp => "TCP",
            L4::Udp => "UDP",
        }
    }
}

pub const TCP_FIN: u8 = 0x01;
pub const TCP_SYN: u8 = 0x02;
pub const TCP_RST: u8 = 0x04;
pub const TCP_ACK: u8 = 0x10;

/// A TCP/UDP packet located inside a captured frame.
#[derive(Debug, Clone, Copy)]
pub struct Decoded<'a> {
    /// Captured bytes from the IP header on, cut at the IP total length (drops Ethernet
    /// trailer padding) and possibly shorter than it when the snap length cut the packet.
    pub ip: &'a [u8],
    pub ip_version: u8,
    /// Offset of the TCP/UDP header inside `ip` (IP header, options and IPv6 extensions).
    pub l4_offset: usize,
    pub l4: L4,
    /// TCP header length from its data offset; 8 for UDP.
    pub l4_header_len: usize,
    /// IP packet length according to its header (the size FlowPic uses).
    pub ip_len: usize,
    /// Transport payload length according to the headers, not to what was captured.
    pub payload_len: usize,
    pub tcp_flags: u8,
    /// Source/destination addresses, IPv4 in the first four bytes.
    pub src: [u8; 16],
    pub dst: [u8; 16],
    pub src_port: u16,
    pub dst_port: u16,
    /// The captured bytes end before the IP length says the packet does.
    pub truncated: bool,
}

/// Locate the network layer for a link type: returns (ethertype, offset) or a skip reason.
fn network_start(linktype: u32, f: &[u8]) -> Result<(u16, usize), DecodeSkip> {
    let need = |n: usize| {
        if f.len() < n {
            Err(DecodeSkip::TruncatedLinkHeader)
        } else {
            Ok(())
        }
    };
    let ip_by_version = |off: usize| -> Result<(u16, usize), DecodeSkip> {
        match f.get(off).map(|b| b >> 4) {
            Some(4) => Ok((0x0800, off)),
            Some(6) => Ok((0x86dd, off)),
            Some(_) => Err(DecodeSkip::NotIp),
            None => Err(DecodeSkip::TruncatedLinkHeader),
        }
    };
    match linktype {
        // Ethernet is handled by etherparse directly (VLAN tags included).
        1 => Ok((0, 0)),
        // Raw IP: 101 (LINKTYPE_RAW), 12/14 (DLT_RAW on some BSDs), 228 IPv4, 229 IPv6.
        101 | 12 | 14 | 228 | 229 => ip_by_version(0),
        // BSD NULL (host byte order) / LOOP (network byte order): 4-byte address family.
        0 | 108 => {
            need(4)?;
            let le = u32::from_le_bytes([f[0], f[1], f[2], f[3]]);
            let be = u32::from_be_bytes([f[0], f[1], f[2], f[3]]);
            let fam = if le < 256 { le } else { be };
            match fam {
                2 => Ok((0x0800, 4)),
                24 | 28 | 30 => Ok((0x86dd, 4)),
                _ => Err(DecodeSkip::NotIp),
            }
        }
        // Linux cooked v1: 16-byte header, protocol in the last two bytes.
        113 => {
            need(16)?;
            Ok((u16::from_be_bytes([f[14], f[15]]), 16))
        }
        // Linux cooked v2: 20-byte header, protocol first.
        276 => {
            need(20)?;
            Ok((u16::from_be_bytes([f[0], f[1]]), 20))
        }
        // PPP (RFC 1661), with or without the ff 03 address/control bytes; also PPP in HDLC framing (50).
        9 | 50 => {
            let off = if f.len() >= 2 && f[0] == 0xff && f[1] == 0x03 {
                2
            } else {
                0
            };
            need(off + 1)?;
            // Protocol field may be compressed to one byte (odd value).
            let (proto, len) = if f[off] & 1 == 1 {
                (f[off] as u16, 1)
            } else {
                need(off + 2)?;
                (u16::from_be_bytes([f[off], f[off + 1]]), 2)
            };
            match proto {
                0x21 => Ok((0x0800, off + len)),
                0x57 => Ok((0x86dd, off + len)),
                _ => Err(DecodeSkip::NotIp),
            }
        }
        // Cisco HDLC: address, control, then an Ethernet type.
        104 => {
            need(4)?;
            Ok((u16::from_be_bytes([f[2], f[3]]), 4))
        }
        // PPI: little-endian header length at bytes 2..4, inner DLT at 4..8.
        192 => {
            need(8)?;
            let hlen = u16::from_le_bytes([f[2], f[3]]) as usize;
            let dlt = u32::from_le_bytes([f[4], f[5], f[6], f[7]]);
            if hlen < 8 || hlen > f.len() || dlt == 192 {
                return Err(DecodeSkip::TruncatedLinkHeader);
            }
            let inner = &f[hlen..];
            let (et, off) = if dlt == 1 {
                ethernet_type(inner)?
            } else {
                network_start(dlt, inner)?
            };
            Ok((et, hlen + off))
        }
        _ => Err(DecodeSkip::UnsupportedLinkType),
    }
}

/// Ethernet II with any number of 802.1Q / 802.1ad tags: returns (ethertype, payload offset).
fn ethernet_type(f: &[u8]) -> Result<(u16, usize), DecodeSkip> {
    if f.len() < 14 {
        return Err(DecodeSkip::TruncatedLinkHeader);
    }
    let mut off = 12;
    let mut et = u16::from_be_bytes([f[12], f[13]]);
    while matches!(et, 0x8100 | 0x88a8 | 0x9100) {
        if f.len() < off + 6 {
            return Err(DecodeSkip::TruncatedLinkHeader);
        }
        et = u16::from_be_bytes([f[off + 4], f[off + 5]]);
        off += 4;
    }
    Ok((et, off + 2))
}

/// Decode one frame to a TCP/UDP packet.
pub fn decode(linktype: u32, frame: &[u8]) -> Result<Decoded<'_>, DecodeSkip> {
    let sliced = if linktype == 1 {
        LaxSlicedPacket::from_ethernet(frame).map_err(|_| DecodeSkip::TruncatedLinkHeader)?
    } else {
        let (et, off) = network_start(linktype, frame)?;
        if et != 0x0800 && et != 0x86dd {
            return Err(DecodeSkip::NotIp);
        }
        LaxSlicedPacket::from_ether_type(EtherType(et), &frame[off..])
    };
    let net = match &sliced.net {
        Some(n) => n,
        None => {
            return Err(match sliced.stop_err {
                Some(_) if is_ip_ethertype(&sliced) => DecodeSkip::MalformedIp,
                _ => DecodeSkip::NotIp,
            })
        }
    };
    let base = frame.as_ptr() as usize;
    let (ip_start, ip_version, src, dst, ip_len, payload) = match net {
        LaxNetSlice::Ipv4(v4) => {
            let h = v4.header();
            if h.fragments_offset().value() != 0 {
                return Err(DecodeSkip::NonFirstFragment);
            }
            let mut src = [0u8; 16];
            let mut dst = [0u8; 16];
            src[..4].copy_from_slice(&h.source());
            dst[..4].copy_from_slice(&h.destination());
            let start = h.slice().as_ptr() as usize - base;
            (start, 4u8, src, dst, h.total_len() as usize, v4.payload())
        }
        LaxNetSlice::Ipv6(v6) => {
            let h = v6.header();
            if v6.is_payload_fragmented() && ipv6_fragment_offset(v6.extensions().slice(), h.next_header().0) != 0 {
                return Err(DecodeSkip::NonFirstFragment);
            }
            let start = h.slice().as_ptr() as usize - base;
            (
                start,
                6u8,
                h.source(),
                h.destination(),
                40 + h.payload_length() as usize,
                v6.payload(),
            )
        }
        LaxNetSlice::Arp(_) => return Err(DecodeSkip::NotIp),
    };
    let l4 = match payload.ip_number.0 {
        6 => L4::Tcp,
        17 => L4::Udp,
        _ => return Err(DecodeSkip::NotTcpUdp),
    };
    let l4_start = payload.payload.as_ptr() as usize - base;
    // Cut at the IP length (Ethernet pads short frames) but never beyond what was captured.
    let ip_end = (ip_start + ip_len).min(frame.len());
    if l4_start > ip_end {
        return Err(DecodeSkip::MalformedIp);
    }
    let ip = &frame[ip_start..ip_end];
    let l4_offset = l4_start - ip_start;
    let l4b = &ip[l4_offset..];
    let (l4_header_len, tcp_flags) = match l4 {
        L4::Tcp => {
            if l4b.len() < 20 {
                return Err(DecodeSkip::TruncatedL4Header);
            }
            let hl = ((l4b[12] >> 4) as usize) * 4;
            if hl < 20 {
                return Err(DecodeSkip::TruncatedL4Header);
            }
            (hl, l4b[13])
        }
        L4::Udp => {
            if l4b.len() < 8 {
                return Err(DecodeSkip::TruncatedL4Header);
            }
            (8, 0)
        }
    };
    let src_port = u16::from_be_bytes([l4b[0], l4b[1]]);
    let dst_port = u16::from_be_bytes([l4b[2], l4b[3]]);
    let payload_len = ip_len.saturating_sub(l4_offset + l4_header_len);
    Ok(Decoded {
        ip,
        ip_version,
        l4_offset,
        l4,
        l4_header_len,
        ip_len,
        payload_len,
        tcp_flags,
        src,
        dst,
        src_port,
        dst_port,
        truncated: ip.len() < ip_len,
    })
}

fn is_ip_ethertype(s: &LaxSlicedPacket<'_>) -> bool {
    matches!(
        s.stop_err,
        Some((_, etherparse::err::Layer::Ipv4Header))
            | Some((_, etherparse::err::Layer::Ipv6Header))
            | Some((_, etherparse::err::Layer::IpHeader))
    )
}

/// Fragment offset of the IPv6 fragment header among `exts` (0 when absent or unreadable).
fn ipv6_fragment_offset(exts: &[u8], first: u8) -> u16 {
    let mut next = first;
    let mut off = 0usize;
    while off + 8 <= exts.len() {
        let h = &exts[off..];
        match next {
            44 => return u16::from_be_bytes([h[2], h[3]]) >> 3,
            51 => {
                next = h[0];
                off += (h[1] as usize + 2) * 4;
            }
            _ => {
                next = h[0];
                off += (h[1] as usize + 1) * 8;
            }
        }
    }
    0
}
