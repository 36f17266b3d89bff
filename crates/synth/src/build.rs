//! Turns one scheduled packet into bytes: link header, IPv4/IPv6, TCP/UDP
//! with correct checksums, and a payload shaped like the protocol it mimics.
//!
//! Everything is written into one reused buffer so the hot path does not
//! allocate; checksums use etherparse's `Sum16BitWords`.

use crate::apps::{PortSel, UnitSpec, QTYPE_A};
use crate::rng::Rng;
use crate::sched::{Dir, Ev, Kind, Shape};
use crate::writer::linktype;
use etherparse::checksum::Sum16BitWords;
use rand::{Rng as _, RngCore};

/// Concrete link layer of one interface.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Link {
    Ethernet,
    /// 802.1Q tag; with `qinq` an 802.1ad S-tag in front of it.
    Vlan {
        qinq: bool,
    },
    Sll,
    Raw,
}

impl Link {
    pub(crate) fn header_len(self) -> usize {
        match self {
            Link::Ethernet => 14,
            Link::Vlan { qinq: false } => 18,
            Link::Vlan { qinq: true } => 22,
            Link::Sll => 16,
            Link::Raw => 0,
        }
    }
    /// Captured frame length for an IP packet of `ip_len` bytes. Frames
    /// received over Ethernet are padded to the 60-byte minimum (the NIC
    /// delivers the padding), so readers must trust the IP length, not the
    /// frame length; frames we send are captured before padding.
    pub(crate) fn frame_len(self, dir: Dir, ip_len: usize) -> usize {
        let n = self.header_len() + ip_len;
        match (self, dir) {
            (Link::Ethernet | Link::Vlan { .. }, Dir::S2c) => n.max(ETH_MIN_FRAME),
            _ => n,
        }
    }

    pub(crate) fn linktype(self) -> u32 {
        match self {
            Link::Ethernet | Link::Vlan { .. } => linktype::ETHERNET,
            Link::Sll => linktype::LINUX_SLL,
            Link::Raw => linktype::RAW,
        }
    }
}

/// IP packet length of a scheduled packet.
pub(crate) fn ip_len(ipv6: bool, ev: &Ev) -> usize {
    (if ipv6 { 40 } else { 20 }) + ev.kind.l4_header_len() + usize::from(ev.len)
}

/// Link-layer identity of the capturing host.
pub(crate) struct Host {
    pub mac_client: [u8; 6],
    pub mac_gw: [u8; 6],
    /// Inner (C-tag) and outer (S-tag) VLAN ids.
    pub vlan: [u16; 2],
}

/// Per-flow mutable state used while writing (addresses, counters).
pub(crate) struct UnitState {
    pub link: Link,
    pub iface: u32,
    pub client: [u8; 16],
    pub server: [u8; 16],
    pub cport: u16,
    pub sport: u16,
    pub ttl: [u8; 2],
    pub ip_id: [u16; 2],
    pub flow_label: [u32; 2],
    pub seq: [u32; 2],
    pub win: [u16; 2],
    pub mss: u16,
    pub rtp_seq: [u16; 2],
    pub rtp_ts: [u32; 2],
    pub rtp_started: [bool; 2],
    pub ssrc: [u32; 2],
    pub cid: [[u8; 8]; 2],
    /// WireGuard sender indexes (client, server) / OpenVPN session ids.
    pub idx: [u32; 2],
    pub sid: [[u8; 8]; 2],
    pub peer_id: u32,
    pub ctr: [u64; 2],
    pub stun_tx: [u8; 12],
    pub dns_id: [u16; 2],
    pub dns_ttl: u32,
    pub pkts: u64,
    pub ip_bytes: u64,
}

impl UnitState {
    /// Fresh state with per-flow random identifiers drawn from `rng`.
    pub(crate) fn new(spec: &UnitSpec, link: Link, iface: u32, rng: &mut Rng) -> Self {
        let mut cid = [[0u8; 8]; 2];
        rng.fill_bytes(&mut cid[0]);
        rng.fill_bytes(&mut cid[1]);
        let mut sid = [[0u8; 8]; 2];
        rng.fill_bytes(&mut sid[0]);
        rng.fill_bytes(&mut sid[1]);
        let mut stun_tx = [0u8; 12];
        rng.fill_bytes(&mut stun_tx);
        let server_ttl = [64u8, 128, 255][rng.random_range(0..3)] - rng.random_range(4..=24);
        let ipv6 = spec.ipv6;
        Self {
            link,
            iface,
            client: [0; 16],
            server: [0; 16],
            cport: 0,
            sport: 0,
            ttl: [0, server_ttl],
            ip_id: [rng.random(), rng.random()],
            flow_label: [rng.random::<u32>() & 0xf_ffff, rng.random::<u32>() & 0xf_ffff],
            seq: [rng.random(), rng.random()],
            win: [rng.random_range(200..4000), rng.random_range(200..4000)],
            mss: match (spec.mss, ipv6) {
                (0, true) => 1440,
                (0, false) => 1460,
                (m, _) => m,
            },
            rtp_seq: [rng.random(), rng.random()],
            rtp_ts: [rng.random(), rng.random()],
            rtp_started: [false; 2],
            ssrc: [rng.random(), rng.random()],
            cid,
            idx: [rng.random(), rng.random()],
            sid,
            peer_id: rng.random_range(0..0x00ff_ffff),
            ctr: [0; 2],
            stun_tx,
            dns_id: [rng.random(), rng.random()],
            dns_ttl: rng.random_range(30..=3600),
            pkts: 0,
            ip_bytes: 0,
        }
    }
}

const ETH_IPV4: u16 = 0x0800;
/// Minimum Ethernet frame without FCS.
const ETH_MIN_FRAME: usize = 60;
const ETH_IPV6: u16 = 0x86dd;

fn link_header(buf: &mut Vec<u8>, host: &Host, link: Link, dir: Dir, ethertype: u16) {
    let (src, dst) = match dir {
        Dir::C2s => (&host.mac_client, &host.mac_gw),
        Dir::S2c => (&host.mac_gw, &host.mac_client),
    };
    match link {
        Link::Raw => {}
        Link::Ethernet | Link::Vlan { .. } => {
            buf.extend_from_slice(dst);
            buf.extend_from_slice(src);
            if let Link::Vlan { qinq } = link {
                if qinq {
                    buf.extend_from_slice(&0x88a8u16.to_be_bytes());
                    buf.extend_from_slice(&host.vlan[1].to_be_bytes());
                }
                buf.extend_from_slice(&0x8100u16.to_be_bytes());
                buf.extend_from_slice(&host.vlan[0].to_be_bytes());
            }
            buf.extend_from_slice(&ethertype.to_be_bytes());
        }
        Link::Sll => {
            let pkt_type: u16 = match dir {
                Dir::C2s => 4, // sent by us
                Dir::S2c => 0, // addressed to us
            };
            buf.extend_from_slice(&pkt_type.to_be_bytes());
            buf.extend_from_slice(&1u16.to_be_bytes()); // ARPHRD_ETHER
            buf.extend_from_slice(&6u16.to_be_bytes());
            buf.extend_from_slice(src);
            buf.extend_from_slice(&[0, 0]);
            buf.extend_from_slice(&ethertype.to_be_bytes());
        }
    }
}

/// Builds the full frame for `ev` into `buf` and returns the IP length.
pub(crate) fn build_packet(
    buf: &mut Vec<u8>,
    host: &Host,
    spec: &UnitSpec,
    st: &mut UnitState,
    ev: &Ev,
    rng: &mut Rng,
) -> usize {
    let v6 = spec.ipv6;
    buf.clear();
    link_header(buf, host, st.link, ev.dir, if v6 { ETH_IPV6 } else { ETH_IPV4 });
    let ip_off = buf.len();
    let ip_hl = if v6 { 40 } else { 20 };
    let l4_hl = ev.kind.l4_header_len();
    let pl_len = usize::from(ev.len);
    let l4_len = l4_hl + pl_len;
    let total = ip_hl + l4_len;
    buf.resize(ip_off + total, 0);
    let d = ev.dir.idx();
    let o = ev.dir.other().idx();
    let (src, dst, sport, dport) = match ev.dir {
        Dir::C2s => (st.client, st.server, st.cport, st.sport),
        Dir::S2c => (st.server, st.client, st.sport, st.cport),
    };
    let proto = if ev.kind == Kind::Udp { 17u8 } else { 6u8 };
    let tos = if ev.dir == Dir::C2s { spec.tos } else { 0 };
    let ttl = st.ttl[d];
    {
        let ip = &mut buf[ip_off..ip_off + ip_hl];
        if v6 {
            let fl = st.flow_label[d];
            ip[0] = 0x60 | (tos >> 4);
            ip[1] = (tos << 4) | ((fl >> 16) as u8 & 0x0f);
            ip[2] = (fl >> 8) as u8;
            ip[3] = fl as u8;
            ip[4..6].copy_from_slice(&(l4_len as u16).to_be_bytes());
            ip[6] = proto;
            ip[7] = ttl;
            ip[8..24].copy_from_slice(&src);
            ip[24..40].copy_from_slice(&dst);
        } else {
            ip[0] = 0x45;
            ip[1] = tos;
            ip[2..4].copy_from_slice(&(total as u16).to_be_bytes());
            ip[4..6].copy_from_slice(&st.ip_id[d].to_be_bytes());
            ip[6] = 0x40; // DF
            ip[8] = ttl;
            ip[9] = proto;
            ip[12..16].copy_from_slice(&src[..4]);
            ip[16..20].copy_from_slice(&dst[..4]);
            let c = Sum16BitWords::new().add_slice(ip).ones_complement();
            ip[10..12].copy_from_slice(&c.to_ne_bytes());
        }
    }
    st.ip_id[d] = st.ip_id[d].wrapping_add(1);
    let l4_off = ip_off + ip_hl;
    let pl_off = l4_off + l4_hl;
    fill_payload(&mut buf[pl_off..], ev, spec, st, rng);
    {
        let l4 = &mut buf[l4_off..pl_off];
        l4[0..2].copy_from_slice(&sport.to_be_bytes());
        l4[2..4].copy_from_slice(&dport.to_be_bytes());
        if ev.kind == Kind::Udp {
            l4[4..6].copy_from_slice(&(l4_len as u16).to_be_bytes());
        } else {
            let (seq, ack, flags) = match ev.kind {
                Kind::Syn => {
                    let s = st.seq[d];
                    st.seq[d] = s.wrapping_add(1);
                    (s, 0, 0x02u8)
                }
                Kind::SynAck => {
                    let s = st.seq[d];
                    st.seq[d] = s.wrapping_add(1);
                    (s, st.seq[o], 0x12)
                }
                Kind::Ack => {
                    let s = st.seq[d];
                    st.seq[d] = s.wrapping_add(pl_len as u32);
                    (s, st.seq[o], if pl_len > 0 { 0x18 } else { 0x10 })
                }
                Kind::Fin => {
                    let s = st.seq[d];
                    st.seq[d] = s.wrapping_add(1);
                    (s, st.seq[o], 0x11)
                }
                Kind::Rst | Kind::Udp => (st.seq[d], st.seq[o], 0x14),
            };
            l4[4..8].copy_from_slice(&seq.to_be_bytes());
            l4[8..12].copy_from_slice(&ack.to_be_bytes());
            l4[12] = ((l4_hl / 4) as u8) << 4;
            l4[13] = flags;
            let win = match ev.kind {
                Kind::Syn => 64240,
                Kind::SynAck => 65160,
                Kind::Rst => 0,
                _ => st.win[d] ^ (st.ip_id[d] & 0x1f),
            };
            l4[14..16].copy_from_slice(&win.to_be_bytes());
            if l4_hl == 32 {
                // MSS, NOP, window scale 7, NOP, NOP, SACK permitted.
                let mss = st.mss.to_be_bytes();
                l4[20..32].copy_from_slice(&[2, 4, mss[0], mss[1], 1, 3, 3, 7, 1, 1, 4, 2]);
            }
        }
    }
    let mut sum = Sum16BitWords::new();
    if v6 {
        sum = sum
            .add_16bytes(src)
            .add_16bytes(dst)
            .add_4bytes((l4_len as u32).to_be_bytes())
            .add_4bytes([0, 0, 0, proto]);
    } else {
        sum = sum
            .add_4bytes([src[0], src[1], src[2], src[3]])
            .add_4bytes([dst[0], dst[1], dst[2], dst[3]])
            .add_2bytes([0, proto])
            .add_2bytes((l4_len as u16).to_be_bytes());
    }
    let sum = sum.add_slice(&buf[l4_off..]);
    let (at, c) = if ev.kind == Kind::Udp {
        (l4_off + 6, sum.to_ones_complement_with_no_zero())
    } else {
        (l4_off + 16, sum.ones_complement())
    };
    buf[at..at + 2].copy_from_slice(&c.to_ne_bytes());
    let frame = st.link.frame_len(ev.dir, total);
    buf.resize(frame, 0);
    total
}

/// Bounded cursor: writes stop silently at the end of the payload, so a
/// short segment just carries a prefix of the structure.
struct Cur<'a> {
    b: &'a mut [u8],
    i: usize,
}

impl Cur<'_> {
    fn put(&mut self, v: &[u8]) {
        let n = v.len().min(self.b.len().saturating_sub(self.i));
        self.b[self.i..self.i + n].copy_from_slice(&v[..n]);
        self.i += v.len();
    }
    fn u8(&mut self, v: u8) {
        self.put(&[v]);
    }
    fn u16(&mut self, v: u16) {
        self.put(&v.to_be_bytes());
    }
    fn u24(&mut self, v: u32) {
        self.put(&v.to_be_bytes()[1..]);
    }
    fn u32(&mut self, v: u32) {
        self.put(&v.to_be_bytes());
    }
    /// Leaves `n` (already random) bytes as they are.
    fn skip(&mut self, n: usize) {
        self.i += n;
    }
    fn left(&self) -> usize {
        self.b.len().saturating_sub(self.i)
    }
}

const CIPHER_SUITES: [u8; 30] = [
    0x13, 0x01, 0x13, 0x02, 0x13, 0x03, 0xc0, 0x2b, 0xc0, 0x2f, 0xc0, 0x2c, 0xc0, 0x30, 0xcc, 0xa9, 0xcc, 0xa8, 0xc0,
    0x13, 0xc0, 0x14, 0x00, 0x9c, 0x00, 0x9d, 0x00, 0x2f, 0x00, 0x35,
];
/// Fixed ClientHello bytes before the padding extension's body.
const CH_FIXED: usize = 211;

/// TLS ClientHello without SNI: real framing, cipher suites and common
/// extensions, random/key share left random, padding extension to size.
fn client_hello(c: &mut Cur) {
    let l = c.b.len();
    c.put(&[0x16, 0x03, 0x01]);
    c.u16((l - 5) as u16);
    c.u8(1);
    c.u24((l - 9) as u32);
    if l < CH_FIXED {
        return;
    }
    c.put(&[0x03, 0x03]);
    c.skip(32);
    c.u8(32);
    c.skip(32);
    c.u16(CIPHER_SUITES.len() as u16);
    c.put(&CIPHER_SUITES);
    c.put(&[0x01, 0x00]);
    c.u16((l - c.i - 2) as u16);
    c.put(&[0x00, 0x0a, 0x00, 0x08, 0x00, 0x06, 0x00, 0x1d, 0x00, 0x17, 0x00, 0x18]);
    c.put(&[0x00, 0x0b, 0x00, 0x02, 0x01, 0x00]);
    c.put(&[
        0x00, 0x0d, 0x00, 0x12, 0x00, 0x10, 0x04, 0x03, 0x08, 0x04, 0x04, 0x01, 0x05, 0x03, 0x08, 0x05, 0x05, 0x01,
        0x08, 0x06, 0x06, 0x01,
    ]);
    c.put(&[0x00, 0x2b, 0x00, 0x05, 0x04, 0x03, 0x04, 0x03, 0x03]);
    c.put(&[0x00, 0x33, 0x00, 0x26, 0x00, 0x24, 0x00, 0x1d, 0x00, 0x20]);
    c.skip(32);
    c.put(&[0x00, 0x17, 0x00, 0x00]);
    c.put(&[0x00, 0x15]);
    let pad = l - CH_FIXED;
    c.u16(pad as u16);
    let i = c.i;
    c.b[i..].fill(0);
}

/// First server flight: ServerHello, then (1.3) CCS + encrypted records or
/// (1.2) the Certificate record. `aux` = flight bytes << 1 | tls13.
fn server_hello(c: &mut Cur, aux: u32) {
    let tls13 = aux & 1 == 1;
    let flight = (aux >> 1) as usize;
    let (body, exts): (usize, &[u8]) = if tls13 {
        (
            118,
            &[
                0x00, 0x2b, 0x00, 0x02, 0x03, 0x04, 0x00, 0x33, 0x00, 0x24, 0x00, 0x1d, 0x00, 0x20,
            ],
        )
    } else {
        (
            87,
            &[
                0xff, 0x01, 0x00, 0x01, 0x00, 0x00, 0x0b, 0x00, 0x02, 0x01, 0x00, 0x00, 0x17, 0x00, 0x00,
            ],
        )
    };
    c.put(&[0x16, 0x03, 0x03]);
    c.u16((body + 4) as u16);
    c.u8(2);
    c.u24(body as u32);
    c.put(&[0x03, 0x03]);
    c.skip(32);
    c.u8(32);
    c.skip(32);
    c.put(if tls13 { &[0x13, 0x01] } else { &[0xc0, 0x2f] });
    c.u8(0);
    c.u16(if tls13 { 46 } else { 15 });
    c.put(exts);
    if tls13 {
        c.skip(32); // key share
        c.put(&[0x14, 0x03, 0x03, 0x00, 0x01, 0x01]);
        let rest = flight.saturating_sub(c.i + 5).clamp(1, 16_401);
        c.put(&[0x17, 0x03, 0x03]);
        c.u16(rest as u16);
    } else {
        let rest = flight.saturating_sub(c.i + 5).clamp(4, 16_384);
        c.put(&[0x16, 0x03, 0x03]);
        c.u16(rest as u16);
        c.u8(0x0b);
        c.u24((rest - 4) as u32);
    }
}

fn fill_payload(pl: &mut [u8], ev: &Ev, spec: &UnitSpec, st: &mut UnitState, rng: &mut Rng) {
    let d = ev.dir.idx();
    if pl.is_empty() {
        return;
    }
    if matches!(ev.shape, Shape::DnsQuery | Shape::DnsResp) {
        dns(pl, ev, spec, st, rng);
        return;
    }
    rng.fill_bytes(pl);
    let l = pl.len();
    let mut c = Cur { b: pl, i: 0 };
    match ev.shape {
        Shape::None | Shape::Random | Shape::DnsQuery | Shape::DnsResp => {}
        Shape::TlsClientHello => client_hello(&mut c),
        Shape::TlsServerHello => server_hello(&mut c, ev.aux),
        Shape::TlsClientFinish => {
            if ev.aux == 1 {
                c.put(&[0x14, 0x03, 0x03, 0x00, 0x01, 0x01, 0x17, 0x03, 0x03]);
                c.u16(l.saturating_sub(11) as u16);
            } else {
                c.put(&[0x16, 0x03, 0x03, 0x00, 0x25, 0x10, 0x00, 0x00, 0x21, 0x20]);
                c.skip(32);
                c.put(&[0x14, 0x03, 0x03, 0x00, 0x01, 0x01, 0x16, 0x03, 0x03]);
                c.u16(l.saturating_sub(53) as u16);
            }
        }
        Shape::TlsServerFinish => {
            c.put(&[0x14, 0x03, 0x03, 0x00, 0x01, 0x01, 0x16, 0x03, 0x03]);
            c.u16(l.saturating_sub(11) as u16);
        }
        Shape::TlsApp => {
            if l >= 5 {
                c.put(&[0x17, 0x03, 0x03]);
                c.u16(ev.aux.min(0xffff) as u16);
            }
        }
        Shape::QuicLong => {
            let (dcid, scid) = match ev.dir {
                Dir::C2s => (st.cid[0], st.cid[1]),
                Dir::S2c => (st.cid[1], st.cid[0]),
            };
            let ty = (ev.aux as u8) & 3;
            c.u8(0xc0 | (ty << 4) | (c.b[0] & 0x0f));
            c.u32(1);
            c.u8(8);
            c.put(&dcid);
            c.u8(8);
            c.put(&scid);
            if ty == 0 {
                c.u8(0); // token length
            }
            let rest = c.left().saturating_sub(2).min(0x3fff);
            c.u16(0x4000 | rest as u16);
        }
        Shape::QuicShort => {
            c.u8(0x40 | (c.b[0] & 0x3f));
            let dcid = match ev.dir {
                Dir::C2s => st.cid[0],
                Dir::S2c => st.cid[1],
            };
            c.put(&dcid);
        }
        Shape::Rtp => {
            let marker = if st.rtp_started[d] { 0 } else { 0x80 };
            st.rtp_started[d] = true;
            c.u8(0x80);
            c.u8(marker | (spec.rtp.0 & 0x7f));
            c.u16(st.rtp_seq[d]);
            c.u32(st.rtp_ts[d]);
            c.u32(st.ssrc[d]);
            st.rtp_seq[d] = st.rtp_seq[d].wrapping_add(1);
            st.rtp_ts[d] = st.rtp_ts[d].wrapping_add(spec.rtp.1);
        }
        Shape::Rtcp => {
            c.u8(0x80);
            c.u8(200);
            c.u16((l / 4).saturating_sub(1) as u16);
            c.u32(st.ssrc[d]);
        }
        Shape::StunReq | Shape::StunResp => {
            c.u16(if ev.shape == Shape::StunReq { 0x0001 } else { 0x0101 });
            c.u16(l.saturating_sub(20) as u16);
            c.u32(0x2112_a442);
            c.put(&st.stun_tx);
            if l >= 24 {
                c.u16(0x0026); // PADDING attribute over the rest
                c.u16((l - 24) as u16);
            }
        }
        Shape::OvpnCtrl => {
            c.u8((ev.aux as u8) << 3);
            c.put(&st.sid[d]);
        }
        Shape::OvpnData => {
            c.u8(0x48); // P_DATA_V2, key id 0
            c.u24(st.peer_id);
            c.u32(st.ctr[d] as u32);
            st.ctr[d] += 1;
        }
        Shape::WgInit => {
            c.put(&[1, 0, 0, 0]);
            c.put(&st.idx[0].to_le_bytes());
            c.b[l.saturating_sub(16)..].fill(0); // mac2 unused
        }
        Shape::WgResp => {
            c.put(&[2, 0, 0, 0]);
            c.put(&st.idx[1].to_le_bytes());
            c.put(&st.idx[0].to_le_bytes());
            c.b[l.saturating_sub(16)..].fill(0);
        }
        Shape::WgData => {
            c.put(&[4, 0, 0, 0]);
            let receiver = match ev.dir {
                Dir::C2s => st.idx[1],
                Dir::S2c => st.idx[0],
            };
            c.put(&receiver.to_le_bytes());
            c.put(&st.ctr[d].to_le_bytes());
            st.ctr[d] += 1;
        }
    }
}

/// DNS query or response in real wire format (no randomness except the
/// answer addresses).
fn dns(pl: &mut [u8], ev: &Ev, spec: &UnitSpec, st: &mut UnitState, rng: &mut Rng) {
    let Some(dns) = spec.dns.as_ref() else {
        rng.fill_bytes(pl);
        return;
    };
    let qi = (ev.aux as usize).min(dns.queries.len() - 1);
    let (qtype, answers) = dns.queries[qi];
    let resp = ev.shape == Shape::DnsResp;
    let mut c = Cur { b: pl, i: 0 };
    c.u16(st.dns_id[qi % 2]);
    c.u16(if resp { 0x8180 } else { 0x0100 });
    c.u16(1);
    c.u16(if resp { u16::from(answers) } else { 0 });
    c.u16(0);
    c.u16(0);
    c.put(&dns.qname);
    c.u16(qtype);
    c.u16(1);
    if resp {
        for _ in 0..answers {
            c.u16(0xc00c);
            c.u16(qtype);
            c.u16(1);
            c.u32(st.dns_ttl);
            if qtype == QTYPE_A {
                c.u16(4);
                c.put(&doc_v4(rng));
            } else {
                c.u16(16);
                c.put(&doc_v6(rng));
            }
        }
    }
    debug_assert_eq!(c.i, c.b.len(), "DNS size mismatch");
}

/// Random address in the IPv4 documentation ranges.
pub(crate) fn doc_v4(rng: &mut Rng) -> [u8; 4] {
    let nets: [[u8; 3]; 3] = [[192, 0, 2], [198, 51, 100], [203, 0, 113]];
    let n = nets[rng.random_range(0..3)];
    [n[0], n[1], n[2], rng.random_range(1..=254)]
}

/// Random address in 2001:db8::/32.
pub(crate) fn doc_v6(rng: &mut Rng) -> [u8; 16] {
    let mut a = [0u8; 16];
    rng.fill_bytes(&mut a[4..]);
    a[..4].copy_from_slice(&[0x20, 0x01, 0x0d, 0xb8]);
    a
}

/// Port a [`PortSel`] resolves to before uniqueness adjustments.
pub(crate) fn pick_port(sel: PortSel, ephemeral: &mut u16, rng: &mut Rng) -> u16 {
    match sel {
        PortSel::Fixed(p) => p,
        PortSel::RandomHigh => rng.random_range(5000..=32500) * 2,
        PortSel::Ephemeral => {
            *ephemeral = ephemeral.wrapping_add(rng.random_range(1..=3));
            if *ephemeral < 32768 {
                *ephemeral = 32768 + (*ephemeral % 1024);
            }
            *ephemeral
        }
    }
}
